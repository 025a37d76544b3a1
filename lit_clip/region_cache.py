"""ViLD's region cache: the CLIP image embeddings of proposal crops, computed once before training, read by the data.

ViLD-image distils a frozen CLIP into the detector: for M proposals of every training image, the CLIP
embedding of the region's crops is the target of the region embedding. Running CLIP over M crops of every
image at every step would cost more than the detector itself, so the embeddings are computed once (see
``lit_clip.methods.detection.vild_cache``) and stored here; the detection data modules attach them to their
training targets (``regions``, ``region_embeddings``), boxes transformed with the image.

A cache is a folder of numpy files, read by memory map from every DataLoader worker:

- ``regions.npy`` float32 ``[images, M, 4]``: each image's boxes (x1, y1, x2, y2) in its file's pixels,
  NaN rows where it has fewer than M;
- ``embeddings.npy`` float16 ``[images, M, D]``: the L2-normalised CLIP embeddings of those boxes' crops;
- ``done.npy`` bool ``[images]``: the images written, so that an interrupted build resumes where it was;
- ``meta.json``: the image keys in row order (a file name, a scene number), M, D, and the fingerprints of
  the CLIP and of the proposals that made it. A build with another CLIP or other proposals starts over: its
  embeddings would not be the targets the config asks for.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

FORMAT = 1


def module_fingerprint(module: nn.Module) -> str:
    """A hash of a module's parameters and buffers (names, shapes and values): another CLIP, another hash."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class RegionCache:
    """An open cache folder. :meth:`create` makes or resumes one for writing; ``RegionCache(folder)`` reads."""

    def __init__(self, folder: str | Path, keys: Sequence[str] | None = None):
        """Open ``folder`` for reading. ``keys``: the data set's image keys; each must be in the cache and done
        (checked now, so that a cache of another data set or an unfinished build fails before training)."""
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"region cache {self.folder}: no meta.json; build it first with "
                "`python -m lit_clip.methods.detection.vild_cache --config <your config> --proposals <checkpoint>`"
            )
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            found = self.meta.get("format")
            raise ValueError(f"region cache {self.folder}: format {found}, expected {FORMAT}; rebuild it")
        self.row_of = {key: row for row, key in enumerate(self.meta["keys"])}
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None  # memory maps, opened on first read
        if keys is not None:
            self.check_covers(keys)

    def check_covers(self, keys: Sequence[str]) -> None:
        done = self.done
        missing = [key for key in keys if key not in self.row_of or not done[self.row_of[key]]]
        if missing:
            raise ValueError(
                f"region cache {self.folder} lacks {len(missing)} of the {len(keys)} training images (first: "
                f"{missing[0]!r}); it was built for other data or its build did not finish: run the builder again "
                "(it resumes)"
            )

    def read(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The image's regions ``[k, 4]`` (its file's pixels) and their embeddings ``[k, D]`` (float32)."""
        if self._arrays is None:  # opened on first use: in each DataLoader worker, not pickled into it
            self._arrays = (np.load(self.folder / "regions.npy", mmap_mode="r"),
                            np.load(self.folder / "embeddings.npy", mmap_mode="r"))  # fmt: skip
        regions, embeddings = self._arrays
        row = self.row_of[key]
        boxes = np.asarray(regions[row])
        kept = ~np.isnan(boxes).any(axis=1)
        vectors = np.asarray(embeddings[row])[kept].astype(np.float32)
        return torch.from_numpy(boxes[kept].copy()), torch.from_numpy(vectors)

    def __getstate__(self) -> dict:
        kept = {key: value for key, value in self.__dict__.items() if key != "_writable"}
        return {**kept, "_arrays": None}

    # --- building ----------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, folder: str | Path, keys: Sequence[str], regions_per_image: int, dim: int, clip: str, proposals: str
    ) -> "RegionCache":
        """Make the cache folder for ``keys`` or resume the one there when it was made for the same keys, sizes,
        CLIP and proposals (fingerprints); any other is replaced, with a warning."""
        folder = Path(folder)
        meta = {"format": FORMAT, "keys": list(keys), "regions_per_image": regions_per_image, "dim": dim,
                "clip": clip, "proposals": proposals}  # fmt: skip
        meta_path = folder / "meta.json"
        if meta_path.is_file():
            if json.loads(meta_path.read_text()) == meta:
                cache = cls(folder)
                log.info("resuming region cache %s: %d of %d images done", folder, cache.done.sum(), len(keys))
                return cache
            meta_path.unlink()
            log.warning("region cache %s was built for another CLIP, proposals or data: building it again", folder)
        folder.mkdir(parents=True, exist_ok=True)
        # The arrays first, meta.json last: a folder without meta.json is no cache, whatever else is there.
        for name, shape, dtype, fill in (("regions", (len(keys), regions_per_image, 4), np.float32, np.nan),
                                         ("embeddings", (len(keys), regions_per_image, dim), np.float16, 0),
                                         ("done", (len(keys),), bool, False)):  # fmt: skip
            array = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
            array[:] = fill
            array.flush()
        meta_path.write_text(json.dumps(meta))
        return cls(folder)

    @property
    def done(self) -> np.ndarray:
        """``[images]`` bool: the rows written and flushed."""
        return np.load(self.folder / "done.npy", mmap_mode="r")

    def write(self, row: int, regions: torch.Tensor, embeddings: torch.Tensor) -> None:
        """Store image ``row``'s regions ``[k, 4]`` (k <= M) and embeddings ``[k, D]``; marked done by :meth:`flush`."""
        if not hasattr(self, "_writable"):
            self._writable = {name: np.load(self.folder / f"{name}.npy", mmap_mode="r+")
                              for name in ("regions", "embeddings", "done")}  # fmt: skip
            self._pending: list[int] = []
        boxes, vectors = self._writable["regions"], self._writable["embeddings"]
        k = len(regions)
        boxes[row], vectors[row] = np.nan, 0
        boxes[row, :k] = regions.cpu().numpy()
        vectors[row, :k] = embeddings.cpu().float().numpy()
        self._pending.append(row)

    def flush(self) -> None:
        """Write the pending rows to disk, then mark them done: a kill between the two only loses those rows."""
        if not getattr(self, "_pending", None):
            return
        self._writable["regions"].flush()
        self._writable["embeddings"].flush()
        self._writable["done"][self._pending] = True
        self._writable["done"].flush()
        self._pending = []
