"""Write ShapesWorld samples to disk in the layouts of real data sets.

The files exercise the real parsers of :mod:`lit_clip.datamodules.classification`,
:mod:`lit_clip.datamodules.pairs` and :mod:`lit_clip.datamodules.segmentation` (tests, demos) without
downloading anything. The classification exporters return the written ``(image path, label)`` pairs per
split, labels indexing ``class_names(vocabulary)``; the caption exporters return ``(image path, captions)``
per split, the segmentation exporters ``(image path, mask path)`` per split, in the order the data
modules list them.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
from lit_clip.datamodules.classification import COOP_LAYOUTS
from lit_clip.datamodules.shapesworld import ShapesWorld, class_names
from PIL import Image

Exported = dict[str, list[tuple[Path, int]]]
ExportedCaptions = dict[str, list[tuple[Path, list[str]]]]
ExportedMasks = dict[str, list[tuple[Path, Path]]]


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


# -- image-caption pairs ------------------------------------------------------------------------

# Further captions of a scene, each true of it: its objects listed in phrasings that ShapesWorld's
# own captions never start with, so an image's captions are all different.
_EXTRA_CAPTIONS = ("a drawing of {}.", "a scene with {}.", "shapes: {}.", "an illustration of {}.")


def export_coco_captions(
    root: str | Path,
    per_split: Mapping[str, int],
    image_size: int = 64,
    captions_per_image: int = 2,
    seed: int = 0,
) -> ExportedCaptions:
    """COCO 2017's captions layout: ``annotations/captions_<split>2017.json`` and ``<split>2017/<id>.jpg``.

    Args:
        root: output folder.
        per_split: images for each split written, e.g. ``{"train": 8, "val": 4}``.
        image_size, seed: image side and ShapesWorld world.
        captions_per_image: true captions of every image, at most 5.
    """
    root = Path(root)
    exported: ExportedCaptions = {split: [] for split in per_split}
    content = {split: {"images": [], "annotations": []} for split in per_split}
    caption_id = 0
    for split, index, image, captions in _captioned_scenes(per_split, image_size, captions_per_image, seed):
        image_id = index + 1  # COCO ids start at 1
        path = root / f"{split}2017" / f"{image_id:012d}.jpg"
        _save(image, path)
        exported[split].append((path, captions))
        content[split]["images"].append(
            {"id": image_id, "file_name": path.name, "width": image_size, "height": image_size}
        )
        for caption in captions:
            caption_id += 1
            content[split]["annotations"].append({"id": caption_id, "image_id": image_id, "caption": caption})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, split_content in content.items():
        with open(root / "annotations" / f"captions_{split}2017.json", "w") as file:
            json.dump({"info": {"description": "ShapesWorld"}, "licenses": [], **split_content}, file)
    return exported


def export_flickr_karpathy(
    root: str | Path,
    per_split: Mapping[str, int],
    image_size: int = 64,
    captions_per_image: int = 5,
    seed: int = 0,
) -> ExportedCaptions:
    """Flickr30k with Karpathy's splits: ``dataset_flickr30k.json`` and ``flickr30k-images/<n>.jpg``.

    Args:
        root: output folder.
        per_split: images for each split written: "train", "restval", "val", "test".
            restval images are training scenes, like train's.
        image_size, seed: image side and ShapesWorld world.
        captions_per_image: true captions of every image, at most 5.
    """
    root = Path(root)
    exported: ExportedCaptions = {split: [] for split in per_split}
    images, sentence_id = [], 0
    for split, _, image, captions in _captioned_scenes(per_split, image_size, captions_per_image, seed):
        image_id = len(images)
        path = root / "flickr30k-images" / f"{1000000 + image_id}.jpg"
        _save(image, path)
        exported[split].append((path, captions))
        sentences = []
        for caption in captions:
            tokens = "".join(c if c.isalnum() else " " for c in caption.lower()).split()
            sentences.append({"raw": caption, "tokens": tokens, "imgid": image_id, "sentid": sentence_id})
            sentence_id += 1
        images.append(
            {
                "filename": path.name,
                "imgid": image_id,
                "split": split,
                "sentids": [sentence["sentid"] for sentence in sentences],
                "sentences": sentences,
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "dataset_flickr30k.json", "w") as file:
        json.dump({"dataset": "flickr30k", "images": images}, file)
    return exported


def export_csv_pairs(
    root: str | Path,
    per_split: Mapping[str, int],
    image_size: int = 64,
    captions_per_image: int = 1,
    image_key: str = "filepath",
    caption_key: str = "title",
    separator: str = "\t",
    seed: int = 0,
) -> ExportedCaptions:
    """open_clip's CSV format: ``<split>.csv`` with one ``image_key, caption_key`` row per caption.

    Images go to ``images/<split>/<index>.jpg``, named in the CSV relative to its folder;
    an image with several captions is on several rows.

    Args:
        root: output folder.
        per_split: images for each split written, e.g. ``{"train": 8, "val": 4}``.
        image_size, seed: image side and ShapesWorld world.
        captions_per_image: true captions of every image (rows per image), at most 5.
        image_key, caption_key, separator: the CSV's column names and field separator.
    """
    root = Path(root)
    exported: ExportedCaptions = {split: [] for split in per_split}
    rows: dict[str, list[tuple[str, str]]] = {split: [] for split in per_split}
    for split, index, image, captions in _captioned_scenes(per_split, image_size, captions_per_image, seed):
        path = root / "images" / split / f"{index:05d}.jpg"
        _save(image, path)
        exported[split].append((path, captions))
        rows[split].extend((path.relative_to(root).as_posix(), caption) for caption in captions)
    for split, split_rows in rows.items():
        with open(root / f"{split}.csv", "w", newline="") as file:
            writer = csv.writer(file, delimiter=separator)
            writer.writerow([image_key, caption_key])
            writer.writerows(split_rows)
    return exported


def _captioned_scenes(
    per_split: Mapping[str, int], image_size: int, captions_per_image: int, seed: int
) -> Iterator[tuple[str, int, Image.Image, list[str]]]:
    """``(split, index, image, captions)``: ``per_split[split]`` scenes, each with distinct true captions.

    The first caption is the scene's own; the others list its objects in other phrasings.
    Karpathy's "restval" split draws training scenes after those of "train".
    """
    if not 1 <= captions_per_image <= 1 + len(_EXTRA_CAPTIONS):
        raise ValueError(f"captions_per_image must be in 1..{1 + len(_EXTRA_CAPTIONS)}, got {captions_per_image}")
    world = ShapesWorld(image_size=image_size, seed=seed)
    for split, count in per_split.items():
        world_split, offset = ("train", per_split.get("train", 0)) if split == "restval" else (split, 0)
        for index in range(count):
            scene = world.scene(world_split, offset + index)
            objects = [f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}" for phrase in scene.noun_phrases]
            listed = objects[0] if len(objects) == 1 else ", ".join(objects[:-1]) + " and " + objects[-1]
            extra = [template.format(listed) for template in _EXTRA_CAPTIONS]
            yield split, index, scene.image, [scene.caption, *extra][:captions_per_image]


# -- WebDataset shards --------------------------------------------------------------------------


def export_webdataset(
    root: str | Path, samples: int, shard_size: int, image_size: int = 64, seed: int = 0, split: str = "train"
) -> list[Path]:
    """ShapesWorld scenes as WebDataset shards ``root/shard-000000.tar``, ... of ``shard_size`` samples.

    Sample ``<key>`` is the members ``<key>.jpg`` and ``<key>.txt`` (its caption), keys
    ``000000``, ``000001``, ... counting on across shards, so every sample has its own key.
    Returns the shard paths in order.

    Args:
        root: output folder.
        samples: scenes written; the last shard holds the remainder.
        shard_size: samples per shard.
        image_size, seed: image side and ShapesWorld world.
        split: the ShapesWorld split the scenes come from: "train", "val" or "test".
    """
    import webdataset as wds  # imported here, as only this exporter needs it

    if samples < 1 or shard_size < 1:
        raise ValueError(f"samples and shard_size must be positive, got {samples} and {shard_size}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    world = ShapesWorld(image_size=image_size, seed=seed)
    shards: list[str] = []  # ShardWriter calls `post` with each shard's name once it is complete
    with wds.ShardWriter(str(root / "shard-%06d.tar"), maxcount=shard_size, verbose=0, post=shards.append) as writer:
        for index in range(samples):
            scene = world.scene(split, index)
            writer.write({"__key__": f"{index:06d}", "jpg": scene.image, "txt": scene.caption})
    return [Path(shard) for shard in shards]


# -- semantic segmentation ----------------------------------------------------------------------


def export_voc_segmentation(
    root: str | Path,
    per_split: Mapping[str, int],
    augmented: int = 0,
    vocabulary: str = "shape",
    image_size: int = 64,
    seed: int = 0,
) -> ExportedMasks:
    """PASCAL VOC 2012's segmentation layout under ``root/VOCdevkit/VOC2012``, masks as VOC stores them.

    ``JPEGImages/<id>.jpg``; ``SegmentationClass/<id>.png``: palette PNGs with VOC's colour map whose indices
    are the labels (0 background, 1 + the class index in ``vocabulary``), with VOC's 255 ("void") on the
    border between labels; ``ImageSets/Segmentation/<split>.txt``. With ``augmented`` > 0, SBD's augmented
    set too: the training scenes and ``augmented`` more, as grey PNGs in ``SegmentationClassAug/`` and listed
    in ``ImageSets/SegmentationAug/train_aug.txt`` ("<image path> <mask path>" lines, as DeepLab's list).
    Returns the pairs per split, and under "train_aug" those of the augmented list.

    Args:
        root: output folder.
        per_split: scenes of each split, e.g. ``{"train": 4, "val": 2}``.
        augmented: training scenes that only the augmented list has (0: no augmented set).
        vocabulary: the labels: ``shape`` (8 + background fit VOC's 21 ids) or ``color``.
        image_size, seed: image side and ShapesWorld world.
    """
    if len(class_names(vocabulary)) > 20:
        raise ValueError(f"VOC has 20 object labels; vocabulary {vocabulary!r} has {len(class_names(vocabulary))}")
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    world = ShapesWorld(image_size=image_size, seed=seed)
    exported: ExportedMasks = {}
    for split, count in per_split.items():
        ids = [f"{split}_{index:06d}" for index in range(count)]
        exported[split] = []
        for index, sample_id in enumerate(ids):
            scene = world.scene(split, index)
            mask = Image.fromarray(_with_void_borders(scene.semantic_mask(vocabulary)), "P")
            mask.putpalette(_voc_palette())
            exported[split].append(_save_pair(scene.image, mask, voc, sample_id, "SegmentationClass"))
        _write_lines(_parent(voc / "ImageSets" / "Segmentation" / f"{split}.txt"), ids)
    if augmented:
        train = per_split.get("train", 0)
        lines, exported["train_aug"] = [], []
        for index in range(train + augmented):
            sample_id = f"train_{index:06d}"
            scene = world.scene("train", index)
            mask = Image.fromarray(scene.semantic_mask(vocabulary).astype(np.uint8), "L")
            exported["train_aug"].append(_save_pair(scene.image, mask, voc, sample_id, "SegmentationClassAug"))
            lines.append(f"/JPEGImages/{sample_id}.jpg /SegmentationClassAug/{sample_id}.png")
        _write_lines(_parent(voc / "ImageSets" / "SegmentationAug" / "train_aug.txt"), lines)
    return exported


def export_ade20k(
    root: str | Path, per_split: Mapping[str, int], vocabulary: str = "color_shape", image_size: int = 64, seed: int = 0
) -> ExportedMasks:
    """ADE20K's layout under ``root/ADEChallengeData2016``: ``images/<folder>/ADE_<split>_<n>.jpg`` and grey
    ``annotations/<folder>/ADE_<split>_<n>.png`` (folder "training" or "validation"): 0 for the background,
    which ADE20K calls "other" and leaves unlabelled, 1 + the class index in ``vocabulary`` for objects.

    Args:
        root: output folder.
        per_split: scenes of "train" and / or "val", e.g. ``{"train": 4, "val": 2}``.
        vocabulary, image_size, seed: the ShapesWorld labels, image side and world.
    """
    base = Path(root) / "ADEChallengeData2016"
    world = ShapesWorld(image_size=image_size, seed=seed)
    exported: ExportedMasks = {}
    for split, count in per_split.items():
        folder = {"train": "training", "val": "validation"}[split]
        exported[split] = []
        for index in range(count):
            scene = world.scene(split, index)
            mask = Image.fromarray(scene.semantic_mask(vocabulary).astype(np.uint8), "L")
            name = f"{folder}/ADE_{split}_{index + 1:08d}"
            exported[split].append(_save_pair(scene.image, mask, base, name, "annotations", image_folder="images"))
    return exported


def _save_pair(
    image: Image.Image, mask: Image.Image, base: Path, name: str, mask_folder: str, image_folder: str = "JPEGImages"
) -> tuple[Path, Path]:
    image_path, mask_path = base / image_folder / f"{name}.jpg", base / mask_folder / f"{name}.png"
    _save(image, image_path)
    _save(mask, mask_path)
    return image_path, mask_path


def _with_void_borders(labels: np.ndarray) -> np.ndarray:
    """uint8 labels with 255 on every pixel next to (4-neighbourhood) a pixel of another label, as VOC marks
    the uncertain outlines of its objects."""
    border = np.zeros(labels.shape, dtype=bool)
    vertical, horizontal = labels[1:] != labels[:-1], labels[:, 1:] != labels[:, :-1]
    border[1:] |= vertical
    border[:-1] |= vertical
    border[:, 1:] |= horizontal
    border[:, :-1] |= horizontal
    return np.where(border, 255, labels).astype(np.uint8)


def _voc_palette() -> list[int]:
    """VOC's colour map: the bits of the label index spread over R, G and B, high bits first; 255 is (224, 224, 192)."""
    palette = []
    for label in range(256):
        rgb, bits = [0, 0, 0], label
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
        palette += rgb
    return palette


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def main(args: list[str] | None = None) -> None:
    """``python -m lit_clip.datamodules.export LAYOUT ROOT``: ShapesWorld on disk, to try a real-data config."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    layouts = ["coco", "flickr30k", "csv", "webdataset", "imagefolder", "coop", "voc", "ade20k"]
    parser.add_argument("layout", choices=layouts)
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=1000, help="training samples (per class for classification)")
    parser.add_argument("--val", type=int, default=100, help="validation samples (per class for classification)")
    parser.add_argument("--test", type=int, default=100, help="test samples (per class for classification)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--dataset", default="OxfordPets", help="the CoOp data set whose layout to write")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per WebDataset shard")
    options = parser.parse_args(args)
    splits = {"train": options.train, "val": options.val, "test": options.test}
    size = {"image_size": options.image_size}
    if options.layout == "coco":
        export_coco_captions(options.root, splits, **size)
    elif options.layout == "flickr30k":
        export_flickr_karpathy(options.root, splits, **size)
    elif options.layout == "csv":
        export_csv_pairs(options.root, splits, **size)
    elif options.layout == "webdataset":
        export_webdataset(options.root, options.train, options.shard_size, **size)
        export_webdataset(options.root / "val", options.val, options.shard_size, split="val", **size)
    elif options.layout == "voc":
        export_voc_segmentation(options.root, {"train": options.train, "val": options.val}, **size)
    elif options.layout == "ade20k":
        export_ade20k(options.root, {"train": options.train, "val": options.val}, **size)
    elif options.layout == "imagefolder":
        export_imagefolder(options.root, splits, **size)
    else:
        if options.dataset == "ImageNet":  # CoOp evaluates ImageNet on its val split
            del splits["test"]
        export_coop(options.root, splits, dataset=options.dataset, **size)
    print(f"wrote ShapesWorld in the {options.layout} layout under {options.root}")


if __name__ == "__main__":
    main()
