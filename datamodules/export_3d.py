"""Write point clouds and RGB-D images to disk in the layouts of the real 3D and depth data sets.

The files exercise the readers of :mod:`lit_clip.datamodules.point_clouds` (PointNet's ModelNet40 HDF5 files,
PointNet++'s resampled ModelNet text files, ScanObjectNN's HDF5 variants) and of :mod:`lit_clip.datamodules.depth`
(NYU Depth v2's labelled MATLAB v7.3 file and ``splits.mat``, BTS's list layout of PNG depth maps for NYU and KITTI's
Eigen split) in tests and demos, from plain arrays (the generated 3D ShapesWorld among them), without downloading
anything. Every writer takes clouds as float ``[n, P, 3]`` (or a sequence of ``[P, 3]``), labels as indices into
``classnames``, images as uint8 ``[n, H, W, 3]`` and depth maps as float ``[n, H, W]`` in metres (0 = no measurement),
and returns the paths it wrote.

What the writers reproduce of the originals: the file and dataset names, shapes and dtypes (ModelNet's ``label``
``[n, 1]`` uint8, ScanObjectNN's ``[n]``); the MATLAB file's transposed arrays (``images`` ``[n, 3, W, H]``,
``depths`` ``[n, W, H]``: MATLAB is column-major) and its 512-byte v7.3 header; 1-based indices in ``splits.mat``;
depth PNGs as uint16 of depth x 1000 (NYU) or x 256 (KITTI), rounded (BTS's extraction truncates); the list files'
lines, KITTI's ``None`` for a frame without ground truth. Not reproduced: the other datasets of the MATLAB file
(labels, instances, scene types, ...), the black border BTS writes around NYU's RGB images.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import scipy.io
from lit_clip.datamodules.point_clouds import SCANOBJECTNN_VARIANTS
from PIL import Image

NYU_FOCAL = 518.8579  # the focal length (pixels) on BTS's NYU list lines
KITTI_FOCAL = 721.5377  # that of the 2011_09_26 drives on BTS's KITTI lines


def _clouds(clouds: np.ndarray | Sequence[np.ndarray], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(clouds, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"clouds must be [n, points, 3] (all with as many points), got shape {points.shape}")
    if len(labels) != len(points):
        raise ValueError(f"{len(labels)} labels for {len(points)} clouds")
    return points, labels


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; the 3D data sets' files have 'train' and 'test'")


def _write_names(path: Path, names: Sequence[str]) -> None:
    """Write the class list, or check that the one there (from the other split) is the same."""
    text = "".join(f"{name}\n" for name in names)
    if path.is_file() and path.read_text(encoding="utf-8") != text:
        raise ValueError(f"{path} already lists other class names; write both splits with the same classnames")
    path.write_text(text, encoding="utf-8")


# -- point clouds -------------------------------------------------------------------------------


def write_modelnet_hdf5(
    root: str | Path,
    clouds: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int],
    classnames: Sequence[str],
    split: str,
    per_file: int = 2048,
) -> list[Path]:
    """PointNet's ``modelnet40_ply_hdf5_2048`` layout in the folder ``root``: ``ply_data_<split><k>.h5`` of
    ``per_file`` clouds each (datasets ``data`` float32 ``[n, P, 3]``, ``label`` uint8 ``[n, 1]``), listed in
    ``<split>_files.txt`` as the original lists them (``data/modelnet40_ply_hdf5_2048/<file>``), and
    ``shape_names.txt``. Returns the ``.h5`` files."""
    _check_split(split)
    points, labels = _clouds(clouds, labels)
    if per_file < 1:
        raise ValueError(f"per_file must be at least 1, got {per_file}")
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    _write_names(folder / "shape_names.txt", classnames)
    files = []
    for k, start in enumerate(range(0, len(points), per_file)):
        path = folder / f"ply_data_{split}{k}.h5"
        with h5py.File(path, "w") as file:
            file.create_dataset("data", data=points[start : start + per_file])
            file.create_dataset("label", data=labels[start : start + per_file, None].astype(np.uint8))
        files.append(path)
    listed = "".join(f"data/modelnet40_ply_hdf5_2048/{path.name}\n" for path in files)
    (folder / f"{split}_files.txt").write_text(listed, encoding="utf-8")
    return files


def write_modelnet_resampled(
    root: str | Path,
    clouds: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[int],
    classnames: Sequence[str],
    split: str,
    normals: np.ndarray | Sequence[np.ndarray] | None = None,
    name: str = "modelnet40",
) -> list[Path]:
    """PointNet++'s ``modelnet40_normal_resampled`` layout in the folder ``root``: ``<class>/<class>_<k:04d>.txt``
    with rows ``x,y,z,nx,ny,nz`` (``normals`` ``[n, P, 3]``, zeros when not given), ``<name>_<split>.txt`` listing
    the ids and ``<name>_shape_names.txt``; ``name`` "modelnet10" writes ModelNet10's lists. A class's numbers go on
    from those already written (the test ids follow the training ids, as in ModelNet). Returns the cloud files."""
    _check_split(split)
    points, labels = _clouds(clouds, labels)
    normals = np.zeros_like(points) if normals is None else np.asarray(normals, dtype=np.float32)
    if normals.shape != points.shape:
        raise ValueError(f"normals have shape {normals.shape}; expected the clouds' {points.shape}")
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    _write_names(folder / f"{name}_shape_names.txt", classnames)
    files, ids = [], []
    for cloud, normal, label in zip(points, normals, labels):
        classname = classnames[label]
        class_folder = folder / classname
        class_folder.mkdir(exist_ok=True)
        number = 1 + max((int(p.stem.rpartition("_")[2]) for p in class_folder.glob(f"{classname}_*.txt")), default=0)
        shape_id = f"{classname}_{number:04d}"
        np.savetxt(class_folder / f"{shape_id}.txt", np.concatenate([cloud, normal], axis=1), fmt="%.6f", delimiter=",")
        files.append(class_folder / f"{shape_id}.txt")
        ids.append(shape_id)
    (folder / f"{name}_{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return files


def write_scanobjectnn(
    root: str | Path, variant: str, split: str, clouds: np.ndarray | Sequence[np.ndarray], labels: Sequence[int]
) -> Path:
    """One file of ScanObjectNN's ``h5_files/`` layout under ``root``: the ``variant``'s (OBJ_ONLY, OBJ_BG,
    PB_T50_RS) training or test file, datasets ``data`` float32 ``[n, P, 3]`` and ``label`` ``[n]``; labels index
    :data:`~lit_clip.datamodules.point_clouds.SCANOBJECTNN_CLASSES`."""
    _check_split(split)
    if variant not in SCANOBJECTNN_VARIANTS:
        raise ValueError(f"unknown ScanObjectNN variant {variant!r}; expected one of {list(SCANOBJECTNN_VARIANTS)}")
    points, labels = _clouds(clouds, labels)
    folder, suffix = SCANOBJECTNN_VARIANTS[variant]
    path = Path(root) / folder / f"{'training' if split == 'train' else 'test'}_objectdataset{suffix}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        file.create_dataset("data", data=points)
        file.create_dataset("label", data=labels)
    return path


# -- depth --------------------------------------------------------------------------------------


def _rgbd(images: np.ndarray | Sequence[np.ndarray], depths: Sequence[np.ndarray | None]) -> tuple[list, list]:
    images = [np.asarray(image) for image in images]
    depths = [None if depth is None else np.asarray(depth, dtype=np.float32) for depth in depths]
    if len(images) != len(depths):
        raise ValueError(f"{len(images)} images for {len(depths)} depth maps")
    for i, (image, depth) in enumerate(zip(images, depths)):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i}: expected uint8 [H, W, 3], got {image.dtype} {image.shape}")
        if depth is not None and depth.shape != image.shape[:2]:
            raise ValueError(f"depth map {i} has shape {depth.shape}; expected its image's {image.shape[:2]}")
    return images, depths


def write_nyu_mat(
    path: str | Path,
    images: np.ndarray,
    depths: np.ndarray,
    raw_depths: np.ndarray | None = None,
) -> Path:
    """NYU Depth v2's labelled file (``nyu_depth_v2_labeled.mat``, MATLAB v7.3, i.e. HDF5 behind a 512-byte MATLAB
    header): ``images`` uint8 stored ``[n, 3, W, H]``, ``depths`` (the in-painted maps) and ``rawDepths`` (the
    sensor's, 0 where it measured nothing; ``depths`` when not given) float32 stored ``[n, W, H]``: every array
    transposed, as h5py reads MATLAB's column-major arrays. ``images`` ``[n, H, W, 3]``, depths ``[n, H, W]``."""
    images = np.asarray(images)
    depths = np.asarray(depths, dtype=np.float32)
    raw_depths = depths if raw_depths is None else np.asarray(raw_depths, dtype=np.float32)
    _rgbd(images, depths)
    _rgbd(images, raw_depths)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as file:
        for key, array, matlab_class in (
            ("images", images.transpose(0, 3, 2, 1), "uint8"),
            ("depths", depths.transpose(0, 2, 1), "single"),
            ("rawDepths", raw_depths.transpose(0, 2, 1), "single"),
        ):
            file.create_dataset(key, data=np.ascontiguousarray(array))
            file[key].attrs["MATLAB_class"] = np.bytes_(matlab_class)
    # MATLAB's v7.3 header: 116 bytes of text, 8 of subsystem offset, the version 0x0200 and the endian mark "IM".
    created = datetime.datetime(2012, 1, 1).strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 .".ljust(116).encode()
    with open(path, "r+b") as file:
        file.write(text + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return path


def write_nyu_splits(path: str | Path, train_idx: Sequence[int], test_idx: Sequence[int]) -> Path:
    """NYU's ``splits.mat`` (MATLAB v5): ``trainNdxs`` and ``testNdxs``, column vectors of 1-based image numbers;
    ``train_idx`` and ``test_idx`` are 0-based indices into the labelled file's images."""
    train, test = np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)
    if np.intersect1d(train, test).size:
        raise ValueError(f"indices {np.intersect1d(train, test).tolist()} are in both train_idx and test_idx")
    if (train < 0).any() or (test < 0).any():
        raise ValueError("train_idx and test_idx are 0-based indices; got a negative one")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"trainNdxs": (train + 1.0)[:, None], "testNdxs": (test + 1.0)[:, None]})
    return path


