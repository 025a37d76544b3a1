"""Semantic segmentation mIoU and pixel accuracy, counted once per sample under DDP."""
from __future__ import annotations

import torch
from torch import Tensor

from lit_clip.batches import IGNORE_INDEX
from lit_clip.distributed import gather_unique


class SegmentationMetrics:
    """mIoU, per-class IoU and pixel accuracy over a split, each sample counted once.

    ``update(predictions, masks, index)`` keeps, per sample, the intersection and union pixel counts of each
    class (2C int64 numbers on the device, not a C x C confusion matrix) and its number of labelled pixels;
    ``compute()`` gathers them from all ranks with each dataset ``index`` once (as :class:`TopKAccuracy`) and sums.

    Pixels labelled ``ignore_index``, or outside [0, C), count nowhere. A class's IoU is its intersection over
    its union on the whole split; a class in neither the labels nor the predictions (union 0) gets NaN and is
    left out of mIoU, the confusion-matrix definition (as mmseg's). Pixel accuracy: the share of labelled pixels
    predicted right.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._counts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    def update(self, predictions: Tensor, masks: Tensor, index: Tensor) -> None:
        """``predictions`` and ``masks``: class ids, long ``[B, H, W]``; ``index``: the samples' dataset indices."""
        classes, batch = self.num_classes, masks.shape[0]
        labelled = (masks != self.ignore_index) & (masks >= 0) & (masks < classes)
        predicted = labelled & (predictions >= 0) & (predictions < classes)
        # One bincount for the whole batch: class c of sample b is bin b * C + c.
        offset = torch.arange(batch, device=masks.device).view(-1, 1, 1) * classes

        def count(values: Tensor, where: Tensor) -> Tensor:
            return torch.bincount((values + offset)[where], minlength=batch * classes).view(batch, classes)

        label_area = count(masks, labelled)
        intersection = count(masks, labelled & (predictions == masks))
        union = label_area + count(predictions, predicted) - intersection
        self._counts.append((index, intersection, union, label_area.sum(dim=1)))

    @property
    def has_updates(self) -> bool:
        return bool(self._counts)

    def compute(self) -> dict[str, Tensor]:
        """``{"mIoU", "pixel_accuracy", "IoU_per_class" [C]}`` over every sample any rank saw since the last call."""
        index, intersection, union, labelled = (torch.cat(parts) for parts in zip(*self._counts))
        _, intersection, union, labelled = gather_unique(index, intersection, union, labelled)
        self._counts = []
        intersection, union = intersection.sum(dim=0), union.sum(dim=0)
        iou = intersection / union  # 0 / 0 = NaN: the class is in neither labels nor predictions
        return {"mIoU": iou.nanmean(), "pixel_accuracy": intersection.sum() / labelled.sum(), "IoU_per_class": iou}
