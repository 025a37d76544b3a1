"""GLIP's formulas on small cases: token spans, ATSS, the focal loss, the fusion's layer scale, chunked prompts, the
inter-image contrastive loss across two gloo processes, the released checkpoints' key map, and bad input."""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import lit_clip
from lit_clip.grounding import check_phrases, names_prompt, positive_map, training_prompt, vocabulary_chunks
from lit_clip.methods.detection.glip import (
    GLIP,
    atss_assign,
    centerness_targets,
    gathered_region_word_loss,
    mask_tokens,
    token_focal_loss,
)
from lit_clip.models.glip import DeformConv3x3, VLFuse, anchors, decode_boxes, encode_boxes, official_key
from lit_clip.models.language import BertBackbone
from lit_clip.tokenizer import default_tokenizer

WORDS = ["red", "blue", "green", "circle", "star", "cross", "a", "small"]


def micro_glip(**kwargs) -> GLIP:
    options = dict(backbone="resnet18", channels=32, text_encoder=None, text_words=WORDS, text_width=32,
                   text_layers=1, text_heads=2, blocks=2, fusion_depth=2, fusion_dim=64, fusion_heads=2,
                   deformable=True, min_size=64, max_size=64, bgr=False, warmup_steps=0)  # fmt: skip
    options.update(kwargs)
    torch.manual_seed(0)
    return GLIP(**options)


def micro_batch(images: int = 2, size: int = 64) -> dict:
    torch.manual_seed(1)
    return {"image": torch.randn(images, 3, size, size), "image_size": torch.tensor([[size, size]] * images),
            "index": torch.arange(images)}  # fmt: skip


# --- token spans --------------------------------------------------------------------------------------------------
def test_token_spans_of_names_follow_the_tokenizers_offsets_including_names_split_into_word_pieces():
    language = BertBackbone(None, WORDS, width=16, layers=1, heads=2)
    prompt = names_prompt(["red stars", "blue cross", "greenish circle"])
    assert prompt.caption == "red stars. blue cross. greenish circle"
    assert [prompt.caption[s:e] for s, e in prompt.spans] == ["red stars", "blue cross", "greenish circle"]
    tokens = language.tokenize([prompt.caption])
    pieces = language.tokenizer.convert_ids_to_tokens(tokens["input_ids"][0])
    found = positive_map(tokens["offsets"][0], prompt.phrases, prompt.caption)
    # "stars" is "star" + "##s"; "greenish" is "green" + "##i" "##s" "##h": every piece belongs to its name.
    assert [p for p, on in zip(pieces, found[0]) if on] == ["red", "star", "##s"]
    assert [p for p, on in zip(pieces, found[1]) if on] == ["blue", "cross"]
    assert [p for p, on in zip(pieces, found[2]) if on] == ["green", "##i", "##s", "##h", "circle"]
    # Each phrase's tokens are exactly those the tokenizer maps its characters to ("." and specials in none).
    encoding = language.tokenizer(prompt.caption)
    for k, (start, end) in enumerate(prompt.spans):
        expected = {encoding.char_to_token(c) for c in range(start, end)} - {None}
        assert set(found[k].nonzero().flatten().tolist()) == expected


def test_clips_tokenizer_gives_each_tokens_characters_and_the_same_ids():
    tokenizer = default_tokenizer()
    for text in ("red circle. blue star. greenish hexagon", "A small Red circle, and two blue stars!"):
        ids, offsets = tokenizer.encode_with_offsets(text)
        assert ids == tokenizer.encode(text)
        pieces = [tokenizer.decode([i]).strip() for i in ids]
        assert [text[start:end].lower() for start, end in offsets] == pieces


