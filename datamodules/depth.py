"""Monocular depth data read from disk: NYU Depth v2 (its labelled MATLAB file and official split, or BTS's folder
layout) and KITTI's Eigen split, as DepthCLIP (``Adonis-galaxy/DepthCLIP``) and BTS (``cleinc/bts``, whose files
and evaluation DepthCLIP uses) read them.

Every data module gives :class:`~lit_clip.batches.DepthBatch` es of ``{"image" [B, 3, h, w], "depth" [B, H, W],
"evaluation_mask" [B, H, W], "index"}``: the image normalised with CLIP's mean and std; the ground truth in metres
at its own resolution, 0 where the sensor measured nothing (non-finite values read as 0 too); the mask True on the
pixels the benchmark scores (its crop; all True without one). ``min_depth`` and ``max_depth`` are the benchmark's
range (1e-3-10 m on NYU, 1e-3-80 m on KITTI): the metrics score only ground truth strictly inside it and the mask,
as BTS's ``eval``; depth values are not clipped here.

Resolution: the depth map is never resized, so the metrics are computed at the ground truth's resolution; the
image is resized only when ``image_size`` is given (an int: its short side, aspect kept; ``[h, w]``: that size), and
a method upsamples its prediction to the depth map's size (DepthCLIP: bilinearly). An ``input_crop`` cuts image,
depth and mask alike before that (the mask is computed on the whole frame first, so a crop never moves it).

Loaders: ``test`` (the benchmark), ``train`` where the data set has a training split (for DepthCLIP's optional
learned projection; random horizontal flips with ``train_flip``), ``val``: ``val_fraction`` of the training images,
drawn with ``seed``, never test images (empty without a training split), ``predict``: the user's images
(``predict_images``) as ``{"image", "path", "index"}``, or the test split. A sample that cannot be read stops the
run naming its file (``bad_samples="raise"``, the default: a benchmark's numbers compare only over all of its
images); "skip" leaves it out and counts it in ``skipped_index``.

NYU Depth v2 (:class:`NYUDepthV2`):

- ``layout="mat"``: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, read with h5py: ``images`` ``[1449, 3, 640, 480]``
  uint8 and ``depths`` / ``rawDepths`` ``[1449, 640, 480]`` float metres, each transposed to ``[480, 640, 3]`` /
  ``[480, 640]``, as h5py reads MATLAB's column-major arrays) and ``splits.mat`` (MATLAB v5: ``testNdxs``, the 654
  images of Eigen's test split, and ``trainNdxs``, 795; 1-based). ``depth_key`` "rawDepths" (default) is the
  sensor's depth with holes: BTS's ``extract_official_train_test_set_from_mat.py`` writes the test PNGs DepthCLIP
  and BTS evaluate on from it (in whole millimetres); "depths" is the in-painted map (no holes).
- ``layout="list"``: BTS's folders and lists: ``official_splits/test/<scene>/rgb_XXXXX.jpg`` and
  ``sync_depth_XXXXX.png`` (uint16 millimetres: / 1000), listed by ``nyudepthv2_test_files_with_gt.txt`` as
  ``<rgb> <depth> [<focal>]`` lines (DepthCLIP's lists, ``<rgb> <depth> <dense depth>``, read too: only the first
  two fields are used); a training list (BTS's ``nyudepthv2_train_files_with_gt.txt`` over ``sync/``) optional.
- ``evaluation_crop="eigen"``: rows 45:471, columns 41:601 of the 480 x 640 frame (BTS's ``--eigen_crop``).
  DepthCLIP's own evaluation masks rows 45:471, columns 46:601, but scores only the pixels of its input crop (rows
  56:472, columns 60:604: it crops the image to 416 x 544 and pads the prediction back with zeros, which its
  ``pred > 1e-3`` drops); ``input_crop="depthclip"`` crops image, depth and mask to that window, and the Eigen mask
  inside it is exactly the pixels DepthCLIP scores.

KITTI (:class:`KITTIDepth`): the raw images (``<date>/<date>_drive_<n>_sync/image_02/data/<frame>.png``) and the
annotated depth (``data_depth_annotated/<date>_drive_<n>_sync/proj_depth/groundtruth/image_02/<frame>.png``,
uint16 / 256), listed by BTS's ``eigen_test_files_with_gt.txt`` (697 lines, ``<image> <depth> <focal>``). 45 frames
have no ground truth (``None``): they are left out with a warning and counted (``missing_depth``), as BTS's
evaluation leaves them out; 652 remain. ``kb_crop`` (default, as BTS and DepthCLIP): the KITTI benchmark's
352 x 1216 crop, bottom-aligned and centred, of image and depth alike (KITTI's frames differ in size by a few
pixels, so without it only ``batch_size`` 1 works). ``evaluation_crop="garg"`` (default): rows 0.40810811-0.99189189,
columns 0.03594771-0.96405229 of the whole frame, as BTS computes it; DepthCLIP computes the same fractions on the
352 x 1216 crop instead (a slightly different window). "eigen": Eigen's KITTI crop (rows 0.3324324-0.91351351).

Deliberate differences from the official loaders: the image is normalised with CLIP's mean and std (DepthCLIP's
loader normalises with ImageNet's before its CLIP: a method can re-normalise with
:class:`~lit_clip.transforms.FromCLIPNormalization`); NYU's ground truth is not cropped at test (DepthCLIP's and BTS's
neither) and values are not clipped to ``max_depth`` (DepthCLIP clips, then its ``< 10`` drops those pixels: the
same pixels are scored); BTS's black border around NYU's RGB images (its PNG extraction) is not drawn on images read
from the MATLAB file (the Eigen crop leaves it out anyway).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Protocol, Sequence

import h5py
import lightning as L
import numpy as np
import scipy.io
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import BadSampleError, BadSamplePolicy, check_policy, load_rgb, openable
from lit_clip.datamodules.loaders import robust_loader
from lit_clip.datamodules.point_clouds import split_validation
from lit_clip.datamodules.predict import list_images
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2 as T

from lit_clip.batches import DepthBatch
from lit_clip.transforms import to_normalized_tensor

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
NYU_FRAME = (480, 640)
# (top, bottom, left, right) of the 480 x 640 frame: BTS's --eigen_crop on NYU.
NYU_EIGEN_CROP = (45, 471, 41, 601)
# (top, left, height, width): DepthCLIP's NYU test input, rgb.crop((60, 56, 604, 472)).
DEPTHCLIP_NYU_INPUT = (56, 60, 416, 544)
KB_CROP = (352, 1216)
Box = tuple[int, int, int, int]  # (top, left, height, width)


# -- the benchmarks' crops ----------------------------------------------------------------------


def _window(height: int, width: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def nyu_eigen_mask(height: int, width: int) -> np.ndarray:
    """bool ``[480, 640]``: Eigen's crop of an NYU frame, rows 45:471 and columns 41:601 (BTS's evaluation)."""
    if (height, width) != NYU_FRAME:
        raise ValueError(f"the Eigen crop is defined on NYU's 480 x 640 frames, not {height} x {width}; "
                         "give evaluation_crop=None to score every pixel")  # fmt: skip
    top, bottom, left, right = NYU_EIGEN_CROP
    return _window(height, width, (top, bottom), (left, right))


def garg_mask(height: int, width: int) -> np.ndarray:
    """bool ``[H, W]``: Garg's KITTI crop, rows ``int(0.40810811 H):int(0.99189189 H)``, columns
    ``int(0.03594771 W):int(0.96405229 W)``."""
    rows = (int(0.40810811 * height), int(0.99189189 * height))
    return _window(height, width, rows, (int(0.03594771 * width), int(0.96405229 * width)))


def kitti_eigen_mask(height: int, width: int) -> np.ndarray:
    """bool ``[H, W]``: Eigen's KITTI crop, rows ``int(0.3324324 H):int(0.91351351 H)``, columns
    ``int(0.0359477 W):int(0.96405229 W)``."""
    rows = (int(0.3324324 * height), int(0.91351351 * height))
    return _window(height, width, rows, (int(0.0359477 * width), int(0.96405229 * width)))


def kb_crop_box(height: int, width: int) -> Box:
    """The KITTI benchmark's 352 x 1216 window of a frame: at the bottom, centred (BTS's ``do_kb_crop``)."""
    if height < KB_CROP[0] or width < KB_CROP[1]:
        raise ValueError(f"a {height} x {width} frame is smaller than the KITTI benchmark crop {KB_CROP[0]} x "
                         f"{KB_CROP[1]}; give kb_crop=False")  # fmt: skip
    return height - KB_CROP[0], (width - KB_CROP[1]) // 2, *KB_CROP


class FixedWindow:
    """An input crop at a fixed ``(top, left, height, width)`` window (of frames of size ``frame`` only, when
    given); a callable class rather than a closure, so DataLoader workers can unpickle it."""

    def __init__(self, box: Sequence[int], frame: tuple[int, int] | None = None):
        self.box, self.frame = tuple(int(v) for v in box), frame

    def __call__(self, frame_height: int, frame_width: int) -> Box:
        top, left, height, width = self.box
        if self.frame is not None and (frame_height, frame_width) != self.frame:
            raise ValueError(f"the input crop {self.box} is defined on {self.frame[0]} x {self.frame[1]} frames, "
                             f"not {frame_height} x {frame_width}")  # fmt: skip
        if min(self.box) < 0 or top + height > frame_height or left + width > frame_width:
            raise ValueError(f"the input crop (top, left, height, width) = {self.box} leaves the "
                             f"{frame_height} x {frame_width} frame")  # fmt: skip
        return self.box


def image_resize(image_size: int | Sequence[int] | None) -> Callable[[Image.Image], Image.Image] | None:
    """Bicubic, antialiased resizing of a PIL image to ``image_size`` (an int: the short side, aspect kept;
    ``[height, width]``), or None to keep it."""
    if image_size is None:
        return None
    size = image_size if isinstance(image_size, int) else [int(v) for v in image_size]
    return T.Resize(size, interpolation=T.InterpolationMode.BICUBIC, antialias=True)


# -- reading RGB-D pairs ------------------------------------------------------------------------


class RGBDReader(Protocol):
    """The images of a split: ``read(i)`` gives ``(rgb uint8 [H, W, 3], depth float32 [H, W] metres, name)``."""

    def __len__(self) -> int: ...

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]: ...


class NYUMatReader:
    """Images ``indices`` (0-based) of NYU's labelled MATLAB v7.3 file, with the depth of ``depth_key``; the file is
    opened once per process (DataLoader workers each open their own)."""

    def __init__(self, path: Path, indices: Sequence[int], depth_key: str):
        self.path, self.indices, self.depth_key = path, [int(i) for i in indices], depth_key
        self._file, self._pid = None, None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        image_number = self.indices[index]
        # MATLAB stores [H, W, 3] column-major: h5py sees [3, W, H] (and [W, H] for depth).
        rgb = np.ascontiguousarray(self._file["images"][image_number].transpose(2, 1, 0))
        depth = np.ascontiguousarray(self._file[self.depth_key][image_number].T, dtype=np.float32)
        return rgb, depth, f"{self.path}, image {image_number + 1}"


class DepthFileReader:
    """Pairs of an image file and a 16-bit PNG of depth x ``scale`` (NYU 1000, KITTI 256)."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], scale: float):
        self.pairs, self.scale = list(pairs), scale

    def __len__(self) -> int:
        return len(self.pairs)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        rgb_path, depth_path = self.pairs[index]
        rgb = np.asarray(load_rgb(rgb_path))
        return rgb, read_depth_png(depth_path, self.scale), str(rgb_path)


