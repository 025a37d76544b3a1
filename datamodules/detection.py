"""Detection data: the batch every detection data module yields, its augmentation, and the open-vocabulary split.

A sample is ``{"image", "target", "index"}`` (see :class:`lit_clip.batches.DetectionBatch`): the image
normalised with CLIP's mean and std at its own size, its target's boxes as (x1, y1, x2, y2) pixels of that
image. Evaluation images keep their file's resolution: the detector resizes what it needs to and maps its
boxes back, so predictions compare with an annotation file's boxes as they are. Training images are flipped
and, as ViLD trains, optionally scale-jittered and cropped to a square (large-scale jitter).

Images with a region cache (ViLD-image's targets, :mod:`lit_clip.region_cache`) carry its regions through the
same augmentation as the objects' boxes; a region or a box the crop leaves less than a pixel of is dropped.

Below them, the data modules of real data in COCO's annotation format: :class:`COCODetection` (COCO 2017, with
the open-vocabulary split of OVR-CNN and ViLD) and :class:`LVISDetection` (LVIS v1, its rare categories novel).
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.loaders import robust_loader
from lit_clip.datamodules.images import BadSamplePolicy, check_policy, load_rgb
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from lit_clip.batches import DetectionTarget, EvaluationSet
from lit_clip.region_cache import RegionCache
from lit_clip.templates import resolve_templates
from lit_clip.transforms import normalized_tensor

log = logging.getLogger(__name__)

# A box narrower or lower than this many pixels after augmentation is no object to learn from.
MIN_BOX_SIDE = 1.0


def detection_train_transform(
    scale_jitter: tuple[float, float] | None = None, crop_size: int | None = None
) -> Callable[[dict], dict]:
    """A horizontal flip, then with ``scale_jitter`` ViLD's large-scale jitter: resize to ``crop_size`` x a random
    scale in the range (``torchvision``'s ``ScaleJitter``) and a random ``crop_size`` square crop, padded with 0."""
    steps: list[Callable] = [T.RandomHorizontalFlip()]
    if scale_jitter is not None:
        if crop_size is None:
            raise ValueError("scale_jitter needs crop_size: the side of the square the jittered image is cropped to")
        steps += [
            T.ScaleJitter((crop_size, crop_size), tuple(scale_jitter), antialias=True),
            T.RandomCrop(crop_size, pad_if_needed=True, fill=0),
        ]
    return T.Compose([*steps, *normalized_tensor()])


def detection_eval_transform() -> Callable[[dict], dict]:
    """The image normalised at its file's resolution; boxes unchanged."""
    return T.Compose(normalized_tensor())


def detection_sample(
    image: Image.Image,
    boxes: Tensor,
    labels: Tensor,
    image_id: int,
    index: int,
    transform: Callable[[dict], dict],
    masks: np.ndarray | None = None,
    regions: tuple[Tensor, Tensor] | None = None,
) -> dict:
    """One sample of a detection batch: ``image`` with its objects (``boxes`` ``[N, 4]`` x1 y1 x2 y2 in its pixels,
    ``labels`` ``[N]``, optional instance ``masks`` ``[N, H, W]`` bool) and optional cached ``regions`` (boxes
    ``[M, 4]``, embeddings ``[M, D]``), all through ``transform``."""
    size = (image.height, image.width)
    inputs = {"image": image, "boxes": _bounding_boxes(boxes, size)}
    if masks is not None:
        inputs["masks"] = tv_tensors.Mask(torch.from_numpy(np.asarray(masks, dtype=bool)).reshape(-1, *size))
    if regions is not None:
        inputs["regions"] = _bounding_boxes(regions[0], size)
    out = transform(inputs)
    kept = _large_enough(out["boxes"])
    target: DetectionTarget = {"boxes": out["boxes"][kept], "labels": labels.long()[kept], "image_id": int(image_id)}
    if masks is not None:
        target["masks"] = out["masks"][kept].bool()
    if regions is not None:
        in_view = _large_enough(out["regions"])
        target["regions"], target["region_embeddings"] = out["regions"][in_view], regions[1][in_view]
    return {"image": out["image"], "target": target, "index": index}


def _bounding_boxes(xyxy: Tensor, size: tuple[int, int]) -> tv_tensors.BoundingBoxes:
    """Boxes the v2 transforms move with an image of ``size`` (height, width)."""
    return tv_tensors.BoundingBoxes(xyxy.float().reshape(-1, 4), format="XYXY", canvas_size=size)


def _large_enough(boxes: Tensor) -> Tensor:
    return ((boxes[:, 2:] - boxes[:, :2]) >= MIN_BOX_SIDE).all(dim=1)


def detection_collate(samples: list[dict]) -> dict:
    """Samples of different sizes in one batch: images padded with 0 at the bottom and the right to the largest,
    ``image_size`` their sizes before padding, ``targets`` a list."""
    sizes = torch.tensor([sample["image"].shape[-2:] for sample in samples], dtype=torch.long).reshape(-1, 2)
    height, width = sizes.max(dim=0).values.tolist()
    images = torch.zeros(len(samples), 3, height, width)
    for image, sample in zip(images, samples):
        image[:, : sample["image"].shape[-2], : sample["image"].shape[-1]] = sample["image"]
    return {
        "image": images,
        "image_size": sizes,
        "targets": [sample["target"] for sample in samples],
        "index": torch.tensor([sample["index"] for sample in samples], dtype=torch.long),
    }


def category_subsets(classnames: Sequence[str], novel: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """The label ids of the "base" and "novel" classes among ``classnames`` (``novel``: names of theirs)."""
    unknown = sorted(set(novel) - set(classnames))
    if unknown:
        raise ValueError(f"novel classes {unknown[:5]} are not among the {len(classnames)} class names")
    novel_ids = tuple(i for i, name in enumerate(classnames) if name in set(novel))
    return {"base": tuple(i for i in range(len(classnames)) if i not in novel_ids), "novel": novel_ids}


# -- COCO-format annotation files: COCO 2017 and LVIS v1 ------------------------------------------------------

# The open-vocabulary split of COCO that OVR-CNN and ViLD train and report on (Bansal et al.'s zero-shot split):
# 48 base and 17 novel categories, named as in COCO's files. The other 15 of COCO's 80 (no WordNet synset in
# that split) are neither trained nor evaluated.
COCO_OVD_BASE: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse", "sheep", "bear",
    "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis", "kite", "surfboard", "bottle", "fork",
    "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "pizza", "donut", "chair", "bed",
    "toilet", "tv", "laptop", "mouse", "remote", "microwave", "oven", "toaster", "refrigerator", "book", "clock",
    "vase", "toothbrush",
)  # fmt: skip
COCO_OVD_NOVEL: tuple[str, ...] = (
    "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard", "skateboard", "cup", "knife",
    "cake", "couch", "keyboard", "sink", "scissors",
)  # fmt: skip

# The folders of COCO 2017's images, which LVIS v1's files name too.
COCO_IMAGE_FOLDERS = ("train2017", "val2017")

# What reading a split leaves out, as its log line counts it; evaluation keeps every image and novel category.
_LEFT_OUT = {
    "empty": "images without a base box",
    "crowd": "crowd boxes",
    "novel": "boxes of novel categories",
    "other": "boxes of categories not evaluated",
    "small": f"boxes under {MIN_BOX_SIDE:g} px after clipping",
}
_EVAL_LEFT_OUT = ("crowd", "other", "small")


@dataclass(frozen=True)
class Categories:
    """The categories a data set evaluates: their ids ascending and their ``names`` (evaluation labels index
    these), and the ``novel`` names among them (in id order too), never boxed in training. The rest, ``base``, are
    the training labels' names."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    novel: tuple[str, ...]

    @property
    def base(self) -> tuple[str, ...]:
        return tuple(name for name in self.names if name not in set(self.novel))

    def label_of(self, names: Sequence[str]) -> dict[int, int]:
        """Category id -> index into ``names`` (some of ``self.names``)."""
        id_of = dict(zip(self.names, self.ids))
        return {id_of[name]: label for label, name in enumerate(names)}

    def subsets(self) -> dict[str, tuple[int, ...]]:
        """The "base" and "novel" label ids among ``names``; none without novel categories."""
        return category_subsets(self.names, self.novel) if self.novel else {}


@dataclass(frozen=True)
class AnnotatedImage:
    """An image of an annotation file with the objects a split uses: ``boxes`` float32 ``[N, 4]`` (x1, y1, x2, y2,
    clipped to the image), ``labels`` int64 ``[N]``, and their COCO ``segmentations`` when masks are read."""

    path: Path
    key: str  # the path relative to the data root: unique over a data set, the image's name in a region cache
    image_id: int
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    segmentations: tuple | None


def instance_masks(segmentations: Sequence, height: int, width: int) -> np.ndarray:
    """``[N, H, W]`` bool of COCO segmentations: polygon lists, run-length counts or their compressed string (as
    pycocotools' ``annToMask`` reads them)."""
    masks = np.zeros((len(segmentations), height, width), dtype=bool)
    for mask, segmentation in zip(masks, segmentations):
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        mask[:] = mask_utils.decode(rle)
    return masks


class AnnotatedImages(Dataset):
    """Detection samples of annotated images (see :func:`detection_sample`), with each one's cached regions when
    ``cache`` is given."""

    def __init__(
        self, images: Sequence[AnnotatedImage], transform: Callable[[dict], dict], cache: RegionCache | None = None
    ):
        self.images, self.transform, self.cache = images, transform, cache

    def __len__(self) -> int:
        return len(self.images)

    def key(self, index: int) -> str:
        """The image's name in a region cache."""
        return self.images[index].key

    def image(self, index: int) -> Image.Image:
        """The image as its file holds it (:class:`BadSampleError` for an unreadable one)."""
        return load_rgb(self.images[index].path)

    def __getitem__(self, index: int) -> dict:
        entry = self.images[index]
        image = self.image(index)
        if (image.width, image.height) != (entry.width, entry.height):
            raise ValueError(
                f"image {entry.path} is {image.width}x{image.height} but its annotation file gives "
                f"{entry.width}x{entry.height}; expected the annotation file's own images"
            )
        masks = None if entry.segmentations is None else instance_masks(entry.segmentations, entry.height, entry.width)
        regions = self.cache.read(entry.key) if self.cache is not None else None
        boxes, labels = torch.from_numpy(entry.boxes), torch.from_numpy(entry.labels)
        return detection_sample(image, boxes, labels, entry.image_id, index, self.transform, masks, regions)


class COCOStyleDetection(L.LightningDataModule):
    """Detection data in COCO's annotation format (a json of ``images``, ``annotations``, ``categories``) under
    ``root``, images in COCO 2017's folders. Subclasses name the files (``annotation_file``, ``image_key``), the
    categories (``read_categories``, ``category_name``) and the ground truth of evaluation (``evaluation_sets``).

    - **Training** uses the base categories' boxes only: those of novel categories, of categories not evaluated
      and of crowds (``iscrowd``) are left out, and so are the images left without a box.
    - **Evaluation** reads every image of the val file, labelled over every evaluated category; crowd regions
      are no targets (the annotation file's ground truth scores them, as COCOeval does).
    - **Boxes**: COCO's (x, y, width, height) become (x1, y1, x2, y2), clipped to the image; a box under a pixel
      wide or high after that is left out. One log line per split counts all that was left out or clipped.
    - **Bad images** (undecodable, missing) follow ``bad_samples`` (see :mod:`lit_clip.datamodules.images`).

    The test loader is the val split's: COCO's and LVIS's test annotations are not public.
    """

    layout: str

    def __init__(
        self,
        root: str,
        masks: bool = False,
        scale_jitter: tuple[float, float] | None = None,
        crop_size: int | None = None,
        region_cache: str | None = None,
        templates: str | Sequence[str] = ("a photo of a {}.",),
        batch_size: int = 16,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the data's folder (see ``layout``).
            masks: give each object's instance mask too (for a Mask R-CNN and mask AP).
            scale_jitter, crop_size: ViLD's large-scale jitter for training, e.g. [0.1, 2.0] and 1024 (see
                :func:`detection_train_transform`); None: a horizontal flip alone.
            region_cache: a folder of cached CLIP embeddings of training regions (ViLD-image's targets; see
                ``lit_clip.region_cache``), keyed by the images' paths under ``root``; None: none attached.
            templates: prompt templates with one ``{}`` for a class name.
            batch_size: training images per process; eval_batch_size: evaluation images per batch (padded).
            num_workers: DataLoader worker processes.
            bad_samples: "skip" an unreadable image (left out of its batch, its index in ``skipped_index``) or
                "raise" an error naming it.
        """
        super().__init__()
        self.save_hyperparameters()
        # A subclass without these arguments (ODinW, Objects365: boxes only) passes fixed values; LightningCLI records
        # only the subclass's own arguments, so they are recorded here as the base class reads them.
        self.hparams.update(masks=masks, region_cache=region_cache)
        check_policy(bad_samples)
        self.root = Path(root)
        for folder in (self.root, *self.required_folders()):
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} not found; {self.layout}")
        self.files = {split: self.annotation_file(split) for split in ("train", "val")}
        self.templates = resolve_templates(templates)
        self._images: dict[str, list[AnnotatedImage]] = {}

    # --- what a data set defines ---------------------------------------------------------------------------
    def required_folders(self) -> tuple[Path, ...]:
        """The folders under ``root`` checked before any file is read, so that a wrong root names the layout at
        once: COCO 2017's image folders, which COCO's and LVIS's files name."""
        return tuple(self.root / name for name in COCO_IMAGE_FOLDERS)

    def annotation_file(self, split: str) -> Path:
        """The annotation file of "train" or "val"; FileNotFoundError naming the layout when it is missing."""
        raise NotImplementedError

    def image_key(self, image: dict, split: str) -> str:
        """The file of an image entry of ``split``'s annotation file, relative to ``root``."""
        raise NotImplementedError

    def category_name(self, category: dict) -> str:
        return category["name"]

    def read_categories(self, categories: list[dict], path: Path) -> Categories:
        """The evaluated and novel categories among the val file's ``categories``."""
        raise NotImplementedError

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------------------------------
    @functools.cached_property
    def categories(self) -> Categories:
        """The categories, from the val file (read on first use)."""
        return self.read_categories(_read_json(self.files["val"], self.layout)["categories"], self.files["val"])

    @property
    def classnames(self) -> list[str]:
        """The base names, which training labels index."""
        return list(self.categories.base)

    def setup(self, stage: str) -> None:
        # Read (and count) the splits now, rather than inside the first loader.
        if stage == "fit":
            self.split_images("train")
        self.split_images("val")

    def split_images(self, split: str) -> list[AnnotatedImage]:
        """The images of "train" (those with a base box, labels indexing ``classnames``) or "val" (all, labels
        indexing the evaluated names), read on first use and logged with what was left out."""
        if split not in self._images:
            self._images[split] = self._read_images(split)
        return self._images[split]

    def train_dataset(self, with_cache: bool = True) -> AnnotatedImages:
        """The training images, labelled over the base names (with the region cache attached, if any)."""
        h = self.hparams
        images = self.split_images("train")
        cache = RegionCache(h.region_cache, [image.key for image in images]) if with_cache and h.region_cache else None
        return AnnotatedImages(images, detection_train_transform(h.scale_jitter, h.crop_size), cache)

    def train_dataloader(self) -> StatefulDataLoader:
        dataset = self.train_dataset()
        require_one_batch(len(dataset), self.hparams.batch_size, self.trainer, "training images")
        return self._loader(dataset, train=True)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader(AnnotatedImages(self.split_images("val"), detection_eval_transform()), train=False)

    def test_dataloader(self) -> StatefulDataLoader:
        return self.val_dataloader()

    def _loader(self, dataset: Dataset, train: bool) -> StatefulDataLoader:
        return robust_loader(dataset, self.hparams, detection_collate, train)

    def _read_images(self, split: str) -> list[AnnotatedImage]:
        path, training = self.files[split], split == "train"
        content = _read_json(path, self.layout)
        categories = self.categories
        name_of = {category["id"]: self.category_name(category) for category in content["categories"]}
        for category_id, name in zip(categories.ids, categories.names):
            if name_of.get(category_id) != name:
                raise ValueError(
                    f"{path} names category {category_id} {name_of.get(category_id)!r}, {self.files['val']} "
                    f"{name!r}; expected the files of one data set"
                )
        label_of = categories.label_of(categories.base if training else categories.names)
        novel_ids = {i for i, name in zip(categories.ids, categories.names) if name in set(categories.novel)}
        entries = {entry["id"]: entry for entry in content["images"]}
        count = Counter()
        objects: dict[int, list[tuple[np.ndarray, int, Any]]] = defaultdict(list)
        for annotation in content["annotations"]:
            category_id, image_id = annotation["category_id"], annotation["image_id"]
            if category_id not in name_of:
                raise ValueError(
                    f"{path}: annotation {annotation['id']} has category id {category_id}, which is not among the "
                    f"file's {len(name_of)} categories"
                )
            if image_id not in entries:
                raise ValueError(
                    f"{path}: annotation {annotation['id']} is of image {image_id}, which the file does not list"
                )
            if self.hparams.masks and "segmentation" not in annotation:
                raise ValueError(f"{path}: annotation {annotation['id']} has no segmentation, which masks=True reads")
            if annotation.get("iscrowd", 0):
                count["crowd"] += 1
            elif category_id not in label_of:
                count["novel" if category_id in novel_ids else "other"] += 1
            else:
                entry = entries[image_id]
                box, clipped = _clipped_box(annotation["bbox"], entry["width"], entry["height"])
                if (box[2:] - box[:2] < MIN_BOX_SIDE).any():
                    count["small"] += 1
                    continue
                count["clipped"] += clipped
                objects[image_id].append((box, label_of[category_id], annotation.get("segmentation")))
        images = []
        for entry in content["images"]:
            found = objects.get(entry["id"], [])
            if training and not found:
                count["empty"] += 1
                continue
            boxes, labels, segmentations = zip(*found) if found else ((), (), ())
            key = self.image_key(entry, split)
            images.append(AnnotatedImage(
                self.root / key, key, entry["id"], entry["height"], entry["width"],
                np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64),
                tuple(segmentations) if self.hparams.masks else None,
            ))  # fmt: skip
        kinds = _LEFT_OUT if training else {kind: _LEFT_OUT[kind] for kind in _EVAL_LEFT_OUT}
        left_out = ", ".join(f"{count[kind]} {what}" for kind, what in kinds.items())
        log.info(
            "%s: %d images with %d boxes for %s; left out %s; clipped %d boxes to their image",
            path, len(images), sum(len(image.labels) for image in images), "training" if training else "evaluation",
            left_out, count["clipped"],
        )  # fmt: skip
        return images


def _read_json(path: Path, layout: str) -> dict:
    try:
        with open(path) as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is no JSON file ({error}); {layout}") from error


def _clipped_box(bbox: Sequence[float], width: int, height: int) -> tuple[np.ndarray, bool]:
    """COCO's (x, y, width, height) as (x1, y1, x2, y2) clipped to the image, and whether clipping changed it."""
    x, y, w, h = bbox
    box = np.array([x, y, x + w, y + h], dtype=np.float64)
    clipped = np.clip(box, 0, [width, height, width, height])
    return clipped, bool((clipped != box).any())


def _required_file(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {layout}")
    return path


class COCODetection(COCOStyleDetection):
    """COCO 2017 detection from its official files, open-vocabulary (OVR-CNN's and ViLD's split) or all 80.

    ``split="ovd"``: the 65 categories of ``COCO_OVD_BASE`` (48, the training labels) and ``COCO_OVD_NOVEL``
    (17), evaluated together, AP also reported on "base" and "novel" (the generalised protocol). ``split="all"``:
    every category of the file (COCO's 80), none novel. ``novel`` overrides the novel names, e.g. to read a
    ShapesWorld export (``lit_clip.datamodules.export.export_coco_detection``) with ``split="all"``.

    Names are the file's ("tv", "couch", "hair drier"), ordered by category id; ``classnames`` are the base
    ones. ``evaluation_sets`` holds the val file as a pycocotools ``COCO`` object restricted to the evaluated
    categories, built once on first use, so that COCOeval's overall AP is over those alone.
    """

    layout = """expected COCO 2017's layout:
  <root>/
    annotations/instances_{train,val}2017.json
    train2017/<id:012d>.jpg
    val2017/<id:012d>.jpg"""

    def __init__(
        self,
        root: str,
        split: Literal["ovd", "all"] = "ovd",
        novel: Sequence[str] | None = None,
        masks: bool = False,
        scale_jitter: tuple[float, float] | None = None,
        crop_size: int | None = None,
        region_cache: str | None = None,
        templates: str | Sequence[str] = ("a photo of a {}.",),
        batch_size: int = 16,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the COCO folder (see ``layout``).
            split: "ovd", the open-vocabulary split's 65 categories, or "all", every category of the file.
            novel: names of the novel categories, never boxed in training; by default ``COCO_OVD_NOVEL`` for
                "ovd" and none for "all".
            masks, scale_jitter, crop_size, region_cache, templates, batch_size, eval_batch_size, num_workers,
                bad_samples: as for every ``COCOStyleDetection``.
        """
        if split not in ("ovd", "all"):
            raise ValueError(f"split must be 'ovd' (OVR-CNN's 48 base + 17 novel categories) or 'all', not {split!r}")
        super().__init__(
            root, masks, scale_jitter, crop_size, region_cache, templates, batch_size, eval_batch_size, num_workers,
            bad_samples,
        )  # fmt: skip

    def annotation_file(self, split: str) -> Path:
        return _required_file(self.root / "annotations" / f"instances_{split}2017.json", self.layout)

    def image_key(self, image: dict, split: str) -> str:
        return f"{split}2017/{image['file_name']}"

    def read_categories(self, categories: list[dict], path: Path) -> Categories:
        name_of = {category["id"]: category["name"] for category in categories}
        ids, novel = sorted(name_of), self.hparams.novel
        if self.hparams.split == "ovd":
            missing = [name for name in (*COCO_OVD_BASE, *COCO_OVD_NOVEL) if name not in set(name_of.values())]
            if missing:
                raise ValueError(
                    f"{path} lacks {len(missing)} categories of the open-vocabulary split: {missing}; split='ovd' "
                    "expects COCO's names (split='all' evaluates the file's own categories, novel= names some)"
                )
            ids = [i for i in ids if name_of[i] in {*COCO_OVD_BASE, *COCO_OVD_NOVEL}]
            novel = COCO_OVD_NOVEL if novel is None else novel
        names = tuple(name_of[i] for i in ids)
        unknown = [name for name in novel or () if name not in names]
        if unknown:
            raise ValueError(f"novel categories {unknown} are not among the {len(names)} evaluated ones of {path}")
        return Categories(tuple(ids), names, tuple(name for name in names if name in set(novel or ())))

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        categories = self.categories
        return [EvaluationSet("", categories.names, subsets=categories.subsets(), annotations=self._ground_truth)]

    @functools.cached_property
    def _ground_truth(self) -> COCO:
        """The val file with the evaluated categories' annotations and categories only."""
        content = _read_json(self.files["val"], self.layout)
        evaluated = set(self.categories.ids)
        content["categories"] = [c for c in content["categories"] if c["id"] in evaluated]
        content["annotations"] = [a for a in content["annotations"] if a["category_id"] in evaluated]
        ground_truth = COCO()
        ground_truth.dataset = content
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            ground_truth.createIndex()
        return ground_truth


class LVISDetection(COCOStyleDetection):
    """LVIS v1 detection from its official files: 1203 categories, the rare ones novel (ViLD's split).

    Base: the frequent ("f") and common ("c") categories, the training labels; novel: the rare ("r"), never boxed
    in training. Names are the files' ``name`` with "_" as a space ("traffic_light" -> "traffic light"; the
    synonyms are not used), ordered by category id. Images are where their ``coco_url`` puts them under ``root``
    (``val2017/000000397133.jpg``): LVIS v1's train and val images are COCO 2017's, from both of its folders.
    ``evaluation_sets`` names the val file for LVIS's federated evaluation (``backend="lvis"``: APr, APc, APf).
    """

    layout = """expected LVIS v1's layout (its images are COCO 2017's):
  <root>/
    lvis_v1_{train,val}.json       (or annotations/lvis_v1_{train,val}.json)
    train2017/<id:012d>.jpg
    val2017/<id:012d>.jpg          as the files' coco_url name them"""

    def annotation_file(self, split: str) -> Path:
        name = f"lvis_v1_{split}.json"
        for path in (self.root / name, self.root / "annotations" / name):
            if path.is_file():
                return path
        raise FileNotFoundError(f"{name} not found in {self.root} nor in {self.root / 'annotations'}; {self.layout}")

    def image_key(self, image: dict, split: str) -> str:
        return "/".join(image["coco_url"].split("/")[-2:])

    def category_name(self, category: dict) -> str:
        return category["name"].replace("_", " ")

    def read_categories(self, categories: list[dict], path: Path) -> Categories:
        ordered = sorted(categories, key=lambda category: category["id"])
        names = tuple(self.category_name(category) for category in ordered)
        novel = tuple(name for name, category in zip(names, ordered) if category["frequency"] == "r")
        return Categories(tuple(category["id"] for category in ordered), names, novel)

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        categories = self.categories
        return [EvaluationSet("", categories.names, subsets=categories.subsets(), annotations=str(self.files["val"]),
                              backend="lvis")]  # fmt: skip


class ODinWDetection(COCOStyleDetection):
    """One data set of ODinW (GLIP's Object Detection in the Wild: 13 or 35 small data sets, Roboflow's COCO exports),
    every category trained and evaluated, none novel; reported on its test split.

    Splits are Roboflow's folders: "train", "valid" (the val split) and "test", each with its annotation file and
    its images. The file is GLIP's ``annotations_without_background.json`` when present (what GLIP's ODinW configs
    read), else Roboflow's ``_annotations.coco.json``. Roboflow's files open with a category of no boxes named after
    the data set (id 0, ``supercategory`` "none", the super-category of the real ones): categories with no box in
    any split and ``supercategory`` "none" are left out, so that the prompt and AP are over the real categories
    alone; a category without boxes but with a real super-category is kept (the data set names it).

    Names are the files' ``name``, ordered by category id. ``evaluation_sets`` holds the val file (the test file for
    "test") as a pycocotools ``COCO`` object restricted to the evaluated categories, built once per split.
    """

    layout = """expected an ODinW data set in Roboflow's COCO export (as GLIP's odinw configs read it):
  <root>/
    train/annotations_without_background.json   (or Roboflow's _annotations.coco.json)
    train/<file_name>                           the images the file names, beside it
    valid/...                                   the val split, as train
    test/...                                    the test split, as train"""

    # The folder of each split; ODinW reports on "test".
    folders = {"train": "train", "val": "valid", "test": "test"}
    annotation_names = ("annotations_without_background.json", "_annotations.coco.json")

    def __init__(
        self,
        root: str,
        scale_jitter: tuple[float, float] | None = None,
        crop_size: int | None = None,
        templates: str | Sequence[str] = ("a photo of a {}.",),
        batch_size: int = 16,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the data set's folder (see ``layout``), e.g. ``odinw/AerialMaritimeDrone/large``.
            scale_jitter, crop_size, templates, batch_size, eval_batch_size, num_workers, bad_samples: as for every
                ``COCOStyleDetection`` (Roboflow's exports have no masks, nor does ODinW cache regions).
        """
        super().__init__(
            root, False, scale_jitter, crop_size, None, templates, batch_size, eval_batch_size, num_workers,
            bad_samples,
        )  # fmt: skip
        self.files["test"] = self.annotation_file("test")
        self._ground_truths: dict[str, COCO] = {}

    def required_folders(self) -> tuple[Path, ...]:
        return tuple(self.root / folder for folder in self.folders.values())

    def annotation_file(self, split: str) -> Path:
        folder = self.root / self.folders[split]
        for name in self.annotation_names:
            if (folder / name).is_file():
                return folder / name
        raise FileNotFoundError(f"neither {' nor '.join(self.annotation_names)} found in {folder}; {self.layout}")

    def image_key(self, image: dict, split: str) -> str:
        return f"{self.folders[split]}/{image['file_name']}"

    def read_categories(self, categories: list[dict], path: Path) -> Categories:
        boxed = {annotation["category_id"] for file in self.files.values()
                 for annotation in _read_json(file, self.layout)["annotations"]}  # fmt: skip
        kept = sorted((c for c in categories if c["id"] in boxed or c.get("supercategory") != "none"),
                      key=lambda category: category["id"])  # fmt: skip
        names = tuple(self.category_name(category) for category in kept)
        if repeated := sorted(name for name, count in Counter(names).items() if count > 1):
            raise ValueError(f"{path} names several evaluated categories {repeated}; expected one category per name")
        return Categories(tuple(category["id"] for category in kept), names, ())

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        split = "test" if stage == "test" else "val"
        return [EvaluationSet("", self.categories.names, annotations=self.ground_truth(split))]

    def ground_truth(self, split: str) -> COCO:
        """The file of "val" or "test" with the evaluated categories' annotations and categories only (so that
        COCOeval's AP is over those alone), the annotations numbered from 1; built on first use."""
        if split not in self._ground_truths:
            content = _read_json(self.files[split], self.layout)
            evaluated = set(self.categories.ids)
            content["categories"] = [c for c in content["categories"] if c["id"] in evaluated]
            content["annotations"] = [a for a in content["annotations"] if a["category_id"] in evaluated]
            # Roboflow counts annotation ids from 0, and COCOeval reads a match with id 0 as none (its box would be
            # a miss however well found): the ground truth's own ids, from 1.
            for number, annotation in enumerate(content["annotations"], start=1):
                annotation["id"] = number
            ground_truth = COCO()
            ground_truth.dataset = content
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
                ground_truth.createIndex()
            self._ground_truths[split] = ground_truth
        return self._ground_truths[split]

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "test":
            self.split_images("test")

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader(AnnotatedImages(self.split_images("test"), detection_eval_transform()), train=False)


def _evaluated_ground_truth(path: Path, layout: str, evaluated: Sequence[int]) -> COCO:
    """The annotation file at ``path`` as a pycocotools ``COCO`` object with the ``evaluated`` categories' annotations
    and categories only, so that COCOeval's overall AP is over those alone."""
    content = _read_json(path, layout)
    kept = set(evaluated)
    content["categories"] = [c for c in content["categories"] if c["id"] in kept]
    content["annotations"] = [a for a in content["annotations"] if a["category_id"] in kept]
    ground_truth = COCO()
    ground_truth.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ground_truth.createIndex()
    return ground_truth


# Where an Objects365 image may be, relative to the data root, given its entry's file_name ("images/v1/patch8/
# objects365_v1_00420917.jpg") and its split: the file_name itself, then under the split's folder as is, as the
# official archives unpack (patch<N>/<name>), flattened, and as YOLOv5's download script moves them.
_OBJECTS365_PLACES: tuple[Callable[[Path, str], Path], ...] = (
    lambda name, split: name,
    lambda name, split: Path(split) / name,
    lambda name, split: Path(split) / name.parent.name / name.name,
    lambda name, split: Path(split) / name.name,
    lambda name, split: Path("images") / split / name.name,
)
# The entries of a split tried for a place that holds their file before the split is given up on: a few missing
# images are bad samples, a place with none of them is a wrong root or layout.
_OBJECTS365_PROBES = 16


class Objects365Detection(COCOStyleDetection):
    """Objects365 v2 detection from its official files, the detection data of GLIP's pretraining: 365 categories,
    every one trained and evaluated, none novel (GLIP pretrains on them all).

    Names are the files' ``name`` ("Person", "Sneakers", "Other Shoes"), ordered by category id; ``classnames`` are
    all of them. An image entry's ``file_name`` names it under the images' folders (``images/v1/patch8/
    objects365_v1_00420917.jpg``). The images are where that name puts them under ``root``, or where the official
    archives or a flattened copy put them under the split's folder (see ``layout``). The first entry of a split
    whose file is found in one of those places decides the place of the whole split, so that reading the 1.7M
    training entries checks no further file; an entry found nowhere before that one keeps its ``file_name`` (a
    bad sample when read), and when none of the first 16 entries (of all, in a smaller split) is found anywhere,
    the error lists the places.

    ``evaluation_sets`` holds the val file as a pycocotools ``COCO`` object restricted to the evaluated categories
    (all of them), built once on first use, as :class:`COCODetection`'s with ``split="all"``. The test loader is the
    val split's: Objects365's test annotations are not public.
    """

    layout = """expected Objects365 v2's layout:
  <root>/
    zhiyuan_objv2_{train,val}.json          (or annotations/zhiyuan_objv2_{train,val}.json)
    images/{v1,v2}/patch<N>/<name>.jpg      where each entry's file_name puts them
  or the images in each split's folder, <split> train or val:
    <split>/images/{v1,v2}/patch<N>/<name>.jpg   (the file_name under the split's folder)
    <split>/patch<N>/<name>.jpg                  (the official archives, unpacked)
    <split>/<name>.jpg                           (flattened; or images/<split>/<name>.jpg)"""

    def __init__(
        self,
        root: str,
        scale_jitter: tuple[float, float] | None = None,
        crop_size: int | None = None,
        templates: str | Sequence[str] = ("a photo of a {}.",),
        batch_size: int = 16,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the Objects365 folder (see ``layout``).
            scale_jitter, crop_size, templates, batch_size, eval_batch_size, num_workers, bad_samples: as for every
                ``COCOStyleDetection`` (Objects365 has boxes only: no masks, nor a region cache).
        """
        super().__init__(
            root, False, scale_jitter, crop_size, None, templates, batch_size, eval_batch_size, num_workers,
            bad_samples,
        )  # fmt: skip
        self._places: dict[str, int] = {}  # split -> index into _OBJECTS365_PLACES, once found
        self._misses: Counter = Counter()  # split -> entries found in no place before the place was
        self._missed: dict[str, tuple[int, list[Path]]] = {}  # split -> the last of those, with the places tried

    def required_folders(self) -> tuple[Path, ...]:
        if (self.root / "images").is_dir():
            return (self.root / "images",)
        return (self.root / "train", self.root / "val")

    def annotation_file(self, split: str) -> Path:
        name = f"zhiyuan_objv2_{split}.json"
        for path in (self.root / name, self.root / "annotations" / name):
            if path.is_file():
                return path
        raise FileNotFoundError(f"{name} not found in {self.root} nor in {self.root / 'annotations'}; {self.layout}")

    def image_key(self, image: dict, split: str) -> str:
        name = Path(image["file_name"])
        if split not in self._places:
            places = [self.root / place(name, split) for place in _OBJECTS365_PLACES]
            found = next((k for k, path in enumerate(places) if path.is_file()), None)
            if found is None:
                self._misses[split] += 1
                self._missed[split] = (image["id"], places)
                if self._misses[split] >= _OBJECTS365_PROBES:
                    raise self._images_not_found(split)
                return str(name)
            self._places[split] = found
            log.info("%s: the images are where image %s is, %s", self.files[split], image["id"], places[found])
        return str(_OBJECTS365_PLACES[self._places[split]](name, split))

    def split_images(self, split: str) -> list[AnnotatedImage]:
        images = super().split_images(split)
        if images and split not in self._places:  # fewer entries than probes, none found
            raise self._images_not_found(split)
        return images

    def _images_not_found(self, split: str) -> FileNotFoundError:
        image_id, places = self._missed[split]
        tried = "\n  ".join(str(path) for path in places)
        return FileNotFoundError(
            f"none of the first {self._misses[split]} images of {self.files[split]} is found; the last, image "
            f"{image_id}, is at none of:\n  {tried}\n{self.layout}"
        )

    def read_categories(self, categories: list[dict], path: Path) -> Categories:
        ordered = sorted(categories, key=lambda category: category["id"])
        names = tuple(self.category_name(category) for category in ordered)
        if repeated := sorted(name for name, count in Counter(names).items() if count > 1):
            raise ValueError(f"{path} names several categories {repeated}; expected one category per name")
        return Categories(tuple(category["id"] for category in ordered), names, ())

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        return [EvaluationSet("", self.categories.names, annotations=self._ground_truth)]

    @functools.cached_property
    def _ground_truth(self) -> COCO:
        """The val file with the evaluated categories' annotations and categories only."""
        return _evaluated_ground_truth(self.files["val"], self.layout, self.categories.ids)
