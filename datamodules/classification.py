"""Image classification data sets read from disk: an image-folder tree and CoOp's 11 few-shot data sets.

Both data modules follow ``ShapesWorldClassification``'s interface: ``classnames`` and
``templates`` for zero-shot heads, and loaders of ``{"image", "label"}`` batches
preprocessed as CLIP evaluates (short side resized, centre crop, CLIP normalisation).
``samples(split)`` lists a split's ``(image path, label)`` pairs without opening any image.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import torch
from lit_clip.datamodules.images import IMAGE_EXTENSIONS
from lit_clip.datamodules.predict import prediction_loaders
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lit_clip.templates import COOP_TEMPLATES, resolve_templates
from lit_clip.transforms import clip_eval_transform

SPLITS = ("train", "val", "test")

Sample = tuple[Path, int]

# Where CoOp's data set classes (its datasets/*.py) look: data set -> (folder under the data
# root, image folder inside it). StanfordCars' split paths start at the data set folder.
COOP_LAYOUTS: dict[str, tuple[str, str]] = {
    "ImageNet": ("imagenet", "images"),
    "Caltech101": ("caltech-101", "101_ObjectCategories"),
    "OxfordPets": ("oxford_pets", "images"),
    "StanfordCars": ("stanford_cars", ""),
    "OxfordFlowers": ("oxford_flowers", "jpg"),
    "Food101": ("food-101", "images"),
    "FGVCAircraft": ("fgvc_aircraft", "images"),
    "SUN397": ("sun397", "SUN397"),
    "DescribableTextures": ("dtd", "images"),
    "EuroSAT": ("eurosat", "2750"),
    "UCF101": ("ucf101", "UCF-101-midframes"),
}


def open_rgb(path: Path) -> Image.Image:
    """The image file at ``path`` as RGB; a missing, truncated or non-image file raises naming the path."""
    try:
        with Image.open(path) as file:
            return file.convert("RGB")
    except OSError as error:
        raise OSError(f"cannot read image {path}: {error}") from error


class ImageFileDataset(Dataset):
    """``{"image", "label", "index"}`` for a list of ``(image key, label)`` samples.

    A key is an image path opened as RGB, or whatever ``open_image`` turns into a PIL image.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Any, int]],
        transform: Callable[[Image.Image], Tensor],
        open_image: Callable[[Any], Image.Image] = open_rgb,
    ):
        self.samples, self.transform, self.open_image = samples, transform, open_image

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        key, label = self.samples[index]
        return {"image": self.transform(self.open_image(key)), "label": torch.tensor(label), "index": index}


