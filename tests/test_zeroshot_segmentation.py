"""Zero-shot segmentation (MaskCLIP's dense CLIP) on a micro CLIP: labels are only their text, the background and
prompt-denoising rules, seen / unseen evaluation, the SegmentationSamples pictures, and DDP counting."""
from __future__ import annotations

import io

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lit_clip.callbacks import SegmentationSamples
from lit_clip.callbacks.segmentation import in_label_set
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor
from torch.utils.data import DataLoader

from lit_clip import drawing
from lit_clip.batches import IGNORE_INDEX, EvaluationSet
from lit_clip.methods.class_sets import harmonic_mean
from lit_clip.methods.segmentation.zeroshot_segmentation import (
    REMOVED_LOGIT,
    ZeroShotSegmentation,
    denoise_prompts,
    threshold_background,
)
from lit_clip.metrics import EpisodicSegmentationMetrics, SegmentationMetrics

SEEN = ("background", "red circle", "blue square", "green star")
UNSEEN = ("background", "purple cross", "yellow triangle")
TEMPLATES = ("a photo of a {}.", "a {} shape.")  # short: the micro CLIP's context is 16 tokens


def segmentation_samples(n: int, num_labels: int, seed: int) -> list[dict]:
    """Random images and masks (some pixels ignored): what matters here is counting, not accuracy."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for index in range(n):
        mask = torch.randint(0, num_labels, (32, 32), generator=generator)
        mask[:4] = IGNORE_INDEX
        samples.append({"image": torch.randn(3, 32, 32, generator=generator), "mask": mask, "index": index})
    return samples


class FakeSegmentation(L.LightningDataModule):
    """The shape of ShapesWorldSegmentation: ``classnames`` (background first), ``templates``, and seen / unseen
    test sets, one loader each; ``predict`` reads the seen images."""

    def __init__(self, classnames: tuple[str, ...] = SEEN, samples: int = 6, batch_size: int = 4):
        super().__init__()
        self.classnames, self.templates = list(classnames), list(TEMPLATES)
        self.seen = segmentation_samples(samples, len(classnames), seed=0)
        self.unseen = segmentation_samples(samples, len(UNSEEN), seed=1)
        self.batch_size = batch_size

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        if stage == "test":
            return [EvaluationSet("seen", tuple(self.classnames)), EvaluationSet("unseen", UNSEEN)]
        return [EvaluationSet("", tuple(self.classnames))]

    def loader(self, samples: list[dict]) -> DataLoader:
        return DataLoader(samples, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.seen)

    def test_dataloader(self) -> list[DataLoader]:
        return [self.loader(self.seen), self.loader(self.unseen)]

    def predict_dataloader(self) -> DataLoader:
        return self.loader(self.seen)


@pytest.fixture
def segmenter(lit_clip_checkpoint):
    """``segmenter(**kwargs)``: a ZeroShotSegmentation on the micro CLIP of the session's checkpoint."""
    return lambda **kwargs: ZeroShotSegmentation(str(lit_clip_checkpoint), **kwargs)


def predicted(model: ZeroShotSegmentation, classnames: tuple[str, ...], trainer) -> tuple[Tensor, Tensor]:
    """The masks ``lit-clip predict`` gives for the fake seen images under ``classnames``, and the logits."""
    data = FakeSegmentation(classnames)
    outputs = trainer().predict(model, datamodule=data)
    assert outputs[0]["labels"] == list(classnames)
    images = torch.stack([sample["image"] for sample in data.seen])
    with torch.no_grad():
        return torch.cat([output["masks"] for output in outputs]), model(images)


def test_logits_are_upsampled_scaled_cosines_of_the_dense_features(segmenter, trainer):
    model = segmenter()
    masks, logits = predicted(model, SEEN, trainer)
    assert logits.shape == (6, len(SEEN), 32, 32) and masks.shape == (6, 32, 32)
    assert torch.equal(masks, logits.argmax(dim=1))
    assert logits.abs().max() <= 100 + 1e-3  # 100 * cosine
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        dense = F.normalize(model.model.encode_dense_image(images), dim=1)  # [1, D, 4, 4]: one per 8-pixel patch
        cosine = torch.einsum("bdhw,dl->blhw", dense, model.text_classifier)
        expected = F.interpolate(100 * cosine, size=(32, 32), mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(images), expected)


