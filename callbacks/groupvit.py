"""Pictures of GroupViT's grouping: how each stage divides validation images (drawn by :mod:`lit_clip.drawing`), and
how many groups it really uses."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger

from lit_clip import drawing


class GroupMaps(L.Callback):
    """After each validation and test epoch, logs the first ``num_samples`` images of the first evaluation batch
    with the groups of every stage (each pixel's most assigned group, the soft assignments multiplied through
    the stages), tag ``val/groups`` / ``test/groups``: the segments GroupViT forms without ever seeing a mask.

    Over that whole batch it also logs, per stage ``s``, ``val/groups_in_use/stage{s}`` (the groups holding at least
    one patch of an image, on average) and ``val/largest_group/stage{s}`` (the share of an image's patches in its
    largest group): a grouping that collapsed, every patch in one group, reads 1 and 1.0 there whatever the
    pictures' colours suggest.

    Needs a model with ``encode_groups`` (:class:`~lit_clip.models.groupvit.GroupViT`) under ``pl_module.model``;
    on the first process only, not in the sanity check.
    """

    def __init__(self, num_samples: int = 4):
        self.num_samples = num_samples
        self._picture = None
        self._statistics: dict[str, float] = {}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module, "test")

    @torch.no_grad()
    def _collect(self, trainer, pl_module, batch: dict, batch_idx: int, dataloader_idx: int) -> None:
        if batch_idx or dataloader_idx or "image" not in batch or trainer.sanity_checking or not trainer.is_global_zero:
            return
        groups = pl_module.model.encode_groups(batch["image"])
        self._statistics = grouping_statistics(groups.maps())
        images = batch["image"][: self.num_samples]
        maps = [stage_map[: self.num_samples] for stage_map in groups.maps(size=images.shape[-2:])]
        self._picture = drawing.group_stages(drawing.to_uint8_image(images), maps)

    def _log(self, trainer, pl_module, stage: str) -> None:
        picture, self._picture = self._picture, None
        statistics, self._statistics = self._statistics, {}
        for name, value in statistics.items():
            pl_module.log(f"{stage}/{name}", value, rank_zero_only=True)
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if picture is not None and logger is not None:
            logger.experiment.add_image(f"{stage}/groups", picture, trainer.global_step, dataformats="HWC")


def grouping_statistics(maps: list[torch.Tensor]) -> dict[str, float]:
    """From each stage's patch-to-group maps ``[B, G_s, h, w]`` (each patch taken by its most assigned group): the
    groups in use per image and the largest group's share of the patches, averaged over the images."""
    statistics = {}
    for stage, stage_map in enumerate(maps, start=1):
        owner = stage_map.float().argmax(dim=1).flatten(1)  # [B, patches]
        shares = F.one_hot(owner, stage_map.shape[1]).float().mean(dim=1)  # [B, G_s]
        statistics[f"groups_in_use/stage{stage}"] = float((shares > 0).sum(dim=1).float().mean())
        statistics[f"largest_group/stage{stage}"] = float(shares.amax(dim=1).mean())
    return statistics
