"""Contrastive losses for image-text pretraining.

Both take L2-normalised features and the *exponentiated* logit scale, as
open_clip's do, so the two can be swapped in comparisons.

Under ``torch.distributed`` the features of every rank are all-gathered **with
gradient**. With ``local_loss`` each rank scores only its own rows against all
gathered columns (labels offset by ``rank * local_batch``): memory grows
linearly with the global batch, and after DDP averages the gradients they
equal those of one process holding the whole batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import Tensor, nn


def distributed_rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(features: Tensor) -> Tensor:
    """Every rank's ``features`` concatenated in rank order; gradients flow back to each owner."""
    return torch.cat(dist_fn.all_gather(features), dim=0)


class ClipLoss(nn.Module):
    """Symmetric InfoNCE: cross-entropy of image->text and text->image logits, averaged."""

    def __init__(self, local_loss: bool = True):
        super().__init__()
        self.local_loss = local_loss

    def forward(self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor) -> Tensor:
        rank, world_size = distributed_rank_and_size()
        batch = image_features.shape[0]
        labels = torch.arange(batch, device=image_features.device)
        if world_size == 1:
            logits_per_image = logit_scale * image_features @ text_features.T
            logits_per_text = logits_per_image.T
        else:
            all_images, all_texts = gather_with_grad(image_features), gather_with_grad(text_features)
            if self.local_loss:
                logits_per_image = logit_scale * image_features @ all_texts.T
                logits_per_text = logit_scale * text_features @ all_images.T
                labels = labels + rank * batch
            else:
                logits_per_image = logit_scale * all_images @ all_texts.T
                logits_per_text = logits_per_image.T
                labels = torch.arange(all_images.shape[0], device=image_features.device)
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


class SigLipLoss(nn.Module):
    """SigLIP's pairwise sigmoid loss: every image-text pair is an independent binary decision.

    Pair with ``init_logit_scale=ln 10`` and ``init_logit_bias=-10`` (the paper's
    initialisation). Each rank scores its images against the texts of all ranks;
    the sum is divided by the local batch, as in the paper.
    """

    def forward(self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor) -> Tensor:
        rank, world_size = distributed_rank_and_size()
        batch = image_features.shape[0]
        texts = text_features if world_size == 1 else gather_with_grad(text_features)
        logits = logit_scale * image_features @ texts.T + logit_bias
        # +1 for the matching pair (this rank's block of the diagonal), -1 for every other pair.
        signs = -torch.ones_like(logits)
        signs[:, rank * batch : (rank + 1) * batch].fill_diagonal_(1.0)
        return -F.logsigmoid(signs * logits).sum() / batch
