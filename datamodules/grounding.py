"""Grounding data: images with a caption whose phrases name boxes (GLIP), the batch every grounding data module
yields (:class:`lit_clip.batches.GroundingBatch`).

A sample is a detection sample (:func:`lit_clip.datamodules.detection.detection_sample`: the image at its own
size, boxes in its pixels, the same augmentation) whose ``target`` also holds the caption's ``phrases`` (character
spans) and whose box labels index them. Captions are checked against their phrases and boxes when read: a span
outside its caption or a box without a phrase stops with the file and the entry named.

Grounding captions are never flipped: "to the left of" would then be false (GLIP's flip swaps the words; ours
leaves the image as it is).

Below them, :class:`MDETRGrounding`: the grounding files GLIP trains and evaluates on, in MDETR's layout (Flickr30k
Entities, GoldG); then GLIP's pretraining mixture, :class:`GroundingMixture`: detection data read as grounding
(:class:`DetectionAsGrounding`) and grounding data in one training loader.
"""
from __future__ import annotations

import argparse
import contextvars
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jsonargparse
import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.detection import (
    MIN_BOX_SIDE,
    _clipped_box,
    _read_json,
    _required_file,
    detection_collate,
    detection_eval_transform,
    detection_sample,
)
from lit_clip.datamodules.images import BadSamplePolicy, RobustSamples, check_policy, load_rgb, without_bad_samples
from lit_clip.datamodules.loaders import robust_loader
from PIL import Image
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.batches import EvaluationSet
from lit_clip.grounding import Span, check_phrases, training_prompt

log = logging.getLogger(__name__)


def grounding_sample(
    image: Image.Image,
    caption: str,
    phrases: Sequence[Sequence[Span]],
    boxes: Tensor,
    labels: Tensor,
    image_id: int,
    index: int,
    transform: Callable[[dict], dict],
    where: str,
    masks: np.ndarray | None = None,
) -> dict:
    """One sample of a grounding batch: ``image`` with its ``boxes`` ``[N, 4]`` (x1, y1, x2, y2 pixels), box ``n``
    grounding phrase ``labels[n]`` of ``caption``; ``phrases[k]`` the character spans of phrase ``k``. ``where``
    names the sample in errors (a file and its entry)."""
    check_phrases(caption, phrases, labels.tolist(), where)
    sample = detection_sample(image, boxes, labels, image_id, index, transform, masks)
    sample["target"]["phrases"] = [[(int(start), int(end)) for start, end in phrase] for phrase in phrases]
    sample["caption"] = caption
    return sample


def grounding_collate(samples: list[dict]) -> dict:
    """Detection's collation (images padded, ``image_size``, ``targets``) with the captions."""
    return {**detection_collate(samples), "caption": [sample["caption"] for sample in samples]}


# -- MDETR's grounding files: Flickr30k Entities, GoldG ---------------------------------------------------------

# What reading a split leaves out, as its log line counts it; evaluation keeps every image.
_LEFT_OUT = {
    "crowd": "crowd boxes",
    "small": f"boxes under {MIN_BOX_SIDE:g} px after clipping",
    "boxless": "phrases left without a box",
    "empty": "images without a box",
}


@dataclass(frozen=True)
class GroundedImage:
    """An image entry of a grounding file: its caption, the ``phrases`` of it that ground boxes (character spans,
    end exclusive), ``boxes`` float32 ``[N, 4]`` (x1, y1, x2, y2, clipped to the image) and ``labels`` int64 ``[N]``
    (each box's phrase); ``where`` names the file and the entry in errors."""

    path: Path
    where: str
    image_id: int
    height: int
    width: int
    caption: str
    phrases: tuple[tuple[Span, ...], ...]
    boxes: np.ndarray
    labels: np.ndarray


class GroundedImages(Dataset):
    """Grounding samples of grounded images (see :func:`grounding_sample`)."""

    def __init__(self, images: Sequence[GroundedImage], transform: Callable[[dict], dict]):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        entry = self.images[index]
        image = load_rgb(entry.path)
        if (image.width, image.height) != (entry.width, entry.height):
            raise ValueError(
                f"image {entry.path} is {image.width}x{image.height} but {entry.where} gives "
                f"{entry.width}x{entry.height}; expected the annotation file's own images"
            )
        boxes, labels = torch.from_numpy(entry.boxes), torch.from_numpy(entry.labels)
        return grounding_sample(image, entry.caption, entry.phrases, boxes, labels, entry.image_id, index,
                                self.transform, entry.where)  # fmt: skip


