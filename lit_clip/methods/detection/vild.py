"""ViLD: open-vocabulary detection by distilling a frozen CLIP into a two-stage detector (Gu et al., "Open-vocabulary
Object Detection via Vision and Language Knowledge Distillation", ICLR 2022; the released TensorFlow code in
tensorflow/tpu ``projects/vild``).

A Faster R-CNN (a Mask R-CNN with ``masks``) from torchvision's parts: a ResNet-FPN backbone, its class-agnostic
region proposal network, RoIAlign over the pyramid, a box head. Trained on boxes of base categories only, it finds
novel ones named only in text:

1. **Region embeddings.** A region's RoIAlign features go through the box head (4 convolutions and 2 fully
   connected layers, each with batch norm) and a linear projection to CLIP's embedding space, then L2-normalisation.
   Box regression is class-agnostic (one box per region), so it serves categories never trained on.
2. **ViLD-text.** The classifier is text: the frozen CLIP text embeddings of the base category names (each the
   normalised mean over the prompt templates) plus one learnable background embedding. A region's logits are its
   cosine with each, divided by the temperature (0.01); cross-entropy over background and the base categories.
3. **ViLD-image.** Distillation: for the M proposals of every training image cached beforehand (see
   :mod:`lit_clip.region_cache` and ``lit_clip.methods.detection.vild_cache``), the CLIP image embedding of the
   region's crops (1x and 1.5x, summed and normalised) is the target of the region embedding: an L1 loss,
   weighted 0.5. The image teaches the region embedding what CLIP sees, novel categories included.
4. **ViLD** trains both on the same region embeddings. **ViLD-ens** gives each its own head (box head and
   projection): the text head learns from the cross-entropy, the image head from distillation, and inference
   combines their class probabilities by a weighted geometric mean, 2/3 toward the text head's for base categories
   and 2/3 toward the image head's for novel ones.
5. **Inference** over any vocabulary: the text embeddings of all names given at test time (base and novel),
   class probabilities by softmax over background and those names, the class-agnostic box clipped to the image,
   per-class NMS, the highest-scoring detections kept.

``variant`` picks "text", "image", "vild" or "ensemble". ViLD-image has no classification loss and so no trained
background: its regions are scored against the names alone, the background being whatever the RPN rejects.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import (
    Conv2dNormActivation,
    FrozenBatchNorm2d,
    MultiScaleRoIAlign,
    batched_nms,
    clip_boxes_to_image,
    remove_small_boxes,
)
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from lit_clip.batches import DetectionBatch, EvaluationSet
from lit_clip.methods.frozen_clip import FrozenCLIPMethod
from lit_clip.losses import logged_sum
from lit_clip.metrics import DetectionMetrics
from lit_clip.optim import weight_decay_groups
from lit_clip.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize

Variant = Literal["text", "image", "vild", "ensemble"]
VARIANTS: tuple[str, ...] = ("text", "image", "vild", "ensemble")
LEVELS = ["0", "1", "2", "3"]  # the FPN levels RoIAlign reads (P2-P5), as torchvision's Faster R-CNN
ROI_SIZE = 7


def fpn_backbone(name: str, weights: str | None, channels: int) -> BackboneWithFPN:
    """A torchvision ResNet (``resnet18`` ... ``resnet101``) with an FPN of ``channels`` over its four stages and a
    max-pooled fifth level (P2-P6, as torchvision's Faster R-CNN and ViLD). ``weights``: torchvision weights to
    start from ("IMAGENET1K_V1", downloaded by torchvision), with frozen batch norm as torchvision fine-tunes them;
    None: from scratch with trainable batch norm, as ViLD trains."""
    body = getattr(resnet, name)(weights=weights, norm_layer=FrozenBatchNorm2d if weights else nn.BatchNorm2d)
    stages = [body.layer1, body.layer2, body.layer3, body.layer4]
    in_channels = [_out_channels(stage) for stage in stages]
    return_layers = {f"layer{i}": str(i - 1) for i in range(1, 5)}
    return BackboneWithFPN(body, return_layers, in_channels, channels, extra_blocks=LastLevelMaxPool())


def _out_channels(stage: nn.Sequential) -> int:
    block = stage[-1]
    return (block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels


class RegionHead(nn.Module):
    """ViLD's box head: RoI features ``[N, C, 7, 7]`` through convolutions and fully connected layers, each followed by
    batch norm and ReLU, to the region's features ``[N, fc]``; and their projection to CLIP's space, L2-normalised,
    the region embedding ``[N, D]``."""

    def __init__(self, channels: int, convs: int, fcs: int, fc: int, embed_dim: int):
        super().__init__()
        layers: list[nn.Module] = [
            Conv2dNormActivation(channels, channels, norm_layer=nn.BatchNorm2d) for _ in range(convs)
        ]
        width = channels * ROI_SIZE * ROI_SIZE
        layers.append(nn.Flatten())
        for _ in range(fcs):
            layers += [nn.Linear(width, fc), nn.BatchNorm1d(fc), nn.ReLU(inplace=True)]
            width = fc
        self.tower = nn.Sequential(*layers)
        self.projection = nn.Linear(width, embed_dim)

    def forward(self, roi_features: Tensor) -> tuple[Tensor, Tensor]:
        features = self.tower(roi_features)
        return features, F.normalize(self.projection(features), dim=-1)


class ViLDRoIHeads(RoIHeads):
    """torchvision's RoI heads (proposal sampling, box coding, the mask branch) with ViLD's classifier: region
    embeddings scored against text, class-agnostic boxes, and the distillation of cached regions."""

    def __init__(self, channels: int, embed_dim: int, variant: str, temperature: float, ensemble_weight: float,
                 convs: int, fcs: int, fc: int, masks: bool, **sampling):  # fmt: skip
        mask_parts = {}
        if masks:  # class-agnostic, as the boxes: one mask per region (4 convolutions with batch norm)
            mask_parts = {"mask_roi_pool": MultiScaleRoIAlign(LEVELS, 14, 2),
                          "mask_head": MaskRCNNHeads(channels, [256] * 4, 1, norm_layer=nn.BatchNorm2d),
                          "mask_predictor": MaskRCNNPredictor(256, 256, 1)}  # fmt: skip
        super().__init__(MultiScaleRoIAlign(LEVELS, ROI_SIZE, 2), None, None, **sampling, **mask_parts)
        self.variant, self.temperature, self.ensemble_weight = variant, temperature, ensemble_weight
        self.text_head = RegionHead(channels, convs, fcs, fc, embed_dim)
        self.box_regressor = nn.Linear(self.text_head.projection.in_features, 4)
        nn.init.normal_(self.box_regressor.weight, std=0.001)
        nn.init.zeros_(self.box_regressor.bias)
        # ViLD-ens's image head is its own tower and projection; ViLD distils into the text head's embeddings.
        self.image_head = RegionHead(channels, convs, fcs, fc, embed_dim) if variant == "ensemble" else None
        # The learnt background embedding (used L2-normalised). ViLD-image trains no classification, so it has none:
        # a parameter without gradient would also stop DDP, which expects every parameter to get one.
        self.background = nn.Parameter(torch.randn(embed_dim) * 0.01) if variant != "image" else None

    # --- the classifier ------------------------------------------------------------------------------------------
    def logits(self, embeddings: Tensor, text: Tensor, background: bool = True) -> Tensor:
        """Cosine / temperature of L2-normalised ``embeddings`` ``[N, D]`` against [background,] each class's text
        embedding (``text`` ``[D, C]``, normalised columns): ``[N, 1 + C]`` (background first) or ``[N, C]``. In
        fp32: bf16 would round cosines 100 times magnified."""
        weights = text.T.float()
        if background:
            weights = torch.cat([F.normalize(self.background.float(), dim=0)[None], weights])
        return embeddings.float() @ weights.T / self.temperature

    def class_probabilities(self, pooled: Tensor, text: Tensor, novel: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per region (RoI features ``pooled``), the probability of each class ``[N, C]`` and the text head's
        features (for the box). Background takes part in the softmax and is then left out, as the released code."""
        head_features, embeddings = self.text_head(pooled)
        if self.variant == "image":  # no classification loss trained a background: the names alone
            return self.logits(embeddings, text, background=False).softmax(-1), head_features
        text_probabilities = self.logits(embeddings, text).softmax(-1)[:, 1:]
        if self.variant != "ensemble":
            return text_probabilities, head_features
        image_probabilities = self.logits(self.image_head(pooled)[1], text, background=False).softmax(-1)
        # The weighted geometric mean: the exponent of the text head's probability is lambda on base classes,
        # 1 - lambda on novel ones; the image head's takes the rest.
        toward_text = torch.full_like(text_probabilities[0], self.ensemble_weight)
        if novel is not None:
            toward_text[novel] = 1 - self.ensemble_weight
        return text_probabilities**toward_text * image_probabilities ** (1 - toward_text), head_features

    # --- training ------------------------------------------------------------------------------------------------
    def losses(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        shapes: list[tuple[int, int]],
        targets: list[dict],
        text: Tensor,
        regions: list[Tensor] | None = None,
        region_embeddings: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The RoI losses: on proposals sampled against the ``targets`` (labels 1.., 0 = background), the class-agnostic
        box loss, the text classifier's cross-entropy (not for ViLD-image) and the mask loss; with cached ``regions``
        (boxes per image) and their CLIP ``region_embeddings``, the distillation loss (not weighted here)."""
        proposals, matched, labels, regression_targets = self.select_training_samples(proposals, targets)
        pooled = self.box_roi_pool(features, proposals, shapes)
        distilled = regions is not None and self.variant != "text"
        if distilled:
            pooled_regions = self.box_roi_pool(features, regions, shapes)
        if distilled and self.image_head is None:
            # ViLD's one tower sees the sampled proposals and the cached regions together (one batch norm batch).
            head_features, embeddings = self.text_head(torch.cat([pooled, pooled_regions]))
            head_features, embeddings, distilled_embeddings = (
                head_features[: len(pooled)], embeddings[: len(pooled)], embeddings[len(pooled) :]
            )
        else:
            head_features, embeddings = self.text_head(pooled)
            if distilled:
                distilled_embeddings = self.image_head(pooled_regions)[1]
        all_labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        positive = all_labels > 0
        # Class-agnostic: a positive region regresses its one box toward its object (torchvision's smooth L1).
        box_loss = F.smooth_l1_loss(self.box_regressor(head_features)[positive].float(), regression_targets[positive],
                                    beta=1 / 9, reduction="sum") / all_labels.numel()  # fmt: skip
        losses = {"box_loss": box_loss}
        if self.variant != "image":
            losses["text_loss"] = F.cross_entropy(self.logits(embeddings, text), all_labels)
        if distilled:
            losses["image_loss"] = distillation_loss(distilled_embeddings, region_embeddings)
        if self.has_mask():
            losses["mask_loss"] = self.mask_loss(features, proposals, shapes, targets, matched, labels)
        return losses

    def mask_loss(self, features, proposals, shapes, targets, matched, labels) -> Tensor:
        positives = [labels_in_image > 0 for labels_in_image in labels]
        boxes = [p[keep] for p, keep in zip(proposals, positives)]
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, shapes)))
        matched = [m[keep] for m, keep in zip(matched, positives)]
        one_channel = [torch.zeros_like(t["labels"]) for t in targets]  # class-agnostic: channel 0 for every object
        return maskrcnn_loss(mask_logits, boxes, [t["masks"] for t in targets], one_channel, matched)

    # --- inference -----------------------------------------------------------------------------------------------
    def detect(self, features: dict[str, Tensor], proposals: list[Tensor], shapes, text: Tensor,
               novel: Tensor | None) -> list[dict[str, Tensor]]:  # fmt: skip
        """Per image ``boxes`` ``[K, 4]``, ``scores``, ``labels`` (0-based class indices), and ``masks`` with a mask
        branch: every class above ``score_thresh`` with the region's one box, per-class NMS, the
        ``detections_per_img`` best."""
        pooled = self.box_roi_pool(features, proposals, shapes)
        probabilities, head_features = self.class_probabilities(pooled, text, novel)
        boxes = self.box_coder.decode_single(self.box_regressor(head_features).float(), torch.cat(proposals).float())
        detections = []
        counts = [len(p) for p in proposals]
        for boxes_in_image, scores, shape in zip(boxes.split(counts), probabilities.split(counts), shapes):
            boxes_in_image = clip_boxes_to_image(boxes_in_image, shape)
            region, label = torch.nonzero(scores > self.score_thresh, as_tuple=True)
            candidate_boxes, candidate_scores = boxes_in_image[region], scores[region, label]
            kept = remove_small_boxes(candidate_boxes, min_size=1e-2)
            kept = kept[batched_nms(candidate_boxes[kept], candidate_scores[kept], label[kept], self.nms_thresh)]
            kept = kept[: self.detections_per_img]
            detections.append({"boxes": candidate_boxes[kept], "scores": candidate_scores[kept], "labels": label[kept]})
        if self.has_mask():
            found = [d["boxes"] for d in detections]
            mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, found, shapes)))
            masks = maskrcnn_inference(mask_logits, [torch.zeros_like(d["labels"]) for d in detections])
            for detection, mask in zip(detections, masks):
                detection["masks"] = mask
        return detections


def distillation_loss(region_embeddings: Tensor, clip_embeddings: Tensor) -> Tensor:
    """ViLD-image's L1: ``|region - CLIP|`` summed over the embedding's dimensions, averaged over regions (both
    L2-normalised), as the released code (its mean absolute difference times the 512 dimensions)."""
    if len(region_embeddings) == 0:
        return region_embeddings.sum() * 0
    return (region_embeddings.float() - F.normalize(clip_embeddings.float(), dim=-1)).abs().sum(dim=-1).mean()


class ViLD(FrozenCLIPMethod):
    """ViLD-text, ViLD-image, ViLD and ViLD-ens on torchvision's two-stage detector (see the module's docstring)."""

    headline = "AP50"

    def __init__(
        self,
        pretrained: str,
        variant: Variant = "vild",
        backbone: str = "resnet50",
        backbone_weights: str | None = None,
        fpn_channels: int = 256,
        head_convs: int = 4,
        head_fcs: int = 2,
        head_fc: int = 1024,
        masks: bool = False,
        min_size: int = 1024,
        max_size: int = 1024,
        anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        proposals_per_image: int = 1000,
        proposals_before_nms: int = 2000,
        roi_samples_per_image: int = 512,
        temperature: float = 0.01,
        image_loss_weight: float = 0.5,
        ensemble_weight: float = 2 / 3,
        score_threshold: float = 1e-4,
        nms_threshold: float = 0.5,
        detections_per_image: int = 300,
        lr: float = 0.32,
        momentum: float = 0.9,
        weight_decay: float = 4e-5,
        warmup_steps: int = 1000,
        decay_at: Sequence[float] = (0.9, 0.95),
        architecture: str | None = None,
        quick_gelu: bool | None = None,
    ):
        """
        Args:
            pretrained: the frozen CLIP whose text tower names the categories (and whose image tower made the region
                cache): a lit-clip, OpenAI, open_clip or Hugging Face checkpoint (see ``lit_clip.load_clip``).
            variant: "text" (ViLD-text), "image" (ViLD-image), "vild" (both losses) or "ensemble" (ViLD-ens).
            backbone, backbone_weights, fpn_channels: the ResNet (``resnet50`` as the paper; ``resnet18`` for a
                CPU), torchvision weights to start from (None: from scratch, as ViLD), the FPN's channels (256).
            head_convs, head_fcs, head_fc: the box head's convolutions (4), fully connected layers (2) and their
                width (1024), each with batch norm, as the released code.
            masks: a class-agnostic mask branch (Mask R-CNN), for mask AP; the data must give instance masks.
            min_size, max_size: the detector resizes each image so that its short side is ``min_size`` unless its
                long side would pass ``max_size`` (1024 and 1024 for ViLD's LVIS crops).
            anchor_sizes: one anchor size per pyramid level (with aspect ratios 0.5, 1, 2).
            proposals_per_image: proposals the RPN keeps after NMS (1000), in training and evaluation.
            proposals_before_nms: the RPN's best-scored anchors per pyramid level that go into its NMS (2000 in
                training, at most 1000 in evaluation, as the released code).
            roi_samples_per_image: proposals sampled per image for the RoI losses (512, a quarter positive).
            temperature: of the cosine logits (0.01).
            image_loss_weight: of the distillation loss (0.5).
            ensemble_weight: ViLD-ens's lambda, the text head's exponent on base classes (2/3).
            score_threshold, nms_threshold, detections_per_image: inference (LVIS: 1e-4, 0.5, 300; COCO keeps 100).
            lr, momentum, weight_decay: SGD's (the paper: 0.32 for batch 256, 0.9, 4e-5).
            warmup_steps, decay_at: linear warm-up from 1 % of ``lr``, then x 0.1 at each of these fractions of the
                training steps (the released LVIS config: at 162k and 171k of 180k steps).
            architecture, quick_gelu: see ``lit_clip.load_clip``.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.save_hyperparameters()
        embed_dim = self.model.text_projection.shape[1]
        self.transform = GeneralizedRCNNTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD)
        self.backbone = fpn_backbone(backbone, backbone_weights, fpn_channels)
        levels = len(self.backbone.body.return_layers) + 1  # and the max-pooled level
        if len(anchor_sizes) != levels:
            raise ValueError(f"anchor_sizes needs one size per pyramid level ({levels}), got {list(anchor_sizes)}")
        anchors = AnchorGenerator(tuple((size,) for size in anchor_sizes), ((0.5, 1.0, 2.0),) * levels)
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(fpn_channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
            pre_nms_top_n={"training": proposals_before_nms, "testing": min(proposals_before_nms, 1000)},
            post_nms_top_n={"training": proposals_per_image, "testing": proposals_per_image}, nms_thresh=0.7,
        )  # fmt: skip
        self.roi_heads = ViLDRoIHeads(
            fpn_channels, embed_dim, variant, temperature, ensemble_weight, head_convs, head_fcs, head_fc, masks,
            fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=roi_samples_per_image, positive_fraction=0.25,
            bbox_reg_weights=None, score_thresh=score_threshold, nms_thresh=nms_threshold,
            detections_per_img=detections_per_image,
        )  # fmt: skip
        # The names trained on: any other name of a vocabulary is novel (ViLD-ens leans toward the image head on
        # those). Set when training starts, saved in checkpoints.
        self.base_classnames: tuple[str, ...] = ()
        self._novel: Tensor | None = None

    # --- class names ---------------------------------------------------------------------------------------------
    def set_classes(self, classnames: Sequence[str], templates: Sequence[str] | None = None) -> None:
        """The vocabulary to detect: its text embeddings (from ``templates``, by default the data module's) and which
        of its names are novel."""
        self.build_text_classifier(classnames, templates)
        novel = [i for i, name in enumerate(classnames) if name not in self.base_classnames]
        self._novel = torch.tensor(novel, dtype=torch.long, device=self.device)

    def on_fit_start(self) -> None:
        self.base_classnames = tuple(self.trainer.datamodule.classnames)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["base_classnames"] = list(self.base_classnames)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.base_classnames = tuple(checkpoint.get("base_classnames", ()))

    # --- the detector ----------------------------------------------------------------------------------------------
    def features_and_proposals(self, batch: DetectionBatch, targets: list[dict] | None = None):
        """The backbone's pyramid and the RPN's proposals (and losses) for a batch, at the detector's resolution;
        ``targets`` in the batch's pixels are resized with the images."""
        pixels = denormalize(batch["image"])  # torchvision's detectors normalise [0, 1] images themselves
        images = [image[:, :h, :w] for image, (h, w) in zip(pixels, batch["image_size"].tolist())]
        image_list, targets = self.transform(images, targets)
        features = self.backbone(image_list.tensors)
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        return image_list, features, proposals, rpn_losses, targets

    def forward(self, batch: DetectionBatch) -> list[dict[str, Tensor]]:
        """Detections per image, boxes in the batch's pixels, labels indexing the current class names."""
        image_list, features, proposals, _, _ = self.features_and_proposals(batch)
        shapes = image_list.image_sizes
        detections = self.roi_heads.detect(features, proposals, shapes, self.text_classifier, self._novel)
        sizes = [tuple(size) for size in batch["image_size"].tolist()]
        detections = self.transform.postprocess(detections, shapes, sizes)
        for detection in detections:
            if "masks" in detection:  # pasted as [K, 1, H, W] probabilities
                detection["masks"] = detection["masks"][:, 0]
        return detections

    # --- training ------------------------------------------------------------------------------------------------
    def training_step(self, batch: DetectionBatch, batch_idx: int) -> Tensor:
        self.use_classes(self.trainer.datamodule.classnames)  # per step: a validation may have switched them
        return logged_sum(self, self.losses(batch), batch_size=len(batch["targets"]))

    def losses(self, batch: DetectionBatch) -> dict[str, Tensor]:
        """The weighted loss terms of a training batch, whose sum is minimised: the RPN's, the RoI heads' and, for the
        distilling variants, the weighted distillation. The text classifier must hold the base names."""
        if self.hparams.masks and "masks" not in batch["targets"][0]:
            raise ValueError("ViLD(masks=True) trains a mask head: give the data module instance masks (masks: true)")
        # torchvision's labels count from 1: 0 is the background.
        targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1, **({"masks": t["masks"]} if "masks" in t else {})}
                   for t in batch["targets"]]  # fmt: skip
        image_list, features, proposals, rpn_losses, resized = self.features_and_proposals(batch, targets)
        shapes = image_list.image_sizes
        regions, region_embeddings = self.cached_regions(batch, shapes)
        losses = {"rpn_objectness_loss": rpn_losses["loss_objectness"], "rpn_box_loss": rpn_losses["loss_rpn_box_reg"]}
        losses.update(self.roi_heads.losses(features, proposals, shapes, resized, self.text_classifier, regions,
                                            region_embeddings))  # fmt: skip
        if "image_loss" in losses:
            losses["image_loss"] = self.hparams.image_loss_weight * losses["image_loss"]
        return losses

    def cached_regions(
        self, batch: DetectionBatch, shapes: list[tuple[int, int]]
    ) -> tuple[list[Tensor] | None, Tensor | None]:
        """The cached regions of each image, resized with it to the detector's resolution, and their CLIP embeddings
        (None for ViLD-text, which distils nothing)."""
        if self.hparams.variant == "text":
            return None, None
        targets = batch["targets"]
        if "regions" not in targets[0]:
            raise ValueError(
                f"ViLD variant {self.hparams.variant!r} distils CLIP's embeddings of cached regions: give the data "
                "module a region_cache (build it with `python -m lit_clip.methods.detection.vild_cache`)"
            )
        sizes = batch["image_size"].tolist()
        regions = [resize_boxes(t["regions"], size, list(shape)) for t, size, shape in zip(targets, sizes, shapes)]
        return regions, torch.cat([t["region_embeddings"] for t in targets])

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.SGD(weight_decay_groups(self, h.weight_decay), lr=h.lr, momentum=h.momentum)
        total = self.trainer.estimated_stepping_batches
        milestones = [math.floor(fraction * total) for fraction in h.decay_at]

        def factor(step: int) -> float:
            # Linear warm-up from 1 % of the rate (the released code: 0.0032 to 0.32), then x 0.1 at each milestone.
            warmup = 0.01 + 0.99 * min(1.0, step / h.warmup_steps) if h.warmup_steps else 1.0
            return warmup * 0.1 ** sum(step >= milestone for milestone in milestones)

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- evaluation ----------------------------------------------------------------------------------------------
    def evaluation_metric(self, evaluation_set: EvaluationSet) -> DetectionMetrics:
        iou_types = ("bbox", "segm") if self.hparams.masks else ("bbox",)
        return DetectionMetrics(evaluation_set.annotations, iou_types, category_subsets=evaluation_set.subsets,
                                backend=evaluation_set.backend)  # fmt: skip

    def evaluate_batch(self, batch: DetectionBatch, metric: DetectionMetrics) -> None:
        if "targets" not in batch:  # every image of the batch was unreadable
            return
        metric.update(self(batch), batch["targets"])
