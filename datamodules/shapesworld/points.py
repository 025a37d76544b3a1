"""ShapesWorld point clouds: classification of the eight 3D solids, the embedded stand-in for ModelNet40.

PointCLIP's protocols on generated clouds (see :mod:`~lit_clip.datamodules.shapesworld.solids`): zero-shot
classification of the test clouds with the prompt "point cloud depth map of a {}.", and K-shot training of its
inter-view adapter on K clouds per class. Clouds are normalised as ModelNet40's HDF5 clouds are (centred, max
norm 1, y up), so a method sees the same coordinates on both.

Deliberate difference from the official scripts: PointCLIP searches its view weights (and V2 its prompts) on the
test set (their issues #4 and #25); here validation clouds come from a stream of their own, disjoint from the
test stream, so such searches can and should run on validation.

Nothing is read from disk: cloud ``i`` of a split is a function of the world's seed, the split and ``i``.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import lightning as L
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.fewshot import sample_shots
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.shapesworld.solids import SOLIDS, ShapesWorldSolids
from torch.utils.data import DataLoader, Dataset

from lit_clip.templates import POINTCLIP_TEMPLATES, resolve_templates


class ShapesSolidCloudDataset(Dataset):
    """``{"points" float [N, 3], "label", "index"}``: the clouds ``indices`` of a split (a ``PointCloudBatch``
    once collated)."""

    def __init__(self, solids: ShapesWorldSolids, split: str, indices: Sequence[int]):
        self.solids, self.split, self.indices = solids, split, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> dict:
        index = self.indices[position]
        cloud = self.solids.cloud(self.split, index)
        return {"points": torch.from_numpy(cloud.points), "label": torch.tensor(cloud.label), "index": index}


class ShapesWorldPoints(L.LightningDataModule):
    """Point clouds of the eight ShapesWorld solids, labelled over ``SOLIDS``, for PointCLIP (V1 and V2).

    Training uses ``train_samples`` clouds, or with ``shots`` K clouds per class drawn from them; validation
    ``val_samples`` clouds of the "val" stream (where view weights and prompts are searched); test and predict
    the ``test_samples`` clouds of the "test" stream. Every block of 8 consecutive clouds of a split holds each
    solid once, so sample counts that are multiples of 8 are exactly balanced.
    """

    def __init__(
        self,
        num_points: int = 1024,
        train_samples: int = 2048,
        val_samples: int = 256,
        test_samples: int = 1024,
        shots: int | None = None,
        seed: int = 1,
        world_seed: int = 0,
        noise: float = 0.0,
        tilt_degrees: float = 10.0,
        scale_jitter: bool = True,
        templates: str | Sequence[str] = POINTCLIP_TEMPLATES,
        batch_size: int = 32,
        num_workers: int = 0,
    ):
        """
        Args:
            num_points: points per cloud (PointCLIP: 1024 of ModelNet40's 2048).
            train_samples: training clouds, or with ``shots`` the pool the shots are drawn from.
            val_samples, test_samples: clouds of the validation and test splits (predict reads the test clouds).
            shots: K training clouds per class for few-shot training (PointCLIP: 1, 2, 4, 8, 16), drawn from the
                ``train_samples`` clouds as CoOp's Dassl draws shots (``lit_clip.datamodules.fewshot``);
                None: every training cloud.
            seed: the few-shot draw, as for ``ShapesWorldFewShot`` (unused without ``shots``), so that draws of
                several seeds are tested on the same test clouds.
            world_seed: the seed of the generated clouds.
            noise, tilt_degrees, scale_jitter: the clouds' (see ``ShapesWorldSolids``): Gaussian noise in units
                of the normalised cloud, the largest tilt from upright, per-instance proportions.
            templates: zero-shot prompt templates (a named set or a list), by default PointCLIP's.
            batch_size, num_workers: DataLoader settings (PointCLIP's few-shot training: 32).
        """
        super().__init__()
        self.save_hyperparameters()
        for name, value in (("train_samples", train_samples), ("val_samples", val_samples),
                            ("test_samples", test_samples), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be non-negative, got {num_workers}")
        if shots is not None:
            if shots < 1:
                raise ValueError(f"shots must be at least 1 (or None for every training cloud), got {shots}")
            if train_samples // len(SOLIDS) < shots:
                raise ValueError(
                    f"shots={shots} per class need train_samples >= {shots * len(SOLIDS)} "
                    f"({len(SOLIDS)} classes), got train_samples={train_samples}"
                )
        self.solids = ShapesWorldSolids(world_seed, num_points, noise, tilt_degrees, scale_jitter)
        self.classnames = list(SOLIDS)
        self.templates = resolve_templates(templates if isinstance(templates, str) else list(templates))

    def train_indices(self) -> list[int]:
        """The "train" clouds training uses: all ``train_samples``, or the drawn shots in index order."""
        h = self.hparams
        pool = [(index, self.solids.label("train", index)) for index in range(h.train_samples)]
        if h.shots is None:
            return [index for index, _ in pool]
        return sorted(index for index, _ in sample_shots(pool, h.shots, random.Random(h.seed)))

    def _loader(self, split: str, indices: Sequence[int], shuffle: bool = False) -> DataLoader:
        dataset = ShapesSolidCloudDataset(self.solids, split, indices)
        return stateful_loader(dataset, self.hparams.batch_size, self.hparams.num_workers, shuffle)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        indices = self.train_indices()
        what = "training clouds (shots x 8 classes)" if h.shots is not None else "training clouds (train_samples)"
        require_one_batch(len(indices), h.batch_size, self.trainer, what)
        return self._loader("train", indices, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", range(self.hparams.val_samples))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", range(self.hparams.test_samples))

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
