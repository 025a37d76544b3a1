"""GLIP's network in pure PyTorch (Li et al., "Grounded Language-Image Pre-training", CVPR 2022; the released code
in microsoft/GLIP, ``maskrcnn_benchmark/modeling/rpn/vldyhead.py`` and ``utils/fuse_helper.py``).

An image backbone with a RetinaNet FPN (P3-P7), BERT for the prompt, and the deep-fusion head: a tower of blocks,
each (1) bidirectional image<->text cross-attention over all pyramid levels at once (:class:`VLFuse`), (2) a BERT
layer on the text, (3) a DyHead block on the image (:class:`DyConv`: deformable convolutions across neighbouring
levels, scale-aware attention, dynamic ReLU). ``fusion_depth`` of the blocks fuse (the first ones); the rest are
DyHead blocks alone (0: GLIP-T(A)). The head predicts per location (one anchor) a box, a centerness and the
alignment logits of its features with every token: the region-word scores that replace class logits.

Module names follow the official ones (``dyhead_tower``, ``b_attn``, ``DyConv``, ...) so that the released
checkpoints load by a short key map (:func:`official_key`).
"""
from __future__ import annotations

import math
import re

import timm
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock
from torch import Tensor, nn
from torchvision.ops import deform_conv2d
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7
from transformers.models.bert.modeling_bert import BertConfig, BertLayer

# The official clamps (fp16 range) on attention and alignment logits.
CLAMP = 50000.0
PRIOR_PROBABILITY = 0.01  # the focal-loss prior: bias0 starts at -log((1 - p) / p)


# --- the image side: backbone and pyramid -------------------------------------------------------------------------
class ImagePyramid(nn.Module):
    """A timm backbone's stride-8, 16 and 32 features through a RetinaNet FPN: P3-P5, P6 from P5 and P7 from P6
    (strides 8 to 128), ``channels`` each (GLIP's "SWINT-FPN-RETINANET"). A Swin is made to compute as the released
    Swin does at any image size (:class:`ReleasedOrderSwinBlock`; every shifted block shifts)."""

    def __init__(self, backbone: str, channels: int, pretrained: bool = False):
        super().__init__()
        swin = backbone.startswith("swin")
        # always_partition: timm drops the shift of a block whose 224-px resolution fits one window (Swin-T's last
        # stage); the released Swin shifts every odd block.
        options = {"strict_img_size": False, "always_partition": True} if swin else {}
        probe = timm.create_model(backbone, pretrained=False, features_only=True, **options)
        strides = probe.feature_info.reduction()
        wanted = [strides.index(s) for s in (8, 16, 32)]
        self.body = timm.create_model(backbone, pretrained=pretrained, features_only=True, out_indices=wanted,
                                      **options)  # fmt: skip
        in_channels = self.body.feature_info.channels()
        # timm's Swin gives NHWC maps without the released backbone's layer norm on each output stage.
        self.norms = nn.ModuleList([nn.LayerNorm(c) for c in in_channels]) if swin else None
        for block in self.body.modules() if swin else ():
            if isinstance(block, SwinTransformerBlock):
                block.__class__ = ReleasedOrderSwinBlock
        self.fpn = FeaturePyramidNetwork(in_channels, channels, extra_blocks=LastLevelP6P7(channels, channels))

    def forward(self, images: Tensor) -> list[Tensor]:
        maps = self.body(images)
        if self.norms is not None:
            maps = [norm(m).permute(0, 3, 1, 2).contiguous() for norm, m in zip(self.norms, maps)]
        return list(self.fpn({str(i): m for i, m in enumerate(maps)}).values())


class ReleasedOrderSwinBlock(SwinTransformerBlock):
    """timm's Swin block with the released Swin's order around shifted windows: pad the map to a multiple of the
    window, then roll it (timm rolls, then pads, which wraps other rows into the windows wherever a side is not a
    multiple of 7: GLIP's 800 x 1333 images always are not). timm's own step on the padded map, cut back."""

    def _attn(self, x: Tensor) -> Tensor:
        height, width = x.shape[1:3]
        padded = F.pad(x, (0, 0, 0, -width % self.window_size[1], 0, -height % self.window_size[0]))
        return super()._attn(padded)[:, :height, :width]