class MDETRGrounding(L.LightningDataModule):
    """Phrase grounding from MDETR's annotation files (modulated COCO), the files GLIP trains and evaluates on:
    Flickr30k Entities (``final_flickr_separateGT_{train,val,test}.json``, images ``flickr30k-images/``) and GoldG's
    ``final_mixed_train_no_coco.json`` (Visual Genome's images, GQA's ``gqa/images/``).

    A file's ``images`` are (image, caption) entries, one per caption (a Flickr image has five); its
    ``annotations`` are boxes (COCO's x, y, width, height), each grounding the phrase of its entry's caption at the
    character spans ``tokens_positive``. Each entry is one sample:

    - **Phrases**: the distinct ``tokens_positive`` of the entry's boxes, in the order first met; boxes with the
      same spans ground one phrase (Flickr's separate ground truth: a phrase of two people has two boxes). Each
      box's label is its phrase's index. ``tokens_positive_eval`` and ``phrase_ids`` are not read: the boxes'
      spans already are the phrases to ground.
    - **Boxes** become (x1, y1, x2, y2) clipped to the image; a box under a pixel wide or high after that is left
      out, so is a crowd box (as MDETR), and so is a phrase left without a box. Training leaves out entries without
      a box; evaluation keeps every entry. One log line per split counts it all.
    - **Errors**: a box without a phrase (no ``tokens_positive``), a span outside its caption, a box of an entry
      the file does not list stop with the file and the entry named. Unreadable images follow ``bad_samples``.

    Evaluation is phrase-grounding recall (``evaluation_sets``: one set with ``phrase_grounding``), on each
    phrase's boxes apart or merged into their union (``merge_boxes``, Flickr30k Entities' merged protocol; MDETR's
    ``mergedGT`` files hold the merged boxes themselves). ``merge_boxes`` is this module's property, which the
    method reads to build its metric; there is no fixed vocabulary (``classnames`` is empty). Captions are never
    flipped (see the module's docstring).
    """

    layout = """expected MDETR's grounding annotations (modulated COCO) and the images they name:
  <train_file>, <val_file>, <test_file>   e.g. mdetr_annotations/final_flickr_separateGT_{train,val,test}.json
                                          (GoldG: final_mixed_train_no_coco.json, with GQA's images)
  <root>/<file_name>                      each image entry's file, e.g. flickr30k-images/1000092795.jpg"""

    def __init__(
        self,
        root: str,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        merge_boxes: bool = False,
        batch_size: int = 16,
        eval_batch_size: int = 8,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the folder of the images the files name (``flickr30k-images``; ``gqa/images`` for GoldG's).
            train_file, val_file, test_file: MDETR's annotation file of each split (see ``layout``); None: no such
                split (its loader is an error saying so).
            merge_boxes: score a phrase against the union of its boxes (Flickr30k Entities' merged protocol)
                rather than against any of them; read by the method through the ``merge_boxes`` property.
            batch_size: training samples per process; eval_batch_size: evaluation samples per batch (padded).
            num_workers: DataLoader worker processes.
            bad_samples: "skip" an unreadable image (left out of its batch, its index in ``skipped_index``) or
                "raise" an error naming it.
        """
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} not found; {self.layout}")
        given = {"train": train_file, "val": val_file, "test": test_file}
        self.files = {split: _required_file(Path(file), self.layout) for split, file in given.items() if file}
        self._images: dict[str, list[GroundedImage]] = {}

    @property
    def classnames(self) -> list[str]:
        """None: every caption is its own vocabulary."""
        return []

    @property
    def merge_boxes(self) -> bool:
        """Whether phrase-grounding recall merges a phrase's boxes into their union (see the class's docstring)."""
        return self.hparams.merge_boxes

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        return [EvaluationSet("", (), phrase_grounding=True)]

    def setup(self, stage: str) -> None:
        # Read (and count) the splits now, rather than inside the first loader.
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, ())
        for split in splits:
            if split in self.files:
                self.split_images(split)

    def split_images(self, split: str) -> list[GroundedImage]:
        """The entries of "train" (those with a box), "val" or "test" (all), read on first use and logged with
        what was left out."""
        if split not in self.files:
            raise ValueError(
                f"MDETRGrounding was given no {split}_file; give one, or (for val) run with limit_val_batches=0"
            )
        if split not in self._images:
            self._images[split] = self._read_images(split)
        return self._images[split]

    def train_dataset(self) -> GroundedImages:
        """The training entries (those with a box) as grounding samples; an unreadable image raises
        :class:`BadSampleError` (the loader's ``bad_samples`` policy decides)."""
        return GroundedImages(self.split_images("train"), detection_eval_transform())

    def train_dataloader(self) -> StatefulDataLoader:
        dataset = self.train_dataset()
        require_one_batch(len(dataset), self.hparams.batch_size, self.trainer, "training captions")
        return self._loader(dataset, train=True)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader(GroundedImages(self.split_images("val"), detection_eval_transform()), train=False)

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader(GroundedImages(self.split_images("test"), detection_eval_transform()), train=False)

    def _loader(self, dataset: Dataset, train: bool) -> StatefulDataLoader:
        return robust_loader(dataset, self.hparams, grounding_collate, train)

    def _read_images(self, split: str) -> list[GroundedImage]:
        path, training = self.files[split], split == "train"
        content = _read_json(path, self.layout)
        for key in ("images", "annotations"):
            if key not in content:
                raise ValueError(f"{path} has no {key!r}; {self.layout}")
        entries = {entry["id"]: entry for entry in content["images"]}
        count = Counter()
        # Per entry: its phrases in the order first met (including those whose boxes all are left out, so that
        # every span of the file is checked), and its boxes with their phrase's index, in the file's order.
        phrases: dict[int, dict[tuple[Span, ...], int]] = {image_id: {} for image_id in entries}
        objects: dict[int, list[tuple[np.ndarray, int]]] = {image_id: [] for image_id in entries}
        for annotation in content["annotations"]:
            image_id = annotation["image_id"]
            if image_id not in entries:
                raise ValueError(
                    f"{path}: annotation {annotation['id']} is of image {image_id}, which the file does not list"
                )
            phrase = _phrase(annotation, path)
            index = phrases[image_id].setdefault(phrase, len(phrases[image_id]))
            if annotation.get("iscrowd", 0):
                count["crowd"] += 1
                continue
            entry = entries[image_id]
            box, clipped = _clipped_box(annotation["bbox"], entry["width"], entry["height"])
            if (box[2:] - box[:2] < MIN_BOX_SIDE).any():
                count["small"] += 1
                continue
            count["clipped"] += clipped
            objects[image_id].append((box, index))
        images = []
        for entry in content["images"]:
            where = f"{path}: image {entry['id']}"
            if not isinstance(entry.get("caption"), str):
                raise ValueError(f"{where} has no caption; expected MDETR's image entries with a 'caption'")
            check_phrases(entry["caption"], list(phrases[entry["id"]]), [], where)
            found = objects[entry["id"]]
            grounded = sorted({index for _, index in found})  # the phrases left with a box, in the order first met
            count["boxless"] += len(phrases[entry["id"]]) - len(grounded)
            if training and not found:
                count["empty"] += 1
                continue
            relabel = {index: label for label, index in enumerate(grounded)}
            spans = list(phrases[entry["id"]])
            images.append(GroundedImage(
                self.root / entry["file_name"], where, entry["id"], entry["height"], entry["width"], entry["caption"],
                tuple(spans[index] for index in grounded),
                np.asarray([box for box, _ in found], dtype=np.float32).reshape(-1, 4),
                np.asarray([relabel[index] for _, index in found], dtype=np.int64),
            ))  # fmt: skip
        kinds = _LEFT_OUT if training else {kind: what for kind, what in _LEFT_OUT.items() if kind != "empty"}
        left_out = ", ".join(f"{count[kind]} {what}" for kind, what in kinds.items())
        log.info(
            "%s: %d images with %d boxes of %d phrases for %s; left out %s; clipped %d boxes to their image",
            path, len(images), sum(len(image.labels) for image in images), sum(len(i.phrases) for i in images),
            "training" if training else "evaluation", left_out, count["clipped"],
        )  # fmt: skip
        return images


def _phrase(annotation: dict, path: Path) -> tuple[Span, ...]:
    """The character spans ``tokens_positive`` of an annotation, the phrase its box grounds; an error naming the
    file and the annotation when it has none (a box without a phrase) or a span is no (start, end) pair."""
    spans = annotation.get("tokens_positive")
    where = f"{path}: annotation {annotation['id']} of image {annotation['image_id']}"
    if not spans:
        raise ValueError(
            f"{where} has no tokens_positive, so its box grounds no phrase; expected the character spans "
            "[[start, end], ...] of the phrase it grounds in its image's caption"
        )
    if not all(isinstance(span, (list, tuple)) and len(span) == 2 for span in spans):
        raise ValueError(f"{where}: tokens_positive {spans} is no list of [start, end] character spans")
    return tuple((int(start), int(end)) for start, end in spans)


# -- GLIP's pretraining mixture: detection read as grounding, several data sets in one loader ------------------


class DetectionAsGrounding(Dataset):
    """A detection data set read as grounding (GLIP's detection data): a sample's caption is the prompt of the classes
    present in it and up to ``negatives`` absent names drawn at random, shuffled (see
    :func:`lit_clip.grounding.training_prompt`), and each box grounds its class's name; ``target["phrases"]`` and
    ``caption`` are set as :func:`grounding_sample` sets them.

    ``dataset`` gives detection samples (:func:`~lit_clip.datamodules.detection.detection_sample`) whose labels index
    ``classnames``. The draw is a function of (``seed``, the sample's index, the epoch): a sample read again in the
    same epoch (by another worker, after a resume) gets the same prompt, and new negatives in the next epoch. The
    epoch lives in shared memory, so that :meth:`set_epoch` in the main process reaches persistent DataLoader workers.

    Bad-sample markers (:func:`~lit_clip.datamodules.images.bad_sample`, from a :class:`RobustSamples` inside) pass
    through unchanged, and an unreadable image's :class:`~lit_clip.datamodules.images.BadSampleError` propagates, so
    the bad-sample policy works with :class:`RobustSamples` on either side (:class:`GroundingMixture` puts it outside).
    """

    def __init__(self, dataset: Dataset, classnames: Sequence[str], negatives: int = 85, seed: int = 0):
        """
        Args:
            dataset: detection samples, labels indexing ``classnames`` (a detection data module's ``train_dataset()``).
            classnames: the names of the labels, which prompts are written from.
            negatives: the most absent names drawn into a prompt (GLIP's negative names; how many is
                :func:`~lit_clip.grounding.training_prompt`'s draw), at most all the others.
            seed: the draws' seed.
        """
        if negatives < 0:
            raise ValueError(f"negatives must be at least 0, got {negatives}")
        if not classnames:
            raise ValueError(f"{type(dataset).__name__} has no class names to write prompts from")
        self.dataset, self.classnames, self.negatives, self.seed = dataset, list(classnames), negatives, seed
        self._epoch = torch.zeros((), dtype=torch.long).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next samples are drawn for (:class:`EpochShuffle` calls it before each)."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        if "skipped_index" in sample:
            return sample
        labels = sample["target"]["labels"].tolist()
        if unknown := sorted({label for label in labels if not 0 <= label < len(self.classnames)}):
            raise ValueError(
                f"{type(self.dataset).__name__} sample {index} has box labels {unknown[:5]}, but there are "
                f"{len(self.classnames)} class names; expected training labels indexing the data set's classnames"
            )
        rng = np.random.default_rng([self.seed, self.epoch, index])
        prompt, phrase_of = training_prompt(labels, self.classnames, self.negatives, rng)
        grounded = torch.tensor([phrase_of[label] for label in labels], dtype=torch.long)
        target = {**sample["target"], "labels": grounded, "phrases": prompt.phrases}
        return {**sample, "target": target, "caption": prompt.caption}


class MixedSources(ConcatDataset):
    """The samples of several data sets one after another, each sample's ``index`` (a bad sample's
    ``skipped_index``) numbered over all of them, so that a skipped sample is named once in the mixture."""

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        return {**sample, "skipped_index" if "skipped_index" in sample else "index": index}

    def set_epoch(self, epoch: int) -> None:
        """Tells every part that draws per epoch (a :class:`DetectionAsGrounding`, inside its RobustSamples)."""
        for part in self.datasets:
            inner = part.dataset if isinstance(part, RobustSamples) else part
            if callable(getattr(inner, "set_epoch", None)):
                inner.set_epoch(epoch)


class EpochShuffle(Sampler[int]):
    """A training order of ``dataset`` that is a function of (``seed``, epoch), and the way the data set learns its
    epoch: Lightning calls a sampler's ``set_epoch`` before every training epoch (under DDP through the
    DistributedSamplerWrapper it puts around a custom sampler), never a data set's. The order being a function of
    the epoch also lets a StatefulDataLoader resume mid-epoch by skipping the batches it had given."""

    def __init__(self, dataset: Dataset, seed: int = 0):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if callable(getattr(self.dataset, "set_epoch", None)):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(len(self.dataset)).tolist())


def gives_captions(source: L.LightningDataModule) -> bool:
    """Whether a data module's training samples are grounding samples (captions with phrases) rather than detection
    samples: the grounding modules are named so (:class:`MDETRGrounding`, ``ShapesWorldGrounding``)."""
    return type(source).__name__.endswith("Grounding")


class GroundingMixture(L.LightningDataModule):
    """GLIP's pretraining data, read as data: the training samples of several data modules, detection (Objects365)
    and grounding (GoldG, Flickr30k Entities), in one shuffled loader of grounding batches; evaluation is one source's.

    - **Sources** are data modules, given in a config as ``data`` itself is: ``{class_path, init_args}`` entries (see
      ``__init__``). Each offers ``train_dataset()``, its training samples before any loader. A grounding source
      (:func:`gives_captions`: its class's name ends in "Grounding") gives grounding samples as they are; any other
      is detection data, read through :class:`DetectionAsGrounding` over its ``classnames`` (the names its training
      labels index) with up to ``negatives`` absent names per prompt.
    - **Training**: the sources' samples one after another (:class:`MixedSources`, ``index`` numbered over all),
      shuffled per epoch as a function of ``seed`` (:class:`EpochShuffle`, which also gives the detection views their
      epoch), collated by :func:`grounding_collate`. Sources weigh by their sizes, as GLIP's concatenated data sets.
    - **Bad samples**: each source's samples are wrapped in a :class:`RobustSamples` of that source's ``bad_samples``
      policy ("raise" for a source without one: generated data has no unreadable file); a source whose
      ``train_dataset()`` wraps its own still works, its markers passing through. A batch whose every sample is bad
      stops training, as in every training loader.
    - **Evaluation**: ``sources[eval_source]``'s loaders, ``evaluation_sets``, ``classnames`` and ``merge_boxes``
      (GLIP reports its pretraining on COCO, LVIS or Flickr30k: with ``train_eval_source=False`` that source is
      evaluated on only, as COCO after Objects365 pretraining). Only that source is set up for evaluation; the others
      read their training split alone.

    At ``setup("fit")`` one log line counts each source's training samples.
    """

    def __init__(
        self,
        sources: list[dict],
        negatives: int = 85,
        batch_size: int = 16,
        num_workers: int = 4,
        seed: int = 0,
        eval_source: int = 0,
        train_eval_source: bool = True,
    ):
        """
        Args:
            sources: the data modules, each a ``{"class_path": ..., "init_args": {...}}`` mapping (what a config
                gives; jsonargparse instantiates it as LightningCLI does ``data``) or, from Python, a data module.
                Typed as dicts rather than ``list[LightningDataModule]``: LightningCLI would build those itself, but
                hand each one the mixture's own hyper-parameters (its ``data`` entry) for its ``hparams``.
            negatives: the most absent names drawn into a detection prompt (GLIP's negative names; it must still
                fit the text encoder's context).
            batch_size: training samples per process (the sources' own batch sizes serve their evaluation loaders).
            num_workers: DataLoader worker processes of the training loader.
            seed: the training order's and the negatives' seed.
            eval_source: the index of the source whose loaders, evaluation sets and class names validation and
                test use.
            train_eval_source: whether that source's training samples are in the mixture too (False: evaluated on
                only, and needs no training split).
        """
        super().__init__()
        self.save_hyperparameters(ignore=["sources"])
        if not sources:
            raise ValueError("GroundingMixture needs at least one source: a data module's {class_path, init_args}")
        if not 0 <= eval_source < len(sources):
            raise ValueError(f"eval_source {eval_source} is not an index of the {len(sources)} sources")
        if negatives < 0:
            raise ValueError(f"negatives must be at least 0, got {negatives}")
        self.sources = [_data_module(spec, k) for k, spec in enumerate(sources)]
        self.training_sources = [k for k in range(len(sources)) if train_eval_source or k != eval_source]
        if not self.training_sources:
            raise ValueError("train_eval_source=False leaves the one source to evaluate on only: nothing to train on")
        missing = [f"{k} ({type(self.sources[k]).__name__})" for k in self.training_sources
                   if not callable(getattr(self.sources[k], "train_dataset", None))]  # fmt: skip
        if missing:
            raise ValueError(
                f"sources {', '.join(missing)} have no train_dataset(); GroundingMixture mixes its sources' training "
                "samples, which a data module gives by train_dataset() (as COCODetection, MDETRGrounding do)"
            )
        self._train_set: MixedSources | None = None

    @property
    def eval_source(self) -> L.LightningDataModule:
        return self.sources[self.hparams.eval_source]

    @property
    def classnames(self) -> list[str]:
        """The evaluation source's: the names evaluation (and the method's pictures) label."""
        return self.eval_source.classnames

    @property
    def merge_boxes(self) -> bool:
        """The evaluation source's phrase-grounding protocol (see :class:`MDETRGrounding`); False without one."""
        return getattr(self.eval_source, "merge_boxes", False)

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        if hasattr(self.eval_source, "evaluation_sets"):
            return self.eval_source.evaluation_sets(stage)
        return [EvaluationSet("", tuple(self.eval_source.classnames))]

    def setup(self, stage: str) -> None:
        for source in self.sources:
            source.trainer = self.trainer  # their checks read the processes' count
        # An evaluation-only source is set up for validation alone: it needs no training split.
        self.eval_source.setup("validate" if stage == "fit" and not self.hparams.train_eval_source else stage)
        if stage == "fit":
            self.train_set()

    def train_set(self) -> MixedSources:
        """The training samples of every training source as grounding samples, read (and counted in the log) on
        first use."""
        if self._train_set is None:
            h, parts, counts = self.hparams, [], []
            for k in self.training_sources:
                source = self.sources[k]
                dataset = source.train_dataset()
                if not gives_captions(source):
                    dataset = DetectionAsGrounding(dataset, source.classnames, h.negatives, h.seed)
                policy = getattr(source, "hparams", {}).get("bad_samples", "raise")
                parts.append(RobustSamples(dataset, policy))
                kind = "grounding" if gives_captions(source) else "detection"
                counts.append(f"{type(source).__name__} (source {k}, {kind}) {len(dataset)}")
            self._train_set = MixedSources(parts)
            log.info("GroundingMixture: %d training samples: %s", len(self._train_set), ", ".join(counts))
        return self._train_set

    def train_dataloader(self) -> StatefulDataLoader:
        h, dataset = self.hparams, self.train_set()
        require_one_batch(len(dataset), h.batch_size, self.trainer, "training samples of the sources together")
        # Stateful: a run killed mid-epoch resumes with the batches it had not yet seen.
        return StatefulDataLoader(
            dataset,
            batch_size=h.batch_size,
            sampler=EpochShuffle(dataset, h.seed),
            drop_last=True,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            collate_fn=without_bad_samples(grounding_collate, training=True),
        )

    def val_dataloader(self):
        return self.eval_source.val_dataloader()

    def test_dataloader(self):
        return self.eval_source.test_dataloader()

    def predict_dataloader(self):
        return self.eval_source.predict_dataloader()


def _data_module(spec: Mapping | L.LightningDataModule, k: int) -> L.LightningDataModule:
    """Source ``k`` of a :class:`GroundingMixture`: a data module as it is, or one built from its ``{class_path,
    init_args}`` as LightningCLI builds ``data`` (jsonargparse checks the arguments against the class)."""
    if isinstance(spec, L.LightningDataModule):
        return spec
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        raise ValueError(
            f"GroundingMixture source {k} is {spec!r}; expected a data module's {{class_path: ..., init_args: {{...}}}}"
        )

    def build() -> L.LightningDataModule:
        parser = jsonargparse.ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(L.LightningDataModule, "source", required=True)
        try:
            config = parser.parse_object({"source": dict(spec)})
        except argparse.ArgumentError as error:
            raise ValueError(f"GroundingMixture source {k} ({spec['class_path']}): {error}") from error
        return parser.instantiate_classes(config).source

    # A fresh context: under LightningCLI this runs inside the mixture's own instantiation, whose given hyper-
    # parameters (a context variable) the source's save_hyperparameters would otherwise take for its own.
    return contextvars.Context().run(build)
