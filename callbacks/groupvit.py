"""Pictures of GroupViT's grouping: how each stage divides validation images (drawn by :mod:`lit_clip.drawing`)."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lit_clip import drawing


class GroupMaps(L.Callback):
    """After each validation and test epoch, logs the first ``num_samples`` images of the first evaluation batch
    with the groups of every stage (each pixel's most assigned group, the soft assignments multiplied through
    the stages), tag ``val/groups`` / ``test/groups``: the segments GroupViT forms without ever seeing a mask.

    Needs a model with ``encode_groups`` (:class:`~lit_clip.models.groupvit.GroupViT`) under ``pl_module.model``;
    on the first process only, not in the sanity check.
    """

    def __init__(self, num_samples: int = 4):
        self.num_samples = num_samples
        self._picture = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, "test")

    @torch.no_grad()
    def _collect(self, trainer, pl_module, batch: dict, batch_idx: int, dataloader_idx: int) -> None:
        if batch_idx or dataloader_idx or "image" not in batch or trainer.sanity_checking or not trainer.is_global_zero:
            return
        images = batch["image"][: self.num_samples]
        maps = pl_module.model.encode_groups(images).maps(size=images.shape[-2:])
        self._picture = drawing.group_stages(drawing.to_uint8_image(images), maps)

    def _log(self, trainer, stage: str) -> None:
        picture, self._picture = self._picture, None
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if picture is not None and logger is not None:
            logger.experiment.add_image(f"{stage}/groups", picture, trainer.global_step, dataformats="HWC")
