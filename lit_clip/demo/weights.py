"""What the demo page runs: the CLIP of ``--pretrained`` and the method checkpoints it was pointed at.

A method checkpoint written by ``lit-clip fit`` names its method's class (``_class_path`` in its hyper-parameters)
and its data module's; the page offers each checkpoint in its family's tab, loads it on first use and runs it as
``lit-clip predict`` would: :func:`predict` hands the method one batch through a Lightning ``Trainer`` with a data
module that holds the user's class names, so every method answers through its own ``predict_step``.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

import lit_clip.methods  # noqa: F401  (every method class importable: load_from_checkpoint finds them by path)
from lit_clip.checkpoints import load_clip
from lit_clip.methods.frozen_clip import already_loaded
from lit_clip.demo.errors import DemoInputError
from lit_clip.models.clip import CLIP
from lit_clip.templates import resolve_templates

log = logging.getLogger(__name__)

# The tab each method's checkpoints belong to, by class name.
FAMILIES: dict[str, str] = {
    **dict.fromkeys(("LinearProbe", "CoOp", "CoCoOp", "MaPLe", "CLIPAdapter", "TipAdapter", "TipAdapterF"), "few-shot"),
    **dict.fromkeys(("LSeg", "ZeroShotSegmentation", "GroupViTSegmentation"), "segmentation"),
    **dict.fromkeys(("ViLD", "GLIP"), "detection"),
    "AudioCLIPPretraining": "audio",
    **dict.fromkeys(("CLIP4Clip", "ActionCLIP", "VideoCLIP"), "video"),
    **dict.fromkeys(("PointCLIP", "DepthCLIP"), "3d"),
    **dict.fromkeys(("CLIPDraw", "CLIPasso", "VQGANCLIP"), "generation"),
    **dict.fromkeys(("MCANVQA", "TransformerCaptioning", "ClipCap"), "vl"),
    # GroupViT's pretraining: the segmentation tab segments with its groups (GroupViTSegmentation on it)
    "GroupViTPretraining": "segmentation",
    # The CLIPs that --pretrained takes
    **dict.fromkeys(("CLIPPretraining", "SLIPPretraining"), "clip"),
}


class Checkpoint:
    """A checkpoint file written by ``lit-clip fit``: its path, its method's class name and the method's tab."""

    def __init__(self, path: Path, hyper_parameters: dict, datamodule_hyper_parameters: dict | None):
        self.path = path
        self.class_path = hyper_parameters["_class_path"]
        self.method = self.class_path.rsplit(".", 1)[-1]
        self.family = FAMILIES.get(self.method)
        self.hyper_parameters, self.datamodule_hyper_parameters = hyper_parameters, datamodule_hyper_parameters or {}

    @property
    def label(self) -> str:
        """How the page lists it: "CoOp: runs/coop-shapes/version_0/checkpoints/last.ckpt"."""
        return f"{self.method}: {self.path}"


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint's header (no weights are read: the file is memory-mapped), or a :class:`DemoInputError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DemoInputError(f"checkpoint {path} not found; expected a .ckpt file written by `lit-clip fit`")
    try:
        content = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # a truncated file, another format: say which file and what was expected
        raise DemoInputError(f"{path} is not a readable checkpoint ({type(error).__name__}: {error}); "
                             "expected a .ckpt file written by `lit-clip fit`") from error  # fmt: skip
    hyper_parameters = content.get("hyper_parameters") if isinstance(content, dict) else None
    if not hyper_parameters or "_class_path" not in hyper_parameters:
        raise DemoInputError(f"{path} does not name its method (no `_class_path` in its hyper-parameters); "
                             "expected a checkpoint written by `lit-clip fit`")  # fmt: skip
    return Checkpoint(path, dict(hyper_parameters), content.get("datamodule_hyper_parameters"))


def find_checkpoints(sources: Sequence[str | Path]) -> list[Checkpoint]:
    """The method checkpoints among ``sources`` (files, or folders searched recursively for ``*.ckpt``); a file that
    cannot be read is skipped with a warning, a source that does not exist is an error."""
    found = []
    for source in map(Path, sources):
        if not source.exists():
            raise DemoInputError(f"--checkpoints: {source} not found; expected a .ckpt file or a folder of them")
        paths = sorted(source.rglob("*.ckpt")) if source.is_dir() else [source]
        for path in paths:
            try:
                found.append(read_checkpoint(path))
            except DemoInputError as error:
                log.warning("skipped %s", error)
    return found


class Weights:
    """The page's models: the CLIP of ``pretrained`` and the method checkpoints, each loaded once, on first use.

    A path typed on the page is read only if it is one of ``checkpoints`` or lies in one of ``folders`` (the
    ``--checkpoints`` folders): a checkpoint is a pickle, and reading one runs code, so the page never opens a file
    a visitor names elsewhere (an upload, say)."""

    def __init__(self, pretrained: str | None, checkpoints: Sequence[Checkpoint] = (), device: str = "cpu",
                 folders: Sequence[str | Path] = ()):  # fmt: skip
        self.pretrained, self.checkpoints, self.device = pretrained, list(checkpoints), torch.device(device)
        self.folders = [Path(folder).expanduser().resolve() for folder in folders]
        self._clip: CLIP | None = None
        self._methods: dict[tuple[Path, int], L.LightningModule] = {}
        self._data_modules: dict[Path, L.LightningDataModule | None] = {}

    def clip(self) -> CLIP:
        """The CLIP of ``--pretrained``, in eval mode on the page's device."""
        if self.pretrained is None:
            raise DemoInputError("this tab needs a CLIP: start the page with `lit-clip demo --pretrained <checkpoint "
                                 "file, model folder or hub id>`")  # fmt: skip
        if self._clip is None:
            self._clip = load_clip(self.pretrained).eval().requires_grad_(False).to(self.device)
        return self._clip

    def clip_shared(self) -> contextlib.AbstractContextManager:
        """A context in which methods built on ``--pretrained`` (MaskCLIP, PointCLIP, DepthCLIP, the generation
        methods) take the page's CLIP (:meth:`clip`) instead of loading their own copy."""
        return already_loaded({self.pretrained: self.clip()})

    def choices(self, family: str, methods: Sequence[str] | None = None) -> list[str]:
        """The labels of the checkpoints of one tab (of some of its ``methods`` only), for its drop-down."""
        return [checkpoint.label for checkpoint in self.checkpoints
                if checkpoint.family == family and (methods is None or checkpoint.method in methods)]  # fmt: skip

    def checkpoint(self, choice: str | None, family: str, methods: Sequence[str] | None = None) -> Checkpoint:
        """The checkpoint a drop-down label (or a typed path) names, checked to belong to ``family`` (and, given
        ``methods``, to be one of them)."""
        if not choice:
            raise DemoInputError("choose a checkpoint, or type a checkpoint's path; to list a run's checkpoints here, "
                                 "start the page with `lit-clip demo --checkpoints <run folder>`")  # fmt: skip
        checkpoint = next((c for c in self.checkpoints if choice in (c.label, str(c.path))), None)
        if checkpoint is None:
            checkpoint = read_checkpoint(self._allowed(choice))
        wanted = methods or [method for method, its_family in FAMILIES.items() if its_family == family]
        if checkpoint.family != family or checkpoint.method not in wanted:
            raise DemoInputError(f"{checkpoint.path} is a {checkpoint.method} checkpoint, not one of "
                                 f"{', '.join(wanted)}")  # fmt: skip
        return checkpoint

    def _allowed(self, typed: str) -> Path:
        path = Path(typed).expanduser().resolve()
        if not any(path == folder or path.is_relative_to(folder) for folder in self.folders):
            where = ", ".join(map(str, self.folders)) or "none: the page was started without --checkpoints"
            raise DemoInputError(f"{typed}: the page reads typed checkpoint paths only inside its --checkpoints "
                                 f"folders ({where}); start it with `--checkpoints <folder>` to use this file")
        return path

    def method(self, checkpoint: Checkpoint) -> L.LightningModule:
        """The checkpoint's method on the page's device, loaded on first use and again when the file changes (a
        run still training); a frozen CLIP comes back from the ``pretrained`` it names."""
        path = checkpoint.path.resolve()
        key = (path, path.stat().st_mtime_ns if path.exists() else 0)
        if key not in self._methods:
            try:
                method = L.LightningModule.load_from_checkpoint(path, map_location=self.device)
            except Exception as error:  # a missing CLIP file, weights of another shape, a class gone: say which
                pretrained = checkpoint.hyper_parameters.get("pretrained")
                raise DemoInputError(f"{checkpoint.path} ({checkpoint.method}) could not be loaded: "
                                     f"{type(error).__name__}: {error}"
                                     + (f" (its method loads its CLIP from `pretrained: {pretrained}`; run the page "
                                        "where that path exists)" if pretrained else "")) from error  # fmt: skip
            self._methods[key] = method.to(self.device).eval()
        return self._methods[key]

    def load(self, choice: str | None, family: str, methods: Sequence[str] | None = None
             ) -> tuple[Checkpoint, L.LightningModule]:  # fmt: skip
        """The checkpoint a drop-down label (or typed path) names, and its method loaded."""
        checkpoint = self.checkpoint(choice, family, methods)
        return checkpoint, self.method(checkpoint)

    def data_module(self, checkpoint: Checkpoint) -> L.LightningDataModule | None:
        """The data module the checkpoint was trained with, rebuilt from the arguments it records (its class names,
        templates, reader and transforms are what ``lit-clip predict`` would use); None where it records none or
        cannot be rebuilt here (its data files are absent, say), with the reason logged."""
        path = checkpoint.path.resolve()
        if path not in self._data_modules:
            self._data_modules[path] = _rebuilt_data_module(checkpoint)
        return self._data_modules[path]

    def templates(self, checkpoint: Checkpoint, default: str | Sequence[str] | None) -> list[str] | None:
        """The prompt templates the checkpoint's evaluation writes class names into: its rebuilt data module's;
        where that cannot be rebuilt here, the ``templates`` its recorded arguments name; else ``default`` (a
        named set or a list; None: the method's own)."""
        data_module = self.data_module(checkpoint)
        if getattr(data_module, "templates", None):
            return list(data_module.templates)
        recorded = checkpoint.datamodule_hyper_parameters.get("templates") or default
        return None if recorded is None else resolve_templates(recorded)


