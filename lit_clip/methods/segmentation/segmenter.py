"""What every language-driven segmenter on a frozen CLIP text tower shares: labels as text, mIoU per label set.

- A label set is free text: the data module's ``classnames`` for training and validation, and for
  testing each of its evaluation sets in turn (the seen labels and the unseen ones of a zero-shot
  split, as ``ShapesWorldSegmentation`` gives them). :meth:`set_classes` builds the label set's text
  embeddings (``self.text_classifier``, ``[dim, labels]``) from the data module's prompt templates.
- :meth:`forward` gives per-pixel logits ``[batch, labels, H, W]`` at the images' resolution; the
  prediction is their argmax. Masks mark unlabelled pixels with ``IGNORE_INDEX`` (255).
- Few-shot segmentation episodes (PASCAL-5i, COCO-20i, FSS-1000, the zero-shot protocol LSeg reports on) label
  each image over its own labels: the batch's ``labels`` ``[batch, 2]`` ("others" and the episode's class, as
  indices into the label set) pick which text embeddings its logits are over, and the episodes are scored by
  the benchmarks' mIoU over classes and FB-IoU (:class:`~lit_clip.metrics.EpisodicSegmentationMetrics`).
- Metrics: ``{stage}/mIoU``, ``pixel_accuracy`` and per-label ``IoU/<label>``, every image counted
  once under DDP, prefixed with the evaluation set's name when there are several
  (``test/seen_mIoU``, ``test/unseen_mIoU``), and their harmonic mean ``test/hIoU`` (the zero-shot
  segmentation papers' summary).
- Training, where a method trains, minimises the per-pixel cross-entropy over labelled pixels.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_clip.batches import IGNORE_INDEX, EvaluationSet, SegmentationBatch
from lit_clip.methods.frozen_clip import FrozenCLIPMethod
from lit_clip.metrics import EpisodicSegmentationMetrics, SegmentationMetrics

Metric = SegmentationMetrics | EpisodicSegmentationMetrics


class CLIPSegmenter(FrozenCLIPMethod):
    """Base class: per-pixel logits over a label set given as text; subclasses implement :meth:`forward`."""

    harmonic_pair = ("seen", "unseen")
    headline = "mIoU"
    harmonic_name = "hIoU"

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Per-pixel logits ``[batch, labels, H, W]`` over the labels of the last :meth:`set_classes`, or, given
        ``labels`` ``[batch, K]`` (indices into them), over each image's own K labels."""
        raise NotImplementedError

    def cosine_logits(self, scale: float | Tensor, pixels: Tensor, labels: Tensor | None = None) -> Tensor:
        """``scale * pixel . label`` ``[B, L or K, h, w]`` in fp32 for L2-normalised ``pixels`` ``[B, dim, h, w]``,
        against every label's text embedding or each image's ``labels``. Never under autocast: bf16 would round
        the logits and tie close labels."""
        with torch.autocast(pixels.device.type, enabled=False):
            pixels, weights = pixels.float(), self.text_classifier.float()
            if labels is None:
                return scale * torch.einsum("bdhw,dl->blhw", pixels, weights)
            return scale * torch.einsum("bdhw,bkd->bkhw", pixels, weights.T[labels])

    def set_classes(self, classnames: Sequence[str]) -> None:
        duplicates = sorted({name for name in classnames if list(classnames).count(name) > 1})
        if duplicates:
            raise ValueError(f"the label set names {duplicates} more than once; each label must be one class")
        self.build_text_classifier(classnames)

    # --- training --------------------------------------------------------------------------------
    def training_step(self, batch: SegmentationBatch, batch_idx: int) -> Tensor:
        # Per step, not per epoch: a validation in mid-epoch (val_check_interval) may switch to its label set.
        self.use_classes(self.trainer.datamodule.classnames)
        logits = self(self.batch_input(batch), batch.get("labels"))
        labelled = batch["mask"] != IGNORE_INDEX
        loss = F.cross_entropy(logits.float(), batch["mask"], ignore_index=IGNORE_INDEX)
        batch_size = batch["mask"].shape[0]
        accuracy = (logits.argmax(dim=1) == batch["mask"])[labelled].float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/pixel_accuracy", accuracy, batch_size=batch_size)
        return loss

    # --- evaluation ------------------------------------------------------------------------------
    def evaluation_metric(self, evaluation_set: EvaluationSet) -> Metric:
        if evaluation_set.episodic:
            return EpisodicSegmentationMetrics(len(evaluation_set.classnames))
        return SegmentationMetrics(len(evaluation_set.classnames))

    def evaluate_batch(self, batch: SegmentationBatch, metric: Metric) -> None:
        labels = batch.get("labels")
        predictions = self.predict_masks(self.batch_input(batch), labels)
        if isinstance(metric, EpisodicSegmentationMetrics):
            if labels is None:
                raise ValueError("an episodic evaluation set needs the episodes' 'labels' in its batches")
            metric.update(predictions, batch["mask"], labels[:, 1], batch["index"])
        else:
            metric.update(predictions, batch["mask"], batch["index"])

    def log_result(self, prefix: str, result: dict[str, Tensor], evaluation_set: EvaluationSet) -> None:
        super().log_result(prefix, result, evaluation_set)
        for label, iou in zip(evaluation_set.classnames, result["IoU_per_class"]):
            if not iou.isnan():  # a label in neither the masks nor the predictions has no IoU
                self.log(f"{prefix}IoU/{label}", iou, add_dataloader_idx=False)

    def predict_masks(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """The label of every pixel, ``[batch, H, W]`` (with ``labels``: indices into each image's labels)."""
        return self(images, labels).argmax(dim=1)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Per-pixel labels (indices into ``labels``, or into each image's ``episode_labels``) of the data module's
        label set, with the images' paths."""
        self.use_classes(self.trainer.datamodule.classnames)
        episode_labels = batch.get("labels")
        prediction = {
            **{key: batch[key] for key in ("path", "index") if key in batch},
            "masks": self.predict_masks(self.batch_input(batch), episode_labels),
            "labels": list(self.classnames),
        }
        if episode_labels is not None:
            prediction["episode_labels"] = episode_labels
        return prediction
