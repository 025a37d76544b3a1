"""The plumbing every evaluation picture shares: the first batch of each validation / test loader, drawn while the
method holds that loader's classes, logged to TensorBoard when the epoch ends."""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lit_clip.batches import EvaluationSet
from lit_clip.methods.class_sets import evaluation_sets


class EvaluationPictures(L.Callback):
    """Logs :meth:`picture` of each evaluation set's first batch as ``{stage}/{kind}``, or ``{stage}/{set}_{kind}``
    for a data module with named evaluation sets (``test/unseen_segmentation``). The picture is drawn when the batch
    ends, while the method holds the set's classes; on the first process only, and not in the sanity check. A batch
    without ``batch_key`` (every image unreadable) draws nothing."""

    kind: str
    batch_key: str

    def __init__(self):
        self._pictures: dict[str, np.ndarray] = {}  # per evaluation set's name

    def picture(self, pl_module: L.LightningModule, batch: dict, evaluation_set: EvaluationSet) -> np.ndarray:
        """The picture of a batch, ``[H, W, 3]`` uint8."""
        raise NotImplementedError

    def draws(self, evaluation_set: EvaluationSet) -> bool:
        """Whether this kind of picture is drawn for the set's batches (all; detection's not for phrase grounding)."""
        return True

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, batch_idx, dataloader_idx, "validate")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, batch_idx, dataloader_idx, "test")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, "test")

    @torch.no_grad()
    def _collect(self, trainer, pl_module, batch: dict, batch_idx: int, dataloader_idx: int, stage: str) -> None:
        if batch_idx != 0 or self.batch_key not in batch or trainer.sanity_checking or not trainer.is_global_zero:
            return
        evaluation_set = evaluation_sets(trainer.datamodule, stage)[dataloader_idx]
        if self.draws(evaluation_set):
            self._pictures[evaluation_set.name] = self.picture(pl_module, batch, evaluation_set)

    def _log(self, trainer, stage: str) -> None:
        pictures, self._pictures = self._pictures, {}
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        for name, picture in pictures.items():
            tag = f"{stage}/{name}_{self.kind}" if name else f"{stage}/{self.kind}"
            logger.experiment.add_image(tag, picture, trainer.global_step, dataformats="HWC")
