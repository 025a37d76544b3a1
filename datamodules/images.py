"""Reading images from real-world data, where some files are odd and some are broken.

:func:`load_rgb` turns any decodable image into 8-bit RGB and every undecodable one into a
:class:`BadSampleError` that names the file. :class:`RobustSamples` wraps a map-style data
set so that a bad sample is either left out of its batch (and counted) or stops the run.
"""
from __future__ import annotations

import functools
import io
import logging
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

BadSamplePolicy = Literal["skip", "raise"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

log = logging.getLogger(__name__)

# Decoders report broken data as any of these (truncation is an OSError, a bad PNG chunk a
# SyntaxError, a mode Pillow cannot convert a ValueError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class BadSampleError(Exception):
    """A sample that cannot be used: the message names the file (or shard and key) and the reason."""


def load_rgb(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Decode an image file, or its bytes, fully into an 8-bit RGB image.

    Conversions:
        - 16-bit grayscale (``I;16*``, and ``I``, which is how Pillow opens 16-bit PGM/PPM)
          is scaled from 0-65535 to 0-255, not clipped at 255 as Pillow's own ``convert`` does.
        - Transparent images (RGBA, LA, PA, palette or RGB/L with a transparency key) are
          composited on white: fully transparent pixels often hold arbitrary colour, commonly
          black, and dropping alpha would turn a black logo on a transparent background into a
          black square.
        - Everything else (CMYK, palette, ``L``, ``1``, ``F``) goes through Pillow's ``convert``;
          ``F`` has no standard range, so it is read as 0-255 and clipped.

    Args:
        source: a file path, or the file's bytes.
        name: what to call ``source`` in errors; by default the path, or "<bytes>".

    Raises:
        BadSampleError: for a missing or empty file, truncated data, or bytes that are no image.
    """
    name, opened = openable(source, name)
    try:
        with Image.open(opened) as image:
            # Image.open reads only the header; decoding all pixels here is what finds truncation.
            image.load()
            return _to_rgb(image)
    except _DECODE_ERRORS as error:
        raise BadSampleError(f"{name}: cannot decode image ({type(error).__name__}: {error})") from error


def openable(source: str | Path | bytes, name: str | None = None) -> tuple[str, str | io.BytesIO]:
    """``(name, what a decoder opens)`` of a file path or a file's bytes (decoders read a path as a string and bytes
    as a stream); a missing or empty file is a :class:`BadSampleError` naming it (``name``: by default the path, or
    "<bytes>")."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "<bytes>")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise BadSampleError(f"{name}: file not found")
        if path.stat().st_size == 0:
            raise BadSampleError(f"{name}: empty file (0 bytes)")
        return name, str(path)
    if len(source) == 0:
        raise BadSampleError(f"{name}: empty file (0 bytes)")
    return name, io.BytesIO(source)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image).astype(np.float64)
        image = Image.fromarray(np.round(np.clip(pixels, 0, 65535) / 257).astype(np.uint8), mode="L")
    if image.has_transparency_data:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def check_caption(caption: str, name: str) -> str:
    """The caption with surrounding whitespace removed; an empty or blank one is a :class:`BadSampleError`."""
    caption = caption.strip()
    if not caption:
        raise BadSampleError(f"{name}: empty caption")
    return caption


class RobustSamples(torch.utils.data.Dataset):
    """A map-style data set of dict samples whose bad samples are left out of their batch, or raised.

    With policy "skip", ``dataset[i]`` failing with :class:`BadSampleError` gives the marker
    ``{"skipped_index": i}`` instead (the error is logged); :func:`without_bad_samples` drops the
    markers when the batch is collated and lists their indices in ``batch["skipped_index"]``. So
    every bad sample is counted once, where it occurs, and no good sample is read twice to take
    its place: the batch is smaller by the number of bad samples in it. With policy "raise", the
    error propagates with its message naming the file.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, policy: BadSamplePolicy = "skip"):
        """
        Args:
            dataset: map-style data set returning dicts and raising :class:`BadSampleError` for bad samples.
            policy: "skip" or "raise".
        """
        check_policy(policy)
        self.dataset, self.policy = dataset, policy

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        try:
            return self.dataset[index]
        except BadSampleError as error:
            if self.policy == "raise":
                raise
            log.warning("skipping bad sample: %s", error)
            return bad_sample(index)


def check_policy(policy: str) -> None:
    if policy not in ("skip", "raise"):
        raise ValueError(f"unknown bad_samples policy {policy!r}; expected 'skip' or 'raise'")


def bad_sample(index: int) -> dict:
    """The stand-in for a bad sample in a data set's output: only its index, for the count."""
    return {"skipped_index": index}


def without_bad_samples(
    collate: Callable[[list[dict]], dict] = default_collate, training: bool = True
) -> Callable[[list[dict]], dict]:
    """A collate function that drops :func:`bad_sample` markers, collates the rest with ``collate`` and
    adds ``"skipped_index"``: the long tensor of the dropped samples' indices (empty when none).

    A batch of bad samples only is ``{"skipped_index"}`` alone in evaluation (methods count it and
    go on; a last partial batch may well be one bad file). In training it stops the run with the
    indices: a whole training batch of bad files points at a broken data set (a wrong folder, an
    unmounted disk) rather than a few bad files, and a step without data would stall DDP.
    """
    return functools.partial(_collate_without_bad_samples, collate=collate, training=training)


def _collate_without_bad_samples(samples: list[dict], collate: Callable[[list[dict]], dict], training: bool) -> dict:
    good = [sample for sample in samples if "skipped_index" not in sample]
    skipped = torch.tensor([sample["skipped_index"] for sample in samples if "skipped_index" in sample], dtype=torch.long)
    if not good and not training:
        return {"skipped_index": skipped}
    if not good:
        skipped = skipped.tolist()
        shown = ", ".join(str(index) for index in skipped[:10]) + (", ..." if len(skipped) > 10 else "")
        raise BadSampleError(
            f"every sample of a batch of {len(samples)} is bad (indices {shown}; each is logged above); "
            "is the data set path right and its storage readable?"
        )
    batch = collate(good)
    batch["skipped_index"] = skipped
    return batch
