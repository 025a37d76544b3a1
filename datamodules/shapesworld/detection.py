"""ShapesWorld for open-vocabulary detection: scenes of several objects with boxes and instance masks.

The categories are the 64 colour-shape compositions. The held-out ones are ViLD's novel categories: no
training scene shows them, so they are never boxed in training; the seen ones are the base categories.
Training labels index the base names (``classnames``); validation and test scenes are drawn from every
composition and labelled over all 64 names, with AP reported overall, on "base" and on "novel" (the
generalised protocol of ViLD and OVR-CNN: novel objects must be found among base ones).

A box is the tight box of the object's visible pixels (as COCO's boxes are), in pixels of the scene.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.detection import (
    category_subsets,
    detection_collate,
    detection_eval_transform,
    detection_sample,
    detection_train_transform,
)
from lit_clip.datamodules.shapesworld.classification import SHAPES_TEMPLATES
from lit_clip.datamodules.shapesworld.segmentation import held_out_compositions
from lit_clip.datamodules.shapesworld.world import Scene, ShapesWorld, class_names
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.batches import EvaluationSet
from lit_clip.region_cache import RegionCache
from lit_clip.templates import resolve_templates


def visible_boxes(scene: Scene) -> torch.Tensor:
    """``[N, 4]`` (x1, y1, x2, y2): the tight box of each object's visible pixels, pixel edges included."""
    boxes = []
    for mask in scene.instance_masks:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


class ShapesDetectionDataset(Dataset):
    """Detection samples of scene ``index`` of a split; ``label_of[c]`` is the label of colour-shape class ``c``."""

    def __init__(
        self,
        world: ShapesWorld,
        split: str,
        length: int,
        label_of: np.ndarray,
        transform,
        masks: bool,
        key_prefix: str,
        cache: RegionCache | None = None,
    ):
        self.world, self.split, self.length, self.label_of = world, split, length, label_of
        self.transform, self.masks, self.key_prefix, self.cache = transform, masks, key_prefix, cache

    def __len__(self) -> int:
        return self.length

    def key(self, index: int) -> str:
        """The scene's name in a region cache."""
        return f"{self.key_prefix}/{self.split}/{index}"

    def image(self, index: int):
        return self.world.scene(self.split, index).image

    def __getitem__(self, index: int) -> dict:
        scene = self.world.scene(self.split, index)
        labels = torch.from_numpy(self.label_of[[obj.class_index() for obj in scene.objects]])
        regions = self.cache.read(self.key(index)) if self.cache is not None else None
        masks = scene.instance_masks if self.masks else None
        return detection_sample(scene.image, visible_boxes(scene), labels, index, index, self.transform, masks, regions)


class ShapesWorldDetection(L.LightningDataModule):
    """Scenes of coloured shapes with boxes (and instance masks) over the 64 colour-shape names, some held out.

    ``classnames``: the base names, which training labels index. ``evaluation_sets(stage)``: one set of all 64
    names with its "base" and "novel" subsets (none when nothing is held out).
    """

    def __init__(
        self,
        held_out: int | Sequence[str] = 16,
        image_size: int = 128,
        min_objects: int = 1,
        max_objects: int = 4,
        seed: int = 0,
        train_samples: int = 8192,
        val_samples: int = 256,
        test_samples: int = 512,
        masks: bool = False,
        scale_jitter: tuple[float, float] | None = None,
        region_cache: str | None = None,
        templates: str | Sequence[str] = SHAPES_TEMPLATES,
        batch_size: int = 16,
        num_workers: int = 0,
    ):
        """
        Args:
            held_out: the novel compositions ("purple star"), never in a training scene: a list of names, or a
                number of them along the diagonals (see ``held_out_compositions``); 0 or [] for none.
            image_size: side of the square scenes in pixels.
            min_objects, max_objects: objects per scene; later objects occlude earlier ones (by at most a third).
            seed: the world's seed; scene ``i`` of a split is the same for a given seed.
            train_samples, val_samples, test_samples: scenes per training epoch, validation, test.
            masks: give each object's instance mask too (for a Mask R-CNN and mask AP).
            scale_jitter: ViLD's large-scale jitter range for training, e.g. [0.5, 2.0] (crops of ``image_size``);
                None: a horizontal flip alone.
            region_cache: a folder of cached CLIP embeddings of training regions (ViLD-image's targets; see
                ``lit_clip.region_cache``); None: none attached.
            templates: prompt templates with one ``{}`` for a class name.
            batch_size, num_workers: DataLoader settings.
        """
        super().__init__()
        self.save_hyperparameters()
        held = held_out_compositions(held_out)
        self.world = ShapesWorld(image_size, min_objects, max_objects, seed, held)
        names = class_names("color_shape")
        self.base_ids = self.world.split_classes("train", "color_shape")
        self.classnames = [names[i] for i in self.base_ids]
        self.novel = held
        self.templates = resolve_templates(templates)
        # Scenes of another world are other images: a cache built for one must not serve another.
        world = f"{seed}/{image_size}/{min_objects}-{max_objects}/{','.join(held)}"
        self.key_prefix = "shapesworld-" + hashlib.sha256(world.encode()).hexdigest()[:8]

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        names = tuple(class_names("color_shape"))
        return [EvaluationSet("", names, subsets=category_subsets(names, self.novel) if self.novel else {})]

    def train_dataset(self, with_cache: bool = True) -> ShapesDetectionDataset:
        """The training scenes, labelled over the base names (with the region cache attached, if any)."""
        h = self.hparams
        label_of = np.full(len(class_names("color_shape")), -1, dtype=np.int64)
        label_of[self.base_ids] = np.arange(len(self.base_ids))
        transform = detection_train_transform(h.scale_jitter, h.image_size if h.scale_jitter else None)
        dataset = ShapesDetectionDataset(
            self.world, "train", h.train_samples, label_of, transform, h.masks, self.key_prefix
        )
        if with_cache and h.region_cache is not None:
            dataset.cache = RegionCache(h.region_cache, [dataset.key(i) for i in range(len(dataset))])
        return dataset

    def _evaluation_dataset(self, split: str, length: int) -> ShapesDetectionDataset:
        label_of = np.arange(len(class_names("color_shape")))
        transform = detection_eval_transform()
        masks = self.hparams.masks
        return ShapesDetectionDataset(self.world, split, length, label_of, transform, masks, self.key_prefix)

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> StatefulDataLoader:
        h = self.hparams
        return stateful_loader(dataset, h.batch_size, h.num_workers, shuffle, collate_fn=detection_collate)

    def train_dataloader(self) -> StatefulDataLoader:
        h = self.hparams
        require_one_batch(h.train_samples, h.batch_size, self.trainer, "training scenes (train_samples)")
        return self._loader(self.train_dataset(), shuffle=True)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader(self._evaluation_dataset("val", self.hparams.val_samples))

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader(self._evaluation_dataset("test", self.hparams.test_samples))