def test_renaming_a_label_to_the_same_text_keeps_the_predictions(segmenter, trainer):
    """The tokenizer lower-cases and collapses spaces: "Red  Circle" is the text "red circle"."""
    model = segmenter()
    masks, logits = predicted(model, SEEN, trainer)
    renamed = ("background", "Red  Circle", "blue square", "green star")
    renamed_masks, renamed_logits = predicted(model, renamed, trainer)
    assert model.classnames == renamed  # the label set did change
    assert torch.equal(renamed_masks, masks) and torch.equal(renamed_logits, logits)


@pytest.mark.parametrize("background_threshold", [None, 0.6])
def test_a_label_set_in_another_order_permutes_the_output_channels(segmenter, trainer, background_threshold):
    model = segmenter(background_threshold=background_threshold)
    masks, logits = predicted(model, SEEN, trainer)
    order = [2, 0, 3, 1]  # background moves to position 1
    permuted_masks, permuted_logits = predicted(model, tuple(SEEN[k] for k in order), trainer)
    torch.testing.assert_close(permuted_logits, logits[:, order])
    assert torch.equal(torch.tensor(order)[permuted_masks], masks)


def test_a_label_set_with_a_duplicate_is_a_clear_error(segmenter):
    with pytest.raises(ValueError, match=r"\['red circle'\] more than once"):
        segmenter().use_classes(["background", "red circle", "blue square", "red circle"])


def test_background_threshold_rule_on_constructed_logits():
    """Background at index 1: its own logit takes no part; the softmax over the other two labels decides."""
    pixels = [[5.0, 50.0, 0.0], [0.0, -50.0, 0.1], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]  # logits of labels 0, 1, 2
    logits = torch.tensor(pixels).T.reshape(1, 3, 1, 4)
    # p(most probable of labels 0 and 2), pixel by pixel: 0.993 (although background's logit is the highest),
    # 0.525, 0.5 (not below 0.5), 0.993.
    assert threshold_background(logits, background=1, threshold=0.5).tolist() == [[[0, 2, 0, 2]]]
    assert threshold_background(logits, background=1, threshold=0.6).tolist() == [[[0, 1, 1, 2]]]
    assert threshold_background(logits, background=1, threshold=0.999).tolist() == [[[1, 1, 1, 1]]]
    assert threshold_background(logits, background=0, threshold=0.6).tolist() == [[[1, 2, 0, 2]]]


def test_background_threshold_applies_only_to_label_sets_with_the_background_label(segmenter, trainer):
    model = segmenter(background_threshold=1.5)  # every probability is below it: all background
    masks, _ = predicted(model, SEEN, trainer)
    assert (masks == 0).all()
    no_background = ("red circle", "blue square", "green star")
    masks, logits = predicted(model, no_background, trainer)
    assert torch.equal(masks, logits.argmax(dim=1))


def test_prompt_denoising_removes_labels_confident_nowhere_but_keeps_the_best():
    logits = torch.zeros(2, 3, 1, 2)
    logits[0, :, 0, 0] = torch.tensor([10.0, 0.0, 0.0])  # label 0 is sure here
    logits[0, :, 0, 1] = torch.tensor([0.0, 0.4, 0.0])  # label 1 at most 0.4: removed, as label 2
    logits[1] = 0.0  # every label 1/3 everywhere: all below 0.5, all equally the best, all kept
    denoised = denoise_prompts(logits, threshold=0.5)
    assert torch.equal(denoised[0, 0], logits[0, 0]) and (denoised[0, 1:] == REMOVED_LOGIT).all()
    assert torch.equal(denoised[1], logits[1])


