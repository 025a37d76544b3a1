"""A checkpoint save that dies half-way leaves the previous checkpoint intact."""
from pathlib import Path

import pytest
import torch

from lit_clip.checkpoint_io import AtomicCheckpointIO
from lit_clip.cli import LitClipCLI


class ExplodesWhilePickled:
    """Stands in for a process killed in the middle of torch.save: some bytes are written, then it stops."""

    def __reduce__(self):
        raise KeyboardInterrupt("killed while saving")


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "weights": torch.arange(1000)}, path)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(10**6), "poison": ExplodesWhilePickled()}, path)
    restored = torch.load(path, weights_only=True)
    assert restored["step"] == 1 and torch.equal(restored["weights"], torch.arange(1000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no partial file left behind


def test_cli_trainers_write_checkpoints_atomically(tmp_path):
    config = Path(__file__).resolve().parents[1] / "configs/clip/shapes.yaml"
    cli = LitClipCLI(args=["--config", str(config), f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
