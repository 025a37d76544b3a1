"""Image preprocessing shared by the data modules, on ``torchvision.transforms.v2``.

v2 transforms move what belongs to an image with it: called on a dict such as
``{"image": PIL image, "mask": tv_tensors.Mask, "boxes": tv_tensors.BoundingBoxes}``, the crop,
resize and flip of the image are applied to the mask and the boxes too (segmentation and
detection data), and a video's frames as ``tv_tensors.Video`` share one random crop. On a PIL
image alone they give the same pixels as open_clip's preprocessing (tested).

:class:`MultiView` is the hook for methods that train on several views of one image (SLIP's
two SSL views beside the CLIP view): a data module whose training transform returns a dict
puts each view in the sample under its own name (see :func:`image_entries`).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

# The normalisation every CLIP checkpoint was trained with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ImageNet's, which timm's ImageNet models and GroupViT's released weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FromCLIPNormalization(torch.nn.Module):
    """Images normalised with CLIP's mean and std (what every lit-clip data module gives), re-normalised to
    another ``mean`` and ``std``: for a model trained on other statistics (timm's ViTs: 0.5, 0.5; ImageNet's)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        scale = torch.tensor(CLIP_STD) / torch.tensor(std)
        shift = (torch.tensor(CLIP_MEAN) - torch.tensor(mean)) / torch.tensor(std)
        # Not saved: a model computes them from its configuration.
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return images * self.scale.to(images.dtype) + self.shift.to(images.dtype)


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
            ConvertToRGB(),
            *normalized_tensor(),
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
            ConvertToRGB(),
            *normalized_tensor(),
        ]
    )


class MultiView:
    """Several views of one image by name: ``MultiView(image=clip_view, ssl_view_1=..., ssl_view_2=...)``
    returns ``{"image": ..., "ssl_view_1": ..., "ssl_view_2": ...}``, each view with its own random draw."""

    def __init__(self, **views: Callable[[Any], Tensor]):
        if "image" not in views:
            raise ValueError(f"MultiView needs an 'image' view (the one CLIP sees); got {sorted(views)}")
        self.views = views

    def __call__(self, image: Any) -> dict[str, Tensor]:
        return {name: view(image) for name, view in self.views.items()}


def image_entries(transform: Callable[[Any], Tensor | dict[str, Tensor]], image: Any) -> dict[str, Tensor]:
    """A sample's image entries: ``{"image": transform(image)}``, or every view of a :class:`MultiView`."""
    transformed = transform(image)
    return transformed if isinstance(transformed, dict) else {"image": transformed}


def simclr_view(image_size: int) -> Callable[[Image.Image], Tensor]:
    """SimCLR's augmentation as SLIP draws its two SSL views (facebookresearch/SLIP, ``main.py``): a crop of 8-100 %
    of the area resized to ``image_size``, colour jitter (brightness, contrast, saturation 0.4, hue 0.1; p 0.8),
    grey (p 0.2), Pillow's Gaussian blur (sigma 0.1-2; p 0.5), a left-right flip; then CLIP's mean and std."""
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(0.08, 1.0), antialias=True),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([RandomGaussianBlur(sigma=(0.1, 2.0))], p=0.5),
            T.RandomHorizontalFlip(),
            ConvertToRGB(),
            *normalized_tensor(),
        ]
    )


def with_ssl_views(clip_view: Callable[[Any], Tensor], image_size: int) -> MultiView:
    """SLIP's three views of a training image: ``image`` by ``clip_view``, ``ssl_view_1`` and ``ssl_view_2`` by
    :func:`simclr_view`, each with its own random draws (SLIP's CLIP view is ``clip_train_transform`` with scale
    0.5-1)."""
    return MultiView(image=clip_view, ssl_view_1=simclr_view(image_size), ssl_view_2=simclr_view(image_size))


class ConvertToRGB(T.Transform):
    """PIL images to RGB (palette, grey, RGBA and CMYK files); tensors, masks and boxes pass unchanged."""

    _transformed_types = (Image.Image,)

    def transform(self, inpt: Image.Image, params: dict[str, Any]) -> Image.Image:
        return inpt.convert("RGB")


class RandomGaussianBlur(T.Transform):
    """Pillow's Gaussian blur with a radius drawn uniformly from ``sigma``: SimCLR's blur as MoCo v2 and SLIP write
    it (a PIL filter, whose extent follows the radius, where torchvision's needs a fixed kernel size)."""

    _transformed_types = (Image.Image,)

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)):
        super().__init__()
        self.sigma = sigma

    def transform(self, inpt: Image.Image, params: dict[str, Any]) -> Image.Image:
        radius = float(torch.empty(()).uniform_(*self.sigma))  # torch's generator, as every v2 transform's draws
        return inpt.filter(ImageFilter.GaussianBlur(radius=radius))


class ScaleToUnit(T.Transform):
    """uint8 images and videos to float32 in [0, 1] by dividing by 255, as v1's ``ToTensor`` does (v2's
    ``ToDtype(scale=True)`` multiplies by 1/255, which differs in the last bit from open_clip's pixels)."""

    _transformed_types = (tv_tensors.Image, tv_tensors.Video)

    def transform(self, inpt: Tensor, params: dict[str, Any]) -> Tensor:
        return tv_tensors.wrap(inpt.to(torch.float32).div(255), like=inpt)


def normalized_tensor() -> list[Callable]:
    """An image into a float ``[3, H, W]`` tensor normalised with CLIP's mean and std (v1's ``ToTensor``
    + ``Normalize``); masks and boxes keep their values. All come out as plain tensors."""
    return [T.ToImage(), ScaleToUnit(), T.Normalize(CLIP_MEAN, CLIP_STD), T.ToPureTensor()]
