"""What the demo page runs: the CLIP of ``--pretrained`` and the method checkpoints it was pointed at.

A method checkpoint written by ``lit-clip fit`` names its method's class (``_class_path`` in its hyper-parameters)
and its data module's; the page offers each checkpoint in its family's tab, loads it on first use and runs it as
``lit-clip predict`` would: :func:`predict` hands the method one batch through a Lightning ``Trainer`` with a data
module that holds the user's class names, so every method answers through its own ``predict_step``.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

import lit_clip.methods  # noqa: F401  (every method class importable: load_from_checkpoint finds them by path)
from lit_clip.checkpoints import load_clip
from lit_clip.demo.errors import DemoInputError
from lit_clip.models.clip import CLIP

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
    """The page's models: the CLIP of ``pretrained`` and the method checkpoints, each loaded once, on first use."""

    def __init__(self, pretrained: str | None, checkpoints: Sequence[Checkpoint] = (), device: str = "cpu"):
        self.pretrained, self.checkpoints, self.device = pretrained, list(checkpoints), torch.device(device)
        self._clip: CLIP | None = None
        self._methods: dict[Path, L.LightningModule] = {}

    def clip(self) -> CLIP:
        """The CLIP of ``--pretrained``, in eval mode on the page's device."""
        if self.pretrained is None:
            raise DemoInputError("this tab needs a CLIP: start the page with `lit-clip demo --pretrained <checkpoint "
                                 "file, model folder or hub id>`")  # fmt: skip
        if self._clip is None:
            self._clip = load_clip(self.pretrained).eval().requires_grad_(False).to(self.device)
        return self._clip

    def choices(self, family: str) -> list[str]:
        """The labels of the checkpoints of one tab, for its drop-down."""
        return [checkpoint.label for checkpoint in self.checkpoints if checkpoint.family == family]

    def checkpoint(self, choice: str | None, family: str) -> Checkpoint:
        """The checkpoint a drop-down label (or a typed path) names, checked to belong to ``family``."""
        if not choice:
            raise DemoInputError("choose a checkpoint, or type a checkpoint's path; to list a run's checkpoints here, "
                                 "start the page with `lit-clip demo --checkpoints <run folder>`")  # fmt: skip
        checkpoint = next((c for c in self.checkpoints if c.label == choice), None) or read_checkpoint(choice)
        if checkpoint.family != family:
            raise DemoInputError(f"{checkpoint.path} is a {checkpoint.method} checkpoint, not one of this tab's "
                                 f"methods ({', '.join(m for m, f in FAMILIES.items() if f == family)})")  # fmt: skip
        return checkpoint

    def method(self, checkpoint: Checkpoint) -> L.LightningModule:
        """The checkpoint's method, loaded on first use (a frozen CLIP comes back from the ``pretrained`` it names)."""
        if checkpoint.path not in self._methods:
            try:
                method = L.LightningModule.load_from_checkpoint(checkpoint.path, map_location=self.device)
            except (FileNotFoundError, OSError) as error:
                pretrained = checkpoint.hyper_parameters.get("pretrained")
                raise DemoInputError(f"{checkpoint.path} could not be loaded: {error}"
                                     + (f" (its method loads its CLIP from `pretrained: {pretrained}`; run the page "
                                        "where that path exists)" if pretrained else "")) from error  # fmt: skip
            self._methods[checkpoint.path] = method.eval()
        return self._methods[checkpoint.path]


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
    trainer = L.Trainer(accelerator="gpu" if method.device.type == "cuda" else "cpu", devices=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    with warnings.catch_warnings():  # methods that move their own batches say so once per call: noise on a page
        warnings.filterwarnings("ignore", message=".*on_before_batch_transfer")
        (output,) = trainer.predict(method, datamodule=OneBatch(batch, **attributes))
    return output
