"""DepthCLIP (Zhang et al., "Can Language Understand Depth?", ACM MM 2022): monocular depth from a frozen CLIP with
no training, by asking every location of the image how far away it is in words.

What the official code does (Adonis-galaxy/DepthCLIP, ``DepthCLIP_code/monoclip.py``, ``clip/model.py``,
``eval.py``, ``calculate_error.py``), and so this module by default:

1. **Dense image features**: RN50's ``layer4`` map (the attention pool skipped: its ``ModifiedResNet.forward``
   returns the map), 2048 channels at 1/32 of the image (13 x 17 for NYU's 416 x 544 input), L2-normalised over
   the channels at every location, then cut to the text embedding's 1024 channels by
   ``F.interpolate(features, scale_factor=0.5)`` along the channel axis: a nearest-neighbour interpolation, which
   keeps every other channel (channel ``floor(d * 2048 / 1024)`` for output channel ``d``). There is no
   renormalisation after the cut, so a location's feature has a norm of about ``sqrt(1024 / 2048)``; this is
   :func:`interpolate_channels`, with the embedding width of any CLIP (``size=`` instead of ``scale_factor``, which
   is the same channels for 2048 -> 1024).
2. **Text features** of ``"This {obj} is {word}"`` with ``obj = "object"`` and the seven distance words ``giant``,
   ``extremely close``, ``close``, ``not in distance``, ``a little remote``, ``far``, ``unseen``, one per depth bin
   of ``[1.00, 1.50, 2.00, 2.25, 2.50, 2.75, 3.00]`` metres; each word's embedding is the renormalised mean of its
   templates' normalised embeddings (zero-shot CLIP's prompt ensemble, of one template).
3. **Logits** ``100 * feature . text / temperature`` with temperature 0.1 (so 1000 x the dot product), a softmax
   over the bins at every location, and the **depth as the expected bin value** ``sum_k p_k * bin_k``
   (:func:`expected_depth`).
4. **Flip averaging**: the depth of the horizontally flipped image, flipped back, averaged with the image's, at the
   feature map's resolution; then **bilinear upsampling** (``align_corners=True``) to the image size.
5. **Evaluation** (NYU Depth v2, Eigen's 654 test images): the network sees the 416 x 544 crop
   ``[56:472, 60:604]`` of the 480 x 640 image; its upsampled prediction is pasted back into a 480 x 640 map of
   zeros and scored on pixels with ground truth in ``(1e-3, 10)`` m, prediction above 1e-3 m (so only where the
   crop was) and inside the Eigen crop ``[45:471, 46:601]``; predictions clamped to ``[1e-3, 10]``; per image, then
   averaged; no median scaling. Here :class:`~lit_clip.metrics.DepthMetrics` scores the same way, the data module
   giving the range (``min_depth`` / ``max_depth`` properties) and the crop (the batches' ``evaluation_mask``).

Deliberate differences:

- The prediction is upsampled to the ground truth's size (``batch["depth"]``), not to the network's input size
  and pasted: which pixels of the ground truth the image covers is the data module's business (its crop and its
  ``evaluation_mask``).
- Images come CLIP-normalised, as every lit-clip batch, and the CLIP sees them so by default; the official loader
  normalises NYU with ImageNet's mean and std (``datasets/datasets_list.py``) although CLIP was trained with its
  own: ``input_normalization="imagenet"`` re-normalises the batches so, to reproduce its numbers.
- The text features are CLIP's in fp32; the official code runs CLIP in fp16.
- The official code lists objects (``obj_classes``) but only works with one (its logits are reshaped to 7 bins);
  here ``object_name`` is one string and ``templates`` may be several (their embeddings averaged per word).
- Any CLIP, not just RN50: a ResNet tower's ``layer4`` (any image size the strides allow) is cut to its embedding
  width as above. Another tower (a ViT) has no ``layer4`` of the embedding's kind: its dense map is MaskCLIP's
  (:meth:`~lit_clip.models.clip.CLIP.encode_dense_image`, the last block's value path, already in the embedding
  space and normalised here, at the image size that tower takes), with no cut.

Ours, not the paper's: ``reduction="learned"`` replaces the channel cut by a learned 1x1 projection of the
normalised ``layer4`` channels to the embedding width (initialised to the cut, so training starts from the
training-free method), trained with ``lit-clip fit`` on a depth data module's training split by Eigen et al.'s
scale-invariant log loss (:func:`scale_invariant_log_loss`) on the valid pixels, AdamW at a constant learning rate,
without flip averaging (a test-time augmentation); everything else stays frozen. Its checkpoints hold that
projection alone (the CLIP comes back from ``pretrained``).

Use: ``lit-clip test`` / ``validate`` (``trains = False``; ``trains`` is True with ``reduction="learned"``) with a
data module of :class:`~lit_clip.batches.DepthBatch` es; metrics ``{stage}/abs_rel``, ``sq_rel``, ``rmse``,
``rmse_log``, ``log10``, ``delta1``-``delta3``. The distance words are the method's classes: a data module's class
names, if it has any, are not used.
"""
from __future__ import annotations

