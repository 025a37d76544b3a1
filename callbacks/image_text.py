"""Pictures for the TensorBoard dashboard: what the model sees and how it matches images to captions
(drawn by :mod:`lit_clip.drawing`; this callback only gathers the batch and logs)."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger

from lit_clip import drawing


class ImageTextSamples(L.Callback):
    """After each validation, logs a grid of sample images with their captions and their image-text
    cosine similarities (a row per caption, a column per image; the diagonal holds the true pairs).

    Works with any LightningModule that has a CLIP-like ``model`` (``encode_image``, ``encode_text``)
    and validation batches ``{"image", "text", "caption"}`` in its first loader. The pictures are
    :func:`lit_clip.drawing.caption_grid` and :func:`lit_clip.drawing.similarity_figure`; ``image_px`` is
    the side of the images in both.
    """

    def __init__(self, num_samples: int = 8, image_px: int = 72):
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
        similarity = (image_features @ text_features.T).cpu()
        pictures = drawing.to_uint8_image(batch["image"])
        samples = drawing.caption_grid(pictures, batch["caption"], self.image_px)
        figure = drawing.similarity_figure(pictures, batch["caption"], similarity, self.image_px)
        logger.experiment.add_image("val/samples", samples, trainer.global_step, dataformats="HWC")
        logger.experiment.add_image("val/similarity", figure, trainer.global_step, dataformats="HWC")
