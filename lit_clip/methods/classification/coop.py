"""CoOp (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022).

Zero-shot CLIP classifies with a hand-written prompt, "a photo of a {class}.". CoOp keeps
CLIP frozen and learns the prompt's words instead: M context vectors ``[V]_1 ... [V]_M``
in the token-embedding space take the template's place,

    [SOS] [V]_1 ... [V]_M {class name} . [EOT]

and the text tower reads them like any embedded words; the class feature is taken at EOT.
Logits are ``exp(logit_scale) * cos(image, class)`` with CLIP's own learned scale, and the
context is trained with the cross-entropy of a few labelled images per class.

- ``ctx_init`` ("a photo of a") starts the context at those words' embeddings, and M becomes
  their token count; otherwise M = ``n_ctx`` vectors drawn from N(0, 0.02).
- ``class_specific_context`` (CSC) learns one context per class.
- ``class_token_position``: "end" (above), "middle" (half of the context before the name,
  half after: ``[SOS] [V]_1..[V]_M/2 {name} [V]_M/2+1..[V]_M . [EOT]``) or "front".
- The class-name tokens are buffers rebuilt from the data module's class names and never
  saved, so a checkpoint (the context alone) can be evaluated on other classes.
- Prompts are cut after the last EOT of the class set: with causal attention nothing after it is
  ever read, and a prompt of 16 context vectors uses ~20-25 of the 77 positions.

The pieces a prompt is assembled from (:func:`embed_class_prompts`, :func:`assemble_prompts`)
are reused by CoCoOp and MaPLe, which build on CoOp.

Deliberate differences from the official code: M follows the token count of ``ctx_init``
(CoOp counts its words: the same for "a photo of a"); CSC with ``ctx_init`` starts every
class's context at those words (the official code silently drops CSC then).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.methods.classification.frozen_classifier import FrozenCLIPClassifier
from lit_clip.models.clip import CLIP
from lit_clip.optim import warmup_cosine_per_epoch
from lit_clip.tokenizer import default_tokenizer, tokenize, trim_padding
from lit_clip.zeroshot import scaled_cosine_logits

ClassTokenPosition = Literal["end", "middle", "front"]


@dataclass
class ClassPrompts:
    """The frozen token embeddings of each class's prompt around its ``n_ctx`` learnable slots."""

    prefix: Tensor  # [classes, 1, width]: SOS
    suffix: Tensor  # [classes, tokens, width]: the class name, ".", EOT (and padding up to the longest)
    eot_positions: Tensor  # [classes]
    name_lengths: list[int]  # tokens of each class name


@torch.no_grad()
def embed_class_prompts(clip: CLIP, classnames: Sequence[str], template_words: str, n_ctx: int) -> ClassPrompts:
    """Embed ``"{template_words} {name}."`` per class; the first ``n_ctx`` tokens after SOS become learnable slots."""
    texts = [f"{template_words} {name}." for name in classnames]
    for name, text in zip(classnames, texts):
        length = len(default_tokenizer().encode(text)) + 2  # with SOS and EOT
        if length > clip.context_length:
            raise ValueError(
                f"the prompt of class {name!r} needs {length} tokens but the CLIP's context holds "
                f"{clip.context_length}: use fewer context vectors (n_ctx) or a shorter class name"
            )
    tokens = trim_padding(tokenize(texts, context_length=clip.context_length))
    eot_positions = tokens.argmax(dim=-1)
    device = clip.token_embedding.weight.device
    embedded = clip.token_embedding(tokens.to(device))
    name_lengths = [len(default_tokenizer().encode(name)) for name in classnames]
    return ClassPrompts(embedded[:, :1], embedded[:, 1 + n_ctx :], eot_positions.to(device), name_lengths)


@torch.no_grad()
def embed_context_words(clip: CLIP, words: str) -> Tensor:
    """The token embeddings of ``words`` (no SOS / EOT), ``[tokens, width]``: an initial context."""
    tokens = tokenize(words, context_length=clip.context_length)[0]
    count = int(tokens.argmax()) - 1
    return clip.token_embedding(tokens[1 : 1 + count].to(clip.token_embedding.weight.device)).clone()


def initial_context(clip: CLIP, n_ctx: int, ctx_init: str | None) -> tuple[str, Tensor]:
    """The words the class prompts are written with, and the context's starting vectors ``[M, width]``.

    With ``ctx_init``: those words and their token embeddings (M = their token count). Without:
    ``n_ctx`` placeholder words "X" and vectors drawn from N(0, 0.02), as CoOp initialises them.
    """
    if ctx_init:
        return ctx_init, embed_context_words(clip, ctx_init)
    return " ".join(["X"] * n_ctx), torch.empty(n_ctx, clip.token_embedding.embedding_dim).normal_(std=0.02)


def assemble_prompts(prompts: ClassPrompts, context: Tensor, position: ClassTokenPosition = "end") -> Tensor:
    """Token embeddings ``[..., classes, tokens, width]`` of every class's prompt.

    ``context`` is ``[n_ctx, width]`` (shared), ``[classes, n_ctx, width]`` (per class) or
    ``[batch, 1, n_ctx, width]`` (per image, CoCoOp): it broadcasts over the leading dimensions.
    """
    classes = prompts.prefix.shape[0]
    context = context.to(prompts.prefix.dtype)
    leading = torch.broadcast_shapes(context.shape[:-2], (classes,))
    end_layout = torch.cat(
        [
            prompts.prefix.expand(*leading, -1, -1),
            context.expand(*leading, -1, -1),
            prompts.suffix.expand(*leading, -1, -1),
        ],
        dim=-2,
    )
    if position == "end":
        return end_layout
    order = class_token_order(prompts.name_lengths, context.shape[-2], end_layout.shape[-2], position)
    order = order.to(end_layout.device)[..., None].expand(*leading, -1, end_layout.shape[-1])
    return end_layout.gather(-2, order)