def test_prompt_denoising_acts_on_the_patch_logits_before_upsampling(segmenter, trainer):
    model = segmenter(prompt_denoising=1.0)
    _, logits = predicted(model, SEEN, trainer)
    images = torch.stack([sample["image"] for sample in FakeSegmentation().seen])
    with torch.no_grad():
        dense = F.normalize(model.model.encode_dense_image(images), dim=1)
        patch_logits = denoise_prompts(100 * torch.einsum("bdhw,dl->blhw", dense, model.text_classifier), 1.0)
    assert (patch_logits == REMOVED_LOGIT).any()  # some image lost a label
    torch.testing.assert_close(logits, F.interpolate(patch_logits, size=(32, 32), mode="bilinear", align_corners=False))


def test_test_logs_seen_and_unseen_miou_and_their_harmonic_mean(segmenter, trainer):
    model, data = segmenter(), FakeSegmentation()
    trainer().test(model, datamodule=data)
    logged = model.trainer.callback_metrics
    expected = {}
    for name, labels, samples in (("seen", SEEN, data.seen), ("unseen", UNSEEN, data.unseen)):
        model.use_classes(labels)
        metric = SegmentationMetrics(len(labels))
        with torch.no_grad():
            for batch in data.loader(samples):
                metric.update(model.predict_masks(batch["image"]), batch["mask"], batch["index"])
        expected[name] = metric.compute()
        torch.testing.assert_close(logged[f"test/{name}_mIoU"], expected[name]["mIoU"])
        torch.testing.assert_close(logged[f"test/{name}_pixel_accuracy"], expected[name]["pixel_accuracy"])
        for label, iou in zip(labels, expected[name]["IoU_per_class"]):
            assert iou.isnan() or torch.isclose(logged[f"test/{name}_IoU/{label}"], iou)
    torch.testing.assert_close(logged["test/hIoU"], harmonic_mean(expected["seen"]["mIoU"], expected["unseen"]["mIoU"]))


class FakeEpisodes(L.LightningDataModule):
    """Few-shot segmentation episodes as the PASCAL-5i-style modules give them: each image with [others, its
    class] as its labels and a binary mask; evaluation over the fold's label set."""

    LABELS = ("others", "red circle", "blue square", "green star")

    def __init__(self):
        super().__init__()
        self.classnames, self.templates = list(self.LABELS), list(TEMPLATES)
        self.episodes = segmentation_samples(6, 2, seed=2)
        for episode in self.episodes:
            episode["labels"] = torch.tensor([0, 1 + episode["index"] % 3])

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        return [EvaluationSet("", self.LABELS, episodic=True)]

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.episodes, batch_size=4)


def test_episodes_are_scored_over_each_image_s_own_labels(segmenter, trainer):
    model, data = segmenter(), FakeEpisodes()
    trainer().test(model, datamodule=data)
    logged = model.trainer.callback_metrics
    metric = EpisodicSegmentationMetrics(len(data.LABELS))
    with torch.no_grad():
        for batch in data.test_dataloader():
            all_labels = model(batch["image"])
            own = torch.stack([logits[labels] for logits, labels in zip(all_labels, batch["labels"])])
            metric.update(own.argmax(dim=1), batch["mask"], batch["labels"][:, 1], batch["index"])
    expected = metric.compute()
    torch.testing.assert_close(logged["test/mIoU"], expected["mIoU"])
    torch.testing.assert_close(logged["test/FB_IoU"], expected["FB_IoU"])
    assert "test/IoU/others" not in logged and "test/IoU/green star" in logged


def test_episode_masks_are_drawn_with_their_labels_names():
    masks = torch.tensor([[[0, 1], [IGNORE_INDEX, 1]], [[1, 0], [0, 0]]])
    labels = torch.tensor([[0, 3], [0, 2]])
    expected = torch.tensor([[[0, 3], [IGNORE_INDEX, 3]], [[2, 0], [0, 0]]])
    assert torch.equal(in_label_set(masks, labels), expected)


