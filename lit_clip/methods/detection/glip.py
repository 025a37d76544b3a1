"""GLIP: detection as phrase grounding (Li et al., "Grounded Language-Image Pre-training", CVPR 2022; the released
code in microsoft/GLIP), with GLIPv2's inter-image region-word contrastive loss and masked language modelling
(Zhang et al., "GLIPv2: Unifying Localization and Vision-Language Understanding", NeurIPS 2022; from the paper,
its code was never released).

1. **The prompt.** Every training image comes with a caption whose phrases ground its boxes: its own caption
   (grounding data) or its detection classes' names with sampled negative names, ". "-separated (detection data,
   :func:`lit_clip.grounding.training_prompt`). A box's positive tokens are those of its phrase.
2. **Encoders and deep fusion.** The image through a backbone and a RetinaNet FPN (P3-P7), the prompt through BERT,
   then the fusion tower of :mod:`lit_clip.models.glip`: cross-attention both ways, BERT layers on the text,
   DyHead blocks on the image.
3. **Region-word alignment.** Per location (one anchor, 8 x the level's stride), the logit of each token:
   the location's features dotted with the token's projected features, divided by a learnt temperature, plus a
   learnt bias of the token. These replace class logits.
4. **Targets (ATSS).** For each box the 9 anchors nearest its centre on every level are candidates; those whose IoU
   passes the candidates' mean + standard deviation and whose centre lies inside the box are positive (the box of
   highest IoU when several claim one). A positive anchor's targets are its box's tokens; every other anchor's are 0.
5. **Losses.** Sigmoid focal loss (alpha 0.25, gamma 2) over every real token of every anchor, over the positives
   averaged across processes; GIoU of the decoded box weighted by the centerness target (x 2); centerness BCE.
6. **GLIPv2** (options, off by default): the region-word contrastive loss (each positive region against the tokens of
   every image of the batch, gathered across processes, its own phrase's tokens the targets), and masked language
   modelling of the prompt (15 % of its word pieces, BERT's 80/10/10 rule) through a prediction head on the fused
   tokens.
7. **Inference** from any prompt: a class's score at a location is the mean of its tokens' sigmoids; above 0.05,
   times the centerness, the 1000 best per level; score sqrt(class x centerness); per-class NMS (0.6); the best
   100. Long vocabularies are split into prompts of ``names_per_prompt`` names (GLIP's chunked evaluation), each
   its own pass through the fusion, their detections put together.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import batched_nms, box_iou, generalized_box_iou_loss, sigmoid_focal_loss
from transformers.models.bert.modeling_bert import BertLMPredictionHead

from lit_clip.batches import DetectionBatch, EvaluationSet, GroundingBatch
from lit_clip.distributed import distributed_rank_and_size, gather_padded, is_distributed
from lit_clip.grounding import names_prompt, positive_map, sentence_prompt, training_prompt, vocabulary_chunks
from lit_clip.methods.class_sets import EvaluatesPerClassSet, evaluation_sets
from lit_clip.losses import logged_sum
from lit_clip.metrics import DetectionMetrics
from lit_clip.metrics.grounding import PhraseGroundingRecall
from lit_clip.models.language import language_backbone
from lit_clip.models.glip import STRIDES, GLIPHead, ImagePyramid, anchors, decode_boxes, official_key
from lit_clip.transforms import denormalize

# --- targets and losses -------------------------------------------------------------------------------------------


def atss_assign(anchor_boxes: Tensor, level_counts: Sequence[int], boxes: Tensor, topk: int = 9) -> Tensor:
    """ATSS: the index of the box each anchor is assigned to, -1 for none (``[A]``). Per box, the ``topk`` anchors
    of each level nearest its centre are candidates; positive where the IoU is at least the candidates' mean +
    standard deviation and the anchor's centre lies inside the box (by more than 0.01 px); an anchor claimed by
    several boxes goes to the one of highest IoU. IoU counts the last pixel (+1), as the released code."""
    assigned = torch.full((len(anchor_boxes),), -1, dtype=torch.long, device=anchor_boxes.device)
    if len(boxes) == 0:
        return assigned
    ious = _legacy_iou(anchor_boxes, boxes)  # [A, G]
    anchor_centres = (anchor_boxes[:, :2] + anchor_boxes[:, 2:]) / 2
    distances = torch.cdist(anchor_centres, (boxes[:, :2] + boxes[:, 2:]) / 2)
    candidates, start = [], 0
    for count in level_counts:
        nearest = distances[start : start + count].topk(min(topk, count), dim=0, largest=False).indices
        candidates.append(nearest + start)
        start += count
    candidates = torch.cat(candidates)  # [K, G]
    columns = torch.arange(len(boxes), device=boxes.device)
    candidate_ious = ious[candidates, columns]
    threshold = candidate_ious.mean(dim=0) + candidate_ious.std(dim=0)
    centres = anchor_centres[candidates]  # [K, G, 2]
    inside = torch.stack([centres[..., 0] - boxes[:, 0], centres[..., 1] - boxes[:, 1], boxes[:, 2] - centres[..., 0],
                          boxes[:, 3] - centres[..., 1]]).amin(dim=0) > 0.01  # fmt: skip
    positive = (candidate_ious >= threshold) & inside
    claimed = torch.full_like(ious, -math.inf)
    rows, cols = candidates[positive], columns.expand_as(candidates)[positive]
    claimed[rows, cols] = ious[rows, cols]
    best, which = claimed.max(dim=1)
    assigned[best > -math.inf] = which[best > -math.inf]
    return assigned


def _legacy_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU with widths counting the last pixel (maskrcnn-benchmark's ``boxlist_iou``)."""
    return box_iou(a + torch.tensor([0, 0, 1, 1], device=a.device), b + torch.tensor([0, 0, 1, 1], device=b.device))


