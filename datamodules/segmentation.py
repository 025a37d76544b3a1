"""Semantic segmentation data sets read from their official layouts: PASCAL VOC 2012 (with SBD's augmented
training set), ADE20K, PASCAL Context (59 classes, or 60 with its background), COCO-Stuff (171 classes) and
COCO-Object (its 80 things and background).

- **Labels**: ids ``0 .. len(classnames) - 1``, ``IGNORE_INDEX`` (255) for pixels of no class (VOC's object
  borders, ADE20K's and Context's unlabelled 0, COCO-Stuff's 255). A mask value outside the data set's
  label ids is an error naming the file: it means a wrong layout or a wrong data set, not a bad sample.
- **Class names** as the language-driven and zero-shot segmentation papers prompt them: ADE20K's first
  synonym of the SceneParsing objectInfo150 list (LSeg), COCO-Stuff's and PASCAL Context's names of mmseg,
  VOC's with its compound words split ("dining table", "potted plant", "tv monitor") so that prompts read
  as English.
- **Training** crops as LSeg (PyTorch-Encoding) makes them: a random horizontal flip, the long side scaled
  to a random length in [0.5, 2] x ``base_size`` (aspect kept; the mask nearest), padding to at least
  ``crop_size`` (image 0, mask 255) and a random ``crop_size`` square.
- **Evaluation** at the original resolution: one image per batch by default; larger batches pad images
  with 0 and masks with 255 at the bottom and right to the largest image of the batch.
- **Bad images** (undecodable, empty) follow ``bad_samples`` (see :mod:`lit_clip.datamodules.images`).

Splits are "train" and "val"; the test loader is the validation set, on which the papers report.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import (
    BadSampleError,
    BadSamplePolicy,
    RobustSamples,
    check_policy,
    load_rgb,
    without_bad_samples,
)
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from lit_clip.batches import IGNORE_INDEX
from lit_clip.templates import resolve_templates
from lit_clip.transforms import normalized_tensor

SegmentationSample = tuple[Path, Path]  # (image file, mask file)

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv monitor",
)  # fmt: skip

ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip

PASCAL_CONTEXT_59_CLASSES: tuple[str, ...] = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building",
    "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog",
    "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike",
    "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves",
    "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall",
    "water", "window", "wood",
)  # fmt: skip

COCO_STUFF_171_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge", "building-other",
    "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes",
    "clouds", "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other", "fruit",
    "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves", "light", "mat", "metal",
    "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other",
    "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone",
    "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable", "wall-brick",
    "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)  # fmt: skip

# Decoders report broken files as any of these (see lit_clip.datamodules.images).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def label_lookup(first: int, count: int) -> np.ndarray:
    """From a mask file's values (0-255) to label ids: ``first .. first + count - 1`` become ``0 .. count - 1``;
    values below ``first`` (an unlabelled 0) and 255 become ``IGNORE_INDEX``; every other value -1 (invalid)."""
    lookup = np.full(256, -1, dtype=np.int16)
    lookup[:first] = IGNORE_INDEX
    lookup[first : first + count] = np.arange(count)
    lookup[255] = IGNORE_INDEX
    return lookup


def read_mask(path: Path, lookup: np.ndarray) -> np.ndarray:
    """The label ids ``[H, W]`` (uint8) of a single-channel mask file: palette indices (VOC) or grey values.

    Raises:
        BadSampleError: for a file that cannot be decoded.
        ValueError: for a colour image or a value that ``lookup`` marks invalid, naming the file.
    """
    try:
        with Image.open(path) as file:
            mode, values = file.mode, np.asarray(file)  # a palette image's indices, not its colours
    except _DECODE_ERRORS as error:
        raise BadSampleError(f"{path}: cannot decode mask ({type(error).__name__}: {error})") from error
    if mode not in ("P", "L"):
        raise ValueError(f"{path}: a {mode} image; expected a single-channel PNG of label ids (palette or grey)")
    labels = lookup[values]
    if (labels < 0).any():
        invalid = np.unique(values[labels < 0]).tolist()
        valid = np.flatnonzero(lookup >= 0).tolist()
        raise ValueError(
            f"{path}: mask values {invalid[:10]} are outside the label set (expected {valid[0]}..{valid[-2]} "
            "or 255); is this the data set the module reads?"
        )
    return labels.astype(np.uint8)


class RandomLongSide(T.Transform):
    """Resize so that the long side has a random length in ``[low, high]``, keeping the aspect ratio
    (bilinear for images; masks are always resized nearest)."""

    def __init__(self, low: int, high: int):
        super().__init__()
        self.low, self.high = low, high

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = T.query_size(flat_inputs)
        scale = int(torch.randint(self.low, self.high + 1, ())) / max(height, width)
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(
            T.functional.resize, inpt, params["size"], interpolation=T.InterpolationMode.BILINEAR, antialias=True
        )


def segmentation_train_transform(base_size: int = 520, crop_size: int = 480) -> Callable[[dict], dict]:
    """LSeg's training augmentation of ``{"image": PIL image, "mask": tv_tensors.Mask}``: flip, random scale of
    the long side in [0.5, 2] x ``base_size``, pad (image 0, mask 255) and random crop of ``crop_size``."""
    return T.Compose(
        [
            T.RandomHorizontalFlip(),
            RandomLongSide(base_size // 2, base_size * 2),
            T.ToImage(),
            T.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
            *normalized_tensor(),
        ]
    )


def segmentation_eval_transform() -> Callable[[dict], dict]:
    """The image normalised at its original resolution; the mask unchanged."""
    return T.Compose(normalized_tensor())


def pad_collate(samples: list[dict]) -> dict:
    """Evaluation samples of different sizes in one batch: images padded with 0, masks with ``IGNORE_INDEX``,
    at the bottom and the right, to the largest height and width of the batch."""
    height = max(sample["image"].shape[-2] for sample in samples)
    width = max(sample["image"].shape[-1] for sample in samples)
    images = torch.zeros(len(samples), 3, height, width)
    masks = torch.full((len(samples), height, width), IGNORE_INDEX, dtype=torch.long)
    for image, mask, sample in zip(images, masks, samples):
        h, w = sample["mask"].shape
        image[:, :h, :w], mask[:h, :w] = sample["image"], sample["mask"]
    return {"image": images, "mask": masks, "index": torch.tensor([sample["index"] for sample in samples])}


class SegmentationFiles(Dataset):
    """``{"image", "mask", "index"}`` for ``(image file, mask file)`` pairs; ``transform`` takes and returns
    ``{"image", "mask"}`` (a PIL image and a ``tv_tensors.Mask``)."""

    def __init__(self, samples: Sequence[SegmentationSample], lookup: np.ndarray, transform: Callable[[dict], dict]):
        self.samples, self.lookup, self.transform = samples, lookup, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        image_path, mask_path = self.samples[index]
        image = load_rgb(image_path)
        mask = read_mask(mask_path, self.lookup)
        if mask.shape != (image.height, image.width):
            raise ValueError(
                f"image {image_path} is {image.width}x{image.height} but its mask {mask_path} is "
                f"{mask.shape[1]}x{mask.shape[0]}; expected the same size"
            )
        sample = self.transform({"image": image, "mask": tv_tensors.Mask(torch.from_numpy(mask))})
        return {"image": sample["image"], "mask": sample["mask"].long(), "index": index}


class SegmentationDataModule(L.LightningDataModule):
    """Loaders over ``samples(split)``; subclasses set ``classes`` (the label names, ``classnames`` once built),
    ``lookup``, ``data_folder`` (under ``root``) and ``layout`` (the expected tree, for errors), and list the
    samples of ``self.base``."""

    classes: tuple[str, ...]
    lookup: np.ndarray
    data_folder: str
    required_folder = ""  # a folder under data_folder that must be there (the images, where masks sit apart)
    layout: str

    def __init__(
        self,
        root: str,
        base_size: int = 520,
        crop_size: int = 480,
        templates: str | Sequence[str] = ("a photo of a {}.",),
        batch_size: int = 16,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        classnames: Sequence[str] | None = None,
    ):
        """
        Args:
            root: the folder holding the data set's top folder (``data_folder``: see ``layout``).
            base_size, crop_size: training crops: the long side scaled to [0.5, 2] x base_size, then a random
                crop_size square (LSeg: 520 and 480).
            templates: prompt templates with one ``{}`` for a label (LSeg prompts the bare label: ``["{}"]``).
            batch_size: training images per process; eval_batch_size: evaluation images per batch (1: each at
                its own size; more: padded, images with 0 and masks with 255).
            num_workers: DataLoader worker processes.
            bad_samples: "skip" an undecodable image or mask (left out of its batch, its index in
                ``skipped_index``) or "raise" an error naming it.
            classnames: other names for the labels, in label order (a paper's own wording, such as GroupViT's
                "table", "plant", "monitor" for VOC); by default ``classes``.
        """
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)
        self.base = Path(root) / self.data_folder
        if not (self.base / self.required_folder).is_dir():
            raise FileNotFoundError(f"{self.base / self.required_folder} not found; {self.layout}")
        if classnames is not None and len(classnames) != len(self.classes):
            raise ValueError(
                f"classnames names {len(classnames)} labels; {type(self).__name__} has {len(self.classes)}: "
                f"{list(self.classes)}"
            )
        self.classnames = list(self.classes if classnames is None else classnames)
        self.templates = resolve_templates(templates)

    def samples(self, split: str) -> list[SegmentationSample]:
        raise NotImplementedError

    def _loader(self, split: str, train: bool) -> DataLoader:
        h = self.hparams
        samples = self.samples(split)
        if train:
            require_one_batch(len(samples), h.batch_size, self.trainer, "training images")
        transform = segmentation_train_transform(h.base_size, h.crop_size) if train else segmentation_eval_transform()
        return DataLoader(
            RobustSamples(SegmentationFiles(samples, self.lookup, transform), h.bad_samples),
            batch_size=h.batch_size if train else h.eval_batch_size,
            shuffle=train,
            drop_last=train,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            collate_fn=without_bad_samples(default_collate if train else pad_collate, training=train),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)


class PascalVOCSegmentation(SegmentationDataModule):
    """PASCAL VOC 2012: 21 labels, "background" first; training on SBD's augmented set when it is there."""

    classes = VOC_CLASSES
    data_folder = "VOCdevkit/VOC2012"
    required_folder = "JPEGImages"
    lookup = label_lookup(0, len(VOC_CLASSES))
    layout = """expected PASCAL VOC 2012's layout:
  <root>/VOCdevkit/VOC2012/
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png                  palette PNGs: class ids, 255 on object borders
    ImageSets/Segmentation/{train,val}.txt      one id per line
  and for the augmented training set (SBD, "VOC aug"):
    SegmentationClassAug/<id>.png               grey PNGs of class ids
    ImageSets/SegmentationAug/train_aug.txt     one id (or "<image path> <mask path>") per line"""

    def __init__(
        self,
        root: str,
        augmented: bool | None = None,
        base_size: int = 520,
        crop_size: int = 480,
        templates: str | Sequence[str] = ("a photo of a {}.",),
        batch_size: int = 16,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        classnames: Sequence[str] | None = None,
    ):
        """
        Args:
            root: the folder holding ``VOCdevkit/``.
            augmented: train on ``train_aug`` (10,582 images with SBD's masks): None when it is present,
                True always (an error when it is missing), False never (the 1,464 of ``train``).
            base_size, crop_size, templates, batch_size, eval_batch_size, num_workers, bad_samples, classnames:
                as for every ``SegmentationDataModule``.
        """
        super().__init__(
            root, base_size, crop_size, templates, batch_size, eval_batch_size, num_workers, bad_samples, classnames
        )
        aug_list = self.base / "ImageSets" / "SegmentationAug" / "train_aug.txt"
        present = aug_list.is_file() and (self.base / "SegmentationClassAug").is_dir()
        if augmented and not present:
            raise FileNotFoundError(
                f"augmented=True but {aug_list} or {self.base / 'SegmentationClassAug'} is missing; {self.layout}"
            )
        self.augmented = present if augmented is None else augmented

    def samples(self, split: str) -> list[SegmentationSample]:
        if split == "train" and self.augmented:
            list_file, masks = self.base / "ImageSets" / "SegmentationAug" / "train_aug.txt", "SegmentationClassAug"
        else:
            list_file, masks = self.base / "ImageSets" / "Segmentation" / f"{split}.txt", "SegmentationClass"
        return _listed(self.base, list_file, masks, self.layout)