def class_token_order(name_lengths: Sequence[int], n_ctx: int, length: int, position: ClassTokenPosition) -> Tensor:
    """Per class, the positions of the "end" layout that make up the ``position`` layout, ``[classes, length]``.

    End layout: SOS, context 0..M-1, name (its tokens), the rest ("." EOT padding).
    """
    check_class_token_position(position)
    orders = []
    for name_length in name_lengths:
        context = list(range(1, 1 + n_ctx))
        name = list(range(1 + n_ctx, 1 + n_ctx + name_length))
        rest = list(range(1 + n_ctx + name_length, length))
        if position == "middle":
            half = n_ctx // 2
            orders.append([0, *context[:half], *name, *context[half:], *rest])
        elif position == "front":
            orders.append([0, *name, *context, *rest])
        else:
            orders.append([0, *context, *name, *rest])
    return torch.tensor(orders)


def check_class_token_position(position: str) -> None:
    if position not in ("end", "middle", "front"):
        raise ValueError(f"unknown class_token_position {position!r}; expected 'end', 'middle' or 'front'")


def cosine_logits(logit_scale: Tensor, image_features: Tensor, text_features: Tensor) -> Tensor:
    """``exp(logit_scale) * cos``: CLIP's scaled similarities of normalised images to every class."""
    return scaled_cosine_logits(logit_scale.exp(), image_features, F.normalize(text_features.float(), dim=-1).T)


class CoOp(FrozenCLIPClassifier):
    def __init__(
        self,
        pretrained: str,
        n_ctx: int = 16,
        ctx_init: str | None = None,
        class_specific_context: bool = False,
        class_token_position: ClassTokenPosition = "end",
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
    ):
        """
        Args:
            pretrained: the frozen CLIP's weights (see ``lit_clip.load_clip``).
            n_ctx: number of context vectors M when ``ctx_init`` is not given (CoOp: 16).
            ctx_init: words to start the context from, e.g. "a photo of a"; M is then their token count.
            class_specific_context: one context per class (CSC) instead of one shared by all.
            class_token_position: where the class name goes: "end", "middle" or "front".
            lr, momentum, weight_decay: SGD (CoOp: 0.002, 0.9, 5e-4).
            warmup_epochs, warmup_lr: constant-lr warm-up before the per-epoch cosine (CoOp: 1 epoch at 1e-5).
            architecture, quick_gelu: see ``lit_clip.load_clip``.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        self.template_words, initial = initial_context(self.model, n_ctx, ctx_init)
        self.n_ctx = initial.shape[0]
        # With CSC the class count is the data module's: the context is shaped in setup().
        self.ctx = nn.Parameter(initial)
        check_class_token_position(class_token_position)
        self.class_token_position = class_token_position
        self.prompts: ClassPrompts | None = None

    def setup(self, stage: str) -> None:
        if self.hparams.class_specific_context and self.ctx.dim() == 2:
            classes = len(self.trainer.datamodule.classnames)
            if self.hparams.ctx_init:
                initial = self.ctx.detach().expand(classes, -1, -1).clone()
            else:
                initial = torch.empty(classes, self.n_ctx, self.ctx.shape[-1]).normal_(std=0.02)
            self.ctx = nn.Parameter(initial.to(self.ctx.device))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint["state_dict"]["ctx"]
        if saved.shape != self.ctx.shape:  # a CSC context, before setup() has shaped ours
            self.ctx = nn.Parameter(torch.empty_like(saved, device=self.ctx.device))

    def set_classes(self, classnames: Sequence[str]) -> None:
        if self.ctx.dim() == 3 and self.ctx.shape[0] != len(classnames):
            raise ValueError(
                f"this CoOp learnt class-specific contexts for {self.ctx.shape[0]} classes and cannot classify "
                f"{len(classnames)} other classes; train with class_specific_context=false to change classes"
            )
        self.prompts = embed_class_prompts(self.model, classnames, self.template_words, self.n_ctx)

    def text_features(self) -> Tensor:
        """Un-normalised class features ``[classes, embed_dim]`` from the current context."""
        embeddings = assemble_prompts(self.prompts, self.ctx, self.class_token_position)
        return self.model.encode_text_embeddings(embeddings, self.prompts.eot_positions)

    def forward(self, images: Tensor) -> Tensor:
        return cosine_logits(self.model.logit_scale, self.image_features(images), self.text_features())

    def configure_optimizers(self):
        return coop_optimization(self, [self.ctx])


def coop_optimization(module: FrozenCLIPClassifier, parameters) -> dict:
    """CoOp's SGD with its per-epoch warm-up + cosine, from the module's hyper-parameters (the CoOp family's)."""
    h = module.hparams
    epochs = module.trainer.max_epochs
    if epochs is None or epochs < 1:
        raise ValueError(f"{type(module).__name__}'s learning rate follows the epochs: set trainer.max_epochs (got {epochs})")
    optimizer = torch.optim.SGD(parameters, lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
    schedule = warmup_cosine_per_epoch(optimizer, epochs, h.warmup_epochs, h.warmup_lr)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