def test_validation_logs_miou_without_a_prefix(segmenter, trainer):
    model = segmenter()
    trainer().validate(model, datamodule=FakeSegmentation())
    assert {"val/mIoU", "val/pixel_accuracy"} <= model.trainer.callback_metrics.keys()


def test_segmentation_comparison_keeps_each_class_s_colour_across_truth_and_prediction():
    grey = np.full((16, 16, 3), 128, dtype=np.uint8)
    truth = torch.full((16, 16), IGNORE_INDEX)
    truth[:, :8] = 2
    prediction = torch.full((16, 16), 1)
    prediction[:, :8] = 2
    picture = drawing.segmentation_comparison([grey, grey], [truth, truth], [prediction, prediction], SEEN)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    cell, top, margin = 128, drawing.MARGIN + drawing._line_height(drawing._font(drawing.TEXT_PX)), drawing.MARGIN
    left, right = margin, 2 * margin + cell  # the two columns' x
    colour_of = dict(zip([1, 2], drawing.palette(2)))  # the classes present in either mask, in order

    def half(colour) -> np.ndarray:
        return np.broadcast_to(colour, (cell, cell // 2, 3))

    for row in range(2):
        y = top + row * (cell + margin)
        truth_cell, prediction_cell = (picture[y : y + cell, x : x + cell] for x in (left, right))
        assert np.array_equal(truth_cell[:, : cell // 2], half(np.add(128, colour_of[2]) // 2))
        assert np.array_equal(prediction_cell[:, : cell // 2], half(np.add(128, colour_of[2]) // 2))
        assert np.array_equal(truth_cell[:, cell // 2 :], half(grey[0, 0]))  # ignored: unpainted
        assert np.array_equal(prediction_cell[:, cell // 2 :], half(np.add(128, colour_of[1]) // 2))
    legend = picture[:, 2 * (cell + margin) :]
    assert all((legend == colour).all(axis=-1).sum() > 20 for colour in colour_of.values())  # both swatches
    assert (picture[margin:top] != 255).any(axis=-1).sum() > 50  # the titles' letters


def test_segmentation_samples_logs_truth_and_prediction_pictures_to_tensorboard(segmenter, tmp_path):
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = L.Trainer(
        logger=logger, callbacks=[SegmentationSamples(num_samples=2)], enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    model, data = segmenter(), FakeSegmentation()
    trainer.validate(model, datamodule=data)
    trainer.test(model, datamodule=data)
    logger.experiment.flush()

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert {"val/segmentation", "test/seen_segmentation", "test/unseen_segmentation"} <= set(events.Tags()["images"])
    for tag in ("val/segmentation", "test/seen_segmentation", "test/unseen_segmentation"):
        (event,) = events.Images(tag)
        picture = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
        cell = 128  # 32-pixel images enlarged 4 times
        assert picture.shape[:2] == (event.height, event.width)
        assert picture.shape[0] >= 2 * cell and picture.shape[1] > 2 * cell  # 2 rows, 2 columns and a legend


@pytest.mark.slow  # about 25 s: two spawned processes import torch and Lightning
def test_miou_under_two_gloo_processes_equals_one_process(segmenter, trainer):
    """5 images in batches of 2 over 2 ranks: the sampler pads rank 1 with a repeat, counted once."""
    results = {}
    for devices, strategy in ((1, "auto"), (2, "ddp_spawn")):
        model = segmenter(background_threshold=0.3)
        run = trainer(accelerator="cpu", devices=devices, strategy=strategy)
        run.test(model, datamodule=FakeSegmentation(samples=5, batch_size=2))
        results[devices] = {k: v for k, v in run.callback_metrics.items() if k.endswith(("mIoU", "hIoU"))}
    assert results[1].keys() == results[2].keys() == {"test/seen_mIoU", "test/unseen_mIoU", "test/hIoU"}
    for name, value in results[1].items():
        torch.testing.assert_close(results[2][name], value)
