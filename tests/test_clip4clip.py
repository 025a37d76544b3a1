"""CLIP4Clip: each similarity calculator against what it must reduce to, the 3D patch against the 2D one, padding
frames, the loss and the retrieval metrics by hand, the official optimiser groups, and fit / validate / predict
through a Trainer. Micro CLIPs (ViT-Micro-8: 32 px frames, 16-token captions, a 32-d joint space as wide as its
2-block text tower)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lit_clip.methods.video.clip4clip import (
    CLIP4Clip,
    InflatedPatchEmbedding,
    cross_entropy_both_ways,
    retrieval_metrics,
)
from lit_clip.methods.video.frames import masked_mean

SOT, EOT = 49406, 49407
HEADERS = ["meanP", "seqLSTM", "seqTransf", "tightTransf"]


def make(sim_header="meanP", seed=0, **options) -> CLIP4Clip:
    torch.manual_seed(seed)
    return CLIP4Clip(architecture="ViT-Micro-8", sim_header=sim_header, cross_num_hidden_layers=2, **options)


def captions(count: int, seed: int = 0) -> torch.Tensor:
    """Token ids [count, 12]: SOT, random words, EOT at different places, padding."""
    generator = torch.Generator().manual_seed(seed)
    text = torch.zeros(count, 12, dtype=torch.long)
    for row in range(count):
        words = 2 + row % 5
        text[row, 0], text[row, words + 1] = SOT, EOT
        text[row, 1 : words + 1] = torch.randint(1, 1000, (words,), generator=generator)
    return text


def clips(lengths: list[int], frames: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clips [B, frames, 3, 32, 32] with their masks: ``lengths[b]`` real frames, then random padding."""
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(len(lengths), frames, 3, 32, 32, generator=generator)
    mask = torch.arange(frames) < torch.tensor(lengths)[:, None]
    return video, mask


def batch(lengths: list[int], first_index: int = 0, seed: int = 0, frames: int = 4) -> dict:
    video, mask = clips(lengths, frames, seed)
    count = len(lengths)
    return {
        "video": video, "frame_mask": mask, "text": captions(count, seed), "caption": [f"c{i}" for i in range(count)],
        "index": torch.arange(first_index, first_index + count),
    }  # fmt: skip