def test_a_clip_text_tower_grounds_through_its_tokens_and_trains_in_glip(tmp_path):
    clip_file = tmp_path / "rn-tiny.pt"
    torch.save(lit_clip.create_model("RN-Tiny").state_dict(), clip_file)
    model = micro_glip(text_encoder=str(clip_file), text_encoder_type="clip", text_words=())
    prompt = names_prompt(["red circle", "blue hexagon"])
    tokens = model.language.tokenize([prompt.caption, "a star"])
    found = positive_map(tokens["offsets"][0], prompt.phrases, prompt.caption)
    names = model.language.token_names(tokens["input_ids"][0].tolist())
    assert [n for n, on in zip(names, found[1]) if on] == ["blue", "hex", "agon"]
    assert tokens["attention_mask"][1].tolist() == [1, 1, 1, 1] + [0] * (tokens["input_ids"].shape[1] - 4)
    assert not hasattr(model.language.model, "visual")  # the image tower is not kept
    batch = {**micro_batch(), "caption": [prompt.caption] * 2,
             "targets": [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([1]),
                          "phrases": prompt.phrases, "image_id": i} for i in range(2)]}  # fmt: skip
    losses = model.losses(batch)
    sum(losses.values()).backward()
    assert model.language.model.token_embedding.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="masked language modelling needs a BERT"):
        micro_glip(text_encoder=str(clip_file), text_encoder_type="clip", mlm_loss_weight=1.0)


def test_a_phrase_cut_off_by_the_maximum_length_is_an_error_naming_the_caption():
    language = BertBackbone(None, WORDS, width=16, layers=1, heads=2, max_length=6)
    prompt = names_prompt(["red star", "blue cross", "green circle"])
    tokens = language.tokenize([prompt.caption])
    with pytest.raises(ValueError, match="green circle.*has no token"):
        positive_map(tokens["offsets"][0], prompt.phrases, prompt.caption)
    # In training a phrase may be cut: its row is empty, and the boxes it names are left out.
    assert not positive_map(tokens["offsets"][0], prompt.phrases, prompt.caption, required=False)[2].any()


def test_training_prompts_hold_every_present_class_and_the_drawn_negatives_once():
    import numpy as np

    names = [f"{c} {s}" for c in ("red", "blue", "green") for s in ("circle", "star", "cross")]
    counts = []
    for seed in range(40):
        prompt, phrase_of = training_prompt([4, 1, 4], names, negatives=3, rng=np.random.default_rng(seed))
        assert len(set(prompt.names)) == len(prompt.names)
        assert {prompt.names[phrase_of[c]] for c in (1, 4)} == {names[1], names[4]}
        counts.append(len(prompt.names) - 2)
    # Half the time all 3 negatives, else 1 to 3 drawn uniformly: 3 in about two thirds of the prompts.
    assert set(counts) == {1, 2, 3} and 0.45 < counts.count(3) / len(counts) < 0.9
    assert vocabulary_chunks(names, 4) == [range(0, 4), range(4, 8), range(8, 9)]
    assert vocabulary_chunks(names, None) == [range(9)]


# --- ATSS, boxes, losses ------------------------------------------------------------------------------------------
def test_atss_assigns_the_anchors_passing_mean_plus_std_with_their_centre_inside_by_hand():
    # One level of a 4 x 4 grid (stride 8, anchors 16 px) and one box over the top-left 2 x 2 cells' centres.
    anchor_boxes = anchors([(4, 4)], strides=(8,), scale=2.0)
    box = torch.tensor([[0.0, 0.0, 15.0, 15.0]])
    assigned = atss_assign(anchor_boxes, [16], box, topk=9)
    # By hand: the 9 nearest centres, their IoUs with the box, the threshold mean + std (unbiased).
    centres = (anchor_boxes[:, :2] + anchor_boxes[:, 2:]) / 2
    nearest = ((centres - 7.5) ** 2).sum(1).argsort()[:9]
    lifted = torch.tensor([0, 0, 1, 1.0])
    iou = torch.tensor([_iou(anchor_boxes[i] + lifted, box[0] + lifted) for i in nearest.tolist()])
    threshold = iou.mean() + iou.std()
    inside = (centres[nearest] > 0.01).all(1) & (centres[nearest] < 15 - 0.01).all(1)
    expected = set(nearest[(iou >= threshold) & inside].tolist())
    assert expected and set((assigned == 0).nonzero().flatten().tolist()) == expected
    # Two boxes claiming one anchor: the higher IoU wins.
    two = torch.tensor([[0.0, 0.0, 15.0, 15.0], [0.0, 0.0, 31.0, 31.0]])
    both = atss_assign(anchor_boxes, [16], two, topk=9)
    for i in ((both >= 0).nonzero().flatten().tolist()):
        ious = [_iou(anchor_boxes[i] + lifted, b + lifted) for b in two]
        assert both[i] == max(range(2), key=lambda g: ious[g]) or ious[0] == ious[1]


