"""What CLIP-guided generation draws: text prompts (CLIPDraw, VQGAN-CLIP) or target pictures (CLIPasso, and
VQGAN-CLIP's optional initial images), for a number of optimisation steps.

These methods optimise the picture itself, not a network, so "training" is ``steps`` optimisation steps on the same
targets: the loader yields ``steps`` :class:`~lit_clip.batches.GenerationBatch` es that only count the steps, and the
method reads its targets from the data module once, in ``setup``, to create one drawing (or latent) per target.
One run draws every target at once, batched: a list of prompts gives one picture each.

Target pictures come from files (any format Pillow reads; transparent ones composited on white, as CLIPasso does)
or from ShapesWorld (test-split scenes by index, ``shapesworld_scenes``), resized to ``image_size`` bicubically as
CLIPasso's ``get_target``: a non-square picture is stretched unless ``pad_to_square`` pads it with white first
(CLIPasso's ``fix_scale``, which adds a 10 px margin).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.images import load_rgb
from lit_clip.datamodules.shapesworld.world import ShapesWorld
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

# CLIPasso's fix_scale: a white square of the longer side plus 20 px.
PAD_MARGIN = 20


class _Steps(Dataset):
    def __init__(self, steps: int):
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict:
        return {"step": step}


class GenerationTargets(L.LightningDataModule):
    """Prompts and / or target pictures for CLIP-guided generation, and the number of optimisation steps.

    Args:
        prompts: the texts to draw, one picture each. VQGAN-CLIP also reads weighted prompts, ``"text:weight"`` (a
            negative weight pushes away), several for one picture separated by ``" | "``.
        images: target picture files (CLIPasso sketches each; VQGAN-CLIP starts from them, one per prompt).
        shapesworld_scenes: indices of ShapesWorld test scenes to use as target pictures, after ``images``.
        shapesworld_objects: objects per ShapesWorld scene (1 for a picture of one object).
        image_size: side of the target pictures.
        pad_to_square: pad a non-square picture with white to a square before resizing, instead of stretching it.
        steps: optimisation steps (the loader's length; with ``max_epochs: 1``, the run's length).
    """

    def __init__(
        self,
        prompts: Sequence[str] = (),
        images: Sequence[str] = (),
        shapesworld_scenes: Sequence[int] = (),
        shapesworld_objects: int = 1,
        image_size: int = 224,
        pad_to_square: bool = False,
        steps: int = 1000,
    ):
        super().__init__()
        if not prompts and not images and not shapesworld_scenes:
            raise ValueError("GenerationTargets needs prompts, images or shapesworld_scenes: there is nothing to draw")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        blank = [i for i, prompt in enumerate(prompts) if not prompt.strip()]
        if blank:
            raise ValueError(f"prompt {blank[0]} is empty; expected a text to draw")
        missing = [path for path in images if not Path(path).is_file()]
        if missing:
            raise FileNotFoundError(f"target image {missing[0]} does not exist")
        self.prompts, self.images = list(prompts), [str(path) for path in images]
        self.shapesworld_scenes = list(shapesworld_scenes)
        self.shapesworld_objects, self.image_size = shapesworld_objects, image_size
        self.pad_to_square, self.steps = pad_to_square, steps

    @property
    def target_names(self) -> list[str]:
        """A name for each target picture: the file's stem, or the ShapesWorld scene's caption."""
        return [Path(path).stem for path in self.images] + [scene.caption for scene in self._scenes()]

    def target_images(self) -> Tensor:
        """The target pictures, ``[N, 3, image_size, image_size]`` in [0, 1] (N may be 0)."""
        pictures = [load_rgb(path) for path in self.images] + [scene.image for scene in self._scenes()]
        if not pictures:
            return torch.zeros(0, 3, self.image_size, self.image_size)
        return torch.stack([self._prepared(picture) for picture in pictures])

    def _scenes(self) -> list:
        # Drawn at the target size, not resized: ShapesWorld renders any size sharply.
        world = ShapesWorld(self.image_size, self.shapesworld_objects, self.shapesworld_objects)
        return [world.scene("test", index) for index in self.shapesworld_scenes]

    def _prepared(self, picture: Image.Image) -> Tensor:
        if self.pad_to_square and picture.width != picture.height:
            side = max(picture.size) + PAD_MARGIN
            square = Image.new("RGB", (side, side), "white")
            square.paste(picture, ((side - picture.width) // 2, (side - picture.height) // 2))
            picture = square
        picture = picture.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Steps(self.steps), batch_size=1)
