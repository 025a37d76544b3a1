"""The DPT decoder (Ranftl et al., "Vision Transformers for Dense Prediction", ICCV 2021), as LSeg uses it.

Four feature maps of an image encoder become one dense map at half the image resolution:

1. **Reassemble** (:class:`Reassemble`, one per level): a ViT's patch tokens take in the class token
   (the *readout*: ignored, added, or concatenated and projected), a 1x1 convolution sets the level's
   channels, and a resampling brings the map from the encoder's stride to 1/4, 1/8, 1/16, 1/32 of the
   image (transposed convolutions up, a strided 3x3 convolution down).
2. **Fusion** (:class:`DPTDecoder`): a 3x3 convolution brings every level to ``features`` channels (the
   official code's "scratch" layers), then from the coarsest level up, each :class:`FusionBlock` adds the
   next finer level (through a residual convolution unit), refines the sum with another, upsamples it 2x
   bilinearly and mixes it with a 1x1 convolution.

Parameter names follow the pieces, not the official module tree; ``lit_clip.methods.segmentation.lseg``
maps the official checkpoints' names onto these. Reusable by any dense method on a multi-level encoder.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Readout = Literal["ignore", "add", "project"]
# The strides DPT reassembles the four levels to.
TARGET_REDUCTIONS = (4, 8, 16, 32)


class ProjectReadout(nn.Module):
    """DPT's "project" readout: each patch token concatenated with the class token, projected back, GELU."""

    def __init__(self, channels: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * channels, channels), nn.GELU())

    def forward(self, patches: Tensor, class_token: Tensor) -> Tensor:
        """``patches`` ``[B, h * w, C]``, ``class_token`` ``[B, C]`` -> ``[B, h * w, C]``."""
        return self.project(torch.cat([patches, class_token[:, None].expand_as(patches)], dim=-1))


def resampling(channels: int, factor: float) -> nn.Module:
    """From one stride to another ``factor`` times finer: a ``factor`` x ``factor`` transposed convolution
    up, nothing at 1, a 3x3 convolution of stride ``1 / factor`` down (DPT's choices)."""
    if factor > 1:
        return nn.ConvTranspose2d(channels, channels, kernel_size=int(factor), stride=int(factor))
    if factor == 1:
        return nn.Identity()
    return nn.Conv2d(channels, channels, kernel_size=3, stride=round(1 / factor), padding=1)


class Reassemble(nn.Module):
    """One level: readout, 1x1 convolution to ``out_channels``, resampling from ``reduction`` to ``target``."""

    def __init__(self, in_channels: int, out_channels: int, reduction: int, target: int, readout: Readout = "ignore"):
        super().__init__()
        if readout not in ("ignore", "add", "project"):
            raise ValueError(f"readout must be 'ignore', 'add' or 'project', got {readout!r}")
        if reduction < target and target % reduction or reduction > target and reduction % target:
            raise ValueError(f"cannot resample a map of stride {reduction} to stride {target}")
        self.readout_kind = readout
        self.readout = ProjectReadout(in_channels) if readout == "project" else None
        self.project = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.resample = resampling(out_channels, reduction / target)

    def forward(self, feature_map: Tensor, class_token: Tensor | None = None) -> Tensor:
        """``feature_map`` ``[B, C, h, w]`` (with its ``class_token`` ``[B, C]`` unless the readout is "ignore")."""
        if self.readout_kind != "ignore":
            if class_token is None:
                raise ValueError(f"the {self.readout_kind!r} readout needs the class token; this encoder gives none")
            grid = feature_map.shape[-2:]
            patches = feature_map.flatten(2).transpose(1, 2)
            if self.readout is not None:
                patches = self.readout(patches, class_token)
            else:
                patches = patches + class_token[:, None]
            feature_map = patches.transpose(1, 2).unflatten(2, grid)
        return self.resample(self.project(feature_map))


class ResidualConvUnit(nn.Module):
    """``x + bn(conv(relu(bn(conv(relu(x))))))``: two 3x3 convolutions, BatchNorm as LSeg's custom units
    (the convolutions then have no bias), or without it as DPT's plain ones."""

    def __init__(self, features: int, batch_norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(features) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(features) if batch_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(F.relu(x)))
        return x + self.bn2(self.conv2(F.relu(out)))


class FusionBlock(nn.Module):
    """``out_conv(upsample_2x(unit(path + skip_unit(skip))))``; the coarsest level's block has no skip."""

    def __init__(self, features: int, batch_norm: bool = True, skip: bool = True):
        super().__init__()
        self.skip_unit = ResidualConvUnit(features, batch_norm) if skip else None
        self.unit = ResidualConvUnit(features, batch_norm)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, path: Tensor, skip: Tensor | None = None) -> Tensor:
        if self.skip_unit is not None:
            path = path + self.skip_unit(skip)
        path = F.interpolate(self.unit(path), scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(path)


class DPTDecoder(nn.Module):
    """Four reassembled maps (strides 4, 8, 16, 32) -> one ``[B, features, H / 2, W / 2]`` map."""

    def __init__(self, in_channels: Sequence[int], features: int = 256, batch_norm: bool = True):
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"the DPT decoder fuses four levels, got {len(in_channels)}")
        self.layer_rn = nn.ModuleList(nn.Conv2d(c, features, kernel_size=3, padding=1, bias=False) for c in in_channels)
        self.fusions = nn.ModuleList(FusionBlock(features, batch_norm, skip=level < 3) for level in range(4))

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        """``levels``: the four maps, finest first, each twice the size of the next."""
        levels = [conv(level) for conv, level in zip(self.layer_rn, levels)]
        path = self.fusions[3](levels[3])
        for level in (2, 1, 0):
            path = self.fusions[level](path, levels[level])
        return path
