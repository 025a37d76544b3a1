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


@torch.no_grad()
def retrieval_ranks(similarity: Tensor, right_item: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, Tensor]:
    """``{"R@K", "MdR", "MnR"}`` of queries against items (video retrieval's protocol, as CLIP4Clip's metrics.py).

    ``similarity`` ``[queries, items]``; ``right_item[q]`` is query q's item. A query's rank is the number of items
    scoring at least as high as its own: ties count against the query. (The official metrics.py counts them for it;
    with real videos ties do not happen, but two ShapesWorld clips seen only through their identical middle frames
    tie, and that would score as a hit.) ``MdR`` and ``MnR`` are the median and mean of those 1-based ranks, ``R@K``
    the fraction ranked within K.
    """
    similarity = similarity.float()
    right = similarity.gather(1, right_item[:, None])
    ranks = (similarity >= right).sum(dim=1)
    metrics = {f"R@{k}": (ranks <= k).float().mean() for k in ks}
    metrics["MdR"] = ranks.float().quantile(0.5)  # numpy's median (the mean of the middle two for an even count)
    metrics["MnR"] = ranks.float().mean()
    return metrics