# --- deep fusion --------------------------------------------------------------------------------------------------
class BiMultiHeadAttention(nn.Module):
    """Image<->text attention with shared logits: image positions attend over tokens (padding masked) and tokens
    over image positions, from one ``q·k`` matrix (the official ``BiMultiHeadAttention``)."""

    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, dropout: float = 0.1):
        super().__init__()
        self.num_heads, self.head_dim, self.dropout = num_heads, embed_dim // num_heads, dropout
        self.scale = self.head_dim**-0.5
        self.v_proj, self.l_proj = nn.Linear(v_dim, embed_dim), nn.Linear(l_dim, embed_dim)
        self.values_v_proj, self.values_l_proj = nn.Linear(v_dim, embed_dim), nn.Linear(l_dim, embed_dim)
        self.out_v_proj, self.out_l_proj = nn.Linear(embed_dim, v_dim), nn.Linear(embed_dim, l_dim)
        for layer in (self.v_proj, self.l_proj, self.values_v_proj, self.values_l_proj, self.out_v_proj,
                      self.out_l_proj):  # fmt: skip
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # [B, heads, N, head_dim]

    def forward(self, v: Tensor, l: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        query, key = self._heads(self.v_proj(v) * self.scale), self._heads(self.l_proj(l))
        logits = (query @ key.transpose(-1, -2)).clamp(-CLAMP, CLAMP)  # [B, heads, image, text]
        # Tokens attend over every image position (padded pixels too, as the official code).
        to_image = logits.transpose(-1, -2)
        to_image = (to_image - to_image.amax(dim=-1, keepdim=True)).clamp(-CLAMP, CLAMP).softmax(dim=-1)
        # Image positions attend over the real tokens only.
        to_text = logits.masked_fill(~text_mask[:, None, None, :].bool(), -9e15).softmax(dim=-1)
        to_text = F.dropout(to_text, self.dropout, self.training)
        to_image = F.dropout(to_image, self.dropout, self.training)
        new_v = (to_text @ self._heads(self.values_l_proj(l))).transpose(1, 2).flatten(2)
        new_l = (to_image @ self._heads(self.values_v_proj(v))).transpose(1, 2).flatten(2)
        return self.out_v_proj(new_v), self.out_l_proj(new_l)


class BiAttentionBlock(nn.Module):
    """Layer-normalised image and text features plus their cross-attention scaled per channel (layer scale,
    ``gamma_v`` / ``gamma_l``, initialised at ``init_values``). As the official block, the residual is added to the
    normalised features: with the scales at 0 the block returns the features layer-normalised, untouched by the
    other modality."""

    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, init_values: float):
        super().__init__()
        self.layer_norm_v, self.layer_norm_l = nn.LayerNorm(v_dim), nn.LayerNorm(l_dim)
        self.attn = BiMultiHeadAttention(v_dim, l_dim, embed_dim, num_heads)
        self.gamma_v = nn.Parameter(torch.full((v_dim,), init_values))
        self.gamma_l = nn.Parameter(torch.full((l_dim,), init_values))

    def forward(self, v: Tensor, l: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        v, l = self.layer_norm_v(v), self.layer_norm_l(l)
        delta_v, delta_l = self.attn(v, l, text_mask)
        return v + self.gamma_v * delta_v, l + self.gamma_l * delta_l


class VLFuse(nn.Module):
    """Early fusion: every pyramid level's positions, flattened and concatenated into one sequence, exchange
    attention with the prompt's tokens."""

    def __init__(self, channels: int, text_width: int, embed_dim: int, num_heads: int, init_values: float):
        super().__init__()
        self.b_attn = BiAttentionBlock(channels, text_width, embed_dim, num_heads, init_values)

    def forward(self, levels: list[Tensor], text: Tensor, text_mask: Tensor) -> tuple[list[Tensor], Tensor]:
        sizes = [level.shape[-2:] for level in levels]
        flat = torch.cat([level.flatten(2).transpose(1, 2) for level in levels], dim=1)
        flat, text = self.b_attn(flat, text, text_mask)
        pieces = flat.transpose(1, 2).split([h * w for h, w in sizes], dim=2)
        return [piece.unflatten(2, tuple(size)) for piece, size in zip(pieces, sizes)], text


class TextLayer(BertLayer):
    """A BERT layer on the fused text (randomly initialised, as the official ``BertEncoderLayer``)."""

    def forward(self, text: Tensor, text_mask: Tensor) -> Tensor:  # type: ignore[override]
        additive = (1.0 - text_mask[:, None, None, :].to(text.dtype)) * torch.finfo(text.dtype).min
        output = super().forward(text, attention_mask=additive)
        return output[0] if isinstance(output, tuple) else output


# --- DyHead -------------------------------------------------------------------------------------------------------
def h_sigmoid(x: Tensor) -> Tensor:
    return F.relu6(x + 3) / 6


class DeformConv3x3(nn.Module):
    """A modulated deformable 3x3 convolution (torchvision's ``deform_conv2d``; a plain one with ``deformable``
    False) followed by group norm (16 groups)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, deformable: bool, groups: int = 16):
        super().__init__()
        self.stride, self.deformable = stride, deformable
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1)
        self.bn = nn.GroupNorm(groups, out_channels)

    def forward(self, x: Tensor, offset: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        if not self.deformable:
            return self.bn(self.conv(x))
        out_h, out_w = (x.shape[-2] - 1) // self.stride + 1, (x.shape[-1] - 1) // self.stride + 1
        if offset.shape[-2:] != (out_h, out_w):
            # The official CUDA kernel reads a larger level's offsets as if they were this output's: the first
            # 18 x h x w values of each sample. Reproduced so that released weights see the same sampling.
            batch = offset.shape[0]
            offset = offset.reshape(batch, -1)[:, : 18 * out_h * out_w].reshape(batch, 18, out_h, out_w)
            mask = mask.reshape(batch, -1)[:, : 9 * out_h * out_w].reshape(batch, 9, out_h, out_w)
        # torchvision's kernel reads outside the image at a NaN offset (a segfault on the CPU, not an error): sample
        # there unmoved instead. The mask comes from the same convolution, so a diverged model's output stays NaN.
        offset = offset.float().nan_to_num(nan=0.0)
        out = deform_conv2d(x.float(), offset, self.conv.weight.float(), self.conv.bias.float(),
                            stride=self.stride, padding=1, mask=mask.float())  # fmt: skip
        return self.bn(out.to(x.dtype))


class DyReLU(nn.Module):
    """Task-aware dynamic ReLU: ``max(x a1 + b1, x a2 + b2)`` with the four coefficients per channel predicted
    from the pooled features (reduction 4, initial slopes 1 and 0)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.channels = channels
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, 4 * channels))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        coefficients = h_sigmoid(self.fc(x.mean(dim=(2, 3))))[:, :, None, None]
        a1, b1, a2, b2 = coefficients.split(self.channels, dim=1)
        return torch.maximum(x * ((a1 - 0.5) * 2.0 + 1.0) + (b1 - 0.5), x * ((a2 - 0.5) * 2.0) + (b2 - 0.5))


