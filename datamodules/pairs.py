"""Image-caption data sets read from disk: COCO Captions, Flickr30k (Karpathy's splits) and CSV files.

Training batches have the format of ``ShapesWorldCaptions``: ``{"image", "text", "caption",
"index", "skipped_index"}``, one caption per image, drawn at random from the image's captions on
every access. Validation and test follow the CLIP paper's retrieval protocol, where an image
has several captions: one sample per image with all its captions, collated by
:func:`collate_image_captions`. Images are read with :func:`~lit_clip.datamodules.images.load_rgb`;
a bad sample (an unreadable image, an image without a usable caption) is left out of its batch
and counted in ``skipped_index``, or stops the run, as ``bad_samples`` says.
"""
from __future__ import annotations

import csv
import itertools
import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import lightning as L
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
from lit_clip.datamodules.predict import prediction_loaders
from PIL import Image
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.tokenizer import tokenize
from lit_clip.transforms import clip_eval_transform, clip_train_transform, image_entries, with_ssl_views

log = logging.getLogger(__name__)

# An image file and its captions.
CaptionedImage = tuple[Path, list[str]]
Transform = Callable[[Image.Image], Tensor]

# The splits each Lightning stage reads, so that setup() finds bad paths before the run starts.
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


class RandomCaptionDataset(Dataset):
    """Training pairs ``{"image", "text", "caption", "index"}``: an image with one of its captions."""

    def __init__(self, pairs: Sequence[CaptionedImage], transform: Transform, context_length: int):
        self.pairs, self.transform, self.context_length = pairs, transform, context_length

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        path, captions = _with_captions(self.pairs[index])
        # Drawn anew at every access, from torch's generator: seeded by seed_everything, and
        # differently in every DataLoader worker.
        caption = captions[int(torch.randint(len(captions), ()))]
        return {
            **image_entries(self.transform, load_rgb(path)),
            "text": tokenize(caption, context_length=self.context_length)[0],
            "caption": caption,
            "index": index,
        }


class ImageCaptionsDataset(Dataset):
    """Retrieval samples: an image with all its captions, numbered over the split.

    ``{"image", "index", "text": [n, context_length], "text_index": [n], "caption": list of n}``,
    where ``text_index`` numbers the captions of the whole split in order.
    """

    def __init__(self, pairs: Sequence[CaptionedImage], transform: Transform, context_length: int):
        self.pairs, self.transform, self.context_length = pairs, transform, context_length
        self.first_caption = [0, *itertools.accumulate(len(captions) for _, captions in pairs)]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        path, captions = _with_captions(self.pairs[index])
        return {
            "image": self.transform(load_rgb(path)),
            "index": index,
            "text": tokenize(captions, context_length=self.context_length),
            "text_index": torch.arange(self.first_caption[index], self.first_caption[index + 1]),
            "caption": list(captions),
        }


def collate_image_captions(samples: list[dict]) -> dict:
    """Batch :class:`ImageCaptionsDataset` samples for retrieval.

    Returns ``{"image": [B, 3, S, S], "index": [B], "text": [T, context_length], "text_index": [T],
    "text_image_index": [T], "caption": list of T}``: all captions of the B images, with
    ``text_image_index`` giving each caption's image index (as in ``index``).
    """
    index = torch.tensor([sample["index"] for sample in samples])
    counts = torch.tensor([len(sample["caption"]) for sample in samples])
    return {
        "image": torch.stack([sample["image"] for sample in samples]),
        "index": index,
        "text": torch.cat([sample["text"] for sample in samples]),
        "text_index": torch.cat([sample["text_index"] for sample in samples]),
        "text_image_index": index.repeat_interleave(counts),
        "caption": [caption for sample in samples for caption in sample["caption"]],
    }