class ADE20KSegmentation(SegmentationDataModule):
    """ADE20K (SceneParsing, ADEChallengeData2016): 150 labels; its unlabelled 0 is ignored."""

    classes = ADE20K_CLASSES
    data_folder = "ADEChallengeData2016"
    lookup = label_lookup(1, len(ADE20K_CLASSES))
    layout = """expected ADE20K's layout (ADEChallengeData2016.zip):
  <root>/ADEChallengeData2016/
    images/{training,validation}/<name>.jpg
    annotations/{training,validation}/<name>.png    grey PNGs: 0 unlabelled, 1..150 the classes"""

    def samples(self, split: str) -> list[SegmentationSample]:
        folder = {"train": "training", "val": "validation"}[split]
        return _paired_folders(self.base / "images" / folder, self.base / "annotations" / folder, ".png", self.layout)


class PascalContextSegmentation(SegmentationDataModule):
    """PASCAL Context with 59 labels, in mmseg's converted layout; its background (0) is ignored."""

    classes = PASCAL_CONTEXT_59_CLASSES
    data_folder = "VOCdevkit/VOC2010"
    required_folder = "JPEGImages"
    lookup = label_lookup(1, len(PASCAL_CONTEXT_59_CLASSES))
    layout = """expected PASCAL Context in mmseg's layout (tools/dataset_converters/pascal_context.py):
  <root>/VOCdevkit/VOC2010/
    JPEGImages/<id>.jpg
    SegmentationClassContext/<id>.png            grey PNGs: 0 background, 1..59 the classes
    ImageSets/SegmentationContext/{train,val}.txt  one id per line"""

    def samples(self, split: str) -> list[SegmentationSample]:
        list_file = self.base / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        return _listed(self.base, list_file, "SegmentationClassContext", self.layout)


