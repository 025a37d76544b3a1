"""CLIP: an image tower and a causal text tower projected into one embedding space.

Plain torch, no Lightning, so the model is usable from a notebook or another
trainer. Parameter names are OpenAI's (open_clip kept them), so their state
dicts map one to one; the text tower's parameters sit at the top level
(``token_embedding``, ``transformer``, ``ln_final``, ``text_projection``) as in
OpenAI's checkpoints.

Extension points used by the methods built on top:

- ``encode_image(images, prompts=...)``: pooled embedding, with optional
  per-layer vision prompts (ViT towers).
- ``visual.forward_tokens``: all tokens of a ViT tower.
- ``encode_dense_image``: per-location embeddings in the joint space
  (MaskCLIP), with the same meaning for either image tower.
- ``visual.forward_intermediates`` / ``visual.feature_info``: multi-scale
  features in timm's vocabulary, so a neck (DPT, FPN) is written once.
- ``encode_text_tokens``: per-token text outputs with a key-padding mask.
- ``encode_text_embeddings(embeddings, eot_positions, deep_prompts=...)``: the
  text tower from token embeddings (CoOp's learnable context) with per-layer
  prompt replacement (MaPLe).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.models.registry import ModelFamily, register_family
from lit_clip.models.resnet import ModifiedResNet
from lit_clip.models.transformer import Transformer, VisionTransformer, init_transformer_


@dataclass(frozen=True)
class VisionConfig:
    """``layers`` as an int builds a ViT; as four ints, a ModifiedResNet with those blocks per stage."""

    image_size: int = 224
    layers: int | tuple[int, int, int, int] = 12
    width: int = 768
    patch_size: int = 32
    head_width: int = 64
    mlp_ratio: float = 4.0

    @property
    def is_resnet(self) -> bool:
        return not isinstance(self.layers, int)


@dataclass(frozen=True)
class TextConfig:
    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0


def hf_text_config(text: TextConfig, quick_gelu: bool) -> dict:
    """transformers' ``text_config`` of a CLIP-style text tower (CLIP's, GroupViT's: the same fields)."""
    return {
        "hidden_size": text.width,
        "intermediate_size": int(text.width * text.mlp_ratio),
        "num_hidden_layers": text.layers,
        "num_attention_heads": text.heads,
        "max_position_embeddings": text.context_length,
        "vocab_size": text.vocab_size,
        "hidden_act": "quick_gelu" if quick_gelu else "gelu",
        "layer_norm_eps": 1e-5,
        # transformers pools at the first EOS, ours at the highest id: the same when EOS is the last id, as in
        # CLIP's vocabulary (SOT 49406, EOT 49407). lit_clip.tokenize pads with 0.
        "bos_token_id": text.vocab_size - 2,
        "eos_token_id": text.vocab_size - 1,
        "pad_token_id": 0,
    }


@dataclass(frozen=True)
class CLIPConfig:
    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    quick_gelu: bool = False


# open_clip's geometry for the named architectures. Add `-quickgelu` to any name
# for OpenAI's activation (needed by OpenAI's own weights).
ARCHITECTURES: dict[str, CLIPConfig] = {
    "RN50": CLIPConfig(1024, VisionConfig(224, (3, 4, 6, 3), 64)),
    "RN101": CLIPConfig(512, VisionConfig(224, (3, 4, 23, 3), 64)),
    "ViT-B-32": CLIPConfig(512, VisionConfig(224, 12, 768, patch_size=32)),
    "ViT-B-16": CLIPConfig(512, VisionConfig(224, 12, 768, patch_size=16)),
    "ViT-L-14": CLIPConfig(768, VisionConfig(224, 24, 1024, patch_size=14), TextConfig(width=768, heads=12)),
    # Small towers that train on a CPU in minutes (ShapesWorld at 64 px, short captions).
    "ViT-Tiny-8": CLIPConfig(
        128, VisionConfig(64, 4, 192, patch_size=8), TextConfig(context_length=32, width=128, heads=2, layers=4)
    ),
    "RN-Tiny": CLIPConfig(
        128, VisionConfig(64, (1, 1, 1, 1), 16), TextConfig(context_length=32, width=128, heads=2, layers=4)
    ),
    # For unit tests: as small as a CLIP can be.
    "ViT-Micro-8": CLIPConfig(
        32, VisionConfig(32, 2, 64, patch_size=8), TextConfig(context_length=16, width=32, heads=2, layers=2)
    ),
}
QUICKGELU_SUFFIX = "-quickgelu"