def depth_png(depth: np.ndarray, scale: float) -> Image.Image:
    """A depth map in metres as the benchmarks' 16-bit PNG: ``round(depth * scale)`` (0 stays 0, no measurement)."""
    values = np.round(np.nan_to_num(depth, nan=0.0, posinf=0.0) * scale)
    if values.max(initial=0) > 65535 or values.min(initial=0) < 0:
        raise ValueError(f"depths x {scale} must lie in 0..65535 for a 16-bit PNG; got {values.min()}..{values.max()}")
    return Image.fromarray(values.astype(np.uint16))


def write_depth_list(
    root: str | Path,
    images: np.ndarray | Sequence[np.ndarray],
    depths: np.ndarray | Sequence[np.ndarray],
    scale: float = 1000.0,
    list_name: str = "nyudepthv2_test_files_with_gt.txt",
    data_dir: str = "official_splits/test",
    scenes: Sequence[str] | None = None,
    focal: float = NYU_FOCAL,
    image_format: str = "jpg",
) -> Path:
    """BTS's NYU layout under ``root``: ``<data_dir>/<scene>/rgb_<k:05d>.<image_format>`` and
    ``sync_depth_<k:05d>.png`` (uint16, depth x ``scale``; NYU's millimetres by default), listed as
    ``<scene>/rgb_<k>.jpg <scene>/sync_depth_<k>.png <focal>`` lines in ``root/<list_name>``. ``scenes``: each
    image's scene folder (default "scene"). ``image_format`` "jpg" as BTS (lossy) or "png". Returns the list."""
    images, depths = _rgbd(images, depths)
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    scenes = ["scene"] * len(images) if scenes is None else list(scenes)
    if len(scenes) != len(images):
        raise ValueError(f"{len(scenes)} scenes for {len(images)} images")
    root = Path(root)
    lines = []
    for k, (image, depth, scene) in enumerate(zip(images, depths, scenes)):
        folder = root / data_dir / scene
        folder.mkdir(parents=True, exist_ok=True)
        rgb, gt = f"{scene}/rgb_{k:05d}.{image_format}", f"{scene}/sync_depth_{k:05d}.png"
        Image.fromarray(image).save(root / data_dir / rgb, **({"quality": 95} if image_format == "jpg" else {}))
        depth_png(depth, scale).save(root / data_dir / gt)
        lines.append(f"{rgb} {gt} {focal:.4f}\n")
    listing = root / list_name
    listing.write_text("".join(lines), encoding="utf-8")
    return listing