class _ImageFilesDataModule(L.LightningDataModule):
    """Loaders over ``samples(split)``; subclasses set ``classnames`` and ``templates`` and list the samples."""

    def samples(self, split: str) -> list[Sample]:
        raise NotImplementedError

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        h = self.hparams
        dataset = ImageFileDataset(self.samples(split), clip_eval_transform(h.image_size))
        return DataLoader(
            dataset,
            batch_size=h.batch_size,
            shuffle=shuffle,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return prediction_loaders(self.hparams, default=self.test_dataloader)


# -- an image-folder tree -----------------------------------------------------------------------

_IMAGEFOLDER_TREE = """expected an image-folder tree (any split may be absent):
  <root>/
    train/<class_name>/<image files>
    val/<class_name>/<image files>
    test/<class_name>/<image files>"""


class ImageFolderClassification(_ImageFilesDataModule):
    """Classification data in ``root/{train,val,test}/<class_name>/<images>``.

    Labels follow the sorted class-folder names, taken over all splits present. A missing
    ``val/`` means no validation; a missing ``train/`` or ``test/`` is an error only when
    its loader is asked for (a test-only tree is enough for zero-shot evaluation).
    """

    def __init__(
        self,
        root: str,
        image_size: int = 224,
        templates: str | Sequence[str] = "simple",
        batch_size: int = 64,
        num_workers: int = 4,
        predict_images: str | None = None,
        classnames_file: str | None = None,
    ):
        """
        Args:
            root: folder holding ``train/``, ``val/`` and/or ``test/``, each with one sub-folder per class.
            image_size: side of the square model input; images are resized and centre-cropped to it.
            templates: zero-shot prompt templates: "simple", "openai_imagenet", "coop:<DataSet>" or a list
                of strings with one ``{}``.
            batch_size: per process.
            num_workers: DataLoader worker processes.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test split (see ``lit_clip.datamodules.predict``).
            classnames_file: text file with one class name per line in label order (that of the sorted
                class folders); by default the folder names with underscores read as spaces.
        """
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)
        self._split_dirs = {split: self.root / split for split in SPLITS if (self.root / split).is_dir()}
        if not self._split_dirs:
            raise FileNotFoundError(f"no train/, val/ or test/ folder in {self.root}; {_IMAGEFOLDER_TREE}")
        self._class_dirs = sorted({d.name for split_dir in self._split_dirs.values() for d in _subdirs(split_dir)})
        if not self._class_dirs:
            folders = ", ".join(str(d) for d in self._split_dirs.values())
            raise FileNotFoundError(f"no class folders in {folders}; {_IMAGEFOLDER_TREE}")
        if classnames_file is None:
            self.classnames = [name.replace("_", " ") for name in self._class_dirs]
        else:
            self.classnames = _read_lines(Path(classnames_file), "expected one class name per line")
            if len(self.classnames) != len(self._class_dirs):
                raise ValueError(
                    f"{classnames_file} has {len(self.classnames)} class names but {self.root} has "
                    f"{len(self._class_dirs)} class folders; expected one name per class folder, in sorted folder order"
                )
        self.templates = resolve_templates(templates)

    def samples(self, split: str) -> list[Sample]:
        _check_split(split)
        if split not in self._split_dirs:
            raise FileNotFoundError(
                f"{self.root / split} is missing, so there is no {split} split; {_IMAGEFOLDER_TREE}"
            )
        label_of = {name: label for label, name in enumerate(self._class_dirs)}
        samples = [
            (path, label_of[class_dir.name])
            for class_dir in _subdirs(self._split_dirs[split])
            for path in _images_in(class_dir)
        ]
        if not samples:
            raise FileNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders of {self._split_dirs[split]}"
            )
        return samples

    def val_dataloader(self) -> DataLoader | list:
        # Validation is optional: without root/val, fit runs with none.
        return super().val_dataloader() if "val" in self._split_dirs else []


# -- CoOp's data sets ---------------------------------------------------------------------------


class CoOpClassification(_ImageFilesDataModule):
    """One of CoOp's 11 few-shot data sets, read from CoOp's folder layout and fixed splits.

    Expects the files of CoOp's DATASETS.md under ``root``: ``<data set folder>/split_zhou_<Name>.json``
    plus images for nine data sets, ``imagenet/classnames.txt`` plus ``imagenet/images/{train,val}/``
    (val serves as val and test, as in CoOp) and FGVCAircraft's own variant lists.
    """

    def __init__(
        self,
        root: str,
        dataset: str,
        image_size: int = 224,
        templates: str | Sequence[str] | None = None,
        batch_size: int = 64,
        num_workers: int = 4,
        predict_images: str | None = None,
    ):
        """
        Args:
            root: the data root that holds CoOp's data set folders (``oxford_pets/``, ``imagenet/``, ...).
            dataset: one of ImageNet, Caltech101, OxfordPets, StanfordCars, OxfordFlowers, Food101,
                FGVCAircraft, SUN397, DescribableTextures, EuroSAT, UCF101.
            image_size: side of the square model input; images are resized and centre-cropped to it.
            templates: zero-shot prompt templates; by default CoOp's one template for the data set.
                Otherwise "simple", "openai_imagenet", "coop:<DataSet>" or a list of strings with one ``{}``.
            batch_size: per process.
            num_workers: DataLoader worker processes.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test split (see ``lit_clip.datamodules.predict``).
        """
        super().__init__()
        self.save_hyperparameters()
        self._reader = coop_reader(root, dataset)
        self.classnames = self._reader.classnames
        self.templates = resolve_templates([COOP_TEMPLATES[dataset]] if templates is None else templates)

    def samples(self, split: str) -> list[Sample]:
        _check_split(split)
        return self._reader.samples(split)


