"""Few-shot classification as the CoOp benchmark runs it: the data of CoOp, CoCoOp, MaPLe, CLIP-Adapter, Tip-Adapter.

- **K shots**: K training images per class, drawn with a seed as Dassl's
  ``generate_fewshot_dataset`` draws them (``random.sample`` per class, classes in order of
  first appearance; a class with fewer than K images keeps all of them). The validation
  split is cut the same way to ``min(K, 4)`` images per class, from the same random stream.
  The whole validation split stays available (``full_val_dataloader``): Tip-Adapter's official
  code searches its hyper-parameters on it.
- **Training batches**: the last partial batch is dropped when there is a full one, as Dassl's
  loader does; ``train_drop_last=False`` keeps it, as Tip-Adapter-F's official loader does.
- **Base-to-new** (CoCoOp): the labels sorted, base = the first ``ceil(n / 2)``, new = the rest,
  each half relabelled from 0. Training and validation see the base classes; testing reports
  the base and the new test images, each classified among its own half's classes
  (``test/base_top1``, ``test/new_top1``, and their harmonic mean ``test/hm``).
- **Transforms**: training RandomResizedCrop (scale 0.08-1, bicubic) + horizontal flip;
  evaluation resize of the short side + centre crop; CLIP's mean and std.

``CoOpFewShot`` reads CoOp's 11 data sets (the layouts of ``CoOpClassification``);
``ShapesWorldFewShot`` generates the 64 colour-shape classes of ShapesWorld, the embedded default.
"""
from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any, Callable, Sequence

import lightning as L
from lit_clip.datamodules.classification import ImageFileDataset, coop_reader, open_rgb
from lit_clip.datamodules.predict import prediction_loaders
from PIL import Image
from torch.utils.data import DataLoader

from lit_clip.batches import EvaluationSet
from lit_clip.templates import COOP_TEMPLATES, resolve_templates
from lit_clip.transforms import clip_eval_transform, clip_train_transform

IMAGENET_FULL_VAL_PER_CLASS = 50
Samples = list[tuple[Any, int]]  # (image key, label): a path, or whatever the data module's open_image takes


def sample_shots(samples: Samples, shots: int, rng: random.Random) -> Samples:
    """``shots`` samples per label, as CoOp's Dassl draws them: a class with fewer images keeps them all."""
    by_label: dict[int, Samples] = defaultdict(list)
    for sample in samples:
        by_label[sample[1]].append(sample)
    drawn: Samples = []
    for items in by_label.values():
        drawn += rng.sample(items, shots) if len(items) >= shots else items
    return drawn


def base_and_new_labels(num_classes: int) -> tuple[list[int], list[int]]:
    """CoOp's split of the sorted labels: the first ``ceil(n / 2)`` are base, the rest new."""
    middle = math.ceil(num_classes / 2)
    return list(range(middle)), list(range(middle, num_classes))


def keep_labels(samples: Samples, labels: Sequence[int]) -> Samples:
    """The samples of ``labels``, relabelled ``0 .. len(labels) - 1`` in that order."""
    relabel = {label: new for new, label in enumerate(labels)}
    return [(key, relabel[label]) for key, label in samples if label in relabel]


