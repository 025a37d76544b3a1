"""GroupViT's methods: pretraining with the multi-label loss, and the released zero-shot segmentation pipeline on
small cases by hand (the model itself is tested in test_groupvit_model.py)."""
import math

import pytest
import torch
import torch.nn.functional as F
from lit_clip.datamodules import ShapesWorldCaptions

import lit_clip
from lit_clip.methods import GroupViTPretraining, GroupViTSegmentation
from lit_clip.models.groupvit import Groups

LABELS = ("background", "cat", "dog")


@pytest.fixture(scope="module")
def micro_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("groupvit") / "micro.pt"
    torch.save(lit_clip.create_model("GroupViT-Micro").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)  # the loader's order and the noun prompts draw from torch's generator: not the earlier tests'
    data = ShapesWorldCaptions(noun_prompts=3, noun_tagger="rules", batch_size=8, train_samples=8, max_objects=3)
    return next(iter(data.train_dataloader()))


# --- pretraining -------------------------------------------------------------------------------------------
def test_loss_terms_are_infonce_and_the_weighted_multi_label_loss(batch):
    torch.manual_seed(0)
    method = GroupViTPretraining(multi_label_weight=0.5)
    batch = method.on_before_batch_transfer(dict(batch), 0)
    assert batch["text"].shape[1] == batch["noun_text"].shape[2] < 32  # trimmed together, to one length
    terms = method.loss_terms(batch)
    assert set(terms) == {"contrastive_loss", "multi_label_loss"}
    # An untrained model is near chance: ln 8 = 2.08 for InfoNCE over 8 pairs.
    assert 1.5 < terms["contrastive_loss"] < 3.0 and terms["multi_label_loss"] > 0
    alone = GroupViTPretraining(multi_label_weight=0.0)
    assert set(alone.loss_terms(batch)) == {"contrastive_loss"}


def test_the_multi_label_loss_needs_noun_prompts(batch):
    method = GroupViTPretraining()
    without = {key: value for key, value in batch.items() if key != "noun_text"}
    with pytest.raises(ValueError, match="noun_prompts: 3"):
        method.loss_terms(without)


def test_training_in_bf16_stays_finite_and_moves_both_logit_scales(batch):
    """The official repo's NaN losses (its issue #43) came with mixed precision."""
    torch.manual_seed(0)
    method = GroupViTPretraining(lr=1e-2)
    optimizer = method.build_optimizer(fused=False)
    batch = method.on_before_batch_transfer(dict(batch), 0)
    scales = method.model.logit_scale.item(), method.model.multi_label_logit_scale.item()
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = sum(method.loss_terms(batch).values())
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert method.model.logit_scale.item() != scales[0] and method.model.multi_label_logit_scale.item() != scales[1]


def test_the_official_weight_decay_groups():
    """set_weight_decay: vectors and biases undecayed; positions, group tokens and the 0-d logit scales decayed."""
    method = GroupViTPretraining()
    decayed, undecayed = (set(map(id, group["params"])) for group in method.build_optimizer(fused=False).param_groups)
    names = dict(method.model.named_parameters())
    for name in ("logit_scale", "multi_label_logit_scale", "visual.pos_embed", "visual.stages.0.group_token"):
        assert id(names[name]) in decayed, name
    assert all(id(p) in undecayed for n, p in names.items() if p.ndim == 1 or n.endswith(".bias"))


def test_a_clip_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a GroupViT"):
        GroupViTPretraining(architecture="RN-Tiny")


# --- zero-shot segmentation: the released pipeline by hand ----------------------------------------------------
def hand_segmenter(micro_file, group_embeddings, image_embedding, **kwargs) -> GroupViTSegmentation:
    """A GroupViTSegmentation over LABELS whose model gives, for any 4 x 4 image, two groups on a 2 x 2 patch grid:
    the top patch row mostly in group 0, the bottom row in group 1; cat's text is e1, dog's e2; scale 10."""
    segmenter = GroupViTSegmentation(str(micro_file), architecture="GroupViT-Micro", **kwargs)
    assignment = torch.tensor([[[0.9, 0.9, 0.2, 0.2], [0.1, 0.1, 0.8, 0.8]]])  # [B, G, patches]
    groups = Groups(group_embeddings[None], image_embedding[None], [assignment], [assignment.round()], (2, 2))
    segmenter.model.encode_groups = lambda images: groups
    segmenter.model.logit_scale.data.fill_(math.log(10))
    segmenter.classnames, segmenter.background = LABELS, 0
    texts = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T  # [D, labels]: background, cat, dog
    segmenter.register_buffer("text_classifier", texts, persistent=False)
    return segmenter