import string
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.batches import DepthBatch, EvaluationSet
from lit_clip.methods.class_sets import evaluation_sets
from lit_clip.methods.frozen_clip import FrozenCLIPMethod
from lit_clip.metrics import DepthMetrics
from lit_clip.models.resnet import ModifiedResNet
from lit_clip.templates import DEPTHCLIP_BINS, DEPTHCLIP_WORDS
from lit_clip.transforms import IMAGENET_MEAN, IMAGENET_STD, FromCLIPNormalization

# monoclip.py's "hyperparameter control"; the words and bins: lit_clip.templates.
TEMPLATES = ("This {obj} is {word}",)
OBJECT_NAME = "object"
TEMPERATURE = 0.1
MIN_DEPTH, MAX_DEPTH = 1e-3, 10.0  # NYU's evaluated range (DepthMetrics' too), for a data module that names none
CLIP_LOGIT_SCALE = 100.0  # zero-shot CLIP's fixed scale, which the official logits divide by the temperature
REDUCTIONS = ("interpolate", "learned")
INPUT_NORMALIZATIONS = ("clip", "imagenet")


def interpolate_channels(features: Tensor, width: int) -> Tensor:
    """``features`` ``[B, C, h, w]`` cut to ``[B, width, h, w]`` as the official code cuts RN50's 2048 channels to
    1024: ``F.interpolate`` (nearest) along the channels of the ``[B, h * w, C]`` locations."""
    batch, channels, height, width_px = features.shape
    locations = features.flatten(2).transpose(1, 2)  # [B, h * w, C]
    cut = F.interpolate(locations, size=width, mode="nearest")
    return cut.transpose(1, 2).reshape(batch, width, height, width_px)


def expected_depth(probabilities: Tensor, bins: Tensor) -> Tensor:
    """The expected bin value ``[B, h, w]`` of per-location distributions ``[B, K, h, w]`` over ``bins`` ``[K]``."""
    return torch.einsum("bkhw,k->bhw", probabilities, bins.to(probabilities.dtype))


def scale_invariant_log_loss(prediction: Tensor, target: Tensor, valid: Tensor, variance_focus: float = 0.5) -> Tensor:
    """Eigen et al. (2014)'s scale-invariant log error, per image over its ``valid`` pixels, averaged over the images
    with any: ``mean(d^2) - variance_focus * mean(d)^2`` with ``d = log(prediction) - log(target)`` (Eigen's
    lambda, 0.5; 1 would ignore the scale entirely). Depths ``[B, H, W]`` in metres, ``valid`` bool ``[B, H, W]``."""
    losses = []
    for pred, true, mask in zip(prediction, target, valid):
        if mask.any():
            d = pred[mask].log() - true[mask].log()
            losses.append(d.pow(2).mean() - variance_focus * d.mean().pow(2))
    return torch.stack(losses).mean() if losses else prediction.sum() * 0  # nothing measured: no gradient, no NaN


def check_bins(depth_words: Sequence[str], depth_bins: Sequence[float]) -> None:
    """One distance word per bin, at least two bins, positive and strictly increasing, no word twice."""
    if isinstance(depth_words, str):
        raise ValueError(f"depth_words must be a list of words, got the string {depth_words!r}")
    if len(depth_words) != len(depth_bins):
        raise ValueError(
            f"depth_words and depth_bins must be as long (one word per bin), got {len(depth_words)} words "
            f"{list(depth_words)} and {len(depth_bins)} bins {list(depth_bins)}"
        )
    if len(depth_bins) < 2:
        raise ValueError(f"need at least two depth bins to choose between, got {list(depth_bins)}")
    if any(b <= 0 for b in depth_bins) or any(b >= c for b, c in zip(depth_bins, depth_bins[1:])):
        raise ValueError(f"depth_bins must be positive and strictly increasing (metres), got {list(depth_bins)}")
    duplicates = sorted({word for word in depth_words if list(depth_words).count(word) > 1})
    if duplicates:
        raise ValueError(f"depth_words names {duplicates} more than once; each bin needs its own word")


