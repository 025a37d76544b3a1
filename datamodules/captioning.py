"""Captions as captioning models read and write them, and COCO (or Flickr30k) captioning with Karpathy's splits.

Shared by the captioning data modules (ShapesWorld, Karpathy's): a caption's words are the evaluation's tokens
(:func:`~lit_clip.metrics.captioning.tokenize_caption`: lower case, punctuation dropped); the vocabulary is the
words given at least ``min_count`` times in the training captions, after three entries of its own: ``<pad>`` (0),
``<unk>`` (1, any other word) and ``<eos>`` (2, which ends a caption and, as in ruotianluo/self-critical.pytorch,
also starts one).

A :class:`~lit_clip.batches.CaptioningBatch` holds each image with ``references_per_image`` of its captions as
word ids (training reads them all, ruotianluo's ``seq_per_img``) and every reference caption as text (what the
evaluation and self-critical training score against).

Karpathy's ``dataset_coco.json``::

    {"images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg", "split": "train" | "restval"
                 | "val" | "test", "sentences": [{"raw": "A man riding a bike."}, ...]}, ...]}

"restval" images train (113,287 training, 5,000 val and 5,000 test images), as in every paper on the split.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import (
    BadSampleError,
    BadSamplePolicy,
    RobustSamples,
    check_policy,
    load_rgb,
    without_bad_samples,
)
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.pairs import CaptionedImage, _read_karpathy
from lit_clip.datamodules.predict import prediction_loaders
from lit_clip.metrics.captioning import tokenize_caption
from lit_clip.transforms import clip_eval_transform

PAD, UNKNOWN, END = "<pad>", "<unk>", "<eos>"
PAD_ID, UNKNOWN_ID, END_ID = 0, 1, 2


def caption_vocabulary(captions: Iterable[str], min_count: int) -> list[str]:
    """The padding, unknown and end entries, then every word given at least ``min_count`` times, in order."""
    counts = Counter(word for caption in captions for word in tokenize_caption(caption))
    return [PAD, UNKNOWN, END, *sorted(word for word, count in counts.items() if count >= min_count)]


def encode_captions(captions: Sequence[str], vocabulary: dict[str, int], max_words: int) -> Tensor:
    """``[len(captions), max_words]`` word ids, each caption cut to ``max_words`` and padded with 0."""
    ids = torch.zeros(len(captions), max_words, dtype=torch.long)
    for row, caption in enumerate(captions):
        words = [vocabulary.get(word, UNKNOWN_ID) for word in tokenize_caption(caption)[:max_words]]
        ids[row, : len(words)] = torch.tensor(words, dtype=torch.long)
    return ids


def choose_references(captions: Sequence[str], n: int) -> list[str]:
    """``n`` of an image's captions for training (ruotianluo's loader): a random run of ``n`` consecutive ones, or
    all of them and random repeats where there are fewer. Drawn from torch's generator (seeded per worker)."""
    if len(captions) < n:
        extra = torch.randint(len(captions), (n - len(captions),)).tolist()
        return [*captions, *(captions[k] for k in extra)]
    start = int(torch.randint(len(captions) - n + 1, ()))
    return list(captions[start : start + n])


def collate_captioning(samples: list[dict]) -> dict:
    """Default collation, but ``references`` and ``caption_text`` stay lists (one list of captions per image)."""
    texts = {key: [sample.pop(key) for sample in samples] for key in ("references", "caption_text")}
    return {**default_collate(samples), **texts}


