"""Image-text retrieval recall, following the protocol of the CLIP paper.

Image->text is a hit at K when any of the image's captions is among its top K
texts; text->image has one right image. With one caption per image this is
plain recall@K both ways.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


@torch.no_grad()
def retrieval_recall(
    image_features: Tensor, text_features: Tensor, text_to_image: Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, Tensor]:
    """``{"i2t_R@K": ..., "t2i_R@K": ...}`` from normalised features; ``text_to_image[t]`` is caption t's image."""
    similarity = text_features.float() @ image_features.float().T  # [texts, images]
    # text->image: rank of the right image = number of images scoring strictly higher.
    right = similarity.gather(1, text_to_image[:, None])
    t2i_rank = (similarity > right).sum(dim=1)
    # image->text: the best rank over the image's own captions.
    is_caption = text_to_image[None, :] == torch.arange(image_features.shape[0], device=text_to_image.device)[:, None]
    scores = similarity.T  # [images, texts]
    best_own = scores.masked_fill(~is_caption, float("-inf")).max(dim=1, keepdim=True).values
    i2t_rank = (scores > best_own).sum(dim=1)
    metrics = {}
    for k in ks:
        metrics[f"i2t_R@{k}"] = (i2t_rank < k).float().mean()
        metrics[f"t2i_R@{k}"] = (t2i_rank < k).float().mean()
    return metrics
