"""ActionCLIP: the KL loss against the "same label" matrix, the fusions, template-averaged evaluation, the optimiser's
groups and a training run on ShapesWorld clips, all on micro CLIPs."""
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from lit_clip.datamodules.shapesworld.clips import MOTIONS
from lit_clip.datamodules.shapesworld.video import ShapesWorldVideo
from torch import nn

from lit_clip.methods.video.actionclip import (
    FUSIONS,
    ActionCLIP,
    TemporalFusion,
    actionclip_loss,
    gather_batch,
    same_label_target,
    template_averaged_probabilities,
)
from lit_clip.methods.video.frames import masked_mean
from lit_clip.templates import ACTIONCLIP_TEMPLATES, fill_template, resolve_templates
from lit_clip.tokenizer import tokenize


def micro_video(**kwargs) -> ShapesWorldVideo:
    options = dict(task="recognition", image_size=32, clip_frames=4, train_samples=8, val_samples=4, test_samples=4,
                   batch_size=4, context_length=16)  # fmt: skip
    return ShapesWorldVideo(**options | kwargs)


def test_the_16_official_templates_are_a_named_set():
    assert resolve_templates("actionclip") == list(ACTIONCLIP_TEMPLATES)
    assert len(ACTIONCLIP_TEMPLATES) == 16 and ACTIONCLIP_TEMPLATES[7] == "{}"
    assert fill_template(ACTIONCLIP_TEMPLATES[11], "abseiling") == "Can you recognize the action of abseiling?"


def test_kl_target_of_a_batch_with_repeated_labels_by_hand():
    # Clips 0 and 2 share label 5, clip 1 and 3 have labels of their own: G = [[1,0,1,0],[0,1,0,0],[1,0,1,0],[0,0,0,1]].
    target = same_label_target(torch.tensor([5, 3, 5, 7]))
    e = math.exp(10)
    two, one = 2 * e + 2, e + 3  # row sums of exp(10 G) with two and one same-label entries
    expected = torch.tensor([
        [e / two, 1 / two, e / two, 1 / two],
        [1 / one, e / one, 1 / one, 1 / one],
        [e / two, 1 / two, e / two, 1 / two],
        [1 / one, 1 / one, 1 / one, e / one],
    ])  # fmt: skip
    torch.testing.assert_close(target, expected, rtol=1e-6, atol=0)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")  # what the official KLDivLoss computes
def test_loss_by_hand_and_as_the_official_kl_loss():
    torch.manual_seed(0)
    video, text, labels, scale = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([1, 1, 0]), torch.tensor(2.0)
    v, t = F.normalize(video, dim=-1), F.normalize(text, dim=-1)
    logits = [[2.0 * float(v[i] @ t[j]) for j in range(3)] for i in range(3)]
    gt = [[1.0 if labels[i] == labels[j] else 0.0 for j in range(3)] for i in range(3)]

    def kl_rows(rows):
        total = 0.0
        for i in range(3):
            p = [math.exp(x) / sum(math.exp(y) for y in rows[i]) for x in rows[i]]
            q = [math.exp(10 * g) / sum(math.exp(10 * h) for h in gt[i]) for g in gt[i]]
            total += sum(qj * math.log(qj / pj) for qj, pj in zip(q, p))
        return total / 3  # the KL summed over the matrix, divided by the batch

    transposed = [[logits[j][i] for j in range(3)] for i in range(3)]
    expected = (kl_rows(logits) + kl_rows(transposed)) / 2
    loss = actionclip_loss(video, text, labels, scale)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # The official KLLoss: nn.KLDivLoss's mean over the entries, times the batch size.
    official = nn.KLDivLoss(reduction="mean")  # (size_average=True, reduce=True)
    matrix, target = 2.0 * v @ t.T, (10 * torch.tensor(gt)).softmax(dim=1)
    both = official(matrix.log_softmax(1), target) * 3 + official(matrix.T.log_softmax(1), target) * 3
    assert loss.item() == pytest.approx(both.item() / 2, rel=1e-5)


# Two processes hold 4 clips each (or rank 1 only 1: bad samples left out); labels repeat across the ranks.
LABELS, LOCAL, KEPT = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0]), 4, {"equal": (4, 4), "unequal": (4, 1)}


def loss_and_grads(rows, batch_rows=None):
    generator = torch.Generator().manual_seed(0)
    videos, texts = torch.randn(8, 6, generator=generator), torch.randn(8, 5, generator=generator)
    torch.manual_seed(0)
    towers = nn.ModuleDict({"video": nn.Linear(6, 8), "text": nn.Linear(5, 8)})
    scale = nn.Parameter(torch.tensor(1.5))
    features = gather_batch(towers["video"](videos[rows]), towers["text"](texts[rows]), LABELS[rows], batch_rows)
    loss = actionclip_loss(*features, scale.exp())
    params = [*towers.parameters(), scale]
    return loss.detach(), list(torch.autograd.grad(loss, params))


