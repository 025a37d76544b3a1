"""Pictures and scores of CLIP-guided generation (CLIPDraw, CLIPasso, VQGAN-CLIP): the pictures as they form, and
a judge that did not guide them.

A picture optimised against a CLIP can fool that CLIP (adversarial strokes or textures it alone reads as the
prompt), so :class:`JudgePictures` scores the final pictures with another CLIP, trained independently, and by the
colour of their pixels, which no CLIP is asked about.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lit_clip import drawing
from lit_clip.checkpoints import load_clip
from lit_clip.datamodules.shapesworld.classification import SHAPES_TEMPLATES
from lit_clip.datamodules.shapesworld.world import COLOR_RGB, COLORS, class_names
from lit_clip.transforms import CLIP_MEAN, CLIP_STD
from lit_clip.zeroshot import build_zeroshot_classifier


def _tensorboard(trainer: L.Trainer) -> TensorBoardLogger | None:
    return next((logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)), None)


class GenerationProgress(L.Callback):
    """Logs the pictures with their captions as ``train/pictures`` every ``every_n_steps`` optimisation steps and at
    the end (CLIPasso: the best strokes so far), and their targets once as ``train/targets`` when there are target
    pictures; on the first process only."""

    def __init__(self, every_n_steps: int = 50, px: int = 128):
        self.every_n_steps, self.px = every_n_steps, px

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == 0 and trainer.is_global_zero and (logger := _tensorboard(trainer)):
            targets = trainer.datamodule.target_images()
            if len(targets):
                picture = drawing.caption_grid(_uint8(targets), trainer.datamodule.target_names, self.px)
                logger.experiment.add_image("train/targets", picture, 0, dataformats="HWC")
        if trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module)

    @torch.no_grad()
    def _log(self, trainer, pl_module) -> None:
        logger = _tensorboard(trainer)
        if logger is None or not trainer.is_global_zero:
            return
        picture = drawing.caption_grid(_uint8(pl_module.pictures()), pl_module.captions, self.px)
        logger.experiment.add_image("train/pictures", picture, trainer.global_step, dataformats="HWC")


class JudgePictures(L.Callback):
    """When ``fit`` ends, scores each picture with an independently trained CLIP and by its colours, logs the means as
    ``judge/*`` and writes them, per picture too, to ``judge.json`` in the run directory.

    A picture's truth is the longest class name of ``vocabulary`` (ShapesWorld's: "color_shape" as "red circle",
    "shape", "color") found in its caption (CLIPDraw's and VQGAN-CLIP's prompt; CLIPasso's target, named by its
    ShapesWorld caption); pictures without one are left out. Scores:

    - ``judge/top1``: the judge's zero-shot class (``templates``, by default ShapesWorld's) is the truth;
      ``judge/truth_probability``: the softmax probability it gives the truth.
    - ``judge/colour_pixels``: of the picture's coloured pixels (those whose largest and smallest channel differ by
      at least 0.25: not white, grey or black), the fraction nearest (in RGB) to the truth's ShapesWorld colour among
      the eight; when the truth names a colour.
    - ``judge/target_top1``: the same zero-shot on the target pictures, when there are: CLIPasso's photos (what a
      sketch is up against), VQGAN-CLIP's initial pictures.

    Args:
        judge: the judging CLIP's checkpoint (see :func:`lit_clip.load_clip`), not the one that guided the pictures.
        vocabulary: the ShapesWorld class names to judge among.
        templates: the judge's prompt templates.
    """

    def __init__(self, judge: str, vocabulary: str = "color_shape", templates: Sequence[str] = SHAPES_TEMPLATES):
        self.judge, self.vocabulary, self.templates = judge, vocabulary, tuple(templates)

    @torch.no_grad()
    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        judge = load_clip(self.judge).to(pl_module.device)
        names = class_names(self.vocabulary)
        classifier = build_zeroshot_classifier(judge, names, self.templates)
        truths = [_truth(caption, names) for caption in pl_module.captions]
        pictures = pl_module.pictures().float().clamp(0, 1)
        scores = self.zero_shot(judge, classifier, pictures, truths)
        per_picture = [
            {"caption": caption, **{key: values[k] for key, values in scores.items()}}
            for k, caption in enumerate(pl_module.captions)
        ]
        colours = [_colour_fraction(picture, names[truth]) if truth is not None else None
                   for picture, truth in zip(pictures, truths)]  # fmt: skip
        for entry, fraction in zip(per_picture, colours):
            entry["colour_pixels"] = fraction
        summary = {key: _mean(values) for key, values in scores.items()}
        summary["colour_pixels"] = _mean(colours)
        targets = trainer.datamodule.target_images()
        if len(targets):
            target_truths = [_truth(name, names) for name in trainer.datamodule.target_names]
            target_scores = self.zero_shot(judge, classifier, targets.to(pictures), target_truths)
            summary["target_top1"] = _mean(target_scores["top1"])
        summary = {key: value for key, value in summary.items() if value is not None}
        if (logger := _tensorboard(trainer)) is not None:
            logger.log_metrics({f"judge/{key}": value for key, value in summary.items()}, step=trainer.global_step)
        if trainer.log_dir:
            report = {"judge": self.judge, "vocabulary": self.vocabulary, "mean": summary, "pictures": per_picture}
            (Path(trainer.log_dir) / "judge.json").write_text(json.dumps(report, indent=2))

    def zero_shot(self, judge, classifier, pictures, truths) -> dict[str, list]:
        size = judge.visual.image_size
        resized = torch.nn.functional.interpolate(pictures, size=(size, size), mode="bilinear", antialias=True)
        mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        features = judge.encode_image((resized - mean.to(resized)) / std.to(resized)).float()
        features = torch.nn.functional.normalize(features, dim=-1)
        probabilities = (judge.logit_scale.exp() * features @ classifier.float()).softmax(dim=-1)
        top1 = [None if t is None else float(p.argmax() == t) for p, t in zip(probabilities, truths)]
        truth_probability = [None if t is None else float(p[t]) for p, t in zip(probabilities, truths)]
        return {"top1": top1, "truth_probability": truth_probability}


def _truth(caption: str, names: Sequence[str]) -> int | None:
    """The index of the longest class name in the caption, as whole words."""
    words = f" {' '.join(re.sub(r'[^a-z0-9]+', ' ', caption.lower()).split())} "  # punctuation and "_" as spaces
    found = [k for k, name in enumerate(names) if f" {name} " in words]
    return max(found, key=lambda k: len(names[k])) if found else None


def _colour_fraction(picture: torch.Tensor, truth_name: str) -> float | None:
    colour = next((c for c in COLORS if c in truth_name.split()), None)
    if colour is None:
        return None
    pixels = picture.permute(1, 2, 0).reshape(-1, 3).cpu().numpy()
    coloured = pixels[pixels.max(axis=1) - pixels.min(axis=1) >= 0.25]
    if len(coloured) == 0:
        return 0.0
    nearest = np.linalg.norm(coloured[:, None] * 255 - COLOR_RGB[None], axis=-1).argmin(axis=1)
    return float((nearest == COLORS.index(colour)).mean())


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _uint8(pictures: torch.Tensor) -> list[np.ndarray]:
    return list((pictures.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))