class DyConv(nn.Module):
    """One DyHead block over the pyramid: each level mixes itself, the finer level (stride 2) and the coarser
    level (upsampled), all by deformable convolutions sharing the level's offsets; the three are weighted by a
    scale-aware attention and averaged, then a dynamic ReLU."""

    def __init__(self, channels: int, deformable: bool = True, dyrelu: bool = True, dyfuse: bool = True):
        super().__init__()
        # [coarser level, same level, finer level (stride 2)], as the official order.
        self.DyConv = nn.ModuleList([DeformConv3x3(channels, channels, s, deformable) for s in (1, 1, 2)])
        self.AttnConv = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, 1, 1), nn.ReLU(inplace=True)) \
            if dyfuse else None  # fmt: skip
        self.relu = DyReLU(channels) if dyrelu else nn.ReLU()
        self.offset = nn.Conv2d(channels, 27, 3, 1, 1) if deformable else None
        for conv in [*self.DyConv, *(self.AttnConv or [])]:
            conv = getattr(conv, "conv", conv)
            if isinstance(conv, nn.Conv2d) and self.offset is None:
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)

    def forward(self, levels: list[Tensor]) -> list[Tensor]:
        out = []
        for i, level in enumerate(levels):
            args = {}
            if self.offset is not None:
                offset_mask = self.offset(level)
                args = {"offset": offset_mask[:, :18], "mask": offset_mask[:, 18:].sigmoid()}
            mixed = [self.DyConv[1](level, **args)]
            if i > 0:
                mixed.append(self.DyConv[2](levels[i - 1], **args))
            if i < len(levels) - 1:
                coarser = self.DyConv[0](levels[i + 1], **args)
                mixed.append(F.interpolate(coarser, size=level.shape[-2:], mode="bilinear", align_corners=True))
            stacked = torch.stack(mixed)
            if self.AttnConv is not None:
                stacked = stacked * h_sigmoid(torch.stack([self.AttnConv(m) for m in mixed]))
            out.append(self.relu(stacked.mean(dim=0)))
        return out


