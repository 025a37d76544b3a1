"""GroupViT (Xu et al., "GroupViT: Semantic Segmentation Emerges from Text Supervision", CVPR 2022).

A CLIP whose image tower groups: the patch tokens are merged, stage by stage, into fewer and fewer segment tokens,
each the mean of the tokens assigned to it, so that after training on image-text pairs alone the assignments are a
segmentation. Read top-down, as the paper's method section:

1. **Patch tokens.** A ViT stem: 16 x 16 patches, a LayerNorm, learned positions.
2. **Grouping stages.** Each stage appends its learnable *group tokens* to the segment tokens and runs ordinary
   transformer blocks over both (:class:`GroupingStage`); then a *Grouping Block* (:class:`GroupingBlock`) assigns
   every segment token to one group and makes each group's mean the new segment token. GroupViT-S: 196 patches ->
   64 segments after stage 1 -> 8 after stage 2; stage 3 has no group tokens and only refines the 8.
3. **Grouping Block.** The group tokens are first mixed to the number of output groups (an MLP over the token axis)
   and gather image context by cross-attention; then the assignment: a softmax over the **group** axis of the
   groups' similarity to each segment token, made hard (one group per token) by Gumbel-softmax with the
   straight-through trick in training, by argmax in evaluation. The new segment token is the assignment-weighted
   mean of the tokens (``/ (count + 1)``) plus its group token, then an MLP.
4. **Joint space.** Image embedding = mean of the final segment tokens -> a projection MLP (Linear, BatchNorm,
   ReLU, Linear); text embedding = CLIP's causal text transformer pooled at EOT -> the same kind of MLP.

For zero-shot segmentation, :meth:`GroupViT.encode_groups` gives each final group's embedding in the joint space and
every stage's assignments, and :func:`group_maps` composes those into pixel-to-group maps.

Activations, as the official code (``NVlabs/GroupViT``, ``models/group_vit.py``, ``models/transformer.py``) and
transformers' port have them: exact GELU everywhere in the image tower, QuickGELU in the text tower (OpenAI's
CLIP text transformer, 64-wide heads); ``config.quick_gelu`` records the text tower's.

Parameter names: the image tower's transformer blocks and the text tower are lit-clip's own blocks
(:mod:`lit_clip.models.transformer`, OpenAI's names); inside a Grouping Block the names are those the official code
and transformers share (``norm_tokens``, ``mlp_inter``, ``pre_assign_attn``, ``assign`` ...). The official and
transformers' layouts map onto ours by the tables at the end of this file (:func:`from_official`, :func:`from_hf`
and their inverses), which :func:`lit_clip.load_clip` and :func:`lit_clip.save_huggingface` use.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lit_clip.models.clip import CLIP, hf_text_config
from lit_clip.models.registry import ModelFamily, register_family
from lit_clip.models.transformer import ResidualAttentionBlock, Transformer, attention, check_images, init_transformer_
from lit_clip.transforms import IMAGENET_MEAN, IMAGENET_STD, FromCLIPNormalization


# --- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupViTVisionConfig:
    """The grouping image tower; defaults are the paper's GroupViT-S (official ``group_vit_gcc_yfcc_30e.yml``)."""

    image_size: int = 224
    patch_size: int = 16
    width: int = 384
    heads: int = 6
    depths: tuple[int, ...] = (6, 3, 3)
    # Group tokens each stage appends; the last stage has none (it only refines the final segments).
    num_group_tokens: tuple[int, ...] = (64, 8, 0)
    # Segments each Grouping Block (after every stage but the last) outputs.
    num_output_groups: tuple[int, ...] = (64, 8)
    mlp_ratio: float = 4.0
    # Grouping Block MLPs' hidden sizes as multiples of width: over the group-token axis, over channels.
    assign_mlp_ratio: tuple[float, float] = (0.5, 4.0)
    # Added to each group's token count before averaging its tokens: an empty group gives a zero mean, not 0 / 0.
    assign_eps: float = 1.0
    # One group per token (Gumbel-softmax with straight-through in training, argmax in evaluation); False: soft.
    hard_assignment: bool = True
    gumbel_tau: float = 1.0
    # Stochastic depth of the transformer blocks, rising linearly to this over all of them (official: 0.1).
    drop_path_rate: float = 0.1
    # The pixel statistics the tower was trained on. lit-clip's data normalise with CLIP's mean and std; the
    # official and transformers' weights were trained on ImageNet-normalised images ("imagenet"), so the tower
    # converts its CLIP-normalised input first. "clip": the input as it comes.
    image_normalization: str = "imagenet"

    def __post_init__(self) -> None:
        stages = len(self.depths)
        if len(self.num_group_tokens) != stages or len(self.num_output_groups) != stages - 1:
            raise ValueError(
                f"GroupViT with {stages} stages (depths {list(self.depths)}) needs {stages} num_group_tokens and "
                f"{stages - 1} num_output_groups, got {list(self.num_group_tokens)} and {list(self.num_output_groups)}"
            )
        if any(n <= 0 for n in self.num_group_tokens[:-1]) or self.num_group_tokens[-1] != 0:
            raise ValueError(
                "every GroupViT stage but the last needs group tokens and the last has none (it only refines the "
                f"final segments), got num_group_tokens {list(self.num_group_tokens)}"
            )
        if self.image_normalization not in ("clip", "imagenet"):
            raise ValueError(f"image_normalization is 'clip' or 'imagenet', got {self.image_normalization!r}")
        if self.width % self.heads or self.image_size % self.patch_size:
            raise ValueError(
                f"GroupViT image tower: width {self.width} must divide into {self.heads} heads and image size "
                f"{self.image_size} into {self.patch_size}-pixel patches"
            )


