"""CLIPDraw (Frans, Soros and Witkowski, 2021): a drawing of a text prompt, made by optimising the control points,
widths and colours of random vector strokes so that a frozen CLIP sees the prompt in them. No training, no
generator network: the only parameters are the strokes.

As the official notebook (kvfrans/clipdraw, ``clipdraw.ipynb``, the "Curve Optimizer" cell):

1. **Strokes.** 256 open paths, each of 1-3 chained cubic Bezier segments (3 new control points a segment), its start
   uniform over the canvas and each following control point a random step of up to +-0.05 of the side from the last
   (``radius = 0.1`` times ``U - 0.5``); width 1 (diffvg's ``stroke_width``, a *half*-width: a 2 px line) and a
   random RGBA colour, alpha included. Rendered over white on a 224 x 224 canvas (here by
   :func:`~lit_clip.methods.generation.rasterizer.rasterize`, in place of diffvg).
2. **Augmentations.** Four independent draws a step of ``RandomPerspective(fill=1, p=1, distortion_scale=0.5)`` then
   ``RandomResizedCrop(224, scale=(0.7, 0.9))``, batched through the image tower; no un-augmented copy. The notebook
   feeds CLIP the [0, 1] pixels without its mean / std (``use_normalized_clip = False``: the paper's pictures were
   made that way); ``normalize: true`` normalises.
3. **Loss.** Minus the cosine between each augmented view and the prompt's text embedding, summed over the views;
   each negative prompt adds ``0.3 x`` its cosine (off by default).
4. **Optimisation.** Adam on the points (lr 1.0, in pixels), the widths (0.1) and the colours (0.01); only the
   points' lr steps down, to 0.4 at half the steps and 0.1 at three quarters. After each step widths are clamped
   to [1, 50] (half-widths) and colours to [0, 1]. 1000 steps with CLIP ViT-B/32.

Several prompts are drawn at once, one picture each: their strokes are batched and their losses summed, which is
the same as separate runs (Adam is elementwise).

Deliberate differences from the official code:

- The rasteriser: coverage from the distance to the flattened curve with a one-pixel box-filtered edge instead of
  diffvg's 2 x 2 jittered supersamples and edge-sampled gradients (see :mod:`~lit_clip.methods.generation.rasterizer`).
- Random numbers come from a seeded torch generator (``seed``), not Python's unseeded ``random``.
- The augmentations are our differentiable implementation of torchvision's two transforms, with their sampling
  (see :mod:`~lit_clip.methods.generation.guidance`), and the crop is resized to the CLIP's own input size (224 for
  ViT-B/32; 64 for the ShapesWorld CLIP).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from lit_clip.methods.generation.guidance import GuidedGeneration, random_perspective, random_resized_crop
from lit_clip.methods.generation.rasterizer import rasterize, to_svg


class CLIPDraw(GuidedGeneration):
    """CLIPDraw: strokes optimised towards each prompt of the data module.

    Args:
        pretrained, architecture, quick_gelu, normalize: the guiding CLIP (see :class:`GuidedGeneration`).
        num_paths: strokes per drawing (256).
        max_segments: each stroke has 1 to this many cubic segments (3).
        canvas_size: side of the drawing in pixels (224).
        step_radius: control points are a random walk of steps up to +- step_radius / 2 of the side (0.1).
        initial_width, max_width: diffvg's stroke half-width at the start (1.0) and its upper clamp (50); the lower
            clamp is 1.
        num_augmentations: augmented views a step (4).
        distortion_scale: RandomPerspective's (0.5).
        crop_scale: RandomResizedCrop's area range (0.7, 0.9).
        negative_prompts, negative_weight: texts the drawings should not look like, and their weight (0.3).
        points_lr, widths_lr, colours_lr: Adam's learning rates (1.0, 0.1, 0.01).
        points_lr_steps: the points' lr factors from half and from three quarters of the steps on (0.4, 0.1).
        seed: the strokes' initialisation and the augmentations' draws.
    """

    def __init__(
        self,
        pretrained: str,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        normalize: bool = False,
        num_paths: int = 256,
        max_segments: int = 3,
        canvas_size: int = 224,
        step_radius: float = 0.1,
        initial_width: float = 1.0,
        max_width: float = 50.0,
        num_augmentations: int = 4,
        distortion_scale: float = 0.5,
        crop_scale: tuple[float, float] = (0.7, 0.9),
        negative_prompts: Sequence[str] = (),
        negative_weight: float = 0.3,
        points_lr: float = 1.0,
        widths_lr: float = 0.1,
        colours_lr: float = 0.01,
        points_lr_steps: tuple[float, float] = (0.4, 0.1),
        seed: int = 0,
    ):
        super().__init__(pretrained, architecture=architecture, quick_gelu=quick_gelu, normalize=normalize)
        if num_paths < 1 or max_segments < 1:
            raise ValueError(f"need at least one path of one segment, got {num_paths} paths of {max_segments}")
        self.save_hyperparameters()
        self.generator = torch.Generator().manual_seed(seed)

    # --- the strokes -----------------------------------------------------------------------------
    def create_pictures(self, datamodule) -> None:
        prompts = list(datamodule.prompts)
        if not prompts:
            raise ValueError("CLIPDraw draws text prompts: the data module has none (set data.prompts)")
        hp, count = self.hparams, len(prompts)
        segments = torch.randint(1, hp.max_segments + 1, (count, hp.num_paths), generator=self.generator)
        steps = (torch.rand(count, hp.num_paths, 3 * hp.max_segments, 2, generator=self.generator) - 0.5)
        start = torch.rand(count, hp.num_paths, 1, 2, generator=self.generator)
        walk = torch.cat([start, start + (hp.step_radius * steps).cumsum(dim=2)], dim=2)
        self.points = nn.Parameter(walk * hp.canvas_size)  # [N, P, 3S + 1, 2] in pixels
        self.half_widths = nn.Parameter(torch.full((count, hp.num_paths), float(hp.initial_width)))
        self.colours = nn.Parameter(torch.rand(count, hp.num_paths, 4, generator=self.generator))
        self.register_buffer("num_segments", segments)
        self.captions = prompts
        self.register_buffer("prompt_features", self.text_features(prompts), persistent=False)
        negatives = self.text_features(hp.negative_prompts) if hp.negative_prompts else None
        self.register_buffer("negative_features", negatives, persistent=False)

    def pictures(self) -> Tensor:
        size = self.hparams.canvas_size
        return rasterize(self.points, 2 * self.half_widths, self.colours, size, size, num_segments=self.num_segments)

    def save_vector_pictures(self, directory: Path, stems: Sequence[str]) -> None:
        size = self.hparams.canvas_size
        documents = to_svg(self.points, 2 * self.half_widths, self.colours, size, size, num_segments=self.num_segments)
        for stem, document in zip(stems, documents):
            (directory / f"{stem}.svg").write_text(document)

    # --- the loss --------------------------------------------------------------------------------
    def augmented_views(self, drawing: Tensor) -> Tensor:
        """``num_augmentations`` independent perspective + crop draws of one drawing ``[1, 3, H, W]``."""
        hp = self.hparams
        views = [
            random_resized_crop(
                random_perspective(drawing, hp.distortion_scale, fill=1.0, generator=self.generator),
                self.clip_size,
                tuple(hp.crop_scale),
                generator=self.generator,
            )
            for _ in range(hp.num_augmentations)
        ]
        return torch.cat(views)

    def drawing_losses(self, drawings: Tensor) -> tuple[Tensor, Tensor]:
        """Each drawing's loss, ``[N]``: minus its views' cosines to its prompt, summed, plus the negatives'; and
        the mean cosine of its views to its prompt, ``[N]``."""
        losses, cosines = [], []
        for drawing, prompt in zip(drawings, self.prompt_features):
            features = self.encode_pictures(self.augmented_views(drawing[None]))  # [views, dim]
            cosine = features @ prompt
            loss = -cosine.sum()
            if self.negative_features is not None:
                loss = loss + self.hparams.negative_weight * (features @ self.negative_features.T).sum()
            losses.append(loss)
            cosines.append(cosine.mean())
        return torch.stack(losses), torch.stack(cosines)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        losses, cosines = self.drawing_losses(self.pictures())
        self.log("train/loss", losses.mean(), prog_bar=True)
        self.log("train/prompt_cosine", cosines.mean().detach())
        return losses.sum()

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        with torch.no_grad():
            self.half_widths.clamp_(1.0, self.hparams.max_width)
            self.colours.clamp_(0.0, 1.0)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.Adam(
            [
                {"params": [self.points], "lr": hp.points_lr},
                {"params": [self.half_widths], "lr": hp.widths_lr},
                {"params": [self.colours], "lr": hp.colours_lr},
            ]
        )
        total = self.trainer.estimated_stepping_batches
        half, three_quarters = int(0.5 * total), int(0.75 * total)

        def points_factor(step: int) -> float:
            return 1.0 if step < half else hp.points_lr_steps[0] if step < three_quarters else hp.points_lr_steps[1]

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, [points_factor, lambda step: 1.0, lambda step: 1.0])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