# --- the head -----------------------------------------------------------------------------------------------------
class GLIPHead(nn.Module):
    """The fusion tower and the predictions per location: box deltas (scaled per level), centerness, and the
    region-token alignment logits ``[B, locations, tokens]``."""

    def __init__(
        self,
        channels: int,
        text_config: BertConfig,
        blocks: int = 6,
        fusion_depth: int = 6,
        fusion_dim: int = 2048,
        fusion_heads: int = 8,
        layer_scale: float | None = None,
        deformable: bool = True,
        dyrelu: bool = True,
        levels: int = 5,
        log_scale: float = 0.0,
    ):
        super().__init__()
        if not 0 <= fusion_depth <= blocks:
            raise ValueError(f"fusion_depth must be in [0, blocks={blocks}], got {fusion_depth}")
        self.fusion_depth = fusion_depth
        layer_scale = 1.0 / blocks if layer_scale is None else layer_scale  # the official 1 / NUM_CONVS
        text_width = text_config.hidden_size
        tower: list[nn.Module] = []
        for i in range(blocks):
            if i < fusion_depth:
                tower += [VLFuse(channels, text_width, fusion_dim, fusion_heads, layer_scale), TextLayer(text_config)]
            tower.append(DyConv(channels, deformable, dyrelu))
        self.dyhead_tower = nn.ModuleList(tower)
        self.bbox_pred = nn.Conv2d(channels, 4, 1)
        self.centerness = nn.Conv2d(channels, 1, 1)
        for conv in (self.bbox_pred, self.centerness):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(1)) for _ in range(levels)])
        self.dot_product_projection_text = nn.Linear(text_width, channels)
        self.log_scale = nn.Parameter(torch.tensor([log_scale]))  # the logits' learnt temperature, exp(log_scale)
        self.bias_lang = nn.Parameter(torch.zeros(text_width))
        self.bias0 = nn.Parameter(torch.tensor([-math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)]))

    def fuse(self, levels: list[Tensor], text: Tensor, text_mask: Tensor) -> tuple[list[Tensor], Tensor]:
        """The tower: image and text features after every block."""
        for layer in self.dyhead_tower:
            if isinstance(layer, VLFuse):
                levels, text = layer(levels, text, text_mask)
            elif isinstance(layer, TextLayer):
                text = layer(text, text_mask)
            else:
                levels = layer(levels)
        return levels, text

    def forward(self, levels: list[Tensor], text: Tensor, text_mask: Tensor) -> dict[str, Tensor]:
        """``levels`` P3-P7 ``[B, C, H_l, W_l]``, ``text`` BERT's features ``[B, L, D]`` (zero at padding), its mask.
        Returns per location over all levels (level-major, row-major within): ``boxes`` deltas ``[B, N, 4]``,
        ``centerness`` ``[B, N]``, ``logits`` ``[B, N, L]`` and the features they align, ``regions`` ``[B, N, C]``
        and ``projected_tokens`` ``[B, L, C]``; ``text`` the fused token features ``[B, L, D]``."""
        levels, fused = self.fuse(levels, text, text_mask)
        # The fused text when any block fused (the official USE_FUSED_FEATURES_DOT_PRODUCT), BERT's otherwise.
        tokens = F.normalize(fused if self.fusion_depth else text, dim=-1)
        projected = self.dot_product_projection_text(tokens / 2.0)
        token_bias = tokens @ self.bias_lang + self.bias0  # [B, L]
        regions = torch.cat([level.flatten(2).transpose(1, 2) for level in levels], dim=1)  # the image projection
        # is the identity, as the released code's
        logits = regions @ projected.transpose(1, 2) / self.log_scale.exp() + token_bias[:, None, :]
        boxes = [(self.bbox_pred(level) * scale).flatten(2).transpose(1, 2)
                 for level, scale in zip(levels, self.scales)]  # fmt: skip
        return {"boxes": torch.cat(boxes, 1), "logits": logits.clamp(-CLAMP, CLAMP),
                "centerness": torch.cat([self.centerness(level).flatten(1) for level in levels], 1),
                "regions": regions, "projected_tokens": projected, "text": fused}  # fmt: skip


# --- anchors and boxes (the official legacy conventions: widths count the last pixel, "+1") -----------------------
STRIDES = (8, 16, 32, 64, 128)