def write_kitti_eigen(
    root: str | Path,
    images: np.ndarray | Sequence[np.ndarray],
    depths: Sequence[np.ndarray | None],
    list_name: str = "eigen_test_files_with_gt.txt",
    date: str = "2011_09_26",
    drive: int = 2,
    depth_dir: str = "data_depth_annotated",
    focal: float = KITTI_FOCAL,
) -> Path:
    """KITTI's raw data and annotated depth as BTS reads the Eigen split, under ``root``: the images as
    ``<date>/<date>_drive_<drive:04d>_sync/image_02/data/<k:010d>.png``, the ground truth (uint16 PNG, depth x 256)
    as ``<depth_dir>/<date>_drive_<drive:04d>_sync/proj_depth/groundtruth/image_02/<k:010d>.png``, listed in
    ``root/<list_name>`` as ``<image> <depth> <focal>``; a depth of None writes no ground truth and a ``None`` in its
    line (as BTS's list for the frames KITTI has none for). Returns the list."""
    images, depths = _rgbd(images, depths)
    root = Path(root)
    sync = f"{date}_drive_{drive:04d}_sync"
    lines = []
    for k, (image, depth) in enumerate(zip(images, depths)):
        rgb = f"{date}/{sync}/image_02/data/{k:010d}.png"
        (root / rgb).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / rgb)
        gt = "None"
        if depth is not None:
            gt = f"{sync}/proj_depth/groundtruth/image_02/{k:010d}.png"
            (root / depth_dir / gt).parent.mkdir(parents=True, exist_ok=True)
            depth_png(depth, 256.0).save(root / depth_dir / gt)
        lines.append(f"{rgb} {gt} {focal:.4f}\n")
    listing = root / list_name
    listing.write_text("".join(lines), encoding="utf-8")
    return listing


__all__ = [
    "write_depth_list",
    "write_kitti_eigen",
    "write_modelnet_hdf5",
    "write_modelnet_resampled",
    "write_nyu_mat",
    "write_nyu_splits",
    "write_scanobjectnn",
]