def coop_reader(root: str | Path, dataset: str) -> "_SplitFile | _ImageNetFolders | _AircraftVariantLists":
    """The reader of a CoOp data set under ``root``: its ``classnames`` and ``samples(split)``."""
    if dataset not in COOP_LAYOUTS:
        raise ValueError(f"unknown CoOp data set {dataset!r}; expected one of {list(COOP_LAYOUTS)}")
    folder, image_folder = COOP_LAYOUTS[dataset]
    dataset_dir, image_dir = Path(root) / folder, Path(root) / folder / image_folder
    if dataset == "ImageNet":
        return _ImageNetFolders(dataset_dir, image_dir)
    if dataset == "FGVCAircraft":
        return _AircraftVariantLists(dataset_dir, image_dir)
    return _SplitFile(dataset, dataset_dir, image_dir)


class _SplitFile:
    """CoOp's ``split_zhou_<Name>.json``: ``{"train", "val", "test"}``, lists of ``[image path, label, class name]``."""

    def __init__(self, name: str, dataset_dir: Path, image_dir: Path):
        path = dataset_dir / f"split_zhou_{name}.json"
        if not path.is_file():
            # StanfordCars keeps its image folders directly in the data set folder.
            images = f"{dataset_dir.name}/{image_dir.name}" if image_dir != dataset_dir else dataset_dir.name
            raise FileNotFoundError(
                f"{name}: split file {path} not found; expected CoOp's layout (its DATASETS.md):\n"
                f"  <root>/{dataset_dir.name}/\n"
                f"    split_zhou_{name}.json   {{\"train\", \"val\", \"test\"}}: lists of "
                f"[image path relative to {images}/, label, class name]\n"
                f"  with the images under <root>/{images}/"
            )
        with open(path) as file:
            content = json.load(file)
        name_of_label: dict[int, str] = {}
        self._samples: dict[str, list[Sample]] = {}
        for split in SPLITS:
            if split not in content:
                raise ValueError(f"{path} has no {split!r} list; expected the keys {list(SPLITS)}")
            self._samples[split] = []
            for position, entry in enumerate(content[split]):
                try:
                    relative_path, label, classname = entry
                    label = int(label)
                except (TypeError, ValueError) as error:
                    raise ValueError(
                        f"{path}: entry {position} of {split!r} is {entry!r}; "
                        "expected [relative image path, label, class name]"
                    ) from error
                known = name_of_label.setdefault(label, classname)
                if known != classname:
                    raise ValueError(f"{path}: label {label} is named both {known!r} and {classname!r}")
                self._samples[split].append((image_dir / relative_path, label))
        labels = sorted(name_of_label)
        if not labels:
            raise ValueError(f"{path} lists no images")
        if labels != list(range(len(labels))):
            gap = next(label for label in range(len(labels) + 1) if label not in name_of_label)
            raise ValueError(
                f"{path}: labels must run from 0 to the number of classes - 1, but label {gap} never occurs, "
                f"so it has no class name (labels found: {labels[0]}..{labels[-1]})"
            )
        # As every CoOp-family method prompts them: "american_bulldog" -> "american bulldog".
        self.classnames = [name_of_label[label].replace("_", " ") for label in range(len(name_of_label))]

    def samples(self, split: str) -> list[Sample]:
        return self._samples[split]


