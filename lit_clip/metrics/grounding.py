"""Phrase-grounding recall (Flickr30k Entities, as MDETR's and GLIP's evaluators count it), each image once under
DDP."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou

from lit_clip.distributed import gather_unique


def union_box(boxes: Tensor) -> Tensor:
    """The smallest box ``[1, 4]`` holding all of ``boxes`` ``[N, 4]`` (x1, y1, x2, y2)."""
    return torch.cat([boxes[:, :2].min(dim=0).values, boxes[:, 2:].max(dim=0).values])[None]


class PhraseGroundingRecall:
    """Recall@k of phrase grounding: a phrase is found at k when one of its k best-scored predicted boxes overlaps
    one of its ground-truth boxes with IoU >= ``iou_threshold`` (0.5): the "any box" protocol (Flickr30k Entities'
    separate ground truth); ``merge_boxes``: a phrase's ground-truth boxes are first merged into their union box
    (the merged protocol). A phrase without any predicted box counts as missed.

    ``update(ranked_boxes, truth_boxes, index)``: per image, one entry per phrase: ``ranked_boxes[b][k]`` ``[K, 4]``
    best first, ``truth_boxes[b][k]`` ``[G, 4]``. ``compute()``: ``{"R@1", "R@5", "R@10"}`` over every phrase of
    every image any rank saw (each dataset ``index`` once).
    """

    def __init__(self, ks: Sequence[int] = (1, 5, 10), iou_threshold: float = 0.5, merge_boxes: bool = False):
        self.ks, self.iou_threshold, self.merge_boxes = tuple(ks), iou_threshold, merge_boxes
        self._counts: list[tuple[Tensor, Tensor, Tensor]] = []

    def update(self, ranked_boxes: Sequence[Sequence[Tensor]], truth_boxes: Sequence[Sequence[Tensor]],
               index: Tensor) -> None:  # fmt: skip
        hits = torch.zeros(len(index), len(self.ks), dtype=torch.long, device=index.device)
        phrases = torch.zeros(len(index), dtype=torch.long, device=index.device)
        for b, (predicted, truth) in enumerate(zip(ranked_boxes, truth_boxes)):
            phrases[b] = len(truth)
            for boxes, targets in zip(predicted, truth):
                if len(boxes) == 0:
                    continue
                if self.merge_boxes:
                    targets = union_box(targets)
                best_so_far = box_iou(boxes.float(), targets.float()).max(dim=1).values.cummax(dim=0).values
                for j, k in enumerate(self.ks):
                    hits[b, j] += int(best_so_far[min(k, len(boxes)) - 1] >= self.iou_threshold)
        self._counts.append((index, hits, phrases))

    @property
    def has_updates(self) -> bool:
        return bool(self._counts)

    def compute(self) -> dict[str, Tensor]:
        index, hits, phrases = (torch.cat(parts) for parts in zip(*self._counts))
        _, hits, phrases = gather_unique(index, hits, phrases)
        self._counts = []
        total = phrases.sum().clamp(min=1)
        return {f"R@{k}": hits[:, j].sum() / total for j, k in enumerate(self.ks)}