class _CaptionedImagesDataModule(L.LightningDataModule):
    """Loaders over ``pairs(split)``; subclasses read the splits in ``_read``.

    The subclass's ``hparams`` hold ``image_size``, ``context_length``, ``batch_size``,
    ``num_workers``, ``bad_samples`` and ``ssl_views``.
    """

    classnames = None  # captions only: no zero-shot classification during evaluation

    def __init__(self):
        super().__init__()
        self._pairs: dict[str, list[CaptionedImage]] = {}

    def _read(self, split: str) -> dict[str, list[CaptionedImage]]:
        """The pairs of ``split``, and of any other split read from the same file."""
        raise NotImplementedError

    def has_split(self, split: str) -> bool:
        """Whether ``split`` was given; only CsvPairs may lack one (val, test)."""
        return True

    def pairs(self, split: str) -> list[CaptionedImage]:
        """The images of ``split`` with their captions, read on first use."""
        if split not in self._pairs:
            self._pairs.update(self._read(split))
        return self._pairs[split]

    def setup(self, stage: str) -> None:
        # Read and probe every split the stage needs now, so that a wrong path or a folder of unreadable
        # images stops the run before its first training step rather than after an epoch.
        for split in _STAGE_SPLITS.get(stage, ()):
            if self.has_split(split):
                _probe_images(self.pairs(split), split, self.hparams.bad_samples)

    def _loader(self, dataset: Dataset, shuffle: bool = False, collate_fn: Callable | None = None) -> StatefulDataLoader:
        h = self.hparams
        if shuffle:  # training: full batches only
            require_one_batch(len(dataset), h.batch_size, self.trainer, "training images")
        # Stateful, as ShapesWorldCaptions' loaders: checkpoints keep the position within the epoch.
        return StatefulDataLoader(
            RobustSamples(dataset, h.bad_samples),
            batch_size=h.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,  # the gathered contrastive loss needs equal batches on every rank
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            collate_fn=without_bad_samples(collate_fn or default_collate, training=shuffle),
        )

    def _retrieval_loader(self, split: str) -> StatefulDataLoader:
        h = self.hparams
        dataset = ImageCaptionsDataset(self.pairs(split), clip_eval_transform(h.image_size), h.context_length)
        return self._loader(dataset, collate_fn=collate_image_captions)

    def train_dataloader(self) -> StatefulDataLoader:
        h = self.hparams
        dataset = RandomCaptionDataset(self.pairs("train"), self.train_transform(), h.context_length)
        return self._loader(dataset, shuffle=True)

    def train_transform(self) -> Transform:
        """CLIP's training augmentation; with ``ssl_views``, SLIP's: a crop of 50-100 % and two SimCLR views."""
        h = self.hparams
        if h.ssl_views:
            return with_ssl_views(clip_train_transform(h.image_size, scale=(0.5, 1.0)), h.image_size)
        return clip_train_transform(h.image_size)

    def val_dataloader(self) -> StatefulDataLoader | list:
        # Validation is optional where the data set has a choice: without it, fit runs with none.
        return self._retrieval_loader("val") if self.has_split("val") else []

    def test_dataloader(self) -> StatefulDataLoader:
        return self._retrieval_loader("test")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        return prediction_loaders(self.hparams, default=self.test_dataloader)


