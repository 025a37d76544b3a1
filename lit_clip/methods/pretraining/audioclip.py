"""AudioCLIP (Guzhov et al., "AudioCLIP: Extending CLIP to Image, Text and Audio", ICASSP 2022), as the released
code (AndreyGuzhov/AudioCLIP) trains it.

1. **The model** (:mod:`lit_clip.models.audioclip`): a CLIP plus an audio tower, ESResNeXt-fbsp (a ResNeXt-50 with
   attention gates on a trainable frequency-B-spline front end, :mod:`lit_clip.models.esresnext`), that maps a
   sound into the CLIP's joint space; each pair of modalities has its own logit scale (audio-image and audio-text
   start at ln 100; every scale is used clamped to [1, 100]). ``pretrained`` names the CLIP (OpenAI's RN50 in the
   paper; the ShapesWorld CLIP on a CPU) or a whole AudioCLIP (the released ``AudioCLIP-*-Training.pt``); a CLIP
   gets a new audio tower, from ``audio_pretrained`` (ESResNeXt-fbsp's AudioSet weights) or random.
2. **Loss** (:class:`~lit_clip.losses.AudioCLIPLoss`): for every pair of the modalities a batch holds, cross-entropy
   both ways, summed over pairs and divided by the factorial of their number (the code's; 3 pairs: the mean of six
   terms); plus the front end's filter-norm penalty (each filter's L2 norm pulled to 1, weight
   ``filter_norm_weight``). Batches with two modalities (ESC-50's audio and class names) train one pair.
3. **Partial or full training**: ``lock_clip`` (partial, the default) trains the audio tower and its two scales
   against the frozen CLIP, whose image tower then also computes as in evaluation; ``lock_clip: false`` trains all
   three towers (full). The released fine-tuning on ESC-50 / UrbanSound8K is partial training on audio-text batches.
4. **Optimisation**: the released fine-tuning's SGD (Nesterov momentum 0.9, weight decay 5e-4 but none on the
   front end's filters and the logit scales, lr 5e-5 for ESC-50 and 1e-5 for UrbanSound8K, x 0.96 after each epoch),
   or ``optimizer: adamw`` (with CLIPPretraining's warm-up and cosine) for training an audio tower from scratch.

Evaluation: zero-shot audio classification (``audio_zeroshot_top1`` / ``_top5``; the data module's class names x
templates, as images; the released protocol is the bare class name, ``templates: ["{}"]``) and retrieval between
every pair of modalities of the evaluation batches (``a2t_R@K``, ``t2a_R@K``, ``a2i_R@K``, ``i2a_R@K``, ``i2t_R@K``,
``t2i_R@K``).

Differences from the released code: under DDP, features are gathered with gradient for the negatives of every
process (the released code ran one process with DataParallel); the front end's input is a waveform in [-1, 1],
scaled to the released int16 range by the tower; the frozen CLIP's BatchNorm keeps its statistics (the released
training calls ``model.train()`` on all of it, which moves the image tower's statistics when images are in the
batch).
"""
from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_clip.batches import AudioBatch
from lit_clip.checkpoints import CLIP_CONFIG_KEY
from lit_clip.distributed import gather_unique
from lit_clip.losses import AudioCLIPLoss
from lit_clip.methods.pretraining.clip_pretraining import CLIPPretraining, batch_rows, batch_size
from lit_clip.metrics import retrieval_recall
from lit_clip.models.audioclip import AUDIO_SCALE_NAMES, AudioCLIP, with_audio_tower
from lit_clip.models.esresnext import load_audioset_weights
from lit_clip.optim import exempt_from_weight_decay, weight_decay_groups
from lit_clip.zeroshot import ZeroShotHead

MODALITIES = ("audio", "image", "text")
SHORT_NAMES = {"audio": "a", "image": "i", "text": "t"}