def meanP_by_hand(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return F.normalize(masked_mean(F.normalize(features, dim=-1), mask), dim=-1)


# --- the similarity calculators ------------------------------------------------------------------------------
@pytest.mark.parametrize("architecture", ["ViT-Micro-8", "RN-Tiny"])
def test_meanP_on_one_frame_clips_is_clips_image_text_retrieval_score(architecture):
    torch.manual_seed(0)
    method = CLIP4Clip(architecture=architecture, freeze_layer_num=-1).eval()
    size = method.model.visual.image_size
    video, mask = torch.randn(3, 1, 3, size, size), torch.ones(3, 1, dtype=torch.bool)
    text = captions(5)
    scores = method.similarity(method.encode_text(text), method.encode_video(video, mask))
    image_features, text_features, logit_scale = method.model(video[:, 0], text)  # CLIP on the frames as images
    torch.testing.assert_close(scores, logit_scale * text_features @ image_features.T)


def test_seqTransf_at_initialisation_with_a_zeroed_residual_branch_equals_meanP():
    """The residual branch is what the temporal transformer adds to the frame features: every block adds
    ``attn(ln_1(x))`` and ``mlp(ln_2(x))`` to its input, and the frame position embeddings are added first. With
    the blocks' output projections (``attn.out_proj``, ``mlp.c_proj``) and the position embeddings zeroed, each
    block passes its input through, the module returns ``features + features``, and meanP's per-frame
    normalisation makes that the meanP embedding. Before zeroing (CLIP's copied blocks) it is not."""
    method = make("seqTransf").eval()
    video, mask = clips([4, 2, 3])
    features = method.frame_features(video, mask)
    assert not torch.allclose(method.encode_video(video, mask), meanP_by_hand(features, mask), atol=1e-3)
    with torch.no_grad():
        method.temporal.frame_position_embeddings.zero_()
        for block in method.temporal.transformer.resblocks:
            for projection in (block.attn.out_proj, block.mlp.c_proj):
                projection.weight.zero_()
                projection.bias.zero_()
    torch.testing.assert_close(method.encode_video(video, mask), meanP_by_hand(features, mask))


def test_seqTransf_starts_from_clips_text_positions_and_first_text_blocks():
    method = make("seqTransf")
    clip, temporal = method.model, method.temporal
    torch.testing.assert_close(temporal.frame_position_embeddings, clip.positional_embedding)
    assert temporal.transformer.layers == 2 and not temporal.transformer.causal
    for ours, theirs in zip(temporal.transformer.resblocks, clip.transformer.resblocks):
        for (name, value), (_, original) in zip(ours.state_dict().items(), theirs.state_dict().items()):
            torch.testing.assert_close(value, original, msg=name)
    assert temporal.frame_position_embeddings.data_ptr() != clip.positional_embedding.data_ptr()  # copies


@pytest.mark.parametrize("sim_header", HEADERS)
def test_padding_frames_change_nothing(sim_header):
    """Clips padded with random frames score as each clip alone at its own length, for every header (3D too)."""
    linear_patch = "3d" if sim_header == "seqTransf" else "2d"
    method = make(sim_header, linear_patch=linear_patch).eval()
    video, mask = clips([4, 2, 3, 1])
    text = method.encode_text(captions(3))
    with torch.no_grad():
        padded = method.similarity(text, method.encode_video(video, mask))
        alone = torch.cat(
            [method.similarity(text, method.encode_video(clip[None, :n], m[None, :n])) for clip, m, n in
             zip(video, mask, mask.sum(1).tolist())], dim=1,
        )  # fmt: skip
    assert padded.shape == (3, 4)
    torch.testing.assert_close(padded, alone)


def test_tightTransf_scores_every_caption_with_every_clip_by_its_cross_encoder():
    method = make("tightTransf").eval()
    video, mask = clips([4, 3])
    text = method.encode_text(captions(3))
    frames = method.encode_video(video, mask)
    scores = method.similarity(text, frames)
    cross = method.cross
    for t in range(3):
        for v in range(2):  # one sequence [caption; real frames] by hand: positions, types, blocks, pooler
            n = int(mask[v].sum())
            sequence = torch.cat([text[t][None], frames.features[v, :n]])[None]
            x = sequence + cross.position_embeddings[: n + 1] + cross.type_embeddings[torch.tensor([0] + [1] * n)]
            pooled = cross.pool(cross.ln_pool(cross.transformer(x)[:, 0]))
            expected = cross.score(pooled * torch.sigmoid(1.702 * pooled))  # QuickGELU
            torch.testing.assert_close(scores[t, v], expected[0, 0])
    torch.testing.assert_close(method.similarity(text, frames, chunk_size=2), scores)  # evaluation's chunks
    assert not torch.allclose(scores[0], scores[1])


def test_the_lstm_header_adds_an_lstm_over_the_real_frames_to_them():
    method = make("seqLSTM").eval()
    video, mask = clips([4, 2])
    features = method.frame_features(video, mask)
    with torch.no_grad():
        expected = [method.temporal.lstm(features[b : b + 1, :n])[0][0] + features[b, :n] for b, n in ((0, 4), (1, 2))]
        embeddings = method.encode_video(video, mask)
    for b, n in ((0, 4), (1, 2)):
        real = torch.ones(1, n, dtype=torch.bool)
        torch.testing.assert_close(embeddings[b], meanP_by_hand(expected[b][None], real)[0])


def test_a_frame_mask_with_padding_first_is_refused():
    method = make("seqLSTM")
    video, _ = clips([4, 4])
    with pytest.raises(ValueError, match="real frames first and its padding last"):
        method.encode_video(video, torch.tensor([[False, True, True, True], [True] * 4]))


# --- the 3D linear patch -------------------------------------------------------------------------------------
def test_the_3d_patch_inflated_from_2d_weights_gives_the_2d_result():
    """At inflation only the centre tap is non-zero: every frame, of a static clip or not, embeds as in 2D."""
    two_d, three_d = make(linear_patch="2d").eval(), make(linear_patch="3d").eval()
    conv = three_d.model.visual.conv1
    assert isinstance(conv, InflatedPatchEmbedding) and conv.weight.shape == (64, 3, 3, 8, 8)
    torch.testing.assert_close(conv.weight[:, :, 1], two_d.model.visual.conv1.weight)
    assert not conv.weight[:, :, [0, 2]].any()
    moving, mask = clips([4, 4])
    static = moving[:, :1].expand(-1, 4, -1, -1, -1)
    for video in (static, moving):
        torch.testing.assert_close(three_d.frame_features(video, mask), two_d.frame_features(video, mask))
    # A single image is a one-frame clip: CLIP's own encode_image still works.
    torch.testing.assert_close(three_d.model.encode_image(moving[:, 0]), two_d.model.encode_image(moving[:, 0]))


def test_the_3d_patch_convolves_each_clip_in_time_with_zero_padding_as_the_official():
    """With the 2D kernel spread over the taps (1/4, 1/2, 1/4), a static clip keeps the 2D patches in its inner
    frames; its first and last frames see the zero padding in time (kernel 3, stride 1, padding 1)."""
    method = make(linear_patch="3d")
    conv = method.model.visual.conv1
    kernel_2d = conv.weight[:, :, 1].detach().clone()
    with torch.no_grad():
        conv.weight.copy_(torch.stack([kernel_2d / 4, kernel_2d / 2, kernel_2d / 4], dim=2))
    video, _ = clips([5, 5], frames=5)
    frames = video.flatten(0, 1)
    with conv.clips_of(5):
        patches = conv(frames).unflatten(0, (2, 5))  # [B, T, width, 4, 4]
    reference = F.conv3d(video.transpose(1, 2), conv.weight, stride=(1, 8, 8), padding=(1, 0, 0)).transpose(1, 2)
    torch.testing.assert_close(patches, reference)
    static = video[:, :1].expand(-1, 5, -1, -1, -1).flatten(0, 1)
    with conv.clips_of(5):
        static_patches = conv(static).unflatten(0, (2, 5))
    flat = F.conv2d(video[:, 0], kernel_2d, stride=8)
    for t in (1, 2, 3):
        torch.testing.assert_close(static_patches[:, t], flat)
    torch.testing.assert_close(static_patches[:, 0], flat * 3 / 4)  # the zero frame before the first


# --- loss, metrics, optimiser ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sim_header", ["seqTransf", "tightTransf"])
def test_the_loss_is_the_symmetric_cross_entropy_by_hand(sim_header):
    method = make(sim_header).eval()
    data = batch([4, 2, 3])
    text = method.encode_text(data["text"])
    scores = method.similarity(text, method.encode_video(data["video"], data["frame_mask"]))
    if sim_header == "seqTransf":  # loose: cosine times CLIP's logit scale
        video = method.encode_video(data["video"], data["frame_mask"])
        torch.testing.assert_close(scores, method.model.logit_scale.exp() * text @ video.T)
    text_to_video = -scores.log_softmax(dim=1).diagonal().mean()
    video_to_text = -scores.log_softmax(dim=0).diagonal().mean()
    torch.testing.assert_close(method.loss(data), (text_to_video + video_to_text) / 2)
    torch.testing.assert_close(cross_entropy_both_ways(scores), (text_to_video + video_to_text) / 2)


def test_retrieval_ranks_both_ways_by_hand_with_several_captions_per_clip():
    # 4 captions of 3 clips: captions 0 and 1 describe clip 0, caption 2 clip 1, caption 3 clip 2.
    similarity = torch.tensor([
        [0.9, 0.1, 0.3],  # caption 0 -> clip 0 ranks 1
        [0.2, 0.5, 0.4],  # caption 1 -> clip 0 ranks 3
        [0.6, 0.7, 0.1],  # caption 2 -> clip 1 ranks 1
        [0.8, 0.0, 0.3],  # caption 3 -> clip 2 ranks 2
    ])  # fmt: skip
    metrics = retrieval_metrics(similarity, torch.tensor([0, 0, 1, 2]))
    # text->video ranks 1, 3, 1, 2
    assert metrics["t2v_R@1"] == pytest.approx(0.5) and metrics["t2v_R@5"] == 1
    assert metrics["t2v_MdR"] == pytest.approx(1.5) and metrics["t2v_MnR"] == pytest.approx(7 / 4)
    # video->text: clip v scores caption set g by the best of g's captions on v:
    # clip 0: sets (max(.9,.2), .6, .8) -> own set ranks 1; clip 1: (max(.1,.5)=.5, .7, 0) -> own ranks 1;
    # clip 2: (max(.3,.4)=.4, .1, .3) -> own set (.3) ranks 2.
    assert metrics["v2t_R@1"] == pytest.approx(2 / 3) and metrics["v2t_R@5"] == 1
    assert metrics["v2t_MdR"] == pytest.approx(1.0) and metrics["v2t_MnR"] == pytest.approx(4 / 3)
    # One caption per clip: the video->text metrics are those of the transpose.
    square = similarity[[0, 2, 3]]
    one_each = retrieval_metrics(square, torch.arange(3))
    transposed = retrieval_metrics(square.T.contiguous(), torch.arange(3))
    assert one_each["v2t_MnR"] == transposed["t2v_MnR"] and one_each["v2t_R@1"] == transposed["t2v_R@1"]


FROZEN_BELOW_BLOCK_0 = (
    "token_embedding", "model.positional_embedding", "visual.conv1", "visual.class_embedding",
    "visual.positional_embedding", "ln_pre",
)  # fmt: skip


def test_parameter_groups_are_the_officials_clip_at_coef_lr_and_no_decay_for_biases():
    method = make("seqTransf", freeze_layer_num=0, lr=1e-4, coef_lr=1e-3)
    groups = method.parameter_groups()
    by_id = {id(p): group for group in groups for p in group["params"]}
    named = dict(method.named_parameters())
    clip_lr, new_lr = pytest.approx(1e-7), pytest.approx(1e-4)
    for name, param in named.items():
        group = by_id.get(id(param))
        # freeze_layer_num 0: the embeddings below block 0 are frozen, every block and the top train
        frozen = any(key in name for key in FROZEN_BELOW_BLOCK_0)
        assert (group is None) == frozen == (not param.requires_grad), name
        if group is None:
            continue
        assert group["lr"] == (clip_lr if name.startswith("model.") else new_lr), name
        assert group["name"] == ("clip" if name.startswith("model.") else "new")
        assert group["weight_decay"] == (0.0 if "bias" in name else 0.2), name  # (logit_scale and ln weights decay)
    assert by_id[id(named["model.logit_scale"])]["weight_decay"] == 0.2
    assert by_id[id(named["temporal.frame_position_embeddings"])]["lr"] == new_lr
    # -1 freezes nothing; the inflated 3D patch trains under freeze_layer_num >= 0 (the official's intent)
    assert sum(len(g["params"]) for g in make("seqTransf", freeze_layer_num=-1).parameter_groups()) == len(named)
    assert make(linear_patch="3d", freeze_layer_num=1).model.visual.conv1.weight.requires_grad
    assert not make(freeze_layer_num=1).model.visual.transformer.resblocks[0].ln_1.weight.requires_grad
    assert make(freeze_layer_num=1).model.visual.transformer.resblocks[1].ln_1.weight.requires_grad


@pytest.mark.parametrize("sim_header", HEADERS)
def test_a_training_step_gives_a_finite_loss_and_gradients_to_clip_and_the_new_modules(sim_header):
    method = make(sim_header, linear_patch="3d" if sim_header == "meanP" else "2d")
    method.loss(batch([4, 2, 3])).backward()
    for name, param in method.named_parameters():
        if param.requires_grad and not name.startswith("model."):
            assert param.grad is not None and param.grad.isfinite().all() and param.grad.any(), name
    if sim_header == "meanP":
        assert method.model.visual.conv1.weight.grad[:, :, 0].any()  # the side taps of the 3D patch learn
    assert method.model.text_projection.grad.any() and method.model.visual.proj.grad.any()


# --- through a Trainer ---------------------------------------------------------------------------------------
def several_captions(lengths: list[int], first_index: int, captions_per_clip: int, seed: int, frames: int) -> dict:
    data = batch(lengths, first_index, seed, frames)
    count = len(lengths) * captions_per_clip
    return data | {
        "text": captions(count, seed + 100), "caption": [f"t{i}" for i in range(count)],
        "text_index": torch.arange(first_index * captions_per_clip, first_index * captions_per_clip + count),
        "text_video_index": data["index"].repeat_interleave(captions_per_clip),
    }  # fmt: skip


@pytest.mark.parametrize("sim_header", ["seqTransf", "tightTransf"])
def test_fit_then_validation_reports_the_metrics_of_the_whole_caption_clip_matrix(sim_header, trainer):
    method = make(sim_header, eval_chunk_size=2)
    with torch.no_grad():
        method.model.logit_scale.fill_(5.0)  # above log 100: clamped after the step
    train = DataLoader([batch([4, 2, 3]), batch([3, 3, 1], seed=1)], batch_size=None)
    # Two captions per clip, clips of different lengths in each batch, batches padded to different frame counts,
    # the later clips (index 3, 4) first.
    val_batches = [several_captions([2, 4], first_index=3, captions_per_clip=2, seed=2, frames=4),
                   several_captions([1, 3, 4], first_index=0, captions_per_clip=2, seed=3, frames=6)]  # fmt: skip
    run = trainer(max_steps=2, num_sanity_val_steps=0, limit_val_batches=2)
    run.fit(method, train, DataLoader(val_batches, batch_size=None))
    assert method.model.logit_scale.item() <= math.log(100) + 1e-6
    assert math.isfinite(run.callback_metrics["train/loss"])
    logged = run.validate(method, DataLoader(val_batches, batch_size=None), verbose=False)[0]
    method.eval()
    with torch.no_grad():  # the whole matrix at once: clips and captions in index order
        order = [1, 0]
        video = [method.encode_video(val_batches[i]["video"], val_batches[i]["frame_mask"]) for i in order]
        text = torch.cat([method.encode_text(val_batches[i]["text"]) for i in order])
        if sim_header == "tightTransf":
            similarity = torch.cat([method.similarity(text, v) for v in video], dim=1)
        else:
            similarity = method.similarity(text, torch.cat(video))
    expected = retrieval_metrics(similarity, torch.arange(5).repeat_interleave(2))
    assert {f"val/{name}" for name in expected} <= logged.keys()
    for name, value in expected.items():
        assert logged[f"val/{name}"] == pytest.approx(float(value)), name


def test_each_evaluation_loader_is_scored_apart_with_its_sets_prefix(trainer):
    """Two loaders numbering their clips from 0 (a data module's split and its held-out compositions): each is
    its own retrieval problem, the second's metrics prefixed with its set's name ("set1_" without a data module)."""
    method = make("meanP")
    first = [batch([4, 2, 3], seed=5)]
    second = [several_captions([3, 1], first_index=0, captions_per_clip=2, seed=6, frames=4)]
    loaders = [DataLoader(first, batch_size=None), DataLoader(second, batch_size=None)]
    both = trainer().validate(method, loaders, verbose=False)[0]
    alone = trainer().validate(method, DataLoader(second, batch_size=None), verbose=False)[0]
    assert "val/loss" in both and "val/set1_loss" not in both  # several captions per clip: no pair loss
    for name in ("t2v_R@1", "t2v_MnR", "v2t_MdR", "v2t_MnR"):
        assert both[f"val/set1_{name}"] == alone[f"val/{name}"], name
    assert both["val/t2v_MnR"] != alone["val/t2v_MnR"] or both["val/v2t_MnR"] != alone["val/v2t_MnR"]


def test_similarity_matrix_and_prediction():
    method = make("seqTransf").eval()
    data = batch([4, 2, 3])
    scores, columns = method.similarity_matrix(data)
    assert scores.shape == (3, 3) and columns == data["caption"]
    prediction = method.predict_step(data, 0)
    torch.testing.assert_close(prediction["video_embedding"].norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(
        method.model.logit_scale.exp() * prediction["video_embedding"] @ prediction["text_embedding"].T, scores
    )
    assert prediction["index"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="no clip or caption embedding"):
        make("tightTransf").predict_step(data, 0)


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown sim_header 'meanp'"):
        make("meanp")
    with pytest.raises(ValueError, match="set cross_num_hidden_layers to at most 2"):
        CLIP4Clip(architecture="ViT-Micro-8", sim_header="seqTransf", cross_num_hidden_layers=4)
    with pytest.raises(ValueError, match="linear_patch='3d' inflates a ViT"):
        CLIP4Clip(architecture="RN-Tiny", linear_patch="3d", freeze_layer_num=-1)
    with pytest.raises(ValueError, match="use freeze_layer_num=-1"):
        CLIP4Clip(architecture="RN-Tiny")
    with pytest.raises(ValueError, match="tightTransf takes clips of at most 15 frames"):
        method = make("tightTransf")
        method.encode_video(*clips([16], frames=16))


@pytest.mark.slow  # two spawned processes import lit_clip: ~10 s on an idle 2-core machine, 30 s on a busy one
def test_two_processes_report_what_one_reports(trainer):
    """Under DDP every clip and caption counts once (the sampler repeats one of the 3 batches on the second
    rank), tightTransf's clips are padded to the longest of any rank's, and each rank scores its share of the
    captions."""
    method = make("tightTransf", eval_chunk_size=2)
    batches = [several_captions([2, 4], first_index=3, captions_per_clip=2, seed=2, frames=4),
               several_captions([1, 3, 4], first_index=0, captions_per_clip=2, seed=3, frames=6),
               several_captions([3], first_index=5, captions_per_clip=2, seed=4, frames=3)]  # fmt: skip
    one = trainer(accelerator="cpu", devices=1).validate(method, DataLoader(batches, batch_size=None), verbose=False)
    two = trainer(accelerator="cpu", devices=2, strategy="ddp_spawn").validate(
        method, DataLoader(batches, batch_size=None), verbose=False
    )
    assert {"val/t2v_R@1", "val/v2t_MnR"} <= one[0].keys()
    assert two == one


def test_load_clip_reads_the_fine_tuned_clip_out_of_a_clip4clip_checkpoint(tmp_path, lit_clip_checkpoint):
    from lit_clip.checkpoints import load_clip

    module = CLIP4Clip(pretrained=str(lit_clip_checkpoint), sim_header="seqTransf", cross_num_hidden_layers=2)
    with torch.no_grad():
        module.model.visual.proj.add_(1.0)  # "fine-tuned"
    checkpoint = {"state_dict": module.state_dict(), "pytorch-lightning_version": "2.5"}  # as Lightning writes it
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "clip4clip.ckpt")
    clip = load_clip(str(tmp_path / "clip4clip.ckpt"))
    torch.testing.assert_close(clip.visual.proj, module.model.visual.proj)
