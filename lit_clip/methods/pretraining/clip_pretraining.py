"""CLIP pretraining (Radford et al., 2021): learn both towers from image-caption pairs.

A batch of N pairs gives an N x N similarity matrix scaled by a learned
temperature; the loss asks each image to pick its own caption among the N, and
each caption its own image (symmetric InfoNCE, or SigLIP's sigmoid loss).
Validation measures what the paper measures: image<->text retrieval recall on
held-out pairs and zero-shot classification with a text classifier built from
class names x prompt templates.

Batches are ``lit_clip.batches.PairsBatch`` for image-text pairs and
``ClassificationBatch`` for zero-shot classification; the data module names its classes
(``classnames``) and prompts (``templates``). Evaluation batches also carry each
sample's dataset ``index`` (and, with several captions per image, ``text_index``
and ``text_image_index``), so that under DDP every sample counts once.
"""
from __future__ import annotations

import math
import warnings
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lit_clip.batches import ClassificationBatch, PairsBatch
from lit_clip.checkpoints import load_clip, record_clip_geometry
from lit_clip.distributed import gather_unique
from lit_clip.losses import ClipLoss, SigLipLoss
from lit_clip.metrics import retrieval_recall
from lit_clip.models import create_model
from lit_clip.optim import adamw_betas_and_eps, warmup_cosine_schedule, weight_decay_groups
from lit_clip.tokenizer import trim_padding
from lit_clip.zeroshot import ZeroShotHead

MAX_LOGIT_SCALE = math.log(100)

# Lightning warns on every fit that the module's `on_before_batch_transfer` (the padding trim below)
# is used although a data module is given: that is intended, and a data module overriding the hook
# still takes precedence.
warnings.filterwarnings("ignore", message=r".*overridden `on_before_batch_transfer` in `LightningModule` but have passed in a")


def batch_size(batch: dict) -> int:
    """The number of samples in a batch: of its images, or of its sounds where it has none (AudioCLIP's audio-text
    batches)."""
    return batch["image"].shape[0] if "image" in batch else batch["audio"].shape[0]


def batch_rows(batch: dict) -> int | None:
    """The batch size before bad samples were left out (see ``RobustSamples``); None where data has none."""
    return batch_size(batch) + batch["skipped_index"].numel() if "skipped_index" in batch else None