class KarpathyCaptionDataset(Dataset):
    """:class:`~lit_clip.batches.CaptioningBatch` samples of one split; an unreadable image raises
    :class:`BadSampleError`."""

    def __init__(self, images: Sequence[CaptionedImage], words: dict[str, int], references_per_image: int,
                 max_words: int, transform, training: bool):  # fmt: skip
        self.images, self.words, self.references_per_image = images, words, references_per_image
        self.max_words, self.transform, self.training = max_words, transform, training

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        path, captions = self.images[index]
        try:
            image = load_rgb(path)
        except BadSampleError as error:
            raise BadSampleError(f"image {index} of the split: {error}") from error
        n = self.references_per_image
        read = choose_references(captions, n) if self.training else [captions[k % len(captions)] for k in range(n)]
        return {
            "image": self.transform(image),
            "captions": encode_captions(read, self.words, self.max_words),
            "caption_text": read,
            "references": list(captions),
            "index": index,
        }


class KarpathyCaptions(L.LightningDataModule):
    """Image captioning on COCO (or Flickr30k) with Karpathy's splits, scored by the COCO caption evaluation."""

    def __init__(
        self,
        root: str,
        annotations: str = "dataset_coco.json",
        images: str = ".",
        min_word_count: int = 6,
        max_words: int = 16,
        references_per_image: int = 5,
        image_size: int | list[int] = 224,
        batch_size: int = 10,
        num_workers: int = 8,
        bad_samples: BadSamplePolicy = "skip",
        predict_images: str | None = None,
    ):
        """
        Args:
            root: the folder of the annotations file and the images; the paths below are relative to it.
            annotations: Karpathy's split file (``dataset_coco.json``, ``dataset_flickr30k.json``).
            images: the folder the entries' ``filepath/filename`` are relative to (COCO's ``train2014`` and
                ``val2014`` below it).
            min_word_count: how often a word must occur in the training captions to enter the vocabulary
                (ruotianluo: more than 5 times, counted over all splits; here over the training split only).
            max_words: training captions are cut to this many words (ruotianluo: 16).
            references_per_image: captions each training image is read with (ruotianluo's ``seq_per_img``: 5).
            image_size: a side: CLIP's resize of the short side and centre crop; ``[height, width]``: resized to
                exactly that, as CLIP-ViL's grid features (448 x 448). CLIP's mean and std.
            batch_size, num_workers: DataLoader settings (CLIP-ViL: 10 images, each with 5 captions).
            bad_samples: "skip" an unreadable image (left out of its batch) or "raise" an error naming it.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an image; by
                default predict captions the test split (see ``lit_clip.datamodules.predict``).
        """
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)
        self.root = Path(root)
        self._splits: dict[str, list[CaptionedImage]] = {}
        self.words: list[str] = []

    def split(self, split: str) -> list[CaptionedImage]:
        if not self._splits:
            h = self.hparams
            self._splits = _read_karpathy(self.root / h.annotations, self.root / h.images, h.bad_samples)
        return self._splits[split]

    def setup(self, stage: str) -> None:
        if not self.words:
            captions = (caption for _, captions in self.split("train") for caption in captions)
            self.words = caption_vocabulary(captions, self.hparams.min_word_count)

    def training_references(self) -> list[list[str]]:
        """Every training image's captions: the document frequencies of self-critical training's CIDEr-D."""
        return [list(captions) for _, captions in self.split("train")]

    def _loader(self, split: str, training: bool) -> DataLoader:
        h = self.hparams
        size = h.image_size if isinstance(h.image_size, int) else tuple(h.image_size)
        words = {word: k for k, word in enumerate(self.words)}
        dataset = KarpathyCaptionDataset(self.split(split), words, h.references_per_image, h.max_words,
                                         clip_eval_transform(size), training)  # fmt: skip
        collate = without_bad_samples(collate_captioning, training=training)
        return stateful_loader(RobustSamples(dataset, h.bad_samples), h.batch_size, h.num_workers, training, collate)

    def train_dataloader(self) -> DataLoader:
        require_one_batch(len(self.split("train")), self.hparams.batch_size, self.trainer, "training images")
        return self._loader("train", training=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", training=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", training=False)

    def predict_dataloader(self) -> DataLoader:
        return prediction_loaders(self.hparams, default=self.test_dataloader)
