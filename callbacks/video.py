"""Pictures for the TensorBoard dashboard of the video methods: sample clips as frame strips with their captions,
and the scores the method ranks videos by (drawn by :mod:`lit_clip.drawing`; this callback gathers and logs)."""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lit_clip import drawing


class VideoSamples(L.Callback):
    """After each validation: ``val/video_samples``, the first clips of the first validation batch as rows of
    frames with their captions (or class names), and ``val/video_similarity``, the method's
    ``similarity_matrix(batch)`` for them: text-video scores for retrieval methods (the diagonal holds the true
    pairs), video-class scores for recognition, each video shown by its middle frame.

    Works with a LightningModule that has ``similarity_matrix(batch) -> (scores [videos, columns], column names)``
    and validation batches with ``video``, ``frame_mask`` and ``caption`` or ``label``.
    """

    def __init__(self, num_samples: int = 6, frame_px: int = 64):
        self.num_samples, self.frame_px = num_samples, frame_px
        self._batch: dict | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and "video" in batch:
            n = min(self.num_samples, batch["video"].shape[0])
            self._batch = {key: value[:n] for key, value in batch.items() if key != "skipped_index"}

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        batch, self._batch = self._batch, None
        if batch is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        writer, step = logger.experiment, trainer.global_step
        clips = [list(drawing.to_uint8_image(video[mask])) for video, mask in zip(batch["video"], batch["frame_mask"])]
        scores, columns = pl_module.similarity_matrix(batch)
        if "caption" in batch:
            names = list(batch["caption"])
        else:
            names = [columns[int(label)] for label in batch["label"]]
        writer.add_image("val/video_samples", drawing.frame_strips(clips, names, self.frame_px), step, dataformats="HWC")
        middle_frames = [clip[len(clip) // 2] for clip in clips]
        title = f"{type(pl_module).__name__}'s scores"  # scaled cosines, probabilities or dot products
        figure = drawing.similarity_figure(middle_frames, columns, scores.float().cpu(), self.frame_px, title=title)
        writer.add_image("val/video_similarity", figure, step, dataformats="HWC")
