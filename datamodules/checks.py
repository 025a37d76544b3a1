"""Checks a data module makes before its loaders run, so that a misfit says what to change."""
from __future__ import annotations

import lightning as L


def require_one_batch(num_samples: int, batch_size: int, trainer: L.Trainer | None, what: str) -> None:
    """A training loader that drops its last partial batch must have one full batch on every process.

    Without one, the epoch has no step, and the first thing to fail would be the learning-rate
    schedule's arithmetic rather than this plain statement of what is too small.
    """
    world_size = trainer.world_size if trainer is not None else 1
    per_step = batch_size * world_size
    if num_samples < per_step:
        processes = f" x {world_size} processes = {per_step}" if world_size > 1 else ""
        raise ValueError(
            f"{num_samples} {what} are fewer than one training batch of {batch_size}{processes} "
            f"(short by {per_step - num_samples}); lower batch_size to at most {num_samples // world_size} "
            "or give more data"
        )
