"""What the page's tabs share in reading the user's input: names and lines of text, images, their batches; every
unusable input is a :class:`~lit_clip.demo.weights.DemoInputError` that names it and says what was expected."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import gradio as gr
import torch
from PIL import Image
from torch import Tensor

from lit_clip.datamodules.images import BadSampleError, load_rgb
from lit_clip.demo.errors import DemoInputError
from lit_clip.transforms import clip_eval_transform


def no_progress(fraction: float, desc: str | None = None) -> None:
    """Where answer functions report progress when no page shows it (on the page: ``gr.Progress``)."""


def lines(text: str | None, what: str) -> list[str]:
    """The non-blank lines of ``text``, stripped; none is an error naming ``what`` was expected."""
    found = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not found:
        raise DemoInputError(f"type the {what}, one per line")
    return found


def class_names(text: str | None, at_least: int = 1) -> list[str]:
    """Class names typed one per line or separated by commas, each once."""
    names = [name.strip() for name in re.split(r"[\n,]", text or "") if name.strip()]
    if len(names) < at_least:
        raise DemoInputError(f"type at least {at_least} class name{'s' if at_least > 1 else ''}, one per line or "
                             f"separated by commas (got {len(names)})")  # fmt: skip
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DemoInputError(f"the class names {repeated} are given more than once; name each class once")
    return names


def image_input(label: str = "image") -> gr.Image:
    """An image upload whose file reaches the tab as it was given: Gradio's default (``image_mode="RGB"``) would
    convert and re-save it first, so transparency would not be composited on white nor 16-bit grey scaled as
    :func:`open_image` (and ``lit-clip predict``) read them."""
    return gr.Image(type="filepath", image_mode=None, label=label)


def open_image(source: str | Path | None, what: str = "image") -> Image.Image:
    """The RGB image of a file given on the page, or an error naming the file and why it cannot be read."""
    if source is None:
        raise DemoInputError(f"give an {what}: upload one, or pick an example below")
    try:
        return load_rgb(Path(source))
    except BadSampleError as error:
        raise DemoInputError(f"{error}; expected an image file (PNG, JPEG, ...)") from error


def image_size(model: torch.nn.Module) -> int:
    """The side of the images a CLIP's (or GroupViT's, AudioCLIP's) image tower takes."""
    return model.config.vision.image_size


def image_batch(model: torch.nn.Module, images: Sequence[Image.Image], size: int | None = None) -> Tensor:
    """``[N, 3, size, size]`` on the model's device: CLIP's evaluation preprocessing of each image, at the image
    tower's size by default."""
    transform = clip_eval_transform(size or image_size(model))
    device = next(model.parameters()).device
    return torch.stack([transform(image) for image in images]).to(device)