class CocoCaptions(_CaptionedImagesDataModule):
    """COCO Captions (2014 or 2017) from its ``captions_<split>.json`` files and image folders.

    Training draws one of an image's (about five) captions at each access; validation and test
    rank all captions of every image. COCO 2017's test images have no public captions, so the
    test split is the val split unless ``test_annotations`` is given (e.g. a captions file of
    Karpathy's 5k test images).
    """

    def __init__(
        self,
        root: str,
        train_annotations: str = "annotations/captions_train2017.json",
        val_annotations: str = "annotations/captions_val2017.json",
        test_annotations: str | None = None,
        train_images: str = "train2017",
        val_images: str = "val2017",
        test_images: str | None = None,
        image_size: int = 224,
        context_length: int = 77,
        batch_size: int = 64,
        num_workers: int = 4,
        predict_images: str | None = None,
        predict_texts: str | None = None,
        bad_samples: BadSamplePolicy = "skip",
        ssl_views: bool = False,
    ):
        """
        Args:
            root: the COCO folder; the other paths are relative to it (or absolute).
            train_annotations, val_annotations: COCO captions files (``{"images", "annotations"}``).
            test_annotations: captions file of the test split; by default the val split's.
            train_images, val_images: the folders holding the images the captions files name.
            test_images: the test images' folder; by default ``val_images``.
            image_size: side of the square model input.
            context_length: token length of the captions; at most the model's context length.
            batch_size: per process; images per batch (evaluation batches hold all their captions).
            num_workers: DataLoader worker processes.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test split (see ``lit_clip.datamodules.predict``).
            predict_texts: ``lit-clip predict``'s texts: a file with one text per line.
            bad_samples: "skip" a bad sample (left out of its batch, its index in ``skipped_index``) or
                "raise" an error naming it. Captions that are empty or not text are left out with a
                warning, or raised when the file is read.
            ssl_views: give training samples SLIP's two SimCLR views (``ssl_view_1``, ``ssl_view_2``) beside
                the CLIP view, which is then a crop of 50-100 % (see ``lit_clip.transforms.with_ssl_views``).
        """
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)
        self.root = Path(root)

    def _read(self, split: str) -> dict[str, list[CaptionedImage]]:
        h = self.hparams
        if split == "test":
            annotations, images = h.test_annotations or h.val_annotations, h.test_images or h.val_images
        else:
            annotations, images = h[f"{split}_annotations"], h[f"{split}_images"]
        return {split: _read_coco(self.root / annotations, self.root / images, h.bad_samples)}


class Flickr30k(_CaptionedImagesDataModule):
    """Flickr30k with Karpathy's splits (29k train + 1k restval, 1k val, 1k test images, 5 captions each).

    Reads ``dataset_flickr30k.json`` (``{"images": [{"filename", "split", "sentences": [{"raw"}]}]}``);
    "restval" images train, as in Karpathy's and CLIP's use of the split.
    """

    def __init__(
        self,
        root: str,
        karpathy_json: str = "dataset_flickr30k.json",
        images_dir: str = "flickr30k-images",
        image_size: int = 224,
        context_length: int = 77,
        batch_size: int = 64,
        num_workers: int = 4,
        predict_images: str | None = None,
        predict_texts: str | None = None,
        bad_samples: BadSamplePolicy = "skip",
        ssl_views: bool = False,
    ):
        """
        Args:
            root: the Flickr30k folder; the other paths are relative to it (or absolute).
            karpathy_json: Karpathy's split file.
            images_dir: the folder holding the images the split file names.
            image_size: side of the square model input.
            context_length: token length of the captions; at most the model's context length.
            batch_size: per process; images per batch (evaluation batches hold all their captions).
            num_workers: DataLoader worker processes.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test split (see ``lit_clip.datamodules.predict``).
            predict_texts: ``lit-clip predict``'s texts: a file with one text per line.
            bad_samples: "skip" a bad sample (left out of its batch, its index in ``skipped_index``) or
                "raise" an error naming it. Captions that are empty or not text are left out with a
                warning, or raised when the file is read.
            ssl_views: give training samples SLIP's two SimCLR views (``ssl_view_1``, ``ssl_view_2``) beside
                the CLIP view, which is then a crop of 50-100 % (see ``lit_clip.transforms.with_ssl_views``).
        """
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)
        self.root = Path(root)

    def _read(self, split: str) -> dict[str, list[CaptionedImage]]:
        h = self.hparams
        return _read_karpathy(self.root / h.karpathy_json, self.root / h.images_dir, h.bad_samples)


