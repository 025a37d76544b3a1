"""Reading images from real-world data, where some files are odd and some are broken.

:func:`load_rgb` turns any decodable image into 8-bit RGB and every undecodable one into a
:class:`BadSampleError` that names the file. :class:`RobustSamples` wraps a map-style data
set so that a bad sample is either skipped (and counted in the batch) or stops the run.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

BadSamplePolicy = Literal["skip", "raise"]

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
    name = name or (str(source) if isinstance(source, (str, Path)) else "<bytes>")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise BadSampleError(f"{name}: file not found")
        if path.stat().st_size == 0:
            raise BadSampleError(f"{name}: empty file (0 bytes)")
        opened = path
    else:
        if len(source) == 0:
            raise BadSampleError(f"{name}: empty file (0 bytes)")
        opened = io.BytesIO(source)
    try:
        with Image.open(opened) as image:
            # Image.open reads only the header; decoding all pixels here is what finds truncation.
            image.load()
            return _to_rgb(image)
    except _DECODE_ERRORS as error:
        raise BadSampleError(f"{name}: cannot decode image ({type(error).__name__}: {error})") from error


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
    """A map-style data set of dict samples whose bad samples are skipped or raised.

    With policy "skip", ``dataset[i]`` failing with :class:`BadSampleError` is replaced by the
    next good sample (``i + 1``, ``i + 2``, ... wrapping around), so batches keep their size,
    which the gathered contrastive loss needs on every rank. Every sample carries
    ``"skipped"``: how many bad samples were passed over to reach it (0 for a good ``i``).
    With policy "raise", the error propagates with its message naming the file.
    """

    def __init__(self, dataset: torch.utils.data.Dataset, policy: BadSamplePolicy = "skip", max_consecutive: int = 100):
        """
        Args:
            dataset: map-style data set returning dicts and raising :class:`BadSampleError` for bad samples.
            policy: "skip" or "raise".
            max_consecutive: bad samples in a row after which "skip" gives up: so many suggest a
                broken data set (wrong folder, unmounted disk) rather than a few bad files.
        """
        if policy not in ("skip", "raise"):
            raise ValueError(f"unknown bad-sample policy {policy!r}; expected 'skip' or 'raise'")
        self.dataset, self.policy, self.max_consecutive = dataset, policy, max_consecutive

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        # A data set shorter than max_consecutive is all bad once every sample has failed.
        attempts = min(self.max_consecutive, len(self))
        for skipped in range(attempts):
            try:
                sample = self.dataset[(index + skipped) % len(self)]
            except BadSampleError as error:
                if self.policy == "raise":
                    raise
                log.warning("skipping bad sample: %s", error)
                last_error = error  # `error` itself is unbound after the except block
                continue
            sample["skipped"] = skipped
            return sample
        raise BadSampleError(
            f"{attempts} bad samples in a row from index {index} (last: {last_error}); "
            "is the data set path right and its storage readable?"
        )
