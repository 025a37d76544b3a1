"""Zero-shot semantic segmentation with GroupViT (Xu et al., CVPR 2022), as the released pipeline
(NVlabs/GroupViT, ``segmentation/evaluation/group_vit_seg.py``): the groups learnt from captions alone are
named by text.

1. **Groups**: each stage's soft assignment of its input tokens to its groups, multiplied through the stages,
   maps every patch to the final groups; resized bilinearly to the image, each pixel takes its most
   assigned group (one-hot).
2. **Naming the groups**: each final group's embedding (projected, L2-normalised) against the text embeddings
   of the labels, ``scale x cosine`` with the model's logit scale clamped at 100, softmax over labels. Only
   the image's ``top_classes`` labels (5) by its whole-image embedding stay candidates; the group's softmax
   over those is multiplied by its softmax over all labels (the code's ``group_affinity_mat *=
   pre_group_affinity_mat``).
3. **Pixels** take their group's label scores. A label set with the ``background_label`` leaves its text out
   (CLIP has no good text for "background"): a pixel whose best score is below ``min(threshold, the image's
   best group score)`` is background.
4. **Evaluation protocol** (optional, the released configs): images resized so that the short side is
   ``test_short_side`` (448; long side at most 2048), logits from sliding ``test_window`` windows (448,
   stride 224, mmseg's ``slide``), averaged where they overlap and resized back to the image.

Thresholds: 0.9 in the paper, 0.95 in the released VOC and COCO configs, 0.35 in the Context config
(``background_threshold``: a number or "paper", "voc", "coco", "context").
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_clip.methods.segmentation.segmenter import CLIPSegmenter

BACKGROUND_THRESHOLDS = {"paper": 0.9, "voc": 0.95, "coco": 0.95, "context": 0.35}
MAX_SCALE = 100.0


class GroupViTSegmentation(CLIPSegmenter):
    trains = False

    def __init__(
        self,
        pretrained: str,
        architecture: str | None = None,
        background_threshold: float | Literal["paper", "voc", "coco", "context"] = "voc",
        background_label: str = "background",
        top_classes: int = 5,
        test_short_side: int | None = None,
        test_window: int | None = None,
        test_stride: int = 224,
    ):
        """
        Args:
            pretrained: GroupViT weights: an official ``.pth``, a transformers GroupViT directory or hub id, or a
                lit-clip checkpoint of ``GroupViTPretraining`` (see ``lit_clip.load_clip``).
            architecture: the GroupViT architecture, where the weights do not say.
            background_threshold: the background rule's threshold (see the module's description).
            background_label: the label the threshold assigns, when the label set has it.
            top_classes: labels kept per image by its whole-image embedding (5).
            test_short_side: resize images so that their short side is this (448 in the released configs);
                None: as they come.
            test_window, test_stride: sliding windows of this side and stride (448, 224); None: whole images.
        """
        super().__init__(pretrained, architecture)
        self.save_hyperparameters()
        if isinstance(background_threshold, str):
            if background_threshold not in BACKGROUND_THRESHOLDS:
                raise ValueError(
                    f"background_threshold is a number or one of {sorted(BACKGROUND_THRESHOLDS)}, "
                    f"got {background_threshold!r}"
                )
            background_threshold = BACKGROUND_THRESHOLDS[background_threshold]
        self.background_threshold = background_threshold
        if not hasattr(self.model, "encode_groups"):
            raise ValueError(f"{pretrained!r} is not a GroupViT: zero-shot segmentation needs its groups")

    def set_classes(self, classnames) -> None:
        super().set_classes(classnames)
        names = list(classnames)
        self.background = names.index(self.hparams.background_label) if self.hparams.background_label in names else None

    # --- 2., 3. naming the groups, the pixels --------------------------------------------------------------
    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Per-pixel label scores ``[B, labels, H, W]`` (the background channel 1 where the rule says so, else 0)."""
        if labels is not None:
            raise ValueError("GroupViT's zero-shot segmentation takes one label set, not per-image episode labels")
        window = self.hparams.test_window
        if window is not None and max(images.shape[-2:]) > window:
            return self.window_scores(images)
        return self.scores(images)

    def scores(self, images: Tensor) -> Tensor:
        groups = self.model.encode_groups(images)
        final = groups.maps(size=images.shape[-2:])[-1].float()  # [B, G, H, W], 1. above
        one_hot = F.one_hot(final.argmax(dim=1), final.shape[1]).float()  # [B, H, W, G]
        foreground = [k for k in range(len(self.classnames)) if k != self.background]
        texts = self.text_classifier[:, foreground].float()  # [D, L'] normalised
        scale = self.model.logit_scale.exp().clamp(max=MAX_SCALE)
        group_logits = scale * F.normalize(groups.embeddings.float(), dim=-1) @ texts  # [B, G, L']
        image_probabilities = (scale * F.normalize(groups.image_embeddings.float(), dim=-1) @ texts).softmax(dim=-1)
        top = image_probabilities.topk(min(self.hparams.top_classes, texts.shape[1]), dim=-1).indices
        candidates = torch.zeros_like(image_probabilities, dtype=torch.bool).scatter_(1, top, True)
        affinity = group_logits.masked_fill(~candidates[:, None], float("-inf")).softmax(dim=-1)
        affinity = affinity * group_logits.softmax(dim=-1)
        pixel_scores = torch.einsum("bhwg,bgl->blhw", one_hot, affinity)
        scores = pixel_scores.new_zeros(images.shape[0], len(self.classnames), *images.shape[-2:])
        scores[:, foreground] = pixel_scores
        if self.background is not None:
            threshold = affinity.flatten(1).amax(dim=1).clamp(max=self.background_threshold)  # per image
            scores[:, self.background] = (pixel_scores.amax(dim=1) < threshold[:, None, None]).float()
        return scores

    # --- 4. the released evaluation protocol --------------------------------------------------------
    def predict_masks(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        height, width = images.shape[-2:]
        short = self.hparams.test_short_side
        if short is None:
            return self(images, labels).argmax(dim=1)
        scale = min(short / min(height, width), 2048 / max(height, width))
        size = (int(height * scale + 0.5), int(width * scale + 0.5))
        resized = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        scores = F.interpolate(self(resized, labels), size=(height, width), mode="bilinear", align_corners=False)
        return scores.argmax(dim=1)

    def window_scores(self, images: Tensor) -> Tensor:
        """mmseg's ``slide`` inference: windows of ``test_window`` every ``test_stride`` pixels, the last one moved
        back inside the image, their scores averaged where they overlap."""
        window, stride = self.hparams.test_window, self.hparams.test_stride
        height, width = images.shape[-2:]
        total = images.new_zeros(images.shape[0], len(self.classnames), height, width)
        count = images.new_zeros(1, 1, height, width)
        rows = max(height - window + stride - 1, 0) // stride + 1
        columns = max(width - window + stride - 1, 0) // stride + 1
        for row in range(rows):
            for column in range(columns):
                bottom, right = min(row * stride + window, height), min(column * stride + window, width)
                top, left = max(bottom - window, 0), max(right - window, 0)
                total[..., top:bottom, left:right] += self.scores(images[..., top:bottom, left:right])
                count[..., top:bottom, left:right] += 1
        return total / count