def _iou(a, b) -> float:
    inter = (torch.minimum(a[2:], b[2:]) - torch.maximum(a[:2], b[:2])).clamp(min=0).prod()
    return float(inter / ((a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter))


def test_box_deltas_round_trip_and_centerness_is_one_at_the_centre():
    anchor_boxes = torch.tensor([[0.0, 0.0, 63.0, 63.0], [10.0, 20.0, 41.0, 35.0]])
    boxes = torch.tensor([[4.0, 6.0, 50.0, 40.0], [12.0, 18.0, 30.0, 40.0]])
    torch.testing.assert_close(decode_boxes(encode_boxes(boxes, anchor_boxes), anchor_boxes), boxes)
    assert centerness_targets(torch.tensor([[0.0, 0.0, 63.0, 63.0]]), anchor_boxes[:1]).item() == pytest.approx(1.0)
    assert centerness_targets(boxes[1:], anchor_boxes[1:]).item() < 1


def test_the_token_focal_loss_is_the_released_formula_over_real_tokens():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 7), (torch.rand(2, 5, 7) > 0.7).float()
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0]])
    # The released token_sigmoid_binary_focal_loss, written out.
    p = logits.sigmoid()
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = 0.25 * targets + 0.75 * (1 - targets)
    loss = alpha_t * F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * (1 - p_t) ** 2
    expected = (loss * mask[:, None, :]).sum()
    torch.testing.assert_close(token_focal_loss(logits, targets, mask, 0.25, 2.0), expected)


def test_masked_language_modelling_masks_only_real_word_pieces_with_berts_rule():
    ids = torch.arange(10, 10 + 4000).reshape(40, 100)
    attention = torch.ones_like(ids)
    attention[:, 90:] = 0
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    masked, labels = mask_tokens(ids, attention, special, mask_id=4, vocab_size=50, probability=0.15,
                                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 90:].any()
    assert 0.12 < chosen[:, 1:90].float().mean() < 0.18
    assert torch.equal(labels[chosen], ids[chosen])
    assert 0.75 < (masked[chosen] == 4).float().mean() < 0.85
    assert torch.equal(masked[~chosen], ids[~chosen])


# --- fusion -------------------------------------------------------------------------------------------------------
def test_fusion_with_layer_scale_zero_leaves_each_modality_untouched_by_the_other():
    fuse = VLFuse(channels=16, text_width=24, embed_dim=32, num_heads=4, init_values=0.0).eval()
    levels = [torch.randn(2, 16, 4, 4), torch.randn(2, 16, 2, 2)]
    text, mask = torch.randn(2, 5, 24), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    fused, fused_text = fuse(levels, text, mask)
    # The released block adds its residual to the layer-normalised features: with the scale at 0 that is all.
    for level, out in zip(levels, fused):
        torch.testing.assert_close(out, F.layer_norm(level.permute(0, 2, 3, 1), (16,)).permute(0, 3, 1, 2))
    torch.testing.assert_close(fused_text, F.layer_norm(text, (24,)))
    fuse.b_attn.gamma_v.data.fill_(1.0)
    changed, _ = fuse(levels, torch.randn(2, 5, 24), mask)
    assert not torch.allclose(changed[0], fused[0])


def test_padding_tokens_do_not_reach_the_image():
    fuse = VLFuse(channels=16, text_width=24, embed_dim=32, num_heads=4, init_values=1.0).eval()
    levels, text = [torch.randn(1, 16, 3, 3)], torch.randn(1, 5, 24)
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    other = text.clone()
    other[:, 3:] = torch.randn(1, 2, 24)
    torch.testing.assert_close(fuse(levels, text, mask)[0][0], fuse(levels, other, mask)[0][0])


def test_a_nan_offset_gives_nan_not_a_segfault():
    """torchvision's deformable kernel reads outside the image at a NaN offset: this crashed a CI worker."""
    conv = DeformConv3x3(8, 8, stride=1, deformable=True, groups=4)
    x, mask = torch.randn(1, 8, 16, 16), torch.rand(1, 9, 16, 16)
    offset = torch.zeros(1, 18, 16, 16)
    offset[:, :, 4:8, 4:8] = float("nan")
    finite = conv(x, offset, mask)
    assert torch.isfinite(finite).all()  # sampled unmoved where the offset was NaN
    mask[:, :, 4:8, 4:8] = float("nan")  # a diverged offset convolution gives a NaN mask too: it shows
    assert conv(x, offset, mask).isnan().any()