def read_depth_png(path: Path, scale: float) -> np.ndarray:
    """float32 ``[H, W]`` metres of a 16-bit depth PNG holding depth x ``scale``; 0 stays 0 (no measurement)."""
    name, opened = openable(path)
    try:
        with Image.open(opened) as image:
            image.load()
            if image.mode not in ("I;16", "I;16B", "I"):
                raise BadSampleError(
                    f"{name}: a depth PNG must be 16-bit grey (depth x {scale:g}), got mode {image.mode}"
                )
            values = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise BadSampleError(f"{name}: cannot decode depth PNG ({type(error).__name__}: {error})") from error
    return values.astype(np.float32) / scale


# -- the data set -------------------------------------------------------------------------------


class DepthDataset(Dataset):
    """``{"image", "depth", "evaluation_mask", "index"}`` of a reader's pairs (see the module docstring): the mask of
    ``evaluation_crop(H, W)`` (all True for None) on the whole frame, then ``input_crop(H, W)``'s window of all
    three, a random horizontal flip of all three when ``flip``, the image resized to ``image_size`` if given."""

    def __init__(
        self,
        reader: RGBDReader,
        evaluation_crop: Callable[[int, int], np.ndarray] | None = None,
        input_crop: Callable[[int, int], Box] | None = None,
        image_size: int | Sequence[int] | None = None,
        flip: bool = False,
    ):
        self.reader, self.evaluation_crop, self.input_crop, self.flip = reader, evaluation_crop, input_crop, flip
        self.resize = image_resize(image_size)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict:
        rgb, depth, name = self.reader.read(index)
        if rgb.shape[:2] != depth.shape:
            raise BadSampleError(f"{name}: the image is {rgb.shape[0]} x {rgb.shape[1]} but its depth map "
                                 f"{depth.shape[0]} x {depth.shape[1]}")  # fmt: skip
        depth = np.where(np.isfinite(depth), depth, 0).astype(np.float32)
        height, width = depth.shape
        mask = self.evaluation_crop(height, width) if self.evaluation_crop else np.ones((height, width), dtype=bool)
        if self.input_crop is not None:
            top, left, crop_height, crop_width = self.input_crop(height, width)
            window = (slice(top, top + crop_height), slice(left, left + crop_width))
            rgb, depth, mask = rgb[window], depth[window], mask[window]
        if self.flip and torch.rand(()) < 0.5:
            rgb, depth, mask = rgb[:, ::-1], depth[:, ::-1], mask[:, ::-1]
        image = Image.fromarray(np.ascontiguousarray(rgb))
        if self.resize is not None:
            image = self.resize(image)
        return {
            "image": to_normalized_tensor(image),
            "depth": torch.from_numpy(np.ascontiguousarray(depth)),
            "evaluation_mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "index": index,
        }