def _rebuilt_data_module(checkpoint: Checkpoint) -> L.LightningDataModule | None:
    recorded = checkpoint.datamodule_hyper_parameters
    if "_class_path" not in recorded:
        return None
    module, name = recorded["_class_path"].rsplit(".", 1)
    arguments = {key: value for key, value in recorded.items() if key not in ("_class_path", "_instantiator")}
    try:
        return getattr(importlib.import_module(module), name)(**arguments)
    except (OSError, ValueError, KeyError, ImportError, AttributeError, TypeError) as error:
        log.warning("%s: its data module %s could not be rebuilt (%s: %s)", checkpoint.path, name,
                    type(error).__name__, error)  # fmt: skip
        return None


class OneBatch(L.LightningDataModule):
    """A data module of one prepared batch, with whatever attributes a method reads from its data module
    (``classnames``, ``templates``, ...)."""

    def __init__(self, batch: dict, **attributes: Any):
        super().__init__()
        self.batch = batch
        for name, value in attributes.items():
            setattr(self, name, value)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader([self.batch], batch_size=None)


def predict(method: L.LightningModule, batch: dict, **attributes: Any) -> dict:
    """``method.predict_step`` on ``batch`` as ``lit-clip predict`` runs it (eval mode, no gradients, on the
    method's device), with a data module holding ``attributes``."""
    cuda = method.device.type == "cuda"
    trainer = L.Trainer(accelerator="gpu" if cuda else "cpu", devices=[method.device.index or 0] if cuda else 1,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)  # fmt: skip
    (output,) = trainer.predict(method, datamodule=OneBatch(batch, **attributes))
    return output