# --- inference ----------------------------------------------------------------------------------------------------
def test_a_long_vocabulary_split_into_prompts_scores_each_chunk_as_its_own_prompt():
    model = micro_glip(score_threshold=0.0, detections_per_image=1000).eval()
    names = ["red circle", "blue star", "green cross", "small red star", "a blue circle"]
    batch = micro_batch()
    with torch.no_grad():
        model.hparams.names_per_prompt = None
        whole = model.detect(batch, names)
        model.hparams.names_per_prompt = 10  # the vocabulary fits: the same single prompt
        torch.testing.assert_close(model.detect(batch, names)[0]["scores"], whole[0]["scores"])
        model.hparams.names_per_prompt = 3
        split = model.detect(batch, names)
        model.hparams.names_per_prompt = None
        second = model.detect(batch, names[3:])
    # The second prompt's detections are those of the names 3-4 alone, labelled after the first prompt's 3 names.
    for found, alone in zip(split, second):
        mine = found["labels"] >= 3
        torch.testing.assert_close(found["scores"][mine], alone["scores"])
        torch.testing.assert_close(found["labels"][mine], alone["labels"] + 3)
    assert all(len(found["labels"]) > 0 for found in split)


def test_training_steps_lower_every_loss_term_and_glipv2_terms_are_logged():
    model = micro_glip(region_word_loss_weight=1.0, mlm_loss_weight=1.0)
    prompt = names_prompt(["red circle", "blue star"])
    batch = {**micro_batch(), "caption": [prompt.caption] * 2,
             "targets": [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0], [34.0, 30.0, 60.0, 62.0]]),
                          "labels": torch.tensor([0, 1]), "phrases": prompt.phrases, "image_id": i}
                         for i in range(2)]}  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(8):
        losses = model.losses(batch)
        first = first or {k: v.item() for k, v in losses.items()}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert set(first) == {"token_loss", "box_loss", "centerness_loss", "region_word_loss", "mlm_loss"}
    last = {k: v.item() for k, v in model.losses(batch).items()}
    for name in ("token_loss", "box_loss", "region_word_loss"):
        assert last[name] < first[name], name


# --- GLIPv2's inter-image loss under DDP --------------------------------------------------------------------------
def _region_word_case():
    torch.manual_seed(0)
    tokens = torch.randn(4, 6, 8, requires_grad=True)
    text_mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    regions = torch.randn(7, 8, requires_grad=True)
    region_image = torch.tensor([0, 0, 1, 2, 2, 3, 3])
    region_tokens = torch.zeros(7, 6, dtype=torch.bool)
    for p, (start, end) in enumerate([(1, 2), (2, 4), (1, 3), (1, 2), (2, 3), (3, 5), (1, 2)]):
        region_tokens[p, start:end] = True
    return regions, region_image, region_tokens, tokens, text_mask


def _region_word_worker(rank, init_file, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        regions, region_image, region_tokens, tokens, text_mask = _region_word_case()
        mine = (region_image >= 2 * rank) & (region_image < 2 * rank + 2)
        # Each process's prompts are as long as its own longest: rank 0 pads to 6, rank 1's cut to 5 then re-padded.
        length = 6 if rank == 0 else 5
        local_tokens = tokens[2 * rank : 2 * rank + 2, :length]
        loss = gathered_region_word_loss(regions[mine], region_image[mine] - 2 * rank, region_tokens[mine, :length],
                                         local_tokens, text_mask[2 * rank : 2 * rank + 2, :length],
                                         torch.tensor(1.0))  # fmt: skip
        grads = torch.autograd.grad(loss, [regions, tokens])
        for g in grads:  # DDP averages gradients over processes
            dist.all_reduce(g)
            g /= 2
        dist.all_reduce(loss.detach_())
        results[rank] = (loss / 2, grads)
    finally:
        dist.destroy_process_group()


def test_the_inter_image_loss_under_two_gloo_processes_equals_one_process_with_the_whole_batch(tmp_path):
    regions, region_image, region_tokens, tokens, text_mask = _region_word_case()
    single = gathered_region_word_loss(regions, region_image, region_tokens, tokens, text_mask, torch.tensor(1.0))
    expected = torch.autograd.grad(single, [regions, tokens])
    # By hand for region 0: its phrase's one token against all 19 real tokens of the batch.
    logits = regions[0] @ tokens.flatten(0, 1).T
    logits = logits.masked_fill(~text_mask.bool().flatten(), -math.inf)
    assert single.item() > 0 and math.isfinite(single.item())
    assert (-logits.log_softmax(-1)[1]).item() > 0
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_region_word_worker, args=(str(tmp_path / "init"), results), nprocs=2)
        results = dict(results)
    for rank in range(2):
        loss, grads = results[rank]
        torch.testing.assert_close(loss, single.detach(), rtol=1e-5, atol=1e-6)
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