class FewShotDataModule(L.LightningDataModule):
    """The protocol over any labelled image source: subclasses list splits and open images."""

    def __init__(self, shots: int):
        """Subclasses save their arguments as hyper-parameters: shots, seed, base_to_new, image_size,
        train_crop_scale, train_drop_last, batch_size, eval_batch_size, num_workers."""
        super().__init__()
        if shots < 1:
            raise ValueError(f"shots must be at least 1, got {shots}")
        self.all_classnames: list[str] = []
        self.templates: list[str] = []
        self._splits: dict[str, Samples] = {}

    # --- what a source provides: full_split(split) and open_image(key), a picklable function ---------
    open_image: Callable[[Any], Image.Image]

    def full_split(self, split: str) -> Samples:
        raise NotImplementedError

    # --- the protocol ------------------------------------------------------------------------------
    def _draw(self) -> None:
        """The few-shot training and validation sets and the test set, over all classes, then the base / new cut."""
        h = self.hparams
        rng = random.Random(h.seed)
        train = sample_shots(self.full_split("train"), h.shots, rng)
        val = sample_shots(self.validation_pool(train), min(h.shots, 4), rng)
        full_val = self.full_validation(train, rng)  # drawn last: the draws above are those of Dassl
        test = self.full_split("test")
        if h.base_to_new:
            base, new = base_and_new_labels(len(self.all_classnames))
            self._splits = {"train": keep_labels(train, base), "val": keep_labels(val, base),
                            "full_val": keep_labels(full_val, base),
                            "base": keep_labels(test, base), "new": keep_labels(test, new)}  # fmt: skip
            self._classes = {"train": [self.all_classnames[i] for i in base], "new": [self.all_classnames[i] for i in new]}
        else:
            self._splits = {"train": train, "val": val, "full_val": full_val, "test": test}
            self._classes = {"train": list(self.all_classnames)}

    def validation_pool(self, shots: Samples) -> Samples:
        """The images the validation shots are drawn from: the validation split."""
        return self.full_split("val")

    def full_validation(self, shots: Samples, rng: random.Random) -> Samples:
        """The whole validation split (of all classes)."""
        return self.full_split("val")

    @property
    def classnames(self) -> list[str]:
        """The classes of training and validation (the base classes in base-to-new)."""
        if not self._splits:
            self._draw()
        return self._classes["train"]

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        """The class sets of the ``stage`` loaders, in order; see ``lit_clip.methods.classification.frozen_classifier``."""
        if stage == "test" and self.hparams.base_to_new:
            return [EvaluationSet("base", tuple(self.classnames)), EvaluationSet("new", tuple(self._classes["new"]))]
        return [EvaluationSet("", tuple(self.classnames))]

    def samples(self, split: str) -> Samples:
        """The drawn samples of ``train``, ``val``, ``test`` (or ``base`` and ``new`` in base-to-new)."""
        if not self._splits:
            self._draw()
        return self._splits[split]

    # --- loaders -----------------------------------------------------------------------------------
    def _loader(self, split: str, train_transform: bool, shuffle: bool) -> DataLoader:
        h = self.hparams
        transform = (
            clip_train_transform(h.image_size, scale=tuple(h.train_crop_scale), flip=True)
            if train_transform
            else clip_eval_transform(h.image_size)
        )
        samples = self.samples(split)
        return DataLoader(
            ImageFileDataset(samples, transform, self.open_image),
            batch_size=h.batch_size if shuffle else h.eval_batch_size,
            shuffle=shuffle,
            # As Dassl: a full batch when there is one (unless train_drop_last is off, as in Tip-Adapter-F).
            drop_last=shuffle and h.train_drop_last and len(samples) >= h.batch_size,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train_transform=True, shuffle=True)

    def augmented_train_dataloader(self) -> DataLoader:
        """The training images in a fixed order, freshly augmented on every pass (Tip-Adapter's cache)."""
        return self._loader("train", train_transform=True, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train_transform=False, shuffle=False)

    def full_val_dataloader(self) -> DataLoader:
        """Every validation image (of the training classes), not only the ``min(K, 4)`` per class of ``val``."""
        return self._loader("full_val", train_transform=False, shuffle=False)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        if self.hparams.base_to_new:
            return [self._loader(split, train_transform=False, shuffle=False) for split in ("base", "new")]
        return self._loader("test", train_transform=False, shuffle=False)

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        return prediction_loaders(self.hparams, default=self.test_dataloader)


class CoOpFewShot(FewShotDataModule):
    """One of CoOp's 11 data sets under the few-shot protocol (files as ``CoOpClassification`` reads them).

    ImageNet has no validation split apart from its test images (CoOp uses its val set as both),
    so here its validation shots are drawn from the training images that are not among the shots:
    nothing is ever tuned on test images.
    """

    def __init__(
        self,
        root: str,
        dataset: str,
        shots: int = 16,
        seed: int = 1,
        base_to_new: bool = False,
        image_size: int = 224,
        train_crop_scale: Sequence[float] = (0.08, 1.0),
        train_drop_last: bool = True,
        templates: str | Sequence[str] | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 100,
        num_workers: int = 8,
        predict_images: str | None = None,
    ):
        """
        Args:
            root: the data root holding CoOp's data set folders (see ``CoOpClassification``).
            dataset: ImageNet, Caltech101, OxfordPets, StanfordCars, OxfordFlowers, Food101, FGVCAircraft,
                SUN397, DescribableTextures, EuroSAT or UCF101.
            shots: training images per class (CoOp: 1, 2, 4, 8, 16).
            seed: the seed of the draw (CoOp: 1, 2, 3).
            base_to_new: train on the base half of the classes, test on base and new.
            image_size: side of the square model input.
            train_crop_scale: RandomResizedCrop's area range (CoOp 0.08-1; Tip-Adapter 0.5-1).
            train_drop_last: drop the last partial training batch when there is a full one (Dassl); Tip-Adapter-F
                keeps it.
            templates: the hand-written prompt(s) of the zero-shot head; by default CoOp's one for the data set.
            batch_size: training batch per process; eval_batch_size: validation and test.
            num_workers: DataLoader worker processes.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test split (see ``lit_clip.datamodules.predict``).
        """
        super().__init__(shots)
        self.save_hyperparameters()
        self._reader = coop_reader(root, dataset)
        self.open_image = open_rgb
        self.all_classnames = self._reader.classnames
        self.templates = resolve_templates([COOP_TEMPLATES[dataset]] if templates is None else templates)

    def full_split(self, split: str) -> Samples:
        return self._reader.samples(split)

    def validation_pool(self, shots: Samples) -> Samples:
        if self.hparams.dataset != "ImageNet":
            return super().validation_pool(shots)
        chosen = {path for path, _ in shots}
        return [sample for sample in self.full_split("train") if sample[0] not in chosen]

    def full_validation(self, shots: Samples, rng: random.Random) -> Samples:
        if self.hparams.dataset != "ImageNet":
            return super().full_validation(shots, rng)
        # ImageNet's only other split is its test set: as many training images (not among the shots) as the
        # 50 per class of the split the official Tip-Adapter searches on, ImageNet's val = test.
        return sample_shots(self.validation_pool(shots), IMAGENET_FULL_VAL_PER_CLASS, rng)


__all__ = ["CoOpFewShot", "FewShotDataModule", "base_and_new_labels", "keep_labels", "sample_shots"]
