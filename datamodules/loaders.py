"""The DataLoaders of the data modules: the generated data sets' (ShapesWorld's) and those of files with the
bad-sample policy."""
from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset

from lit_clip.datamodules.images import RobustSamples, without_bad_samples
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


def robust_loader(dataset: Dataset, hparams, collate: Callable[[list[dict]], dict], train: bool) -> StatefulDataLoader:
    """A loader of image files under the bad-sample policy ``hparams.bad_samples`` (see
    :mod:`lit_clip.datamodules.images`), batches of ``batch_size`` in training (shuffled, the last partial one
    dropped) and of ``eval_batch_size`` in evaluation; stateful, so a run killed mid-epoch resumes with the batches
    it had not yet seen."""
    return StatefulDataLoader(
        RobustSamples(dataset, hparams.bad_samples),
        batch_size=hparams.batch_size if train else hparams.eval_batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=hparams.num_workers,
        persistent_workers=hparams.num_workers > 0,
        collate_fn=without_bad_samples(collate, training=train),
    )
