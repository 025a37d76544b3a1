"""Pictures of a segmenter's evaluation: ground truth beside prediction (drawn by :mod:`lit_clip.drawing`; this
callback only gathers the images, masks and predictions and logs)."""
from __future__ import annotations

import numpy as np
from torch import Tensor

from lit_clip import drawing
from lit_clip.batches import IGNORE_INDEX, EvaluationSet
from lit_clip.callbacks.evaluation_pictures import EvaluationPictures


def in_label_set(masks: Tensor, labels: Tensor) -> Tensor:
    """Episode masks ``[B, H, W]`` (indices into each image's ``labels`` ``[B, K]``) as indices into the label set;
    ``IGNORE_INDEX`` stays."""
    ignored = masks == IGNORE_INDEX
    picked = labels.gather(1, masks.masked_fill(ignored, 0).flatten(1)).view_as(masks)
    return picked.masked_fill(ignored, IGNORE_INDEX)


class SegmentationSamples(EvaluationPictures):
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

    kind, batch_key = "segmentation", "mask"

    def __init__(self, num_samples: int = 4):
        super().__init__()
        self.num_samples = num_samples

    def picture(self, pl_module, batch: dict, evaluation_set: EvaluationSet) -> np.ndarray:
        images, truths = batch["image"][: self.num_samples], batch["mask"][: self.num_samples]
        labels = batch["labels"][: self.num_samples] if "labels" in batch else None
        predictions = pl_module.predict_masks(images, labels)
        if labels is not None:
            truths, predictions = in_label_set(truths, labels), in_label_set(predictions, labels)
        return drawing.segmentation_comparison(
            drawing.to_uint8_image(images), truths.cpu(), predictions.cpu(), pl_module.classnames
        )