# --- released checkpoints and bad input ---------------------------------------------------------------------------
def official_glip_t_keys(blocks: int, swin_depths=(2, 2, 6, 2)) -> list[str]:
    """The keys of a released GLIP-T checkpoint, written from the official module tree (GeneralizedVLRCNN: a Swin-T
    body, an FPN with fpn_inner/fpn_layer 2-4 and P6/P7 top blocks, BERT, the VLDyHead), ``blocks`` DyHead blocks."""
    keys = ["backbone.body.patch_embed.proj.weight", "backbone.body.patch_embed.proj.bias",
            "backbone.body.patch_embed.norm.weight", "backbone.body.patch_embed.norm.bias"]  # fmt: skip
    block = ["norm1.weight", "norm1.bias", "attn.relative_position_bias_table", "attn.relative_position_index",
             "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
             "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]  # fmt: skip
    for s, depth in enumerate(swin_depths):
        keys += [f"backbone.body.layers.{s}.blocks.{j}.{name}" for j in range(depth) for name in block]
        if s < 3:
            keys += [f"backbone.body.layers.{s}.downsample.{n}"
                     for n in ("reduction.weight", "norm.weight", "norm.bias")]  # fmt: skip
    keys += [f"backbone.body.norm{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]
    keys += [f"backbone.fpn.{kind}{i}.{p}" for kind in ("fpn_inner", "fpn_layer") for i in (2, 3, 4)
             for p in ("weight", "bias")]  # fmt: skip
    keys += [f"backbone.fpn.top_blocks.{n}.{p}" for n in ("p6", "p7") for p in ("weight", "bias")]
    bert_layer = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                  "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"]  # fmt: skip
    keys += [f"language_backbone.body.model.embeddings.{n}.weight" for n in ("word_embeddings",
             "position_embeddings", "token_type_embeddings")]  # fmt: skip
    keys += ["language_backbone.body.model.embeddings.LayerNorm.weight",
             "language_backbone.body.model.embeddings.LayerNorm.bias"]  # fmt: skip
    keys += [f"language_backbone.body.model.encoder.layer.0.{n}.{p}" for n in bert_layer for p in ("weight", "bias")]
    fuse = ["gamma_v", "gamma_l", *(f"{n}.{p}" for n in ("layer_norm_v", "layer_norm_l") for p in ("weight", "bias")),
            *(f"attn.{n}.{p}" for n in ("v_proj", "l_proj", "values_v_proj", "values_l_proj", "out_v_proj",
                                        "out_l_proj") for p in ("weight", "bias"))]  # fmt: skip
    dyconv = [*(f"DyConv.{i}.{m}.{p}" for i in range(3) for m in ("conv", "bn") for p in ("weight", "bias")),
              "AttnConv.1.weight", "AttnConv.1.bias", "relu.fc.0.weight", "relu.fc.0.bias", "relu.fc.2.weight",
              "relu.fc.2.bias", "offset.weight", "offset.bias"]  # fmt: skip
    for i in range(blocks):
        keys += [f"rpn.head.dyhead_tower.{3 * i}.b_attn.{n}" for n in fuse]
        keys += [f"rpn.head.dyhead_tower.{3 * i + 1}.{n}.{p}" for n in bert_layer for p in ("weight", "bias")]
        keys += [f"rpn.head.dyhead_tower.{3 * i + 2}.{n}" for n in dyconv]
    keys += [f"rpn.head.{n}.{p}" for n in ("cls_logits", "bbox_pred", "centerness", "dot_product_projection_text")
             for p in ("weight", "bias")]  # fmt: skip
    keys += ["rpn.head.log_scale", "rpn.head.bias_lang", "rpn.head.bias0", *(f"rpn.head.scales.{i}.scale" for i in
             range(5)), *(f"rpn.anchor_generator.cell_anchors.{i}" for i in range(5))]  # fmt: skip
    return ["module." + key for key in keys]


@pytest.fixture(scope="module")
def swin_glip():
    return micro_glip(backbone="swin_tiny_patch4_window7_224", channels=32, min_size=224, max_size=224)


def test_the_released_glip_t_layout_maps_onto_every_parameter(swin_glip):
    own = swin_glip.state_dict()
    mapped = [official_key(key) for key in official_glip_t_keys(blocks=2)]
    used = [key for key in mapped if key is not None]
    assert len(used) == len(set(used)) and set(used) == set(own) - {k for k in own if k.startswith("mlm_head.")}


def test_a_released_checkpoint_loads_and_a_wrong_one_is_named(swin_glip, tmp_path):
    own = swin_glip.state_dict()
    reverse = {official_key(key): key for key in official_glip_t_keys(blocks=2)}
    checkpoint = {"model": {reverse[name]: torch.randn_like(value.float()).to(value.dtype)
                            for name, value in own.items()}}  # fmt: skip
    checkpoint["model"]["module.rpn.head.cls_logits.weight"] = torch.zeros(80, 32, 1, 1)
    path = tmp_path / "glip_tiny.pth"
    torch.save(checkpoint, path)
    swin_glip.load_official(str(path))
    torch.testing.assert_close(swin_glip.head.bias0, checkpoint["model"]["module.rpn.head.bias0"])
    torch.testing.assert_close(swin_glip.pyramid.body.layers_1.downsample.reduction.weight,
                               checkpoint["model"]["module.backbone.body.layers.0.downsample.reduction.weight"])
    del checkpoint["model"]["module.rpn.head.bias0"]
    checkpoint["model"]["module.rpn.head.bias_lang"] = torch.zeros(5)
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"glip_tiny.pth does not fit.*1 of another shape.*head.bias_lang.*1 missing"):
        swin_glip.load_official(str(path))