def anchors(sizes: list[tuple[int, int]], strides=STRIDES, scale: float = 8.0, device=None) -> Tensor:
    """One square anchor per location of each level ``[N, 4]``, of side ``scale`` x the level's stride, centred
    at ``k * stride + (stride - 1) / 2`` (maskrcnn-benchmark's anchors, level-major, row-major)."""
    out = []
    for (h, w), stride in zip(sizes, strides):
        ys, xs = torch.meshgrid(torch.arange(h, device=device) * stride, torch.arange(w, device=device) * stride,
                                indexing="ij")  # fmt: skip
        half = (scale * stride - 1) / 2
        centre = (stride - 1) / 2
        shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 4).float()
        out.append(shifts + torch.tensor([centre - half, centre - half, centre + half, centre + half], device=device))
    return torch.cat(out)


BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def encode_boxes(boxes: Tensor, anchors: Tensor) -> Tensor:
    """The deltas (dx, dy, dw, dh) x (10, 10, 5, 5) from ``anchors`` to ``boxes`` (GLIP's box coder)."""
    wa, ha = anchors[:, 2] - anchors[:, 0] + 1, anchors[:, 3] - anchors[:, 1] + 1
    wb, hb = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    dx = (boxes[:, 0] + boxes[:, 2] - anchors[:, 0] - anchors[:, 2]) / 2 / wa
    dy = (boxes[:, 1] + boxes[:, 3] - anchors[:, 1] - anchors[:, 3]) / 2 / ha
    return torch.stack([dx, dy, torch.log(wb / wa), torch.log(hb / ha)], dim=1) * torch.tensor(BOX_WEIGHTS).to(boxes)


def decode_boxes(deltas: Tensor, anchors: Tensor) -> Tensor:
    """The boxes (x1, y1, x2, y2) of ``deltas`` from ``anchors`` (the inverse of :func:`encode_boxes`; width and
    height changes capped at log(1000 / 16))."""
    deltas = deltas.float() / torch.tensor(BOX_WEIGHTS, device=deltas.device)
    wa, ha = anchors[:, 2] - anchors[:, 0] + 1, anchors[:, 3] - anchors[:, 1] + 1
    cx = deltas[:, 0] * wa + (anchors[:, 0] + anchors[:, 2]) / 2
    cy = deltas[:, 1] * ha + (anchors[:, 1] + anchors[:, 3]) / 2
    w = torch.exp(deltas[:, 2].clamp(max=math.log(1000.0 / 16))) * wa
    h = torch.exp(deltas[:, 3].clamp(max=math.log(1000.0 / 16))) * ha
    return torch.stack([cx - 0.5 * (w - 1), cy - 0.5 * (h - 1), cx + 0.5 * (w - 1), cy + 0.5 * (h - 1)], dim=1)


# --- the released checkpoints -------------------------------------------------------------------------------------
def official_key(key: str) -> str | None:
    """Our name of a key of a released GLIP checkpoint (``module.backbone.body...``), or None for keys we do not
    use: the frozen classification layer ``cls_logits`` (its loss is x0), the anchor buffers and BERT's pooler."""
    key = key.removeprefix("module.")
    if re.match(r"rpn\.(anchor_generator|head\.cls_logits)|language_backbone\.body\.model\.pooler", key) or re.search(
        r"relative_position_index|attn_mask|position_ids", key
    ):
        return None
    key = key.replace("language_backbone.body.model.", "language.model.")
    key = re.sub(r"^rpn\.head\.scales\.(\d)\.scale$", r"head.scales.\1", key)
    key = key.replace("rpn.head.", "head.")
    key = re.sub(r"^backbone\.fpn\.fpn_inner(\d)", lambda m: f"pyramid.fpn.inner_blocks.{int(m[1]) - 2}.0", key)
    key = re.sub(r"^backbone\.fpn\.fpn_layer(\d)", lambda m: f"pyramid.fpn.layer_blocks.{int(m[1]) - 2}.0", key)
    key = re.sub(r"^backbone\.fpn\.top_blocks\.", "pyramid.fpn.extra_blocks.", key)
    # Swin: timm names stage s "layers_s" and puts the patch merging that ends stage s at the start of stage s + 1.
    key = re.sub(r"^backbone\.body\.layers\.(\d)\.downsample",
                 lambda m: f"pyramid.body.layers_{int(m[1]) + 1}.downsample", key)  # fmt: skip
    key = re.sub(r"^backbone\.body\.layers\.(\d)\.", r"pyramid.body.layers_\1.", key)
    key = re.sub(r"^backbone\.body\.norm(\d)\.", lambda m: f"pyramid.norms.{int(m[1]) - 1}.", key)
    return key.replace("backbone.body.", "pyramid.body.")
