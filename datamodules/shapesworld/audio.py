"""ShapesWorld with sound (AudioCLIP): every scene is an image, the sound of its objects and a caption.

Each object sounds as its colour and shape (pitch from the colour, timbre and rhythm from the shape; see
:mod:`~lit_clip.datamodules.shapesworld.sounds`), so a scene's sound names what its image shows and its caption
says. Nothing is read from disk: sample ``i`` of a split is a function of the seed, the split and ``i``.
"""
from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lit_clip.datamodules.audio import with_sample_rate
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.shapesworld.classification import SHAPES_TEMPLATES
from lit_clip.datamodules.shapesworld.sounds import ShapesWorldSounds
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names
from torch.utils.data import DataLoader, Dataset
from torch.utils.data import default_collate

from lit_clip.noun_prompts import caption_entries
from lit_clip.transforms import to_normalized_tensor

MODALITIES = ("audio", "image", "text")


class ShapesSoundScenes(Dataset):
    """``{"audio" [1, samples], "image", "text", "caption", "index"}`` of scenes, the modalities asked for."""

    def __init__(self, sounds: ShapesWorldSounds, split: str, length: int, context_length: int, modalities: Sequence[str]):
        self.sounds, self.split, self.length = sounds, split, length
        self.context_length, self.modalities = context_length, modalities

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        scene, sound = self.sounds.scene(self.split, index)
        sample = {"caption": scene.caption, "index": index}
        if "audio" in self.modalities:
            sample["audio"] = torch.from_numpy(sound)[None]
        if "image" in self.modalities:
            sample["image"] = to_normalized_tensor(scene.image)
        if "text" in self.modalities:
            sample["text"] = caption_entries(scene.caption, self.context_length)["text"]
        return sample


class ShapesSoundClassification(Dataset):
    """``{"audio" [1, samples], "label", "index"}``: the sound of one object, labels balanced over the 64
    colour-shape classes of the split."""

    def __init__(self, sounds: ShapesWorldSounds, split: str, length: int):
        self.sounds, self.split, self.length = sounds, split, length
        self.classes = sounds.world.split_classes(split)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        label = self.classes[index % len(self.classes)]
        _, sound = self.sounds.single_object(self.split, index, label)
        return {"audio": torch.from_numpy(sound)[None], "label": torch.tensor(label), "index": index}


class ShapesWorldAudio(L.LightningDataModule):
    """Scenes as sound-image-caption triplets for AudioCLIP, evaluated by zero-shot audio classification and
    retrieval between the modalities.

    Training batches hold the ``modalities`` asked for; validation and test have two loaders: triplets of
    ``val_samples`` scenes (retrieval both ways between every pair) and single-object sounds over the
    ``color_shape`` classes (zero-shot audio classification with ``classnames`` x ``templates``). Every batch
    carries ``sample_rate``.
    """

    def __init__(
        self,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 1,
        held_out: Sequence[str] = (),
        seed: int = 0,
        sample_rate: int = 8000,
        duration: float = 1.0,
        modalities: Sequence[str] = MODALITIES,
        train_samples: int = 25_600,
        val_samples: int = 512,
        zeroshot_samples_per_class: int = 8,
        context_length: int = 32,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        """
        Args:
            image_size, min_objects, max_objects, held_out, seed: the world's (see ``ShapesWorldCaptions``).
            sample_rate, duration: the sounds' rate in Hz and length in seconds (``ESResNeXt-Tiny`` takes 8 kHz).
            modalities: what training batches hold, two or three of ``audio``, ``image``, ``text``.
            train_samples: scenes per training epoch.
            val_samples: scenes of the retrieval loader in validation and test.
            zeroshot_samples_per_class: single-object sounds per class for zero-shot audio classification.
            context_length: token length of the captions; at most the model's context length.
            batch_size: per process.
            num_workers: DataLoader worker processes.
        """
        super().__init__()
        self.save_hyperparameters()
        unknown = sorted(set(modalities) - set(MODALITIES))
        if unknown or len(set(modalities)) < 2:
            raise ValueError(f"modalities must be two or three of {list(MODALITIES)}, got {list(modalities)}")
        self.world = ShapesWorld(image_size, min_objects, max_objects, seed, held_out)
        self.sounds = ShapesWorldSounds(self.world, sample_rate, duration)
        self.classnames = class_names("color_shape")
        self.templates = SHAPES_TEMPLATES

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        h = self.hparams
        collate = with_sample_rate(default_collate, h.sample_rate)
        return stateful_loader(dataset, h.batch_size, h.num_workers, shuffle, collate_fn=collate)

    def _evaluation_loaders(self, split: str) -> list[DataLoader]:
        h = self.hparams
        scenes = ShapesSoundScenes(self.sounds, split, h.val_samples, h.context_length, MODALITIES)
        zeroshot = ShapesSoundClassification(self.sounds, split, h.zeroshot_samples_per_class * len(self.classnames))
        return [self._loader(scenes), self._loader(zeroshot)]

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        require_one_batch(h.train_samples, h.batch_size, self.trainer, "training samples (train_samples)")
        dataset = ShapesSoundScenes(self.sounds, "train", h.train_samples, h.context_length, h.modalities)
        return self._loader(dataset, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return self._evaluation_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._evaluation_loaders("test")
