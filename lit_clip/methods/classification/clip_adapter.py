"""CLIP-Adapter (Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature Adapters", IJCV 2023).

Instead of learning prompts, learn a small bottleneck MLP on the frozen image feature and
blend it with the original feature:

    f' = ratio * A(f) + (1 - ratio) * f,   A = Linear(d, d/4) - ReLU - Linear(d/4, d) - ReLU (no biases),

then classify ``f'`` against the frozen zero-shot text classifier of the data set's
hand-written prompt, with CLIP's learned logit scale. The residual ratio (0.2) keeps most
of CLIP's zero-shot knowledge; only the adapter trains.

The official code is a trainer file for CoOp's code base and names no optimiser; here it is
CoOp's (SGD lr 0.002, momentum 0.9, weight decay 5e-4, one warm-up epoch at 1e-5, per-epoch
cosine), so the two compare under the same schedule.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.methods.classification.coop import coop_optimization
from lit_clip.methods.classification.frozen_classifier import FrozenCLIPClassifier
from lit_clip.zeroshot import scaled_cosine_logits


class Adapter(nn.Sequential):
    def __init__(self, dim: int, reduction: int = 4):
        super().__init__(
            nn.Linear(dim, dim // reduction, bias=False),
            nn.ReLU(),
            nn.Linear(dim // reduction, dim, bias=False),
            nn.ReLU(),
        )


class CLIPAdapter(FrozenCLIPClassifier):
    def __init__(
        self,
        pretrained: str,
        reduction: int = 4,
        residual_ratio: float = 0.2,
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
    ):
        """
        Args:
            pretrained: the frozen CLIP's weights (see ``lit_clip.load_clip``).
            reduction: the adapter's bottleneck is ``dim // reduction`` wide (4).
            residual_ratio: the adapted feature's share of the blend (0.2).
            lr, momentum, weight_decay, warmup_epochs, warmup_lr: CoOp's SGD schedule (see the module docstring).
            architecture, quick_gelu: see ``lit_clip.load_clip``.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        self.adapter = Adapter(self.model.text_projection.shape[1], reduction)

    def set_classes(self, classnames: Sequence[str]) -> None:
        self.build_text_classifier(classnames)

    def forward(self, images: Tensor) -> Tensor:
        features = self.model.encode_image(images).float()
        ratio = self.hparams.residual_ratio
        features = ratio * self.adapter(features).float() + (1 - ratio) * features
        return scaled_cosine_logits(self.model.logit_scale.exp(), F.normalize(features, dim=-1), self.text_classifier)

    def configure_optimizers(self):
        return coop_optimization(self, self.adapter.parameters())
