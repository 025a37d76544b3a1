"""Semantic segmentation mIoU and pixel accuracy, and the few-shot benchmarks' episode scores, counted once
per sample under DDP."""
from __future__ import annotations

import torch
from torch import Tensor

from lit_clip.batches import IGNORE_INDEX
from lit_clip.distributed import gather_unique


def class_areas(predictions: Tensor, masks: Tensor, classes: int, ignore_index: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample and class, the pixel counts ``[B, classes]`` of intersection, union and label, over the pixels
    labelled with a class in ``[0, classes)`` (``ignore_index`` and other values count nowhere)."""
    batch = masks.shape[0]
    labelled = (masks != ignore_index) & (masks >= 0) & (masks < classes)
    predicted = labelled & (predictions >= 0) & (predictions < classes)
    # One bincount for the whole batch: class c of sample b is bin b * C + c.
    offset = torch.arange(batch, device=masks.device).view(-1, 1, 1) * classes

    def count(values: Tensor, where: Tensor) -> Tensor:
        return torch.bincount((values + offset)[where], minlength=batch * classes).view(batch, classes)

    label_area = count(masks, labelled)
    intersection = count(masks, labelled & (predictions == masks))
    union = label_area + count(predictions, predicted) - intersection
    return intersection, union, label_area


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
        intersection, union, label_area = class_areas(predictions, masks, self.num_classes, self.ignore_index)
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


class EpisodicSegmentationMetrics:
    """The few-shot segmentation benchmarks' mIoU and FB-IoU (PASCAL-5i, COCO-20i, FSS-1000), as HSNet's evaluator
    that LSeg's code uses, each episode counted once under DDP.

    An episode is an image, one class of the label set and a binary mask: 1 on the class, 0 on the rest, pixels
    marked ``ignore_index`` left out. ``update(predictions, masks, classes, index)`` keeps each episode's
    background and foreground intersection and union; ``compute()`` sums them per class over the episodes of
    every rank (each dataset ``index`` once). mIoU is the mean over the label set's classes (all but label 0,
    "others") of the foreground IoU, a class without episodes counting 0 (the official union is clamped to 1);
    FB-IoU is the mean of the background and the foreground IoU, each pooled over every class.
    """

    def __init__(self, num_labels: int, ignore_index: int = IGNORE_INDEX):
        """``num_labels``: the size of the label set, "others" (label 0) included."""
        self.num_labels = num_labels
        self.ignore_index = ignore_index
        self._counts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    def update(self, predictions: Tensor, masks: Tensor, classes: Tensor, index: Tensor) -> None:
        """``predictions`` and ``masks``: 0 / 1 long ``[B, H, W]``; ``classes``: each episode's label ``[B]``."""
        intersection, union, _ = class_areas(predictions, masks, 2, self.ignore_index)
        self._counts.append((index, classes, intersection, union))

    @property
    def has_updates(self) -> bool:
        return bool(self._counts)

    def compute(self) -> dict[str, Tensor]:
        """``{"mIoU", "FB_IoU", "IoU_per_class"}``; ``IoU_per_class`` ``[num_labels]`` is NaN for "others"."""
        index, classes, intersection, union = (torch.cat(parts) for parts in zip(*self._counts))
        _, classes, intersection, union = gather_unique(index, classes, intersection, union)
        self._counts = []
        per_class_intersection = intersection.new_zeros(self.num_labels, 2).index_add_(0, classes, intersection)
        per_class_union = union.new_zeros(self.num_labels, 2).index_add_(0, classes, union)
        per_class_intersection, per_class_union = per_class_intersection[1:], per_class_union[1:]
        foreground_iou = per_class_intersection[:, 1] / per_class_union[:, 1].clamp(min=1)
        fb_iou = (per_class_intersection.sum(dim=0) / per_class_union.sum(dim=0)).mean()
        iou_per_class = torch.cat([foreground_iou.new_full((1,), float("nan")), foreground_iou])
        return {"mIoU": foreground_iou.mean(), "FB_IoU": fb_iou, "IoU_per_class": iou_per_class}