def collate_depth(samples: list[dict]) -> DepthBatch:
    """Samples into a batch; all images (and all depth maps) of a batch must have one size."""
    for key in ("image", "depth"):
        sizes = sorted({tuple(sample[key].shape[-2:]) for sample in samples})
        if len(sizes) > 1:
            raise ValueError(f"{key}s of different sizes {sizes} in one batch; crop them to one size (KITTIDepth's "
                             "kb_crop, input_crop), give image_size, or use batch size 1")  # fmt: skip
    return default_collate(samples)


class _PredictImages(Dataset):
    """``{"image", "path", "index"}`` of the user's images, resized to ``image_size`` if given."""

    def __init__(self, paths: Sequence[Path], image_size: int | Sequence[int] | None):
        self.paths = list(paths)
        self.resize = image_resize(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = load_rgb(self.paths[index])
        image = self.resize(image) if self.resize is not None else image
        return {"image": to_normalized_tensor(image), "path": str(self.paths[index]), "index": index}


# -- the data modules ---------------------------------------------------------------------------


class _DepthDataModule(L.LightningDataModule):
    """Loaders over the readers of the splits (``self._readers``: ``test``, and ``train`` / ``val`` where there is a
    training split); subclasses set them, ``min_depth``, ``max_depth``, ``evaluation_crop`` and ``input_crop``."""

    min_depth: float
    max_depth: float
    evaluation_crop: Callable[[int, int], np.ndarray] | None = None
    input_crop: Callable[[int, int], Box] | None = None

    def __init__(self) -> None:
        super().__init__()
        self._readers: dict[str, RGBDReader] = {}
        self.missing_depth: dict[str, int] = {}

    def _with_validation(self, train: RGBDReader, subset: Callable[[RGBDReader, np.ndarray], RGBDReader]) -> None:
        """``train`` and ``val`` readers: ``val_fraction`` of the training images drawn with ``seed``."""
        h = self.hparams
        train_indices, val_indices = split_validation(np.zeros(len(train), dtype=np.int64), h.val_fraction, h.seed)
        self._readers["train"] = subset(train, train_indices)
        if len(val_indices):
            self._readers["val"] = subset(train, val_indices)

    def dataset(self, split: str) -> DepthDataset:
        """The data set of ``split`` (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        if split not in self._readers:
            raise ValueError(f"{type(self).__name__} has no {split} split here: give a training split (a training "
                             "list, or the MATLAB file's trainNdxs) for train and val")  # fmt: skip
        flip = split == "train" and self.hparams.train_flip
        return DepthDataset(self._readers[split], self.evaluation_crop, self.input_crop, self.hparams.image_size, flip)

    def _loader(self, split: str):
        train = split == "train"
        dataset = self.dataset(split)
        if train:
            what = f"training images of {type(self).__name__}"
            require_one_batch(len(dataset), self.hparams.batch_size, self.trainer, what)
        return robust_loader(dataset, self.hparams, collate_depth, train)

    def train_dataloader(self):
        return self._loader("train")

    def val_dataloader(self):
        # No training split (or val_fraction 0): no validation, never the test images.
        return self._loader("val") if "val" in self._readers else []

    def test_dataloader(self):
        return self._loader("test")

    def predict_dataloader(self):
        h = self.hparams
        if not h.predict_images:
            return self.test_dataloader()
        # Images at their own size differ from one another: one a batch then.
        batch_size = h.eval_batch_size if h.image_size is not None else 1
        dataset = _PredictImages(list_images(h.predict_images), h.image_size)
        return DataLoader(dataset, batch_size=batch_size, num_workers=h.num_workers)


def _check_common(image_size, val_fraction: float, bad_samples: str) -> None:
    if image_size is not None:
        sizes = [image_size] if isinstance(image_size, int) else list(image_size)
        if len(sizes) not in (1, 2) or any(int(size) < 1 for size in sizes):
            raise ValueError(
                f"image_size must be a positive int (short side), [height, width] or None, got {image_size}"
            )
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    check_policy(bad_samples)


def read_depth_list(
    path: Path, image_root: Path, depth_root: Path, expected: str
) -> tuple[list[tuple[Path, Path]], int]:
    """``(pairs, missing)`` of a BTS / DepthCLIP list: ``<image> <depth> [...]`` lines, the paths relative to
    ``image_root`` and ``depth_root`` (a leading "/" too, as BTS's NYU training list writes them); lines whose depth
    is ``None`` are left out and counted."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {expected}")
    pairs, missing = [], 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}, line {number}: {line!r} is not '<image> <depth> [<focal>]'; {expected}")
        if fields[1] == "None":
            missing += 1
            continue
        pairs.append((image_root / fields[0].lstrip("/"), depth_root / fields[1].lstrip("/")))
    if not pairs:
        raise ValueError(f"{path} lists no image with a depth map; {expected}")
    if missing:
        total = missing + len(pairs)
        log.warning("%s: %d of %d lines have no ground truth (None) and are left out", path, missing, total)
    return pairs, missing


