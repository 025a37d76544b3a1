"""Checkpoints that are never half-written.

Lightning writes a checkpoint to a temporary file in the system temp directory
and moves it into place; when that directory is on another filesystem the move
is a copy, and a kill during the copy leaves a truncated ``last.ckpt``, the one
file a resumed run needs. Here the temporary file sits next to the target, is
flushed to disk, and replaces it with one atomic rename: after a kill at any
moment the path holds either the previous checkpoint or the new one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote storage: its own transactional upload
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"storage_options are not supported for local checkpoint {path}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
