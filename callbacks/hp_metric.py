"""TensorBoard's ``hp_metric``: the metric the run's best checkpoint is chosen by, not Lightning's -1.

TensorBoard's HParams tab compares runs by ``hp_metric``; Lightning declares it with a placeholder
value of -1 and leaves it there. This callback logs the monitored metric under that name after every
validation, so the tab ranks runs by what their checkpoints were ranked by.
"""
from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger


class MonitoredHpMetric(L.Callback):
    def __init__(self, monitor: str):
        """
        Args:
            monitor: the logged metric to report as ``hp_metric`` (a ModelCheckpoint's ``monitor``).
        """
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        # The step Lightning gives the validation metrics themselves, so hp_metric lines up with them.
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_metrics({"hp_metric": float(value)}, step=step)