class PascalContext60Segmentation(PascalContextSegmentation):
    """PASCAL Context with 60 labels: its background (0) is a label, "background" first (GroupViT's evaluation)."""

    classes = ("background", *PASCAL_CONTEXT_59_CLASSES)
    lookup = label_lookup(0, len(PASCAL_CONTEXT_59_CLASSES) + 1)


class COCOStuffSegmentation(SegmentationDataModule):
    """COCO-Stuff 164k with 171 labels, in mmseg's layout (``*_labelTrainIds.png``: 0..170, 255 unlabelled)."""

    classes = COCO_STUFF_171_CLASSES
    data_folder = "coco_stuff164k"
    lookup = label_lookup(0, len(COCO_STUFF_171_CLASSES))
    layout = """expected COCO-Stuff 164k in mmseg's layout (tools/dataset_converters/coco_stuff164k.py):
  <root>/coco_stuff164k/
    images/{train2017,val2017}/<id>.jpg
    annotations/{train2017,val2017}/<id>_labelTrainIds.png    grey PNGs: 0..170, 255 unlabelled"""

    def samples(self, split: str) -> list[SegmentationSample]:
        folder = f"{split}2017"
        return _paired_folders(
            self.base / "images" / folder, self.base / "annotations" / folder, "_labelTrainIds.png", self.layout
        )


