"""``lit-clip fit|validate|test|predict --config configs/...yaml``: LightningCLI with lit-clip's conventions.

- model and data are chosen in the config (``class_path`` / ``init_args``), so one
  CLI serves every method and data set;
- several ``--config`` files compose left to right (``--config configs/clip/shapes.yaml
  --config configs/presets/bf16.yaml``), and omegaconf interpolation
  (``${data.init_args.image_size}``) is resolved on the merged result, so a config may
  refer to values set by another (jsonargparse's ``omegaconf+`` mode);
- the resolved config, with the seed actually used, is saved as ``config.yaml`` in
  the run directory next to the TensorBoard events and checkpoints;
- checkpoints are written atomically (``AtomicCheckpointIO``) unless the config names
  its own plugins, so a kill during a save never corrupts ``last.ckpt``.
"""
from __future__ import annotations

import jsonargparse
import lightning as L
from lightning.pytorch.cli import LightningCLI

from lit_clip.checkpoint_io import AtomicCheckpointIO

# Interpolations are written from the config's root (`${model.init_args.lr}`); under a
# subcommand the merged config's root is `fit.`, so jsonargparse rewrites them as relative paths.
jsonargparse.set_parsing_settings(omegaconf_absolute_to_relative_paths=True)


class LitClipCLI(LightningCLI):
    def __init__(self, args=None, run: bool = True):
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=True,  # a random seed is drawn and recorded when the config gives none
            parser_kwargs={"parser_mode": "omegaconf+"},
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )

    def _instantiate_trainer(self, config: dict, callbacks: list) -> L.Trainer:
        if not config.get("plugins"):
            config["plugins"] = [AtomicCheckpointIO()]
        return super()._instantiate_trainer(config, callbacks)


def main(args=None) -> None:
    LitClipCLI(args=args)


if __name__ == "__main__":
    main()
