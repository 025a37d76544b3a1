"""The DataLoader of the generated data sets (ShapesWorld's modules)."""
from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader


def stateful_loader(
    dataset: Dataset, batch_size: int, num_workers: int, shuffle: bool = False, collate_fn: Callable | None = None
) -> StatefulDataLoader:
    """A loader whose position Lightning stores in checkpoints, so a run killed mid-epoch resumes with exactly the
    batches it had not yet seen. A shuffled (training) loader drops its last partial batch: every rank steps with
    a full batch (a gathered contrastive loss needs equal ones)."""
    return StatefulDataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
