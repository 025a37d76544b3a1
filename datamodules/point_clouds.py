"""Point-cloud classification data read from disk: ModelNet40, ModelNet10 and ScanObjectNN in their official layouts,
as PointCLIP (``ZrrSkywalker/PointCLIP``) and PointCLIP V2 (``yangyangyang127/PointCLIP_V2``) read them.

Every data module gives :class:`~lit_clip.batches.PointCloudBatch` es of ``{"points" [B, N, 3], "label", "index"}``
(``index`` numbers the clouds of a split) and has ``classnames`` and ``templates`` (by default PointCLIP's one
prompt, "point cloud depth map of a {}.") for a zero-shot head. ``predict_clouds`` gives ``lit-clip predict`` the
user's own clouds (``.npy`` / ``.txt`` files) with their ``path``.

Layouts:

- ModelNet40, ``layout="hdf5"``: PointNet's ``modelnet40_ply_hdf5_2048/`` (the folder PointCLIP and V2 read): files
  ``ply_data_{train,test}{k}.h5`` with datasets ``data`` float ``[n, 2048, 3]`` and ``label`` ``[n, 1]``, listed by
  ``train_files.txt`` / ``test_files.txt`` (their lines are paths inside PointNet's repository,
  ``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``: each is looked up by its name in the folder), and
  ``shape_names.txt``, the 40 names in label order. 9,843 training and 2,468 test clouds.
- ModelNet40 / ModelNet10, ``layout="resampled"``: PointNet++'s ``modelnet40_normal_resampled/``: ``modelnet{40,10}
  _shape_names.txt``, ``modelnet{40,10}_{train,test}.txt`` (ids such as ``night_stand_0001``; the class is the id
  without its number) and ``<class>/<id>.txt``, 10,000 rows ``x,y,z,nx,ny,nz`` each (the normals are not read).
- ModelNet10, ``layout="hdf5"``: there is no official 10-class HDF5 release. The ten ModelNet10 classes are taken
  out of ModelNet40's files and relabelled in ModelNet10's (alphabetical) order; those are the same shapes and the
  same split as ModelNet10's (3,991 training and 908 test clouds), in ModelNet40's orientation.
- ScanObjectNN (``h5_files/`` of the release): ``main_split_nobg/{training,test}_objectdataset.h5`` (OBJ_ONLY),
  ``main_split/{training,test}_objectdataset.h5`` (OBJ_BG) and ``main_split/{training,test}_objectdataset
  _augmentedrot_scale75.h5`` (PB_T50_RS, the hardest), datasets ``data`` ``[n, 2048, 3]`` and ``label`` ``[n]``; its
  15 classes in the release's label order (:data:`SCANOBJECTNN_CLASSES`).

``root`` may be the data set folder itself or the folder holding it (``modelnet40_ply_hdf5_2048/``,
``modelnet40_normal_resampled/``, ``h5_files/``).

What is done to a cloud, and how it compares with the official loaders:

- **Points**: the first ``num_points`` (1,024) of the stored order, as PointCLIP's and V2's loaders take them
  (``pointcloud[:1024]``) and as PointNet++ does without ``--use_uniform_sample`` (its farthest-point sampling is
  not offered). A cloud with fewer points, no points, or a NaN / infinite coordinate among those kept stops the run
  with the file and index; so does a label outside the class list.
- **Normalisation** (``normalize``): centred on its mean and scaled so its farthest point is at distance 1
  (PointNet++'s ``pc_normalize``), after the points are taken. By default (None) as the official loader of each
  layout: ModelNet40's HDF5 clouds are stored in the unit sphere and PointCLIP feeds them as they are (not
  re-normalised); PointNet++ normalises the resampled clouds; ScanObjectNN is normalised, as its own training
  scripts do (``center_data`` + ``normalize_data``); PointCLIP V2 feeds its clouds as stored, and its projection
  rescales every cloud to its bounding box anyway.
- **Validation**: the files have no validation split, and PointCLIP and V2 validate on the test set (their
  configs' ``val=test``; V2's prompts and view weights, and V1's ``--post-search``, are picked on it: their issues
  #4 and #25). Here validation is carved out of the *training* clouds: ``val_fraction`` of each class (at least one
  when the class has two or more), drawn with ``seed`` before anything else, so it is the same set for every
  ``shots``; it never meets the test set. ``val_fraction=0`` gives no validation.
- **Few-shot** (``shots``): K training clouds per class, drawn with ``seed`` from the training clouds not held out
  for validation, by Dassl's draw (:func:`~lit_clip.datamodules.fewshot.sample_shots`). PointCLIP's Dassl draws
  with ``repeat=True``, i.e. with replacement for a class with fewer than K clouds; here such a class keeps the
  clouds it has (no ModelNet40 class has fewer than 64 training clouds, so the 1-16-shot protocols are unaffected).
- **Training augmentation** (``train_augmentation``): PointCLIP's ``translate_pointcloud``, each axis scaled by a
  factor drawn from [2/3, 3/2] and shifted by one from [-0.2, 0.2]. Its point shuffle is not done: a projection
  does not depend on the order of the points.
- **Class names**: underscores read as spaces ("night stand", the names V2's prompt files use);
  ``readable_classnames=False`` keeps the files' names, as PointCLIP V1 prompts them.
"""
from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.fewshot import sample_shots
from lit_clip.datamodules.loaders import stateful_loader
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.templates import POINTCLIP_TEMPLATES, resolve_templates

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MODELNET10_CLASSES = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet",
)  # fmt: skip
SCANOBJECTNN_CLASSES = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table", "bed", "pillow", "sink",
    "sofa", "toilet",
)  # fmt: skip
# variant -> (folder under h5_files/, file name suffix)
SCANOBJECTNN_VARIANTS = {
    "OBJ_ONLY": ("main_split_nobg", ""),
    "OBJ_BG": ("main_split", ""),
    "PB_T50_RS": ("main_split", "_augmentedrot_scale75"),
}
CLOUD_EXTENSIONS = (".npy", ".txt", ".xyz", ".pts")