def centerness_targets(boxes: Tensor, anchor_boxes: Tensor) -> Tensor:
    """How central each anchor's centre is in its box: sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b))."""
    cx, cy = (anchor_boxes[:, 0] + anchor_boxes[:, 2]) / 2, (anchor_boxes[:, 1] + anchor_boxes[:, 3]) / 2
    left_right = torch.stack([cx - boxes[:, 0], boxes[:, 2] - cx], dim=1)
    top_bottom = torch.stack([cy - boxes[:, 1], boxes[:, 3] - cy], dim=1)
    return torch.sqrt(left_right.amin(1) / left_right.amax(1) * top_bottom.amin(1) / top_bottom.amax(1))


def token_focal_loss(logits: Tensor, targets: Tensor, text_mask: Tensor, alpha: float, gamma: float) -> Tensor:
    """The sigmoid focal loss summed over every anchor and every real token (``text_mask`` ``[B, L]``), as GLIP's
    ``token_sigmoid_binary_focal_loss`` (torchvision's formula)."""
    real = text_mask.bool()[:, None, :].expand_as(logits)
    return sigmoid_focal_loss(logits[real].float(), targets[real].float(), alpha, gamma, reduction="sum")


def mean_over_processes(value: float, device: torch.device) -> float:
    """``value`` averaged over the processes (the released code's ``reduce_sum / num_gpus``); ``device``: where the
    process group communicates (the model's)."""
    if not is_distributed():
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total)
    return total.item() / torch.distributed.get_world_size()


def region_word_contrastive_loss(regions: Tensor, region_image: Tensor, region_tokens: Tensor, tokens: Tensor,
                                 text_mask: Tensor, first_image: int, temperature: Tensor,
                                 regions_in_batch: float) -> Tensor:  # fmt: skip
    """GLIPv2's inter-image region-word contrastive loss: each positive region ``regions`` ``[P, C]`` (of image
    ``first_image + region_image[p]`` of the global batch) against the real tokens of every image of the global batch
    (``tokens`` ``[B, L, C]``, ``text_mask`` ``[B, L]``, gathered from all processes), its phrase's tokens
    ``region_tokens`` ``[P, L]`` the target distribution (each of them 1 / their number): the cross-entropy of the
    softmax over all those tokens, summed over the regions and divided by ``regions_in_batch``, the number of
    regions of the global batch."""
    if len(regions) == 0:
        return tokens.sum() * 0
    logits = (regions.float() @ tokens.flatten(0, 1).float().T) / temperature
    logits = logits.masked_fill(~text_mask.bool().flatten()[None, :], -math.inf)
    length = tokens.shape[1]
    targets = torch.zeros_like(logits)
    for p, image in enumerate(region_image.tolist()):
        start = (first_image + image) * length
        targets[p, start : start + length] = region_tokens[p].float() / region_tokens[p].sum()
    log_probabilities = logits.log_softmax(dim=-1).masked_fill(targets == 0, 0)
    return -(targets * log_probabilities).sum() / max(regions_in_batch, 1.0)


