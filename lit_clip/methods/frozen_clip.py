"""What every method on a frozen CLIP shares: classifiers, segmentation, detection, 3D and depth, and generation.

- The CLIP comes from ``pretrained`` (see :func:`lit_clip.load_clip`) as ``self.model`` (the name of
  the CLIP in every method), is frozen and stays in eval mode even while the method trains, so the
  BatchNorm statistics of a ResNet tower stay those it was trained with (and no dropout or patch
  dropout wakes up).
- Checkpoints hold only what the method itself learns or computes (context vectors, adapters,
  caches): the CLIP comes back from ``pretrained``. Buffers that depend on class names are never
  saved, so a checkpoint can be evaluated on other class names.
- :meth:`build_text_classifier` is zero-shot CLIP's classifier from prompt templates.
- :meth:`batch_input` says what a batch's input to the CLIP is: images by default; region crops,
  depth views or video frames for the methods that override it.
- Class names and evaluation per class set: see :mod:`lit_clip.methods.class_sets`.

:class:`FrozenCLIP` is the first two and the image features alone, for the methods that classify nothing
(CLIP-guided generation); :class:`FrozenCLIPMethod` adds the rest.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from lit_clip.checkpoints import load_clip
from lit_clip.methods.class_sets import EvaluatesPerClassSet
from lit_clip.models import create_model
from lit_clip.models.clip import CLIP
from lit_clip.zeroshot import build_zeroshot_classifier

# CLIPs already loaded, by the `pretrained` they were read from, for the methods built inside `already_loaded`.
_LOADED: dict[str, CLIP] = {}


@contextlib.contextmanager
def already_loaded(clips: dict[str, CLIP]) -> Iterator[None]:
    """Methods built inside take these CLIPs (by their ``pretrained``) instead of reading the file again: several
    methods on one CLIP (the demo page's tabs) share it. A frozen CLIP is never changed by its method, so sharing
    it gives each method what loading would."""
    _LOADED.update(clips)
    try:
        yield
    finally:
        for source in clips:
            _LOADED.pop(source, None)


class FrozenCLIP(L.LightningModule):
    """A LightningModule on a frozen CLIP: loading, the eval lock, lean checkpoints, the image features."""

    # Submodules loaded from their own files, left out of checkpoints: the CLIP (and VQGAN-CLIP's VQGAN).
    frozen_modules: tuple[str, ...] = ("model",)

    def __init__(self, pretrained: str | None, architecture: str | None = None, quick_gelu: bool | None = None):
        """``pretrained``: the CLIP (see :func:`lit_clip.load_clip`); None: a randomly initialised CLIP of
        ``architecture``, a baseline, which checkpoints then keep (there is no file to take it back from)."""
        super().__init__()
        if pretrained is None:
            if architecture is None:
                raise ValueError("give pretrained (a CLIP) or, for a randomly initialised CLIP, an architecture")
            self.model: CLIP = create_model(architecture).requires_grad_(False)
            self.frozen_modules = tuple(name for name in self.frozen_modules if name != "model")
        elif pretrained in _LOADED and architecture is None and quick_gelu is None:
            self.model = _LOADED[pretrained].requires_grad_(False)
        else:
            self.model = load_clip(pretrained, architecture=architecture, quick_gelu=quick_gelu).requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    def image_features(self, images: Tensor, prompts: Sequence[Tensor | None] | None = None) -> Tensor:
        """L2-normalised image embeddings of the frozen image tower, in fp32."""
        return F.normalize(self.model.encode_image(images, prompts).float(), dim=-1)

    @torch.no_grad()
    def grid_features(self, images: Tensor, size: int | Sequence[int] | None = None) -> Tensor:
        """``[B, cells, channels]`` fp32: the frozen image tower's last feature map before pooling (a ResNet's layer4,
        a ViT's patch tokens after its final norm), flattened row by row; the images first resized to ``size``
        (a side or ``(height, width)``) where given, for a finer grid (CLIP-ViL)."""
        if size is not None:
            size = size if isinstance(size, int) else tuple(size)
            images = F.interpolate(images, size=size, mode="bicubic", align_corners=False)
        (grid,) = self.model.visual.forward_intermediates(images, indices=1, output_fmt="NLC", norm=True,
                                                         intermediates_only=True)  # fmt: skip
        return grid.float()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        prefixes = tuple(f"{name}." for name in self.frozen_modules)
        state = checkpoint["state_dict"]
        for key in [key for key in state if key.startswith(prefixes)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # The CLIP is not in our checkpoints: take it from `pretrained`, already loaded, so that loading
        # stays strict about everything the method itself saved.
        frozen = {
            f"{name}.{key}": value
            for name in self.frozen_modules
            for key, value in getattr(self, name).state_dict().items()
        }
        checkpoint["state_dict"] = {**frozen, **checkpoint["state_dict"]}

class FrozenCLIPMethod(FrozenCLIP, EvaluatesPerClassSet):
    """Base class of the methods on a frozen CLIP that classify: :class:`FrozenCLIP`, the zero-shot text classifier,
    the batch's input; class names and evaluation per class set from :class:`EvaluatesPerClassSet`."""

    def batch_input(self, batch: dict) -> Tensor:
        """What the CLIP sees of a batch: its images (region crops, depth views, video frames elsewhere)."""
        return batch["image"]

    def build_text_classifier(self, classnames: Sequence[str], templates: Sequence[str] | None = None) -> None:
        """``self.text_classifier`` ``[dim, classes]``: zero-shot CLIP's classifier from prompt templates
        (by default the data module's ``templates``)."""
        templates = self.trainer.datamodule.templates if templates is None else templates
        classifier = build_zeroshot_classifier(self.model, classnames, templates)
        self.register_buffer("text_classifier", classifier, persistent=False)
