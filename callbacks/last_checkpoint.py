"""``last.ckpt`` that always holds the newest state of the run.

Lightning's ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` only when it saves another
checkpoint at the same step: with a monitored metric and ``save_top_k=1`` it stays at the best
epoch, and with ``every_n_train_steps`` the steps after the last multiple are never saved. A
resumed run would then repeat work, or go back to an older state. ``LastCheckpoint`` writes it
every ``every_n_train_steps`` steps (and/or ``train_time_interval``), at the end of every training
epoch (after its validation), and when training ends, whatever other checkpoints do.

The CLI turns a ``save_last: true`` in a config's ``ModelCheckpoint`` into one of these.
"""
from __future__ import annotations

from datetime import timedelta

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_clip.checkpoint_io import remove_partial_checkpoints


class LastCheckpoint(ModelCheckpoint):
    def __init__(
        self,
        dirpath: str | None = None,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
    ):
        """
        Args:
            dirpath: where ``last.ckpt`` goes; by default the run directory's ``checkpoints/``.
            every_n_train_steps: also save every this many optimizer steps (for runs killed mid-epoch).
            train_time_interval: also save when this much time has passed since the last save.
        """
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval,
            enable_version_counter=False,  # one last.ckpt, overwritten, even when a resumed run finds one there
        )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero:
            remove_partial_checkpoints(self.dirpath)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Even when a step save just wrote this step: the epoch's end is a different state to resume from.
        self._save_newest(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # the epoch's end saves, with the validation metrics already in the state

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._last_global_step_saved != trainer.global_step:
            self._save_newest(trainer)

    def _save_newest(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or trainer.global_step == 0:
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
