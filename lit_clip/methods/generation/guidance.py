"""What CLIPDraw, CLIPasso and VQGAN-CLIP share: a frozen CLIP that scores pictures, a LightningModule whose ``fit``
optimises one picture per target, and the random perspective and resized crop all three see their pictures through.

:class:`GuidedGeneration` is the LightningModule. ``fit`` on a :class:`~lit_clip.datamodules.GenerationTargets` runs
its ``steps`` optimisation steps; in ``setup`` the method creates its pictures' parameters (strokes, a latent) from
the data module's prompts or target pictures, so a checkpoint holds them and ``--ckpt_path`` resumes a drawing. At
the end every picture is written to the run directory as ``pictures/{k:02d}_{caption}.png`` (and ``.svg`` for
strokes). :class:`~lit_clip.callbacks.GenerationProgress` logs the pictures to TensorBoard while they form, and
:class:`~lit_clip.callbacks.JudgePictures` scores them with an independently trained CLIP.

The augmentations are torchvision's ``RandomPerspective`` and ``RandomResizedCrop`` (what the official code calls),
drawn the same way (``get_params``), but differentiable end to end: torchvision's tensor perspective fills its
border in place and breaks the backward pass. One draw per call applies to the whole batch, as torchvision's, which
is what CLIPasso's joint augmentation of sketch and photo relies on.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lit_clip.methods.frozen_clip import FrozenCLIP
from lit_clip.tokenizer import tokenize
from lit_clip.transforms import CLIP_MEAN, CLIP_STD


class GuidedGeneration(FrozenCLIP):
    """Base class of the methods that optimise pictures against a frozen CLIP.

    A method defines :meth:`create_pictures` (its parameters, one picture per target, from the data module),
    :meth:`pictures` (the current pictures, ``[N, 3, H, W]`` in [0, 1]) and ``training_step``; it may define
    :meth:`save_vector_pictures`. ``captions`` name the pictures (the prompts, or the target pictures' names).

    Args:
        pretrained: the guiding CLIP (see :func:`lit_clip.load_clip`); architecture, quick_gelu: as there.
        normalize: feed the CLIP its mean / std normalised pictures (False: the pictures' [0, 1] values, as CLIPDraw's
            notebook did).
    """

    def __init__(
        self,
        pretrained: str,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        normalize: bool = True,
    ):
        super().__init__(pretrained, architecture=architecture, quick_gelu=quick_gelu)
        self.normalize = normalize
        self.captions: list[str] = []
        self.register_buffer("clip_mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    # --- what a method defines -------------------------------------------------------------------
    def create_pictures(self, datamodule) -> None:
        """Create the parameters of one picture per target of ``datamodule`` and set ``self.captions``."""
        raise NotImplementedError

    def pictures(self) -> Tensor:
        """The current pictures, ``[N, 3, H, W]`` in [0, 1]."""
        raise NotImplementedError

    def save_vector_pictures(self, directory: Path, stems: Sequence[str]) -> None:
        """Write the pictures as vector graphics too (strokes), beside the PNGs."""

    # --- the run ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if not self.captions:  # once: a second fit on the same module continues the same pictures
            self.create_pictures(self.trainer.datamodule)

    @property
    def clip_size(self) -> int:
        return self.model.visual.image_size

    def encode_pictures(self, pictures: Tensor) -> Tensor:
        """L2-normalised CLIP embeddings of pictures in [0, 1] at the CLIP's input size."""
        if self.normalize:
            pictures = (pictures - self.clip_mean) / self.clip_std
        return self.image_features(pictures)

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> Tensor:
        """L2-normalised CLIP embeddings of texts, ``[len(texts), dim]``."""
        context = self.model.context_length
        return F.normalize(self.model.encode_text(tokenize(list(texts), context).to(self.device)).float(), dim=-1)

    def on_train_end(self) -> None:
        if self.trainer.is_global_zero and self.trainer.log_dir:
            save_pictures(self, Path(self.trainer.log_dir) / "pictures")


def save_pictures(method: GuidedGeneration, directory: Path) -> list[Path]:
    """Write ``method``'s pictures as ``{k:02d}_{caption}.png`` (and its vector pictures) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    stems = [f"{k:02d}_{slug(caption)}" for k, caption in enumerate(method.captions)]
    with torch.no_grad():
        pictures = method.pictures().float().clamp(0, 1).cpu()
    paths = []
    for stem, picture in zip(stems, pictures):
        pixels = (picture.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        paths.append(directory / f"{stem}.png")
        Image.fromarray(pixels).save(paths[-1])
    method.save_vector_pictures(directory, stems)
    return paths


def slug(text: str, length: int = 48) -> str:
    """A file-name-safe form of a caption: lower-case words joined by underscores."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:length] or "picture"


# --- augmentations ------------------------------------------------------------------------------------------------
def random_perspective(
    images: Tensor, distortion_scale: float, fill: float, generator: torch.Generator | None = None
) -> Tensor:
    """torchvision's ``RandomPerspective(distortion_scale, p=1, fill)`` on ``[B, C, H, W]``, one draw for the batch:
    each corner moves inwards by up to ``distortion_scale`` of half the side; pixels from outside are ``fill``."""
    height, width = images.shape[-2:]
    half_h, half_w = height // 2, width // 2
    dx, dy = int(distortion_scale * half_w) + 1, int(distortion_scale * half_h) + 1

    def randint(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=generator))

    start = [(0, 0), (width - 1, 0), (width - 1, height - 1), (0, height - 1)]
    end = [
        (randint(0, dx), randint(0, dy)),
        (randint(width - dx, width), randint(0, dy)),
        (randint(width - dx, width), randint(height - dy, height)),
        (randint(0, dx), randint(height - dy, height)),
    ]
    # Each output pixel reads the input where the homography from the moved corners back to the original ones sends
    # it (torchvision's _get_perspective_coeffs(endpoints, startpoints)).
    rows = []
    for (x, y), (u, v) in zip(end, start):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    targets = torch.tensor([c for point in start for c in point], dtype=torch.float64)
    a, b, c, d, e, f, g, h = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), targets).tolist()
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    denominator = g * xs + h * ys + 1
    source_x, source_y = (a * xs + b * ys + c) / denominator, (d * xs + e * ys + f) / denominator
    grid = torch.stack([source_x / (width - 1) * 2 - 1, source_y / (height - 1) * 2 - 1], dim=-1)
    # Where the denominator is 0 the source is infinite (or 0 / 0), which grid_sample turns into NaN pixels: such a
    # pixel reads from far outside the picture, so it is sent just outside, to `fill`.
    grid = grid.nan_to_num(nan=-2.0, posinf=2.0, neginf=-2.0).clamp(-2.0, 2.0)
    grid = grid.to(images).expand(images.shape[0], -1, -1, -1)
    # Sampling (image - fill) with zero padding puts exactly `fill` outside, blended at the border.
    return F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=True) + fill


def random_resized_crop(
    images: Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Tensor:
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` on ``[B, C, H, W]``, one draw for the batch: a crop
    of ``scale`` of the area and ``ratio`` aspect, resized bilinearly (antialiased when shrinking) to ``size``."""
    height, width = images.shape[-2:]
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * float(torch.empty(1).uniform_(*scale, generator=generator))
        aspect = math.exp(float(torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=generator)))
        crop_w, crop_h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
            break
    else:  # torchvision's fallback: the central crop of the closest allowed aspect
        in_ratio = width / height
        crop_w, crop_h = (width, round(width / min(ratio))) if in_ratio < min(ratio) else (width, height)
        if in_ratio > max(ratio):
            crop_w, crop_h = round(height * max(ratio)), height
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
    crop = images[..., top : top + crop_h, left : left + crop_w]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
