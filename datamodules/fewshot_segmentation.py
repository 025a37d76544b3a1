"""The few-shot segmentation benchmarks on which LSeg reports zero-shot results: PASCAL-5i, COCO-20i and FSS-1000,
read from the layout of HSNet (juhongm999/hsnet), which the official LSeg code (isl-org/lang-seg,
``fewshot_data/``) reads too.

The zero-shot protocol (shot 0: no support image is used):

- **Episodes**: a sample is one image and one class. ``mask`` is 1 on the class's pixels, 0 elsewhere and
  ``IGNORE_INDEX`` (255) where the mask file has 255 (PASCAL's object borders); ``labels`` is ``[0, k]``: the
  background label ("others", the official text for the rest) and the class, ``k`` its index in the stage's
  label set (see :class:`lit_clip.batches.SegmentationBatch`). Batches collate episodes of the same size.
- **Label sets**: training ``classnames`` = ``[background_label, *training classes]``; ``evaluation_sets(stage)``
  one episodic set, ``[background_label, *evaluation classes]``, for validation and for testing. Class names
  as the official label files prompt them: PASCAL's and COCO's compound words written together
  ("pottedplant", "trafficlight"), FSS-1000's category folder names ("ac_wall").
- **Folds** (the official ``build_class_ids``): PASCAL-5i fold k evaluates classes 5k .. 5k + 4 (0-based; mask
  value = class + 1) and trains on the other 15; COCO-20i fold k evaluates classes k, k + 4, ..., k + 76 and
  trains on the other 60. FSS-1000 trains on the categories of ``fss/trn.txt``, validates on ``val.txt`` and
  tests on ``test.txt``.
- **Episode lists** (the official ones): PASCAL trains on every line of the other folds' ``trn`` files and
  evaluates ``episodes`` episodes cycling through the fold's ``val`` lines; COCO trains one episode per image of
  the ``trn`` pickle, each a random class of the split and a random image of it, and evaluates ``episodes``
  episodes drawn the same way from the ``val`` pickle; FSS-1000 uses every image of its categories, except
  ``1.jpg`` in testing (the official 1-shot test keeps it as the support; LSeg's zero-shot numbers use that list).
- **Images** resized to ``image_size`` x ``image_size`` (bilinear, as the official ``transforms.Resize``), masks
  nearest (as its ``F.interpolate``); normalised with CLIP's mean and std like every data module's images (the
  official code feeds its own normalisation; methods' encoders convert what they get).

Differences from the official code:

- PASCAL's borders (255) are ignored in training too; the official code ignores them in evaluation only.
- COCO's evaluation episode i is drawn from ``(seed, i)`` alone (class uniform over the fold's classes, then an
  image of that class uniformly): the official code draws from numpy's global stream after seeding 0, so the
  distribution is the same but not the draws. Training draws come from torch's RNG, which ``seed_everything``
  seeds (per DataLoader worker).

Bad input: a missing split file, image or mask is a ``FileNotFoundError`` naming it and the layout; a mask value
outside the data set's (other than 255) or an image and mask of different sizes a ``ValueError`` naming the file;
an undecodable image or mask follows ``bad_samples`` (see :mod:`lit_clip.datamodules.images`).
"""
from __future__ import annotations

import functools
import io
import pickle
from functools import cached_property
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import (
    _DECODE_ERRORS,
    BadSampleError,
    BadSamplePolicy,
    RobustSamples,
    check_policy,
    load_rgb,
    without_bad_samples,
)
from lit_clip.datamodules.segmentation import _existing, label_lookup, read_mask
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lit_clip.batches import IGNORE_INDEX, EvaluationSet
from lit_clip.templates import resolve_templates
from lit_clip.transforms import to_normalized_tensor

PASCAL_5I_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

