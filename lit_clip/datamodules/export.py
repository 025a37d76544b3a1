"""Write ShapesWorld classification samples to disk in the layouts of real data sets.

The files exercise the real parsers of :mod:`lit_clip.datamodules.classification` (tests,
demos) without downloading anything. Each exporter returns the written
``(image path, label)`` pairs per split, labels indexing ``class_names(vocabulary)``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Mapping

from PIL import Image

from lit_clip.datamodules.classification import COOP_LAYOUTS
from lit_clip.datamodules.shapesworld import ShapesWorld, class_names

Exported = dict[str, list[tuple[Path, int]]]


def export_imagefolder(
    root: str | Path,
    per_class: Mapping[str, int],
    vocabulary: str = "color_shape",
    image_size: int = 64,
    seed: int = 0,
) -> Exported:
    """PNG files in ``root/<split>/<class_name>/``, spaces in class names written as underscores.

    Args:
        root: output folder.
        per_class: images per class for each split written, e.g. ``{"train": 4, "test": 2}``.
        vocabulary, image_size, seed: the ShapesWorld classes, image side and world.
    """
    exported: Exported = {split: [] for split in per_class}
    for split, index, image, label in _samples(per_class, vocabulary, image_size, seed):
        path = Path(root) / split / _folder_name(class_names(vocabulary)[label]) / f"{index:05d}.png"
        _save(image, path)
        exported[split].append((path, label))
    return exported


def export_coop(
    root: str | Path,
    per_class: Mapping[str, int],
    dataset: str = "OxfordPets",
    vocabulary: str = "color_shape",
    image_size: int = 64,
    seed: int = 0,
) -> Exported:
    """JPEG files and index files in CoOp's layout of ``dataset`` under ``root``.

    ImageNet gets ``classnames.txt`` (wnids ``n00000000``, ``n00000001``, ...) and
    ``images/{train,val}/<wnid>/``; FGVCAircraft its variant lists; the other nine a
    ``split_zhou_<dataset>.json`` next to the image folder.

    Args:
        root: the data root; the data set's CoOp folder is created in it.
        per_class: images per class for each split, e.g. ``{"train": 2, "val": 1, "test": 2}``
            (ImageNet: "train" and "val" only).
        dataset: a CoOp data set name, e.g. "OxfordPets", "ImageNet", "FGVCAircraft".
        vocabulary, image_size, seed: the ShapesWorld classes, image side and world.
    """
    if dataset not in COOP_LAYOUTS:
        raise ValueError(f"unknown CoOp data set {dataset!r}; expected one of {list(COOP_LAYOUTS)}")
    if dataset == "ImageNet" and "test" in per_class:
        raise ValueError("CoOp's ImageNet has no test split (it tests on val); give per_class for train and val")
    folder, image_folder = COOP_LAYOUTS[dataset]
    dataset_dir, image_dir = Path(root) / folder, Path(root) / folder / image_folder
    names = class_names(vocabulary)
    exported: Exported = {split: [] for split in per_class}
    split_entries: dict[str, list] = {split: [] for split in ("train", "val", "test")}
    for split, index, image, label in _samples(per_class, vocabulary, image_size, seed):
        if dataset == "ImageNet":
            path = image_dir / split / _wnid(label) / f"{index:05d}.jpg"
        elif dataset == "FGVCAircraft":
            image_id = f"{split}{index:05d}"
            path = image_dir / f"{image_id}.jpg"
            split_entries[split].append(f"{image_id} {names[label]}")
        else:
            path = image_dir / _folder_name(names[label]) / f"{split}_{index:05d}.jpg"
            split_entries[split].append([path.relative_to(image_dir).as_posix(), label, names[label]])
        _save(image, path)
        exported[split].append((path, label))

    dataset_dir.mkdir(parents=True, exist_ok=True)
    if dataset == "ImageNet":
        _write_lines(dataset_dir / "classnames.txt", [f"{_wnid(label)} {name}" for label, name in enumerate(names)])
    elif dataset == "FGVCAircraft":
        _write_lines(dataset_dir / "variants.txt", names)
        for split, lines in split_entries.items():
            _write_lines(dataset_dir / f"images_variant_{split}.txt", lines)
    else:
        with open(dataset_dir / f"split_zhou_{dataset}.json", "w") as file:
            json.dump(split_entries, file)
    return exported


def _samples(
    per_class: Mapping[str, int], vocabulary: str, image_size: int, seed: int
) -> Iterator[tuple[str, int, Image.Image, int]]:
    """``(split, index, image, label)``: ``per_class[split]`` images of every class, classes interleaved."""
    world = ShapesWorld(image_size=image_size, seed=seed)
    for split, count in per_class.items():
        for index in range(count * len(class_names(vocabulary))):
            image, label = world.classification_sample(split, index, vocabulary)
            yield split, index, image, label


def _folder_name(classname: str) -> str:
    return classname.replace(" ", "_")


def _wnid(label: int) -> str:
    # Zero-padded, so sorted wnids (CoOp's label order) follow the labels.
    return f"n{label:08d}"


def _save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))
