"""DepthCLIP (lit_clip/methods/three_d/depthclip.py), the depth metrics' evaluation mask and the 3D / depth pictures
(callbacks/three_d.py, lit_clip/drawing.py)."""
from __future__ import annotations

import io
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

import lit_clip
from lit_clip import drawing
from lit_clip.batches import EvaluationSet
from lit_clip.callbacks.three_d import DepthSamples, PointCloudViews
from lit_clip.drawing import MARGIN
from lit_clip.methods.three_d.depthclip import (
    DEPTHCLIP_BINS, DEPTHCLIP_WORDS, DepthCLIP, expected_depth, interpolate_channels, scale_invariant_log_loss,
)  # fmt: skip
from lit_clip.metrics import DEPTH_METRICS, DepthMetrics
from lit_clip.transforms import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """A random-weight RN-Tiny CLIP (layer4: 512 channels; embeddings: 128)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "rn_tiny.pt"
    torch.save(lit_clip.create_model("RN-Tiny").state_dict(), path)
    return str(path)


def depthclip(clip_file: str, **kwargs) -> DepthCLIP:
    return DepthCLIP(clip_file, architecture="RN-Tiny", **kwargs).eval()


def to_batch(samples: list[dict]) -> dict:
    return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}


class TinyDepthData(L.LightningDataModule):
    """Random CLIP-normalised 64 x 96 images with depths at 48 x 72 (a smaller ground truth than the image, as NYU's
    crop), 0 in the top-left corner (unmeasured), an evaluation mask leaving out the last two columns; no class
    names (a depth data module has none); the range is 0.5 to 4 m."""

    min_depth, max_depth = 0.5, 4.0

    def __init__(self, samples: int = 4, batch_size: int = 2):
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.samples = []
        for index in range(samples):
            depth = 0.8 + 2.5 * torch.rand(48, 72, generator=generator)
            depth[:4, :4] = 0.0
            mask = torch.ones(48, 72, dtype=torch.bool)
            mask[:, -2:] = False
            image = torch.randn(3, 64, 96, generator=generator)
            self.samples.append({"image": image, "depth": depth, "evaluation_mask": mask, "index": torch.tensor(index)})
        self.batch_size = batch_size

    def loader(self) -> DataLoader:
        return DataLoader(self.samples, batch_size=self.batch_size, collate_fn=to_batch)

    train_dataloader = val_dataloader = test_dataloader = predict_dataloader = loader


class NamedSetDepthData(TinyDepthData):
    """The same with one named evaluation set, as a data module of several benchmarks names them."""

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        return [EvaluationSet("scenes", ())]


def quiet(**kwargs) -> L.Trainer:
    kwargs.setdefault("logger", False)
    return L.Trainer(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **kwargs)


# --- the readout ---------------------------------------------------------------------------------


def test_the_expected_depth_of_a_one_hot_bin_distribution_is_that_bin_s_depth():
    bins = torch.tensor(DEPTHCLIP_BINS)
    picks = torch.tensor([[0, 3], [6, 2]])  # a bin per location of a 2 x 2 map
    one_hot = F.one_hot(picks, len(bins)).permute(2, 0, 1)[None].float()  # [1, K, 2, 2]
    torch.testing.assert_close(expected_depth(one_hot, bins), bins[picks][None])
    halves = (F.one_hot(torch.tensor(0), 7) + F.one_hot(torch.tensor(6), 7)).float().view(1, 7, 1, 1) / 2
    assert expected_depth(halves, bins).item() == pytest.approx((1.0 + 3.0) / 2)


def test_the_channel_cut_is_the_official_interpolation():
    torch.manual_seed(0)
    features = torch.randn(2, 2048, 3, 4)  # RN50's layer4 at a small size
    # monoclip.py: normalised [B, HW, C] locations, then F.interpolate(img_f, scale_factor=0.5).
    locations = F.normalize(features.flatten(2).transpose(1, 2), dim=-1)
    official = F.interpolate(locations, scale_factor=0.5)
    ours = interpolate_channels(F.normalize(features, dim=1), 1024)
    assert torch.equal(ours.flatten(2).transpose(1, 2), official)
    assert torch.equal(ours, F.normalize(features, dim=1)[:, ::2])  # every other channel, no renormalisation
    assert ours.norm(dim=1).mean().item() == pytest.approx(math.sqrt(0.5), rel=0.05)
    small = torch.randn(1, 512, 2, 2)  # RN-Tiny's 512 channels to its 128-wide embedding: every 4th
    assert torch.equal(interpolate_channels(small, 128), small[:, ::4])


def test_the_text_features_are_the_official_prompts(clip_file):
    model = depthclip(clip_file)
    model.use_classes(model.depth_words)
    tokens = lit_clip.tokenize(["This object is unseen"], context_length=model.model.context_length)
    expected = F.normalize(model.model.encode_text(tokens).float(), dim=-1)[0]
    assert model.text_classifier.shape == (128, 7)
    torch.testing.assert_close(model.text_classifier[:, 6], expected)


def test_flip_averaging_makes_the_prediction_flip_equivariant(clip_file):
    torch.manual_seed(0)
    # A random CLIP at the official scale (1000) puts every location in one bin: a gentler one, for maps that vary.
    model = depthclip(clip_file, temperature=10.0)
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        averaged = model.predict_depth(images)
        torch.testing.assert_close(model.predict_depth(images.flip(-1)), averaged.flip(-1))
        symmetric = torch.cat([images[..., :48], images[..., :48].flip(-1)], dim=-1)
        raw = model.feature_depth(symmetric)
        averaged = model.predict_depth(symmetric, size=raw.shape[-2:])  # no upsampling: the 2 x 3 map
    assert not torch.allclose(raw, raw.flip(-1))  # a CNN's map of a symmetric image need not be symmetric ...
    torch.testing.assert_close(averaged, averaged.flip(-1))  # ... the flip-averaged one is,
    torch.testing.assert_close(averaged, (raw + raw.flip(-1)) / 2)  # the mean of the map and its mirror


def test_flip_averaging_of_a_symmetric_image_is_its_prediction_with_per_location_features(clip_file, monkeypatch):
    # Features that are a function of each location alone are flip-equivariant: then the flipped image's prediction,
    # flipped back, is the image's own, and averaging with it changes nothing.
    model = depthclip(clip_file)
    mixing = torch.randn(128, 3, generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(
        model, "dense_features",
        lambda images: F.normalize(torch.einsum("dc,bchw->bdhw", mixing, F.avg_pool2d(images, 32)), dim=1),
    )  # fmt: skip
    half = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    symmetric = torch.cat([half, half.flip(-1)], dim=-1)
    with torch.no_grad():
        plain = model.feature_depth(symmetric)
        torch.testing.assert_close(model.predict_depth(symmetric, size=plain.shape[-2:]), plain)
        assert not torch.allclose(plain, plain.mean())  # the map is not flat: the test could fail


def test_prediction_shapes_and_the_bins_bound_the_depth(clip_file):
    model = depthclip(clip_file)
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        coarse = model.feature_depth(images)
        fine = model.predict_depth(images, size=(50, 70))
        probabilities = model.depth_probabilities(images)
    assert coarse.shape == (2, 2, 3) and fine.shape == (2, 50, 70) and model(images).shape == (2, 64, 96)
    assert probabilities.shape == (2, 7, 2, 3)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2, 2, 3))
    assert fine.min() >= 1.0 and fine.max() <= 3.0


@pytest.mark.parametrize(
    "words, bins, message",
    [
        (DEPTHCLIP_WORDS[:6], DEPTHCLIP_BINS, "one word per bin"),
        (("near", "far"), (2.0, 1.0), "strictly increasing"),
        (("near", "far"), (1.0, 1.0), "strictly increasing"),
        (("near", "far"), (0.0, 1.0), "positive"),
        (("near",), (1.0,), "at least two"),
        (("far", "far"), (1.0, 2.0), "more than once"),
        ("far", (1.0, 2.0, 3.0), "list of words"),
    ],
)
def test_bad_bins_or_words_are_refused(clip_file, words, bins, message):
    with pytest.raises(ValueError, match=message):
        depthclip(clip_file, depth_words=words, depth_bins=bins)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"templates": ["This {} is {}"]}, "fields {obj} and {word}"),
        ({"templates": ["This {obj} is {word} {word2}"]}, "fields {obj} and {word}"),
        ({"templates": []}, "non-empty list"),
        ({"object_name": "{room}"}, "plain text"),
        ({"reduction": "pca"}, "reduction must be one of"),
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"input_normalization": "none"}, "input_normalization must be one of"),
    ],
)
def test_bad_prompts_and_options_are_refused(clip_file, kwargs, message):
    with pytest.raises(ValueError, match=message):
        depthclip(clip_file, **kwargs)


def test_the_learned_reduction_starts_as_the_official_cut_and_needs_a_resnet(clip_file, tmp_path):
    model, learned = depthclip(clip_file), depthclip(clip_file, reduction="learned")
    assert not model.trains and learned.trains and learned.projection.weight.shape == (128, 512, 1, 1)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(learned.feature_depth(images), model.feature_depth(images))
    vit_file = tmp_path / "vit.pt"
    torch.save(lit_clip.create_model("ViT-Micro-8").state_dict(), vit_file)
    with pytest.raises(ValueError, match="ResNet"):
        DepthCLIP(str(vit_file), architecture="ViT-Micro-8", reduction="learned")
    vit = DepthCLIP(str(vit_file), architecture="ViT-Micro-8").eval()  # MaskCLIP's dense map, 4 x 4 patches
    with torch.no_grad():
        assert vit.feature_depth(torch.randn(1, 3, 32, 32)).shape == (1, 4, 4)


def test_imagenet_input_normalization_feeds_the_clip_what_the_official_loader_does(clip_file):
    model = depthclip(clip_file, temperature=10.0)
    official = depthclip(clip_file, temperature=10.0, input_normalization="imagenet")
    pixels = torch.rand(1, 3, 64, 64)  # in [0, 1]

    def normalized(mean, std):
        return (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)

    clip_normalized, imagenet_normalized = normalized(CLIP_MEAN, CLIP_STD), normalized(IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        expected = model.feature_depth(imagenet_normalized)
        torch.testing.assert_close(official.feature_depth(clip_normalized), expected, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(model.feature_depth(clip_normalized), expected)


# --- the metrics' evaluation mask ------------------------------------------------------------------


def test_depth_metrics_leave_out_pixels_outside_the_evaluation_mask_as_unmeasured_ones():
    truth = torch.tensor([[[1.0, 2.0], [4.0, 3.0]], [[2.0, 2.0], [2.0, 2.0]]])
    prediction = torch.tensor([[[1.0, 3.0], [2.0, 9.0]], [[2.0, 2.0], [2.0, 2.0]]])
    mask = torch.tensor([[[True, True], [True, False]], [[False, False], [False, False]]])
    masked = DepthMetrics()
    masked.update(prediction, truth, torch.tensor([0, 1]), mask)
    result = masked.compute()
    # Image 0 as if its bottom-right pixel were unmeasured; image 1 has no scored pixel and is left out.
    unmeasured = DepthMetrics()
    unmeasured.update(prediction[:1], truth[:1] * mask[:1], torch.tensor([0]))
    expected = unmeasured.compute()
    assert set(result) == set(DEPTH_METRICS)
    for name in DEPTH_METRICS:
        torch.testing.assert_close(result[name], expected[name])
    assert result["abs_rel"].item() == pytest.approx((0 + 0.5 + 0.5) / 3)  # by hand: |1-1|/1, |3-2|/2, |2-4|/4
    assert result["delta1"].item() == pytest.approx(1 / 3)
    without_mask = DepthMetrics()
    without_mask.update(prediction, truth, torch.tensor([0, 1]))
    assert without_mask.compute()["delta1"].item() != pytest.approx(1 / 3)  # the mask changed something


def test_depth_metrics_refuse_a_mask_of_another_shape_or_kind():
    depth = torch.ones(1, 2, 2)
    with pytest.raises(ValueError, match="evaluation_mask must be bool"):
        DepthMetrics().update(depth, depth, torch.tensor([0]), torch.ones(1, 2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="evaluation_mask must be bool"):
        DepthMetrics().update(depth, depth, torch.tensor([0]), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="must match"):
        DepthMetrics().update(torch.ones(1, 3, 3), depth, torch.tensor([0]))


def test_the_scale_invariant_loss_ignores_a_global_scale_at_lambda_one_and_counts_valid_pixels_only():
    truth = torch.tensor([[[1.0, 2.0], [4.0, 8.0]]])
    valid = torch.tensor([[[True, True], [True, False]]])
    doubled = truth * 2
    doubled[0, 1, 1] = 100.0  # an invalid pixel: ignored
    assert scale_invariant_log_loss(doubled, truth, valid, variance_focus=1.0).item() == pytest.approx(0.0, abs=1e-6)
    d = math.log(2)  # lambda 0.5: mean(d^2) - 0.5 mean(d)^2 = d^2 / 2
    assert scale_invariant_log_loss(doubled, truth, valid).item() == pytest.approx(d * d / 2)
    assert scale_invariant_log_loss(doubled, truth, torch.zeros_like(valid)).item() == 0.0


# --- running it as lit-clip does ---------------------------------------------------------------------


def test_a_lit_clip_test_run_logs_the_depth_metrics_of_the_upsampled_flip_averaged_prediction(clip_file):
    model, data = depthclip(clip_file), TinyDepthData()
    (results,) = quiet().test(model, data, verbose=False)
    assert {f"test/{name}" for name in DEPTH_METRICS} <= set(results)
    expected = DepthMetrics(min_depth=0.5, max_depth=4.0)  # the data module's range
    with torch.no_grad():
        for batch in data.loader():
            prediction = model.predict_depth(batch["image"], size=(48, 72))
            expected.update(prediction, batch["depth"], batch["index"], batch["evaluation_mask"])
    for name, value in expected.compute().items():
        assert results[f"test/{name}"] == pytest.approx(value.item(), rel=1e-5), name
    predictions = quiet().predict(model, data)
    assert predictions[0]["depth"].shape == (2, 48, 72) and predictions[0]["index"].tolist() == [0, 1]


def test_a_few_fit_steps_train_the_learned_projection_alone_and_checkpoint_it_alone(clip_file, tmp_path):
    model, data = depthclip(clip_file, reduction="learned", lr=1e-2), TinyDepthData()
    before = model.projection.weight.clone()
    clip_before = model.model.visual.layer4[0].conv1.weight.clone()
    trainer = quiet(max_steps=3, limit_val_batches=0)
    trainer.fit(model, data)
    assert not torch.equal(model.projection.weight, before)
    assert torch.equal(model.model.visual.layer4[0].conv1.weight, clip_before)
    assert math.isfinite(trainer.callback_metrics["train/loss"].item())
    trainer.save_checkpoint(tmp_path / "learned.ckpt")
    saved = torch.load(tmp_path / "learned.ckpt", weights_only=False)["state_dict"]
    assert list(saved) == ["projection.weight"]
    restored = DepthCLIP.load_from_checkpoint(tmp_path / "learned.ckpt")
    torch.testing.assert_close(restored.projection.weight, model.projection.weight)
    with pytest.raises(ValueError, match="learns nothing"):
        quiet(max_steps=1).fit(depthclip(clip_file), data)


# --- pictures ------------------------------------------------------------------------------------------


def test_depth_comparison_shows_image_prediction_truth_and_error_in_rows_with_unmeasured_pixels_grey():
    images = [np.zeros((32, 48, 3), dtype=np.uint8) for _ in range(2)]
    truths = [torch.full((16, 24), 2.0) for _ in range(2)]
    truths[0][:4, :4] = 0.0  # unmeasured
    predictions = [torch.full((16, 24), 1.0), torch.full((16, 24), 3.0)]
    px = 40
    picture = drawing.depth_comparison(images, truths, predictions, px=px)
    cell_w = 60  # 40 high at the depth maps' 3:2
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    assert picture.shape[1] == MARGIN + 4 * (cell_w + MARGIN)
    assert picture.shape[0] > 2 * (px + MARGIN)  # two rows, the titles and the scales under them
    top = MARGIN + drawing._line_height(drawing._font(drawing.TEXT_PX))
    truth_x, error_x = MARGIN + 2 * (cell_w + MARGIN), MARGIN + 3 * (cell_w + MARGIN)
    assert tuple(picture[top + 2, truth_x + 2]) == drawing.NO_DEPTH_COLOUR  # the unmeasured corner
    assert tuple(picture[top + 2, error_x + 2]) == drawing.NO_DEPTH_COLOUR
    # The prediction of 1 m is the nearest depth: bright yellow; the truth's 2 m is between; 3 m is dark blue.
    row2 = top + px + MARGIN
    assert tuple(picture[top + px // 2, MARGIN + cell_w + MARGIN + 5]) == (253, 231, 37)
    assert tuple(picture[row2 + px // 2, MARGIN + cell_w + MARGIN + 5]) == (68, 1, 84)
    both_errors_one = picture[top + px // 2, error_x + 5], picture[row2 + px // 2, error_x + 5]
    assert tuple(both_errors_one[0]) == tuple(both_errors_one[1]) == (255, 255, 255)  # the largest error: white


def test_point_cloud_views_put_each_cloud_s_views_in_a_row_with_its_names():
    views = torch.zeros(2, 3, 20, 20)
    views[:, :, 5:15, 5:15] = 1.0
    px = 32
    picture = drawing.point_cloud_views(views, ["cube", "cone"], ["cube", "sphere"], px=px)
    assert picture.shape[1] == MARGIN + 160 + 3 * (px + MARGIN)
    assert picture.shape[0] >= 2 * (px + MARGIN)
    colours = {tuple(c) for c in picture.reshape(-1, 3)}
    assert drawing.RIGHT_COLOUR in colours and drawing.WRONG_COLOUR in colours  # cube right, sphere wrong
    views_part = picture[:, MARGIN + 160 :]
    assert (views_part == 255).all(axis=2).sum() > 2 * 3 * 10 * 10  # the bright squares (and the white margins)


def logged_picture(log_dir, tag: str) -> np.ndarray:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    (logged,) = events.Images(tag)
    return np.asarray(Image.open(io.BytesIO(logged.encoded_image_string)))


def test_depth_samples_logs_the_first_batch_of_each_evaluation_to_tensorboard(clip_file, tmp_path):
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = quiet(logger=logger, callbacks=[DepthSamples(num_samples=2, px=48)])
    model = depthclip(clip_file)
    trainer.validate(model, TinyDepthData(samples=4, batch_size=4), verbose=False)  # no class names, no sets
    results = trainer.test(model, NamedSetDepthData(samples=4, batch_size=4), verbose=False)[0]
    logger.experiment.flush()
    assert "test/scenes_abs_rel" in results  # the set's name prefixes the metrics ...
    for tag in ("val/depth", "test/scenes_depth"):  # ... and the pictures
        picture = logged_picture(logger.log_dir, tag)
        assert picture.shape[1] == MARGIN + 4 * (72 + MARGIN)  # 48 px high at the depths' 3:2
        assert picture.shape[0] > 2 * (48 + MARGIN)  # two of the batch's four images
        assert (picture == drawing.NO_DEPTH_COLOUR).all(axis=2).sum() > 0  # the unmeasured corners


class StubPointClassifier(L.LightningModule):
    """What PointCloudViews asks of a point-cloud classifier: classnames, projected_views, logits from
    batch_input. Views: the cloud seen along x, y and z, a pixel lit per occupied cell."""

    classnames = ("cube", "sphere")

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def projected_views(self, points: torch.Tensor) -> torch.Tensor:
        cells = ((points.clamp(-1, 1) + 1) / 2 * 15).round().long()  # [B, N, 3] in 0..15
        views = torch.zeros(points.shape[0], 3, 16, 16)
        for b in range(points.shape[0]):
            for v, (row, column) in enumerate(((1, 2), (0, 2), (0, 1))):
                views[b, v, cells[b, :, row], cells[b, :, column]] = 1.0
        return views

    def batch_input(self, batch: dict) -> torch.Tensor:
        return batch["points"]

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return torch.stack([points[..., 0].mean(1), -points[..., 0].mean(1)], dim=1) * self.weight

    def test_step(self, batch, batch_idx):
        pass


class TinyClouds(L.LightningDataModule):
    classnames = ("cube", "sphere")

    def test_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        points = torch.rand(3, 64, 3, generator=generator) * 2 - 1
        samples = [{"points": points[i], "label": torch.tensor(i % 2), "index": torch.tensor(i)} for i in range(3)]
        return DataLoader(samples, batch_size=3, collate_fn=to_batch)


def test_point_cloud_views_logs_the_projected_views_of_the_first_test_batch(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="run")
    quiet(logger=logger, callbacks=[PointCloudViews(num_samples=2, px=32)]).test(StubPointClassifier(), TinyClouds())
    logger.experiment.flush()
    picture = logged_picture(logger.log_dir, "test/point_cloud_views")
    assert picture.shape[1] == MARGIN + 160 + 3 * (32 + MARGIN)  # three views
    assert picture.shape[0] >= 2 * (32 + MARGIN)  # two of the three clouds