COCO_20I_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat", "trafficlight",
    "firehydrant", "stopsign", "parkingmeter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sportsball", "kite", "baseballbat", "baseballglove", "skateboard", "surfboard", "tennisracket",
    "bottle", "wineglass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hotdog", "pizza", "donut", "cake", "chair", "sofa", "pottedplant", "bed", "diningtable",
    "toilet", "tvmonitor", "laptop", "mouse", "remote", "keyboard", "cellphone", "microwave", "oven", "toaster",
    "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddybear", "hairdrier", "toothbrush",
)  # fmt: skip

FOLDS = 4
# HSNet's name of each split's files: training is "trn"; PASCAL and COCO test on their "val" files.
_HSNET_SPLITS = {"train": "trn", "val": "val", "test": "test"}
_SPLITS_SOURCE = (
    "<splits> is the `splits` argument (default <root>/splits): HSNet's data/splits (github.com/juhongm999/hsnet), "
    "also shipped in isl-org/lang-seg as fewshot_data/data/splits"
)


class Episode(NamedTuple):
    """One image and one class: ``label`` indexes the stage's label set (1 + the class's position among its
    classes), ``mask_value`` is the class's value in the mask as read (FSS-1000: 1, its thresholded foreground)."""

    image: Path
    mask: Path
    label: int
    mask_value: int


def read_fss_mask(path: Path) -> np.ndarray:
    """An FSS-1000 mask as the official code reads it: grey (``convert("L")``), 1 from 128 up, 0 below.

    Raises:
        BadSampleError: for a file that cannot be decoded.
    """
    try:
        with Image.open(path) as file:
            grey = np.asarray(file.convert("L"))
    except _DECODE_ERRORS as error:
        raise BadSampleError(f"{path}: cannot decode mask ({type(error).__name__}: {error})") from error
    return (grey >= 128).astype(np.uint8)


class EpisodeDataset(Dataset):
    """``{"image", "mask", "labels", "index"}`` for episodes: the image resized to ``image_size`` squared
    (bilinear) and normalised, the mask binary for the episode's class (255 kept) resized nearest.

    ``episodes``: anything indexable with a length (COCO's training draws ignore the index); ``read_values``:
    a mask file's values ``[H, W]`` (uint8, 255 to ignore).
    """

    def __init__(self, episodes: Sequence[Episode], read_values: Callable[[Path], np.ndarray], image_size: int):
        self.episodes, self.read_values, self.image_size = episodes, read_values, image_size

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> dict:
        episode = self.episodes[index]
        image = load_rgb(episode.image)
        values = self.read_values(episode.mask)
        if values.shape != (image.height, image.width):
            raise ValueError(
                f"image {episode.image} is {image.width}x{image.height} but its mask {episode.mask} is "
                f"{values.shape[1]}x{values.shape[0]}; expected the same size"
            )
        size = self.image_size
        mask = np.where(values == IGNORE_INDEX, IGNORE_INDEX, values == episode.mask_value).astype(np.float32)
        mask = F.interpolate(torch.from_numpy(mask)[None, None], size=(size, size), mode="nearest")[0, 0]
        return {
            "image": to_normalized_tensor(image.resize((size, size), Image.Resampling.BILINEAR)),
            "mask": mask.long(),
            "labels": torch.tensor([0, episode.label]),
            "index": index,
        }


