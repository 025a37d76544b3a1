"""What every language-driven segmenter on a frozen CLIP text tower shares: labels as text, mIoU per label set.

- A label set is free text: the data module's ``classnames`` for training and validation, and for
  testing each of its evaluation sets in turn (the seen labels and the unseen ones of a zero-shot
  split, as ``ShapesWorldSegmentation`` gives them). :meth:`set_classes` builds the label set's text
  embeddings (``self.text_classifier``, ``[dim, labels]``) from the data module's prompt templates.
- :meth:`forward` gives per-pixel logits ``[batch, labels, H, W]`` at the images' resolution; the
  prediction is their argmax. Masks mark unlabelled pixels with ``IGNORE_INDEX`` (255).
- Metrics: ``{stage}/mIoU``, ``pixel_accuracy`` and per-label ``IoU/<label>``, every image counted
  once under DDP, prefixed with the evaluation set's name when there are several
  (``test/seen_mIoU``, ``test/unseen_mIoU``), and their harmonic mean ``test/hIoU`` (the zero-shot
  segmentation papers' summary).
- Training, where a method trains, minimises the per-pixel cross-entropy over labelled pixels.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from lit_clip.batches import IGNORE_INDEX, EvaluationSet, SegmentationBatch
from lit_clip.methods.frozen_clip import FrozenCLIPMethod
from lit_clip.metrics import SegmentationMetrics


class CLIPSegmenter(FrozenCLIPMethod):
    """Base class: per-pixel logits over a label set given as text; subclasses implement :meth:`forward`."""

    harmonic_pair = ("seen", "unseen")
    headline = "mIoU"
    harmonic_name = "hIoU"

    def forward(self, images: Tensor) -> Tensor:
        """Per-pixel logits ``[batch, labels, H, W]`` over the labels of the last :meth:`set_classes`."""
        raise NotImplementedError

    def set_classes(self, classnames: Sequence[str]) -> None:
        duplicates = sorted({name for name in classnames if list(classnames).count(name) > 1})
        if duplicates:
            raise ValueError(f"the label set names {duplicates} more than once; each label must be one class")
        self.build_text_classifier(classnames)

    # --- training --------------------------------------------------------------------------------
    def training_step(self, batch: SegmentationBatch, batch_idx: int) -> Tensor:
        # Per step, not per epoch: a validation in mid-epoch (val_check_interval) may switch to its label set.
        self.use_classes(self.trainer.datamodule.classnames)
        logits = self(self.batch_input(batch))
        labelled = batch["mask"] != IGNORE_INDEX
        loss = F.cross_entropy(logits.float(), batch["mask"], ignore_index=IGNORE_INDEX)
        batch_size = batch["mask"].shape[0]
        accuracy = (logits.argmax(dim=1) == batch["mask"])[labelled].float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/pixel_accuracy", accuracy, batch_size=batch_size)
        return loss

    # --- evaluation ------------------------------------------------------------------------------
    def evaluation_metric(self, evaluation_set: EvaluationSet) -> SegmentationMetrics:
        return SegmentationMetrics(len(evaluation_set.classnames))

    def evaluate_batch(self, batch: SegmentationBatch, metric: SegmentationMetrics) -> None:
        metric.update(self.predict_masks(self.batch_input(batch)), batch["mask"], batch["index"])

    def log_result(self, prefix: str, result: dict[str, Tensor], evaluation_set: EvaluationSet) -> None:
        super().log_result(prefix, result, evaluation_set)
        for label, iou in zip(evaluation_set.classnames, result["IoU_per_class"]):
            if not iou.isnan():  # a label in neither the masks nor the predictions has no IoU
                self.log(f"{prefix}IoU/{label}", iou, add_dataloader_idx=False)

    def predict_masks(self, images: Tensor) -> Tensor:
        """The label of every pixel, ``[batch, H, W]``."""
        return self(images).argmax(dim=1)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Per-pixel labels (indices into ``labels``) of the data module's label set, with the images' paths."""
        self.use_classes(self.trainer.datamodule.classnames)
        return {
            **{key: batch[key] for key in ("path", "index") if key in batch},
            "masks": self.predict_masks(self.batch_input(batch)),
            "labels": list(self.classnames),
        }