class CLIPPretraining(L.LightningModule):
    def __init__(
        self,
        architecture: str = "ViT-Tiny-8",
        pretrained: str | None = None,
        loss: Literal["clip", "siglip"] = "clip",
        local_loss: bool = True,
        lr: float = 5e-4,
        weight_decay: float = 0.2,
        betas: tuple[float, float] | None = None,
        eps: float | None = None,
        warmup_steps: int = 500,
        min_lr_ratio: float = 0.0,
        grad_checkpointing: bool = False,
        patch_dropout: float = 0.0,
        compile: bool = False,
        lock_image: bool = False,
        lock_image_unlocked_groups: int = 0,
        lock_text: bool = False,
        lock_text_unlocked_layers: int = 0,
    ):
        """
        Args:
            architecture: a name from ``lit_clip.architecture_names()``: the CLIP geometries of
                ``lit_clip.models.clip.ARCHITECTURES`` (``-quickgelu`` for OpenAI's activation) or a registered family's.
            pretrained: start from these CLIP weights (see ``lit_clip.load_clip``) instead of a random
                ``architecture``, whose geometry is then read from the weights.
            loss: ``clip`` (symmetric InfoNCE) or ``siglip`` (pairwise sigmoid, with a learned bias).
            local_loss: under DDP, score local rows against gathered columns (same gradients, less memory).
            lr, weight_decay, betas, eps: AdamW; nothing of fewer than 2 dimensions (gains, biases, the logit
                scale) and no position embedding is decayed, as in open_clip. ``betas`` and ``eps`` default to the
                CLIP paper's for the image tower: (0.9, 0.98) and 1e-6 for a ViT, (0.9, 0.999) and 1e-8 for a ResNet.
            warmup_steps: linear warm-up steps before the cosine decay over the rest of training.
            min_lr_ratio: the cosine ends at ``min_lr_ratio * lr``.
            grad_checkpointing: recompute transformer activations in backward to save memory.
            patch_dropout: FLIP: the fraction of image patches each training image drops (ViT towers; 0.5-0.75
                in the paper), for about that much less image-tower compute. Evaluation sees every patch.
            compile: ``torch.compile`` both towers (the first steps pay for compilation).
            lock_image, lock_image_unlocked_groups: LiT: freeze the (pretrained) image tower but its last groups
                (see ``CLIP.lock_image_tower``; open_clip's ``--lock-image``, ``--lock-image-unlocked-groups``).
            lock_text, lock_text_unlocked_layers: freeze the text tower likewise (``--lock-text``).
        """
        super().__init__()
        self.save_hyperparameters()
        if loss not in ("clip", "siglip"):
            raise ValueError(f"unknown loss {loss!r}; expected 'clip' or 'siglip'")
        siglip = loss == "siglip"
        if pretrained is not None:
            self.model = load_clip(pretrained).train()
            if siglip and self.model.logit_bias is None:
                self.model.logit_bias = nn.Parameter(torch.tensor(-10.0))
        elif siglip:
            self.model = create_model(architecture, init_logit_scale=math.log(10), init_logit_bias=-10.0)
        else:
            self.model = create_model(architecture)
        self.loss = SigLipLoss() if siglip else ClipLoss(local_loss=local_loss)
        if lock_image:
            self.model.lock_image_tower(lock_image_unlocked_groups)
        if lock_text:
            self.model.lock_text_tower(lock_text_unlocked_layers)
        self.model.set_grad_checkpointing(grad_checkpointing)
        if patch_dropout:
            self.model.set_patch_dropout(patch_dropout)
        if compile:
            # In place, so parameter names (and checkpoints) stay those of the plain model.
            self.model.visual.compile()
            self.model.transformer.compile()
        self.zeroshot = ZeroShotHead()
        self._retrieval_features: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._skipped_indices: list[torch.Tensor] = []

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.hparams.pretrained is not None:  # not the `architecture` of the hyper-parameters
            record_clip_geometry(checkpoint, self.model)

    # --- training ---------------------------------------------------------------------------------
    def loss_terms(self, batch: PairsBatch) -> dict[str, torch.Tensor]:
        """The batch's loss terms by name; training minimises their sum and logs each.

        The hook for methods that add terms to CLIP's: SLIP adds its SSL loss on two more views,
        AudioCLIP the audio-image and audio-text pairs, by overriding this and extending the dict.
        """
        image_features, text_features, logit_scale = self.model(batch["image"], batch["text"])
        return self.contrastive_loss(image_features, text_features, logit_scale, batch_rows(batch))

    def contrastive_loss(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        batch_rows: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"contrastive_loss": ...}``; ``batch_rows``: the batch size every rank was meant to have, where
        ranks may hold fewer pairs."""
        if isinstance(self.loss, SigLipLoss):
            return self.loss(image_features, text_features, logit_scale, self.model.logit_bias, batch_rows)
        return self.loss(image_features, text_features, logit_scale, batch_rows)

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Still on the host, so this costs no device sync: captions padded to the context length are
        # cut after the batch's longest. Exact (nothing attends to later positions) and much cheaper
        # for short captions: ShapesWorld's use 9-20 of 32 positions, COCO's mostly under 25 of 77.
        if "text" in batch:
            batch["text"] = trim_padding(batch["text"])
        return batch

    def training_step(self, batch: PairsBatch, batch_idx: int) -> torch.Tensor:
        terms = self.loss_terms(batch)
        loss = sum(terms.values())
        rows = batch_size(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=rows)
        if len(terms) > 1:
            for name, value in terms.items():
                self.log(f"train/{name}", value, batch_size=rows)
        self.log("train/logit_scale", self.model.logit_scale.exp(), batch_size=rows)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], prog_bar=True, batch_size=rows)
        if "skipped_index" in batch:  # bad samples the data module left out (bad_samples: skip)
            skipped = float(batch["skipped_index"].numel())
            self.log("train/skipped_samples", skipped, on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # CLIP clamps the temperature after each update so logits never exceed 100x cosine.
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    def parameter_groups(self) -> list[dict]:
        """The optimiser's parameter groups: open_clip's decay rule over the CLIP (see ``weight_decay_groups``); the
        hook for methods with a rule or modules of their own."""
        return weight_decay_groups(self.model, self.hparams.weight_decay)

    def build_optimizer(self, fused: bool = True) -> torch.optim.AdamW:
        """AdamW over :meth:`parameter_groups`; fused into one kernel per step where the parameters' device has one."""
        h = self.hparams
        groups = self.parameter_groups()
        fused = fused and all(p.device.type in ("cpu", "cuda") for group in groups for p in group["params"])
        betas, eps = adamw_betas_and_eps(self.model.visual)
        betas, eps = betas if h.betas is None else h.betas, eps if h.eps is None else h.eps
        return torch.optim.AdamW(groups, lr=h.lr, betas=betas, eps=eps, fused=fused, foreach=not fused)

    def configure_optimizers(self):
        h = self.hparams
        # Lightning clips gradients itself, which it refuses to do for a fused optimizer under mixed precision.
        optimizer = self.build_optimizer(fused=not self.trainer.gradient_clip_val)
        schedule = warmup_cosine_schedule(optimizer, h.warmup_steps, self.trainer.estimated_stepping_batches, h.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- prediction -------------------------------------------------------------------------------
    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """L2-normalised embeddings in the joint space of the batch's images and / or texts, in fp32, with
        the images' paths (or data set indices) and the texts."""
        prediction = {key: batch[key] for key in ("path", "index", "caption") if key in batch}
        if "image" in batch:
            prediction["image_embedding"] = F.normalize(self.model.encode_image(batch["image"]).float(), dim=-1)
        if "text" in batch:
            prediction["text_embedding"] = F.normalize(self.model.encode_text(batch["text"]).float(), dim=-1)
        return prediction

    # --- evaluation -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._start_evaluation()

    def on_test_epoch_start(self) -> None:
        self._start_evaluation()

    def validation_step(self, batch: PairsBatch | ClassificationBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: PairsBatch | ClassificationBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def _start_evaluation(self) -> None:
        """Build the zero-shot text classifier once per evaluation, from the data module's classes."""
        self._retrieval_features = []
        self._skipped_indices = []
        datamodule = self.trainer.datamodule
        if getattr(datamodule, "classnames", None):
            self.zeroshot.build(self.model, datamodule.classnames, datamodule.templates)

    def _evaluation_step(self, batch: PairsBatch | ClassificationBatch, stage: str) -> None:
        if "skipped_index" in batch:
            self._skipped_indices.append(batch["skipped_index"].to(self.device))
        if "image" not in batch:  # every sample of this batch was bad
            return
        rows = batch["image"].shape[0]
        if "label" in batch:
            if self.zeroshot.classifier is None:
                raise RuntimeError("a classification batch arrived but the data module names no `classnames`")
            logits = self.zeroshot(self.model.encode_image(batch["image"]))
            self.zeroshot.accuracy.update(logits, batch["label"], batch["index"])
        else:
            image_features, text_features, logit_scale = self.model(batch["image"], batch["text"])
            if "text_index" not in batch:  # one caption per image: the contrastive loss sees the pairs as they are
                loss = self.contrastive_loss(image_features, text_features, logit_scale, batch_rows(batch))["contrastive_loss"]
                self.log(f"{stage}/loss", loss, batch_size=rows, add_dataloader_idx=False, sync_dist=True)
            self._retrieval_features.append(
                (
                    batch["index"], image_features.float(),
                    batch.get("text_index", batch["index"]), batch.get("text_image_index", batch["index"]),
                    text_features.float(),
                )
            )  # fmt: skip

    def _log_evaluation(self, stage: str) -> None:
        if self._skipped_indices:  # each bad sample once, also where DDP's sampler repeats it on two ranks
            (skipped,) = gather_unique(torch.cat(self._skipped_indices))
            self.log(f"{stage}/skipped_samples", float(skipped.numel()))
            self._skipped_indices = []
        if self.zeroshot.accuracy.has_updates:
            accuracy = self.zeroshot.accuracy.compute()
            self.log(f"{stage}/zeroshot_top1", accuracy["top1"])
            self.log(f"{stage}/zeroshot_top5", accuracy["top5"])
        if self._retrieval_features:
            image_index, image_features, text_index, text_image_index, text_features = (
                torch.cat(parts) for parts in zip(*self._retrieval_features)
            )
            self._retrieval_features = []
            image_index, image_features = gather_unique(image_index, image_features)
            _, text_image_index, text_features = gather_unique(text_index, text_image_index, text_features)
            text_to_image = torch.searchsorted(image_index, text_image_index)
            for name, value in retrieval_recall(image_features, text_features, text_to_image).items():
                self.log(f"{stage}/{name}", value)
