"""Pictures of a segmenter's evaluation: ground truth beside prediction (drawn by :mod:`lit_clip.drawing`; this
callback only gathers the images, masks and predictions and logs)."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from lit_clip import drawing
from lit_clip.batches import IGNORE_INDEX
from lit_clip.methods.frozen_clip import evaluation_sets


def in_label_set(masks: Tensor, labels: Tensor) -> Tensor:
    """Episode masks ``[B, H, W]`` (indices into each image's ``labels`` ``[B, K]``) as indices into the label set;
    ``IGNORE_INDEX`` stays."""
    ignored = masks == IGNORE_INDEX
    picked = labels.gather(1, masks.masked_fill(ignored, 0).flatten(1)).view_as(masks)
    return picked.masked_fill(ignored, IGNORE_INDEX)


class SegmentationSamples(L.Callback):
    """After each validation and test epoch, logs the first ``num_samples`` images of each evaluation set's first
    batch with their ground-truth and predicted masks side by side, under a legend of the label names
    (:func:`lit_clip.drawing.segmentation_comparison`).

    Tags: ``val/segmentation`` and ``test/segmentation``, or, for a data module with named evaluation sets,
    ``test/seen_segmentation``, ``test/unseen_segmentation``. Works with any segmenter on a frozen CLIP
    (:class:`~lit_clip.methods.segmentation.segmenter.CLIPSegmenter`: ``predict_masks`` and ``classnames``) and
    batches ``{"image", "mask"}``; few-shot episodes (batches with each image's own ``labels``) are drawn with
    their labels' names. The prediction is made when the batch ends, while the method holds the batch's label
    set; on the first process only, and not in the sanity check.
    """

    def __init__(self, num_samples: int = 4):
        self.num_samples = num_samples
        self._samples: dict[str, dict] = {}  # per evaluation set's name

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, batch_idx, dataloader_idx, "validate")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, batch_idx, dataloader_idx, "test")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, "test")

    @torch.no_grad()
    def _collect(self, trainer, pl_module, batch: dict, batch_idx: int, dataloader_idx: int, stage: str) -> None:
        if batch_idx != 0 or "mask" not in batch or trainer.sanity_checking or not trainer.is_global_zero:
            return
        images, truths = batch["image"][: self.num_samples], batch["mask"][: self.num_samples]
        labels = batch["labels"][: self.num_samples] if "labels" in batch else None
        predictions = pl_module.predict_masks(images, labels)
        if labels is not None:
            truths, predictions = in_label_set(truths, labels), in_label_set(predictions, labels)
        name = evaluation_sets(trainer.datamodule, stage)[dataloader_idx].name
        self._samples[name] = {
            "images": drawing.to_uint8_image(images),
            "truths": truths.cpu(),
            "predictions": predictions.cpu(),
            "class_names": pl_module.classnames,
        }

    def _log(self, trainer, stage: str) -> None:
        samples, self._samples = self._samples, {}
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        for name, sample in samples.items():
            tag = f"{stage}/{name}_segmentation" if name else f"{stage}/segmentation"
            picture = drawing.segmentation_comparison(**sample)
            logger.experiment.add_image(tag, picture, trainer.global_step, dataformats="HWC")
