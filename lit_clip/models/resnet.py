"""CLIP's ModifiedResNet image tower (RN50, RN101, ...).

It differs from torchvision's ResNet in three ways that matter for loading
OpenAI weights: a three-convolution stem with an average pool, strided blocks
that average-pool before the 1x1 convolution (anti-aliasing), and an attention
pooling head instead of global average pooling. Parameter names are OpenAI's.

For dense methods the tower speaks the ViT's vocabulary: ``forward_intermediates``
and ``feature_info`` as timm's (the stem and the four stages), ``forward_dense``
as MaskCLIP's (the pooling head's value path at every position).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.models.transformer import check_images, check_output_fmt, take_indices


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride > 1 or inplanes != out:
            # The shortcut also pools first and then convolves with stride 1; "-1" keeps OpenAI's key numbering.
            self.downsample = nn.Sequential(
                OrderedDict(
                    [("-1", nn.AvgPool2d(stride)), ("0", nn.Conv2d(inplanes, out, 1, bias=False)), ("1", nn.BatchNorm2d(out))]
                )
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class AttentionPool2d(nn.Module):
    """One attention query, the mean of the feature map, attends over all positions."""

    def __init__(self, spatial_dim: int, embed_dim: int, heads: int, output_dim: int):
        super().__init__()
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(spatial_dim**2 + 1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)

    def tokens(self, feature_map: Tensor) -> Tensor:
        """``[batch, 1 + h*w, channels]``: the mean token and every position, with learned positions."""
        x = feature_map.flatten(2).transpose(1, 2)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        return x + self.positional_embedding.to(x.dtype)

    def forward(self, feature_map: Tensor) -> Tensor:
        x = self.tokens(feature_map)
        batch, tokens, width = x.shape
        split = lambda t: t.view(batch, -1, self.heads, width // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x[:, :1])), split(self.k_proj(x)), split(self.v_proj(x))
        pooled = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(pooled.transpose(1, 2).reshape(batch, width))

    def dense(self, feature_map: Tensor) -> Tensor:
        """MaskCLIP's dense head: ``c_proj(v_proj(x))`` at every position, ``[batch, output_dim, h, w]``.

        The pooled embedding is ``c_proj`` of an attention-weighted mean of values; each position's own value
        takes the mean's place. As in the official code (``chongzhou96/MaskCLIP``,
        ``mmseg/models/decode_heads/maskclip_head.py``: ``v_proj`` and ``c_proj`` as 1x1 convolutions on the last
        feature map), neither the query-key attention nor the learned positions take part: every position is
        read the same way.
        """
        return self.c_proj(self.v_proj(feature_map.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


class ModifiedResNet(nn.Module):
    def __init__(self, layers: tuple[int, int, int, int], output_dim: int, heads: int, image_size: int = 224, width: int = 64):
        super().__init__()
        if image_size % 32:
            raise ValueError(f"a ResNet tower needs an image size divisible by 32, got {image_size}")
        self.image_size, self.output_dim = image_size, output_dim
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)

        # timm's description of what forward_intermediates can return: feature 0 is the stem (after its
        # average pool), features 1-4 are the stages layer1-layer4.
        self.feature_info = [{"num_chs": width, "reduction": 4, "module": "avgpool"}]
        inplanes = width
        for i, blocks in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            self.feature_info.append({"num_chs": inplanes, "reduction": 4 * 2**i, "module": f"layer{i + 1}"})

        self.attnpool = AttentionPool2d(image_size // 32, width * 32, heads, output_dim)
        self.init_parameters()

    def init_parameters(self) -> None:
        std = self.attnpool.c_proj.in_features**-0.5
        for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj, self.attnpool.c_proj):
            nn.init.normal_(proj.weight, std=std)
        # Each residual branch starts as the identity.
        for name, param in self.named_parameters():
            if name.startswith("layer") and name.endswith("bn3.weight"):
                nn.init.zeros_(param)

    def stem(self, images: Tensor) -> Tensor:
        """Three convolutions and an average pool: ``[batch, width, size / 4, size / 4]``."""
        images = check_images(images, self.conv1.weight)
        x = F.relu(self.bn1(self.conv1(images)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def forward_features(self, images: Tensor) -> Tensor:
        """The last feature map, ``[batch, width * 32, size / 32, size / 32]``."""
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(images)))))

    def check_size(self, images: Tensor) -> Tensor:
        """The attention pool's positions are learned for one image size and, as in open_clip, not resized."""
        size = self.image_size
        if images.ndim == 4 and images.shape[1] == 3 and images.shape[-2:] != (size, size):
            raise ValueError(
                f"this ResNet image tower was built for {size} x {size} images, "
                f"got {images.shape[-2]} x {images.shape[-1]}"
            )
        return images

    def forward(self, images: Tensor) -> Tensor:
        """The pooled image embedding, ``[batch, output_dim]``."""
        return self.attnpool(self.forward_features(self.check_size(images)))

    def forward_intermediates(
        self,
        images: Tensor,
        indices: int | Sequence[int] | None = None,
        output_fmt: str = "NCHW",
        norm: bool = False,
        intermediates_only: bool = False,
    ) -> tuple[Tensor, list[Tensor]] | list[Tensor]:
        """timm's ``forward_intermediates``: the pooled embedding ``[batch, output_dim]`` and chosen feature maps.

        Five features, as open_clip numbers them (see ``feature_info``): 0 the stem (after its average pool, 1/4 of
        the image size), 1-4 the outputs of layer1-layer4 (1/4, 1/8, 1/16, 1/32). ``indices`` picks them as timm
        does: all if None, the last n if an int n, else the listed ones (negative from the end), in stage order.
        Maps are ``[batch, channels, h, w]`` ("NCHW") or ``[batch, h * w, channels]`` ("NLC"). The tower has no
        final norm, so ``norm`` (there for a shared signature) changes nothing. With ``intermediates_only`` the
        list alone comes back, the stages after the last chosen one are not run and any image size divisible by
        32 works; the pooled embedding needs the size the attention pool's positions were learned for.
        """
        check_output_fmt(output_fmt)
        take = take_indices(len(self.feature_info), indices)
        stages = [self.stem, self.layer1, self.layer2, self.layer3, self.layer4]
        x = images if intermediates_only else self.check_size(images)
        intermediates = []
        for i, stage in enumerate(stages[: take[-1] + 1] if intermediates_only else stages):
            x = stage(x)
            if i in take:
                intermediates.append(x if output_fmt == "NCHW" else x.flatten(2).transpose(1, 2))
        if intermediates_only:
            return intermediates
        return self.attnpool(x), intermediates

    def forward_dense(self, images: Tensor) -> Tensor:
        """Per-position embeddings in the joint space, ``[batch, output_dim, size / 32, size / 32]``: MaskCLIP's
        value path of the attention pool (:meth:`AttentionPool2d.dense`) on the last feature map, for images of the
        size the tower was built for, as :meth:`forward`."""
        return self.attnpool.dense(self.forward_features(self.check_size(images)))