class AudioCLIPPretraining(CLIPPretraining):
    def __init__(
        self,
        pretrained: str | None = None,
        architecture: str = "RN-Tiny",
        audio_architecture: str = "ESResNeXt-Tiny",
        audio_pretrained: str | None = None,
        lock_clip: bool = True,
        filter_norm_weight: float = 1.0,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float = 5e-5,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_decay: float = 0.96,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
    ):
        """
        Args:
            pretrained: the CLIP (any ``lit_clip.load_clip`` source: OpenAI's ``RN50.pt``, a lit-clip checkpoint) or
                a whole AudioCLIP (``AudioCLIP-Full-Training.pt``); None: a random ``architecture``.
            architecture: the CLIP to build when ``pretrained`` is None.
            audio_architecture: the audio tower given to a CLIP: ``ESResNeXt-fbsp`` (the paper's, 44.1 kHz) or
                ``ESResNeXt-Tiny`` (8 kHz, for a CPU); see ``lit_clip.models.esresnext.AUDIO_ARCHITECTURES``.
            audio_pretrained: ESResNeXt-fbsp's AudioSet weights (``ESResNeXtFBSP_AudioSet.pt``) for the new audio
                tower: everything but its classifier, as the released code loads them.
            lock_clip: partial training (the CLIP frozen; the audio tower and its two scales trained); False: full.
            filter_norm_weight: the weight of the front end's filter-norm penalty (the released code's 1).
            optimizer: ``sgd`` (the released: Nesterov, decayed by ``lr_decay`` after every epoch) or ``adamw``
                (with a linear warm-up of ``warmup_steps`` and a cosine decay to ``min_lr_ratio * lr``).
            lr, momentum, weight_decay, lr_decay: SGD (the released ESC-50 fine-tuning: 5e-5, 0.9, 5e-4, 0.96).
            betas, eps, warmup_steps, min_lr_ratio: AdamW and its schedule, with ``optimizer: adamw``.
        """
        super().__init__(
            architecture=architecture,
            pretrained=pretrained,
            lr=lr,
            weight_decay=weight_decay,
            betas=betas,
            eps=eps,
            warmup_steps=warmup_steps,
            min_lr_ratio=min_lr_ratio,
        )
        self.save_hyperparameters()
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"unknown optimizer {optimizer!r}; expected 'sgd' or 'adamw'")
        if not isinstance(self.model, AudioCLIP):
            self.model = with_audio_tower(self.model, audio_architecture)
        if audio_pretrained is not None:
            load_audioset_weights(self.model.audio, torch.load(audio_pretrained, map_location="cpu", weights_only=True))
        if lock_clip:
            for name, param in self.model.named_parameters():
                param.requires_grad_(name.startswith("audio.") or name in AUDIO_SCALE_NAMES)
        self.loss = AudioCLIPLoss()
        self.audio_zeroshot = ZeroShotHead()
        self._modality_features: list[dict[str, Tensor]] = []

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The audio tower is not in the CLIP's architecture name: record the whole geometry, so load_clip rebuilds it.
        checkpoint[CLIP_CONFIG_KEY] = self.model.full_config.to_dict()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.lock_clip:  # frozen towers compute as in evaluation: BatchNorm keeps the CLIP's statistics
            self.model.visual.eval()
        return self

    def on_train_epoch_start(self) -> None:
        self.train()  # Lightning does not call train() when fitting starts (a module starts in training mode)

    # --- training ---------------------------------------------------------------------------------
    def encode(self, batch: AudioBatch) -> dict[str, Tensor]:
        """The L2-normalised features of each modality the batch holds; the frozen CLIP's without gradient."""
        features = {}
        if "audio" in batch:
            self._check_sample_rate(batch)
            features["audio"] = F.normalize(self.model.encode_audio(batch["audio"]), dim=-1)
        frozen = torch.no_grad() if self.hparams.lock_clip else contextlib.nullcontext()
        with frozen:
            if "image" in batch:
                features["image"] = F.normalize(self.model.encode_image(batch["image"]), dim=-1)
            if "text" in batch:
                features["text"] = F.normalize(self.model.encode_text(batch["text"]), dim=-1)
        return features

    def loss_terms(self, batch: AudioBatch) -> dict[str, Tensor]:
        """One term per modality pair present (``audio_image_loss``, ``audio_text_loss``, ``image_text_loss``) and
        the front end's ``filter_norm_loss`` when the batch has audio."""
        features = self.encode(batch)
        terms = self.loss(features, self.model.logit_scales(), batch_rows(batch))
        if "audio" in features and self.hparams.filter_norm_weight:
            terms["filter_norm_loss"] = self.hparams.filter_norm_weight * self.model.audio.filter_norm_loss()
        return terms

    def training_step(self, batch: AudioBatch, batch_idx: int) -> Tensor:
        loss = super().training_step(batch, batch_idx)
        scales = self.model.logit_scales()
        self.log("train/logit_scale_ai", scales[("audio", "image")], batch_size=batch_size(batch))
        self.log("train/logit_scale_at", scales[("audio", "text")], batch_size=batch_size(batch))
        return loss

    def _check_sample_rate(self, batch: AudioBatch) -> None:
        expected, given = self.model.audio_config.sample_rate, batch.get("sample_rate")
        if given is not None and int(given) != expected:
            raise ValueError(
                f"the data's audio is at {int(given)} Hz but this audio tower takes {expected} Hz: give the data "
                f"module sample_rate: {expected}"
            )

    def parameter_groups(self) -> list[dict]:
        """The trainable parameters: undecayed the front end's filters and the logit scales (the released groups)
        and, in full training, what CLIPPretraining leaves undecayed in the CLIP."""

        def exempt(name: str, param: torch.nn.Parameter) -> bool:
            if name.startswith("audio."):
                return name.startswith("audio.fbsp.")
            return name in AUDIO_SCALE_NAMES or exempt_from_weight_decay(name, param)

        return weight_decay_groups(self.model, self.hparams.weight_decay, exempt)

    def configure_optimizers(self):
        h = self.hparams
        if h.optimizer == "adamw":
            return super().configure_optimizers()
        optimizer = torch.optim.SGD(self.parameter_groups(), lr=h.lr, momentum=h.momentum, nesterov=True)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=h.lr_decay)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}

    # --- prediction -------------------------------------------------------------------------------
    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """CLIPPretraining's, and the L2-normalised ``audio_embedding`` of a batch's sounds."""
        prediction = super().predict_step(batch, batch_idx, dataloader_idx)
        if "audio" in batch:
            prediction["audio_embedding"] = F.normalize(self.model.encode_audio(batch["audio"]).float(), dim=-1)
        return prediction

    # --- evaluation -------------------------------------------------------------------------------
    def _start_evaluation(self) -> None:
        super()._start_evaluation()
        self._modality_features = []
        datamodule = self.trainer.datamodule
        if getattr(datamodule, "classnames", None):
            self.audio_zeroshot.build(self.model, datamodule.classnames, datamodule.templates)

    def _evaluation_step(self, batch: AudioBatch, stage: str) -> None:
        if "audio" not in batch:  # images only: CLIPPretraining's evaluation (or a batch of bad samples only)
            return super()._evaluation_step(batch, stage)
        if "skipped_index" in batch:
            self._skipped_indices.append(batch["skipped_index"].to(self.device))
        if "label" in batch:
            self._check_sample_rate(batch)
            logits = self.audio_zeroshot(self.model.encode_audio(batch["audio"]))
            self.audio_zeroshot.accuracy.update(logits, batch["label"], batch["index"])
            return
        features = self.encode(batch)
        loss = sum(self.loss(features, self.model.logit_scales(), batch_rows(batch)).values())
        self.log(f"{stage}/loss", loss, batch_size=batch_size(batch), add_dataloader_idx=False, sync_dist=True)
        self._modality_features.append({"index": batch["index"], **{k: v.float() for k, v in features.items()}})

    def _log_evaluation(self, stage: str) -> None:
        super()._log_evaluation(stage)
        if self.audio_zeroshot.accuracy.has_updates:
            accuracy = self.audio_zeroshot.accuracy.compute()
            self.log(f"{stage}/audio_zeroshot_top1", accuracy["top1"])
            self.log(f"{stage}/audio_zeroshot_top5", accuracy["top5"])
        if not self._modality_features:
            return
        present = [m for m in MODALITIES if m in self._modality_features[0]]
        parts = {key: torch.cat([f[key] for f in self._modality_features]) for key in ("index", *present)}
        self._modality_features = []
        _, *gathered = gather_unique(parts["index"], *(parts[m] for m in present))  # each sample once under DDP
        features = dict(zip(present, gathered))
        for a, b in AudioCLIPLoss.PAIRS:
            if a in features and b in features:
                same = torch.arange(features[a].shape[0], device=features[a].device)
                x, y = SHORT_NAMES[a], SHORT_NAMES[b]
                for name, value in retrieval_recall(features[a], features[b], same).items():
                    self.log(f"{stage}/{name.replace('i2t', f'{x}2{y}').replace('t2i', f'{y}2{x}')}", value)
