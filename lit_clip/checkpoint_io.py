"""Checkpoints that are never half-written, and the clean-up after a save that was killed.

Lightning writes a checkpoint to a temporary file in the system temp directory
and moves it into place; when that directory is on another filesystem the move
is a copy, and a kill during the copy leaves a truncated ``last.ckpt``, the one
file a resumed run needs. Here the temporary file sits next to the target, is
flushed to disk, and replaces it with one atomic rename: after a kill at any
moment the path holds either the previous checkpoint or the new one.

A kill during the save leaves the temporary ``.<name>.<pid>.partial`` file behind;
:func:`remove_partial_checkpoints` deletes those of dead processes when the run starts again.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

log = logging.getLogger(__name__)

PARTIAL_FILE = re.compile(r"^\..+\.(?P<pid>\d+)\.partial$")
# What a full disk (or a full quota) raises, possibly beneath the writer's own error.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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
        except Exception as error:
            if _disk_full(error):
                free = shutil.disk_usage(path.parent).free
                raise OSError(
                    errno.ENOSPC,
                    f"no space left on the device of {path.parent} while saving checkpoint {path.name} "
                    f"({free / 2**20:.1f} MiB free); {'the previous one is unchanged' if path.exists() else 'nothing was written'}",
                ) from error
            raise
        finally:
            partial.unlink(missing_ok=True)


def _disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` or an error it was raised from is a full disk: torch's writer reports one as its
    own RuntimeError raised while handling the OSError."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in _DISK_FULL:
            return True
        error = error.__cause__ or error.__context__
    return False


def remove_partial_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Delete the partial files that saves killed part-way left in ``directory``; returns them.

    Files of a process still running on this machine are kept: it may be saving right now.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        match = PARTIAL_FILE.match(path.name)
        if match and not _is_running(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d partial checkpoint file(s) left by a killed save in %s", len(removed), directory)
    return removed


def _is_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
