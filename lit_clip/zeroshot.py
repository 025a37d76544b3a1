"""The zero-shot head: class names x prompt templates -> a normalised classifier matrix.

One builder serves every method that classifies with text: zero-shot evaluation,
prompt-learning baselines, adapters, segmentation label sets and detection
vocabularies.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.metrics import TopKAccuracy
from lit_clip.models.clip import CLIP
from lit_clip.templates import fill_template
from lit_clip.tokenizer import tokenize


@torch.no_grad()
def build_zeroshot_classifier(
    model: CLIP,
    classnames: Sequence[str],
    templates: Sequence[str],
    tokenizer: Callable[..., Tensor] = tokenize,
    batch_size: int = 256,
) -> Tensor:
    """``[embed_dim, num_classes]``: per class, the mean of its L2-normalised template embeddings, renormalised.

    Logits are then ``100 * normalize(image_features) @ classifier`` (CLIP's
    evaluation uses the fixed scale 100, not the learned one).
    """
    if not classnames or not templates:
        raise ValueError(f"need class names and templates, got {len(classnames)} names and {len(templates)} templates")
    device = next(model.parameters()).device
    prompts = [fill_template(template, name) for name in classnames for template in templates]
    embeddings = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[start : start + batch_size], context_length=model.context_length).to(device)
        embeddings.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    per_template = torch.cat(embeddings).view(len(classnames), len(templates), -1)
    return F.normalize(per_template.mean(dim=1), dim=-1).T


def scaled_cosine_logits(scale: float | Tensor, image_features: Tensor, classifier: Tensor) -> Tensor:
    """``scale * image_features @ classifier`` in fp32, also under autocast.

    Normalised image features ``[batch, dim]`` against a classifier ``[dim, classes]`` (or per-image
    ``[batch, 1, dim]`` against ``[batch, dim, classes]``). bf16 autocast would round the logits to an
    8-bit mantissa, which ties close classes and moves the argmax: a ShapesWorld zero-shot top-1
    changed by half a point with bf16 logits.
    """
    with torch.autocast(image_features.device.type, enabled=False):
        return scale * image_features.float() @ classifier.float()


class ZeroShotHead(nn.Module):
    """A text classifier built from class names x templates, with its accuracy over an evaluation.

    ``build`` once per evaluation (the text tower may have changed), then per batch
    ``logits = head(image_features)`` and ``head.accuracy.update(logits, labels, index)``,
    and ``head.accuracy.compute()`` at the end.
    """

    def __init__(self, logit_scale: float = 100.0):
        super().__init__()
        self.logit_scale = logit_scale
        self.classifier: Tensor | None = None
        self.accuracy = TopKAccuracy()

    def build(self, model: CLIP, classnames: Sequence[str], templates: Sequence[str]) -> None:
        self.classifier = build_zeroshot_classifier(model, classnames, templates)
        self.accuracy = TopKAccuracy()

    def forward(self, image_features: Tensor) -> Tensor:
        return scaled_cosine_logits(self.logit_scale, F.normalize(image_features.float(), dim=-1), self.classifier)
