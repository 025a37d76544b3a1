"""MaPLe (Khattak et al., "MaPLe: Multi-modal Prompt Learning", CVPR 2023).

CoOp and CoCoOp prompt the text tower only. MaPLe prompts both towers, deep, and couples them:

- **Text**: the first ``n_ctx`` (2) word slots of "a photo of a {class}." are learnable
  (initialised from the embeddings of "a photo"; "of a {class}." stays fixed), and before
  each block ``i = 1 .. J-1`` the tokens at those positions are replaced by new learnable
  prompts (N(0, 0.02)).
- **Vision**: ``n_ctx`` prompt tokens are appended after the class and patch tokens (before
  ``ln_pre``), and replaced before each block ``i = 1 .. J-1``.
- **Coupling**: the vision prompts are not free parameters but linear projections of the
  text prompts of the same layer, ``Linear(text width, vision width)`` per layer, so the two
  towers' prompts are learnt together.

Blocks from J on carry the prompts of block J-1 through unchanged. Only the prompts and the
couplings train (SGD lr 0.0035, batch 4, 5 epochs in the paper, J = 9 of 12 layers). The
image tower must be a ViT; the couplings take the widths from the CLIP, whatever they are.
As in the official code, the J-1 deeper couplings start as copies of one initialisation.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from lit_clip.methods.classification.coop import (
    ClassPrompts,
    assemble_prompts,
    coop_optimization,
    cosine_logits,
    embed_class_prompts,
    initial_context,
)
from lit_clip.methods.classification.frozen_classifier import FrozenCLIPClassifier
from lit_clip.models.transformer import VisionTransformer


class MaPLe(FrozenCLIPClassifier):
    def __init__(
        self,
        pretrained: str,
        n_ctx: int = 2,
        ctx_init: str | None = "a photo of a",
        prompt_depth: int = 9,
        lr: float = 0.0035,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
    ):
        """
        Args:
            pretrained: the frozen CLIP's weights (see ``lit_clip.load_clip``); its image tower must be a ViT.
            n_ctx: prompt tokens per layer in each tower (MaPLe: 2).
            ctx_init: the template whose first ``n_ctx`` tokens are the learnable first-layer text prompts
                (MaPLe: "a photo of a"); without it, ``n_ctx`` random "X" slots.
            prompt_depth: J, the number of layers with prompts (from the first), at most the towers' depth (MaPLe: 9).
            lr, momentum, weight_decay, warmup_epochs, warmup_lr: CoOp's SGD schedule (MaPLe: lr 0.0035, 5 epochs).
            architecture, quick_gelu: see ``lit_clip.load_clip``.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        if not isinstance(self.model.visual, VisionTransformer):
            raise ValueError(f"MaPLe prompts a ViT image tower; {pretrained} has a ModifiedResNet")
        depth_limit = min(self.model.transformer.layers, self.model.visual.transformer.layers)
        if not 1 <= prompt_depth <= depth_limit:
            raise ValueError(f"prompt_depth must be between 1 and the towers' depth {depth_limit}, got {prompt_depth}")
        text_width = self.model.token_embedding.embedding_dim
        vision_width = self.model.visual.transformer.width
        # Only the first n_ctx tokens of the template are learnable; the rest ("of a") stays text.
        self.template_words, initial = initial_context(self.model, n_ctx, ctx_init)
        if n_ctx > initial.shape[0]:
            raise ValueError(f"n_ctx={n_ctx} is more than the {initial.shape[0]} tokens of ctx_init {ctx_init!r}")
        initial = initial[:n_ctx]
        self.n_ctx = n_ctx
        # Layer 0: the text prompts sit in the input sequence; the vision prompts are their projection.
        self.ctx = nn.Parameter(initial)
        self.proj = nn.Linear(text_width, vision_width)
        # Layers 1 .. J-1: new text prompts and a coupling each.
        self.deep_text_prompts = nn.ParameterList(
            nn.Parameter(torch.empty(n_ctx, text_width).normal_(std=0.02)) for _ in range(prompt_depth - 1)
        )
        coupling = nn.Linear(text_width, vision_width)
        self.deep_couplings = nn.ModuleList(copy.deepcopy(coupling) for _ in range(prompt_depth - 1))
        self.prompts: ClassPrompts | None = None

    def set_classes(self, classnames: Sequence[str]) -> None:
        self.prompts = embed_class_prompts(self.model, classnames, self.template_words, self.n_ctx)

    def layer_prompts(self) -> tuple[list[Tensor], list[Tensor]]:
        """The text and vision prompts of layers 0 .. J-1, each ``[n_ctx, width]``."""
        text = [self.ctx, *self.deep_text_prompts]
        vision = [self.proj(self.ctx), *(couple(p) for couple, p in zip(self.deep_couplings, self.deep_text_prompts))]
        return text, vision

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised image features ``[batch, dim]`` and un-normalised class features ``[classes, dim]``."""
        text_prompts, vision_prompts = self.layer_prompts()
        image_features = self.image_features(images, vision_prompts)
        embeddings = assemble_prompts(self.prompts, self.ctx)
        text_features = self.model.encode_text_embeddings(embeddings, self.prompts.eot_positions, text_prompts)
        return image_features, text_features

    def forward(self, images: Tensor) -> Tensor:
        return cosine_logits(self.model.logit_scale, *self.encode(images))

    def configure_optimizers(self):
        learnable = [p for p in self.parameters() if p.requires_grad]  # the frozen CLIP has none
        return coop_optimization(self, learnable)