class FewShotSegmentationDataModule(L.LightningDataModule):
    """Loaders over the episodes of ``episodes(split)`` ("train", "val", "test"), labelled over
    ``label_set(split)``; subclasses set ``data_folder`` (under ``root``), ``layout`` (the expected tree, for
    errors) and ``read_values`` (a mask file's values), and list the classes and episodes of each split."""

    data_folder: str
    layout: str
    read_values: Callable[[Path], np.ndarray]

    def __init__(
        self,
        root: str,
        splits: str | None,
        image_size: int,
        templates: str | Sequence[str],
        background_label: str,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        bad_samples: BadSamplePolicy,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)
        self.base = Path(root) / self.data_folder
        if not self.base.is_dir():
            raise FileNotFoundError(f"{self.base} not found; {self.layout}")
        self.split_folder = Path(root) / "splits" if splits is None else Path(splits)
        self.templates = resolve_templates(templates)

    def split_classes(self, split: str) -> list[str]:
        """The class names of ``split`` ("train", "val" or "test"), in label order."""
        raise NotImplementedError

    def episodes(self, split: str) -> Sequence[Episode]:
        raise NotImplementedError

    def label_set(self, split: str) -> list[str]:
        """The labels of ``split``'s episodes: the background label, then the split's classes."""
        return [self.hparams.background_label, *self.split_classes(split)]

    @cached_property
    def classnames(self) -> list[str]:
        """The training label set (read once: training steps ask for it)."""
        return self.label_set("train")

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        """The episodic label set of the ``stage`` loader: the test classes for "test" (and predict), else
        the validation classes."""
        split = "test" if stage in ("test", "predict") else "val"
        return [EvaluationSet("", tuple(self.label_set(split)), episodic=True)]

    def split_file(self, *parts: str) -> Path:
        """A file of the split folder, which must be there."""
        path = self.split_folder.joinpath(*parts)
        if not path.is_file():
            raise FileNotFoundError(f"split file {path} not found; {self.layout}")
        return path

    def split_lines(self, *parts: str) -> list[str]:
        """The non-blank lines of a split file, stripped."""
        return [line.strip() for line in self.split_file(*parts).read_text().splitlines() if line.strip()]

    def _loader(self, split: str, train: bool) -> DataLoader:
        h = self.hparams
        episodes = self.episodes(split)
        if train:
            require_one_batch(len(episodes), h.batch_size, self.trainer, "training episodes")
        return DataLoader(
            RobustSamples(EpisodeDataset(episodes, self.read_values, h.image_size), h.bad_samples),
            batch_size=h.batch_size if train else h.eval_batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            collate_fn=without_bad_samples(training=train),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


class _FoldModule(FewShotSegmentationDataModule):
    """PASCAL-5i and COCO-20i: ``classes`` split into 4 folds; ``fold_classes(fold)`` the evaluation class ids."""

    classes: tuple[str, ...]

    def __init__(self, fold: int, **common):
        if fold not in range(FOLDS):
            raise ValueError(f"fold must be 0, 1, 2 or 3, got {fold!r}")
        super().__init__(**common)

    @staticmethod
    def fold_classes(fold: int) -> list[int]:
        raise NotImplementedError

    def class_ids(self, split: str) -> list[int]:
        """The class ids (0-based) of ``split``: the fold's for evaluation, the others for training."""
        evaluated = self.fold_classes(self.hparams.fold)
        return [c for c in range(len(self.classes)) if c not in evaluated] if split == "train" else evaluated

    def split_classes(self, split: str) -> list[str]:
        return [self.classes[c] for c in self.class_ids(split)]

    def _episode(self, image: Path, mask: Path, class_id: int, split: str) -> Episode:
        return Episode(image, mask, 1 + self.class_ids(split).index(class_id), class_id + 1)


class Pascal5iSegmentation(_FoldModule):
    """PASCAL-5i: PASCAL VOC 2012 with SBD's masks, 20 classes in 4 folds of 5 (see the module docstring)."""

    classes = PASCAL_5I_CLASSES
    data_folder = "VOC2012"
    read_values = staticmethod(functools.partial(read_mask, lookup=label_lookup(0, 1 + len(PASCAL_5I_CLASSES))))
    layout = f"""expected HSNet's PASCAL-5i layout:
  <root>/VOC2012/JPEGImages/<id>.jpg
  <root>/VOC2012/SegmentationClassAug/<id>.png    grey PNGs: 0 background, 1..20 the classes, 255 borders
  <splits>/pascal/{{trn,val}}/fold{{0..3}}.txt        one "<id>__<class 1..20>" episode per line
{_SPLITS_SOURCE}"""

    def __init__(
        self,
        root: str,
        fold: int = 0,
        splits: str | None = None,
        image_size: int = 480,
        templates: str | Sequence[str] = ("{}",),
        background_label: str = "others",
        episodes: int = 1000,
        batch_size: int = 16,
        eval_batch_size: int = 16,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the folder holding ``VOC2012/`` (see ``layout``).
            fold: 0-3, the fold whose 5 classes are evaluated (trained on the other 15).
            splits: the folder of HSNet's split files; by default ``<root>/splits``.
            image_size: side of the square images and masks (LSeg: 480).
            templates: prompt templates with one ``{}`` for a label (the official code embeds the bare label).
            background_label: the label of every pixel not of the episode's class (the official "others").
            episodes: evaluation episodes, cycling through the fold's validation lines (official: 1000).
            batch_size: training episodes per process; eval_batch_size: evaluation episodes per batch.
            num_workers: DataLoader worker processes.
            bad_samples: "skip" an undecodable image or mask (left out of its batch, its index in
                ``skipped_index``) or "raise" an error naming it.
        """
        super().__init__(
            fold=fold, root=root, splits=splits, image_size=image_size, templates=templates,
            background_label=background_label, batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers, bad_samples=bad_samples,
        )  # fmt: skip

    @staticmethod
    def fold_classes(fold: int) -> list[int]:
        return [5 * fold + i for i in range(5)]

    def episodes(self, split: str) -> list[Episode]:
        fold = self.hparams.fold
        if split == "train":
            folds = [j for j in range(FOLDS) if j != fold]
            listed = [episode for j in folds for episode in self._listed("trn", j, split)]
        else:
            lines = self._listed("val", fold, split)
            listed = [lines[i % len(lines)] for i in range(self.hparams.episodes)]
        _existing(sorted({(episode.image, episode.mask) for episode in listed}), self.layout)
        return listed

    def _listed(self, folder: str, fold: int, split: str) -> list[Episode]:
        """The episodes of ``pascal/<folder>/fold<fold>.txt``, whose classes must be ``split``'s."""
        path = self.split_file("pascal", folder, f"fold{fold}.txt")
        allowed = self.class_ids(split)
        episodes = []
        for number, line in enumerate(self.split_lines("pascal", folder, f"fold{fold}.txt"), 1):
            image_id, _, value = line.rpartition("__")
            if not (image_id and value.isdigit() and int(value) - 1 in allowed):
                names = ", ".join(f"{c + 1} {self.classes[c]}" for c in allowed)
                raise ValueError(
                    f"{path} line {number}: {line!r}; expected '<image id>__<class>' with a class of the fold's "
                    f"{split} set ({names}); {self.layout}"
                )
            image = self.base / "JPEGImages" / f"{image_id}.jpg"
            mask = self.base / "SegmentationClassAug" / f"{image_id}.png"
            episodes.append(self._episode(image, mask, int(value) - 1, split))
        if not episodes:
            raise ValueError(f"{path} lists no episode; {self.layout}")
        return episodes


class COCO20iSegmentation(_FoldModule):
    """COCO-20i: COCO 2014, 80 classes in 4 interleaved folds of 20 (see the module docstring)."""

    classes = COCO_20I_CLASSES
    data_folder = "COCO2014"
    read_values = staticmethod(functools.partial(read_mask, lookup=label_lookup(0, 1 + len(COCO_20I_CLASSES))))
    layout = f"""expected HSNet's COCO-20i layout:
  <root>/COCO2014/{{train2014,val2014}}/<name>.jpg
  <root>/COCO2014/annotations/{{train2014,val2014}}/<name>.png    grey PNGs: 0 background, 1..80 the classes
  <splits>/coco/{{trn,val}}/fold{{0..3}}.pkl    pickled dict: class id 0..79 -> image names ("train2014/<name>.jpg")
{_SPLITS_SOURCE}"""

    def __init__(
        self,
        root: str,
        fold: int = 0,
        splits: str | None = None,
        image_size: int = 480,
        templates: str | Sequence[str] = ("{}",),
        background_label: str = "others",
        episodes: int = 1000,
        seed: int = 0,
        batch_size: int = 16,
        eval_batch_size: int = 16,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the folder holding ``COCO2014/`` (see ``layout``).
            fold: 0-3, the fold whose 20 classes (fold, fold + 4, ...) are evaluated (trained on the other 60).
            splits: the folder of HSNet's split files; by default ``<root>/splits``.
            image_size: side of the square images and masks (LSeg: 480).
            templates: prompt templates with one ``{}`` for a label (the official code embeds the bare label).
            background_label: the label of every pixel not of the episode's class (the official "others").
            episodes: evaluation episodes, each a random class of the fold and a random image of it (official: 1000).
            seed: the seed of the evaluation draws: episode i is a function of (seed, i).
            batch_size: training episodes per process; eval_batch_size: evaluation episodes per batch.
            num_workers: DataLoader worker processes.
            bad_samples: "skip" an undecodable image or mask (left out of its batch, its index in
                ``skipped_index``) or "raise" an error naming it.
        """
        super().__init__(
            fold=fold, root=root, splits=splits, image_size=image_size, templates=templates,
            background_label=background_label, batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers, bad_samples=bad_samples,
        )  # fmt: skip

    @staticmethod
    def fold_classes(fold: int) -> list[int]:
        return [fold + FOLDS * i for i in range(20)]

    def episodes(self, split: str) -> Sequence[Episode]:
        h = self.hparams
        by_class = self.images_by_class(split)
        if split == "train":
            images = sorted({name for names in by_class.values() for name in names})
            _existing([coco_files(self.base, name) for name in images], self.layout)
            return RandomEpisodes(self.base, by_class, len(images))
        classes, episodes = list(by_class), []
        for index in range(h.episodes):
            rng = np.random.default_rng([h.seed, index])
            class_id = classes[rng.integers(len(classes))]
            names = by_class[class_id]
            episodes.append(self._episode(*coco_files(self.base, names[rng.integers(len(names))]), class_id, split))
        _existing(sorted({(episode.image, episode.mask) for episode in episodes}), self.layout)
        return episodes

    def images_by_class(self, split: str) -> dict[int, list[str]]:
        """The image names of each of ``split``'s class ids, from the fold's pickle (``trn`` or ``val``)."""
        parts = ("coco", _HSNET_SPLITS["train" if split == "train" else "val"], f"fold{self.hparams.fold}.pkl")
        path = self.split_file(*parts)
        listed = load_split_pickle(path)
        by_class = {c: listed.get(c, []) for c in self.class_ids(split)}
        empty = [f"{c} {self.classes[c]}" for c, names in by_class.items() if not names]
        if empty:
            raise ValueError(f"{path} lists no image of class {empty[0]} ({len(empty)} such classes); {self.layout}")
        return by_class


class RandomEpisodes:
    """COCO-20i's training episodes as the official code draws them: ``length`` of them, each a class of
    ``by_class`` (the split's class ids, in label order) uniformly, then one of its images uniformly, whatever
    the index; torch's RNG draws them (seeded by ``seed_everything``, and per DataLoader worker)."""

    def __init__(self, base: Path, by_class: dict[int, list[str]], length: int):
        self.base, self.by_class, self.length = base, by_class, length
        self.class_ids = list(by_class)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Episode:
        position = int(torch.randint(len(self.class_ids), ()))
        names = self.by_class[self.class_ids[position]]
        name = names[int(torch.randint(len(names), ()))]
        return Episode(*coco_files(self.base, name), 1 + position, self.class_ids[position] + 1)


def coco_files(base: Path, name: str) -> tuple[Path, Path]:
    """The image and mask files of a name of the split pickles ("train2014/<name>.jpg") under ``COCO2014/``."""
    return base / name, base / "annotations" / Path(name).with_suffix(".png")


class _BuiltinsOnly(pickle.Unpickler):
    """Dicts, lists, tuples, strings and numbers need no global; anything else names one, and is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_split_pickle(path: Path) -> dict[int, list[str]]:
    """An HSNet split pickle: a dict of class id -> list of image names, read without running any code.

    Raises:
        ValueError: for a pickle that refers to any object other than builtin containers, strings and numbers
            (a plain load could run arbitrary code), or that is not a dict of int -> list of str.
    """
    try:
        listed = _BuiltinsOnly(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(
            f"{path}: not a plain pickle of builtin containers, strings and numbers ({error}); HSNet's split "
            "pickles hold a dict of class id -> list of image names"
        ) from error
    valid = isinstance(listed, dict) and all(
        isinstance(c, int) and isinstance(names, list) and all(isinstance(name, str) for name in names)
        for c, names in listed.items()
    )
    if not valid:
        raise ValueError(f"{path}: expected a dict of class id (int) -> list of image names (str), got {type(listed)}")
    return listed


class FSS1000Segmentation(FewShotSegmentationDataModule):
    """FSS-1000: 1,000 categories of 10 images each, split 520 / 240 / 240 (see the module docstring)."""

    data_folder = "FSS-1000"
    read_values = staticmethod(read_fss_mask)
    layout = f"""expected HSNet's FSS-1000 layout:
  <root>/FSS-1000/<category>/<n>.jpg
  <root>/FSS-1000/<category>/<n>.png    masks: the category from grey 128 up
  <splits>/fss/{{trn,val,test}}.txt      one category per line
{_SPLITS_SOURCE}"""

    def __init__(
        self,
        root: str,
        splits: str | None = None,
        image_size: int = 480,
        templates: str | Sequence[str] = ("{}",),
        background_label: str = "others",
        batch_size: int = 16,
        eval_batch_size: int = 16,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the folder holding ``FSS-1000/`` (see ``layout``).
            splits: the folder of HSNet's split files; by default ``<root>/splits``.
            image_size: side of the square images and masks (LSeg: 480).
            templates: prompt templates with one ``{}`` for a label (the official code embeds the bare label).
            background_label: the label of every pixel not of the episode's class (the official "others").
            batch_size: training episodes per process; eval_batch_size: evaluation episodes per batch.
            num_workers: DataLoader worker processes.
            bad_samples: "skip" an undecodable image or mask (left out of its batch, its index in
                ``skipped_index``) or "raise" an error naming it.
        """
        super().__init__(root, splits, image_size, templates, background_label, batch_size, eval_batch_size,
                         num_workers, bad_samples)  # fmt: skip

    def split_classes(self, split: str) -> list[str]:
        name = f"{_HSNET_SPLITS[split]}.txt"
        categories = sorted(self.split_lines("fss", name))
        if not categories:
            raise ValueError(f"{self.split_file('fss', name)} lists no category; {self.layout}")
        return categories

    def episodes(self, split: str) -> list[Episode]:
        episodes = []
        for label, category in enumerate(self.split_classes(split), 1):
            folder = self.base / category
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} not found; {self.layout}")
            # Sorted by name, as the official glob: 1, 10, 2, ...; testing leaves out 1.jpg, the 1-shot support.
            images = sorted(str(path) for path in folder.glob("*.jpg") if split != "test" or path.name != "1.jpg")
            if not images:
                raise FileNotFoundError(f"no .jpg images in {folder}; {self.layout}")
            episodes += [Episode(Path(image), Path(image).with_suffix(".png"), label, 1) for image in images]
        _existing([(episode.image, episode.mask) for episode in episodes], self.layout)
        return episodes


__all__ = [
    "COCO20iSegmentation",
    "COCO_20I_CLASSES",
    "Episode",
    "FSS1000Segmentation",
    "FewShotSegmentationDataModule",
    "PASCAL_5I_CLASSES",
    "Pascal5iSegmentation",
    "load_split_pickle",
    "read_fss_mask",
]
