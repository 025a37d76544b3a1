"""The zero-shot head: class names x prompt templates -> a normalised classifier matrix.

One builder serves every method that classifies with text: zero-shot evaluation,
prompt-learning baselines, adapters, segmentation label sets and detection
vocabularies.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_clip.model import CLIP
from lit_clip.tokenizer import tokenize

# The 7 templates OpenAI's notebook found best as a small ensemble for ImageNet.
SIMPLE_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


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
    prompts = [template.format(name) for name in classnames for template in templates]
    embeddings = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[start : start + batch_size], context_length=model.context_length).to(device)
        embeddings.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    per_template = torch.cat(embeddings).view(len(classnames), len(templates), -1)
    return F.normalize(per_template.mean(dim=1), dim=-1).T