def gathered_region_word_loss(regions: Tensor, region_image: Tensor, region_tokens: Tensor, tokens: Tensor,
                              text_mask: Tensor, temperature: Tensor) -> Tensor:  # fmt: skip
    """:func:`region_word_contrastive_loss` over the global batch: this process's regions (of its local images)
    against the tokens of every process's images, gathered with gradient (prompts padded to the longest; every
    process holds as many images, as training loaders drop partial batches). Scaled by the process count, so that
    DDP's gradient averaging gives the gradient of the global batch's loss, and the processes' mean value is it."""
    first_image = 0
    _, world = distributed_rank_and_size()
    if is_distributed():
        longest = max_over_processes(tokens.shape[1], tokens.device)
        tokens = F.pad(tokens, (0, 0, 0, longest - tokens.shape[1]))
        region_tokens = F.pad(region_tokens, (0, longest - region_tokens.shape[1]))
        text_mask = F.pad(text_mask, (0, longest - text_mask.shape[1]))
        gathered = gather_padded(tokens, text_mask.float(), rows=None)
        tokens, text_mask, first_image = gathered.features[0], gathered.features[1] > 0, gathered.offset
    regions_in_batch = mean_over_processes(float(len(region_image)), tokens.device) * world
    loss = region_word_contrastive_loss(regions, region_image, region_tokens, tokens, text_mask, first_image,
                                        temperature, regions_in_batch)  # fmt: skip
    return loss * world


def max_over_processes(value: int, device: torch.device) -> int:
    """The largest ``value`` of any process."""
    if not is_distributed():
        return value
    total = torch.tensor([value], device=device)
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.MAX)
    return int(total.item())


