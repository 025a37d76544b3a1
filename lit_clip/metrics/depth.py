"""Monocular depth metrics (Eigen et al., 2014), counted once per sample under DDP.

The numbers depth papers report, DepthCLIP's among them, on NYU Depth v2 and KITTI: the
threshold accuracies delta < 1.25, 1.25^2, 1.25^3, the absolute and squared relative errors,
the RMSE, the RMSE of log depth and the mean log10 error. Each is computed per image over its
valid pixels (ground truth inside ``[min_depth, max_depth]``, and inside the benchmark's crop where the batch
gives one as ``evaluation_mask``: NYU's Eigen crop, KITTI's Garg crop) and averaged over images, as the usual
evaluation scripts (Eigen's, BTS's, AdaBins') and DepthCLIP's do.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lit_clip.distributed import gather_unique

DEPTH_METRICS = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10")


def depth_errors(prediction: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """``[len(DEPTH_METRICS)]`` for one image: depths ``[H, W]`` in metres, ``valid`` bool ``[H, W]``."""
    pred, true = prediction[valid].double(), target[valid].double()
    ratio = torch.maximum(pred / true, true / pred)
    thresholds = torch.tensor([1.25, 1.25**2, 1.25**3], dtype=ratio.dtype, device=ratio.device)
    delta = (ratio[None] < thresholds[:, None]).double().mean(dim=1)
    return torch.cat([
        delta,
        ((pred - true).abs() / true).mean()[None],
        ((pred - true) ** 2 / true).mean()[None],
        (pred - true).pow(2).mean().sqrt()[None],
        (pred.log() - true.log()).pow(2).mean().sqrt()[None],
        (pred.log10() - true.log10()).abs().mean()[None],
    ])  # fmt: skip


class DepthMetrics:
    """The :data:`DEPTH_METRICS` averaged over images, each dataset ``index`` once (as ``TopKAccuracy``).

    ``min_depth`` / ``max_depth``: the evaluated range (NYU: 1e-3 to 10 m; KITTI: 1e-3 to 80 m); predictions are
    clamped into it, as the evaluation scripts do. Images without a valid pixel are left out.
    """

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 10.0):
        self.min_depth, self.max_depth = min_depth, max_depth
        self._errors: list[tuple[Tensor, Tensor]] = []

    def update(self, predictions: Tensor, depths: Tensor, index: Tensor, evaluation_mask: Tensor | None = None) -> None:
        """``predictions`` and ``depths``: ``[B, H, W]`` in metres (0 where nothing was measured); ``index`` ``[B]``;
        ``evaluation_mask`` bool ``[B, H, W]``, when given: the pixels scored, the others left out as unmeasured
        ones are."""
        if predictions.shape != depths.shape:
            raise ValueError(f"predictions {tuple(predictions.shape)} and depths {tuple(depths.shape)} must match")
        predictions = predictions.clamp(self.min_depth, self.max_depth)
        valid = (depths > self.min_depth) & (depths < self.max_depth)
        if evaluation_mask is not None:
            if evaluation_mask.shape != depths.shape or evaluation_mask.dtype != torch.bool:
                raise ValueError(
                    f"evaluation_mask must be bool {tuple(depths.shape)} like the depths, "
                    f"got {evaluation_mask.dtype} {tuple(evaluation_mask.shape)}"
                )
            valid &= evaluation_mask
        keep = valid.flatten(1).any(dim=1)
        errors = [depth_errors(p, d, v) for p, d, v in zip(predictions[keep], depths[keep], valid[keep])]
        if errors:
            self._errors.append((index[keep], torch.stack(errors)))

    @property
    def has_updates(self) -> bool:
        return bool(self._errors)

    def compute(self) -> dict[str, Tensor]:
        """Each of :data:`DEPTH_METRICS`, the mean over every image any rank saw since the last call."""
        index, errors = (torch.cat(parts) for parts in zip(*self._errors))
        _, errors = gather_unique(index, errors)
        self._errors = []
        return dict(zip(DEPTH_METRICS, errors.mean(dim=0).float()))