def ddp_worker(rank, init_file, results):
    """The loss and gradients on this rank, averaged over the ranks as DDP averages them."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        for case, kept in KEPT.items():
            rows = list(range(rank * LOCAL, rank * LOCAL + kept[rank]))
            loss, grads = loss_and_grads(rows, LOCAL if case == "unequal" else None)
            for value in (loss, *grads):
                dist.all_reduce(value)
                value /= 2
            results[(rank, case)] = (loss, grads)
    finally:
        dist.destroy_process_group()


def test_two_processes_compute_the_loss_of_the_global_batch(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(ddp_worker, args=(str(tmp_path / "init"), results), nprocs=2)
        results = dict(results)
    for case, kept in KEPT.items():
        real = [*range(kept[0]), *range(LOCAL, LOCAL + kept[1])]
        single_loss, single_grads = loss_and_grads(real)
        for rank in range(2):
            loss, grads = results[(rank, case)]
            torch.testing.assert_close(loss, single_loss)
            for g, expected in zip(grads, single_grads):
                torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", FUSIONS)
def test_each_fusion_keeps_shapes_and_ignores_padding_frames(kind):
    torch.manual_seed(0)
    fusion = TemporalFusion(kind, width=16, layers=2, heads=2, max_frames=8, num_frames=6).eval()
    features = torch.randn(3, 5, 16)
    lengths = [5, 3, 1]
    frame_mask = torch.arange(5) < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        out = fusion(features, frame_mask)
        assert out.shape == (3, 16)
        noisy = features + 100 * (~frame_mask).unsqueeze(-1) * torch.randn_like(features)
        torch.testing.assert_close(fusion(noisy, frame_mask), out)
        for b, length in enumerate(lengths):  # a padded clip is the clip of its real frames alone
            alone = fusion(features[b : b + 1, :length], torch.ones(1, length, dtype=torch.bool))
            torch.testing.assert_close(alone[0], out[b], rtol=1e-5, atol=1e-5)
    if kind != "meanP":
        assert not torch.allclose(out, masked_mean(features, frame_mask))


def test_transf_with_a_zeroed_residual_branch_is_meanp():
    torch.manual_seed(0)
    fusion = TemporalFusion("Transf", width=16, layers=3, heads=2).eval()
    with torch.no_grad():
        for block in fusion.transformer.resblocks:
            for linear in (block.attn.out_proj, block.mlp.c_proj):
                linear.weight.zero_()
                linear.bias.zero_()
        fusion.frame_position_embeddings.weight.zero_()
        features, frame_mask = torch.randn(2, 4, 16), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
        out = fusion(features, frame_mask)
    # x + transformer(x) with every block adding nothing: twice the mean, the same direction as meanP's.
    torch.testing.assert_close(out, 2 * masked_mean(features, frame_mask))
    torch.testing.assert_close(F.normalize(out, dim=-1), F.normalize(masked_mean(features, frame_mask), dim=-1))


def test_conv1d_starts_as_the_official_temporal_shift():
    fusion = TemporalFusion("Conv1D", width=8)
    x = torch.randn(1, 3, 8)
    with torch.no_grad():
        out = fusion(x, torch.ones(1, 3, dtype=torch.bool))
    previous = torch.cat([torch.zeros(1, 1, 8), x[:, :-1]], dim=1)
    following = torch.cat([x[:, 1:], torch.zeros(1, 1, 8)], dim=1)
    shifted = torch.cat([previous[..., :2], x[..., 2:6], following[..., 6:]], dim=-1)  # quarter, half, quarter
    torch.testing.assert_close(out, (x + shifted).mean(dim=1))


def test_template_averaging_by_hand():
    torch.manual_seed(0)
    video = F.normalize(torch.randn(2, 4), dim=-1)
    classifiers = F.normalize(torch.randn(3, 4, 5), dim=1)  # 3 templates, 5 classes
    expected = torch.zeros(2, 5)
    for t in range(3):  # the official test.py: similarity per template, softmax over the classes, mean over templates
        expected += (100.0 * video @ classifiers[t]).softmax(dim=-1) / 3
    torch.testing.assert_close(template_averaged_probabilities(video, classifiers, 100.0), expected)
    assert not torch.allclose(expected, (100.0 * video @ F.normalize(classifiers.mean(0), dim=0)).softmax(-1))


def test_the_fusion_trains_ten_times_faster_in_its_own_group():
    model = ActionCLIP(architecture="ViT-Micro-8", fusion="Transf", fusion_layers=1)
    optimizer = model.build_optimizer()
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert [g["lr"] for g in groups.values()] == [5e-6, 5e-6, 5e-5]
    assert all(g["weight_decay"] == 0.2 and g["betas"] == (0.9, 0.98) and g["eps"] == 1e-8 for g in groups.values())
    ids = {name: {id(p) for p in group["params"]} for name, group in groups.items()}
    assert ids["fusion"] == {id(p) for p in model.fusion.parameters()}
    assert ids["image"] == {id(p) for p in model.model.visual.parameters()}
    assert id(model.model.logit_scale) in ids["text"]
    assert sum(len(i) for i in ids.values()) == len({id(p) for p in model.parameters()})
    frozen = ActionCLIP(architecture="ViT-Micro-8", fusion="meanP", freeze_text=True)
    groups = {group["name"]: group for group in frozen.build_optimizer().param_groups}
    assert list(groups) == ["text", "image"]  # meanP has no parameters
    assert groups["text"]["params"] == [frozen.model.logit_scale]  # the text tower frozen, the scale trains


def test_a_training_step_has_a_finite_loss_and_gradients():
    torch.manual_seed(0)
    data = micro_video()
    model = ActionCLIP(architecture="ViT-Micro-8", fusion="Transf", fusion_layers=2)
    batch = next(iter(data.val_dataloader()[0]))
    batch["text"] = tokenize(
        [fill_template(data.templates[0], data.classnames[label]) for label in batch["label"].tolist()], 16
    )
    loss = model.training_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.fusion.transformer.resblocks[0].mlp.c_fc.weight.grad.abs().sum() > 0


def test_fit_draws_prompts_warms_up_in_epochs_and_evaluates_per_template(trainer):
    torch.manual_seed(0)
    data = micro_video(held_out=("star moving left",))
    model = ActionCLIP(architecture="ViT-Micro-8", fusion="LSTM", warmup_epochs=1)
    run = trainer(max_epochs=2, limit_val_batches=1, num_sanity_val_steps=0)
    run.fit(model, data)
    metrics = run.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and {"val/top1", "val/top5", "val/heldout_top1"} <= set(metrics)
    assert model.warmup_length() == 2  # 2 batches an epoch
    lrs = {group["name"]: group["initial_lr"] for group in run.optimizers[0].param_groups}
    assert lrs["fusion"] == pytest.approx(10 * lrs["text"])

    # Training prompts: each label's class name in one of the templates.
    labels = torch.tensor([0, 3, 6])
    drawn = model.prompt_tokens(labels)
    for row, label in zip(drawn, labels.tolist()):
        options = tokenize([fill_template(t, data.classnames[label]) for t in data.templates], 16)[:, : drawn.shape[1]]
        assert (options == row).all(dim=1).any()

    # Evaluation: the official test.py by hand, per template, and views averaged.
    model.eval()
    batch = next(iter(data.val_dataloader()[0]))
    with torch.no_grad():
        probabilities, names = model.similarity_matrix(batch)
        video = F.normalize(model.encode_video(batch["video"], batch["frame_mask"]), dim=-1)
        expected = torch.zeros(len(video), len(MOTIONS))
        for template in data.templates:
            tokens = tokenize([fill_template(template, name) for name in MOTIONS], 16)
            text = F.normalize(model.model.encode_text(tokens), dim=-1)
            expected += (100.0 * video @ text.T).softmax(dim=-1) / len(data.templates)
        flipped = batch["video"].flip(-1)
        two_views = {"video": torch.stack([batch["video"], flipped], dim=1),
                     "frame_mask": torch.stack([batch["frame_mask"]] * 2, dim=1)}  # fmt: skip
        one, other = model.class_probabilities(batch), model.class_probabilities({"video": flipped})
        both = model.class_probabilities(two_views)
    assert names == list(MOTIONS)
    torch.testing.assert_close(probabilities, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(both, (one + other) / 2)
    with torch.no_grad():
        prediction = model.predict_step(batch, 0)
        queries = model.predict_step({"text": tokenize(["a shape moving left."], 16), "caption": ["left"]}, 0)
    assert prediction["video_embedding"].shape == (4, 32) and prediction["probabilities"].shape == (4, len(MOTIONS))
    assert prediction["predicted_class"][0] == MOTIONS[int(expected[0].argmax())]
    torch.testing.assert_close(prediction["video_embedding"], video)
    assert queries.keys() == {"text_embedding", "caption"} and queries["text_embedding"].shape == (1, 32)
