"""CoCoOp (Zhou et al., "Conditional Prompt Learning for Vision-Language Models", CVPR 2022).

CoOp's learnt context fits the training classes and generalises poorly to new ones. CoCoOp
makes the prompt depend on the image: a small Meta-Net turns the image's (normalised) feature
into a shift that is added to every context vector,

    v_m(x) = v_m + pi(x),   pi = Linear(d, d/16) - ReLU - Linear(d/16, width),

so each image classifies with its own prompts for all classes: ``[SOS] v_1(x) ... v_M(x)
{class} . [EOT]``. Only the context and the Meta-Net are trained.

The official code loops over the images of a batch (batch size 1 in its configs). Here the
B x C prompts of a batch go through the text tower in one pass, so larger batches are
practical; the text tower's memory grows with B x C x the prompt length (prompts are cut
after their last EOT), and ``grad_checkpointing`` trades compute for it.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import Tensor, nn

from lit_clip.methods.classification.coop import (
    ClassPrompts,
    assemble_prompts,
    coop_optimization,
    embed_class_prompts,
    initial_context,
)
from lit_clip.methods.classification.frozen_classifier import FrozenCLIPClassifier
from lit_clip.zeroshot import scaled_cosine_logits


class CoCoOp(FrozenCLIPClassifier):
    def __init__(
        self,
        pretrained: str,
        n_ctx: int = 4,
        ctx_init: str | None = "a photo of a",
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
        grad_checkpointing: bool = False,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
    ):
        """
        Args:
            pretrained: the frozen CLIP's weights (see ``lit_clip.load_clip``).
            n_ctx: context vectors when ``ctx_init`` is not given.
            ctx_init: words to start the context from (CoCoOp: "a photo of a", so M = 4).
            lr, momentum, weight_decay, warmup_epochs, warmup_lr: CoOp's SGD schedule (CoCoOp: lr 0.002, 10 epochs).
            grad_checkpointing: recompute the text tower in the backward pass (less memory for B x C prompts).
            architecture, quick_gelu: see ``lit_clip.load_clip``.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        self.template_words, initial = initial_context(self.model, n_ctx, ctx_init)
        self.ctx = nn.Parameter(initial)
        width, feature_dim = initial.shape[1], self.model.text_projection.shape[1]
        self.meta_net = nn.Sequential(
            OrderedDict(
                linear1=nn.Linear(feature_dim, feature_dim // 16),
                relu=nn.ReLU(),
                linear2=nn.Linear(feature_dim // 16, width),
            )
        )
        self.model.transformer.grad_checkpointing = grad_checkpointing
        self.prompts: ClassPrompts | None = None

    def set_classes(self, classnames: Sequence[str]) -> None:
        self.prompts = embed_class_prompts(self.model, classnames, self.template_words, self.ctx.shape[0])

    def forward(self, images: Tensor) -> Tensor:
        image_features = self.image_features(images)  # [batch, dim], normalised
        shift = self.meta_net(image_features)  # [batch, width]
        context = self.ctx + shift[:, None, None, :]  # [batch, 1, n_ctx, width]: one context per image
        embeddings = assemble_prompts(self.prompts, context)  # [batch, classes, tokens, width]
        batch, classes = embeddings.shape[:2]
        text_features = self.model.encode_text_embeddings(
            embeddings.flatten(0, 1), self.prompts.eot_positions.repeat(batch)
        ).view(batch, classes, -1)
        text_features = nn.functional.normalize(text_features.float(), dim=-1)
        logits = scaled_cosine_logits(self.model.logit_scale.exp(), image_features[:, None, :], text_features.transpose(1, 2))
        return logits.squeeze(1)  # [batch, classes]

    def configure_optimizers(self):
        return coop_optimization(self, [self.ctx, *self.meta_net.parameters()])
