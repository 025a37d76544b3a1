"""GroupViT pretraining (Xu et al., "GroupViT: Semantic Segmentation Emerges from Text Supervision", CVPR 2022),
as the released code (NVlabs/GroupViT) trains it.

1. **The model** (:mod:`lit_clip.models.groupvit`): an image tower that merges patches into learned groups stage
   by stage (64, then 8) and a CLIP-style text tower, each followed by a projection MLP with BatchNorm.
2. **Image-text contrastive loss**: CLIP's symmetric InfoNCE between each image (the mean of its final groups,
   projected) and its caption, scale clamped at 100.
3. **Multi-label contrastive loss**: each caption also gives K prompts of its nouns ("a photo of a dog.", see
   :mod:`lit_clip.noun_prompts`; the data module's ``noun_prompts: K``); an image must match its own K prompts
   (soft targets 1/K) among all prompts of the batch, and each prompt its own image
   (:class:`~lit_clip.losses.MultiLabelContrastiveLoss`), with a logit scale of its own. Weighted by
   ``multi_label_weight`` (1.0) and added.
4. **Optimisation**: AdamW (lr 1.6e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.05 on every parameter but
   vectors and biases, as the code's ``set_weight_decay``: position embeddings, group tokens and the 0-d logit
   scales are decayed too), linear warm-up then cosine decay, gradients clipped at 5 (the trainer's
   ``gradient_clip_val``).

Captions and their noun prompts go through the text tower in one batch, as the official code encodes them,
so that the text projection's BatchNorm sees them together. Evaluation is CLIPPretraining's: retrieval and
zero-shot classification; zero-shot segmentation is :class:`~lit_clip.methods.GroupViTSegmentation`.

Differences from the official code: both logit scales are clamped to [1, 100] after each step (CLIP's way;
the code clamps the scale at 100 where the loss uses it, the same logits); ranks holding fewer rows (bad
samples left out) average the multi-label loss over their own rows.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_clip.batches import PairsBatch
from lit_clip.losses import MultiLabelContrastiveLoss
from lit_clip.methods.pretraining.clip_pretraining import MAX_LOGIT_SCALE, CLIPPretraining, batch_rows
from lit_clip.optim import weight_decay_groups
from lit_clip.tokenizer import trim_padding


class GroupViTPretraining(CLIPPretraining):
    def __init__(
        self,
        architecture: str = "GroupViT-Micro",
        pretrained: str | None = None,
        multi_label_weight: float = 1.0,
        lr: float = 1.6e-3,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: int = 500,
        min_lr_ratio: float = 0.025,
        grad_checkpointing: bool = False,
    ):
        """
        Args:
            architecture: a GroupViT architecture (``GroupViT-S-16``, the paper's; ``GroupViT-Micro`` for a CPU).
            pretrained: start from these GroupViT weights (an official ``.pth``, a transformers GroupViT directory
                or hub id, or a lit-clip checkpoint; see ``lit_clip.load_clip``).
            multi_label_weight: the multi-label contrastive loss's weight (1.0); 0 trains with InfoNCE alone.
            lr, weight_decay, betas, eps: AdamW (the official 1.6e-3 at batch 4096, 0.05, (0.9, 0.999), 1e-8).
            warmup_steps, min_lr_ratio: linear warm-up, then cosine decay to ``min_lr_ratio * lr`` (the official
                warm-up of 2 of 30 epochs, min lr 4e-5 = 0.025 x 1.6e-3).
            grad_checkpointing: recompute the towers' activations in backward to save memory.
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
            grad_checkpointing=grad_checkpointing,
        )
        self.save_hyperparameters()
        if not hasattr(self.model, "multi_label_logit_scale"):
            raise ValueError(f"{architecture or pretrained!r} is not a GroupViT (it has no multi-label logit scale)")
        self.multi_label_loss = MultiLabelContrastiveLoss()

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Captions and noun prompts are encoded together: trimmed to one length, the longest of either.
        if "noun_text" in batch:
            count = batch["noun_text"].shape[1]
            texts = torch.cat([batch["text"][:, None], batch["noun_text"]], dim=1)
            texts = trim_padding(texts.flatten(0, 1)).unflatten(0, (-1, 1 + count))
            batch["text"], batch["noun_text"] = texts[:, 0], texts[:, 1:]
            return batch
        return super().on_before_batch_transfer(batch, dataloader_idx)

    def loss_terms(self, batch: PairsBatch) -> dict[str, Tensor]:
        """``contrastive_loss`` and, weighted, ``multi_label_loss`` (needs the batch's ``noun_text``)."""
        weight = self.hparams.multi_label_weight
        if weight and "noun_text" not in batch:
            raise ValueError(
                "GroupViT's multi-label loss needs noun prompts in the training batches: give the data module "
                "noun_prompts: 3 (the official count), or set multi_label_weight: 0"
            )
        rows = batch_rows(batch)
        image_features = F.normalize(self.model.encode_image(batch["image"]), dim=-1)
        if not weight:
            text_features = F.normalize(self.model.encode_text(batch["text"]), dim=-1)
            return self.contrastive_loss(image_features, text_features, self.model.logit_scale.exp(), rows)
        texts = torch.cat([batch["text"][:, None], batch["noun_text"]], dim=1)  # [B, 1 + K, L]: one pass
        text_features = F.normalize(self.model.encode_text(texts), dim=-1)
        terms = self.contrastive_loss(image_features, text_features[:, 0], self.model.logit_scale.exp(), rows)
        multi_label_scale = self.model.multi_label_logit_scale.exp()
        multi_label = self.multi_label_loss(image_features, text_features[:, 1:], multi_label_scale, rows)
        return {**terms, "multi_label_loss": weight * multi_label["multi_label_loss"]}

    def parameter_groups(self) -> list[dict]:
        """The official decay groups: vectors and biases undecayed, everything else decayed."""
        return weight_decay_groups(
            self.model, self.hparams.weight_decay, exempt=lambda name, param: param.ndim == 1 or name.endswith(".bias")
        )

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        with torch.no_grad():
            self.model.multi_label_logit_scale.clamp_(0, MAX_LOGIT_SCALE)
