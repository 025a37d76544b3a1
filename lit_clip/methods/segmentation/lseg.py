"""LSeg (Li et al., "Language-driven Semantic Segmentation", ICLR 2022) as the released code (isl-org/lang-seg).

A dense image encoder gives every pixel an embedding in CLIP's joint space; the frozen CLIP text tower embeds
the label set; a pixel's logits are its cosine similarities to the labels, scaled. Any label set can be asked
at test time, labels never trained on included.

1. **Image encoder.** (a) A timm ViT, as the official code: ``vit_large_patch16_384`` read at blocks
   [5, 11, 17, 23], ``vit_base_patch32_384`` at [2, 5, 8, 11] (every quarter of the blocks by default),
   ImageNet weights with ``backbone_pretrained``. It runs as the official ``forward_flex``: positions resized
   bilinearly to the input's grid, the class token kept for the readout. (b) A timm CNN, its four stages at
   strides 4-32: the official few-shot models' ``clip_resnet101`` is torchvision's ImageNet ResNet-101,
   timm's ``resnet101.tv_in1k``. Images are re-normalised from CLIP's mean and std to the timm model's.
   (c) ``backbone="clip"``: a trainable copy of the CLIP's own image tower, read through its
   ``forward_intermediates`` (four evenly spaced blocks of a ViT, with their class tokens for a readout; the
   four stages of a ResNet; or ``hooks``).
2. **DPT decoder** (:mod:`lit_clip.models.dpt`): a ViT's tokens are reassembled to strides 4-32 (readout
   "project" as the official code); a CNN's stages already are at those strides and go in as they are (the
   official ResNet model). Then 3x3 convolutions to ``features`` (256), four fusion blocks with BatchNorm
   residual units and 2x bilinear upsampling, and a 1x1 head to the text embedding dimension (512 for CLIP
   ViT-B/32).
3. **Logits**: L2-normalised pixel embeddings against the L2-normalised text embeddings of the labels, times
   ``logit_scale``, a constant 1/0.07 in the code (``learnable_logit_scale`` makes it the paper's learnable
   temperature); the optional spatial regularisation blocks (``spatial_block``, the code's ``arch_option``)
   work on the logits; a bilinear 2x upsampling brings them to the image size.
   Few-shot episodes (PASCAL-5i, COCO-20i, FSS-1000) take each image's logits over its own two labels,
   "others" and its class, as the official zero-shot model (``lseg_net_zs.py``) does.
4. **Training**: per-pixel cross-entropy, unlabelled pixels (255) ignored (:class:`CLIPSegmenter`); SGD,
   momentum 0.9, weight decay 1e-4, the poly schedule of power 0.9 stepped per epoch; the encoder and the
   reassembly (the official ``pretrained`` module) at ``lr``, the rest of the decoder and the head at
   10x (the official ``scratch``).
5. **Evaluation**: validation single-scale, as the official training's; testing optionally multi-scale and
   flipped, with sliding windows, as the official test script (``test_scales``, ``flip``, ``test_base_size``,
   ``test_crop_size``).

Official checkpoints load with :meth:`LSeg.load_official_checkpoint` (names mapped by :func:`official_key`).

Deliberate differences from the official code: text embeddings are computed in fp32 (the code runs the CLIP
in fp16); the labels are embedded through the data module's prompt templates (the code embeds the bare label:
give the data module ``templates: ["{}"]``); the learning rate is taken as given (the code scales ``base_lr``
by the per-device batch size / 16); the image sides need not be multiples of 32 (padding, logits cropped
back); multi-scale logits are averaged where the code sums them (the same prediction).
"""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Literal, Sequence

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.methods.segmentation.segmenter import CLIPSegmenter
from lit_clip.models.dpt import TARGET_REDUCTIONS, DPTDecoder, Readout, Reassemble
from lit_clip.optim import poly_schedule
from lit_clip.transforms import CLIP_MEAN, CLIP_STD, FromCLIPNormalization

