"""ShapesWorld for semantic segmentation: scenes of several objects, a label per pixel, and a zero-shot split.

Label ids of a label set: 0 is "background", then the set's classes of the vocabulary in vocabulary
order. The zero-shot split holds some colour-shape compositions out: training and validation scenes
never show them; testing has a "seen" set (scenes of seen objects, labelled background + seen classes)
and an "unseen" set (scenes of held-out objects only, labelled background + their classes, numbered
from 1 within that set), the protocol of the zero-shot segmentation papers (SPNet, ZS3Net, ZegFormer)
on a world where every pixel's class is known.
"""
from __future__ import annotations

from typing import Sequence

import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.predict import prediction_loaders
from lit_clip.datamodules.shapesworld.world import COLORS, SHAPES, ShapesWorld, class_names
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.batches import IGNORE_INDEX, EvaluationSet
from lit_clip.templates import resolve_templates
from lit_clip.transforms import to_normalized_tensor

BACKGROUND = "background"
# One plain prompt, so that "background" reads as well as the objects ("a photo of a background.");
# ShapesWorld's size prompts ("a photo of a small {}.") would not.
SEGMENTATION_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


def held_out_compositions(held_out: int | Sequence[str]) -> list[str]:
    """The held-out colour-shape names: ``held_out`` itself, or for a number n the first n along the diagonals.

    Diagonal k holds colour c with shape c + k (mod 8): the first 8 hold out every colour and every shape
    once, the first 16 twice, ..., so that each word keeps as many seen compositions as any other.
    """
    names = class_names("color_shape")
    if isinstance(held_out, int):
        if not 0 <= held_out < len(names):
            raise ValueError(f"held_out must be a number from 0 to {len(names) - 1} or a list of names, got {held_out}")
        order = [c * len(SHAPES) + (c + k) % len(SHAPES) for k in range(len(SHAPES)) for c in range(len(COLORS))]
        return [names[pair] for pair in order[:held_out]]
    return list(held_out)


class ShapesSegmentationDataset(Dataset):
    """``{"image", "mask", "index"}``: scene ``index`` of a split, drawn from ``allowed`` compositions (None:
    all of the split), its mask labelled over ``classes`` (indices into the vocabulary): 0 background, 1 + i
    for ``classes[i]``."""

    def __init__(
        self,
        world: ShapesWorld,
        split: str,
        length: int,
        vocabulary: str,
        classes: Sequence[int],
        allowed: Sequence[str] | None,
    ):
        self.world, self.split, self.length, self.vocabulary, self.allowed = world, split, length, vocabulary, allowed
        # From the world's semantic mask (0, or 1 + vocabulary index) to this set's ids.
        self.lookup = np.full(1 + len(class_names(vocabulary)), IGNORE_INDEX, dtype=np.int64)
        self.lookup[0] = 0
        self.lookup[1 + np.asarray(classes, dtype=np.int64)] = np.arange(1, 1 + len(classes))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        scene = self.world.scene(self.split, index, self.allowed)
        mask = self.lookup[scene.semantic_mask(self.vocabulary)]
        return {"image": to_normalized_tensor(scene.image), "mask": torch.from_numpy(mask), "index": index}


class ShapesWorldSegmentation(L.LightningDataModule):
    """Scenes of coloured shapes with semantic masks over a vocabulary, with held-out compositions.

    ``classnames``: the training label set, "background" + the seen classes. ``evaluation_sets(stage)``:
    validation is labelled as training; testing has one loader per set, "seen" then "unseen", or a single
    one over every class when nothing is held out.
    """

    def __init__(
        self,
        vocabulary: str = "color_shape",
        held_out: int | Sequence[str] = 16,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 4,
        seed: int = 0,
        train_samples: int = 8192,
        val_samples: int = 256,
        test_samples: int = 512,
        templates: str | Sequence[str] = SEGMENTATION_TEMPLATES,
        batch_size: int = 64,
        num_workers: int = 0,
        predict_images: str | None = None,
    ):
        """
        Args:
            vocabulary: what a pixel is labelled with: ``color_shape`` (64 classes), ``shape`` (8) or ``color`` (8).
            held_out: colour-shape compositions ("purple star") never in a training or validation scene: a list
                of names, or a number of them chosen along the diagonals (see :func:`held_out_compositions`);
                0 or [] for none. With ``shape`` or ``color`` the unseen set names the words of the held-out
                compositions, which training sees in other compositions: a compositional test.
            image_size: side of the square images in pixels.
            min_objects, max_objects: objects per scene; later objects occlude earlier ones.
            seed: the world's seed; sample ``i`` of a split is the same for a given seed.
            train_samples, val_samples, test_samples: scenes per training epoch, validation, each test set.
            templates: prompt templates with one ``{}`` for a label (``background`` included).
            batch_size, num_workers: DataLoader settings.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the (seen) test set (see ``lit_clip.datamodules.predict``).
        """
        super().__init__()
        self.save_hyperparameters()
        held = held_out_compositions(held_out)
        self.world = ShapesWorld(image_size, min_objects, max_objects, seed, held)
        names = class_names(vocabulary)
        seen_pairs = [name for name in class_names("color_shape") if name not in held]
        # The compositions each set's scenes are drawn from; None: every one of the split.
        self._allowed: dict[str, list[str] | None] = {"seen": seen_pairs if held else None, "unseen": held}
        self._classes = {
            "seen": self.world.split_classes("train", vocabulary),
            "unseen": sorted({names.index(self._class_name(name, vocabulary)) for name in held}),
        }
        self.classnames = self.label_set("seen")
        self.templates = resolve_templates(templates)

    @staticmethod
    def _class_name(composition: str, vocabulary: str) -> str:
        color, shape = composition.split(" ")
        return {"shape": shape, "color": color, "color_shape": composition}[vocabulary]

    def label_set(self, name: str) -> list[str]:
        """The labels of set ``name`` ("seen" or "unseen") in id order: background, then its classes."""
        names = class_names(self.hparams.vocabulary)
        return [BACKGROUND, *(names[i] for i in self._classes[name])]

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        """The label sets of the ``stage`` loaders, in loader order."""
        if stage == "test" and self._allowed["unseen"]:
            return [EvaluationSet(name, tuple(self.label_set(name))) for name in ("seen", "unseen")]
        return [EvaluationSet("", tuple(self.classnames))]

    def _dataset(self, split: str, length: int, label_set: str = "seen") -> ShapesSegmentationDataset:
        h = self.hparams
        allowed = self._allowed[label_set]
        return ShapesSegmentationDataset(self.world, split, length, h.vocabulary, self._classes[label_set], allowed)

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> StatefulDataLoader:
        h = self.hparams
        return stateful_loader(dataset, h.batch_size, h.num_workers, shuffle)

    def train_dataloader(self) -> StatefulDataLoader:
        h = self.hparams
        require_one_batch(h.train_samples, h.batch_size, self.trainer, "training scenes (train_samples)")
        return self._loader(self._dataset("train", h.train_samples), shuffle=True)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader(self._dataset("val", self.hparams.val_samples))

    def test_dataloader(self) -> StatefulDataLoader | list[StatefulDataLoader]:
        samples = self.hparams.test_samples
        if not self._allowed["unseen"]:
            return self._loader(self._dataset("test", samples))
        return [self._loader(self._dataset("test", samples, label_set)) for label_set in ("seen", "unseen")]

    def predict_dataloader(self) -> StatefulDataLoader | list[StatefulDataLoader]:
        seen_test = self._dataset("test", self.hparams.test_samples)
        return prediction_loaders(self.hparams, default=lambda: self._loader(seen_test))
