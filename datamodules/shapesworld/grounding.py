"""ShapesWorld for grounding (GLIP): scenes with captions whose noun phrases name their objects' boxes, and scenes
with detection prompts.

Each training scene is one of two kinds, drawn per scene:

- its **caption** ("a small red circle to the left of two blue stars."), each noun phrase grounding the boxes of
  the objects it names (a counted phrase grounds several);
- a **detection prompt** (GLIP's detection data as grounding): the base names of the objects in it and up to
  ``negatives`` other base names, shuffled, joined by ". " ("blue star. red circle. green ring"), each name
  grounding the boxes of its class.

The held-out compositions never appear in a training scene, caption or prompt. Evaluation has two loaders: zero-
shot detection of every scene over all 64 names, the held-out ones named only in the prompt (AP over all, "base"
and "novel", as :class:`~lit_clip.datamodules.shapesworld.detection.ShapesWorldDetection`), and phrase grounding
of the captions (recall at 1, 5, 10, as on Flickr30k Entities).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.detection import detection_eval_transform
from lit_clip.datamodules.grounding import grounding_collate, grounding_sample
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.predict import detection_prediction_loader
from lit_clip.datamodules.shapesworld.detection import ShapesWorldDetection, visible_boxes
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.batches import EvaluationSet
from lit_clip.grounding import training_prompt


class ShapesGroundingDataset(Dataset):
    """Grounding samples of scene ``index`` of a split: its caption, or (a ``prompt_fraction`` of training scenes)
    a detection prompt of the ``classnames`` (base names; ``label_of[c]`` the label of colour-shape class ``c``)."""

    def __init__(
        self,
        world: ShapesWorld,
        split: str,
        length: int,
        classnames: Sequence[str],
        label_of: np.ndarray,
        prompt_fraction: float,
        negatives: int,
    ):
        self.world, self.split, self.length = world, split, length
        self.classnames, self.label_of = classnames, label_of
        self.prompt_fraction, self.negatives = prompt_fraction, negatives
        self.transform = detection_eval_transform()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        scene = self.world.scene(self.split, index)
        # The kind and the negatives are a function of (seed, split, index), as the scene.
        rng = np.random.default_rng([self.world.seed, 1 + self.world.SPLITS.index(self.split), index])
        boxes = visible_boxes(scene)
        if rng.random() < self.prompt_fraction:
            classes = self.label_of[[obj.class_index() for obj in scene.objects]]
            if (classes < 0).any():
                raise ValueError(f"scene {index} of split {self.split!r} holds a held-out composition, which a "
                                 "detection prompt of the base names cannot name; prompts are for training scenes")
            prompt, phrase_of = training_prompt(classes, self.classnames, self.negatives, rng)
            caption, phrases = prompt.caption, prompt.phrases
            labels = torch.tensor([phrase_of[c] for c in classes.tolist()], dtype=torch.long)
        else:
            caption = scene.caption
            phrases = [[span] for span, _ in scene.grounded_phrases]
            labels = torch.zeros(len(scene.objects), dtype=torch.long)
            for k, (_, objects) in enumerate(scene.grounded_phrases):
                labels[list(objects)] = k
        where = f"ShapesWorld {self.split} scene {index}"
        return grounding_sample(scene.image, caption, phrases, boxes, labels, index, index, self.transform, where)


class ShapesWorldGrounding(L.LightningDataModule):
    """Scenes of coloured shapes grounded by their captions or by detection prompts (see the module's docstring).

    ``classnames``: the base names, which training prompts draw from. ``evaluation_sets(stage)``: detection over all
    64 names with "base" and "novel" subsets, then phrase grounding of the captions.
    """

    def __init__(
        self,
        held_out: int | Sequence[str] = 16,
        image_size: int = 128,
        min_objects: int = 1,
        max_objects: int = 4,
        seed: int = 0,
        prompt_fraction: float = 0.5,
        negatives: int = 47,
        train_samples: int = 8192,
        val_samples: int = 256,
        test_samples: int = 512,
        batch_size: int = 16,
        num_workers: int = 0,
        predict_images: str | None = None,
    ):
        """
        Args:
            held_out: the novel compositions, never in a training scene: a list of names, or a number of them
                (see ``held_out_compositions``); 0 or [] for none.
            image_size, min_objects, max_objects, seed: the world (as ``ShapesWorldDetection``).
            prompt_fraction: the share of training scenes grounded by a detection prompt rather than their caption.
            negatives: names of absent base classes drawn into a detection prompt (GLIP's negative names).
            train_samples, val_samples, test_samples: scenes per training epoch, validation, test (each
                evaluation loader reads that many).
            batch_size, num_workers: DataLoader settings.
            predict_images: what ``lit-clip predict`` reads (a folder, a list file or an image; see
                ``lit_clip.datamodules.predict``); None: the detection test scenes.
        """
        if not 0 <= prompt_fraction <= 1:
            raise ValueError(f"prompt_fraction must be in [0, 1], got {prompt_fraction}")
        super().__init__()
        self.save_hyperparameters()

    @property
    def classnames(self) -> list[str]:
        """The base names, which training prompts draw from."""
        return self.detection.classnames

    @functools.cached_property
    def detection(self) -> ShapesWorldDetection:
        """The detection view of the same world: its evaluation loaders, names and held-out compositions (made
        outside ``__init__``, where Lightning would take its arguments for this module's hyper-parameters)."""
        h = self.hparams
        return ShapesWorldDetection(h.held_out, h.image_size, h.min_objects, h.max_objects, h.seed, h.train_samples,
                                    h.val_samples, h.test_samples, batch_size=h.batch_size, num_workers=h.num_workers)

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        return [*self.detection.evaluation_sets(stage), EvaluationSet("grounding", (), phrase_grounding=True)]

    def _grounding_dataset(self, split: str, length: int, prompt_fraction: float) -> ShapesGroundingDataset:
        label_of = np.full(len(class_names("color_shape")), -1, dtype=np.int64)
        label_of[self.detection.base_ids] = np.arange(len(self.detection.base_ids))
        negatives = self.hparams.negatives
        return ShapesGroundingDataset(self.detection.world, split, length, self.classnames, label_of, prompt_fraction,
                                      negatives)  # fmt: skip

    def train_dataset(self) -> ShapesGroundingDataset:
        """The training scenes, grounded by their captions or by detection prompts of the base names."""
        h = self.hparams
        return self._grounding_dataset("train", h.train_samples, h.prompt_fraction)

    def train_dataloader(self) -> StatefulDataLoader:
        h = self.hparams
        require_one_batch(h.train_samples, h.batch_size, self.trainer, "training scenes (train_samples)")
        return self._grounding_loader(self.train_dataset(), shuffle=True)

    def _grounding_loader(self, dataset: Dataset, shuffle: bool = False) -> StatefulDataLoader:
        h = self.hparams
        return stateful_loader(dataset, h.batch_size, h.num_workers, shuffle, collate_fn=grounding_collate)

    def val_dataloader(self) -> list[StatefulDataLoader]:
        captions = self._grounding_dataset("val", self.hparams.val_samples, prompt_fraction=0.0)
        return [self.detection.val_dataloader(), self._grounding_loader(captions)]

    def test_dataloader(self) -> list[StatefulDataLoader]:
        captions = self._grounding_dataset("test", self.hparams.test_samples, prompt_fraction=0.0)
        return [self.detection.test_dataloader(), self._grounding_loader(captions)]

    def predict_dataloader(self):
        return detection_prediction_loader(self.hparams, self.detection.test_dataloader)
