"""The transformer blocks shared by both CLIP towers, and the ViT image tower.

Parameter names follow OpenAI's CLIP (and open_clip, which kept them), so their
state dicts load without renaming: ``attn.in_proj_weight``, ``mlp.c_fc``,
``ln_1`` ... Attention runs through ``F.scaled_dot_product_attention``, which
picks a fused kernel on GPUs; on CPUs plain matmuls are faster (see :func:`attention`).

Prompt injection (MaPLe-style deep prompts) is an argument of
:meth:`Transformer.forward`: before block ``i > 0`` the tokens at
``[prompt_offset, prompt_offset + n)`` are replaced by ``deep_prompts[i]``.
The tower that owns the sequence decides where its prompts live (text: right
after SOT; image: after the class and patch tokens).

Dense and multi-scale features (for LSeg, DPT-style necks, ViLD, GLIP, MaskCLIP)
share the block code but run as their own methods, so the pooled paths do no
extra work: :meth:`VisionTransformer.forward_intermediates` and ``feature_info``
speak timm's vocabulary, :meth:`VisionTransformer.forward_dense` is MaskCLIP's
value path.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the activation OpenAI trained its weights with."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def activation(quick_gelu: bool) -> nn.Module:
    return QuickGELU() if quick_gelu else nn.GELU()


class Attention(nn.Module):
    """Multi-head self-attention over ``[batch, tokens, width]``, with nn.MultiheadAttention's parameter names."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        batch, tokens, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        x = attention(q, k, v, causal)
        return self.out_proj(x.transpose(1, 2).reshape(batch, tokens, width))

    def values(self, x: Tensor) -> Tensor:
        """``out_proj(v_proj(x))``: the attention's output if every token attended only to itself."""
        width = x.shape[-1]
        return self.out_proj(F.linear(x, self.in_proj_weight[2 * width :], self.in_proj_bias[2 * width :]))


def attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False) -> Tensor:
    """``softmax(q k^T / sqrt(d)) v`` over ``[batch, heads, tokens, head_width]``, causal or not.

    GPUs get ``F.scaled_dot_product_attention``'s fused kernels. On CPUs, for CLIP's short
    sequences (50-77 tokens), its kernels were 1.3x (fp32) to 4x (bf16) slower than forming
    the scores with plain matmuls, in the backward pass above all (measured with torch 2.14
    on 2 cores), so there the scores are explicit and the softmax runs in fp32.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if causal:
        tokens = q.shape[-2]
        future = torch.ones(tokens, tokens, dtype=torch.bool, device=q.device).triu_(1)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.float().softmax(dim=-1).to(v.dtype) @ v


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, quick_gelu: bool = False):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(width, hidden), gelu=activation(quick_gelu), c_proj=nn.Linear(hidden, width))
        )

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))

    def forward_values(self, x: Tensor) -> Tensor:
        """The block with its query-key attention dropped (MaskCLIP): ``x + out_proj(v_proj(ln_1(x)))``, then the MLP.

        Each token goes through on its own, as if it attended only to itself; the residual and the MLP stay.
        """
        x = x + self.attn.values(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(
        self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0, quick_gelu: bool = False, causal: bool = False
    ):
        super().__init__()
        self.width, self.layers, self.causal = width, layers, causal
        self.grad_checkpointing = False
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers)
        )

    def forward(
        self, x: Tensor, deep_prompts: Sequence[Tensor | None] | None = None, prompt_offset: int = 0
    ) -> Tensor:
        """``deep_prompts[i]`` (``[n, width]`` or ``[batch, n, width]``) replaces tokens before block ``i >= 1``.

        Entry 0 is ignored here: the first layer's prompts are part of the input
        sequence, placed by the tower that embeds the tokens.
        """
        if deep_prompts is not None and len(deep_prompts) > self.layers:
            raise ValueError(f"{len(deep_prompts)} layers of prompts given for a transformer of {self.layers} layers")
        for i, block in enumerate(self.resblocks):
            if deep_prompts is not None and 0 < i < len(deep_prompts) and deep_prompts[i] is not None:
                x = replace_tokens(x, deep_prompts[i], prompt_offset)
            x = self.run_block(block, x)
        return x

    def run_block(self, block: ResidualAttentionBlock, x: Tensor) -> Tensor:
        """One of the blocks on ``x``, recomputed in the backward pass under gradient checkpointing."""
        if self.grad_checkpointing and torch.is_grad_enabled():  # (a frozen tower in eval mode too)
            return checkpoint(block, x, self.causal, use_reentrant=False)
        return block(x, causal=self.causal)


def take_indices(count: int, indices: int | Sequence[int] | None) -> list[int]:
    """timm's selection of intermediate features out of ``count``, ascending: all (``None``), the last ``n`` (an int),
    or the listed ones (negative ones count from the end)."""
    if indices is None:
        return list(range(count))
    if isinstance(indices, int):
        if not 0 < indices <= count:
            raise ValueError(f"the last {indices} features were asked for, there are {count}")
        return list(range(count - indices, count))
    if not indices or any(not -count <= i < count for i in indices):
        raise ValueError(f"feature indices must be a non-empty list in [-{count}, {count}), got {list(indices)}")
    return sorted({i % count for i in indices})


def check_output_fmt(output_fmt: str) -> None:
    if output_fmt not in ("NCHW", "NLC"):
        raise ValueError(f"output_fmt must be 'NCHW' (feature maps) or 'NLC' (token sequences), got {output_fmt!r}")


def check_images(images: Tensor, weight: Tensor) -> Tensor:
    """``images`` as an image tower takes them: a float ``[batch, 3, H, W]`` batch in ``weight``'s dtype."""
    if images.ndim != 4 or images.shape[1] != 3:
        hint = ""
        if images.ndim == 3 and images.shape[0] == 3:
            hint = "; add a batch dimension with image.unsqueeze(0)"
        elif images.ndim == 4 and images.shape[-1] == 3:
            hint = "; channels-last images need images.permute(0, 3, 1, 2)"
        raise ValueError(f"expected a batch [B, 3, H, W] of RGB images, got shape {tuple(images.shape)}{hint}")
    if not images.is_floating_point():
        raise TypeError(
            f"images must be float tensors normalised with CLIP's mean and std, got {images.dtype}; "
            "lit_clip.transforms has the preprocessing (clip_eval_transform, CLIP_MEAN, CLIP_STD)"
        )
    # fp16 images into an fp32 tower are converted, as OpenAI's CLIP does. Under autocast the
    # convolution casts both to the autocast dtype anyway: converting here would only cost a copy.
    if images.dtype != weight.dtype:
        device = images.device.type  # (meta tensors have no autocast)
        if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
            images = images.to(weight.dtype)
    return images