class CsvPairs(_CaptionedImagesDataModule):
    """Image-caption pairs listed in CSV files, as open_clip's ``--dataset-type csv`` reads them.

    Each row names an image (relative to the CSV file's folder, or absolute) and one caption. For
    validation and test, rows of the same image are grouped, so it is ranked with all its captions.
    """

    def __init__(
        self,
        train_file: str,
        val_file: str | None = None,
        test_file: str | None = None,
        image_key: str = "filepath",
        caption_key: str = "title",
        separator: str = "\t",
        image_size: int = 224,
        context_length: int = 77,
        batch_size: int = 64,
        num_workers: int = 4,
        predict_images: str | None = None,
        predict_texts: str | None = None,
        bad_samples: BadSamplePolicy = "skip",
        ssl_views: bool = False,
    ):
        """
        Args:
            train_file: CSV file of the training pairs.
            val_file: CSV file of the validation pairs; without it, no validation.
            test_file: CSV file of the test pairs; needed only for testing.
            image_key, caption_key: the columns of the image path and the caption (open_clip's
                ``--csv-img-key``, ``--csv-caption-key``).
            separator: the field separator (open_clip's ``--csv-separator``), a tab by default.
            image_size: side of the square model input.
            context_length: token length of the captions; at most the model's context length.
            batch_size: per process; images per batch (evaluation batches hold all their captions).
            num_workers: DataLoader worker processes.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test split (see ``lit_clip.datamodules.predict``).
            predict_texts: ``lit-clip predict``'s texts: a file with one text per line.
            bad_samples: "skip" a bad sample (left out of its batch, its index in ``skipped_index``) or
                "raise" an error naming it. Captions that are empty or not text are left out with a
                warning, or raised when the file is read.
            ssl_views: give training samples SLIP's two SimCLR views (``ssl_view_1``, ``ssl_view_2``) beside
                the CLIP view, which is then a crop of 50-100 % (see ``lit_clip.transforms.with_ssl_views``).
        """
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)

    def has_split(self, split: str) -> bool:
        return self.hparams[f"{split}_file"] is not None

    def _read(self, split: str) -> dict[str, list[CaptionedImage]]:
        h = self.hparams
        if not self.has_split(split):
            raise ValueError(f"CsvPairs has no {split} split: give {split}_file")
        path = Path(h[f"{split}_file"])
        return {split: _read_csv(path, h.image_key, h.caption_key, h.separator, split != "train", h.bad_samples)}


# -- readers ------------------------------------------------------------------------------------


def _read_coco(annotations: Path, image_dir: Path, policy: BadSamplePolicy) -> list[CaptionedImage]:
    expected = (
        'expected COCO\'s captions format: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}'
    )
    # Read here rather than by COCO(path), which accepts a file without these keys as empty.
    content = _read_json(annotations, ("images", "annotations"), expected)
    _require_dir(image_dir, f"the images of {annotations}")
    coco = COCO()
    coco.dataset = content
    try:
        coco.createIndex()
        pairs = [
            (image_dir / coco.imgs[image_id]["file_name"], [entry["caption"] for entry in coco.imgToAnns[image_id]])
            for image_id in sorted(coco.getImgIds())
        ]
    except KeyError as error:  # e.g. an instances_*.json, whose annotations have no caption
        raise ValueError(f"{annotations}: an entry has no {error} key; {expected}") from error
    return _captioned(pairs, f"{annotations}", policy)


def _read_karpathy(path: Path, image_dir: Path, policy: BadSamplePolicy) -> dict[str, list[CaptionedImage]]:
    expected = 'expected Karpathy\'s format: {"images": [{"filename", "split", "sentences": [{"raw"}]}]}'
    content = _read_json(path, ("images",), expected)
    _require_dir(image_dir, f"the images of {path}")
    pairs: dict[str, list[CaptionedImage]] = {"train": [], "val": [], "test": []}
    try:
        for image in content["images"]:
            split = "train" if image["split"] == "restval" else image["split"]
            if split not in pairs:
                raise ValueError(
                    f"{path}: {image['filename']} has split {split!r}; expected train, restval, val or test"
                )
            path = image_dir / image.get("filepath", "") / image["filename"]  # COCO's entries name their folder
            pairs[split].append((path, [sentence["raw"] for sentence in image["sentences"]]))
    except KeyError as error:
        raise ValueError(f"{path}: an image entry has no {error} key; {expected}") from error
    return {split: _captioned(split_pairs, f"the {split} split of {path}", policy) for split, split_pairs in pairs.items()}


