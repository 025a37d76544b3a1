"""ShapesWorld for classification: one object per image, labelled by its colour and shape.

Nothing is read from disk: each sample is generated from ``(seed, split,
index)``, so every DataLoader worker and DDP rank produces its own share with
no duplicates, identically on any machine.
"""
from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
from lit_clip.datamodules.predict import prediction_loaders
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names
from torch.utils.data import DataLoader, Dataset

from lit_clip.transforms import to_normalized_tensor

# Zero-shot prompts for ShapesWorld classes ("red circle"); sizes are part of the captions' language.
SHAPES_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a picture of a {}.",
    "there is a {}.",
)


class ShapesClassificationDataset(Dataset):
    """``{"image", "label", "index"}``: one object per image, labels balanced over the vocabulary's classes."""

    def __init__(self, world: ShapesWorld, split: str, length: int, vocabulary: str = "color_shape"):
        self.world, self.split, self.length, self.vocabulary = world, split, length, vocabulary

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        image, label = self.world.classification_sample(self.split, index, self.vocabulary)
        return {"image": to_normalized_tensor(image), "label": torch.tensor(label), "index": index}


class ShapesWorldClassification(L.LightningDataModule):
    """Single-object images labelled over a ShapesWorld vocabulary (``color_shape``: 64 classes).

    The embedded stand-in for a classification data set: zero-shot evaluation reads
    ``classnames`` and ``templates``; the linear probe also uses the training split.
    """

    def __init__(
        self,
        vocabulary: str = "color_shape",
        image_size: int = 64,
        seed: int = 0,
        train_per_class: int = 16,
        val_per_class: int = 4,
        test_per_class: int = 16,
        templates: Sequence[str] = SHAPES_TEMPLATES,
        batch_size: int = 128,
        num_workers: int = 0,
        predict_images: str | None = None,
    ):
        """
        Args:
            vocabulary: ``color_shape`` (64 classes), ``shape`` (8) or ``color`` (8).
            image_size: side of the square images in pixels.
            seed: the world's seed.
            train_per_class, val_per_class, test_per_class: images per class in each split.
            templates: zero-shot prompt templates with one ``{}`` for the class name.
            batch_size, num_workers: DataLoader settings.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test split (see ``lit_clip.datamodules.predict``).
        """
        super().__init__()
        self.save_hyperparameters()
        self.world = ShapesWorld(image_size=image_size, seed=seed)
        self.classnames = class_names(vocabulary)
        self.templates = list(templates)

    def _loader(self, split: str, per_class: int) -> DataLoader:
        h = self.hparams
        dataset = ShapesClassificationDataset(self.world, split, per_class * len(self.classnames), h.vocabulary)
        return DataLoader(dataset, batch_size=h.batch_size, num_workers=h.num_workers, persistent_workers=h.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.train_per_class)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.val_per_class)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.test_per_class)

    def predict_dataloader(self) -> DataLoader:
        return prediction_loaders(self.hparams, default=self.test_dataloader)