E1, E2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])


def test_groups_are_named_by_the_product_of_their_softmaxes(micro_file):
    segmenter = hand_segmenter(micro_file, torch.stack([E1, E2]), E1 + 0.5 * E2)
    scores = segmenter(torch.zeros(1, 3, 4, 4))
    sharp = torch.softmax(torch.tensor([10.0, 0.0]), dim=0) ** 2  # masked softmax (both kept) x plain softmax
    torch.testing.assert_close(scores[0, 1:, 0, 0], sharp)  # top half: group 0 = cat
    torch.testing.assert_close(scores[0, 1:, 3, 0], sharp.flip(0))  # bottom half: group 1 = dog
    assert scores[0, 0].sum() == 0  # both groups confident: no background
    assert segmenter.predict_masks(torch.zeros(1, 3, 4, 4))[0].tolist() == [[1] * 4] * 2 + [[2] * 4] * 2


def test_background_below_the_threshold_and_the_image_s_top_classes(micro_file):
    """Group 1 halfway between cat and dog: each gets 0.5 x 0.5 = 0.25 < 0.3, so its pixels are background. With
    only the image's top class (cat) as candidate, the group's score is 1 x 0.5, above the threshold: cat."""
    between = F.normalize(E1 + E2, dim=0)
    both = hand_segmenter(micro_file, torch.stack([E1, between]), E1 + 0.5 * E2, background_threshold=0.3)
    assert both.predict_masks(torch.zeros(1, 3, 4, 4))[0].tolist() == [[1] * 4] * 2 + [[0] * 4] * 2
    top1 = hand_segmenter(micro_file, torch.stack([E1, between]), E1 + 0.5 * E2, background_threshold=0.3,
                          top_classes=1)  # fmt: skip
    assert top1.predict_masks(torch.zeros(1, 3, 4, 4))[0].tolist() == [[1] * 4] * 4


def test_the_threshold_is_capped_by_the_image_s_best_group_score(micro_file):
    """No group reaches 0.95 (each ~0.25): min(0.95, 0.25) lets the best groups stay foreground, as the code's
    ``min(bg_thresh, group_affinity_mat.max())``."""
    between = F.normalize(E1 + E2, dim=0)
    segmenter = hand_segmenter(micro_file, torch.stack([between, between]), E1, background_threshold="voc")
    assert segmenter.background_threshold == 0.95
    assert (segmenter.predict_masks(torch.zeros(1, 3, 4, 4)) != 0).all()


def test_named_thresholds_and_a_wrong_one(micro_file):
    assert GroupViTSegmentation(str(micro_file), background_threshold="context").background_threshold == 0.35
    with pytest.raises(ValueError, match="background_threshold"):
        GroupViTSegmentation(str(micro_file), background_threshold="ade")


def test_mmseg_slide_windows_cover_the_image_and_are_averaged(micro_file):
    segmenter = GroupViTSegmentation(str(micro_file), test_window=4, test_stride=3)
    segmenter.classnames = LABELS
    windows = []

    def scores(images):
        windows.append(tuple(images.shape[-2:]))
        return torch.ones(images.shape[0], len(LABELS), *images.shape[-2:]) * len(windows)

    segmenter.scores = scores
    averaged = segmenter(torch.zeros(1, 3, 6, 5))
    # rows: (6 - 4 + 2) // 3 + 1 = 2 windows, the last moved back to rows 2-5; columns: (5 - 4 + 2) // 3 + 1 = 2
    assert windows == [(4, 4)] * 4
    assert averaged[0, 0, 0, 0] == 1 and averaged[0, 0, 5, 4] == 4 and averaged[0, 0, 3, 2] == (1 + 2 + 3 + 4) / 4