class _ListSubset:
    """Some of a reader's pairs, by index."""

    def __init__(self, reader: RGBDReader, indices: np.ndarray):
        self.reader, self.indices = reader, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        return self.reader.read(self.indices[index])


_NYU_MAT = """expected NYU Depth v2's labelled file and official split:
  <root>/
    nyu_depth_v2_labeled.mat   MATLAB v7.3: 'images' [1449, 3, 640, 480] uint8, 'depths' / 'rawDepths' [1449, 640, 480]
    splits.mat                 MATLAB v5: 'trainNdxs' (795), 'testNdxs' (654), 1-based image numbers"""

_NYU_LIST = """expected BTS's NYU layout:
  <root>/
    nyudepthv2_test_files_with_gt.txt   '<scene>/rgb_XXXXX.jpg <scene>/sync_depth_XXXXX.png <focal>' lines
    official_splits/test/<scene>/rgb_XXXXX.jpg, sync_depth_XXXXX.png   (16-bit PNG, millimetres)
  and optionally a training list over sync/ (train_list, train_dir)"""


class NYUDepthV2(_DepthDataModule):
    """NYU Depth v2: indoor RGB-D frames (Kinect) at 480 x 640, depth up to 10 m; the Eigen test split of 654
    images. From the labelled MATLAB file and ``splits.mat`` (``layout="mat"``) or BTS's folders and lists
    (``layout="list"``); see the module docstring."""

    min_depth, max_depth = 1e-3, 10.0

    def __init__(
        self,
        root: str,
        layout: str = "mat",
        mat_file: str = "nyu_depth_v2_labeled.mat",
        splits_file: str = "splits.mat",
        depth_key: str = "rawDepths",
        test_list: str = "nyudepthv2_test_files_with_gt.txt",
        test_dir: str = "official_splits/test",
        train_list: str | None = None,
        train_dir: str = "sync",
        evaluation_crop: str | None = "eigen",
        input_crop: str | Sequence[int] | None = None,
        image_size: int | Sequence[int] | None = None,
        val_fraction: float = 0.1,
        seed: int = 1,
        train_flip: bool = True,
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "raise",
        predict_images: str | None = None,
    ):
        """
        Args:
            root: the folder holding the MATLAB files (mat) or the lists and image folders (list).
            layout: "mat" or "list".
            mat_file, splits_file: the labelled file and the split file, relative to ``root`` (mat).
            depth_key: the MATLAB file's depth: "rawDepths" (the sensor's, with holes: what BTS's test PNGs hold) or
                "depths" (in-painted).
            test_list, test_dir: the test list (relative to ``root``) and the folder its paths start from (list).
            train_list, train_dir: an optional training list and its folder (list; the MATLAB file's training split
                is its 795 ``trainNdxs`` images).
            evaluation_crop: "eigen" (rows 45:471, columns 41:601) or None (every pixel).
            input_crop: "depthclip" (DepthCLIP's 416 x 544 window at row 56, column 60), ``[top, left, height,
                width]``, or None: the whole 480 x 640 frame.
            image_size: resize the image (not the depth): an int for the short side, ``[height, width]``, or None.
            val_fraction, seed: the share of the training images held out for validation, and the draw's seed.
            train_flip: random horizontal flips of training images (with their depth).
            batch_size: training batch per process; eval_batch_size: validation, test and predict.
            num_workers: DataLoader worker processes.
            bad_samples: "raise" (default) or "skip" an image that cannot be read.
            predict_images: ``lit-clip predict``'s images (a folder, a list file or an image); by default the test
                split.
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(image_size, val_fraction, bad_samples)
        if evaluation_crop not in ("eigen", None):
            raise ValueError(f"unknown evaluation_crop {evaluation_crop!r}; expected 'eigen' or None")
        self.evaluation_crop = nyu_eigen_mask if evaluation_crop == "eigen" else None
        if input_crop == "depthclip":
            self.input_crop = FixedWindow(DEPTHCLIP_NYU_INPUT, NYU_FRAME)
        elif isinstance(input_crop, str):
            raise ValueError(
                f"unknown input_crop {input_crop!r}; expected 'depthclip', [top, left, height, width] or None"
            )
        elif input_crop is not None:
            if len(input_crop) != 4:
                raise ValueError(f"input_crop must be [top, left, height, width], got {input_crop}")
            self.input_crop = FixedWindow(input_crop)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} not found; {_NYU_MAT if layout == 'mat' else _NYU_LIST}")
        if layout == "mat":
            self._read_mat(self.root / mat_file, self.root / splits_file, depth_key)
        elif layout == "list":
            pairs, self.missing_depth["test"] = read_depth_list(
                self.root / test_list, self.root / test_dir, self.root / test_dir, _NYU_LIST
            )
            self._readers["test"] = DepthFileReader(pairs, 1000.0)
            if train_list is not None:
                train_root = self.root / train_dir
                listing = self.root / train_list
                pairs, self.missing_depth["train"] = read_depth_list(listing, train_root, train_root, _NYU_LIST)
                self._with_validation(DepthFileReader(pairs, 1000.0), _ListSubset)
        else:
            raise ValueError(f"unknown layout {layout!r}; expected 'mat' or 'list'")

    def _read_mat(self, mat: Path, splits: Path, depth_key: str) -> None:
        if depth_key not in ("rawDepths", "depths"):
            raise ValueError(f"unknown depth_key {depth_key!r}; expected 'rawDepths' or 'depths'")
        for path in (mat, splits):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found; {_NYU_MAT}")
        try:
            file = h5py.File(mat, "r")
        except OSError as error:
            raise OSError(f"{mat}: cannot open as MATLAB v7.3 / HDF5 ({error}); {_NYU_MAT}") from error
        with file:
            for key in ("images", depth_key):
                if key not in file:
                    raise KeyError(f"{mat} has no {key!r} (it has {sorted(file)}); {_NYU_MAT}")
            images, depths = file["images"].shape, file[depth_key].shape
        if len(images) != 4 or images[1] != 3 or depths != (images[0], images[2], images[3]):
            raise ValueError(f"{mat}: 'images' {images} and {depth_key!r} {depths} are not [n, 3, W, H] and [n, W, H]")
        try:
            content = scipy.io.loadmat(splits)
        except (ValueError, NotImplementedError, OSError) as error:
            raise ValueError(f"{splits}: cannot read as a MATLAB v5 file ({error}); {_NYU_MAT}") from error
        indices = {}
        for key in ("trainNdxs", "testNdxs"):
            if key not in content:
                raise KeyError(f"{splits} has no {key!r}; {_NYU_MAT}")
            numbers = np.asarray(content[key]).reshape(-1).astype(np.int64)
            if len(numbers) and (numbers.min() < 1 or numbers.max() > images[0]):
                raise ValueError(f"{splits}: {key} holds {numbers.min()}..{numbers.max()}; expected 1-based image "
                                 f"numbers 1..{images[0]} of {mat.name}")  # fmt: skip
            indices[key] = numbers - 1
        shared = np.intersect1d(indices["trainNdxs"], indices["testNdxs"])
        if len(shared):
            raise ValueError(f"{splits}: images {(shared + 1).tolist()[:10]} are in both trainNdxs and testNdxs")
        self._readers["test"] = NYUMatReader(mat, indices["testNdxs"], depth_key)
        if len(indices["trainNdxs"]):
            train = indices["trainNdxs"]

            def subset(_: RGBDReader, chosen: np.ndarray) -> NYUMatReader:
                return NYUMatReader(mat, train[chosen], depth_key)

            self._with_validation(NYUMatReader(mat, train, depth_key), subset)


_KITTI = """expected KITTI's raw data and annotated depth with BTS's Eigen lists:
  <root>/
    eigen_test_files_with_gt.txt   '<image> <depth> <focal>' lines, e.g.
      2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png
      2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377   (or None: no depth)
    <date>/<date>_drive_XXXX_sync/image_02/data/<frame>.png          (images_dir: the raw data)
    data_depth_annotated/<date>_drive_XXXX_sync/proj_depth/groundtruth/image_02/<frame>.png   (16-bit, depth x 256)"""


class KITTIDepth(_DepthDataModule):
    """KITTI's Eigen split: driving frames (about 375 x 1242) with projected LiDAR ground truth up to 80 m, 652
    test frames with ground truth. Read from KITTI's raw data, its annotated depth and BTS's lists; see the module
    docstring."""

    min_depth, max_depth = 1e-3, 80.0

    def __init__(
        self,
        root: str,
        test_list: str = "eigen_test_files_with_gt.txt",
        train_list: str | None = None,
        images_dir: str = ".",
        depth_dir: str = "data_depth_annotated",
        evaluation_crop: str | None = "garg",
        kb_crop: bool = True,
        image_size: int | Sequence[int] | None = None,
        val_fraction: float = 0.1,
        seed: int = 1,
        train_flip: bool = True,
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "raise",
        predict_images: str | None = None,
    ):
        """
        Args:
            root: the folder holding the lists, the raw data and the annotated depth.
            test_list: the Eigen test list, relative to ``root``; train_list: an optional training list (BTS's
                ``eigen_train_files_with_gt.txt``).
            images_dir, depth_dir: the folders the lists' image and depth paths start from, relative to ``root``.
            evaluation_crop: "garg" (default), "eigen" or None (every pixel).
            kb_crop: crop image and depth to the KITTI benchmark's 352 x 1216 (bottom, centred).
            image_size, val_fraction, seed, train_flip, batch_size, eval_batch_size, num_workers, bad_samples,
                predict_images: as :class:`NYUDepthV2`'s.
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(image_size, val_fraction, bad_samples)
        crops = {"garg": garg_mask, "eigen": kitti_eigen_mask, None: None}
        if evaluation_crop not in crops:
            raise ValueError(f"unknown evaluation_crop {evaluation_crop!r}; expected 'garg', 'eigen' or None")
        self.evaluation_crop = crops[evaluation_crop]
        self.input_crop = kb_crop_box if kb_crop else None
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} not found; {_KITTI}")
        images, depths = self.root / images_dir, self.root / depth_dir
        if not depths.is_dir():
            raise FileNotFoundError(f"{depths} not found; {_KITTI}")
        pairs, self.missing_depth["test"] = read_depth_list(self.root / test_list, images, depths, _KITTI)
        self._readers["test"] = DepthFileReader(pairs, 256.0)
        if train_list is not None:
            pairs, self.missing_depth["train"] = read_depth_list(self.root / train_list, images, depths, _KITTI)
            self._with_validation(DepthFileReader(pairs, 256.0), _ListSubset)


__all__ = ["KITTIDepth", "NYUDepthV2"]
