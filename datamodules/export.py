"""Write ShapesWorld samples to disk in the layouts of real data sets.

The files exercise the real parsers of :mod:`lit_clip.datamodules.classification`,
:mod:`lit_clip.datamodules.pairs` and :mod:`lit_clip.datamodules.segmentation` (tests, demos) without
downloading anything. The classification exporters return the written ``(image path, label)`` pairs per
split, labels indexing ``class_names(vocabulary)``; the caption exporters return ``(image path, captions)``
per split, the segmentation exporters ``(image path, mask path)`` per split, in the order the data
modules list them. The few-shot segmentation exporters (HSNet's layouts, which
:mod:`lit_clip.datamodules.fewshot_segmentation` reads) write the split files too and return what they list.
The detection exporters write COCO's, LVIS's, ODinW's (Roboflow's) and Objects365's annotation files (which
:mod:`lit_clip.datamodules.detection` reads), the grounding exporter MDETR's Flickr30k Entities files (which
:mod:`lit_clip.datamodules.grounding` reads); they return ``(image path, image id)`` per split.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import pickle
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
from lit_clip.datamodules.classification import COOP_LAYOUTS
from lit_clip.datamodules.fewshot_segmentation import COCO20iSegmentation, Pascal5iSegmentation
from lit_clip.datamodules.shapesworld import ShapesWorld, class_names
from lit_clip.datamodules.shapesworld.detection import visible_boxes
from lit_clip.datamodules.shapesworld.segmentation import held_out_compositions
from lit_clip.datamodules.shapesworld.world import Scene
from PIL import Image
from pycocotools import mask as mask_utils

Exported = dict[str, list[tuple[Path, int]]]
ExportedCaptions = dict[str, list[tuple[Path, list[str]]]]
ExportedMasks = dict[str, list[tuple[Path, Path]]]
ExportedDetection = dict[str, list[tuple[Path, int]]]


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
    return _export_karpathy(Path(root), "flickr30k", per_split, image_size, captions_per_image, seed)


def export_coco_karpathy(
    root: str | Path,
    per_split: Mapping[str, int],
    image_size: int = 64,
    captions_per_image: int = 5,
    seed: int = 0,
) -> ExportedCaptions:
    """COCO with Karpathy's splits: ``dataset_coco.json`` and its images in ``train2014/`` (train, restval) and
    ``val2014/`` (val, test, as Karpathy took them from COCO's val), each entry naming its folder (``filepath``).

    Args: as :func:`export_flickr_karpathy`'s.
    """
    return _export_karpathy(Path(root), "coco", per_split, image_size, captions_per_image, seed)


def _export_karpathy(root: Path, dataset: str, per_split: Mapping[str, int], image_size: int,
                     captions_per_image: int, seed: int) -> ExportedCaptions:  # fmt: skip
    exported: ExportedCaptions = {split: [] for split in per_split}
    images, sentence_id = [], 0
    for split, _, image, captions in _captioned_scenes(per_split, image_size, captions_per_image, seed):
        image_id = len(images)
        if dataset == "coco":
            folder = "train2014" if split in ("train", "restval") else "val2014"
            entry = {"filepath": folder, "filename": f"COCO_{folder}_{image_id + 1:012d}.jpg"}
        else:
            folder, entry = "flickr30k-images", {"filename": f"{1000000 + image_id}.jpg"}
        path = root / folder / entry["filename"]
        _save(image, path)
        exported[split].append((path, captions))
        sentences = []
        for caption in captions:
            tokens = "".join(c if c.isalnum() else " " for c in caption.lower()).split()
            sentences.append({"raw": caption, "tokens": tokens, "imgid": image_id, "sentid": sentence_id})
            sentence_id += 1
        images.append({**entry, "imgid": image_id, "split": split, "sentids": [s["sentid"] for s in sentences],
                       "sentences": sentences})  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"dataset_{dataset}.json", "w") as file:
        json.dump({"dataset": dataset, "images": images}, file)
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


def export_pascal_context(
    root: str | Path, per_split: Mapping[str, int], vocabulary: str = "shape", image_size: int = 64, seed: int = 0
) -> ExportedMasks:
    """PASCAL Context in mmseg's layout under ``root/VOCdevkit/VOC2010``: ``JPEGImages/<id>.jpg``, grey
    ``SegmentationClassContext/<id>.png`` (0 background, 1 + the class index in ``vocabulary``: a stand-in for
    Context's 59 classes) and ``ImageSets/SegmentationContext/<split>.txt``.

    Args:
        root: output folder.
        per_split: scenes of "train" and / or "val".
        vocabulary, image_size, seed: the ShapesWorld labels (at most 59), image side and world.
    """
    if len(class_names(vocabulary)) > 59:
        raise ValueError(f"Context has 59 labels; vocabulary {vocabulary!r} has {len(class_names(vocabulary))}")
    base = Path(root) / "VOCdevkit" / "VOC2010"
    world = ShapesWorld(image_size=image_size, seed=seed)
    exported: ExportedMasks = {}
    for split, count in per_split.items():
        ids = [f"{split}_{index:06d}" for index in range(count)]
        exported[split] = []
        for index, sample_id in enumerate(ids):
            scene = world.scene(split, index)
            mask = Image.fromarray(scene.semantic_mask(vocabulary).astype(np.uint8), "L")
            exported[split].append(_save_pair(scene.image, mask, base, sample_id, "SegmentationClassContext"))
        _write_lines(_parent(base / "ImageSets" / "SegmentationContext" / f"{split}.txt"), ids)
    return exported


# COCO-Stuff's train id of "wall-other", where ShapesWorld's background goes: any of the 91 stuff ids would do.
_COCO_STUFF_BACKGROUND = 160


def export_coco_stuff(
    root: str | Path, per_split: Mapping[str, int], vocabulary: str = "shape", image_size: int = 64, seed: int = 0
) -> ExportedMasks:
    """COCO-Stuff 164k in mmseg's layout under ``root/coco_stuff164k``: ``images/<split>2017/<id>.jpg`` and grey
    ``annotations/<split>2017/<id>_labelTrainIds.png``: the objects as "thing" train ids (the class index in
    ``vocabulary``, a stand-in for COCO's 80 things), the background as a "stuff" id (so COCO-Object, read from
    the same files, sees it as background), 255 on the border between labels (COCO-Stuff's unlabelled).

    Args:
        root: output folder.
        per_split: scenes of "train" and / or "val".
        vocabulary, image_size, seed: the ShapesWorld labels (at most 80), image side and world.
    """
    if len(class_names(vocabulary)) > 80:
        raise ValueError(f"COCO has 80 things; vocabulary {vocabulary!r} has {len(class_names(vocabulary))}")
    base = Path(root) / "coco_stuff164k"
    world = ShapesWorld(image_size=image_size, seed=seed)
    exported: ExportedMasks = {}
    for split, count in per_split.items():
        exported[split] = []
        for index in range(count):
            scene = world.scene(split, index)
            labels = scene.semantic_mask(vocabulary).astype(np.int64)
            train_ids = np.where(labels == 0, _COCO_STUFF_BACKGROUND, labels - 1).astype(np.uint8)
            name = f"{index:012d}"
            image_path = base / "images" / f"{split}2017" / f"{name}.jpg"
            mask_path = base / "annotations" / f"{split}2017" / f"{name}_labelTrainIds.png"
            _save(scene.image, image_path)
            _save(Image.fromarray(_with_void_borders(train_ids), "L"), mask_path)
            exported[split].append((image_path, mask_path))
    return exported


# -- few-shot segmentation (HSNet's layouts) -----------------------------------------------------

# Draws of a scene of two compositions until one shows the episode's (after them, a scene of it alone).
_EPISODE_TRIES = 10


def export_pascal5i(
    root: str | Path, per_fold: Mapping[str, int], image_size: int = 64, seed: int = 0
) -> dict[str, list[list[tuple[Path, Path, int]]]]:
    """HSNet's PASCAL-5i layout under ``root``: ``VOC2012/JPEGImages/<id>.jpg``, grey
    ``VOC2012/SegmentationClassAug/<id>.png`` (0 background, class id + 1 on objects, 255 on the border between
    labels, as VOC marks outlines) and ``splits/pascal/{trn,val}/fold{0..3}.txt`` of "<id>__<class id + 1>" lines.

    Class id c (0-19) is drawn as ShapesWorld's colour-shape composition c (a stand-in: the data module names it
    as PASCAL does). Line i of fold k's file is an episode of class 5k + i % 5: a scene that shows it, and may
    show class c + 5 (mod 20) too, of the next fold, as PASCAL's images show classes of other folds.
    Returns per split and fold the ``(image, mask, class id)`` of every line.

    Args:
        root: output folder: the data module's ``root`` (split files in ``root/splits``).
        per_fold: lines of every fold's file per split, "train" and / or "val", e.g. ``{"train": 5, "val": 5}``.
        image_size, seed: image side and ShapesWorld world.
    """
    root, world = Path(root), ShapesWorld(image_size=image_size, seed=seed)
    exported: dict[str, list[list[tuple[Path, Path, int]]]] = {}
    for split, count in per_fold.items():
        hsnet_split = {"train": "trn", "val": "val"}[split]
        exported[split] = []
        for fold in range(4):
            lines, episodes = [], []
            for index in range(count):
                class_id = Pascal5iSegmentation.fold_classes(fold)[index % 5]
                scene, class_of = _episode_scene(world, split, index, class_id, (class_id + 5) % 20, _stand_in)
                image_id = f"{hsnet_split}{fold}_{index:06d}"
                mask = Image.fromarray(_with_void_borders(_class_mask(scene, class_of)), "L")
                pair = _save_pair(scene.image, mask, root / "VOC2012", image_id, "SegmentationClassAug")
                episodes.append((*pair, class_id))
                lines.append(f"{image_id}__{class_id + 1:02d}")
            _write_lines(_parent(root / "splits" / "pascal" / hsnet_split / f"fold{fold}.txt"), lines)
            exported[split].append(episodes)
    return exported


def export_coco20i(
    root: str | Path, per_class: Mapping[str, int], image_size: int = 64, seed: int = 0
) -> dict[str, dict[int, list[str]]]:
    """HSNet's COCO-20i layout under ``root``: ``COCO2014/<folder>/COCO_<folder>_<n>.jpg``, grey
    ``COCO2014/annotations/<folder>/COCO_<folder>_<n>.png`` (0 background, class id + 1 on objects; folder
    "train2014" or "val2014") and ``splits/coco/{trn,val}/fold{0..3}.pkl``: a dict of every class id (0-79) to
    the names of the images showing it ("val2014/COCO_val2014_<n>.jpg"), empty unless the class is one of the
    fold's training (trn) or evaluation (val) classes, as in HSNet's pickles.

    Class id c is drawn as ShapesWorld's colour-shape composition c; ShapesWorld has 64, so classes 64-79 reuse
    those of classes 1-16, which are of other folds (the 20 classes of a fold all look different). Each class has
    ``per_class[split]`` scenes that show it and may show class c + 1 (mod 80) too; an image is listed under every
    class it shows. Returns that listing per split.

    Args:
        root: output folder: the data module's ``root`` (split files in ``root/splits``).
        per_class: scenes of every class per split, "train" and / or "val", e.g. ``{"train": 1, "val": 1}``.
        image_size, seed: image side and ShapesWorld world.
    """
    root, world = Path(root), ShapesWorld(image_size=image_size, seed=seed)
    exported: dict[str, dict[int, list[str]]] = {}
    for split, count in per_class.items():
        folder, hsnet_split = {"train": ("train2014", "trn"), "val": ("val2014", "val")}[split]
        listed: dict[int, list[str]] = {class_id: [] for class_id in range(80)}
        for index in range(count * 80):
            class_id = index % 80
            scene, class_of = _episode_scene(world, split, index, class_id, (class_id + 1) % 80, _coco_stand_in)
            mask = _class_mask(scene, class_of)
            name = f"{folder}/COCO_{folder}_{index + 1:012d}"
            _save_pair(scene.image, Image.fromarray(mask, "L"), root / "COCO2014", name, "annotations", image_folder="")
            for shown in np.unique(mask[mask > 0]) - 1:
                listed[int(shown)].append(f"{name}.jpg")
        for fold in range(4):
            evaluated = COCO20iSegmentation.fold_classes(fold)
            kept = {c: names if (c in evaluated) == (split == "val") else [] for c, names in listed.items()}
            _parent(root / "splits" / "coco" / hsnet_split / f"fold{fold}.pkl").write_bytes(pickle.dumps(kept))
        exported[split] = listed
    return exported


def export_fss1000(
    root: str | Path,
    categories: Mapping[str, int],
    images_per_category: int = 10,
    image_size: int = 64,
    seed: int = 0,
) -> dict[str, dict[str, list[tuple[Path, Path]]]]:
    """HSNet's FSS-1000 layout under ``root``: ``FSS-1000/<category>/<n>.jpg`` with its mask ``<n>.png`` (grey:
    255 on the category's objects, 0 elsewhere), n = 1 .. ``images_per_category``, and
    ``splits/fss/{trn,val,test}.txt`` of category names (test's lines end in "\\r\\n", as HSNet's).

    The categories are ShapesWorld's colour-shape compositions in order, named as folders ("red_circle"); each
    image shows objects of its category only. Returns per split and category the ``(image, mask)`` pairs.

    Args:
        root: output folder: the data module's ``root`` (split files in ``root/splits``).
        categories: categories per split, "train", "val" and / or "test", e.g. ``{"train": 3, "val": 2, "test": 2}``;
            each split takes the compositions after the previous split's.
        images_per_category, image_size, seed: images of every category, their side and the ShapesWorld world.
    """
    root, world = Path(root), ShapesWorld(image_size=image_size, seed=seed)
    compositions = iter(class_names("color_shape"))
    exported: dict[str, dict[str, list[tuple[Path, Path]]]] = {}
    for split, count in categories.items():
        exported[split] = {}
        for composition in itertools.islice(compositions, count):
            category = _folder_name(composition)
            exported[split][category] = []
            for number in range(1, images_per_category + 1):
                scene = world.scene(split, number, allowed=[composition])
                mask = Image.fromarray(np.where(scene.instance_masks.any(axis=0), 255, 0).astype(np.uint8), "L")
                pair = _save_pair(scene.image, mask, root / "FSS-1000", f"{category}/{number}", "", image_folder="")
                exported[split][category].append(pair)
        hsnet_split, line_end = {"train": ("trn", "\n"), "val": ("val", "\n"), "test": ("test", "\r\n")}[split]
        text = "".join(f"{category}{line_end}" for category in exported[split])
        _parent(root / "splits" / "fss" / f"{hsnet_split}.txt").write_bytes(text.encode())
    return exported


def _stand_in(class_id: int) -> str:
    """The ShapesWorld composition drawn for a class id."""
    return class_names("color_shape")[class_id]


def _coco_stand_in(class_id: int) -> str:
    # Classes 64-79 reuse the compositions of 1-16: each of another fold (64 is a multiple of 4, 63 is not).
    return _stand_in(class_id if class_id < 64 else class_id - 63)


def _episode_scene(
    world: ShapesWorld, split: str, index: int, class_id: int, other: int, stand_in: Callable[[int], str]
) -> tuple[Scene, dict[str, int]]:
    """A scene showing ``class_id``, drawn from its and ``other``'s compositions, and the class id of each
    composition: the first of a few draws that shows it, else a scene of it alone."""
    class_of = {stand_in(class_id): class_id, stand_in(other): other}
    for attempt in range(_EPISODE_TRIES):
        scene = world.scene(split, index * _EPISODE_TRIES + attempt, allowed=list(class_of))
        if stand_in(class_id) in (obj.name for obj in scene.objects):
            return scene, class_of
    return world.scene(split, index, allowed=[stand_in(class_id)]), class_of


def _class_mask(scene: Scene, class_of: Mapping[str, int]) -> np.ndarray:
    """uint8: 0 background, 1 + ``class_of[composition]`` on the visible pixels of each object."""
    mask = np.zeros(scene.instance_masks.shape[1:], dtype=np.uint8)
    for obj, visible in zip(scene.objects, scene.instance_masks):
        mask[visible] = 1 + class_of[obj.name]
    return mask


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


# -- detection (COCO's and LVIS's annotation files) ---------------------------------------------


def export_coco_detection(
    root: str | Path, world: ShapesWorld, samples: Mapping[str, int], masks: bool = True
) -> ExportedDetection:
    """COCO 2017's detection layout under ``root``: ``<split>2017/<id:012d>.jpg`` (JPEG, quality 95) and
    ``annotations/instances_<split>2017.json``.

    The categories are the 64 colour-shape compositions, ids 1..64 in ``class_names("color_shape")`` order, named
    as there ("red circle"). Every object of a scene is an annotation: its box the tight box of its visible pixels
    (``visible_boxes``, as COCO's boxes), its area their count, ``iscrowd`` 0, and with ``masks`` its
    ``segmentation``: those pixels run-length encoded (pycocotools' compressed RLE, counts as text). Image and
    annotation ids count on from 1 over the splits, unique in the data set as COCO's. Returns per split the
    ``(image path, image id)`` of scenes 0, 1, ... of the world's split.

    Args:
        root: output folder: the data module's ``root``.
        world: the ShapesWorld whose scenes are written (its held-out compositions are in no training scene).
        samples: scenes of "train" and / or "val", e.g. ``{"train": 8, "val": 4}``.
        masks: write the objects' segmentations.
    """
    root = Path(root)
    exported, contents = _detection_files(root, world, samples, masks)
    names = class_names("color_shape")
    categories = [{"id": i + 1, "name": name, "supercategory": name.split()[1]} for i, name in enumerate(names)]
    for split, content in contents.items():
        _write_annotations(root / "annotations" / f"instances_{split}2017.json", content, categories)
    return exported


def export_lvis_detection(
    root: str | Path,
    world: ShapesWorld,
    samples: Mapping[str, int],
    held_out: Sequence[str] | None = None,
    masks: bool = True,
) -> ExportedDetection:
    """LVIS v1's layout under ``root``: ``lvis_v1_<split>.json``, the images in COCO 2017's folders
    (``<split>2017/<id:012d>.jpg``), which each image's ``coco_url`` names.

    Images, boxes and masks as :func:`export_coco_detection` writes them, in LVIS's fields: categories named with
    "_" ("red_circle") and with a ``frequency``: "r" (rare, LVIS's novel) for the ``held_out`` compositions, "c"
    and "f" in turn for the others; images with a ``coco_url`` (no ``file_name``) and empty
    ``neg_category_ids`` and ``not_exhaustive_category_ids`` (every object of a scene is boxed); annotations
    without ``iscrowd``. Returns what :func:`export_coco_detection` does.

    Args:
        root: output folder: the data module's ``root``.
        world: the ShapesWorld whose scenes are written.
        samples: scenes of "train" and / or "val".
        held_out: the rare compositions; by default the world's held-out ones.
        masks: write the objects' segmentations.
    """
    root, names = Path(root), class_names("color_shape")
    rare = world.held_out if held_out is None else tuple(held_out)
    if unknown := [name for name in rare if name not in names]:
        raise ValueError(f"unknown held_out compositions {unknown}; expected names from {names}")
    exported, contents = _detection_files(root, world, samples, masks)
    others = itertools.cycle("cf")
    categories = []
    for i, name in enumerate(names):
        lvis_name = name.replace(" ", "_")
        frequency = "r" if name in rare else next(others)
        categories.append({"id": i + 1, "name": lvis_name, "synonyms": [lvis_name], "synset": f"{lvis_name}.n.01",
                           "def": f"a {name} of ShapesWorld", "frequency": frequency})  # fmt: skip
    for split, content in contents.items():
        for image in content["images"]:
            url = f"http://images.cocodataset.org/{split}2017/{image.pop('file_name')}"
            image.update(coco_url=url, neg_category_ids=[], not_exhaustive_category_ids=[])
        for annotation in content["annotations"]:
            del annotation["iscrowd"]
        _write_annotations(root / f"lvis_v1_{split}.json", content, categories)
    return exported


def _detection_files(
    root: Path, world: ShapesWorld, samples: Mapping[str, int], masks: bool
) -> tuple[ExportedDetection, dict[str, dict[str, list[dict]]]]:
    """The scenes written as ``root/<split>2017/<id:012d>.jpg``, and COCO's ``images`` and ``annotations`` of
    them per split (see :func:`export_coco_detection`)."""
    if unknown := sorted(set(samples) - {"train", "val"}):
        raise ValueError(f"COCO and LVIS annotate the splits 'train' and 'val', not {unknown}")
    exported: ExportedDetection = {}
    contents: dict[str, dict[str, list[dict]]] = {}
    image_ids, annotation_ids = itertools.count(1), itertools.count(1)
    for split, count in samples.items():
        exported[split], images, annotations = [], [], []
        for index in range(count):
            scene, image_id = world.scene(split, index), next(image_ids)
            path = _parent(root / f"{split}2017" / f"{image_id:012d}.jpg")
            scene.image.save(path, quality=95)
            exported[split].append((path, image_id))
            width, height = scene.image.size
            images.append({"id": image_id, "file_name": path.name, "width": width, "height": height})
            boxes = visible_boxes(scene).tolist()
            for obj, (x1, y1, x2, y2), visible in zip(scene.objects, boxes, scene.instance_masks):
                rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
                annotation = {"id": next(annotation_ids), "image_id": image_id, "category_id": obj.class_index() + 1,
                              "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(mask_utils.area(rle)),
                              "iscrowd": 0}  # fmt: skip
                if masks:
                    annotation["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
                annotations.append(annotation)
        contents[split] = {"images": images, "annotations": annotations}
    return exported, contents


def _write_annotations(path: Path, content: dict[str, list[dict]], categories: list[dict]) -> None:
    document = {"info": {"description": "ShapesWorld"}, "licenses": [], **content, "categories": categories}
    _parent(path).write_text(json.dumps(document))


# ODinW's splits: Roboflow's folders, and the ShapesWorld split each one's scenes come from.
_ODINW_SPLITS = {"train": "train", "valid": "val", "test": "test"}
_ODINW_DATASET = "shapes"  # the data set's name, Roboflow's background category


def export_odinw_detection(
    root: str | Path,
    world: ShapesWorld,
    samples: Mapping[str, int],
    compositions: Sequence[str] | None = None,
    without_background: bool = False,
) -> ExportedDetection:
    """One ODinW data set in Roboflow's COCO export under ``root``: ``<split>/_annotations.coco.json`` with the
    images beside it (JPEG, quality 95, named as Roboflow names them: ``<n>_jpg.rf.<hash>.jpg``), for the splits
    "train", "valid" and "test".

    The categories are Roboflow's: id 0 the background category named after the data set ("shapes",
    ``supercategory`` "none", no box), then the ``compositions`` with ids 1, 2, ... in their order, named as in
    ``class_names("color_shape")`` ("red circle"), super-category "shapes". A scene is drawn from the compositions
    only; every object is an annotation, its box the tight box of its visible pixels (``visible_boxes``), its area
    the box's, ``iscrowd`` 0, no segmentation. Image and annotation ids count from 0 in each file, as Roboflow's.
    ``without_background`` also writes GLIP's ``annotations_without_background.json`` beside each: the same file
    without category 0. Returns per split the ``(image path, image id)`` of scenes 0, 1, ... of the world's split
    ("valid" draws from "val").

    Args:
        root: output folder: the data module's ``root``.
        world: the ShapesWorld whose scenes are written.
        samples: scenes of "train", "valid" and / or "test", e.g. ``{"train": 8, "valid": 2, "test": 4}``.
        compositions: the data set's categories; by default all 64 compositions of ``class_names("color_shape")``.
        without_background: write GLIP's files without the background category too.
    """
    if unknown := sorted(set(samples) - set(_ODINW_SPLITS)):
        raise ValueError(f"ODinW's Roboflow exports have the splits {list(_ODINW_SPLITS)}, not {unknown}")
    root, names = Path(root), list(compositions or class_names("color_shape"))
    if unknown := [name for name in names if name not in class_names("color_shape")]:
        raise ValueError(f"unknown compositions {unknown}; expected names from {class_names('color_shape')}")
    background = {"id": 0, "name": _ODINW_DATASET, "supercategory": "none"}
    categories = [background, *({"id": i + 1, "name": name, "supercategory": _ODINW_DATASET}
                                for i, name in enumerate(names))]  # fmt: skip
    exported: ExportedDetection = {}
    for split, count in samples.items():
        exported[split], images, annotations = [], [], []
        for image_id in range(count):
            scene = world.scene(_ODINW_SPLITS[split], image_id, allowed=names if compositions else None)
            digest = hashlib.sha1(f"{split}/{image_id}".encode()).hexdigest()[:20]
            path = _parent(root / split / f"{image_id:05d}_jpg.rf.{digest}.jpg")
            scene.image.save(path, quality=95)
            exported[split].append((path, image_id))
            width, height = scene.image.size
            images.append({"id": image_id, "license": 1, "file_name": path.name, "height": height, "width": width,
                           "date_captured": "2020-01-01T00:00:00+00:00"})  # fmt: skip
            for obj, (x1, y1, x2, y2) in zip(scene.objects, visible_boxes(scene).tolist()):
                annotations.append({"id": len(annotations), "image_id": image_id,
                                    "category_id": names.index(obj.name) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "area": (x2 - x1) * (y2 - y1), "segmentation": [], "iscrowd": 0})  # fmt: skip
        content = {"images": images, "annotations": annotations}
        _write_annotations(root / split / "_annotations.coco.json", content, categories)
        if without_background:
            _write_annotations(root / split / "annotations_without_background.json", content, categories[1:])
    return exported


# -- detection (Objects365 v2's annotation files) ------------------------------------------------


def export_objects365_detection(
    root: str | Path, world: ShapesWorld, samples: Mapping[str, int], images_per_patch: int = 2, flat: bool = False
) -> ExportedDetection:
    """Objects365 v2's layout under ``root``: ``zhiyuan_objv2_<split>.json`` and the images where each entry's
    ``file_name`` puts them, ``images/<v>/patch<N>/objects365_<v>_<id:08d>.jpg`` (JPEG, quality 95); with ``flat``
    at ``<split>/<name>`` instead (a flattened copy; the ``file_name`` is the same).

    Images and boxes as :func:`export_coco_detection` writes them, without masks, in Objects365's fields: the
    categories are the 64 compositions, ids 1..64 in ``class_names("color_shape")`` order, named with a capital as
    Objects365's names are ("Red circle"); images have a ``url`` and a ``license``; annotations ``isfake`` and
    ``isreflected`` 0. Images go ``images_per_patch`` to a patch folder, patches numbered over the data set from 0;
    patch 0 holds Objects365 v1's images ("v1"), the others v2's. Returns per split the ``(image path, image id)`` of
    scenes 0, 1, ... of the world's split.

    Args:
        root: output folder: the data module's ``root``.
        world: the ShapesWorld whose scenes are written (Objects365 has no novel categories: give a world with
            nothing held out to train on every composition).
        samples: scenes of "train" and / or "val", e.g. ``{"train": 8, "val": 4}``.
        images_per_patch: images per ``patch<N>`` folder.
        flat: write the images at ``<split>/<name>`` rather than where their ``file_name`` puts them.
    """
    if unknown := sorted(set(samples) - {"train", "val"}):
        raise ValueError(f"Objects365 annotates the splits 'train' and 'val', not {unknown}")
    if images_per_patch < 1:
        raise ValueError(f"images_per_patch must be at least 1, got {images_per_patch}")
    root = Path(root)
    exported, contents = _detection_files(root, world, samples, masks=False)
    categories = [{"id": i + 1, "name": name.capitalize()} for i, name in enumerate(class_names("color_shape"))]
    for split, content in contents.items():
        for n, (image, (written, image_id)) in enumerate(zip(content["images"], exported[split])):
            patch = (image_id - 1) // images_per_patch
            version = "v1" if patch == 0 else "v2"
            file_name = f"images/{version}/patch{patch}/objects365_{version}_{image_id:08d}.jpg"
            path = _parent(root / split / Path(file_name).name if flat else root / file_name)
            written.rename(path)
            exported[split][n] = (path, image_id)
            image.update(file_name=file_name, license=1, url=f"http://objects365.example/{file_name}")
        for annotation in content["annotations"]:
            annotation.update(isfake=0, isreflected=0)
        (root / f"{split}2017").rmdir()  # the COCO folder the scenes were first written to, now empty
        _write_annotations(root / f"zhiyuan_objv2_{split}.json", content, categories)
    return exported


# -- grounding (MDETR's Flickr30k Entities files) ------------------------------------------------


def export_mdetr_grounding(root: str | Path, world: ShapesWorld, samples: Mapping[str, int]) -> ExportedDetection:
    """Flickr30k Entities in MDETR's layout under ``root`` (separate ground truth, what GLIP reads):
    ``mdetr_annotations/final_flickr_separateGT_<split>.json`` and ``flickr30k-images/<n>.jpg`` (JPEG, quality 95).

    Each scene is one image entry: its caption, its Flickr image id ``original_img_id`` (1000000 + the scene's
    number over the splits, as image file name), ``sentence_id`` 0 (one caption per scene), ``tokens_negative`` the
    whole caption, and ``tokens_positive_eval`` the spans of each phrase. The caption's phrases
    (``Scene.grounded_phrases``) are written in order, phrase ``k`` with one annotation per object it names: the
    tight box of the object's visible pixels (``visible_boxes``), ``tokens_positive`` the phrase's span,
    ``phrase_ids`` k, ``category_id`` 1 (MDETR's one category, "object"), ``iscrowd`` 0. Entry and annotation ids
    count from 0 in each file, as MDETR's. Returns per split the ``(image path, entry id)`` of scenes 0, 1, ... of
    the world's split.

    Args:
        root: output folder (the data module's ``root`` is ``root/flickr30k-images``).
        world: the ShapesWorld whose scenes are written (its held-out compositions are in no training scene).
        samples: scenes of "train", "val" and / or "test", e.g. ``{"train": 8, "val": 2, "test": 2}``.
    """
    if unknown := sorted(set(samples) - set(ShapesWorld.SPLITS)):
        raise ValueError(f"Flickr30k Entities has the splits {list(ShapesWorld.SPLITS)}, not {unknown}")
    root, flickr_ids = Path(root), itertools.count(1000000)
    exported: ExportedDetection = {}
    for split, count in samples.items():
        exported[split], images, annotations = [], [], []
        for entry_id in range(count):
            scene, flickr_id = world.scene(split, entry_id), next(flickr_ids)
            path = _parent(root / "flickr30k-images" / f"{flickr_id}.jpg")
            scene.image.save(path, quality=95)
            exported[split].append((path, entry_id))
            width, height = scene.image.size
            boxes = visible_boxes(scene).tolist()
            caption = scene.caption
            images.append({"id": entry_id, "file_name": path.name, "height": height, "width": width,
                           "caption": caption, "dataset_name": "flickr", "tokens_negative": [[0, len(caption)]],
                           "sentence_id": 0, "original_img_id": flickr_id,
                           "tokens_positive_eval": [[list(span)] for span, _ in scene.grounded_phrases]})  # fmt: skip
            for phrase_id, (span, objects) in enumerate(scene.grounded_phrases):
                for n in objects:
                    x1, y1, x2, y2 = boxes[n]
                    annotations.append({"id": len(annotations), "image_id": entry_id,
                                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                        "iscrowd": 0, "category_id": 1, "tokens_positive": [list(span)],
                                        "phrase_ids": phrase_id})  # fmt: skip
        categories = [{"id": 1, "name": "object", "supercategory": "object"}]
        content = {"images": images, "annotations": annotations}
        _write_annotations(root / "mdetr_annotations" / f"final_flickr_separateGT_{split}.json", content, categories)
    return exported


# -- audio (ESC-50's, UrbanSound8K's and AudioSet-style clip lists) ------------------------------
#
# ShapesWorld's sounds (lit_clip.datamodules.shapesworld.sounds: pitch = colour, timbre and rhythm = shape) in the
# layouts :mod:`lit_clip.datamodules.audio` reads. The classification exporters return ``(sound file, label)`` per
# fold, in the order of the metadata file; the clip-list exporters ``(sound file, labels)`` per split.

ExportedFolds = dict[int, list[tuple[Path, int]]]
ExportedClips = dict[str, list[tuple[Path, list[str]]]]


def sound_classes(classes: int | Sequence[str]) -> list[tuple[str, int]]:
    """``(colour-shape name, class index)`` of the classes an audio exporter writes.

    ``classes``: a number n of classes: the colour-shape classes ``9 k mod 64`` for k < n (the first eight are the
    diagonal red circle, orange square, ..., pink ring: every pitch and every timbre once); or colour-shape names.
    """
    names = class_names("color_shape")
    if isinstance(classes, int):
        if not 1 <= classes <= len(names):
            raise ValueError(f"classes must be 1..{len(names)}, got {classes}")
        return [(names[9 * k % len(names)], 9 * k % len(names)) for k in range(classes)]
    unknown = [name for name in classes if name not in names]
    if unknown or not classes:
        raise ValueError(f"unknown colour-shape class {unknown[0] if unknown else None!r}; expected names from {names}")
    return [(name, names.index(name)) for name in classes]


def export_esc50(
    root: str | Path,
    world_seed: int = 0,
    clips_per_class: int = 5,
    classes: int | Sequence[str] = 8,
    sample_rate: int = 44100,
    duration: float = 5.0,
) -> ExportedFolds:
    """ESC-50's layout: ``root/audio/<fold>-<src_file>-A-<target>.wav`` (16-bit PCM, mono) and
    ``root/meta/esc50.csv`` (filename, fold, target, category, esc10, src_file, take), rows sorted by file name as
    in ESC-50. A class's clips go to the folds 1, 2, 3, 4, 5, 1, ... in turn; ``category`` is the colour-shape name
    with "_" for spaces ("red_circle"), ``target`` the class's position in ``classes``.

    Args:
        root: output folder.
        world_seed: the ShapesWorld world the sounds come from.
        clips_per_class: clips of every class (5: one per fold).
        classes: how many classes, or which colour-shape names (see :func:`sound_classes`).
        sample_rate, duration: of every file (ESC-50's: 44.1 kHz, 5 s).
    """
    import soundfile as sf  # imported here, as only the audio exporters need it

    root = Path(root)
    sounds = _sounds(world_seed, sample_rate, duration)
    rows = []
    for target, (name, class_index) in enumerate(sound_classes(classes)):
        for clip in range(clips_per_class):
            number = target * clips_per_class + clip
            fold = clip % 5 + 1
            filename = f"{fold}-{number:06d}-A-{target}.wav"
            _, wave = sounds.single_object("train", number, class_index)
            _save_sound(sf, root / "audio" / filename, wave[:, None], sample_rate, "PCM_16")
            rows.append([filename, fold, target, _folder_name(name), "False", f"{number:06d}", "A"])
    rows.sort()
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(rows)
    exported: ExportedFolds = {fold: [] for fold in range(1, 6)}
    for filename, fold, target, *_ in rows:
        exported[fold].append((root / "audio" / filename, target))
    return exported


def export_urbansound8k(
    root: str | Path,
    world_seed: int = 0,
    clips_per_class: int = 10,
    classes: int | Sequence[str] = 10,
    sample_rates: Sequence[int] = (22050, 48000),
    channels: Sequence[int] = (1, 2),
    duration: float = 4.0,
) -> ExportedFolds:
    """UrbanSound8K's layout: ``root/audio/fold<k>/<fsID>-<classID>-0-<n>.wav`` and
    ``root/metadata/UrbanSound8K.csv`` (slice_file_name, fsID, start, end, salience, fold, classID, class), rows
    sorted by file name. A class's clips go to the folds 1..10 in turn.

    As in UrbanSound8K, the files differ: clip ``n`` takes the ``n``-th of every (sample rate, channel count)
    combination in turn, is 16- or 24-bit PCM, and lasts ``duration`` times 1, 0.75 or 0.5 (slices of up to 4 s).
    Channel ``c`` of a file is its first channel at ``0.5 ** c`` the amplitude (a stereo file's right channel is its
    left at half the amplitude).

    Args:
        root: output folder.
        world_seed: the ShapesWorld world the sounds come from.
        clips_per_class: clips of every class (10: one per fold).
        classes: how many classes, or which colour-shape names (see :func:`sound_classes`).
        sample_rates, channels: the rates and channel counts the files are written with.
        duration: the longest clip's seconds.
    """
    import soundfile as sf  # imported here, as only the audio exporters need it

    root = Path(root)
    formats = list(itertools.product(sample_rates, channels))
    sounds = {}  # (sample rate, seconds) -> ShapesWorldSounds
    rows = []
    for class_id, (name, class_index) in enumerate(sound_classes(classes)):
        for clip in range(clips_per_class):
            number = class_id * clips_per_class + clip
            fold = clip % 10 + 1
            sample_rate, channel_count = formats[number % len(formats)]
            seconds = duration * (1.0, 0.75, 0.5)[number % 3]
            key = (sample_rate, seconds)
            if key not in sounds:
                sounds[key] = _sounds(world_seed, sample_rate, seconds)
            _, wave = sounds[key].single_object("train", number, class_index)
            wave = np.stack([wave * 0.5**channel for channel in range(channel_count)], axis=1)
            fs_id = 100000 + number
            filename = f"{fs_id}-{class_id}-0-{number}.wav"
            subtype = ("PCM_16", "PCM_24")[number % 2]
            _save_sound(sf, root / "audio" / f"fold{fold}" / filename, wave, sample_rate, subtype)
            rows.append([filename, fs_id, 0.0, seconds, 1, fold, class_id, _folder_name(name)])
    rows.sort()
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    with open(root / "metadata" / "UrbanSound8K.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        writer.writerows(rows)
    exported: ExportedFolds = {fold: [] for fold in range(1, 11)}
    for filename, _, _, _, _, fold, class_id, _ in rows:
        exported[fold].append((root / "audio" / f"fold{fold}" / filename, class_id))
    return exported


def export_audio_clips_csv(
    root: str | Path,
    per_split: Mapping[str, int],
    world_seed: int = 0,
    sample_rate: int = 44100,
    duration: float = 10.0,
    max_objects: int = 2,
    path_key: str = "path",
    labels_key: str = "labels",
    label_separator: str = ";",
    separator: str = ",",
) -> ExportedClips:
    """AudioSet-style clip lists (what :class:`~lit_clip.datamodules.audio.AudioClips` reads): ``root/<split>.csv``
    with a ``path_key, labels_key`` row per clip, the sound ``audio/<split>/<index>.flac`` relative to the CSV's
    folder, the labels the colour-shape names of the scene's objects ("red circle;blue star"), sorted, distinct.

    Args:
        root: output folder.
        per_split: clips for each split written, e.g. ``{"train": 8, "val": 4}``.
        world_seed: the ShapesWorld world; max_objects: objects per scene (1 to ``max_objects``), each one sounding.
        sample_rate, duration: of every file.
        path_key, labels_key, label_separator, separator: the CSV's columns and separators.
    """
    import soundfile as sf  # imported here, as only the audio exporters need it

    root = Path(root)
    exported: ExportedClips = {split: [] for split in per_split}
    for split, index, wave, labels in _sounding_scenes(per_split, world_seed, sample_rate, duration, max_objects):
        path = root / "audio" / split / f"{index:06d}.flac"
        _save_sound(sf, path, wave[:, None], sample_rate, "PCM_16")
        exported[split].append((path, labels))
    for split, clips in exported.items():
        with open(root / f"{split}.csv", "w", newline="") as file:
            writer = csv.writer(file, delimiter=separator)
            writer.writerow([path_key, labels_key])
            writer.writerows([path.relative_to(root).as_posix(), label_separator.join(names)] for path, names in clips)
    return exported


def export_audio_webdataset(
    root: str | Path,
    samples: int,
    shard_size: int,
    world_seed: int = 0,
    sample_rate: int = 44100,
    duration: float = 10.0,
    max_objects: int = 2,
    split: str = "train",
) -> list[Path]:
    """ShapesWorld scenes' sounds as WebDataset shards ``root/shard-000000.tar``, ... of ``shard_size`` samples
    (what :class:`~lit_clip.datamodules.audio.AudioWebDataset` reads): sample ``<key>`` is ``<key>.flac`` (16-bit,
    mono) and ``<key>.txt``, the scene's colour-shape names joined with ", " (AudioSet's text), keys ``000000``,
    ``000001``, ... across shards. Returns the shard paths in order.

    Args:
        root: output folder.
        samples: clips written; the last shard holds the remainder.
        shard_size: samples per shard.
        world_seed, sample_rate, duration, max_objects: as :func:`export_audio_clips_csv`'s.
        split: the ShapesWorld split the scenes come from.
    """
    import io

    import soundfile as sf  # imported here, as only the audio exporters need them
    import webdataset as wds

    if samples < 1 or shard_size < 1:
        raise ValueError(f"samples and shard_size must be positive, got {samples} and {shard_size}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shards: list[str] = []  # ShardWriter calls `post` with each shard's name once it is complete
    with wds.ShardWriter(str(root / "shard-%06d.tar"), maxcount=shard_size, verbose=0, post=shards.append) as writer:
        scenes = _sounding_scenes({split: samples}, world_seed, sample_rate, duration, max_objects)
        for _, index, wave, labels in scenes:
            encoded = io.BytesIO()
            sf.write(encoded, wave, sample_rate, subtype="PCM_16", format="FLAC")
            writer.write({"__key__": f"{index:06d}", "flac": encoded.getvalue(), "txt": ", ".join(labels)})
    return [Path(shard) for shard in shards]


def _sounds(world_seed: int, sample_rate: int, duration: float):
    from lit_clip.datamodules.shapesworld.sounds import ShapesWorldSounds

    return ShapesWorldSounds(ShapesWorld(seed=world_seed), sample_rate, duration)


def _sounding_scenes(
    per_split: Mapping[str, int], world_seed: int, sample_rate: int, duration: float, max_objects: int
) -> Iterator[tuple[str, int, np.ndarray, list[str]]]:
    """``(split, index, sound, labels)``: the sounds of ``per_split[split]`` scenes of 1 to ``max_objects``
    objects, with the sorted distinct colour-shape names of their objects."""
    from lit_clip.datamodules.shapesworld.sounds import ShapesWorldSounds

    sounds = ShapesWorldSounds(ShapesWorld(max_objects=max_objects, seed=world_seed), sample_rate, duration)
    for split, count in per_split.items():
        for index in range(count):
            scene, wave = sounds.scene(split, index)
            yield split, index, wave, sorted({obj.name for obj in scene.objects})


def _save_sound(sf, path: Path, wave: np.ndarray, sample_rate: int, subtype: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sample_rate, subtype=subtype)


def export_vqa_v2(
    root: str | Path,
    per_split: Mapping[str, int],
    image_size: int = 64,
    questions_per_image: int = 2,
    seed: int = 0,
) -> None:
    """VQA v2's layout: ``v2_OpenEnded_mscoco_<split>_questions.json``, ``v2_mscoco_<split>_annotations.json`` and
    ``<split>/COCO_<split>_<id:012d>.jpg``, with ShapesWorld questions (see
    :mod:`lit_clip.datamodules.shapesworld.questions`); of each question's ten human answers eight are the truth, two
    another answer of its type, spelt as people type ("Yes", "two"), so that soft scores and normalisation matter.

    Args:
        root: output folder.
        per_split: images for each split written, e.g. ``{"train2014": 8, "val2014": 4}``.
        image_size, seed: image side and ShapesWorld world (2-4 objects a scene).
        questions_per_image: questions about each image (VQA v2 has about 5).
    """
    from lit_clip.datamodules.shapesworld.questions import QUESTION_TYPES, ask

    root = Path(root)
    world = ShapesWorld(image_size, 2, 4, seed)
    spelt = {"yes": "Yes", "no": "No", "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four"}
    answer_types = {"exist": "yes/no", "count": "number"}
    question_id = 0
    for split, images in per_split.items():
        questions, annotations = [], []
        for index in range(images):
            scene, image_id = world.scene("train" if split.startswith("train") else "val", index), index + 1
            _save(scene.image, root / split / f"COCO_{split}_{image_id:012d}.jpg")
            rng = np.random.default_rng([seed, index, len(split)])
            for k in range(questions_per_image):
                kind = QUESTION_TYPES[(index + k) % len(QUESTION_TYPES)]
                question = ask(scene, kind, rng, image_size) or ask(scene, "exist", rng, image_size)
                if question.kind == "exist":
                    other = "no" if question.answer == "yes" else "yes"
                elif question.kind == "count":
                    other = "1" if question.answer == "0" else "0"
                else:
                    other = "none"
                answers = [spelt.get(question.answer, question.answer)] * 8 + [other] * 2
                question_id += 1
                questions.append({"image_id": image_id, "question": question.text, "question_id": question_id})
                annotations.append({
                    "question_id": question_id, "image_id": image_id, "question_type": question.text.split()[0],
                    "answer_type": answer_types.get(question.kind, "other"), "multiple_choice_answer": question.answer,
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": n + 1}
                                for n, a in enumerate(answers)],
                })  # fmt: skip
        _parent(root / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(json.dumps({"questions": questions}))
        _parent(root / f"v2_mscoco_{split}_annotations.json").write_text(json.dumps({"annotations": annotations}))


def main(args: list[str] | None = None) -> None:
    """``python -m lit_clip.datamodules.export LAYOUT ROOT``: ShapesWorld on disk, to try a real-data config."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    layouts = ["coco", "flickr30k", "csv", "webdataset", "imagefolder", "coop", "voc", "ade20k", "coco-detection",
               "lvis-detection", "odinw-detection", "objects365-detection", "mdetr-grounding"]  # fmt: skip
    parser.add_argument("layout", choices=layouts)
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=1000, help="training samples (per class for classification)")
    parser.add_argument("--val", type=int, default=100, help="validation samples (per class for classification)")
    parser.add_argument("--test", type=int, default=100, help="test samples (per class for classification)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--dataset", default="OxfordPets", help="the CoOp data set whose layout to write")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per WebDataset shard")
    parser.add_argument("--held-out", type=int, default=16,
                        help="detection, grounding: compositions in no training scene (LVIS's rare ones)")  # fmt: skip
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
    elif options.layout == "odinw-detection":  # every category trained and evaluated: nothing held out
        odinw_splits = {"train": options.train, "valid": options.val, "test": options.test}
        export_odinw_detection(options.root, ShapesWorld(image_size=options.image_size), odinw_splits)
    elif options.layout == "objects365-detection":  # every category trained and evaluated: nothing held out
        world = ShapesWorld(image_size=options.image_size)
        export_objects365_detection(options.root, world, {"train": options.train, "val": options.val})
    elif options.layout == "mdetr-grounding":
        held = held_out_compositions(options.held_out)
        export_mdetr_grounding(options.root, ShapesWorld(image_size=options.image_size, held_out=held), splits)
        print(f"held out of training: {held}")
    elif options.layout.endswith("-detection"):
        held = held_out_compositions(options.held_out)
        world = ShapesWorld(image_size=options.image_size, held_out=held)
        export = export_coco_detection if options.layout == "coco-detection" else export_lvis_detection
        export(options.root, world, {"train": options.train, "val": options.val})
        print(f"held out of training (the novel categories): {held}")
    else:
        if options.dataset == "ImageNet":  # CoOp evaluates ImageNet on its val split
            del splits["test"]
        export_coop(options.root, splits, dataset=options.dataset, **size)
    print(f"wrote ShapesWorld in the {options.layout} layout under {options.root}")


if __name__ == "__main__":
    main()

