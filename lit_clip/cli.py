"""``lit-clip fit|validate|test|predict --config configs/...yaml``: LightningCLI with lit-clip's conventions.

- model and data are chosen in the config (``class_path`` / ``init_args``), so one
  CLI serves every method and data set;
- several ``--config`` files compose left to right (``--config configs/clip/shapes.yaml
  --config configs/presets/bf16.yaml``), and omegaconf interpolation
  (``${data.init_args.image_size}``) is resolved on the merged result, so a config may
  refer to values set by another (jsonargparse's ``omegaconf+`` mode);
- the resolved config, with the seed actually used, is saved as ``config.yaml`` in
  the run directory next to the TensorBoard events and checkpoints; a resumed run adds
  ``config.resume1.yaml`` and so on beside it, never overwriting what is there;
- ``fit --ckpt_path last`` continues the newest run of the config's logger name: in the same
  run directory and logger version (TensorBoard shows one curve), from that run's newest
  ``last.ckpt``; any checkpoint path inside a run directory continues that run the same way.
  ``validate``, ``test`` and ``predict`` read ``last`` as that same file;
- TensorBoard's ``hp_metric`` is the first ``ModelCheckpoint``'s monitored metric
  (:class:`~lit_clip.callbacks.MonitoredHpMetric`), not Lightning's placeholder -1;
- ``save_last: true`` on a ``ModelCheckpoint`` means the newest state, every epoch and at the
  steps the callback saves (a :class:`~lit_clip.callbacks.LastCheckpoint` does the writing);
- ``predict`` writes the method's predictions (embeddings, class probabilities, ...) with the
  images' paths into the run directory (:class:`~lit_clip.callbacks.PredictionWriter`);
- checkpoints are written atomically (``AtomicCheckpointIO``) unless the config names
  its own plugins, so a kill during a save never corrupts ``last.ckpt``;
- a run that fails before it has trained a step or written a checkpoint removes the run
  directory it created, so failed attempts leave no empty ``version_N`` behind.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import jsonargparse
import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import Logger

from lit_clip.callbacks.hp_metric import MonitoredHpMetric
from lit_clip.callbacks.last_checkpoint import LastCheckpoint
from lit_clip.callbacks.predictions import PredictionWriter
from lit_clip.checkpoint_io import AtomicCheckpointIO

log = logging.getLogger(__name__)

# Interpolations are written from the config's root (`${model.init_args.lr}`); under a
# subcommand the merged config's root is `fit.`, so jsonargparse rewrites them as relative paths.
jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)


class KeepEarlierConfigs(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml``, or, where a run directory already has one (a resumed
    run), as ``config.resume1.yaml``, ``config.resume2.yaml``, ...: the run's first config is kept."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.already_saved:
            log_dir = Path(trainer.log_dir)  # every rank calls it: it broadcasts
            name = _free_config_name(log_dir) if trainer.is_global_zero else None
            self.config_filename = trainer.strategy.broadcast(name)
        super().setup(trainer, pl_module, stage)


def _free_config_name(log_dir: Path) -> str:
    name, resume = "config.yaml", 0
    while (log_dir / name).exists():
        resume += 1
        name = f"config.resume{resume}.yaml"
    return name


class LitClipCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=True,  # a random seed is drawn and recorded when the config gives none
            parser_kwargs={"parser_mode": "omegaconf+"},
            save_config_callback=KeepEarlierConfigs,
            args=args,
            run=run,
        )

    def _instantiate_trainer(self, config: dict, callbacks: list) -> L.Trainer:
        if not config.get("plugins"):
            config["plugins"] = [AtomicCheckpointIO()]
        run_callbacks = list(config.get("callbacks") or [])
        if self.subcommand == "fit":
            run_callbacks = _newest_state_as_last(run_callbacks)
            monitor = next((c.monitor for c in run_callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
            if monitor is not None:
                run_callbacks.append(MonitoredHpMetric(monitor))
        if self.subcommand == "predict" and not any(isinstance(c, BasePredictionWriter) for c in run_callbacks):
            run_callbacks.append(PredictionWriter())
        if self.subcommand is not None:  # None when the CLI only parses (run=False)
            self._continue_run(_run_logger(config.get("logger")), run_callbacks)
        config["callbacks"] = run_callbacks
        return super()._instantiate_trainer(config, callbacks)

    def _continue_run(self, logger: Logger | None, callbacks: list) -> None:
        """Resolve ``--ckpt_path last`` to a file and, when fitting, point the logger at the run that wrote it."""
        arguments = self.config_init[self.subcommand]
        if arguments.get("ckpt_path") == "last":
            arguments["ckpt_path"] = _newest_last_checkpoint(logger, callbacks)
            if arguments["ckpt_path"] is None and self.subcommand == "fit":
                log.warning("--ckpt_path last: no last.ckpt of an earlier run was found; starting a new run")
            elif arguments["ckpt_path"] is None:
                raise FileNotFoundError(
                    f"--ckpt_path last: no last.ckpt under {logger.root_dir if logger else 'the checkpoint folders'}; "
                    "give the checkpoint's path"
                )
        if self.subcommand == "fit" and arguments.get("ckpt_path") and logger is not None:
            version = _run_version(Path(arguments["ckpt_path"]), Path(logger.root_dir))
            if version is not None:
                # The logger's own version attribute: its log directory becomes that run's.
                logger._version = version
                log.info("continuing run %s from %s", Path(logger.root_dir) / version, arguments["ckpt_path"])

    def _run_subcommand(self, subcommand: str) -> None:
        logger = _run_logger(self.trainer.logger)
        # Loggers with a directory per run (TensorBoard, CSV): `root_dir` holds the runs, `log_dir` is this one.
        root = Path(logger.root_dir) if logger is not None and hasattr(logger, "log_dir") else None
        earlier_runs = set(os.listdir(root)) if root is not None and root.is_dir() else set()
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            if root is not None and self.trainer.is_global_zero:
                self._remove_failed_run(Path(logger.log_dir), root, earlier_runs, subcommand)
            raise

    def _remove_failed_run(self, run_dir: Path, root: Path, earlier_runs: set[str], subcommand: str) -> None:
        """Delete the directory this failed run created, unless it holds a checkpoint or a trained curve."""
        trained = subcommand == "fit" and self.trainer.global_step > 0
        created = run_dir.parent == root and run_dir.name not in earlier_runs and run_dir.is_dir()
        if not created or trained or any(run_dir.rglob("*.ckpt")):
            return
        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("removed %s: the run failed before it trained or saved anything", run_dir)


def _newest_state_as_last(callbacks: list) -> list:
    """The callbacks with every ``ModelCheckpoint(save_last=True)``'s last.ckpt written by a LastCheckpoint.

    The LastCheckpoints go last: checkpoint callbacks save at the end of an epoch in list order, and
    last.ckpt must hold the state of the others after their own saves (their best files).
    """
    others, lasts = [], []
    for callback in callbacks:
        if isinstance(callback, LastCheckpoint):
            lasts.append(callback)
            continue
        if type(callback) is ModelCheckpoint and callback.save_last:
            lasts.append(
                LastCheckpoint(
                    dirpath=callback.dirpath,
                    every_n_train_steps=callback._every_n_train_steps or None,
                    train_time_interval=callback._train_time_interval,
                )
            )
            callback.save_last = False
            if callback.save_top_k == 0:  # it was there for last.ckpt alone
                continue
        others.append(callback)
    return others + lasts


def _run_logger(logger) -> Logger | None:
    """The logger whose directory is the run directory (TensorBoard, CSV), if there is one."""
    loggers = logger if isinstance(logger, list) else [logger]
    return next((lg for lg in loggers if isinstance(lg, Logger) and lg.root_dir), None)


def _newest_last_checkpoint(logger: Logger | None, callbacks: list) -> str | None:
    """The newest ``last*.ckpt`` in the checkpoint callbacks' folders and the logger's run directories."""
    folders = [Path(cb.dirpath) for cb in callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    if logger is not None and Path(logger.root_dir).is_dir():
        folders += [run / "checkpoints" for run in Path(logger.root_dir).iterdir() if run.is_dir()]
    candidates = [path for folder in folders if folder.is_dir() for path in folder.glob("last*.ckpt")]
    return str(max(candidates, key=lambda path: path.stat().st_mtime)) if candidates else None


def _run_version(checkpoint: Path, root: Path) -> str | None:
    """The run directory's name (``version_3``) when ``checkpoint`` lies in one below ``root``."""
    try:
        relative = checkpoint.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return relative.parts[0] if len(relative.parts) > 1 else None


def main(args=None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["demo"]:  # the demo page is no Lightning subcommand: it has its own arguments
        from lit_clip.demo import main as demo

        return demo(argv[1:])
    LitClipCLI(args=args)


if __name__ == "__main__":
    main()