# -- the clouds of an official split ------------------------------------------------------------


@dataclass
class CloudSource:
    """The clouds of an official split (train or test): in memory (``points`` ``[n, N, 3]``, from HDF5 files) or one
    text file each (``files``, read when asked for), with their ``labels``; ``origins[i]`` names where cloud ``i``
    comes from, for errors (``ply_data_train0.h5[17]``)."""

    labels: np.ndarray
    origins: list[str]
    points: np.ndarray | None = None
    files: list[Path] | None = None
    num_points: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def cloud(self, index: int) -> np.ndarray:
        """float32 ``[N, 3]``: the kept points of cloud ``index`` (checked when read from a text file)."""
        if self.points is not None:
            return self.points[index]
        return read_cloud_file(self.files[index], self.num_points)


def check_clouds(points: np.ndarray, origins: Sequence[str]) -> None:
    """Stop on a cloud with a NaN or infinite coordinate, naming it."""
    finite = np.isfinite(points).reshape(len(points), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{origins[bad[0]]}: the cloud has NaN or infinite coordinates{more}")


def check_labels(labels: np.ndarray, num_classes: int, origins: Sequence[str]) -> None:
    """Stop on a label that is not one of the ``num_classes`` classes, naming the cloud."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise ValueError(
            f"{origins[bad[0]]}: label {labels[bad[0]]} is not one of the {num_classes} classes (0..{num_classes - 1})"
        )


def keep_points(points: np.ndarray, num_points: int | None, origin: str) -> np.ndarray:
    """The first ``num_points`` points of a cloud ``[P, 3]`` or of every cloud of ``[n, P, 3]`` (all for None); too
    few points is an error naming ``origin``."""
    available = points.shape[-2]
    if available == 0:
        raise ValueError(f"{origin}: the cloud has no points")
    if num_points is None:
        return points
    if available < num_points:
        raise ValueError(f"{origin}: {available} points, fewer than num_points={num_points}; lower num_points")
    return points[..., :num_points, :]


def read_cloud_file(path: Path, num_points: int | None) -> np.ndarray:
    """float32 ``[N, 3]``: the first ``num_points`` points of a cloud file: ``.npy`` (``[P, >=3]``) or text rows
    ``x,y,z[,...]`` separated by commas or spaces (PointNet++'s resampled ModelNet, ``.xyz``); checked."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: cloud file not found")
    try:
        if path.suffix.lower() == ".npy":
            rows = np.load(path)
            if not isinstance(rows, np.ndarray):  # an .npz archive under a .npy name
                rows.close()
                raise ValueError(f"{path}: a .npz archive of several arrays, not one .npy array of points")
        else:
            # Only the rows kept are parsed: a resampled ModelNet file holds 10,000.
            with open(path, encoding="utf-8") as file:
                text = [line.replace(",", " ") for line in itertools.islice(file, num_points) if line.strip()]
            rows = np.loadtxt(text, dtype=np.float32, ndmin=2) if text else np.zeros((0, 3), np.float32)
    except ValueError as error:
        raise ValueError(f"{path}: not a cloud of 'x,y,z,...' rows ({error})") from error
    if rows.ndim != 2 or (len(rows) and rows.shape[1] < 3):
        raise ValueError(f"{path}: expected rows of at least 3 coordinates (x, y, z), got shape {rows.shape}")
    points = keep_points(np.asarray(rows[:, :3], dtype=np.float32).reshape(-1, 3), num_points, str(path))
    check_clouds(points[None], [str(path)])
    return points


def normalize_to_unit_sphere(points: np.ndarray) -> np.ndarray:
    """``[N, 3]`` centred on its mean and scaled so the farthest point is at distance 1 (PointNet++'s
    ``pc_normalize``); a cloud whose points all coincide is only centred."""
    centred = points - points.mean(axis=0)
    radius = np.sqrt((centred**2).sum(axis=1)).max()
    return centred / radius if radius > 0 else centred


def split_validation(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` indices of a training split: per class (in label order) ``round(val_fraction * n)`` clouds,
    at least one of a class with two or more and never all of them, drawn with ``seed``; both sorted."""
    rng = np.random.default_rng(seed)
    val = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = round(val_fraction * len(members))
        if val_fraction > 0 and len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        val.append(members[:count])
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), val), val


# -- data sets ----------------------------------------------------------------------------------


class PointCloudDataset(Dataset):
    """``{"points" [N, 3], "label", "index"}`` for clouds ``indices`` of a :class:`CloudSource`: normalised if asked,
    then (training) PointCLIP's random scale and shift."""

    def __init__(self, source: CloudSource, indices: Sequence[int], normalize: bool, augment: bool = False):
        self.source, self.indices, self.normalize, self.augment = source, np.asarray(indices), normalize, augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        cloud = self.source.cloud(int(self.indices[index]))
        points = torch.from_numpy(normalize_to_unit_sphere(cloud) if self.normalize else np.array(cloud, np.float32))
        if self.augment:
            # torch's generator: DataLoader seeds it per worker, so workers draw different factors.
            scale = torch.empty(3).uniform_(2.0 / 3.0, 3.0 / 2.0)
            shift = torch.empty(3).uniform_(-0.2, 0.2)
            points = points * scale + shift
        label = torch.tensor(int(self.source.labels[self.indices[index]]), dtype=torch.long)
        return {"points": points.float(), "label": label, "index": index}


class CloudFilesDataset(Dataset):
    """``{"points", "index", "path"}`` for the user's cloud files (``lit-clip predict``)."""

    def __init__(self, paths: Sequence[Path], num_points: int | None, normalize: bool):
        self.paths, self.num_points, self.normalize = list(paths), num_points, normalize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        cloud = read_cloud_file(self.paths[index], self.num_points)
        points = normalize_to_unit_sphere(cloud) if self.normalize else cloud
        points = torch.from_numpy(np.asarray(points, np.float32))
        return {"points": points, "index": index, "path": str(self.paths[index])}


def list_cloud_files(source: str | Path) -> list[Path]:
    """The cloud files ``source`` names: a folder's (recursively, sorted) or the file itself."""
    source = Path(source)
    if source.is_dir():
        files = sorted(
            p for p in source.rglob("*") if p.suffix.lower() in CLOUD_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise FileNotFoundError(f"predict_clouds: no cloud files ({', '.join(CLOUD_EXTENSIONS)}) under {source}")
        return files
    if not source.is_file():
        kinds = ", ".join(CLOUD_EXTENSIONS)
        raise FileNotFoundError(f"predict_clouds: {source} is neither a folder nor a cloud file ({kinds})")
    return [source]


# -- the data modules ---------------------------------------------------------------------------


class _PointCloudDataModule(L.LightningDataModule):
    """Loaders over the official ``train`` and ``test`` :class:`CloudSource` s of a subclass, with validation carved
    out of training and the few-shot draw (see the module docstring). Subclasses set ``classnames`` (the files'
    names, in label order) and ``default_normalize``, and read their sources in ``read_source(split)``."""

    default_normalize: bool

    def __init__(
        self,
        num_points: int | None,
        normalize: bool | None,
        shots: int | None,
        seed: int,
        val_fraction: float,
        templates: str | Sequence[str],
        readable_classnames: bool,
    ):
        super().__init__()
        if num_points is not None and num_points < 1:
            raise ValueError(f"num_points must be at least 1 (or None for all), got {num_points}")
        if shots is not None and shots < 1:
            raise ValueError(f"shots must be at least 1 (or None for every training cloud), got {shots}")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.templates = resolve_templates(templates)
        self._readable = readable_classnames
        self._normalize = normalize
        self._sources: dict[str, CloudSource] = {}
        self._indices: dict[str, np.ndarray] = {}
        self.file_classnames: list[str] = []

    @property
    def classnames(self) -> list[str]:
        """The class names in label order; underscores read as spaces unless ``readable_classnames`` is off."""
        names = self.file_classnames
        return [name.replace("_", " ") for name in names] if self._readable else list(names)

    @property
    def normalize(self) -> bool:
        """Whether clouds are normalised to the unit sphere: ``normalize``, or this layout's official choice."""
        return self.default_normalize if self._normalize is None else self._normalize

    def read_source(self, split: str) -> CloudSource:
        raise NotImplementedError

    def source(self, split: str) -> CloudSource:
        """The clouds of the official ``train`` or ``test`` split, read once."""
        if split not in self._sources:
            self._sources[split] = self.read_source(split)
        return self._sources[split]

    def indices(self, split: str) -> np.ndarray:
        """The clouds of ``split``: indices into the official training clouds (``train``: the shots or all but the
        validation clouds; ``val``) or the test clouds (``test``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        if split == "test":  # without reading the training files: zero-shot testing needs none
            return np.arange(len(self.source("test")))
        if not self._indices:
            h = self.hparams
            labels = self.source("train").labels
            train, val = split_validation(labels, h.val_fraction, h.seed)
            if h.shots is not None:
                drawn = sample_shots([(int(i), int(labels[i])) for i in train], h.shots, random.Random(h.seed))
                train = np.array(sorted(index for index, _ in drawn), dtype=np.int64)
            self._indices = {"train": train, "val": val}
        return self._indices[split]

    def dataset(self, split: str) -> PointCloudDataset:
        """The data set of ``split``; the training one augmented when ``train_augmentation`` is on."""
        indices = self.indices(split)
        source = self.source("test" if split == "test" else "train")
        augment = split == "train" and self.hparams.train_augmentation
        return PointCloudDataset(source, indices, self.normalize, augment)

    def setup(self, stage: str) -> None:
        # Read the files the stage needs now, so a wrong path stops the run before it starts.
        for split in {"fit": ("train",), "validate": ("train",), "test": ("test",)}.get(stage, ()):
            self.source(split)

    def _loader(self, split: str) -> StatefulDataLoader:
        h = self.hparams
        dataset = self.dataset(split)
        train = split == "train"
        if train:
            require_one_batch(len(dataset), h.batch_size, self.trainer, f"training clouds of {type(self).__name__}")
        batch_size = h.batch_size if train or h.eval_batch_size is None else h.eval_batch_size
        return stateful_loader(dataset, batch_size, h.num_workers, shuffle=train)

    def train_dataloader(self) -> StatefulDataLoader:
        return self._loader("train")

    def val_dataloader(self) -> StatefulDataLoader | list:
        # val_fraction=0: no validation.
        return self._loader("val") if len(self.indices("val")) else []

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader | StatefulDataLoader:
        h = self.hparams
        if not h.predict_clouds:
            return self.test_dataloader()
        dataset = CloudFilesDataset(list_cloud_files(h.predict_clouds), h.num_points, self.normalize)
        return DataLoader(dataset, batch_size=h.eval_batch_size or h.batch_size, num_workers=h.num_workers)


def _dataset_folder(root: str | Path, name: str) -> Path:
    """``root/name`` when there is such a folder, else ``root`` (the data set folder given directly)."""
    root = Path(root)
    return root / name if (root / name).is_dir() else root


def _read_names(path: Path, expected: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {expected}")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path} lists nothing; {expected}")
    return names


def read_h5_clouds(path: Path, num_points: int | None, expected: str) -> tuple[np.ndarray, np.ndarray]:
    """``(points float32 [n, N, 3], labels int64 [n])`` of an HDF5 file with datasets ``data`` ``[n, P, 3]`` and
    ``label`` ``[n]`` or ``[n, 1]``: the first ``num_points`` points of each cloud, checked."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {expected}")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise OSError(f"{path}: cannot open as HDF5 ({error}); {expected}") from error
    with file:
        for key in ("data", "label"):
            if key not in file:
                raise KeyError(f"{path} has no dataset {key!r} (it has {sorted(file)}); {expected}")
        data, label = file["data"], file["label"]
        if data.ndim != 3 or data.shape[2] != 3:
            raise ValueError(f"{path}: 'data' has shape {data.shape}; expected [clouds, points, 3]")
        if label.size != data.shape[0]:
            raise ValueError(f"{path}: 'label' has shape {label.shape} for {data.shape[0]} clouds; expected one each")
        points = keep_points(np.asarray(data[:, :num_points], dtype=np.float32), num_points, f"{path} (every cloud)")
        labels = np.asarray(label[()]).reshape(-1).astype(np.int64)
    return points, labels


def _h5_source(files: Sequence[Path], num_points: int | None, num_classes: int, expected: str) -> CloudSource:
    points, labels, origins = [], [], []
    for path in files:
        file_points, file_labels = read_h5_clouds(path, num_points, expected)
        points.append(file_points)
        labels.append(file_labels)
        origins += [f"{path}[{i}]" for i in range(len(file_labels))]
    source = CloudSource(np.concatenate(labels), origins, points=np.concatenate(points))
    check_clouds(source.points, origins)
    check_labels(source.labels, num_classes, origins)
    return source


_MODELNET_HDF5 = """expected PointNet's modelnet40_ply_hdf5_2048 layout:
  <root>/[modelnet40_ply_hdf5_2048/]
    shape_names.txt                the 40 class names, one a line, in label order
    train_files.txt, test_files.txt   one .h5 file a line (looked up by name in this folder)
    ply_data_train0.h5, ...        datasets 'data' [n, 2048, 3] and 'label' [n, 1]"""

_MODELNET_RESAMPLED = """expected PointNet++'s modelnet40_normal_resampled layout:
  <root>/[modelnet40_normal_resampled/]
    modelnet{N}_shape_names.txt      the class names, one a line, in label order
    modelnet{N}_train.txt, modelnet{N}_test.txt   one id a line, e.g. night_stand_0001
    <class>/<id>.txt                rows 'x,y,z,nx,ny,nz'"""


class ModelNet40(_PointCloudDataModule):
    """ModelNet40: 12,311 CAD models of 40 categories (9,843 training, 2,468 test), sampled as point clouds, in
    PointNet's HDF5 files (``layout="hdf5"``, what PointCLIP and V2 read) or PointNet++'s resampled text files
    (``layout="resampled"``); see the module docstring. The classes are those the shape-names file lists (any
    number: the layouts also carry other data, such as the 3D ShapesWorld's solids written by
    :mod:`lit_clip.datamodules.export_3d`)."""

    lists = "modelnet40"  # the resampled layout's list files: modelnet40_*.txt

    def __init__(
        self,
        root: str,
        layout: str = "hdf5",
        num_points: int | None = 1024,
        normalize: bool | None = None,
        shots: int | None = None,
        seed: int = 1,
        val_fraction: float = 0.1,
        templates: str | Sequence[str] = POINTCLIP_TEMPLATES,
        readable_classnames: bool = True,
        train_augmentation: bool = True,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        predict_clouds: str | None = None,
    ):
        """
        Args:
            root: the data set folder (``modelnet40_ply_hdf5_2048/`` or ``modelnet40_normal_resampled/``) or the
                folder holding it.
            layout: "hdf5" or "resampled".
            num_points: points per cloud, the first of the stored order (None: all, 2,048 in the HDF5 files).
            normalize: centre and scale each cloud into the unit sphere; None: as the official loader (HDF5 no,
                the files are normalised; resampled yes).
            shots: training clouds per class (None: all but the validation clouds).
            seed: the seed of the validation cut and the few-shot draw.
            val_fraction: the share of each class's training clouds held out for validation (0: none).
            templates: the zero-shot prompts; by default PointCLIP's "point cloud depth map of a {}.".
            readable_classnames: underscores in class names read as spaces ("night stand").
            train_augmentation: PointCLIP's random per-axis scale (2/3-3/2) and shift (+-0.2) in training.
            batch_size: training batch per process; eval_batch_size: validation and test (None: batch_size).
            num_workers: DataLoader worker processes.
            predict_clouds: ``lit-clip predict``'s clouds: a ``.npy`` / ``.txt`` file or a folder of them; by
                default predict reads the test split.
        """
        super().__init__(num_points, normalize, shots, seed, val_fraction, templates, readable_classnames)
        self.save_hyperparameters()
        if layout not in ("hdf5", "resampled"):
            raise ValueError(f"unknown layout {layout!r}; expected 'hdf5' or 'resampled'")
        self.default_normalize = layout == "resampled"
        if layout == "hdf5":
            self.folder = _dataset_folder(root, "modelnet40_ply_hdf5_2048")
            self._all_names = _read_names(self.folder / "shape_names.txt", _MODELNET_HDF5)
            self.file_classnames = self._hdf5_classnames()
        else:
            self.folder = _dataset_folder(root, "modelnet40_normal_resampled")
            names_file = self.folder / f"{self.lists}_shape_names.txt"
            self.file_classnames = _read_names(names_file, _MODELNET_RESAMPLED.replace("modelnet{N}", self.lists))

    def _hdf5_classnames(self) -> list[str]:
        return self._all_names

    def read_source(self, split: str) -> CloudSource:
        if self.hparams.layout == "hdf5":
            return self._read_hdf5(split)
        return self._read_resampled(split)

    def _read_hdf5(self, split: str) -> CloudSource:
        listing = self.folder / f"{split}_files.txt"
        files = [self.folder / Path(line).name for line in _read_names(listing, _MODELNET_HDF5)]
        return _h5_source(files, self.hparams.num_points, len(self._all_names), _MODELNET_HDF5)

    def _read_resampled(self, split: str) -> CloudSource:
        expected = _MODELNET_RESAMPLED.replace("modelnet{N}", self.lists)
        listing = self.folder / f"{self.lists}_{split}.txt"
        label_of = {name: label for label, name in enumerate(self.file_classnames)}
        files, labels = [], []
        for number, shape_id in enumerate(_read_names(listing, expected), 1):
            classname = shape_id.rpartition("_")[0]
            if classname not in label_of:
                raise ValueError(
                    f"{listing}, line {number}: {shape_id!r} is not '<class>_<number>' of a class of "
                    f"{self.lists}_shape_names.txt"
                )
            files.append(self.folder / classname / f"{shape_id}.txt")
            labels.append(label_of[classname])
        missing = [path for path in files if not path.is_file()]
        if missing:
            count = f"{len(missing)} of the {split} clouds missing"
            raise FileNotFoundError(f"{missing[0]} not found ({count}); {expected}")
        labels = np.array(labels, dtype=np.int64)
        return CloudSource(labels, [str(path) for path in files], files=files, num_points=self.hparams.num_points)


class ModelNet10(ModelNet40):
    """ModelNet10: the 10 furniture classes of ModelNet40 (3,991 training and 908 test clouds). The resampled
    layout reads its own ``modelnet10_*`` lists; the HDF5 layout (no official 10-class release) keeps ModelNet40's
    clouds of these classes, relabelled in ModelNet10's order (:data:`MODELNET10_CLASSES`). Arguments as
    :class:`ModelNet40`'s."""

    lists = "modelnet10"

    def _hdf5_classnames(self) -> list[str]:
        missing = [name for name in MODELNET10_CLASSES if name not in self._all_names]
        if missing:
            raise ValueError(f"{self.folder / 'shape_names.txt'} lacks the ModelNet10 classes {missing}")
        return list(MODELNET10_CLASSES)

    def _read_hdf5(self, split: str) -> CloudSource:
        full = super()._read_hdf5(split)
        relabel = np.full(len(self._all_names), -1, dtype=np.int64)
        for label, name in enumerate(MODELNET10_CLASSES):
            relabel[self._all_names.index(name)] = label
        kept = np.flatnonzero(relabel[full.labels] >= 0)
        return CloudSource(relabel[full.labels[kept]], [full.origins[i] for i in kept], points=full.points[kept])


_SCANOBJECTNN = """expected ScanObjectNN's h5_files layout:
  <root>/[h5_files/]
    main_split_nobg/training_objectdataset.h5, test_objectdataset.h5          OBJ_ONLY
    main_split/training_objectdataset.h5, test_objectdataset.h5               OBJ_BG
    main_split/training_objectdataset_augmentedrot_scale75.h5, test_...       PB_T50_RS
  each with datasets 'data' [n, 2048, 3] and 'label' [n]"""


class ScanObjectNN(_PointCloudDataModule):
    """ScanObjectNN: 2,902 objects of 15 classes scanned in real indoor scenes (ScanNet, SceneNN), in one of the
    release's HDF5 variants: OBJ_ONLY (the object's points alone), OBJ_BG (with background points) or PB_T50_RS
    (boxes shifted, rotated and scaled: 5 perturbed copies of every object, the hardest). See the module docstring."""

    default_normalize = True

    def __init__(
        self,
        root: str,
        variant: str = "PB_T50_RS",
        num_points: int | None = 1024,
        normalize: bool | None = None,
        shots: int | None = None,
        seed: int = 1,
        val_fraction: float = 0.1,
        templates: str | Sequence[str] = POINTCLIP_TEMPLATES,
        readable_classnames: bool = True,
        train_augmentation: bool = True,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        predict_clouds: str | None = None,
    ):
        """
        Args:
            root: the release's ``h5_files/`` folder or the folder holding it.
            variant: "OBJ_ONLY", "OBJ_BG" or "PB_T50_RS".
            normalize: centre and scale each cloud into the unit sphere; None: yes, as ScanObjectNN's scripts do.
            num_points, shots, seed, val_fraction, templates, readable_classnames, train_augmentation, batch_size,
                eval_batch_size, num_workers, predict_clouds: as :class:`ModelNet40`'s.
        """
        super().__init__(num_points, normalize, shots, seed, val_fraction, templates, readable_classnames)
        self.save_hyperparameters()
        if variant not in SCANOBJECTNN_VARIANTS:
            raise ValueError(f"unknown ScanObjectNN variant {variant!r}; expected one of {list(SCANOBJECTNN_VARIANTS)}")
        self.folder = _dataset_folder(root, "h5_files")
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder} not found; {_SCANOBJECTNN}")
        self.file_classnames = list(SCANOBJECTNN_CLASSES)

    def file(self, split: str) -> Path:
        """The HDF5 file of the official ``train`` or ``test`` split of this variant."""
        folder, suffix = SCANOBJECTNN_VARIANTS[self.hparams.variant]
        return self.folder / folder / f"{'training' if split == 'train' else 'test'}_objectdataset{suffix}.h5"

    def read_source(self, split: str) -> CloudSource:
        return _h5_source([self.file(split)], self.hparams.num_points, len(SCANOBJECTNN_CLASSES), _SCANOBJECTNN)


__all__ = ["ModelNet10", "ModelNet40", "ScanObjectNN"]
