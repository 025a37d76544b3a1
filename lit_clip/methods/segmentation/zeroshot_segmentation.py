"""Zero-shot semantic segmentation with a frozen CLIP (MaskCLIP, Zhou et al., "Extract Free Dense Labels from CLIP",
ECCV 2022): any CLIP segments any label set, with no training. The baseline row of every segmentation table.

1. **Dense image features.** CLIP's last pooling step mixes every location into one embedding through its
   query-key attention; dropping that attention and reading each location through the value path alone gives one
   embedding per location in the joint space (:meth:`lit_clip.models.clip.CLIP.encode_dense_image`, ``[B, D, h, w]``:
   one per patch of a ViT, one per position of a ResNet's last map), L2-normalised per location here.
2. **Text classifier.** Each label is written into the data module's prompt templates, and its weight is the
   renormalised mean of its prompts' normalised text embeddings (prompt ensembling, as zero-shot CLIP).
3. **Per-location logits** are ``100 * cosine`` (zero-shot CLIP's fixed scale, which also sets the sharpness of the
   softmax the two optional rules below read), upsampled bilinearly to the image size; a pixel's label is the argmax.
4. **Prompt denoising** (MaskCLIP's, optional, ``prompt_denoising``): a label whose softmax probability reaches the
   threshold at no location of an image is taken out of that image's label set, since a label present somewhere in
   the image is confidently recognised at least once; applied before upsampling, as MaskCLIP's head does (0.5 in its
   configs). Unlike MaskCLIP's, the image's most confident label always stays, so an image never loses every label.
5. **Background threshold** (optional, ``background_threshold``): CLIP has no good text for "background", so, as
   GroupViT does, the background label's text is left out and a threshold decides instead. The rule, per pixel:
   softmax over the logits of the labels other than ``background_label``; if the highest of these probabilities is
   below the threshold the pixel is background, else it takes that most probable label. Label sets without
   ``background_label`` are plain argmax. (GroupViT also caps the threshold at the image's highest probability, so
   an image always keeps some foreground; not done here.)

Not done: MaskCLIP's key smoothing (low-confidence locations take the probabilities of locations whose last-layer
attention keys are similar) needs the last block's keys, which ``encode_dense_image`` does not return; MaskCLIP's
sliding-window inference on large images is the data module's business (ShapesWorld's images are whole).

Use it with ``lit-clip test`` (``trains = False``) and a segmentation data module whose test loaders are its
evaluation sets: ``test/seen_mIoU``, ``test/unseen_mIoU`` and their harmonic mean ``test/hIoU``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_clip.methods.segmentation.segmenter import CLIPSegmenter

LOGIT_SCALE = 100.0
# The logit of a label prompt denoising removes: MaskCLIP's cosine of -100 at our scale, far below any cosine logit.
REMOVED_LOGIT = -100.0 * LOGIT_SCALE


class ZeroShotSegmentation(CLIPSegmenter):
    trains = False

    def __init__(
        self,
        pretrained: str,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        background_threshold: float | None = None,
        background_label: str = "background",
        prompt_denoising: float | None = None,
    ):
        """
        Args:
            pretrained: CLIP weights: an OpenAI or open_clip checkpoint file, a Hugging Face model directory or hub
                id, or a lit-clip checkpoint (see ``lit_clip.load_clip``). Its image tower must be lit-clip's ViT
                or ModifiedResNet (dense features).
            architecture: the architecture name, when it cannot be inferred from the weights.
            quick_gelu: force the activation; by default it is read from the checkpoint's format.
            background_threshold: label a pixel ``background_label`` when its highest softmax probability over the
                other labels is below this (see the module's docstring); None: plain argmax over all labels.
            background_label: the label the threshold assigns, where the label set has it.
            prompt_denoising: MaskCLIP's prompt denoising threshold (0.5 in its configs); None: off.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        self.background_threshold = background_threshold
        self.background_label = background_label
        self.prompt_denoising = prompt_denoising

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """Per-pixel logits ``[B, labels, H, W]``: ``100 * cosine`` of the dense features and the label texts."""
        features = F.normalize(self.model.encode_dense_image(images).float(), dim=1)
        logits = self.cosine_logits(LOGIT_SCALE, features, labels)
        if self.prompt_denoising is not None:
            logits = denoise_prompts(logits, self.prompt_denoising)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def predict_masks(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """The label of every pixel, ``[B, H, W]``: the argmax, or the background threshold's rule when it is set
        and the label set has the background label (not for episodes, whose labels are their own)."""
        logits = self(images, labels)
        if labels is not None or self.background_threshold is None or self.background_label not in self.classnames:
            return logits.argmax(dim=1)
        background = self.classnames.index(self.background_label)
        return threshold_background(logits, background, self.background_threshold)


def denoise_prompts(logits: Tensor, threshold: float) -> Tensor:
    """``logits`` ``[B, L, h, w]`` with each image's labels whose softmax probability stays below ``threshold`` at
    every location pushed to :data:`REMOVED_LOGIT`, all but the image's most confident label."""
    confidence = logits.softmax(dim=1).amax(dim=(2, 3))  # [B, L]: each label's best location
    removed = (confidence < threshold) & (confidence < confidence.amax(dim=1, keepdim=True))
    return logits.masked_fill(removed[:, :, None, None], REMOVED_LOGIT)


def threshold_background(logits: Tensor, background: int, threshold: float) -> Tensor:
    """Labels ``[B, H, W]`` from ``logits`` ``[B, L, H, W]``: per pixel, the softmax over the labels but
    ``background``; the most probable of them, or ``background`` where its probability is below ``threshold``."""
    others = torch.cat([logits[:, :background], logits[:, background + 1 :]], dim=1)
    confidence, best = others.float().softmax(dim=1).max(dim=1)
    labels = best + (best >= background).long()  # back to indices into the whole label set
    return labels.masked_fill(confidence < threshold, background)
