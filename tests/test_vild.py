"""ViLD: the text classifier with its background, the ensemble's geometric mean, the distillation loss, class-agnostic
boxes, vocabularies in any order, the region cache and its builder, and the whole chain on ShapesWorld."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lit_clip.datamodules import ShapesWorldDetection
from PIL import Image

import lit_clip
from lit_clip.cli import main
from lit_clip.methods.detection import vild_cache
from lit_clip.methods.detection.vild import ViLD, distillation_loss
from lit_clip.region_cache import RegionCache, module_fingerprint
from lit_clip.transforms import clip_eval_transform

ROOT = Path(__file__).resolve().parents[1]
MICRO = dict(backbone="resnet18", fpn_channels=16, head_convs=1, head_fcs=1, head_fc=32, min_size=64, max_size=64,
             anchor_sizes=(8, 16, 32, 64, 128), proposals_per_image=20, proposals_before_nms=50,
             roi_samples_per_image=16, score_threshold=0.0, detections_per_image=50)  # fmt: skip
NAMES = ["red circle", "blue square", "green star"]


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "rn_tiny.pt"
    torch.save(lit_clip.create_model("RN-Tiny").state_dict(), path)
    return str(path)


def micro_vild(clip_file, variant="vild", **kwargs) -> ViLD:
    torch.manual_seed(0)
    model = ViLD(clip_file, variant=variant, architecture="RN-Tiny", **{**MICRO, **kwargs}).eval()
    model.set_classes(NAMES, ["a photo of a {}."])
    return model


def test_logits_are_cosines_over_the_temperature_with_the_learnt_background_first(clip_file):
    heads = micro_vild(clip_file).roi_heads
    embeddings = F.normalize(torch.randn(5, heads.background.numel()), dim=-1)
    text = F.normalize(torch.randn(heads.background.numel(), 3), dim=0)
    logits = heads.logits(embeddings, text)
    background = heads.background / heads.background.norm()
    assert logits.shape == (5, 4)
    torch.testing.assert_close(logits[:, 0], embeddings @ background / 0.01)
    torch.testing.assert_close(logits[:, 1:], embeddings @ text / 0.01)
    torch.testing.assert_close(heads.logits(embeddings, text, background=False), logits[:, 1:])


def test_the_ensemble_is_the_weighted_geometric_mean_toward_text_on_base_and_image_on_novel(clip_file):
    heads = micro_vild(clip_file, "ensemble").roi_heads
    pooled = torch.randn(6, 16, 7, 7)
    text = F.normalize(torch.randn(heads.background.numel(), 3), dim=0)
    novel = torch.tensor([2])
    combined, _ = heads.class_probabilities(pooled, text, novel)
    text_probabilities = heads.logits(heads.text_head(pooled)[1], text).softmax(-1)[:, 1:]  # background dropped
    image_probabilities = heads.logits(heads.image_head(pooled)[1], text, background=False).softmax(-1)
    base = text_probabilities[:, :2] ** (2 / 3) * image_probabilities[:, :2] ** (1 / 3)
    novel_score = text_probabilities[:, 2:] ** (1 / 3) * image_probabilities[:, 2:] ** (2 / 3)
    torch.testing.assert_close(combined, torch.cat([base, novel_score], dim=1))


def test_distillation_is_l1_summed_over_dimensions_and_averaged_over_regions():
    regions = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    clip = torch.tensor([[3.0, 4.0], [0.0, -2.0]])  # normalised by the loss: (0.6, 0.8), (0, -1)
    expected = ((0.4 + 0.8) + (0.0 + 2.0)) / 2
    assert distillation_loss(regions, clip).item() == pytest.approx(expected)
    assert distillation_loss(regions[:0], clip[:0]).item() == 0.0


def test_boxes_are_class_agnostic_and_only_positive_regions_regress(clip_file):
    heads = micro_vild(clip_file, "text").roi_heads.train()
    assert heads.box_regressor.out_features == 4
    with torch.no_grad():  # every region predicts the same small shift
        heads.box_regressor.weight.zero_()
        heads.box_regressor.bias.copy_(torch.tensor([0.05, 0.0, 0.0, 0.0]))
    features = {level: torch.randn(1, 16, 64 // 2 ** (2 + int(level)), 64 // 2 ** (2 + int(level))) for level in "0123"}
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1])}]
    far = [torch.tensor([[50.0, 50.0, 60.0, 60.0]] * 4)]  # four background proposals
    text = F.normalize(torch.randn(heads.background.numel(), 3), dim=0)
    losses = heads.losses(features, far, [(64, 64)], targets, text)
    # The ground-truth box joins the proposals as the one positive, whose target shift is 0: smooth L1 (beta 1/9)
    # of 0.05 for it alone, over the 5 sampled regions.
    assert losses["box_loss"].item() == pytest.approx(0.5 * 0.05**2 * 9 / 5)
    assert set(losses) == {"box_loss", "text_loss"}


def test_a_vocabulary_in_another_order_gives_the_same_detections_relabelled(clip_file):
    model = micro_vild(clip_file, detections_per_image=1000)  # none cut, so ties cannot reorder the cut
    batch = ShapesWorldDetection(image_size=64, batch_size=2, test_samples=2).test_dataloader()
    batch = next(iter(batch))
    with torch.no_grad():
        first = model(batch)
        order = [2, 0, 1]
        model.set_classes([NAMES[i] for i in order], ["a photo of a {}."])
        second = model(batch)
    for a, b in zip(first, second):
        name = lambda labels, names: [names[i] for i in labels.tolist()]  # noqa: E731
        found_a = sorted(zip(name(a["labels"], NAMES), a["scores"].tolist(), a["boxes"].tolist()))
        found_b = sorted(zip(name(b["labels"], [NAMES[i] for i in order]), b["scores"].tolist(), b["boxes"].tolist()))
        assert len(found_a) == len(found_b) > 0
        for (name_a, score_a, box_a), (name_b, score_b, box_b) in zip(found_a, found_b):
            assert name_a == name_b and score_a == pytest.approx(score_b, abs=1e-5)
            assert box_a == pytest.approx(box_b, abs=1e-3)


def test_the_background_embedding_learns_from_the_classification_loss_alone(clip_file):
    text_model, image_model = micro_vild(clip_file, "text").train(), micro_vild(clip_file, "image").train()
    features = {level: torch.randn(1, 16, 64 // 2 ** (2 + int(level)), 64 // 2 ** (2 + int(level))) for level in "0123"}
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([2])}]
    proposals = [torch.tensor([[6.0, 8.0, 40.0, 42.0], [44.0, 44.0, 60.0, 62.0]])]
    for model in (text_model, image_model):
        regions = [torch.tensor([[8.0, 8.0, 40.0, 40.0]])]
        losses = model.roi_heads.losses(features, proposals, [(64, 64)], targets, model.text_classifier, regions,
                                        torch.randn(1, model.text_classifier.shape[0]))  # fmt: skip
        sum(losses.values()).backward()
    assert text_model.roi_heads.background.grad.abs().sum() > 0
    assert image_model.roi_heads.background is None  # ViLD-image has no classification loss, so no background
    assert "image_loss" not in text_model.roi_heads.losses(features, proposals, [(64, 64)], targets,
                                                             text_model.text_classifier, regions, torch.randn(1, 64))


def test_any_name_not_trained_on_is_novel(clip_file):
    model = micro_vild(clip_file, "ensemble")
    model.base_classnames = ("red circle", "green star")
    model.set_classes(NAMES, ["a photo of a {}."])
    assert model._novel.tolist() == [1]


def test_bad_settings_are_named(clip_file):
    with pytest.raises(ValueError, match="variant must be one of"):
        ViLD(clip_file, variant="vild-image", architecture="RN-Tiny", **MICRO)
    with pytest.raises(ValueError, match="one size per pyramid level"):
        ViLD(clip_file, architecture="RN-Tiny", **{**MICRO, "anchor_sizes": (32, 64)})


# --- the region cache ------------------------------------------------------------------------------------------
def test_the_region_cache_resumes_is_keyed_by_image_and_starts_over_for_another_clip(tmp_path):
    keys = ["a.jpg", "b.jpg", "c.jpg"]
    cache = RegionCache.create(tmp_path, keys, 2, 4, clip="clip-1", proposals="rpn-1")
    cache.write(0, torch.tensor([[0.0, 0, 5, 5]]), F.normalize(torch.ones(1, 4), dim=-1))
    cache.flush()
    cache.write(1, torch.tensor([[1.0, 1, 2, 2]]), torch.ones(1, 4))  # written, never flushed: a killed build
    resumed = RegionCache.create(tmp_path, keys, 2, 4, clip="clip-1", proposals="rpn-1")
    assert resumed.done.tolist() == [True, False, False]
    boxes, embeddings = resumed.read("a.jpg")
    assert boxes.tolist() == [[0.0, 0, 5, 5]] and embeddings.shape == (1, 4)  # the row's unused slot left out
    with pytest.raises(ValueError, match="lacks 2 of the 3"):
        RegionCache(tmp_path, keys)
    with pytest.raises(ValueError, match="lacks 1 of the 1.*'d.jpg'"):
        RegionCache(tmp_path, ["d.jpg"])
    rebuilt = RegionCache.create(tmp_path, keys, 2, 4, clip="clip-2", proposals="rpn-1")
    assert not rebuilt.done.any()
    with pytest.raises(FileNotFoundError, match="build it first"):
        RegionCache(tmp_path / "nothing")


def test_module_fingerprints_change_with_any_weight():
    layer = torch.nn.Linear(3, 2)
    before = module_fingerprint(layer)
    assert module_fingerprint(layer) == before
    with torch.no_grad():
        layer.bias[0] += 1e-3
    assert module_fingerprint(layer) != before


def test_crop_embeddings_sum_the_clip_embeddings_of_the_1x_and_1_5x_crops(clip_file):
    clip = lit_clip.load_clip(clip_file, architecture="RN-Tiny").eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8))
    boxes = torch.tensor([[10.0, 10.0, 30.0, 50.0]])
    preprocess = clip_eval_transform(clip.config.vision.image_size)
    with torch.no_grad():
        one = clip.encode_image(preprocess(image.crop((10, 10, 30, 50)))[None])
        enlarged = clip.encode_image(preprocess(image.crop((5, 0, 35, 60)))[None])  # 1.5x about the centre
    expected = F.normalize(one + enlarged, dim=-1)
    torch.testing.assert_close(vild_cache.crop_embeddings(clip, image, boxes), expected)


# --- the chain, as the README runs it ---------------------------------------------------------------------------
@pytest.mark.slow
def test_text_run_then_cache_then_each_distilling_variant_trains_and_tests(tmp_path, lit_clip_checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-clip"])
    config = str(ROOT / "configs" / "vild" / "shapes.yaml")
    micro = [f"--model.init_args.{key}={list(value) if isinstance(value, tuple) else value}" for key, value in MICRO.items()]
    common = ["--config", config, f"--model.init_args.pretrained={lit_clip_checkpoint}", *micro,
              "--data.init_args.image_size=64", "--data.init_args.train_samples=8", "--data.init_args.val_samples=4",
              "--data.init_args.test_samples=4", "--data.init_args.batch_size=4", "--data.init_args.region_cache=cache",
              "--trainer.max_steps=2", "--trainer.max_epochs=1", "--trainer.limit_val_batches=1"]  # fmt: skip
    main(["fit", *common, "--model.init_args.variant=text", "--trainer.logger.init_args.name=text",
          "--data.init_args.region_cache=null"])  # fmt: skip
    text_checkpoint = tmp_path / "runs" / "text" / "version_0" / "checkpoints" / "last.ckpt"
    assert text_checkpoint.is_file()

    # Without the cache the distilling variants say how to build it.
    with pytest.raises(FileNotFoundError, match="vild_cache"):
        main(["fit", *common, "--model.init_args.variant=vild"])
    vild_cache.main(["--config", config, "--proposals", str(text_checkpoint), "--regions", "5", *common[2:]])
    cache = RegionCache(tmp_path / "cache")
    assert cache.done.all() and len(cache.meta["keys"]) == 8
    boxes, embeddings = cache.read(cache.meta["keys"][0])
    assert 0 < len(boxes) <= 5 and torch.allclose(embeddings.norm(dim=-1), torch.ones(len(boxes)), atol=1e-2)

    for variant in ("image", "vild", "ensemble"):
        name = f"--trainer.logger.init_args.name={variant}"
        main(["fit", *common, f"--model.init_args.variant={variant}", name])
        checkpoint = tmp_path / "runs" / variant / "version_0" / "checkpoints" / "last.ckpt"
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        assert not any(key.startswith("model.") for key in state["state_dict"]), "the frozen CLIP is not saved"
        assert state["base_classnames"] == ShapesWorldDetection(held_out=16).classnames
        main(["test", *common, f"--model.init_args.variant={variant}", name, f"--ckpt_path={checkpoint}",
              "--trainer.limit_test_batches=1"])  # fmt: skip
