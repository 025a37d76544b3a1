"""ShapesWorld as image-caption pairs: the embedded default data of CLIP pretraining.

Scenes and their captions are generated from ``(seed, split, index)``; validation
adds a zero-shot classification set of single objects.
"""
from __future__ import annotations

from typing import Callable, Sequence

import lightning as L
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.predict import prediction_loaders
from lit_clip.datamodules.shapesworld.classification import SHAPES_TEMPLATES, ShapesClassificationDataset
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names
from torch.utils.data import DataLoader, Dataset

from lit_clip.noun_prompts import NounPrompts, Tagger, WordType, caption_entries
from lit_clip.transforms import image_entries, to_normalized_tensor, with_ssl_views


class ShapesCaptionDataset(Dataset):
    """``{"image", "text", "caption", "index"}``: a scene, its caption's token ids, the caption, its index; with
    ``noun_prompts``, ``noun_text`` too (the token ids of the caption's noun prompts, for GroupViT)."""

    def __init__(
        self,
        world: ShapesWorld,
        split: str,
        length: int,
        context_length: int,
        transform: Callable = to_normalized_tensor,
        noun_prompts: NounPrompts | None = None,
    ):
        self.world, self.split, self.length, self.context_length = world, split, length, context_length
        self.transform, self.noun_prompts = transform, noun_prompts

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        scene = self.world.scene(self.split, index)
        return {
            **image_entries(self.transform, scene.image),
            **caption_entries(scene.caption, self.context_length, self.noun_prompts),
            "index": index,
        }



class ShapesWorldCaptions(L.LightningDataModule):
    """Image-caption pairs for contrastive pretraining, evaluated by retrieval and zero-shot classification.

    Validation and test each have two loaders: caption pairs (retrieval recall)
    and single-object images over the ``color_shape`` classes (zero-shot top-1/5).
    """

    def __init__(
        self,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 3,
        held_out: Sequence[str] = (),
        seed: int = 0,
        train_samples: int = 50_000,
        val_samples: int = 512,
        zeroshot_samples_per_class: int = 8,
        context_length: int = 32,
        batch_size: int = 128,
        num_workers: int = 0,
        predict_images: str | None = None,
        predict_texts: str | None = None,
        noun_prompts: int = 0,
        noun_tagger: Tagger = "auto",
        noun_word_type: WordType = "noun",
        ssl_views: bool = False,
    ):
        """
        Args:
            image_size: side of the square images in pixels.
            min_objects, max_objects: objects per training / retrieval scene.
            held_out: colour-shape classes ("purple star") never shown in training captions.
            seed: the world's seed; sample ``i`` of a split is the same for a given seed.
            train_samples: scenes per training epoch.
            val_samples: caption pairs for retrieval in validation and test.
            zeroshot_samples_per_class: single-object images per class for zero-shot evaluation.
            context_length: token length of the captions; at most the model's context length.
            batch_size: per process.
            num_workers: DataLoader worker processes.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test split (see ``lit_clip.datamodules.predict``).
            predict_texts: ``lit-clip predict``'s texts: a file with one text per line.
            noun_prompts: give training batches ``noun_text`` ``[B, noun_prompts, context_length]``, prompts of
                each caption's nouns (GroupViT's multi-label loss; see ``lit_clip.noun_prompts``); 0: none.
            noun_tagger: how nouns are found: "auto", "nltk" (the official tagger) or "rules".
            noun_word_type: prompt "noun"s (the released configs') or "noun_phrase"s ("small red circle").
            ssl_views: give training samples SLIP's two SimCLR views (``ssl_view_1``, ``ssl_view_2``) of the
                scene beside the scene itself (the CLIP view; see ``lit_clip.transforms.simclr_view``).
        """
        super().__init__()
        self.save_hyperparameters()
        self.world = ShapesWorld(image_size, min_objects, max_objects, seed, held_out)
        self.classnames = class_names("color_shape")
        self.templates = SHAPES_TEMPLATES

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        h = self.hparams
        return stateful_loader(dataset, h.batch_size, h.num_workers, shuffle)

    def _evaluation_loaders(self, split: str) -> list[DataLoader]:
        h = self.hparams
        pairs = ShapesCaptionDataset(self.world, split, h.val_samples, h.context_length)
        zeroshot = ShapesClassificationDataset(self.world, split, h.zeroshot_samples_per_class * len(self.classnames))
        return [self._loader(pairs), self._loader(zeroshot)]

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        require_one_batch(h.train_samples, h.batch_size, self.trainer, "training samples (train_samples)")
        nouns = None
        if h.noun_prompts:
            nouns = NounPrompts(h.noun_prompts, tagger=h.noun_tagger, word_type=h.noun_word_type)
        dataset = ShapesCaptionDataset(
            self.world, "train", h.train_samples, h.context_length, self.train_transform(), nouns
        )
        return self._loader(dataset, shuffle=True)

    def train_transform(self) -> Callable:
        """The scenes as they are (ShapesWorld is its own augmentation), and SLIP's SimCLR views with ``ssl_views``."""
        if self.hparams.ssl_views:
            return with_ssl_views(to_normalized_tensor, self.hparams.image_size)
        return to_normalized_tensor

    def val_dataloader(self) -> list[DataLoader]:
        return self._evaluation_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._evaluation_loaders("test")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        return prediction_loaders(self.hparams, default=lambda: self._evaluation_loaders("test")[0])