def clip_architecture_names() -> list[str]:
    return sorted([*ARCHITECTURES, *(name + QUICKGELU_SUFFIX for name in ARCHITECTURES)])


def get_config(name: str) -> CLIPConfig:
    """The config of a named architecture; ``NAME-quickgelu`` switches the activation to QuickGELU."""
    base = name.removesuffix(QUICKGELU_SUFFIX)
    if base not in ARCHITECTURES:
        raise ValueError(f"unknown CLIP architecture {name!r}; known: {', '.join(clip_architecture_names())}")
    config = ARCHITECTURES[base]
    return dataclasses.replace(config, quick_gelu=True) if name.endswith(QUICKGELU_SUFFIX) else config


def config_from_dict(values: dict) -> CLIPConfig:
    """The inverse of ``dataclasses.asdict`` for a :class:`CLIPConfig` (as checkpoints record it)."""
    vision = dict(values["vision"])
    if not isinstance(vision["layers"], int):
        vision["layers"] = tuple(vision["layers"])
    return CLIPConfig(values["embed_dim"], VisionConfig(**vision), TextConfig(**values["text"]), values["quick_gelu"])


class CLIP(nn.Module):
    # The registered architecture a family rebuilt this model as (``load_clip``), when ``config`` alone does not
    # describe it (a given image tower); None for CLIPs that their config describes.
    architecture: str | None = None

    def __init__(
        self,
        config: CLIPConfig,
        init_logit_scale: float = math.log(1 / 0.07),
        init_logit_bias: float | None = None,
        visual: nn.Module | None = None,
    ):
        """``visual``: an image tower to use instead of the one ``config.vision`` describes (GroupViT's, say):
        any module mapping images to ``[batch, config.embed_dim]``; its parameters sit under ``visual.``. Where it
        has them, ``lock(unlocked_groups)`` and ``set_grad_checkpointing(enabled)`` (open_clip's names) are what
        :meth:`lock_image_tower` and :meth:`set_grad_checkpointing` call."""
        super().__init__()
        self.config = config
        vision, text = config.vision, config.text
        if visual is not None:
            self.visual = visual
        elif vision.is_resnet:
            heads = vision.width * 32 // vision.head_width
            self.visual = ModifiedResNet(vision.layers, config.embed_dim, heads, vision.image_size, vision.width)
        else:
            heads = vision.width // vision.head_width
            self.visual = VisionTransformer(
                vision.image_size, vision.patch_size, vision.width, vision.layers, heads,
                config.embed_dim, vision.mlp_ratio, config.quick_gelu,
            )  # fmt: skip

        self.context_length = text.context_length
        self.token_embedding = nn.Embedding(text.vocab_size, text.width)
        self.positional_embedding = nn.Parameter(torch.empty(text.context_length, text.width))
        self.transformer = Transformer(
            text.width, text.layers, text.heads, text.mlp_ratio, config.quick_gelu, causal=True
        )
        self.ln_final = nn.LayerNorm(text.width)
        self.text_projection = nn.Parameter(torch.empty(text.width, config.embed_dim))
        # A 0-d tensor, as in OpenAI's checkpoints; the loss uses exp(logit_scale).
        self.logit_scale = nn.Parameter(torch.tensor(init_logit_scale))
        self.logit_bias = None if init_logit_bias is None else nn.Parameter(torch.tensor(init_logit_bias))
        self.init_text_parameters()

    def init_text_parameters(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        init_transformer_(self.transformer)
        nn.init.normal_(self.text_projection, std=self.transformer.width**-0.5)

    # --- image tower -------------------------------------------------------------------------------
    def encode_image(self, images: Tensor, prompts: Sequence[Tensor | None] | None = None) -> Tensor:
        """Un-normalised image embeddings ``[batch, embed_dim]``; ``prompts`` are per-layer vision prompts (ViT)."""
        if prompts is None:
            return self.visual(images)
        if isinstance(self.visual, ModifiedResNet):
            raise ValueError("vision prompts need a ViT image tower; this model has a ModifiedResNet")
        return self.visual(images, prompts)

    def encode_image_pooled(self, images: Tensor) -> Tensor:
        """The image tower's pooled feature before its projection into the joint space, ``[batch, width]``: a ViT's
        class token after ``ln_post``, a timm trunk's pooled output (SLIP's SSL head reads it). A tower whose pooling
        projects as it pools (ResNet's attention pool) gives its embedding."""
        pooled = getattr(self.visual, "forward_pooled", None)
        return self.visual(images) if pooled is None else pooled(images)

    @property
    def image_pooled_width(self) -> int:
        """The size of :meth:`encode_image_pooled`'s features."""
        return getattr(self.visual, "pooled_width", self.config.embed_dim)

    def encode_dense_image(self, images: Tensor) -> Tensor:
        """Un-normalised per-location embeddings ``[batch, embed_dim, h, w]``, comparable with ``encode_text``'s.

        MaskCLIP (Zhou et al., 2022): the last pooling step's value path at every location, the query-key
        attention that pools dropped, read the same way from either tower (``visual.forward_dense``): one
        embedding per patch for a ViT (``H / patch x W / patch``), per position of the last map for a ResNet
        (``size / 32``). Normalise along dim 1 before comparing with text embeddings.
        """
        return self.visual.forward_dense(images)

    # --- text tower --------------------------------------------------------------------------------
    def encode_text(self, token_ids: Tensor) -> Tensor:
        """Un-normalised text embeddings ``[batch, embed_dim]`` from token ids ``[batch, length]``.

        The sequence is pooled at its end-of-text token, the highest id in CLIP's vocabulary.
        """
        self.check_token_ids(token_ids)
        return self.encode_text_embeddings(self.token_embedding(token_ids), token_ids.argmax(dim=-1))

    def encode_text_tokens(self, token_ids: Tensor, project: bool = True) -> tuple[Tensor, Tensor]:
        """Every token's output and a key-padding mask, for methods that attend to words (GLIP-style fusion).

        ``tokens`` is ``[batch, length, embed_dim]``, after ``ln_final`` and ``text_projection`` like
        ``encode_text``'s embedding (at the EOT position it is that embedding), or with ``project=False``
        ``[batch, length, width]`` after ``ln_final`` alone. ``padding_mask`` ``[batch, length]`` is True after
        the EOT token (the highest id, where ``encode_text`` pools), as attention's ``key_padding_mask`` takes it.
        The tower is causal: a token's output has seen only itself and the tokens before it.
        """
        self.check_token_ids(token_ids)
        tokens = self.ln_final(self.transform_text(self.token_embedding(token_ids)))
        if project:
            tokens = tokens @ self.text_projection
        positions = torch.arange(token_ids.shape[1], device=token_ids.device)
        return tokens, positions > token_ids.argmax(dim=-1, keepdim=True)

    def check_token_ids(self, token_ids: Tensor) -> None:
        """Integer ids inside the vocabulary, with a message rather than an error deep in the embedding."""
        if token_ids.dtype not in (torch.long, torch.int):
            raise TypeError(f"token ids must be an integer tensor (tokenize gives torch.long), got {token_ids.dtype}")
        # Out-of-range ids are an IndexError deep in the embedding on a CPU and a device-side assert on an
        # accelerator. Checked on CPU tensors only: there min/max cost microseconds, while on an accelerator
        # reading them back would stall every training step. Not while compiling: it would break the graph.
        vocab = self.token_embedding.num_embeddings
        if token_ids.device.type == "cpu" and token_ids.numel() and not torch.compiler.is_compiling():
            low, high = (int(i) for i in token_ids.aminmax())
            if low < 0 or high >= vocab:
                raise ValueError(
                    f"token ids must be in [0, {vocab}) for this model's vocabulary, got ids from {low} to {high}"
                )

    def encode_text_embeddings(
        self, embeddings: Tensor, eot_positions: Tensor, deep_prompts: Sequence[Tensor | None] | None = None
    ) -> Tensor:
        """The text tower from token embeddings ``[batch, length, width]``, pooled at ``eot_positions``.

        ``deep_prompts[i]`` for ``i >= 1`` replaces the tokens right after SOT before block ``i``.
        """
        x = self.transform_text(embeddings, deep_prompts)
        # Causal attention: nothing after EOT reaches it, so padding never matters.
        pooled = x[torch.arange(x.shape[0], device=x.device), eot_positions]
        return self.ln_final(pooled) @ self.text_projection

    def transform_text(self, embeddings: Tensor, deep_prompts: Sequence[Tensor | None] | None = None) -> Tensor:
        """Token embeddings ``[batch, length, width]``, positions added, through the causal blocks (no ``ln_final``)."""
        length = embeddings.shape[1]
        if length > self.context_length:
            raise ValueError(
                f"text of {length} tokens is longer than the model's context length {self.context_length}; "
                f"tokenize with context_length={self.context_length}"
            )
        x = embeddings + self.positional_embedding[:length].to(embeddings.dtype)
        return self.transformer(x, deep_prompts, prompt_offset=1)

    def forward(self, images: Tensor, token_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """L2-normalised image and text embeddings and ``exp(logit_scale)``, the inputs of the contrastive loss."""
        image_features = F.normalize(self.encode_image(images), dim=-1)
        text_features = F.normalize(self.encode_text(token_ids), dim=-1)
        return image_features, text_features, self.logit_scale.exp()

    def set_patch_dropout(self, fraction: float) -> None:
        """Drop this fraction of the patch tokens of each image in training (FLIP); ViT towers only."""
        if not 0 <= fraction < 1:
            raise ValueError(f"patch dropout must be in [0, 1), got {fraction}")
        if not isinstance(self.visual, VisionTransformer):
            raise ValueError(f"patch dropout needs a ViT image tower; this model has a {type(self.visual).__name__}")
        self.visual.patch_dropout = fraction

    def lock_image_tower(self, unlocked_groups: int = 0) -> None:
        """LiT (Zhai et al., 2022): freeze the image tower but its last ``unlocked_groups`` groups, as open_clip's.

        A ViT's groups, first to last: the patch stem (conv1, class and position embeddings, ln_pre), each
        residual block but the last, the last block with ln_post, the projection. A ResNet tower is locked whole.
        A given tower with a ``lock`` method locks itself (the timm tower as open_clip's ``TimmModel``).
        """
        if hasattr(self.visual, "lock"):
            self.visual.lock(unlocked_groups)
            return
        self.visual.requires_grad_(False)
        if unlocked_groups == 0:
            return
        if not isinstance(self.visual, VisionTransformer):
            raise ValueError(
                f"a {type(self.visual).__name__} image tower locks whole (unlocked_groups=0), as in open_clip"
            )
        v = self.visual
        groups = [
            [v.conv1, v.class_embedding, v.positional_embedding, v.ln_pre],
            *([block] for block in v.transformer.resblocks[:-1]),
            [v.transformer.resblocks[-1], v.ln_post],
            [v.proj],
        ]
        _set_trainable(groups[-unlocked_groups:], True)

    def lock_text_tower(self, unlocked_layers: int = 0) -> None:
        """LiT's other half: freeze the text tower but its last ``unlocked_layers`` groups, as open_clip's: the
        embeddings, each residual block but the last, the last block with ln_final, the projection."""
        groups = [
            [self.token_embedding, self.positional_embedding],
            *([block] for block in self.transformer.resblocks[:-1]),
            [self.transformer.resblocks[-1], self.ln_final],
            [self.text_projection],
        ]
        _set_trainable(groups, False)
        if unlocked_layers:
            _set_trainable(groups[-unlocked_layers:], True)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute transformer activations in the backward pass: less memory, ~30% more compute. A given image
        tower with a ``set_grad_checkpointing`` method is told too."""
        self.transformer.grad_checkpointing = enabled
        if isinstance(self.visual, VisionTransformer):
            self.visual.transformer.grad_checkpointing = enabled
        elif hasattr(self.visual, "set_grad_checkpointing"):
            self.visual.set_grad_checkpointing(enabled)


def _set_trainable(groups: list[list[nn.Module | nn.Parameter]], trainable: bool) -> None:
    for group in groups:
        for part in group:
            part.requires_grad_(trainable)


def build_clip(
    name: str, init_logit_scale: float = math.log(1 / 0.07), init_logit_bias: float | None = None
) -> CLIP:
    """A randomly initialised CLIP of a named architecture (see :data:`ARCHITECTURES`)."""
    return CLIP(get_config(name), init_logit_scale, init_logit_bias)


register_family(ModelFamily("clip", clip_architecture_names, build_clip))