def test_bad_grounding_input_is_named():
    with pytest.raises(ValueError, match=r"scene 3: phrase 1's span \(5, 40\) is outside its caption"):
        check_phrases("a red circle", [[(2, 5)], [(5, 40)]], [0, 1], "scene 3")
    with pytest.raises(ValueError, match=r"box 1 grounds phrase 2, but the caption has 2 phrases"):
        check_phrases("a red circle. a star", [[(2, 12)], [(16, 20)]], [0, 2], "file.json: image 7")
    with pytest.raises(ValueError, match="fusion_depth must be in"):
        micro_glip(fusion_depth=3)


def test_the_swin_shifts_every_odd_block_and_pads_before_rolling_as_the_released_swin(swin_glip):
    from timm.models.swin_transformer import SwinTransformerBlock

    from lit_clip.models.glip import ReleasedOrderSwinBlock

    blocks = [m for m in swin_glip.pyramid.body.modules() if isinstance(m, SwinTransformerBlock)]
    assert blocks and all(type(block) is ReleasedOrderSwinBlock for block in blocks)
    last_stage = swin_glip.pyramid.body.layers_3.blocks
    assert tuple(last_stage[1].shift_size) == (3, 3)  # timm alone would drop it: 7 x 7 fits one window at 224 px
    block = blocks[1].eval()
    x = torch.randn(1, 12, 10, block.norm1.normalized_shape[0])  # sides not multiples of the window
    with torch.no_grad():
        ours = block._attn(x)
        # The released order: zeros to the window multiple first, then the shifted windows over that canvas.
        canvas = torch.zeros(1, 14, 14, x.shape[-1])
        canvas[:, :12, :10] = x
        released = SwinTransformerBlock._attn(block, canvas)[:, :12, :10]
        timm_order = SwinTransformerBlock._attn(block, x)
    torch.testing.assert_close(ours, released)
    assert not torch.allclose(ours, timm_order, atol=1e-4)  # timm rolls first: other rows wrap into the windows
