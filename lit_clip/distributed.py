"""Evaluation across processes without double counting.

A DistributedSampler pads the last ranks with repeated samples so that every
rank gets the same number of batches; metrics computed on everything the ranks
saw would count those repeats. Evaluation batches therefore carry each sample's
dataset ``index``: :func:`gather_unique` collects every rank's rows and keeps
each index once, sorted, so 2 processes compute on exactly what 1 would.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_rows(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` concatenated along dim 0, in rank order; ranks may hold different row counts."""
    if not is_distributed():
        return tensor
    counts = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([tensor.shape[0]], device=tensor.device))
    longest = int(max(counts).item())
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    return torch.cat([rows[: int(count.item())] for rows, count in zip(gathered, counts)])


def gather_unique(index: Tensor, *values: Tensor) -> tuple[Tensor, ...]:
    """``(index, *values)`` from all ranks with each index once, sorted by index."""
    index, *values = (all_gather_rows(t) for t in (index, *values))
    order = torch.argsort(index, stable=True)
    index = index[order]
    first = torch.ones_like(index, dtype=torch.bool)
    first[1:] = index[1:] != index[:-1]
    return (index[first], *(v[order][first] for v in values))
