"""Image preprocessing shared by the data modules."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import transforms as T

# The normalisation every CLIP checkpoint was trained with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_normalized_tensor(image: Image.Image) -> Tensor:
    """An RGB PIL image as a float ``[3, H, W]`` tensor normalised with CLIP's mean and std."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (pixels - mean) / std


def denormalize(images: Tensor) -> Tensor:
    """Inverse of :func:`to_normalized_tensor`, clamped to [0, 1], for pictures in logs."""
    mean = torch.tensor(CLIP_MEAN, device=images.device).view(-1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=images.device).view(-1, 3, 1, 1)
    return (images.float() * std + mean).clamp(0, 1)


def clip_eval_transform(image_size: int) -> Callable[[Image.Image], Tensor]:
    """CLIP's evaluation preprocessing of a PIL image into a normalised ``[3, image_size, image_size]`` tensor.

    Resize the short side to ``image_size`` (bicubic, antialiased), centre crop, convert to
    RGB, scale to [0, 1] and normalise with CLIP's mean and std: the same pixels as
    open_clip's ``image_transform(image_size, is_train=False)``.
    """
    return T.Compose(
        [
            T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(image_size),
            # After the resize, as open_clip does: a palette image resizes differently from its RGB version.
            _to_rgb,
            T.ToTensor(),
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def clip_train_transform(
    image_size: int, scale: tuple[float, float] = (0.9, 1.0), flip: bool = False
) -> Callable[[Image.Image], Tensor]:
    """CLIP's training preprocessing: a PIL image into a normalised ``[3, image_size, image_size]`` tensor.

    A random crop of ``scale`` of the image's area (aspect ratio 3/4 to 4/3) resized to
    ``image_size`` (bicubic, antialiased), optionally flipped left-right, then RGB, [0, 1] and
    CLIP's mean and std. The defaults are open_clip's pretraining augmentation (the same pixels,
    for the same torch seed, as ``image_transform(image_size, is_train=True)``); the few-shot
    methods use scale 0.08-1 (CoOp) or 0.5-1 (Tip-Adapter) with flips.
    """
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=scale, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            *([T.RandomHorizontalFlip()] if flip else []),
            _to_rgb,
            T.ToTensor(),
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")
