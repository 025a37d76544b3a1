"""ShapesWorld captioning: each scene with several true captions, as COCO's images have five.

A scene's first reference is its own caption (``Scene.caption``); the others are drawn by the same caption grammar
from streams of their own, a function of (seed, split, index, reference): different phrasings, orders, size words
and relations of the same objects, so that the references agree on what is in the scene and differ in how they
say it, like human ones. The test has a second set whose scenes hold only held-out colour-shape compositions
(never in a training scene), when there are any.
"""
from __future__ import annotations

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from lit_clip.datamodules.captioning import caption_vocabulary, collate_captioning, encode_captions
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.predict import prediction_loaders
from lit_clip.datamodules.shapesworld.segmentation import held_out_compositions
from lit_clip.datamodules.shapesworld.questions import _plural
from lit_clip.datamodules.shapesworld.world import COLORS, SHAPES, Scene, ShapesWorld, _caption
from lit_clip.metrics.captioning import tokenize_caption
from lit_clip.transforms import to_normalized_tensor

_REFERENCE_STREAM = 7  # tells the references' random streams from the scenes' and the questions'
_SINGULAR = {**{shape: shape for shape in SHAPES}, **{_plural(shape): shape for shape in SHAPES}}


def scene_and_references(
    world: ShapesWorld, split: str, index: int, references: int, allowed: list[str] | None = None
) -> tuple[Scene, list[str]]:
    """Scene ``index`` of a split and ``references`` true captions of it, the first its own."""
    scene = world.scene(split, index, allowed)
    split_id = ShapesWorld.SPLITS.index(split)
    others = [_caption(np.random.default_rng([world.seed, split_id, index, _REFERENCE_STREAM, k]), scene.objects,
                       world.image_size)[0] for k in range(1, references)]  # fmt: skip
    return scene, [scene.caption, *others]


def named_compositions(caption: str) -> set[tuple[str, str]]:
    """The (colour, shape) pairs a caption names: each colour word directly followed by a shape, singular or plural
    ("a small red circle", "two blue stars")."""
    words = tokenize_caption(caption)
    return {(color, _SINGULAR[shape]) for color, shape in zip(words, words[1:])
            if color in COLORS and shape in _SINGULAR}  # fmt: skip


def names_the_scene(caption: str, scene: Scene) -> bool:
    """Whether a caption names exactly the scene's colour-shape pairs: every object's, and no other."""
    return named_compositions(caption) == {(obj.color, obj.shape) for obj in scene.objects}


class ShapesCaptioningDataset(Dataset):
    """:class:`~lit_clip.batches.CaptioningBatch` samples of a split (``allowed``: draw the scenes' objects from
    these colour-shape names only, the held-out ones for the unseen test)."""

    def __init__(self, world: ShapesWorld, split: str, length: int, references: int, words: dict[str, int],
                 max_words: int, allowed: list[str] | None = None):  # fmt: skip
        self.world, self.split, self.length, self.references = world, split, length, references
        self.words, self.max_words, self.allowed = words, max_words, allowed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        scene, references = scene_and_references(self.world, self.split, index, self.references, self.allowed)
        return {
            "image": to_normalized_tensor(scene.image),
            "captions": encode_captions(references, self.words, self.max_words),
            "caption_text": references,
            "references": references,
            "index": index,
        }


class ShapesWorldCaptioning(L.LightningDataModule):
    """Captioning ShapesWorld scenes, each with ``references_per_image`` true captions."""

    def __init__(
        self,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 3,
        held_out: int | list[str] = 0,
        seed: int = 0,
        references_per_image: int = 5,
        train_samples: int = 10_000,
        val_samples: int = 250,
        test_samples: int = 500,
        vocabulary_scenes: int = 2000,
        max_words: int = 24,
        batch_size: int = 32,
        num_workers: int = 0,
        predict_images: str | None = None,
    ):
        """
        Args:
            image_size: side of the square images in pixels.
            min_objects, max_objects: objects per scene.
            held_out: colour-shape compositions no training scene holds: names, or a number of them chosen along
                the diagonals (see :func:`~lit_clip.datamodules.shapesworld.segmentation.held_out_compositions`).
            seed: the world's seed; sample ``i`` of a split is the same for a given seed.
            references_per_image: true captions per scene (COCO: 5).
            train_samples, val_samples, test_samples: scenes per training epoch, validation, each test set.
            vocabulary_scenes: the first training scenes whose references give the word vocabulary and the
                document frequencies of self-critical training's CIDEr-D (COCO's: the whole training split).
            max_words: training captions are cut to this many words (the longest ShapesWorld captions of 4 objects
                have about 24).
            batch_size, num_workers: DataLoader settings.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an image; by
                default predict captions the test split (see ``lit_clip.datamodules.predict``).
        """
        super().__init__()
        self.save_hyperparameters()
        self.held_out = held_out_compositions(held_out)
        self.world = ShapesWorld(image_size, min_objects, max_objects, seed, self.held_out)
        self.words: list[str] = []
        self._training_references: list[list[str]] = []

    def training_references(self) -> list[list[str]]:
        """The references of the first ``vocabulary_scenes`` training scenes."""
        if not self._training_references:
            h = self.hparams
            self._training_references = [scene_and_references(self.world, "train", index, h.references_per_image)[1]
                                         for index in range(h.vocabulary_scenes)]  # fmt: skip
        return self._training_references

    def setup(self, stage: str) -> None:
        if not self.words:
            self.words = caption_vocabulary((c for refs in self.training_references() for c in refs), min_count=1)

    def _loader(self, split: str, length: int, shuffle: bool = False, allowed: list[str] | None = None) -> DataLoader:
        h = self.hparams
        words = {word: k for k, word in enumerate(self.words)}
        dataset = ShapesCaptioningDataset(self.world, split, length, h.references_per_image, words, h.max_words,
                                          allowed)  # fmt: skip
        return stateful_loader(dataset, h.batch_size, h.num_workers, shuffle, collate_captioning)

    @property
    def evaluation_names(self) -> list[str]:
        """The test loaders' metric prefixes: "" (seen compositions) and "unseen/" where compositions are held out."""
        return ["", "unseen/"] if self.held_out else [""]

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        require_one_batch(h.train_samples, h.batch_size, self.trainer, "training samples (train_samples)")
        return self._loader("train", h.train_samples, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.val_samples)

    def test_dataloader(self) -> list[DataLoader]:
        loaders = [self._loader("test", self.hparams.test_samples)]
        if self.held_out:
            loaders.append(self._loader("test", self.hparams.test_samples, allowed=self.held_out))
        return loaders

    def predict_dataloader(self) -> DataLoader:
        return prediction_loaders(self.hparams, default=lambda: self._loader("test", self.hparams.test_samples))