def coco_object_lookup() -> np.ndarray:
    """COCO-Stuff's train ids to COCO-Object's labels (GroupViT's ``convert_coco_object.py``): the 80 things
    (0-79) become 1-80, the 91 stuff classes (80-170) background 0, 255 stays unlabelled."""
    lookup = np.full(256, -1, dtype=np.int16)
    lookup[:80] = np.arange(1, 81)
    lookup[80:171] = 0
    lookup[255] = IGNORE_INDEX
    return lookup


class COCOObjectSegmentation(COCOStuffSegmentation):
    """COCO-Object: "background" and COCO's 80 things, read from COCO-Stuff 164k's masks (stuff is background),
    the data set of GroupViT's COCO evaluation."""

    classes = ("background", *COCO_STUFF_171_CLASSES[:80])
    lookup = coco_object_lookup()


# -- listing helpers ----------------------------------------------------------------------------


def _listed(base: Path, list_file: Path, mask_folder: str, layout: str) -> list[SegmentationSample]:
    """``base/JPEGImages/<id>.jpg`` with ``base/<mask_folder>/<id>.png`` for the ids of a split list: one per line,
    or the stem of a line's first path (DeepLab's "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png")."""
    if not list_file.is_file():
        raise FileNotFoundError(f"split list {list_file} not found; {layout}")
    ids = [Path(line.split()[0]).stem for line in list_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{list_file} lists no sample; {layout}")
    return _existing([(base / "JPEGImages" / f"{i}.jpg", base / mask_folder / f"{i}.png") for i in ids], layout)


def _existing(samples: list[SegmentationSample], layout: str) -> list[SegmentationSample]:
    """The samples, after checking that every listed file is there (the first missing one is named)."""
    missing = [path for pair in samples for path in pair if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} not found ({len(missing)} listed files missing); {layout}")
    return samples


def _paired_folders(image_dir: Path, mask_dir: Path, mask_suffix: str, layout: str) -> list[SegmentationSample]:
    """Every ``<name>.jpg`` of ``image_dir`` (sorted) with ``mask_dir/<name><mask_suffix>``."""
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found; {layout}")
    images = sorted(path for path in image_dir.iterdir() if path.suffix.lower() == ".jpg")
    if not images:
        raise FileNotFoundError(f"no .jpg images in {image_dir}; {layout}")
    return _existing([(image, mask_dir / f"{image.stem}{mask_suffix}") for image in images], layout)


__all__ = [
    "ADE20KSegmentation",
    "COCOObjectSegmentation",
    "COCOStuffSegmentation",
    "PascalContext60Segmentation",
    "PascalContextSegmentation",
    "PascalVOCSegmentation",
    "label_lookup",
    "pad_collate",
    "read_mask",
    "segmentation_eval_transform",
    "segmentation_train_transform",
]