class _ImageNetFolders:
    """CoOp's ImageNet: ``classnames.txt`` ("<wnid> <class name>" lines) and ``images/{train,val}/<wnid>/``."""

    def __init__(self, dataset_dir: Path, image_dir: Path):
        self.classnames_path, self.image_dir = dataset_dir / "classnames.txt", image_dir
        self.tree = (
            "expected CoOp's ImageNet layout:\n"
            f"  <root>/{dataset_dir.name}/\n"
            '    classnames.txt              one "<wnid> <class name>" per line, e.g. "n01440764 tench"\n'
            f"    {image_dir.name}/train/<wnid>/<images>\n"
            f"    {image_dir.name}/val/<wnid>/<images>    the val and the test split, as in CoOp"
        )
        name_of_wnid = {}
        for line in _read_lines(self.classnames_path, self.tree):
            wnid, _, classname = line.partition(" ")
            if not classname:
                raise ValueError(f"{self.classnames_path}: line {line!r} has no class name; {self.tree}")
            name_of_wnid[wnid] = classname
        # CoOp labels the classes in sorted folder (wnid) order, whatever the file's order.
        self.wnids = sorted(name_of_wnid)
        self.classnames = [name_of_wnid[wnid] for wnid in self.wnids]

    def samples(self, split: str) -> list[Sample]:
        folder = self.image_dir / ("train" if split == "train" else "val")
        if not folder.is_dir():
            raise FileNotFoundError(f"ImageNet: {folder} not found; {self.tree}")
        class_dirs = _subdirs(folder)
        if len(class_dirs) != len(self.wnids):
            raise ValueError(
                f"{self.classnames_path} lists {len(self.wnids)} classes but {folder} has {len(class_dirs)} "
                "class folders; expected one folder per listed wnid"
            )
        label_of = {wnid: label for label, wnid in enumerate(self.wnids)}
        unlisted = [d.name for d in class_dirs if d.name not in label_of]
        if unlisted:
            raise ValueError(f"class folder {folder / unlisted[0]} is not a wnid listed in {self.classnames_path}")
        return [(path, label_of[d.name]) for d in class_dirs for path in _images_in(d)]


class _AircraftVariantLists:
    """CoOp's FGVCAircraft (no split file): ``variants.txt`` and ``images_variant_<split>.txt`` ("<id> <variant>")."""

    def __init__(self, dataset_dir: Path, image_dir: Path):
        tree = (
            "expected CoOp's FGVCAircraft layout (the data/ folder of fgvc-aircraft-2013b):\n"
            f"  <root>/{dataset_dir.name}/\n"
            "    variants.txt                          one class name per line, in label order\n"
            '    images_variant_{train,val,test}.txt   one "<image id> <variant>" per line\n'
            f"    {image_dir.name}/<image id>.jpg"
        )
        variants_path = dataset_dir / "variants.txt"
        self.classnames = _read_lines(variants_path, tree)
        label_of = {name: label for label, name in enumerate(self.classnames)}
        self._samples: dict[str, list[Sample]] = {}
        used: set[str] = set()
        for split in SPLITS:
            list_path = dataset_dir / f"images_variant_{split}.txt"
            self._samples[split] = []
            for line in _read_lines(list_path, tree):
                image_id, _, variant = line.partition(" ")
                if variant not in label_of:
                    raise ValueError(f"{list_path}: variant {variant!r} of image {image_id} is not in {variants_path}")
                used.add(variant)
                self._samples[split].append((image_dir / f"{image_id}.jpg", label_of[variant]))
        if len(used) != len(self.classnames):
            raise ValueError(
                f"{variants_path} lists {len(self.classnames)} class names but the split lists use {len(used)} of them"
            )

    def samples(self, split: str) -> list[Sample]:
        return self._samples[split]


# -- helpers ------------------------------------------------------------------------------------


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _read_lines(path: Path, expected: str) -> list[str]:
    """The non-blank lines of a text file, stripped; a missing file is an error that says what was expected."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {expected}")
    with open(path) as file:
        return [line.strip() for line in file if line.strip()]