def word_templates(templates: Sequence[str], object_name: str) -> list[str]:
    """The templates with the object filled in and ``{}`` where the word goes (what the zero-shot classifier fills).

    Each template has exactly the fields ``{obj}`` and ``{word}``."""
    if isinstance(templates, str) or not templates:
        raise ValueError(f"templates must be a non-empty list of strings, got {templates!r}")
    if "{" in object_name or "}" in object_name:
        raise ValueError(f"object_name must be plain text, got {object_name!r}")
    filled = []
    for template in templates:
        fields = sorted(name for _, name, _, _ in string.Formatter().parse(template) if name is not None)
        if fields != ["obj", "word"]:
            raise ValueError(
                f"a DepthCLIP template needs the fields {{obj}} and {{word}} once each and no others, "
                f"got {template!r} (fields {fields})"
            )
        filled.append(template.format(obj=object_name, word="{}"))
    return filled


class DepthCLIP(FrozenCLIPMethod):
    """Zero-shot monocular depth from a frozen CLIP (see the module's docstring)."""

    trains = False

    def __init__(
        self,
        pretrained: str,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        depth_words: Sequence[str] = DEPTHCLIP_WORDS,
        depth_bins: Sequence[float] = DEPTHCLIP_BINS,
        templates: Sequence[str] = TEMPLATES,
        object_name: str = OBJECT_NAME,
        temperature: float = TEMPERATURE,
        flip_average: bool = True,
        reduction: str = "interpolate",
        input_normalization: str = "clip",
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        variance_focus: float = 0.5,
    ):
        """
        Args:
            pretrained: CLIP weights (see ``lit_clip.load_clip``); a ResNet image tower as the paper's RN50, or any
                tower with dense features (``encode_dense_image``).
            architecture, quick_gelu: see ``lit_clip.load_clip``.
            depth_words: one distance word per bin, nearest first (the official seven).
            depth_bins: the bins' depths in metres, strictly increasing (the official seven, 1 to 3 m).
            templates: prompts with ``{obj}`` and ``{word}`` (official: "This {obj} is {word}"), averaged per word.
            object_name: what ``{obj}`` says ("object").
            temperature: the logits are ``100 * cosine / temperature`` (0.1).
            flip_average: average with the flipped image's depth, as the official evaluation does.
            reduction: "interpolate" (the official channel cut, no training) or "learned" (a trained 1x1 projection,
                ResNet towers only; ours, see the module's docstring).
            input_normalization: what the CLIP sees: "clip" (the batches as they come, CLIP-normalised) or
                "imagenet" (re-normalised with ImageNet's mean and std, as the official NYU loader feeds its CLIP).
            lr, weight_decay: AdamW's, for ``reduction="learned"``.
            variance_focus: the scale-invariant loss's lambda (Eigen's 0.5), for ``reduction="learned"``.
        """
        # The options first: a mistake is reported before the CLIP loads.
        check_bins(depth_words, depth_bins)
        filled_templates = word_templates(templates, object_name)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if input_normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(f"input_normalization must be one of {INPUT_NORMALIZATIONS}, got {input_normalization!r}")
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        imagenet = input_normalization == "imagenet"
        self.normalize = FromCLIPNormalization(IMAGENET_MEAN, IMAGENET_STD) if imagenet else nn.Identity()
        self.depth_words = tuple(depth_words)
        self.word_templates = filled_templates
        self.register_buffer("depth_bins", torch.tensor(depth_bins, dtype=torch.float32), persistent=False)
        self.embed_dim = self.model.text_projection.shape[1]
        self.trains = reduction == "learned"

        visual = self.model.visual
        if isinstance(visual, ModifiedResNet):
            channels = visual.feature_info[-1]["num_chs"]
            if self.trains:
                self.projection = nn.Conv2d(channels, self.embed_dim, 1, bias=False)
                with torch.no_grad():  # start from the official cut: a 0/1 matrix picking its channels
                    identity = torch.eye(channels).view(1, channels, channels, 1)
                    cut = interpolate_channels(identity, self.embed_dim)[0, :, :, 0]
                    self.projection.weight.copy_(cut[:, :, None, None])
        elif self.trains:
            raise ValueError(f"reduction='learned' projects a ResNet's layer4; this CLIP has a {type(visual).__name__}")
        elif not hasattr(visual, "forward_dense"):
            raise ValueError(
                f"DepthCLIP needs dense image features: a ResNet tower, or one with forward_dense (lit-clip's ViT); "
                f"this CLIP has a {type(visual).__name__}"
            )

    # --- the prediction --------------------------------------------------------------------------
    def set_classes(self, classnames: Sequence[str]) -> None:
        """``self.text_classifier`` ``[dim, bins]`` of the distance words (the classes DepthCLIP uses)."""
        self.build_text_classifier(classnames, self.word_templates)

    def dense_features(self, images: Tensor) -> Tensor:
        """Per-location image features ``[B, embed_dim, h, w]`` in fp32, comparable with the text features."""
        visual, images = self.model.visual, self.normalize(images)
        if not isinstance(visual, ModifiedResNet):
            return F.normalize(self.model.encode_dense_image(images).float(), dim=1)
        (layer4,) = visual.forward_intermediates(images, indices=1, intermediates_only=True)
        layer4 = F.normalize(layer4.float(), dim=1)  # the official order: normalised, then cut
        if self.trains:
            return self.projection(layer4).float()
        return interpolate_channels(layer4, self.embed_dim)

    def depth_probabilities(self, images: Tensor) -> Tensor:
        """The softmax over the depth bins at every location, ``[B, bins, h, w]`` (in fp32, never under autocast:
        at a scale of 1000 bf16 logits would round whole bins away)."""
        self.use_classes(self.depth_words)
        features = self.dense_features(images)
        with torch.autocast(features.device.type, enabled=False):
            scale = CLIP_LOGIT_SCALE / self.hparams.temperature
            logits = scale * torch.einsum("bdhw,dk->bkhw", features.float(), self.text_classifier.float())
        return logits.softmax(dim=1)

    def feature_depth(self, images: Tensor) -> Tensor:
        """Depth in metres at the feature map's resolution, ``[B, h, w]``, of the images alone (no flip)."""
        return expected_depth(self.depth_probabilities(images), self.depth_bins)

    def predict_depth(self, images: Tensor, size: Sequence[int] | None = None) -> Tensor:
        """Depth in metres ``[B, H, W]``: the feature-resolution depth (averaged with the flipped image's, flipped
        back, when ``flip_average``) upsampled bilinearly to ``size`` (by default the images')."""
        depth = self.feature_depth(images)
        if self.hparams.flip_average:
            depth = (depth + self.feature_depth(images.flip(-1)).flip(-1)) / 2
        size = tuple(images.shape[-2:] if size is None else size)
        return F.interpolate(depth[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]

    def forward(self, images: Tensor) -> Tensor:
        """:meth:`predict_depth` at the images' size."""
        return self.predict_depth(images)

    def depth_range(self) -> tuple[float, float]:
        """The depths evaluated and trained on: the data module's ``min_depth`` and ``max_depth``, else NYU's."""
        datamodule = self.trainer.datamodule
        return getattr(datamodule, "min_depth", MIN_DEPTH), getattr(datamodule, "max_depth", MAX_DEPTH)

    # --- training (reduction="learned") ----------------------------------------------------------
    def training_step(self, batch: DepthBatch, batch_idx: int) -> Tensor:
        depth = batch["depth"]
        coarse = self.feature_depth(self.batch_input(batch))
        prediction = F.interpolate(coarse[:, None], size=depth.shape[-2:], mode="bilinear", align_corners=True)[:, 0]
        min_depth, max_depth = self.depth_range()
        valid = (depth > min_depth) & (depth < max_depth)
        loss = scale_invariant_log_loss(prediction, depth, valid, self.hparams.variance_focus)
        self.log("train/loss", loss, prog_bar=True, batch_size=depth.shape[0])
        return loss

    def configure_optimizers(self):
        if not self.trains:
            raise ValueError(
                "DepthCLIP with reduction='interpolate' learns nothing: evaluate it with `lit-clip test` or "
                "`lit-clip validate`, or set reduction='learned' to train a projection"
            )
        hparams = self.hparams
        return torch.optim.AdamW(self.projection.parameters(), lr=hparams.lr, weight_decay=hparams.weight_decay)

    # --- evaluation ------------------------------------------------------------------------------
    def _start_evaluation(self, stage: str) -> None:
        # The classes are the distance words whatever the data module's are (a depth data module need have none);
        # its named evaluation sets, if any, still name the metrics.
        names = [evaluation_set.name for evaluation_set in evaluation_sets(self.trainer.datamodule, stage)]
        self._sets = [EvaluationSet(name, self.depth_words) for name in names]
        self._metrics = [self.evaluation_metric(evaluation_set) for evaluation_set in self._sets]
        self._current_set = None

    def evaluation_metric(self, evaluation_set: EvaluationSet) -> DepthMetrics:
        return DepthMetrics(*self.depth_range())

    def evaluate_batch(self, batch: DepthBatch, metric: DepthMetrics) -> None:
        depth = batch["depth"]
        prediction = self.predict_depth(self.batch_input(batch), size=depth.shape[-2:])
        metric.update(prediction, depth, batch["index"], batch.get("evaluation_mask"))

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Depth maps ``[B, H, W]`` in metres (at the ground truth's size when the batch has one, else the
        images'), with the batch's paths and indices."""
        size = batch["depth"].shape[-2:] if "depth" in batch else None
        return {
            **{key: batch[key] for key in ("path", "index") if key in batch},
            "depth": self.predict_depth(self.batch_input(batch), size=size),
        }