def _read_csv(
    path: Path, image_key: str, caption_key: str, separator: str, group: bool, policy: BadSamplePolicy
) -> list[CaptionedImage]:
    """One pair per row, or (``group``) one per image with the captions of all its rows."""
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {path} not found")
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file, delimiter=separator)
        try:
            columns = reader.fieldnames or []
            for key in (image_key, caption_key):
                if key not in columns:
                    raise ValueError(
                        f"{path} has no column {key!r}; its header, split at {separator!r}, has the columns {columns}"
                    )
            rows = []
            for row in reader:
                if row[image_key] is None or row[caption_key] is None:
                    raise ValueError(f"{path}, line {reader.line_num}: fewer fields than the header's {len(columns)}")
                rows.append((path.parent / row[image_key], row[caption_key]))
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{path}, after line {reader.line_num}: byte {error.object[error.start]:#04x} is not UTF-8; "
                "expected a UTF-8 text file (re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8)"
            ) from error
    if not group:
        return _captioned([(image, [caption]) for image, caption in rows], f"{path}", policy)
    captions_of: dict[Path, list[str]] = {}
    for image, caption in rows:
        captions_of.setdefault(image, []).append(caption)
    return _captioned(list(captions_of.items()), f"{path}", policy)


# -- helpers ------------------------------------------------------------------------------------


def _captioned(pairs: list[tuple[Path, list]], source: str, policy: BadSamplePolicy) -> list[CaptionedImage]:
    """The pairs with their captions checked: one that is empty or not text stops the run here, naming
    its image (policy "raise"), or is left out with a warning ("skip"). An image left without a caption
    stays in the list: it is a bad sample, counted when it is read. No captioned image at all is an error."""
    checked, left_out = [], []
    for image, captions in pairs:
        kept = []
        for caption in captions:
            problem = _caption_problem(caption)
            if problem is None:
                kept.append(caption.strip())
            elif policy == "raise":
                raise ValueError(
                    f"{source}: a caption of {image} {problem}; expected non-empty text "
                    "(bad_samples: skip leaves such captions out)"
                )
            else:
                left_out.append(f"a caption of {image} {problem}")
        checked.append((image, kept))
    if left_out:
        log.warning("%s: left out %d captions that are empty or not text (first: %s)", source, len(left_out), left_out[0])
    if not any(captions for _, captions in checked):
        raise ValueError(f"{source} lists no image with a caption")
    return checked


def _caption_problem(caption) -> str | None:
    if not isinstance(caption, str):
        return f"is {caption!r}, a {type(caption).__name__}, not text"
    if not caption.strip():
        return "is empty"
    return None


def _with_captions(pair: CaptionedImage) -> CaptionedImage:
    path, captions = pair
    if not captions:
        raise BadSampleError(f"{path}: no caption (each of its captions was empty or not text)")
    return pair


def _probe_images(pairs: list[CaptionedImage], split: str, policy: BadSamplePolicy, probes: int = 8) -> None:
    """Decode a few images spread over ``split``: with policy "raise" any failure, and with "skip" all of
    them failing, stops the run now, naming the files."""
    probed = pairs[:: max(1, len(pairs) // probes)][:probes]
    errors = []
    for path, _ in probed:
        try:
            load_rgb(path)
        except BadSampleError as error:
            if policy == "raise":
                raise
            errors.append(str(error))
    if errors and len(errors) == len(probed):
        raise BadSampleError(
            f"none of {len(errors)} images probed across the {split} split can be read, e.g. {errors[0]}; "
            "is the image folder right?"
        )


def _read_json(path: Path, keys: Sequence[str], expected: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {expected}")
    try:
        with open(path) as file:
            content = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); {expected}") from error
    for key in keys:
        if not isinstance(content, dict) or key not in content:
            raise ValueError(f"{path} has no {key!r} key; {expected}")
    return content


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"image folder {path} not found; it should hold {what}")
