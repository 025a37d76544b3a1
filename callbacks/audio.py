"""Pictures and sounds for the TensorBoard dashboard of AudioCLIP: what the audio tower hears, and how the three
modalities match (drawn by :mod:`lit_clip.drawing`; this callback gathers the batch and logs)."""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger

from lit_clip import drawing


class AudioSamples(L.Callback):
    """After each validation: the spectrograms of sample sounds (the audio tower's front end, its three frequency
    bands stacked, low at the bottom) with their captions, each sound playable in TensorBoard's audio tab, and the
    cosine similarities of the three pairs of modalities (audio-text, audio-image, image-text; the diagonal holds
    the true triplets).

    Works with a LightningModule whose ``model`` is an :class:`~lit_clip.models.audioclip.AudioCLIP` and whose first
    validation loader gives ``{"audio", "caption", "sample_rate"}`` batches, with ``image`` and ``text`` for the
    pairs that involve them.
    """

    def __init__(self, num_samples: int = 6, image_px: int = 72):
        self.num_samples, self.image_px = num_samples, image_px
        self._batch: dict | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and "audio" in batch and "caption" in batch:
            n = min(self.num_samples, batch["audio"].shape[0])
            self._batch = {key: value[:n] for key, value in batch.items() if key in ("audio", "image", "text", "caption")}
            self._batch["sample_rate"] = int(batch["sample_rate"])

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        batch, self._batch = self._batch, None
        if batch is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        model, writer, step = pl_module.model, logger.experiment, trainer.global_step
        decibels = model.audio.spectrogram(batch["audio"])[:, 0].flatten(1, 2)  # first channel, bands stacked
        spectrograms = [drawing.spectrogram_picture(d) for d in decibels]
        captions = batch["caption"]
        writer.add_image("val/audio_samples", drawing.caption_grid(spectrograms, captions, self.image_px), step,
                         dataformats="HWC")  # fmt: skip
        for k, sound in enumerate(batch["audio"][:, 0]):
            writer.add_audio(f"val/audio_{k}", sound.float().clamp(-1, 1).cpu(), step, sample_rate=batch["sample_rate"])
        features = {"audio": model.encode_audio(batch["audio"])}
        pictures = {"audio": spectrograms}
        if "image" in batch:
            features["image"] = model.encode_image(batch["image"])
            pictures["image"] = list(drawing.to_uint8_image(batch["image"]))
        if "text" in batch:
            features["text"] = model.encode_text(batch["text"])
        features = {name: F.normalize(f.float(), dim=-1) for name, f in features.items()}
        sound_names = [f"sound {k + 1}" for k in range(len(captions))]
        # Columns are pictures (spectrograms or images), rows are words (captions, or the sounds' numbers).
        for columns, rows, labels in (("audio", "text", captions), ("image", "audio", sound_names),
                                      ("image", "text", captions)):  # fmt: skip
            if columns in features and rows in features:
                similarity = (features[columns] @ features[rows].T).cpu()
                figure = drawing.similarity_figure(pictures[columns], labels, similarity, self.image_px)
                writer.add_image(f"val/similarity_{columns}_{rows}", figure, step, dataformats="HWC")
