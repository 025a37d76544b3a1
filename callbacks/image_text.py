"""Pictures for the TensorBoard dashboard: what the model sees and how it matches images to captions."""
from __future__ import annotations

import textwrap

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image, ImageDraw

from lit_clip.transforms import denormalize

CELL = 24  # pixels per similarity-matrix cell


class ImageTextSamples(L.Callback):
    """After each validation, logs a grid of sample images with their captions and their image-text
    cosine-similarity matrix (rows images, columns captions; the diagonal holds the true pairs).

    Works with any LightningModule that has a CLIP-like ``model`` (``encode_image``, ``encode_text``)
    and validation batches ``{"image", "text", "caption"}`` in its first loader.
    """

    def __init__(self, num_samples: int = 8, image_px: int = 96):
        self.num_samples, self.image_px = num_samples, image_px
        self._batch: dict | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and "caption" in batch:
            n = min(self.num_samples, batch["image"].shape[0])
            if "text_image_index" in batch:  # several captions per image: show each image's first caption
                first = [int((batch["text_image_index"] == i).nonzero()[0]) for i in batch["index"][:n]]
            else:
                first = list(range(n))
            self._batch = {
                "image": batch["image"][:n],
                "text": batch["text"][first],
                "caption": [batch["caption"][j] for j in first],
            }

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        batch, self._batch = self._batch, None
        if batch is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        model = pl_module.model
        image_features = F.normalize(model.encode_image(batch["image"]).float(), dim=-1)
        text_features = F.normalize(model.encode_text(batch["text"]).float(), dim=-1)
        similarity = (image_features @ text_features.T).cpu().numpy()
        pixels = (denormalize(batch["image"]).cpu().numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        step = trainer.global_step
        logger.experiment.add_image("val/samples", self.render_samples(pixels, batch["caption"]), step, dataformats="HWC")
        logger.experiment.add_image("val/similarity", self.render_similarity(similarity), step, dataformats="HWC")

    def render_samples(self, pixels: np.ndarray, captions: list[str]) -> np.ndarray:
        """Images side by side, each with its wrapped caption underneath."""
        px, text_h = self.image_px, 76
        canvas = Image.new("RGB", (px * len(captions), px + text_h), "white")
        draw = ImageDraw.Draw(canvas)
        for i, (image, caption) in enumerate(zip(pixels, captions)):
            canvas.paste(Image.fromarray(image).resize((px, px), Image.NEAREST), (i * px, 0))
            draw.multiline_text((i * px + 2, px + 2), "\n".join(textwrap.wrap(caption, 16)[:5]), fill="black")
        return np.asarray(canvas)

    @staticmethod
    def render_similarity(similarity: np.ndarray) -> np.ndarray:
        """A heat map from dark blue (lowest) to yellow (highest similarity), one cell per pair."""
        low, high = similarity.min(), similarity.max()
        t = (similarity - low) / max(high - low, 1e-6)
        colours = np.stack([t * 253, 40 + t * 191, 100 * (1 - t) + 37 * t], axis=-1).astype(np.uint8)
        return colours.repeat(CELL, axis=0).repeat(CELL, axis=1)