def mask_tokens(input_ids: Tensor, attention_mask: Tensor, special: Tensor, mask_id: int, vocab_size: int,
                probability: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """BERT's masking for masked language modelling: ``probability`` of the real, non-special tokens are chosen;
    80 % of them become [MASK], 10 % a random token, 10 % stay. Returns the masked ids and the labels (the chosen
    tokens' ids, -100 elsewhere)."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability).to(input_ids.device)
    chosen &= attention_mask.bool() & ~special
    labels = input_ids.masked_fill(~chosen, -100)
    draw = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
    masked = input_ids.masked_fill(chosen & (draw < 0.8), mask_id)
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator).to(input_ids.device)
    masked = torch.where(chosen & (draw >= 0.8) & (draw < 0.9), random_tokens, masked)
    return masked, labels


# --- the method ---------------------------------------------------------------------------------------------------


class GLIP(EvaluatesPerClassSet):
    """GLIP and GLIPv2's grounding losses on our data modules (see the module's docstring)."""

    headline = "AP50"

    def __init__(
        self,
        backbone: str = "swin_tiny_patch4_window7_224",
        backbone_pretrained: bool = False,
        channels: int = 256,
        text_encoder: str | None = "bert-base-uncased",
        text_encoder_type: str = "bert",
        text_words: Sequence[str] = (),
        text_width: int = 768,
        text_layers: int = 12,
        text_heads: int = 12,
        max_query_length: int = 256,
        blocks: int = 6,
        fusion_depth: int = 6,
        fusion_dim: int = 2048,
        fusion_heads: int = 8,
        layer_scale: float | None = None,
        deformable: bool = True,
        dyrelu: bool = True,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        pixel_mean: Sequence[float] = (103.53, 116.28, 123.675),
        pixel_std: Sequence[float] = (57.375, 57.12, 58.395),
        bgr: bool = True,
        negatives: int = 85,
        anchor_scale: float = 8.0,
        topk: int = 9,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_loss_weight: float = 2.0,
        token_loss_weight: float = 1.0,
        log_scale: float = 0.0,
        region_word_loss_weight: float = 0.0,
        mlm_loss_weight: float = 0.0,
        mlm_probability: float = 0.15,
        names_per_prompt: int | None = None,
        score_threshold: float = 0.05,
        candidates_per_level: int = 1000,
        nms_threshold: float = 0.6,
        detections_per_image: int = 100,
        lr: float = 1e-4,
        text_lr: float = 1e-5,
        weight_decay: float = 1e-4,
        warmup_steps: int = 2000,
        warmup_factor: float = 0.001,
        decay_at: Sequence[float] = (0.67, 0.89),
        weights: str | None = None,
        prompt: str | Sequence[str] | None = None,
    ):
        """
        Args:
            backbone, backbone_pretrained: a timm model whose stride 8, 16, 32 features feed the FPN
                ("swin_tiny_patch4_window7_224" as GLIP-T; "resnet18" for a CPU), with timm's pretrained weights.
            channels: the FPN's and the head's channels (256).
            text_encoder, text_encoder_type: "bert": a BERT by hub id or folder ("bert-base-uncased"), or None for a
                random-initialised BERT of ``text_width``, ``text_layers``, ``text_heads`` whose vocabulary is
                ``text_words`` whole and any other word in letters; "clip": the text tower of the CLIP checkpoint
                ``text_encoder`` (its 77-token context; see ``lit_clip.models.language``).
            max_query_length: prompts are cut at this many tokens (256).
            blocks, fusion_depth: DyHead blocks in the head (6 for GLIP-T, 8 for GLIP-L) and how many of the first
                ones fuse image and text (all: GLIP-T(B, C); 0: GLIP-T(A)).
            fusion_dim, fusion_heads, layer_scale: the cross-attention's width (2048) and heads (8), its layer
                scale's initial value (None: 1 / blocks, as the released code).
            deformable, dyrelu: DyHead's deformable convolutions and dynamic ReLU (both in GLIP-T).
            min_size, max_size: images are resized so that the short side is ``min_size`` (a list: one drawn per
                training image by torchvision's transform, GLIP's multi-scale training draws one per batch) unless
                the long side would pass ``max_size``.
            pixel_mean, pixel_std, bgr: the backbone's input normalisation in 0-255 pixels (the released models'
                BGR Caffe statistics).
            negatives: absent class names drawn into a detection batch's prompts (GLIP: up to 85).
            anchor_scale: an anchor's side in strides of its level (8: 64 px on P3 to 1024 px on P7).
            topk: ATSS's candidates per level (9).
            focal_alpha, focal_gamma, box_loss_weight, token_loss_weight: the token focal loss (0.25, 2), the GIoU
                loss's weight (2), the token loss's (1: the released DOT_PRODUCT_TOKEN_LOSS_WEIGHT).
            log_scale: the initial log temperature of the alignment logits (0: the released LOG_SCALE).
            region_word_loss_weight, mlm_loss_weight, mlm_probability: GLIPv2's losses (0: off) and the share of
                word pieces masked for MLM (0.15).
            names_per_prompt: evaluation vocabularies are split into prompts of this many names (GLIP: 40 for LVIS);
                None: one prompt.
            score_threshold, candidates_per_level, nms_threshold, detections_per_image: inference (0.05, 1000, 0.6,
                100; LVIS 300).
            lr, text_lr, weight_decay: AdamW's (1e-4; 1e-5 for BERT; 1e-4, none on biases and norms).
            warmup_steps, warmup_factor, decay_at: linear warm-up from ``warmup_factor`` x lr, then x 0.1 at each
                of these fractions of the training steps (2000, 0.001, [0.67, 0.89]).
            weights: a released GLIP checkpoint (``glip_tiny_model_o365_goldg.pth``) to start from; its keys are
                mapped to ours (``lit_clip.models.glip.official_key``).
            prompt: what ``lit-clip predict`` grounds: a list of names (detected as classes, "red circle", "blue
                star"), or a sentence whose noun phrases are grounded ("a red circle left of two blue stars", see
                ``lit_clip.grounding.sentence_prompt``); None: the data module's test vocabulary.
        """
        super().__init__()
        self.save_hyperparameters()
        self.language = language_backbone(text_encoder, text_encoder_type, text_words, text_width, text_layers,
                                          text_heads, max_query_length)  # fmt: skip
        self.pyramid = ImagePyramid(backbone, channels, backbone_pretrained)
        self.head = GLIPHead(channels, self.language.layer_config, blocks, fusion_depth, fusion_dim, fusion_heads,
                             layer_scale, deformable, dyrelu, log_scale=log_scale)  # fmt: skip
        if mlm_loss_weight and text_encoder_type != "bert":
            raise ValueError("mlm_loss_weight: masked language modelling needs a BERT text encoder (text_encoder_type "
                             "'bert'); CLIP's vocabulary has no [MASK]")  # fmt: skip
        self.mlm_head = BertLMPredictionHead(self.language.layer_config) if mlm_loss_weight else None
        mean, std = [m / 255 for m in pixel_mean], [s / 255 for s in pixel_std]
        sizes = (min_size,) if isinstance(min_size, int) else tuple(min_size)
        self.transform = GeneralizedRCNNTransform(sizes, max_size, mean, std, size_divisible=32)
        self.base_classnames: tuple[str, ...] = ()
        if weights is not None:
            self.load_official(weights)

    # --- class names ----------------------------------------------------------------------------------------------
    def set_classes(self, classnames: Sequence[str]) -> None:
        """The vocabulary detections name: prompts are written from it per batch."""

    def on_fit_start(self) -> None:
        # The names trained on (pictures show the others as novel); saved in checkpoints.
        self.base_classnames = tuple(self.trainer.datamodule.classnames)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["base_classnames"] = list(self.base_classnames)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.base_classnames = tuple(checkpoint.get("base_classnames", ()))

    # --- encoders and head ----------------------------------------------------------------------------------------
    def images(self, batch: dict, targets: list[dict] | None = None):
        """The batch's images resized and normalised for the backbone, and its pyramid; ``targets`` resized too."""
        pixels = denormalize(batch["image"])
        if self.hparams.bgr:
            pixels = pixels.flip(1)
        images = [image[:, :h, :w] for image, (h, w) in zip(pixels, batch["image_size"].tolist())]
        image_list, targets = self.transform(images, targets)
        return image_list, self.pyramid(image_list.tensors), targets

    def align(self, levels: list[Tensor], captions: Sequence[str], input_ids: Tensor | None = None):
        """The head's predictions for ``levels`` and ``captions`` (their token ids replaced by ``input_ids``, as masked
        language modelling does), with the tokenization."""
        tokens = self.language.tokenize(captions)
        ids = tokens["input_ids"] if input_ids is None else input_ids
        text = self.language(ids, tokens["attention_mask"])
        return self.head(levels, text, tokens["attention_mask"]), tokens

    # --- training -------------------------------------------------------------------------------------------------
    def training_step(self, batch: GroundingBatch | DetectionBatch, batch_idx: int) -> Tensor:
        return logged_sum(self, self.losses(batch), batch_size=len(batch["targets"]))

    def as_grounding(self, batch: DetectionBatch, classnames: Sequence[str]) -> GroundingBatch:
        """A detection batch as grounding: each image's prompt names its classes and sampled negatives of
        ``classnames`` (its labels' names); a box grounds its class's name. The draw is a function of the step and
        rank."""
        captions, targets = [], []
        for b, target in enumerate(batch["targets"]):
            rng = np.random.default_rng([self.global_step, self.global_rank, b])
            prompt, phrase_of = training_prompt(target["labels"].tolist(), classnames, self.hparams.negatives, rng)
            labels = torch.tensor([phrase_of[int(c)] for c in target["labels"]], dtype=torch.long)
            captions.append(prompt.caption)
            targets.append({**target, "labels": labels.to(target["labels"].device), "phrases": prompt.phrases})
        return {**batch, "caption": captions, "targets": targets}

    def losses(
        self, batch: GroundingBatch | DetectionBatch, classnames: Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        """The weighted loss terms of a training batch, whose sum is minimised. A detection batch is made grounding
        with prompts of ``classnames`` (by default the data module's)."""
        h = self.hparams
        if "caption" not in batch:
            batch = self.as_grounding(batch, self.trainer.datamodule.classnames if classnames is None else classnames)
        targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in batch["targets"]]
        image_list, levels, targets = self.images(batch, targets)
        tokens = self.language.tokenize(batch["caption"])
        input_ids, mlm_labels = tokens["input_ids"], None
        if self.mlm_head is not None:
            special = (tokens["offsets"][..., 1] == 0).to(input_ids.device)  # specials and padding: (0, 0)
            input_ids, mlm_labels = mask_tokens(input_ids, tokens["attention_mask"], special,
                                                self.language.mask_token_id, self.language.vocab_size,
                                                h.mlm_probability)  # fmt: skip
        out, _ = self.align(levels, batch["caption"], input_ids)
        sizes = [level.shape[-2:] for level in levels]
        anchor_boxes = anchors(sizes, STRIDES[: len(sizes)], self.hparams.anchor_scale, out["boxes"].device)
        counts = [h_ * w_ for h_, w_ in sizes]
        token_targets = torch.zeros_like(out["logits"])
        positives, matched_boxes, region_image, region_tokens = [], [], [], []
        for b, (target, grounding) in enumerate(zip(targets, batch["targets"])):
            phrase_tokens = positive_map(tokens["offsets"][b], grounding["phrases"], batch["caption"][b],
                                         required=False).to(token_targets.device)  # fmt: skip
            box_tokens = phrase_tokens[target["labels"]]  # [N, L]
            # A box whose phrase the tokenizer cut off is left out, as GLIP drops the boxes of names that overflow.
            kept = box_tokens.any(dim=1)
            box_tokens, target = box_tokens[kept], {"boxes": target["boxes"][kept], "labels": target["labels"][kept]}
            assigned = atss_assign(anchor_boxes, counts, target["boxes"], h.topk)
            positive = assigned >= 0
            token_targets[b, positive] = box_tokens[assigned[positive]].to(token_targets.dtype)
            positives.append(positive)
            matched_boxes.append(target["boxes"][assigned[positive]])
            region_image.append(torch.full((int(positive.sum()),), b, device=positive.device))
            region_tokens.append(box_tokens[assigned[positive]])
        positive = torch.stack(positives)  # [B, A]
        num_positive = max(mean_over_processes(float(positive.sum()), positive.device), 1.0)
        token_loss = token_focal_loss(out["logits"], token_targets, tokens["attention_mask"], h.focal_alpha,
                                      h.focal_gamma)  # fmt: skip
        losses = {"token_loss": h.token_loss_weight * token_loss / num_positive}
        boxes = torch.cat(matched_boxes)
        anchors_of_positives = anchor_boxes.expand(len(targets), -1, -1)[positive]
        if len(boxes):
            centerness = centerness_targets(boxes, anchors_of_positives)
            predicted = decode_boxes(out["boxes"][positive], anchors_of_positives)
            predicted = torch.cat([predicted[:, :2], torch.maximum(predicted[:, :2], predicted[:, 2:])], dim=1)
            giou = generalized_box_iou_loss(predicted, boxes.float(), reduction="none", eps=1e-7)
            centerness_sum = max(mean_over_processes(float(centerness.sum()), centerness.device), 1e-6)
            losses["box_loss"] = h.box_loss_weight * (giou * centerness).sum() / centerness_sum
            losses["centerness_loss"] = F.binary_cross_entropy_with_logits(
                out["centerness"][positive].float(), centerness, reduction="sum") / num_positive
        else:
            losses["box_loss"] = out["boxes"].sum() * 0
            losses["centerness_loss"] = out["centerness"].sum() * 0
        if h.region_word_loss_weight:
            losses["region_word_loss"] = h.region_word_loss_weight * self.region_word_loss(
                out, positive, torch.cat(region_image), torch.cat(region_tokens), tokens["attention_mask"])
        if self.mlm_head is not None:
            mlm_logits = self.mlm_head(out["text"])
            losses["mlm_loss"] = h.mlm_loss_weight * F.cross_entropy(mlm_logits.flatten(0, 1).float(),
                                                                     mlm_labels.flatten(), ignore_index=-100)
        return losses

    def region_word_loss(self, out: dict, positive: Tensor, region_image: Tensor, region_tokens: Tensor,
                         text_mask: Tensor) -> Tensor:  # fmt: skip
        """GLIPv2's inter-image loss on the head's own alignment features: the positive locations' features against
        every image's projected tokens."""
        return gathered_region_word_loss(out["regions"][positive], region_image, region_tokens,
                                         out["projected_tokens"], text_mask, self.head.log_scale.exp())  # fmt: skip

    def configure_optimizers(self):
        h = self.hparams
        groups = []
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            decay = 0.0 if parameter.ndim < 2 else h.weight_decay  # biases, norms, scales: no decay (as released)
            lr = h.text_lr if name.startswith("language.") else h.lr
            groups.append({"params": [parameter], "lr": lr, "weight_decay": decay})
        optimizer = torch.optim.AdamW(groups, lr=h.lr, weight_decay=h.weight_decay)
        total = self.trainer.estimated_stepping_batches
        milestones = [math.floor(fraction * total) for fraction in h.decay_at]

        def factor(step: int) -> float:
            warmup = h.warmup_factor + (1 - h.warmup_factor) * min(1.0, step / h.warmup_steps) if h.warmup_steps \
                else 1.0  # fmt: skip
            return warmup * 0.1 ** sum(step >= milestone for milestone in milestones)

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- inference ------------------------------------------------------------------------------------------------
    def detect(self, batch: dict, names: Sequence[str]) -> list[dict[str, Tensor]]:
        """Detections of ``names`` per image (``boxes`` in the batch's pixels, ``scores``, ``labels`` indexing
        ``names``), the vocabulary split into prompts of ``names_per_prompt`` names."""
        image_list, levels, _ = self.images(batch)
        found: list[list[dict]] = [[] for _ in range(len(levels[0]))]
        for chunk in vocabulary_chunks(names, self.hparams.names_per_prompt):
            prompt = names_prompt([names[i] for i in chunk])
            phrases = [prompt.phrases] * len(found)
            for b, detection in enumerate(self.ground(levels, image_list.image_sizes, [prompt.caption] * len(found),
                                                      phrases)):  # fmt: skip
                detection["labels"] = detection["labels"] + chunk.start
                found[b].append(detection)
        detections = [{key: torch.cat([d[key] for d in pieces]) for key in pieces[0]} for pieces in found]
        sizes = [tuple(size) for size in batch["image_size"].tolist()]
        return self.transform.postprocess(detections, image_list.image_sizes, sizes)

    def ground(self, levels: list[Tensor], shapes: list[tuple[int, int]], captions: Sequence[str],
               phrases: Sequence[Sequence[Sequence[tuple[int, int]]]]) -> list[dict[str, Tensor]]:  # fmt: skip
        """Boxes per image in the detector's pixels with their phrase (``labels``) and ``scores``, for each image's
        caption and phrases (a class's name is a phrase)."""
        out, tokens = self.align(levels, captions)
        sizes = [level.shape[-2:] for level in levels]
        anchor_boxes = anchors(sizes, STRIDES[: len(sizes)], self.hparams.anchor_scale, out["boxes"].device)
        counts = [h_ * w_ for h_, w_ in sizes]
        probabilities = out["logits"].float().sigmoid()
        results = []
        for b, shape in enumerate(shapes):
            phrase_tokens = positive_map(tokens["offsets"][b], phrases[b], captions[b]).to(probabilities.device)
            scores = (probabilities[b] @ phrase_tokens.float().T) / phrase_tokens.sum(dim=1)  # mean over the tokens
            results.append(self.select(scores, out["boxes"][b], out["centerness"][b].float().sigmoid(), anchor_boxes,
                                       counts, shape))  # fmt: skip
        return results

    def select(self, scores: Tensor, deltas: Tensor, centerness: Tensor, anchor_boxes: Tensor, counts: Sequence[int],
               shape: tuple[int, int]) -> dict[str, Tensor]:  # fmt: skip
        """GLIP's post-processing of one image (see the module's docstring, step 7)."""
        h = self.hparams
        boxes, kept_scores, labels, start = [], [], [], 0
        for count in counts:
            level = slice(start, start + count)
            start += count
            candidate = scores[level] > h.score_threshold
            weighted = (scores[level] * centerness[level, None])[candidate]
            top = weighted.topk(min(h.candidates_per_level, len(weighted))).indices
            location, label = candidate.nonzero(as_tuple=True)
            location, label = location[top], label[top]
            boxes.append(decode_boxes(deltas[level][location], anchor_boxes[level][location]))
            kept_scores.append(weighted[top].sqrt())
            labels.append(label)
        boxes, kept_scores, labels = torch.cat(boxes), torch.cat(kept_scores), torch.cat(labels)
        height, width = shape
        boxes = torch.stack([boxes[:, 0].clamp(0, width - 1), boxes[:, 1].clamp(0, height - 1),
                             boxes[:, 2].clamp(0, width - 1), boxes[:, 3].clamp(0, height - 1)], dim=1)  # fmt: skip
        # Per-class NMS with widths counting the last pixel, as the released GPU kernel (ml_nms.cu).
        kept = batched_nms(boxes + boxes.new_tensor([0, 0, 1, 1]), kept_scores, labels, h.nms_threshold)
        kept = kept[: h.detections_per_image]
        return {"boxes": boxes[kept], "scores": kept_scores[kept], "labels": labels[kept]}

    def forward(self, batch: dict, names: Sequence[str] | None = None) -> list[dict[str, Tensor]]:
        """Detections of ``names`` (by default the current class names) per image."""
        return self.detect(batch, self.classnames if names is None else names)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """One row per detection: the image's ``path`` (or its ``index``), the ``phrase`` (a name of the prompt),
        its ``score`` and ``box`` ``[K, 4]`` (x1, y1, x2, y2 in the file's pixels), and the box's corners apart."""
        prompt = self.hparams.prompt
        if isinstance(prompt, str):
            grounded = sentence_prompt(prompt)
            image_list, levels, _ = self.images(batch)
            found = self.ground(levels, image_list.image_sizes, [grounded.caption] * len(levels[0]),
                                [grounded.phrases] * len(levels[0]))  # fmt: skip
            sizes = [tuple(size) for size in batch["image_size"].tolist()]
            found, names = self.transform.postprocess(found, image_list.image_sizes, sizes), grounded.names
        else:
            names = list(prompt) if prompt else list(evaluation_sets(self.trainer.datamodule, "test")[0].classnames)
            found = self.detect(batch, names)
        sources = batch.get("path") or [str(i) for i in batch["index"].tolist()]
        rows: dict = {"path": [], "phrase": [], "score": [], "box": []}
        for source, detection in zip(sources, found):
            rows["path"] += [source] * len(detection["labels"])
            rows["phrase"] += [names[k] for k in detection["labels"].tolist()]
            rows["score"].append(detection["scores"].float().cpu())
            rows["box"].append(detection["boxes"].float().cpu())
        rows["score"], rows["box"] = torch.cat(rows["score"]), torch.cat(rows["box"]).reshape(-1, 4)
        for k, corner in enumerate(("x1", "y1", "x2", "y2")):
            rows[corner] = rows["box"][:, k]
        return rows

    # --- evaluation -----------------------------------------------------------------------------------------------
    def evaluation_metric(self, evaluation_set: EvaluationSet):
        if evaluation_set.phrase_grounding:
            return PhraseGroundingRecall(merge_boxes=getattr(self.trainer.datamodule, "merge_boxes", False))
        return DetectionMetrics(evaluation_set.annotations, ("bbox",), category_subsets=evaluation_set.subsets,
                                backend=evaluation_set.backend)  # fmt: skip

    def evaluate_batch(self, batch: dict, metric) -> None:
        if "targets" not in batch:  # every image of the batch was unreadable
            return
        if isinstance(metric, PhraseGroundingRecall):
            ranked, truth = self.ground_phrases(batch)
            metric.update(ranked, truth, batch["index"])
        else:
            metric.update(self(batch), batch["targets"])

    def ground_phrases(self, batch: GroundingBatch) -> tuple[list[list[Tensor]], list[list[Tensor]]]:
        """Per image and phrase, the predicted boxes best first and the phrase's true boxes (batch pixels)."""
        image_list, levels, _ = self.images(batch)
        phrases = [target["phrases"] for target in batch["targets"]]
        found = self.ground(levels, image_list.image_sizes, batch["caption"], phrases)
        sizes = [tuple(size) for size in batch["image_size"].tolist()]
        found = self.transform.postprocess(found, image_list.image_sizes, sizes)
        ranked, truth = [], []
        for detection, target in zip(found, batch["targets"]):
            grounded = [k for k in range(len(target["phrases"])) if (target["labels"] == k).any()]
            ranked.append([detection["boxes"][detection["labels"] == k] for k in grounded])
            truth.append([target["boxes"][target["labels"] == k] for k in grounded])
        return ranked, truth

    @torch.no_grad()
    def explain(self, batch: GroundingBatch, b: int = 0) -> dict:
        """What the pictures show of image ``b`` of a grounding batch: ``phrases`` (their text), the best ``boxes``
        of each (batch pixels; none: zeros) and their ``scores``; each token of the phrases (``tokens``) and its
        alignment map on the finest level, ``token_maps`` ``[T, h, w]`` sigmoid probabilities over the image."""
        one = {"image": batch["image"][b : b + 1], "image_size": batch["image_size"][b : b + 1]}
        caption, phrases = batch["caption"][b], batch["targets"][b]["phrases"]
        image_list, levels, _ = self.images(one)
        found = self.ground(levels, image_list.image_sizes, [caption], [phrases])
        found = self.transform.postprocess(found, image_list.image_sizes, [tuple(one["image_size"][0].tolist())])[0]
        boxes, scores = torch.zeros(len(phrases), 4), torch.zeros(len(phrases))
        for k in range(len(phrases)):
            mine = (found["labels"] == k).nonzero().flatten()
            if len(mine):  # detections come best first
                boxes[k], scores[k] = found["boxes"][mine[0]].cpu(), found["scores"][mine[0]].cpu()
        out, tokens = self.align(levels, [caption])
        height, width = levels[0].shape[-2:]
        finest = out["logits"][0, : height * width].float().sigmoid().T.reshape(-1, height, width)
        shown_h, shown_w = (math.ceil(side / STRIDES[0]) for side in image_list.image_sizes[0])
        # The phrases' own tokens: the words that ground something.
        words = positive_map(tokens["offsets"][0], phrases, caption).any(dim=0).nonzero().flatten().cpu()
        names = self.language.token_names(tokens["input_ids"][0, words].tolist())
        return {"phrases": [" ".join(caption[s:e] for s, e in phrase) for phrase in phrases], "boxes": boxes,
                "scores": scores, "tokens": names, "token_maps": finest[words, :shown_h, :shown_w].cpu()}  # fmt: skip

    # --- the released checkpoints ---------------------------------------------------------------------------------
    def load_official(self, path: str) -> None:
        """Load a released GLIP checkpoint (``{"model": state_dict}`` with ``module.`` keys), its keys mapped to ours;
        an error names the keys that do not fit."""
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        state = checkpoint.get("model", checkpoint)
        mapped = {official_key(key): value for key, value in state.items()}
        mapped.pop(None, None)
        own = self.state_dict()
        unknown = sorted(key for key in mapped if key not in own)
        wrong = sorted(key for key in mapped if key in own and own[key].shape != mapped[key].shape)
        missing = sorted(key for key in own if key not in mapped and not key.startswith("mlm_head."))
        if unknown or wrong or missing:
            raise ValueError(
                f"{path} does not fit this GLIP: {len(unknown)} unknown keys {unknown[:3]}, {len(wrong)} of another "
                f"shape {wrong[:3]}, {len(missing)} missing {missing[:3]}; expected a released GLIP checkpoint of the "
                "same backbone, blocks and text encoder"
            )
        self.load_state_dict(mapped, strict=False)