SpatialBlock = Literal["bottleneck", "depthwise"]
# The reassembled channels of the official ViT-L and ViT-B backbones (DPT's), by ViT width.
DPT_CHANNELS = {1024: (256, 512, 1024, 1024), 768: (96, 192, 384, 768)}
# The coarsest level is at 1/32 of the image: image sides are padded to a multiple of 32.
STRIDE = 32


def quarter_hooks(blocks: int) -> list[int]:
    """The last block of every quarter: [5, 11, 17, 23] of 24 blocks, [2, 5, 8, 11] of 12 (the official hooks);
    a tower of fewer than four blocks gives some twice."""
    return [math.ceil((i + 1) * blocks / 4) - 1 for i in range(4)]


def reassembled_channels(channels: Sequence[int]) -> list[int]:
    """DPT's channels per level: the official ones for ViT-L / ViT-B widths, ``width / 8, / 4, / 2, / 1`` for
    other plain ViTs, a hierarchical encoder's own channels."""
    if len(set(channels)) > 1:
        return list(channels)
    width = channels[0]
    return list(DPT_CHANNELS.get(width, (max(1, width // 8), max(1, width // 4), max(1, width // 2), width)))


# --- 1. the image encoder ------------------------------------------------------------------------
def timm_encoder(name: str, pretrained: bool = False, hooks: Sequence[int] | None = None) -> nn.Module:
    """:class:`TimmViTEncoder` for a timm ViT with a class token, :class:`TimmCNNEncoder` for any other model."""
    with torch.device("meta"):  # only to look at the architecture: no memory, no weights
        probe = timm.create_model(name, pretrained=False)
    if hasattr(probe, "blocks") and getattr(probe, "has_class_token", False):
        return TimmViTEncoder(name, pretrained, hooks)
    return TimmCNNEncoder(name, pretrained, hooks)


class TimmViTEncoder(nn.Module):
    """A timm ViT run as the official ``forward_flex``, giving the hooked blocks' tokens.

    The classifier head, the final norm and the blocks after the last hook are dropped (nothing reads them).
    """

    def __init__(self, name: str, pretrained: bool = False, hooks: Sequence[int] | None = None):
        super().__init__()
        vit = timm.create_model(name, pretrained=pretrained, num_classes=0)
        if not hasattr(vit, "blocks") or vit.num_prefix_tokens != 1 or not vit.has_class_token:
            raise ValueError(f"LSeg's timm encoder is a ViT with a class token and no other prefix token, not {name!r}")
        self.hooks = [h % len(vit.blocks) for h in (quarter_hooks(len(vit.blocks)) if hooks is None else hooks)]
        vit.blocks = vit.blocks[: max(self.hooks) + 1]
        vit.norm = nn.Identity()
        self.vit = vit
        self.patch_size = vit.patch_embed.patch_size[0]
        self.channels = [vit.embed_dim] * 4
        self.reductions = [self.patch_size] * 4
        self.normalize = FromCLIPNormalization(vit.pretrained_cfg["mean"], vit.pretrained_cfg["std"])

    def positions(self, grid: tuple[int, int]) -> Tensor:
        """The class token's position and the patch positions resized bilinearly to ``grid`` (``_resize_pos_embed``)."""
        cls_pos, patch_pos = self.vit.pos_embed[:, :1], self.vit.pos_embed[0, 1:]
        side = math.isqrt(patch_pos.shape[0])
        patch_pos = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bilinear", align_corners=False)
        return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, images: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per hook, the block's patch tokens as a map ``[B, C, h, w]`` and its class token ``[B, C]``."""
        vit = self.vit
        x = vit.patch_embed.proj(self.normalize(images))
        grid = x.shape[-2:]
        x = vit.patch_embed.norm(x.flatten(2).transpose(1, 2))
        x = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.positions(grid)
        x = vit.norm_pre(vit.pos_drop(x))
        outputs = {}
        for i, block in enumerate(vit.blocks):
            x = outputs[i] = block(x)
        return [(outputs[h][:, 1:].transpose(1, 2).unflatten(2, grid), outputs[h][:, 0]) for h in self.hooks]


class TimmCNNEncoder(nn.Module):
    """A timm CNN's feature maps (``features_only``): by default its last four, the stages at strides 4-32;
    ``hooks`` index timm's ``feature_info`` instead."""

    def __init__(self, name: str, pretrained: bool = False, hooks: Sequence[int] | None = None):
        super().__init__()
        self.cnn = timm.create_model(name, pretrained=pretrained, features_only=True)
        info = self.cnn.feature_info
        count = len(info.channels())
        self.hooks = [h % count for h in (range(count - 4, count) if hooks is None else hooks)]
        self.channels = [info.channels()[h] for h in self.hooks]
        self.reductions = [info.reduction()[h] for h in self.hooks]
        self.normalize = FromCLIPNormalization(self.cnn.pretrained_cfg["mean"], self.cnn.pretrained_cfg["std"])

    def forward(self, images: Tensor) -> list[tuple[Tensor, None]]:
        """Per hook, the feature map ``[B, C, h, w]`` (and no class token)."""
        maps = self.cnn(self.normalize(images))
        return [(maps[h], None) for h in self.hooks]


class CLIPTowerEncoder(nn.Module):
    """A trainable copy of a CLIP image tower, read through its ``forward_intermediates``.

    ``hooks`` index the tower's ``feature_info``: by default four evenly spaced blocks of a ViT, the last four
    features (the stages) of a ResNet or other hierarchical tower. ``class_token``: give a ViT's class token
    with each block's map, for a readout. Parameters the features do not depend on (the pooling head, later
    blocks) are frozen, so the optimiser and DDP never wait for their gradients.
    """

    def __init__(self, tower: nn.Module, hooks: Sequence[int] | None = None, class_token: bool = False):
        super().__init__()
        info = tower.feature_info
        plain = len({entry["reduction"] for entry in info}) == 1
        if class_token and not plain:
            raise ValueError("a ResNet-like CLIP tower has no class token to read out: use readout 'ignore'")
        if hooks is None:
            hooks = quarter_hooks(len(info)) if plain else range(len(info) - 4, len(info))
        self.hooks = [h % len(info) for h in hooks]
        self.class_token = class_token
        self.tower = copy.deepcopy(tower).requires_grad_(True)
        self.channels = [info[h]["num_chs"] for h in self.hooks]
        self.reductions = [info[h]["reduction"] for h in self.hooks]
        self.freeze_unused()

    def freeze_unused(self) -> None:
        """Freeze what a dry run's features get no gradient from."""
        side = 2 * max(self.reductions)
        with torch.enable_grad():
            features = self(torch.zeros(1, 3, side, side, device=next(self.tower.parameters()).device))
            sum(feature.sum() + (0 if token is None else token.sum()) for feature, token in features).backward()
        for param in self.tower.parameters():
            if param.grad is None:
                param.requires_grad_(False)
            param.grad = None

    def forward(self, images: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        """Per hook, the feature map ``[B, C, h, w]`` and, with ``class_token``, the block's class token ``[B, C]``."""
        taken = sorted(set(self.hooks))
        if not self.class_token:
            maps = self.tower.forward_intermediates(images, indices=taken, intermediates_only=True)
            return [(maps[taken.index(h)], None) for h in self.hooks]
        outputs = self.tower.forward_intermediates(
            images, indices=taken, intermediates_only=True, return_prefix_tokens=True
        )
        return [(outputs[taken.index(h)][0], outputs[taken.index(h)][1][:, 0]) for h in self.hooks]


# --- 3. the spatial regularisation blocks -----------------------------------------------------------
class SpatialRegularization(nn.Module):
    """The official ``arch_option`` 1 / 2 after the logits: one 3x3 convolution shared by every label's map,
    applied ``depth`` times with the same weights, an activation between the applications (not after the last).
    "bottleneck" adds each pixel's largest logit over the labels to the convolved maps; "depthwise" does not."""

    def __init__(self, kind: SpatialBlock, depth: int = 1, activation: Literal["relu", "lrelu", "tanh"] = "lrelu"):
        super().__init__()
        if kind not in ("bottleneck", "depthwise") or depth < 1:
            raise ValueError(f"spatial_block is 'bottleneck' or 'depthwise' with depth >= 1, got {kind!r}, {depth}")
        self.kind, self.depth = kind, depth
        self.conv = nn.Conv2d(1, 1, kernel_size=3, padding=1)
        self.activation = {"relu": nn.ReLU(), "lrelu": nn.LeakyReLU(), "tanh": nn.Tanh()}[activation]

    def forward(self, logits: Tensor) -> Tensor:
        for i in range(self.depth):
            out = self.conv(logits.flatten(0, 1)[:, None]).view_as(logits)
            if self.kind == "bottleneck":
                out = out + logits.max(dim=1, keepdim=True).values
            logits = out if i == self.depth - 1 else self.activation(out)
        return logits


class LSeg(CLIPSegmenter):
    """Per-pixel embeddings from an image encoder and the DPT decoder, matched to the frozen CLIP's text
    embeddings of the labels (see the module's description)."""

    def __init__(
        self,
        pretrained: str,
        backbone: str = "vit_large_patch16_384",
        backbone_pretrained: bool = False,
        hooks: list[int] | None = None,
        readout: Readout = "project",
        features: int = 256,
        batch_norm: bool = True,
        spatial_block: SpatialBlock | None = None,
        block_depth: int = 1,
        block_activation: Literal["relu", "lrelu", "tanh"] = "lrelu",
        logit_scale: float = 1 / 0.07,
        learnable_logit_scale: bool = False,
        lr: float = 0.004,
        decoder_lr_multiplier: float = 10.0,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        poly_power: float = 0.9,
        schedule_interval: Literal["epoch", "step"] = "epoch",
        test_scales: list[float] | None = None,
        flip: bool = False,
        test_base_size: int | None = None,
        test_crop_size: int | None = None,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
    ):
        """
        Args:
            pretrained: the frozen CLIP whose text tower embeds the labels (the official code: OpenAI ViT-B/32).
            backbone: a timm ViT name (``vit_large_patch16_384``, ``vit_base_patch32_384``), a timm CNN name (the
                official few-shot models' ``resnet101.tv_in1k``), or "clip" for a trainable copy of the CLIP's
                image tower.
            backbone_pretrained: timm's ImageNet weights (downloaded by timm, as the official code does).
            hooks: which blocks (or ``feature_info`` entries of a CNN or a CLIP tower) feed the four levels,
                coarser last; by default the last block of every quarter (a CNN or ResNet tower: its four stages).
            readout: the class token's part in a ViT's reassembly, "project" (official), "add" or "ignore" (the
                only one for CNNs, which give no class token).
            features: the decoder's channels (256).
            batch_norm: BatchNorm in the residual units (LSeg's; DPT's plain units have none).
            spatial_block, block_depth, block_activation: the optional regularisation blocks after the logits
                (the code's ``arch_option`` 1 "bottleneck" / 2 "depthwise", ``block_depth``, ``activation``).
            logit_scale, learnable_logit_scale: the temperature's inverse (1/0.07), learned if asked (the paper).
            lr, decoder_lr_multiplier: the encoder's learning rate (0.004) and the decoder's multiple of it (10).
            momentum, weight_decay: SGD's (0.9, 1e-4).
            poly_power, schedule_interval: the poly schedule's power (0.9) and its step, "epoch" (official) or "step".
            test_scales: evaluate at these scales and average the logits (official: 0.5, 0.75, 1, 1.25, 1.5, 1.75).
            flip: add the logits of the mirrored image (official: yes).
            test_base_size: a scale s resizes the long side to ``ceil(base_size * s)`` (official: 520); None:
                scales multiply the image's own size.
            test_crop_size: windows of this side slide over images larger than it (stride 2/3), smaller ones are
                padded with black (official: 480); None: whole images.
            architecture, quick_gelu: see ``lit_clip.load_clip``.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        if backbone == "clip":
            self.encoder = CLIPTowerEncoder(self.model.visual, hooks, class_token=readout != "ignore")
        else:
            self.encoder = timm_encoder(backbone, backbone_pretrained, hooks)
        if len(set(self.encoder.reductions)) == 1:  # a ViT's tokens: reassembled to the four strides
            channels = reassembled_channels(self.encoder.channels)
            levels = zip(self.encoder.channels, channels, self.encoder.reductions, TARGET_REDUCTIONS)
            self.reassemble = nn.ModuleList(Reassemble(*level, readout) for level in levels)
        else:  # a CNN's stages: used as they are, as the official ResNet model
            if readout != "ignore":
                raise ValueError(f"{backbone!r} gives feature maps and no class token: use readout 'ignore'")
            if tuple(self.encoder.reductions) != TARGET_REDUCTIONS:
                raise ValueError(
                    f"the DPT decoder takes maps at strides {TARGET_REDUCTIONS}; {backbone!r}'s hooked features are at "
                    f"{tuple(self.encoder.reductions)}: choose hooks of those strides"
                )
            channels, self.reassemble = self.encoder.channels, None
        self.decoder = DPTDecoder(channels, features, batch_norm)
        self.head = nn.Conv2d(features, self.model.text_projection.shape[1], kernel_size=1)
        self.spatial_block = (
            SpatialRegularization(spatial_block, block_depth, block_activation) if spatial_block else None
        )
        log_scale = torch.tensor(math.log(logit_scale))
        if learnable_logit_scale:
            self.logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("logit_scale", log_scale, persistent=False)

    # --- per-pixel logits --------------------------------------------------------------------------
    def pixel_embeddings(self, images: Tensor) -> Tensor:
        """Un-normalised pixel embeddings ``[B, dim, H / 2, W / 2]`` of images whose sides are multiples of 32."""
        features = self.encoder(images)
        if self.reassemble is None:
            levels = [feature for feature, _ in features]
        else:
            levels = [reassemble(*feature) for reassemble, feature in zip(self.reassemble, features)]
        return self.head(self.decoder(levels))

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        height, width = images.shape[-2:]
        padded = F.pad(images, (0, -width % STRIDE, 0, -height % STRIDE))
        pixels = F.normalize(self.pixel_embeddings(padded).float(), dim=1)
        logits = self.cosine_logits(self.logit_scale.exp(), pixels, labels)
        if self.spatial_block is not None:
            logits = self.spatial_block(logits)
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=True)
        return logits[..., :height, :width]

    # --- evaluation: multi-scale, flipped, sliding windows -------------------------------------------
    def predict_masks(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Validation is single-scale, as the official training's; testing, predicting and direct calls take the
        multi-scale, flipped, windowed logits of :meth:`evaluation_logits` (when those options are set)."""
        trainer = self._trainer
        if trainer is not None and (trainer.validating or trainer.sanity_checking):
            return self(images, labels).argmax(dim=1)
        return self.evaluation_logits(images, labels).argmax(dim=1)

    def evaluation_logits(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """The logits averaged over ``test_scales`` (each resized back to the image size), flipped if ``flip``."""
        height, width = images.shape[-2:]
        scales = self.hparams.test_scales or [1.0]
        total = 0
        for scale in scales:
            size = self.scaled_size(height, width, scale)
            scaled = images if size == (height, width) else resize(images, size)
            logits = self.window_logits(scaled, labels)
            total = total + (logits if size == (height, width) else resize(logits, (height, width)))
        return total / len(scales)

    def scaled_size(self, height: int, width: int, scale: float) -> tuple[int, int]:
        """The official ``MultiEvalModule``'s size at ``scale``: the long side ``ceil(base_size * scale)``."""
        if self.hparams.test_base_size is None:
            return int(height * scale + 0.5), int(width * scale + 0.5)
        long = math.ceil(self.hparams.test_base_size * scale)
        if height > width:
            return long, int(width * long / height + 0.5)
        return int(height * long / width + 0.5), long

    def window_logits(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Whole-image logits, or with ``test_crop_size`` the average over sliding windows (each padded with
        black to the crop size), as the official evaluation."""
        crop = self.hparams.test_crop_size
        if crop is None:
            return self.flip_logits(images, labels)
        height, width = images.shape[-2:]
        padded = pad_black(images, crop, crop)
        if max(height, width) <= crop:
            return self.flip_logits(padded, labels)[..., :height, :width]
        stride = int(crop * 2 / 3)
        full_height, full_width = padded.shape[-2:]
        count_labels = self.text_classifier.shape[1] if labels is None else labels.shape[1]
        total = padded.new_zeros(padded.shape[0], count_labels, full_height, full_width).float()
        count = total.new_zeros(1, 1, full_height, full_width)
        for top in range(0, stride * math.ceil((full_height - crop) / stride) + 1, stride):
            for left in range(0, stride * math.ceil((full_width - crop) / stride) + 1, stride):
                bottom, right = min(top + crop, full_height), min(left + crop, full_width)
                window = pad_black(padded[..., top:bottom, left:right], crop, crop)
                logits = self.flip_logits(window, labels)
                total[..., top:bottom, left:right] += logits[..., : bottom - top, : right - left]
                count[..., top:bottom, left:right] += 1
        return (total / count)[..., :height, :width]

    def flip_logits(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """The logits, averaged with those of the mirrored image (mirrored back) if ``flip``."""
        logits = self(images, labels)
        if self.hparams.flip:
            logits = (logits + self(images.flip(-1), labels).flip(-1)) / 2
        return logits

    # --- optimisation ------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        """The official ``configure_optimizers``: the encoder and the reassembly at ``lr``, the decoder's
        convolutions, the head, the regularisation blocks (and a learnable scale) at ``lr * decoder_lr_multiplier``."""
        h = self.hparams
        encoder = [*self.encoder.parameters(), *(self.reassemble.parameters() if self.reassemble is not None else [])]
        decoder = [*self.decoder.parameters(), *self.head.parameters()]
        decoder += [*self.spatial_block.parameters()] if self.spatial_block is not None else []
        decoder += [self.logit_scale] if isinstance(self.logit_scale, nn.Parameter) else []
        return [
            {"params": [p for p in encoder if p.requires_grad], "lr": h.lr},
            {"params": [p for p in decoder if p.requires_grad], "lr": h.lr * h.decoder_lr_multiplier},
        ]

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.SGD(self.parameter_groups(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
        if h.schedule_interval == "epoch":
            total = self.trainer.max_epochs
            if total is None or total < 1:
                raise ValueError(f"LSeg's poly schedule follows the epochs: set trainer.max_epochs (got {total})")
        else:
            total = self.trainer.estimated_stepping_batches
        schedule = poly_schedule(optimizer, total, h.poly_power)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": h.schedule_interval}}

    # --- the official checkpoints ------------------------------------------------------------------
    def load_official_checkpoint(self, path: str | Path) -> None:
        """Load a lang-seg Lightning checkpoint (``demo_e200.ckpt``, ``fss_l16.ckpt``, ``pascal_fold0.ckpt``, ...)
        into this model.

        Build the model as the checkpoint's: ``backbone`` and ``spatial_block`` as its ``--backbone`` and
        ``--arch_option`` (``clip_vitl16_384`` is ``vit_large_patch16_384``, ``clip_vitb32_384``
        ``vit_base_patch32_384``, ``clip_resnet101`` ``resnet101.tv_in1k`` with readout "ignore"), ``pretrained``
        the CLIP it embeds labels with (OpenAI ViT-B/32; its weights, stored in the file too, are loaded as well),
        a constant ``logit_scale``.
        """
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        self.load_state_dict(convert_official_state_dict(checkpoint.get("state_dict", checkpoint)))


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resizing with aligned corners, as the official evaluation resizes images and logits."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def pad_black(images: Tensor, height: int, width: int) -> Tensor:
    """``images`` (CLIP-normalised) padded at the bottom and right to at least ``height`` x ``width`` with black."""
    batch, channels, old_height, old_width = images.shape
    if old_height >= height and old_width >= width:
        return images
    black = (-torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)).to(images).view(1, channels, 1, 1)
    padded = black.expand(batch, channels, max(old_height, height), max(old_width, width)).clone()
    padded[..., :old_height, :old_width] = images
    return padded


# --- the official checkpoints' names ---------------------------------------------------------------
# Official (LSegModule.state_dict) -> ours; "level" is 1-based there, 0-based here.
_POSTPROCESS = r"net\.pretrained\.act_postprocess(?P<level>[1-4])\."
_REFINENET = r"net\.scratch\.refinenet(?P<level>[1-4])\."
OFFICIAL_NAMES: tuple[tuple[str, str], ...] = (
    (r"net\.clip_pretrained\.(?P<rest>.+)", "model.{rest}"),
    (r"net\.pretrained\.model\.(?P<rest>.+)", "encoder.vit.{rest}"),
    # The few-shot models' ResNet-101: torchvision's stem and first stage in one Sequential (layer1), then layer2-4.
    (r"net\.pretrained\.layer1\.0\.(?P<rest>.+)", "encoder.cnn.conv1.{rest}"),
    (r"net\.pretrained\.layer1\.1\.(?P<rest>.+)", "encoder.cnn.bn1.{rest}"),
    (r"net\.pretrained\.layer1\.4\.(?P<rest>.+)", "encoder.cnn.layer1.{rest}"),
    (r"net\.pretrained\.layer(?P<stage>[2-4])\.(?P<rest>.+)", "encoder.cnn.layer{stage}.{rest}"),
    (_POSTPROCESS + r"0\.(?P<rest>project\..+)", "reassemble.{level}.readout.{rest}"),
    (_POSTPROCESS + r"3\.(?P<rest>.+)", "reassemble.{level}.project.{rest}"),
    (_POSTPROCESS + r"4\.(?P<rest>.+)", "reassemble.{level}.resample.{rest}"),
    (r"net\.scratch\.layer(?P<level>[1-4])_rn\.(?P<rest>.+)", "decoder.layer_rn.{level}.{rest}"),
    (_REFINENET + r"resConfUnit1\.(?P<rest>.+)", "decoder.fusions.{level}.skip_unit.{rest}"),
    (_REFINENET + r"resConfUnit2\.(?P<rest>.+)", "decoder.fusions.{level}.unit.{rest}"),
    (_REFINENET + r"out_conv\.(?P<rest>.+)", "decoder.fusions.{level}.out_conv.{rest}"),
    (r"net\.scratch\.head1\.(?P<rest>.+)", "head.{rest}"),
    (r"net\.scratch\.head_block\.depthwise\.depthwise\.(?P<rest>.+)", "spatial_block.conv.{rest}"),
)
# What the official model holds but never uses: timm's final norm and ImageNet head (the hooks read the
# blocks), and the first residual unit of the coarsest fusion block (it has no finer level to add).
OFFICIAL_UNUSED = ("net.pretrained.model.norm.", "net.pretrained.model.head.", "net.scratch.refinenet4.resConfUnit1.")


def official_key(key: str) -> str | None:
    """Our name of an official checkpoint's tensor; None for the ones LSeg never uses."""
    if key.startswith(OFFICIAL_UNUSED):
        return None
    for pattern, name in OFFICIAL_NAMES:
        match = re.fullmatch(pattern, key)
        if match:
            parts = match.groupdict()
            if "level" in parts:
                parts["level"] = int(parts["level"]) - 1
            return name.format(**parts)
    raise KeyError(f"{key!r} is not a name of the official LSeg model")


def convert_official_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """An official LSeg state dict (of ``LSegModule``: ``net.pretrained...``) in our names, unused tensors dropped."""
    return {name: value for key, value in state_dict.items() if (name := official_key(key)) is not None}
