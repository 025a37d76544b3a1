"""Zero-shot classification (Radford et al., 2021, section 3.1.2): classify images with no training.

Every class name is written into each prompt template ("a photo of a {}."), the
text tower embeds the prompts, and the class's classifier weight is the
renormalised mean of its prompts' normalised embeddings. An image's logits are
``100 * normalize(image_features) @ W``; accuracy is micro top-1 / top-5, as the
paper reports.

Use it with ``lit-clip test`` or ``lit-clip validate`` and any classification data
module that names its ``classnames`` and ``templates`` (base-to-new data modules
get ``test/base_top1``, ``test/new_top1`` and ``test/hm``: the "CLIP" row of CoCoOp's tables).
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from lit_clip.methods.classification.frozen_classifier import FrozenCLIPClassifier
from lit_clip.zeroshot import scaled_cosine_logits


class ZeroShotClassifier(FrozenCLIPClassifier):
    trains = False

    def __init__(self, pretrained: str, architecture: str | None = None, quick_gelu: bool | None = None):
        """
        Args:
            pretrained: CLIP weights: an OpenAI or open_clip checkpoint file, a Hugging Face model directory
                or hub id, or a lit-clip checkpoint (see ``lit_clip.load_clip``).
            architecture: the architecture name, when it cannot be inferred from the weights.
            quick_gelu: force the activation; by default it is read from the checkpoint's format.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()

    def set_classes(self, classnames: Sequence[str]) -> None:
        self.build_text_classifier(classnames)

    def forward(self, images: Tensor) -> Tensor:
        return scaled_cosine_logits(100.0, self.image_features(images), self.text_classifier)
