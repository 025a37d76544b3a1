"""Top-k classification accuracy, counted once per sample under DDP."""
from __future__ import annotations

import torch
from torch import Tensor

from lit_clip.distributed import gather_unique


class TopKAccuracy:
    """Micro top-1 / top-5 accuracy (over images, as the CLIP paper reports), computed once per sample.

    ``update(logits, labels, index)`` per batch keeps the top-5 predictions; ``compute()``
    gathers them from all ranks with each dataset ``index`` once, so the padding repeats of
    a DistributedSampler are not counted (which per-rank torchmetrics states would do).
    """

    def __init__(self):
        self._predictions: list[tuple[Tensor, Tensor, Tensor]] = []

    def update(self, logits: Tensor, labels: Tensor, index: Tensor) -> None:
        top5 = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        self._predictions.append((index, top5, labels))

    @property
    def has_updates(self) -> bool:
        return bool(self._predictions)

    def compute(self) -> dict[str, Tensor]:
        """``{"top1", "top5"}`` over every sample seen by any rank since the last ``compute``."""
        index, top5, labels = (torch.cat(parts) for parts in zip(*self._predictions))
        _, top5, labels = gather_unique(index, top5, labels)
        self._predictions = []
        hits = top5 == labels[:, None]
        return {"top1": hits[:, 0].float().mean(), "top5": hits.any(dim=1).float().mean()}
