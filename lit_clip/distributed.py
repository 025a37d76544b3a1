"""Gathering across processes: features for the contrastive losses (with gradient, ranks may
hold fewer rows), and evaluation rows without double counting.

A DistributedSampler pads the last ranks with repeated samples so that every
rank gets the same number of batches; metrics computed on everything the ranks
saw would count those repeats. Evaluation batches therefore carry each sample's
dataset ``index``: :func:`gather_unique` collects every rank's rows and keeps
each index once, sorted, so 2 processes compute on exactly what 1 would.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import Tensor

T = TypeVar("T")


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


def distributed_rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(features: Tensor) -> Tensor:
    """Every rank's ``features`` concatenated in rank order; gradients flow back to each owner."""
    return torch.cat(dist_fn.all_gather(features), dim=0)


class _Gathered(NamedTuple):
    """Every rank's rows, each rank's block padded to the same number of rows."""

    features: list[Tensor]  # one [world_size * rows, dim] tensor per input, in rank order
    real: Tensor | None  # [world_size * rows] bool: which rows are real, not padding; None: all are
    total: Tensor | int  # the number of real rows over all ranks
    offset: int  # where this rank's block starts


def gather_padded(*features: Tensor, rows: int | None) -> _Gathered:
    """All-gather ``features`` with gradient, where ranks may hold fewer than ``rows`` rows.

    A data module that leaves bad samples out of a batch gives ranks batches of different sizes,
    which an all-gather cannot take. Each rank pads its block to ``rows`` (the batch size every rank
    was meant to have); the real rows are known from the gathered counts, computed on the device,
    so this adds one small all-gather and no host synchronisation. ``rows=None``: every rank holds
    the same number of rows, nothing to pad or mask (``real`` is None).
    """
    rank, world_size = distributed_rank_and_size()
    local = features[0].shape[0]
    if rows is None:
        return _Gathered([gather_with_grad(f) for f in features], None, world_size * local, rank * local)
    counts = torch.cat(dist_fn.all_gather(torch.tensor([local], device=features[0].device)))
    real = (torch.arange(rows, device=counts.device) < counts[:, None]).flatten()
    gathered = [gather_with_grad(F.pad(f, (0, 0, 0, rows - local))) for f in features]
    return _Gathered(gathered, real, counts.sum(), rank * rows)


def evaluate_on_first_rank(local: Any, evaluate: Callable[[list[Any]], T]) -> T:
    """``evaluate(every rank's local, in rank order)``, run on rank 0 alone and returned on every rank.

    For evaluations too heavy to repeat on each rank of a node (COCO / LVIS AP need minutes and GBs of memory).
    When ``evaluate`` raises, every rank raises, instead of the others waiting for a result that never comes.
    """
    if not is_distributed():
        return evaluate([local])
    first = dist.get_rank() == 0
    gathered = [None] * dist.get_world_size() if first else None
    dist.gather_object(local, gathered, dst=0)
    result, failure = None, None
    if first:
        try:
            result = evaluate(gathered)
        except Exception as error:  # noqa: BLE001 - re-raised below, after the other ranks have heard of it
            failure = error
    shared = [result, None if failure is None else repr(failure)]
    dist.broadcast_object_list(shared, src=0)
    if failure is not None:
        raise failure
    if shared[1] is not None:
        raise RuntimeError(f"the evaluation on rank 0 failed: {shared[1]}")
    return shared[0]