@dataclass(frozen=True)
class GroupViTTextConfig:
    """CLIP's causal text transformer, narrower: the official ``TextTransformer`` (heads = width // 64)."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 256
    heads: int = 4
    layers: int = 12
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class GroupViTConfig:
    """``embed_dim``: the joint space, the projection MLPs' output; ``projection_hidden``: their hidden width.
    ``quick_gelu``: the text tower's activation (the image tower's is always exact GELU)."""

    embed_dim: int = 256
    projection_hidden: int = 4096
    vision: GroupViTVisionConfig = field(default_factory=GroupViTVisionConfig)
    text: GroupViTTextConfig = field(default_factory=GroupViTTextConfig)
    quick_gelu: bool = True

    @staticmethod
    def from_dict(values: dict) -> GroupViTConfig:
        """The inverse of ``dataclasses.asdict`` (what a checkpoint records: lists where the config has tuples)."""
        vision = {key: tuple(value) if isinstance(value, list) else value for key, value in values["vision"].items()}
        return GroupViTConfig(
            values["embed_dim"], values["projection_hidden"], GroupViTVisionConfig(**vision),
            GroupViTTextConfig(**values["text"]), values["quick_gelu"],
        )  # fmt: skip


def is_groupvit_config_dict(values: dict) -> bool:
    """Whether ``values`` is a :class:`GroupViTConfig` as ``dataclasses.asdict`` writes it (not a CLIP's)."""
    return "projection_hidden" in values and "num_group_tokens" in values.get("vision", {})


GROUPVIT_ARCHITECTURES: dict[str, GroupViTConfig] = {
    # The paper's (official group_vit_gcc_yfcc_30e.yml; transformers' nvidia/groupvit-gcc-yfcc).
    "GroupViT-S-16": GroupViTConfig(),
    # A CPU-sized one: 64 px ShapesWorld images in 8 x 8 patches, 64 -> 16 -> 4 segments.
    "GroupViT-Micro": GroupViTConfig(
        embed_dim=32,
        projection_hidden=128,
        vision=GroupViTVisionConfig(
            image_size=64, patch_size=8, width=64, heads=2, depths=(2, 1, 1), num_group_tokens=(16, 4, 0),
            num_output_groups=(16, 4), drop_path_rate=0.0, image_normalization="clip",
        ),
        text=GroupViTTextConfig(context_length=32, width=64, heads=2, layers=2),
    ),
}  # fmt: skip


# --- the image tower's parts -----------------------------------------------------------------------
class MLP(nn.Module):
    """``fc2(gelu(fc1(x)))``, the official ``Mlp``."""

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TokenMixer(MLP):
    """An MLP across the token axis of ``[batch, tokens, width]``: it turns ``in_features`` tokens into
    ``out_features`` tokens, each a learned mixture of all (how a Grouping Block gets its output count of groups)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: in training, zero a residual branch for a random ``rate`` of the samples, rescale the rest."""
    if rate == 0 or not training:
        return x
    keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


class Block(ResidualAttentionBlock):
    """lit-clip's pre-norm transformer block (exact GELU) with stochastic depth on both residual branches."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, drop_path_rate: float):
        super().__init__(width, heads, mlp_ratio, quick_gelu=False)
        self.drop_path_rate = drop_path_rate

    def forward(self, x: Tensor) -> Tensor:
        x = x + drop_path(self.attn(self.ln_1(x)), self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.ln_2(x)), self.drop_path_rate, self.training)


class CrossAttention(nn.Module):
    """Multi-head attention of ``query`` tokens over ``key`` tokens (the values are the keys)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        batch, length, width = query.shape

        def heads(x: Tensor) -> Tensor:  # [batch, heads, tokens, head_width]
            return x.unflatten(-1, (self.heads, width // self.heads)).transpose(1, 2)

        x = attention(heads(self.q_proj(query)), heads(self.k_proj(key)), heads(self.v_proj(key)))
        return self.out_proj(x.transpose(1, 2).reshape(batch, length, width))


class CrossAttentionBlock(nn.Module):
    """The groups gather image context: ``x = groups + attn(groups, tokens)``, ``x + mlp(norm2(x))``, then a
    LayerNorm (the official ``CrossAttnBlock`` with ``post_norm=True``: the inputs arrive normalised)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.attn = CrossAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, int(width * mlp_ratio), width)
        self.norm_post = nn.LayerNorm(width)

    def forward(self, groups: Tensor, tokens: Tensor) -> Tensor:
        x = groups + self.attn(groups, tokens)
        x = x + self.mlp(self.norm2(x))
        return self.norm_post(x)


def gumbel_noise(like: Tensor) -> Tensor:
    """Gumbel(0, 1) samples shaped as ``like``: ``-log(-log(u))``, with ``u`` kept off 0 and 1 so none is infinite
    (``F.gumbel_softmax``'s exponential samples can be 0 in low precision: pytorch#41663)."""
    finfo = torch.finfo(like.dtype)
    uniform = torch.rand_like(like).clamp_(finfo.tiny, 1 - finfo.eps)
    return -torch.log(-torch.log(uniform))


class AssignAttention(nn.Module):
    """Each segment token goes to one group; each group becomes the mean of its tokens.

    ``forward(groups [B, G, C], tokens [B, N, C])`` returns the grouped values ``[B, G, C]``, the soft assignment
    ``[B, G, N]`` (a softmax over the group axis, no noise: what segmentation reads) and the hard one (one-hot over
    groups, exactly 0 / 1: the Gumbel sample in training, the argmax of the soft one in evaluation).
    """

    def __init__(self, width: int, hard: bool, gumbel_tau: float, eps: float):
        super().__init__()
        self.scale = width**-0.5  # one head
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        self.hard, self.gumbel_tau, self.eps = hard, gumbel_tau, eps

    def forward(self, groups: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.q_proj(groups), self.k_proj(tokens), self.v_proj(tokens)
        # The assignment in fp32 whatever the autocast: the noise, the one-hot and the division by the group sizes
        # are where low precision turns into inf and NaN (the official fp16 runs' NaN losses, NVlabs/GroupViT#43).
        with torch.autocast(q.device.type, enabled=False):
            logits = (q.float() @ k.float().transpose(1, 2)) * self.scale  # [B, G, N]
            soft = logits.softmax(dim=1)  # over groups: each token's distribution over the groups
            if self.training and self.hard:  # the official ties Gumbel noise to hard assignment
                sample = ((logits + gumbel_noise(logits)) / self.gumbel_tau).softmax(dim=1)
            else:
                sample = soft
            one_hot = torch.zeros_like(sample).scatter_(1, sample.argmax(dim=1, keepdim=True), 1.0)
            # Straight-through: the forward pass sees the one-hot, the backward pass the softmax's gradient.
            assignment = sample + (one_hot - sample).detach() if self.hard else sample
            weights = assignment / (assignment.sum(dim=-1, keepdim=True) + self.eps)  # a mean over each group
        return self.proj(weights.to(v.dtype) @ v), soft, one_hot


class GroupingBlock(nn.Module):
    """Merges ``N`` segment tokens into ``num_output_groups`` new ones, guided by the stage's group tokens."""

    def __init__(self, config: GroupViTVisionConfig, num_group_tokens: int, num_output_groups: int):
        super().__init__()
        width = config.width
        tokens_hidden, channels_hidden = (int(r * width) for r in config.assign_mlp_ratio)
        self.norm_tokens = nn.LayerNorm(width)  # the group tokens
        self.norm_x = nn.LayerNorm(width)  # the segment tokens
        self.mlp_inter = TokenMixer(num_group_tokens, tokens_hidden, num_output_groups)
        self.norm_post_tokens = nn.LayerNorm(width)
        self.pre_assign_attn = CrossAttentionBlock(width, config.heads, config.mlp_ratio)
        self.assign = AssignAttention(width, config.hard_assignment, config.gumbel_tau, config.assign_eps)
        self.norm_new_x = nn.LayerNorm(width)
        self.mlp_channels = MLP(width, channels_hidden, width)

    def forward(self, tokens: Tensor, group_tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``tokens [B, N, C]``, ``group_tokens [B, G_in, C]`` -> new segments ``[B, G_out, C]``, soft and hard
        assignments ``[B, G_out, N]``."""
        tokens = self.norm_x(tokens)
        groups = self.norm_post_tokens(self.mlp_inter(self.norm_tokens(group_tokens)))  # G_in -> G_out groups
        groups = self.pre_assign_attn(groups, tokens)
        grouped, soft, hard = self.assign(groups, tokens)
        segments = grouped + groups
        return segments + self.mlp_channels(self.norm_new_x(segments)), soft, hard


class GroupingStage(nn.Module):
    """Transformer blocks over the segment tokens and this stage's group tokens, then (but in the last stage) a
    Grouping Block. A stage after the first starts its group tokens from the previous stage's, mixed to its own
    count (``group_projector``), added to its learned ones."""

    def __init__(
        self, config: GroupViTVisionConfig, index: int, drop_path_rates: list[float], prev_group_tokens: int
    ):
        super().__init__()
        width, count = config.width, config.num_group_tokens[index]
        self.num_group_tokens = count
        self.group_token = nn.Parameter(torch.zeros(1, count, width)) if count else None
        self.group_projector = None
        if count and prev_group_tokens:
            self.group_projector = nn.Sequential(nn.LayerNorm(width), TokenMixer(prev_group_tokens, width // 2, count))
        self.blocks = nn.ModuleList(Block(width, config.heads, config.mlp_ratio, rate) for rate in drop_path_rates)
        last = index == len(config.depths) - 1
        self.grouping = None if last else GroupingBlock(config, count, config.num_output_groups[index])
        self.grad_checkpointing = False

    def forward(
        self, tokens: Tensor, prev_group_tokens: Tensor | None
    ) -> tuple[Tensor, Tensor | None, tuple[Tensor, Tensor] | None]:
        """-> segment tokens for the next stage, this stage's group tokens after the blocks, and the Grouping
        Block's (soft, hard) assignments (None in the last stage)."""
        group_tokens = None
        if self.group_token is not None:
            group_tokens = self.group_token.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
            if self.group_projector is not None:
                group_tokens = group_tokens + self.group_projector(prev_group_tokens)
            tokens = torch.cat([tokens, group_tokens], dim=1)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
        if group_tokens is not None:
            tokens, group_tokens = tokens[:, : -self.num_group_tokens], tokens[:, -self.num_group_tokens :]
        if self.grouping is None:
            return tokens, group_tokens, None
        tokens, soft, hard = self.grouping(tokens, group_tokens)
        return tokens, group_tokens, (soft, hard)


class PatchEmbed(nn.Module):
    """Non-overlapping patches, linearly embedded, then a LayerNorm."""

    def __init__(self, patch_size: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(width)

    def forward(self, images: Tensor) -> Tensor:
        return self.norm(self.proj(images).flatten(2).transpose(1, 2))


class ImageFeatures(NamedTuple):
    tokens: Tensor  # the final segment tokens after the last LayerNorm, [B, G, width]
    assignments: list[Tensor]  # per grouping stage: soft assignments [B, G_s, N_prev], softmax over G_s
    hard_assignments: list[Tensor]  # the same, one-hot over G_s
    grid: tuple[int, int]  # the patch grid (h, w) that the first stage's N_prev = h * w tokens lie on


class GroupViTImageTower(nn.Module):
    """Patches -> grouping stages -> the final segment tokens. ``forward`` pools them by their mean, ``[B, width]``."""

    def __init__(self, config: GroupViTVisionConfig):
        super().__init__()
        self.config = config
        self.patch_size, self.grid_size = config.patch_size, config.image_size // config.patch_size
        self.patch_embed = PatchEmbed(config.patch_size, config.width)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size**2, config.width))
        # (in Python, not torch.linspace: the model may be built on the meta device)
        blocks = sum(config.depths)
        rates = [config.drop_path_rate * i / max(1, blocks - 1) for i in range(blocks)]
        starts = [sum(config.depths[:i]) for i in range(len(config.depths) + 1)]
        self.stages = nn.ModuleList(
            GroupingStage(config, i, rates[starts[i] : starts[i + 1]], config.num_group_tokens[i - 1] if i else 0)
            for i in range(len(config.depths))
        )
        self.norm = nn.LayerNorm(config.width)
        # CLIP-normalised pixels to the statistics the tower was trained on.
        imagenet = config.image_normalization == "imagenet"
        self.normalize = FromCLIPNormalization(IMAGENET_MEAN, IMAGENET_STD) if imagenet else nn.Identity()
        self.init_parameters()

    def init_parameters(self) -> None:
        """The official initialisation: truncated normals (std 0.02) for every linear map and the positions; the
        first stage's group tokens too, later stages' zero (the projected previous groups start them)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, Block):  # its fused q, k, v projection is a linear map too
                nn.init.trunc_normal_(module.attn.in_proj_weight, std=0.02)
                nn.init.zeros_(module.attn.in_proj_bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for stage in self.stages:
            if stage.group_token is not None and stage.group_projector is None:
                nn.init.trunc_normal_(stage.group_token, std=0.02)

    def positions(self, grid: tuple[int, int]) -> Tensor:
        """The learned positions, resized bicubically when the input is not ``image_size`` (as the official code
        does in evaluation)."""
        if grid == (self.grid_size, self.grid_size):
            return self.pos_embed
        positions = self.pos_embed.reshape(1, self.grid_size, self.grid_size, -1).permute(0, 3, 1, 2)
        positions = F.interpolate(positions, size=grid, mode="bicubic", align_corners=False)
        return positions.permute(0, 2, 3, 1).flatten(1, 2)

    def forward_features(self, images: Tensor) -> ImageFeatures:
        images = check_images(images, self.patch_embed.proj.weight)
        if min(images.shape[-2:]) < self.patch_size:
            raise ValueError(
                f"GroupViT with patch size {self.patch_size} needs images of at least {self.patch_size} x "
                f"{self.patch_size} pixels, got {images.shape[-2]} x {images.shape[-1]}"
            )
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        tokens = self.patch_embed(self.normalize(images))
        tokens = tokens + self.positions(grid).to(tokens.dtype)
        group_tokens, soft, hard = None, [], []
        for stage in self.stages:
            tokens, group_tokens, assignment = stage(tokens, group_tokens)
            if assignment is not None:
                soft.append(assignment[0])
                hard.append(assignment[1])
        return ImageFeatures(self.norm(tokens), soft, hard, grid)

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_features(images).tokens.mean(dim=1)

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enabled


class ProjectionMLP(nn.Sequential):
    """Linear, BatchNorm, ReLU, Linear into the joint space (the official ``ProjectMLP`` with two layers, its 1x1
    convolutions as linear maps). Takes ``[..., width]``; the BatchNorm normalises over all leading axes."""

    def __init__(self, width: int, hidden: int, embed_dim: int):
        linear, norm = nn.Linear(width, hidden), nn.BatchNorm1d(hidden)
        super().__init__(linear, norm, nn.ReLU(inplace=True), nn.Linear(hidden, embed_dim))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(0, -2)).unflatten(0, x.shape[:-1])


# --- the model -------------------------------------------------------------------------------------
class Groups(NamedTuple):
    """What zero-shot segmentation needs of an image batch (:meth:`GroupViT.encode_groups`)."""

    embeddings: Tensor  # the final groups in the joint space, un-normalised, [B, G, embed_dim]
    image_embeddings: Tensor  # the images', encode_image's from the same pass, [B, embed_dim]
    assignments: list[Tensor]  # per grouping stage: soft assignments [B, G_s, N_prev], softmax over G_s
    hard_assignments: list[Tensor]  # the same, one-hot over G_s (argmax in eval, the Gumbel sample in training)
    grid: tuple[int, int]  # the patch grid (h, w) of the first stage's tokens

    def maps(self, size: tuple[int, int] | None = None) -> list[Tensor]:
        """Per stage, each pixel's soft assignment to that stage's groups, ``[B, G_s, H, W]`` (see
        :func:`group_maps`); the last is over the groups of ``embeddings``."""
        return group_maps(self.assignments, self.grid, size)


def group_maps(assignments: list[Tensor], grid: tuple[int, int], size: tuple[int, int] | None = None) -> list[Tensor]:
    """Pixel-to-group maps: stage ``s``'s assignments composed with all earlier ones (``A_s @ ... @ A_1``, each
    ``[B, G_s, N_prev]``), on the patch ``grid``, resized bilinearly to ``size`` (``(H, W)``) when given: the
    official ``get_attn_maps`` / transformers' ``get_grouping_from_attentions``. ``[B, G_s, H, W]`` per stage;
    with soft assignments each pixel's values sum to 1 over the groups."""
    maps, composed = [], None
    for assignment in assignments:
        composed = assignment if composed is None else assignment @ composed
        stage_map = composed.unflatten(-1, grid)
        if size is not None:
            stage_map = F.interpolate(stage_map, size=size, mode="bilinear", align_corners=False)
        maps.append(stage_map)
    return maps


class GroupViT(nn.Module):
    """GroupViT's image and text towers and their projections into one space.

    - ``encode_image(images) -> [B, embed_dim]``, ``encode_text(token_ids) -> [B, embed_dim]`` (or ``[B, K, D]``
      for ``[B, K, L]`` ids: an image's caption and its K noun prompts), un-normalised;
    - ``forward(images, token_ids)``: both L2-normalised and ``exp(logit_scale)``, as :class:`~lit_clip.CLIP`'s;
    - ``encode_groups(images) -> Groups``: the final groups' embeddings and every stage's assignments;
    - ``logit_scale`` (image-text InfoNCE) and ``multi_label_logit_scale`` (the multi-label contrastive loss's own,
      as the official model holds it), both ``ln(1 / 0.07)`` at first; the official loss uses
      ``min(exp(scale), 100)``.

    The projections hold BatchNorms: in training mode they normalise over the batch (under DDP convert them with
    ``nn.SyncBatchNorm.convert_sync_batchnorm``, as the official code does, or Lightning's ``sync_batchnorm``).
    """

    # The registered architecture this model was built or rebuilt as, where there is one (``load_clip``).
    architecture: str | None = None

    def __init__(
        self,
        config: GroupViTConfig,
        init_logit_scale: float = math.log(1 / 0.07),
        init_logit_bias: float | None = None,
    ):
        super().__init__()
        self.config = config
        vision, text = config.vision, config.text
        self.visual = GroupViTImageTower(vision)
        self.image_projector = ProjectionMLP(vision.width, config.projection_hidden, config.embed_dim)

        self.context_length = text.context_length
        self.token_embedding = nn.Embedding(text.vocab_size, text.width)
        self.positional_embedding = nn.Parameter(torch.empty(text.context_length, text.width))
        self.transformer = Transformer(
            text.width, text.layers, text.heads, text.mlp_ratio, config.quick_gelu, causal=True
        )
        self.ln_final = nn.LayerNorm(text.width)
        self.text_projector = ProjectionMLP(text.width, config.projection_hidden, config.embed_dim)

        self.logit_scale = nn.Parameter(torch.tensor(init_logit_scale))
        self.multi_label_logit_scale = nn.Parameter(torch.tensor(init_logit_scale))
        # A SigLIP-style bias, where a loss wants one (as CLIP's); the official model has none.
        self.logit_bias = None if init_logit_bias is None else nn.Parameter(torch.tensor(init_logit_bias))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        init_transformer_(self.transformer)

    # --- image tower -------------------------------------------------------------------------------
    def encode_image(self, images: Tensor) -> Tensor:
        """Un-normalised image embeddings ``[B, embed_dim]``: the final segments' mean, projected."""
        return self.image_projector(self.visual(images))

    def encode_groups(self, images: Tensor) -> Groups:
        """The final groups in the joint space and the assignments that made them, in one pass of the tower.

        ``embeddings [B, G, embed_dim]`` (un-normalised; G = the last ``num_output_groups``, 8 for GroupViT-S) are
        the final segment tokens each through the image projection, as the official zero-shot segmentation reads
        them; ``image_embeddings [B, embed_dim]`` is :meth:`encode_image`'s (the projected mean of those tokens,
        not the mean of ``embeddings``); ``assignments[s]`` ``[B, G_s, N_prev]`` is stage ``s``'s soft assignment
        of its input tokens to its groups (softmax over ``G_s``; the official ``attn_dict["soft"]``, transformers'
        ``output_attentions``), ``hard_assignments[s]`` its one-hot (exactly 0 / 1); ``grid`` the patch grid of
        the first stage's ``N_prev = h * w`` tokens. ``maps(size)`` composes the soft ones into pixel-to-group maps.
        """
        features = self.visual.forward_features(images)
        embeddings = self.image_projector(features.tokens)
        image_embeddings = self.image_projector(features.tokens.mean(dim=1))
        return Groups(embeddings, image_embeddings, features.assignments, features.hard_assignments, features.grid)

    # --- text tower --------------------------------------------------------------------------------
    def encode_text(self, token_ids: Tensor) -> Tensor:
        """Un-normalised text embeddings ``[B, embed_dim]`` from token ids ``[B, L]`` (``L <= context_length``),
        pooled at the EOT token (the highest id); ids ``[B, K, L]`` give ``[B, K, embed_dim]``."""
        if token_ids.ndim == 3:
            return self.encode_text(token_ids.flatten(0, 1)).unflatten(0, token_ids.shape[:2])
        CLIP.check_token_ids(self, token_ids)  # (it reads self.token_embedding only)
        length = token_ids.shape[1]
        if length > self.context_length:
            raise ValueError(
                f"text of {length} tokens is longer than the model's context length {self.context_length}; "
                f"tokenize with context_length={self.context_length}"
            )
        x = self.token_embedding(token_ids) + self.positional_embedding[:length]
        x = self.transformer(x)
        # Causal attention: nothing after EOT reaches it, so padding never matters.
        pooled = x[torch.arange(x.shape[0], device=x.device), token_ids.argmax(dim=-1)]
        return self.text_projector(self.ln_final(pooled))

    def forward(self, images: Tensor, token_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """L2-normalised image and text embeddings and ``exp(logit_scale)``, the inputs of the contrastive loss."""
        image_features = F.normalize(self.encode_image(images), dim=-1)
        text_features = F.normalize(self.encode_text(token_ids), dim=-1)
        return image_features, text_features, self.logit_scale.exp()

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute both towers' transformer blocks in the backward pass: less memory, more compute."""
        self.visual.set_grad_checkpointing(enabled)
        self.transformer.grad_checkpointing = enabled


def build_groupvit(
    name: str, init_logit_scale: float = math.log(1 / 0.07), init_logit_bias: float | None = None
) -> GroupViT:
    """A randomly initialised GroupViT of a named architecture (:data:`GROUPVIT_ARCHITECTURES`)."""
    if name not in GROUPVIT_ARCHITECTURES:
        raise ValueError(f"unknown GroupViT architecture {name!r}; known: {', '.join(sorted(GROUPVIT_ARCHITECTURES))}")
    model = GroupViT(GROUPVIT_ARCHITECTURES[name], init_logit_scale, init_logit_bias)
    model.architecture = name
    return model


def architecture_of(config: GroupViTConfig) -> str | None:
    """The registered architecture with exactly this config, if any."""
    return next((name for name, known in GROUPVIT_ARCHITECTURES.items() if known == config), None)


register_family(ModelFamily("groupvit", lambda: sorted(GROUPVIT_ARCHITECTURES), build_groupvit))


# --- checkpoint layouts ----------------------------------------------------------------------------
# Rules (ours, theirs): whole names, or prefixes where they end in "."; "{}" stands for an index. The first rule
# that matches a name renames it; the rest of the name is kept.
_BLOCK_OFFICIAL = [  # the official AttnBlock against our block
    ("ln_1.", "norm1."), ("ln_2.", "norm2."), ("attn.in_proj_weight", "attn.qkv.weight"),
    ("attn.in_proj_bias", "attn.qkv.bias"), ("attn.out_proj.", "attn.proj."), ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
]  # fmt: skip
# transformers splits q, k and v: their "qkv_proj" here is a stand-in that from_hf / to_hf pack and unpack.
_BLOCK_HF = [
    ("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("attn.in_proj_weight", "self_attn.qkv_proj.weight"),
    ("attn.in_proj_bias", "self_attn.qkv_proj.bias"), ("attn.out_proj.", "self_attn.out_proj."),
    ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2."),
]  # fmt: skip


def _blocks(ours: str, theirs: str, rules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(ours + a, theirs + b) for a, b in rules]


OFFICIAL_NAMES = [
    ("visual.patch_embed.", "img_encoder.patch_embed."),
    ("visual.pos_embed", "img_encoder.pos_embed"),
    *_blocks("visual.stages.{}.blocks.{}.", "img_encoder.layers.{}.blocks.{}.", _BLOCK_OFFICIAL),
    (
        "visual.stages.{}.grouping.pre_assign_attn.attn.out_proj.",
        "img_encoder.layers.{}.downsample.pre_assign_attn.attn.proj.",
    ),
    ("visual.stages.{}.grouping.", "img_encoder.layers.{}.downsample."),
    ("visual.stages.{}.", "img_encoder.layers.{}."),  # group_token, group_projector
    ("visual.norm.", "img_encoder.norm."),
    # The official projections are 1x1 Conv1d's: their weights carry a trailing axis of 1 (_CONV_WEIGHTS).
    ("image_projector.0.", "img_projector.linear_hidden.0."),
    ("image_projector.1.", "img_projector.linear_hidden.1."),
    ("image_projector.3.", "img_projector.linear_out."),
    ("text_projector.0.", "text_projector.linear_hidden.0."),
    ("text_projector.1.", "text_projector.linear_hidden.1."),
    ("text_projector.3.", "text_projector.linear_out."),
    # The official text tower is OpenAI's, as ours: the same names under text_encoder.
    ("token_embedding.", "text_encoder.token_embedding."),
    ("positional_embedding", "text_encoder.positional_embedding"),
    ("transformer.", "text_encoder.transformer."),
    ("ln_final.", "text_encoder.ln_final."),
    ("logit_scale", "logit_scale"),
    ("multi_label_logit_scale", "multi_label_logit_scale"),
]
_CONV_WEIGHTS = {f"{p}_projector.{i}.weight" for p in ("image", "text") for i in (0, 3)}

HF_NAMES = [
    ("visual.patch_embed.proj.", "vision_model.embeddings.patch_embeddings.projection."),
    ("visual.patch_embed.norm.", "vision_model.embeddings.layernorm."),
    ("visual.pos_embed", "vision_model.embeddings.position_embeddings"),
    *_blocks("visual.stages.{}.blocks.{}.", "vision_model.encoder.stages.{}.layers.{}.", _BLOCK_HF),
    ("visual.stages.{}.grouping.", "vision_model.encoder.stages.{}.downsample."),  # the same names inside
    ("visual.stages.{}.", "vision_model.encoder.stages.{}."),
    ("visual.norm.", "vision_model.layernorm."),
    ("image_projector.", "visual_projection."),  # nn.Sequential in both: 0 linear, 1 BatchNorm, 3 linear
    ("text_projector.", "text_projection."),
    ("token_embedding.", "text_model.embeddings.token_embedding."),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    *_blocks("transformer.resblocks.{}.", "text_model.encoder.layers.{}.", _BLOCK_HF),
    ("ln_final.", "text_model.final_layer_norm."),
    ("logit_scale", "logit_scale"),
    # transformers' GroupViTModel has neither (its port dropped the multi-label scale): written beside its
    # weights all the same, where from_pretrained ignores them and load_clip reads them back.
    ("multi_label_logit_scale", "multi_label_logit_scale"),
    ("logit_bias", "logit_bias"),
]


def _compile(rules: list[tuple[str, str]], reverse: bool) -> list[tuple[re.Pattern, str]]:
    compiled = []
    for ours, theirs in rules:
        source, target = (theirs, ours) if reverse else (ours, theirs)
        pattern = re.escape(source).replace(r"\{\}", r"(\d+)")
        compiled.append((re.compile(pattern if source.endswith(".") else pattern + "$"), target))
    return compiled


def _translate(name: str, rules: list[tuple[re.Pattern, str]]) -> str:
    """``name`` under the first matching rule; names no rule knows pass unchanged (a strict load lists them)."""
    for pattern, target in rules:
        match = pattern.match(name)
        if match:
            return target.format(*match.groups()) + name[match.end() :]
    return name


_TO_OFFICIAL, _FROM_OFFICIAL = _compile(OFFICIAL_NAMES, False), _compile(OFFICIAL_NAMES, True)
_TO_HF, _FROM_HF = _compile(HF_NAMES, False), _compile(HF_NAMES, True)


def is_official_state(state: dict) -> bool:
    """Whether ``state`` is the official GroupViT's ``MultiLabelContrastive`` state dict (``"model"`` of its files)."""
    names = [key.removeprefix("module.") for key in state]
    return any(n.startswith("img_encoder.layers.") for n in names) and any(n.startswith("text_encoder.") for n in names)


def is_groupvit_state(state: dict) -> bool:
    """Whether ``state`` is a GroupViT's under our names."""
    return any(k.startswith("visual.stages.") for k in state) and any(k.startswith("text_projector.") for k in state)


def _with_multi_label_scale(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # Files without the multi-label loss's own scale (transformers' port; official runs that shared the scale)
    # start it at the image-text one, the scale the official code shares when it has no own.
    if "multi_label_logit_scale" not in state and "logit_scale" in state:
        state["multi_label_logit_scale"] = state["logit_scale"].clone()
    return state


def from_official(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The official ``MultiLabelContrastive`` state dict (DDP's ``module.`` prefixes dropped) under our names."""
    ours = {}
    for name, tensor in state.items():
        key = _translate(name.removeprefix("module."), _FROM_OFFICIAL)
        ours[key] = tensor.squeeze(-1) if key in _CONV_WEIGHTS and tensor.ndim == 3 else tensor
    return _with_multi_label_scale(ours)


def to_official(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict under the official names (what its ``load_checkpoint`` takes as ``"model"``)."""
    return {
        _translate(name, _TO_OFFICIAL): tensor.unsqueeze(-1) if name in _CONV_WEIGHTS else tensor
        for name, tensor in state.items()
        if name != "logit_bias"  # the official model has none
    }


def from_hf(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers' ``GroupViTModel`` state dict under our names: q, k and v packed as ``in_proj``."""
    ours = {}
    for name, tensor in hf_state.items():
        if name.endswith("position_ids"):  # an arange buffer that older files store
            continue
        if re.search(r"self_attn\.[kv]_proj\.", name):
            continue  # packed with q
        if ".self_attn.q_proj." in name:
            parts = [hf_state[name.replace(".q_proj.", f".{p}_proj.")] for p in "qkv"]
            name, tensor = name.replace(".q_proj.", ".qkv_proj."), torch.cat(parts)
        ours[_translate(name, _FROM_HF)] = tensor
    return _with_multi_label_scale(ours)


def to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict under transformers' ``GroupViTModel`` names."""
    hf_state = {}
    for name, tensor in state.items():
        hf_name = _translate(name, _TO_HF)
        if ".qkv_proj." in hf_name:
            for p, part in zip("qkv", tensor.chunk(3)):
                hf_state[hf_name.replace(".qkv_proj.", f".{p}_proj.")] = part
        else:
            hf_state[hf_name] = tensor
    return hf_state


# --- configs of other layouts ----------------------------------------------------------------------
def _ratio(hidden: int, width: int) -> float:
    """A ratio that ``int(width * ratio)`` turns back into ``hidden``."""
    ratio = hidden / width
    while int(width * ratio) < hidden:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def infer_config(state: dict[str, Tensor]) -> GroupViTConfig:
    """The geometry of a GroupViT state dict under our names, from the tensor shapes: that of the registered
    architecture with these shapes if there is one, else with heads (which shapes do not show) taken 64 wide (the
    official code's: 6 heads of 384, text heads = width // 64) and the official defaults for the rest."""

    def count(prefix: str) -> int:
        return len({key[len(prefix) :].split(".")[0] for key in state if key.startswith(prefix)})

    try:
        patch = state["visual.patch_embed.proj.weight"]
        width, patch_size = patch.shape[0], patch.shape[-1]
        stages = count("visual.stages.")
        depths = tuple(count(f"visual.stages.{i}.blocks.") for i in range(stages))
        groups = tuple(
            state[f"visual.stages.{i}.group_token"].shape[1] if f"visual.stages.{i}.group_token" in state else 0
            for i in range(stages)
        )
        first = "visual.stages.0."
        vision = GroupViTVisionConfig(
            image_size=patch_size * math.isqrt(state["visual.pos_embed"].shape[1]),
            patch_size=patch_size,
            width=width,
            heads=max(1, width // 64),
            depths=depths,
            num_group_tokens=groups,
            num_output_groups=tuple(
                state[f"visual.stages.{i}.grouping.mlp_inter.fc2.weight"].shape[0] for i in range(stages - 1)
            ),
            mlp_ratio=_ratio(state[first + "blocks.0.mlp.c_fc.weight"].shape[0], width),
            assign_mlp_ratio=(
                _ratio(state[first + "grouping.mlp_inter.fc1.weight"].shape[0], width),
                _ratio(state[first + "grouping.mlp_channels.fc1.weight"].shape[0], width),
            ),
        )
        text_width = state["ln_final.weight"].shape[0]
        text = GroupViTTextConfig(
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            width=text_width,
            heads=max(1, text_width // 64),
            layers=count("transformer.resblocks."),
            mlp_ratio=_ratio(state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0], text_width),
        )
        projection = state["image_projector.0.weight"].shape[0], state["image_projector.3.weight"].shape[0]
    except KeyError as missing:
        raise ValueError(f"not a GroupViT state dict of the official or lit-clip layout: it has no {missing}") from None
    config = GroupViTConfig(embed_dim=projection[1], projection_hidden=projection[0], vision=vision, text=text)
    return _registered_or(config, heads_recorded=False)


def _registered_or(config: GroupViTConfig, heads_recorded: bool) -> GroupViTConfig:
    """The registered architecture that ``config``, as a file records it, describes, else ``config``: files do
    not record the training-only settings (drop path, Gumbel temperature) nor the pixel statistics, state dicts
    not the heads either (GroupViT-Micro's are 32 wide) nor the assignment's eps."""

    def recorded(c: GroupViTConfig) -> GroupViTConfig:
        vision = dataclasses.replace(
            c.vision, drop_path_rate=0.0, gumbel_tau=1.0, hard_assignment=True, image_normalization="imagenet"
        )
        text = c.text
        if not heads_recorded:
            vision, text = dataclasses.replace(vision, heads=1, assign_eps=1.0), dataclasses.replace(text, heads=1)
        return dataclasses.replace(c, vision=vision, text=text)

    return next((known for known in GROUPVIT_ARCHITECTURES.values() if recorded(known) == recorded(config)), config)


# transformers' defaults, for fields a config.json leaves out.
_HF_TEXT = {
    "hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 12, "num_attention_heads": 4,
    "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
}  # fmt: skip
_HF_VISION = {
    "hidden_size": 384, "intermediate_size": 1536, "depths": [6, 3, 3], "num_group_tokens": [64, 8, 0],
    "num_output_groups": [64, 8, 8], "num_attention_heads": 6, "image_size": 224, "patch_size": 16,
    "hidden_act": "gelu", "layer_norm_eps": 1e-5, "assign_eps": 1.0, "assign_mlp_ratio": [0.5, 4],
}  # fmt: skip


def config_from_hf(hf_config: dict, where: str = "config.json") -> GroupViTConfig:
    """Our config of a transformers ``GroupViTConfig`` (config.json's contents); that of the registered
    architecture it describes, if any, for the training-only settings transformers does not record."""
    # Older files hold text_config_dict / vision_config_dict, which transformers lets win over the plain ones.
    text = {**_HF_TEXT, **(hf_config.get("text_config") or {}), **(hf_config.get("text_config_dict") or {})}
    vision = {**_HF_VISION, **(hf_config.get("vision_config") or {}), **(hf_config.get("vision_config_dict") or {})}
    if vision["hidden_act"] != "gelu" or text["hidden_act"] not in ("gelu", "quick_gelu"):
        raise ValueError(
            f"{where}: activations {vision['hidden_act']!r} (image) and {text['hidden_act']!r} (text) are not "
            "supported; lit-clip's GroupViT has exact gelu in the image tower and quick_gelu or gelu in the text tower"
        )
    if {vision["layer_norm_eps"], text["layer_norm_eps"]} != {1e-5}:
        raise ValueError(f"{where}: lit-clip's layer norms use eps 1e-5, this config asks for another")
    depths, groups, outputs = (tuple(vision[k]) for k in ("depths", "num_group_tokens", "num_output_groups"))
    # transformers mixes a stage's previous group tokens as num_output_groups[i - 1] of them; they are
    # num_group_tokens[i - 1], so a working config has both equal (as the official code reads it).
    if any(groups[i] and groups[i - 1] != outputs[i - 1] for i in range(1, len(groups))):
        raise ValueError(f"{where}: num_group_tokens {list(groups)} and num_output_groups {list(outputs)} differ "
                         "before a stage with group tokens, which transformers' GroupViT cannot run")  # fmt: skip
    width, text_width = vision["hidden_size"], text["hidden_size"]
    config = GroupViTConfig(
        embed_dim=hf_config.get("projection_dim", 256),
        projection_hidden=hf_config.get("projection_intermediate_dim", 4096),
        vision=GroupViTVisionConfig(
            image_size=vision["image_size"], patch_size=vision["patch_size"], width=width,
            heads=vision["num_attention_heads"], depths=depths, num_group_tokens=groups,
            num_output_groups=outputs[: len(depths) - 1], mlp_ratio=_ratio(vision["intermediate_size"], width),
            assign_mlp_ratio=tuple(float(r) for r in vision["assign_mlp_ratio"]), assign_eps=vision["assign_eps"],
        ),
        text=GroupViTTextConfig(
            context_length=text["max_position_embeddings"], vocab_size=text["vocab_size"], width=text_width,
            heads=text["num_attention_heads"], layers=text["num_hidden_layers"],
            mlp_ratio=_ratio(text["intermediate_size"], text_width),
        ),
        quick_gelu=text["hidden_act"] == "quick_gelu",
    )  # fmt: skip
    return _registered_or(config, heads_recorded=True)


def hf_config(config: GroupViTConfig) -> dict:
    """config.json of transformers' ``GroupViTModel`` for ``config``."""
    vision, text = config.vision, config.text
    if not vision.hard_assignment:
        raise ValueError("transformers' GroupViT assigns hard only; this model's hard_assignment is False")
    groups, outputs = vision.num_group_tokens, vision.num_output_groups
    if any(groups[i] and groups[i - 1] != outputs[i - 1] for i in range(1, len(groups))):
        raise ValueError(f"transformers' GroupViT needs num_output_groups {list(outputs)} equal to num_group_tokens "
                         f"{list(groups)} before each stage with group tokens")  # fmt: skip
    return {
        "architectures": ["GroupViTModel"],
        "model_type": "groupvit",
        "projection_dim": config.embed_dim,
        "projection_intermediate_dim": config.projection_hidden,
        "logit_scale_init_value": math.log(1 / 0.07),
        "text_config": hf_text_config(text, config.quick_gelu),
        "vision_config": {
            "hidden_size": vision.width,
            "intermediate_size": int(vision.width * vision.mlp_ratio),
            "num_hidden_layers": sum(vision.depths),
            "depths": list(vision.depths),
            "num_group_tokens": list(groups),
            # one per stage in transformers' config; the last stage's is never used
            "num_output_groups": [*outputs, outputs[-1] if outputs else 0],
            "num_attention_heads": vision.heads,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
            "assign_eps": vision.assign_eps,
            "assign_mlp_ratio": list(vision.assign_mlp_ratio),
        },
    }


__all__ = [
    "GROUPVIT_ARCHITECTURES",
    "GroupViT",
    "GroupViTConfig",
    "GroupViTImageTower",
    "GroupViTTextConfig",
    "GroupViTVisionConfig",
    "GroupingBlock",
    "GroupingStage",
    "Groups",
    "build_groupvit",
    "group_maps",
]