def replace_tokens(x: Tensor, prompts: Tensor, offset: int) -> Tensor:
    """``x`` with tokens ``[offset, offset + n)`` replaced by ``prompts`` (shared or per sample)."""
    prompts = prompts.to(x.dtype).expand(x.shape[0], -1, -1)
    return torch.cat([x[:, :offset], prompts, x[:, offset + prompts.shape[1] :]], dim=1)


class VisionTransformer(nn.Module):
    """CLIP's ViT: patches + class token + learned positions, ``ln_pre``, blocks, ``ln_post``, ``proj``."""

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        output_dim: int,
        mlp_ratio: float = 4.0,
        quick_gelu: bool = False,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.image_size, self.patch_size, self.output_dim = image_size, patch_size, output_dim
        self.pooled_width = width  # forward_pooled's
        self.grid_size = image_size // patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid_size**2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_ratio, quick_gelu)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        # FLIP (Li et al., 2023): the fraction of patch tokens the pooled embedding drops while training.
        self.patch_dropout = 0.0
        # timm's description of what forward_intermediates can return: feature i is block i's output.
        self.feature_info = [
            {"num_chs": width, "reduction": patch_size, "module": f"transformer.resblocks.{i}"} for i in range(layers)
        ]

    def embed(self, images: Tensor) -> Tensor:
        """``[batch, 1 + grid**2, width]``: class token and patch tokens with their positions."""
        images = check_images(images, self.conv1.weight)
        # Other sizes than image_size are fine (the positions are resized), less than one patch is not.
        if min(images.shape[-2:]) < self.patch_size:
            raise ValueError(
                f"a ViT tower with patch size {self.patch_size} needs images of at least {self.patch_size} x "
                f"{self.patch_size} pixels, got {images.shape[-2]} x {images.shape[-1]}"
            )
        x = self.conv1(images)
        grid = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.positions(grid).to(x.dtype)

    def positions(self, grid: tuple[int, int]) -> Tensor:
        """The learned positions, resized bicubically when the input is not ``image_size``."""
        if grid == (self.grid_size, self.grid_size):
            return self.positional_embedding
        cls_pos, patch_pos = self.positional_embedding[:1], self.positional_embedding[1:]
        patch_pos = patch_pos.reshape(1, self.grid_size, self.grid_size, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, patch_pos.permute(0, 2, 3, 1).flatten(0, 2)])

    def forward_tokens(self, images: Tensor, prompts: Sequence[Tensor | None] | None = None) -> Tensor:
        """All output tokens after ``ln_post``, ``[batch, 1 + grid**2, width]`` (prompt tokens dropped).

        ``prompts[0]`` (``[n, width]`` or ``[batch, n, width]``) is appended after the
        patch tokens before ``ln_pre``; ``prompts[i]`` replaces them before block ``i``.
        """
        return self.transform(self.embed(images), prompts)

    def forward(self, images: Tensor, prompts: Sequence[Tensor | None] | None = None) -> Tensor:
        """The pooled image embedding: the class token, projected, ``[batch, output_dim]``."""
        return self.forward_pooled(images, prompts) @ self.proj

    def forward_pooled(self, images: Tensor, prompts: Sequence[Tensor | None] | None = None) -> Tensor:
        """The class token after ``ln_post``, before the projection: ``[batch, width]``."""
        x = self.embed(images)
        if self.training and self.patch_dropout > 0:
            x = drop_patches(x, self.patch_dropout)
        return self.transform(x, prompts)[:, 0]

    def transform(self, x: Tensor, prompts: Sequence[Tensor | None] | None = None) -> Tensor:
        """Embedded tokens through ``ln_pre``, the blocks (with prompts, if any) and ``ln_post``."""
        image_tokens = x.shape[1]
        if prompts is not None and prompts[0] is not None:
            x = torch.cat([x, prompts[0].to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        x = self.transformer(self.ln_pre(x), prompts, prompt_offset=image_tokens)
        return self.ln_post(x[:, :image_tokens])

    def forward_intermediates(
        self,
        images: Tensor,
        indices: int | Sequence[int] | None = None,
        output_fmt: str = "NCHW",
        norm: bool = False,
        intermediates_only: bool = False,
        return_prefix_tokens: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """timm's ``forward_intermediates``: the pooled embedding ``[batch, output_dim]`` and chosen blocks' outputs.

        ``indices`` picks blocks as timm does (see ``feature_info``): all if None, the last n if an int n, else the
        listed ones (negative from the end); they come back in block order. Each is the block's patch tokens, class
        token dropped, as a map ``[batch, width, H / patch, W / patch]`` ("NCHW") or a sequence ``[batch, h * w,
        width]`` ("NLC"), after ``ln_post`` if ``norm``; with ``return_prefix_tokens`` each is a pair of that and the
        block's class token ``[batch, 1, width]`` (timm's format). With ``intermediates_only`` the list alone comes
        back and the blocks after the last chosen one are not run. No patch dropout: a feature map needs every patch.
        """
        check_output_fmt(output_fmt)
        take = take_indices(self.transformer.layers, indices)
        grid = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        blocks = self.transformer.resblocks
        x = self.ln_pre(self.embed(images))
        intermediates = []
        for i, block in enumerate(blocks[: take[-1] + 1] if intermediates_only else blocks):
            x = self.transformer.run_block(block, x)
            if i in take:
                tokens = self.ln_post(x) if norm else x
                patches = tokens[:, 1:].transpose(1, 2).unflatten(2, grid) if output_fmt == "NCHW" else tokens[:, 1:]
                intermediates.append((patches, tokens[:, :1]) if return_prefix_tokens else patches)
        if intermediates_only:
            return intermediates
        return self.ln_post(x[:, 0]) @ self.proj, intermediates

    def forward_dense(self, images: Tensor) -> Tensor:
        """Per-patch embeddings in the joint space, ``[batch, output_dim, H / patch, W / patch]`` (MaskCLIP).

        MaskCLIP (Zhou et al., 2022) reads a dense map out of CLIP without training: the last block's query-key
        attention is what pools the patches into the class token, so the patch tokens skip it and take the value
        path alone. As in the official code (``chongzhou96/MaskCLIP``, ``mmseg/models/backbones/vit.py``,
        ``return_qkv``), the rest of the last block stays: ``v = x + out_proj(v_proj(ln_1(x)))``, then
        ``v + mlp(ln_2(v))``, then ``ln_post`` and ``proj`` (the 1x1 convolution of ``maskclip_head.py``).
        """
        x = self.ln_pre(self.embed(images))
        *blocks, last = self.transformer.resblocks
        for block in blocks:
            x = self.transformer.run_block(block, x)
        patches = self.ln_post(last.forward_values(x[:, 1:])) @ self.proj
        grid = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        return patches.transpose(1, 2).unflatten(2, grid)


def drop_patches(tokens: Tensor, fraction: float) -> Tensor:
    """The class token and a random ``1 - fraction`` of each image's patch tokens, positions already added."""
    patches = tokens[:, 1:]
    keep = max(1, round(patches.shape[1] * (1 - fraction)))
    kept = torch.rand(patches.shape[:2], device=tokens.device).topk(keep, dim=1).indices
    patches = patches.gather(1, kept[..., None].expand(-1, -1, patches.shape[2]))
    return torch.cat([tokens[:, :1], patches], dim=1)


def init_transformer_(transformer: Transformer) -> None:
    """OpenAI's initialisation of a residual stack (std shrinks with depth)."""
    proj_std = (transformer.width**-0.5) * ((2 * transformer.layers) ** -0.5)
    attn_std = transformer.width**-0.5
    fc_std = (2 * transformer.width) ** -0.5
    for block in transformer.resblocks:
        nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
        nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
        nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
        nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)


__all__ = [
    "Attention",
    "QuickGELU",
    "attention",
    "check_images",
    "check_output_fmt",
    "drop_patches",
    "ResidualAttentionBlock",
    "Transformer",
    "VisionTransformer",
    "init_transformer_",
    "replace_tokens",
    "take_indices",
]
