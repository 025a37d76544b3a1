"""Contrastive losses for image-text pretraining.

Both take L2-normalised features and the *exponentiated* logit scale, as
open_clip's do, so the two can be swapped in comparisons, and return their
terms by name (``{"contrastive_loss": ...}``, open_clip's ``output_dict``), so
that methods adding terms (SLIP's SSL loss, AudioCLIP's audio pairs) log each
and optimise their sum.

Under ``torch.distributed`` the features of every rank are all-gathered **with
gradient**. With ``local_loss`` each rank scores only its own rows against all
gathered columns (labels offset by ``rank * local_batch``): memory grows
linearly with the global batch, and after DDP averages the gradients they
equal those of one process holding the whole batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.distributed import distributed_rank_and_size, gather_padded


class ClipLoss(nn.Module):
    """Symmetric InfoNCE: cross-entropy of image->text and text->image logits, averaged."""

    def __init__(self, local_loss: bool = True):
        super().__init__()
        self.local_loss = local_loss

    def forward(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, batch_rows: int | None = None
    ) -> dict[str, Tensor]:
        """``batch_rows``: the batch size each rank was meant to have, when some ranks may hold fewer
        rows (bad samples left out); the loss is then the mean over all real pairs of all ranks."""
        return {"contrastive_loss": self.infonce(image_features, text_features, logit_scale, batch_rows)}

    def infonce(self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, batch_rows: int | None) -> Tensor:
        rank, world_size = distributed_rank_and_size()
        if world_size == 1:
            logits_per_image = logit_scale * image_features @ text_features.T
            labels = torch.arange(image_features.shape[0], device=image_features.device)
            return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_image.T, labels)) / 2
        (all_images, all_texts), real, total, offset = gather_padded(image_features, text_features, rows=batch_rows)
        if self.local_loss:
            logits_per_image = logit_scale * image_features @ all_texts.T
            logits_per_text = logit_scale * text_features @ all_images.T
            labels = offset + torch.arange(image_features.shape[0], device=image_features.device)
        else:
            logits_per_image = logit_scale * all_images @ all_texts.T
            logits_per_text = logits_per_image.T
            labels = torch.arange(all_images.shape[0], device=image_features.device)
        if real is None:  # equal batches: the plain mean, as before
            return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
        # Padding columns take no probability; each rank's sum is scaled so that DDP's average over
        # ranks is the mean over every real pair.
        logits_per_image = logits_per_image.masked_fill(~real, float("-inf"))
        logits_per_text = logits_per_text.masked_fill(~real, float("-inf"))
        losses = F.cross_entropy(logits_per_image, labels, reduction="none") + F.cross_entropy(
            logits_per_text, labels, reduction="none"
        )
        if self.local_loss:  # DDP's average of the ranks' parts is the mean over all real pairs
            return losses.sum() / 2 * world_size / total
        return losses.masked_fill(~real, 0).sum() / 2 / total  # every rank computes the whole mean


class SigLipLoss(nn.Module):
    """SigLIP's pairwise sigmoid loss: every image-text pair is an independent binary decision.

    Pair with ``init_logit_scale=ln 10`` and ``init_logit_bias=-10`` (the paper's
    initialisation). Each rank scores its images against the texts of all ranks;
    the sum is divided by the local batch, as in the paper (by the mean local batch over
    ranks when ``batch_rows`` says that ranks may hold fewer rows, see :class:`ClipLoss`).
    """

    def forward(
        self,
        image_features: Tensor,
        text_features: Tensor,
        logit_scale: Tensor,
        logit_bias: Tensor,
        batch_rows: int | None = None,
    ) -> dict[str, Tensor]:
        return {"contrastive_loss": self.sigmoid_loss(image_features, text_features, logit_scale, logit_bias, batch_rows)}

    def sigmoid_loss(
        self, image_features: Tensor, text_features: Tensor, logit_scale: Tensor, logit_bias: Tensor, batch_rows: int | None
    ) -> Tensor:
        rank, world_size = distributed_rank_and_size()
        batch = image_features.shape[0]
        if world_size == 1:
            texts, real, total, offset = text_features, None, batch, 0
        else:
            (texts,), real, total, offset = gather_padded(text_features, rows=batch_rows)
            total = total / world_size
        logits = logit_scale * image_features @ texts.T + logit_bias
        # +1 for the matching pair (this rank's block of the diagonal), -1 for every other pair.
        signs = -torch.ones_like(logits)
        signs[:, offset : offset + batch].fill_diagonal_(1.0)
        losses = -F.logsigmoid(signs * logits)
        if real is not None:
            losses = losses.masked_fill(~real, 0)
        return losses.sum() / total


class MultiLabelContrastiveLoss(nn.Module):
    """GroupViT's multi-label contrastive loss (NVlabs/GroupViT, ``models/multi_label_contrastive.py``).

    Each image has K prompts of the nouns of its caption ("a photo of a dog."). Every image is scored against
    the prompts of every image of the (gathered) batch, with soft targets 1/K on its own K prompts; every
    prompt against every image, with its own image as the target. The loss is the mean of the two soft
    cross-entropies, each averaged over its rows, with GroupViT's separate logit scale.

    Under ``torch.distributed`` both sides are gathered with gradient and each rank scores its own rows,
    as the official code. Ranks holding fewer rows (bad samples left out; ``batch_rows``) are padded and
    the padding is never a candidate; each rank then averages over its own rows (the official code
    assumes equal batches).
    """

    def forward(
        self, image_features: Tensor, prompt_features: Tensor, logit_scale: Tensor, batch_rows: int | None = None
    ) -> dict[str, Tensor]:
        """``image_features`` ``[B, D]`` and ``prompt_features`` ``[B, K, D]``, L2-normalised; ``logit_scale``
        exponentiated. Returns ``{"multi_label_loss": ...}``."""
        batch, count, dim = prompt_features.shape
        prompts = prompt_features.flatten(0, 1)
        rank, world_size = distributed_rank_and_size()
        if world_size == 1:
            all_images, all_prompts, real, offset = image_features, prompts, None, 0
        else:
            (all_images, all_prompts), real, _, offset = gather_padded(
                image_features, prompt_features.flatten(1), rows=batch_rows
            )
            all_prompts = all_prompts.view(-1, dim)
        logits_per_image = logit_scale * image_features @ all_prompts.T  # [B, images * K]
        logits_per_prompt = logit_scale * prompts @ all_images.T  # [B * K, images]
        if real is not None:  # padding rows of short ranks are nobody's candidates
            logits_per_image = logits_per_image.masked_fill(~real.repeat_interleave(count), float("-inf"))
            logits_per_prompt = logits_per_prompt.masked_fill(~real, float("-inf"))
        own_image = offset + torch.arange(batch, device=image_features.device)
        image_targets = F.one_hot(own_image, all_images.shape[0]).repeat_interleave(count, dim=1) / count
        prompt_targets = own_image.repeat_interleave(count)
        loss_per_image = -(image_targets * F.log_softmax(logits_per_image, dim=-1).clamp(min=-1e4)).sum(-1).mean()
        loss_per_prompt = F.cross_entropy(logits_per_prompt, prompt_targets)
        return {"multi_label_loss": (loss_per_image + loss_per_prompt) / 2}


class AudioCLIPLoss(nn.Module):
    """AudioCLIP's loss (AndreyGuzhov/AudioCLIP, ``model/audioclip.py``): for every pair of the modalities a batch
    holds (audio-image, audio-text, image-text), the cross-entropy of its logits both ways, **summed**, each pair
    with its own scale; the total divided by the factorial of the number of pairs, as the released code: 3
    modalities give 3 pairs and 3! = 6, the mean of the six directional terms; 2 give one pair and 1, the sum of its
    two directions (not CLIP's mean). Under ``torch.distributed`` each pair is :class:`ClipLoss`'s, features gathered
    with gradient (the released code ran one process).
    """

    PAIRS = (("audio", "image"), ("audio", "text"), ("image", "text"))

    def __init__(self, local_loss: bool = True):
        super().__init__()
        self.pair_loss = ClipLoss(local_loss=local_loss)

    def forward(
        self, features: dict[str, Tensor], scales: dict[tuple[str, str], Tensor], batch_rows: int | None = None
    ) -> dict[str, Tensor]:
        """``features``: L2-normalised ``[B, D]`` per modality present (``audio``, ``image``, ``text``); ``scales``:
        each pair's exponentiated scale. Returns ``{"audio_image_loss", "audio_text_loss", "image_text_loss"}`` for
        the pairs present, each divided already: their sum is the loss."""
        pairs = [(a, b) for a, b in self.PAIRS if a in features and b in features]
        if not pairs:
            raise ValueError(f"AudioCLIP's loss needs two modalities of audio, image and text; got {sorted(features)}")
        divisor = math.factorial(len(pairs))
        return {
            f"{a}_{b}_loss": 2 * self.pair_loss.infonce(features[a], features[b], scales[(a, b)], batch_rows) / divisor
            for a, b in pairs
        }


class NTXentLoss(nn.Module):
    """SimCLR's NT-Xent (normalised temperature-scaled cross-entropy) over two views, as SLIP's ``SIMCLRLoss``.

    Each of the 2N views (N images, two views each) must pick the other view of its image among the 2N - 1
    others: cross-entropy over the similarities divided by ``temperature`` (0.1 in SLIP), a view never its own
    candidate. Under ``torch.distributed`` both views are gathered **with gradient** and each rank scores its
    own views against all, labels offset by ``rank * local_batch``: after DDP averages the gradients, the same
    as one process holding the whole batch. Logits are computed in fp32 (SLIP's are, through its fp32 mask).
    Ranks holding fewer rows (``batch_rows``, see :class:`ClipLoss`) are padded; padding is nobody's candidate.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"the NT-Xent temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, view_1: Tensor, view_2: Tensor, batch_rows: int | None = None) -> dict[str, Tensor]:
        """``view_1``, ``view_2``: ``[N, D]`` features of the two views (normalised here). Returns
        ``{"ssl_loss": ...}``."""
        inf = float("inf")
        q_1, q_2 = F.normalize(view_1.float(), dim=-1), F.normalize(view_2.float(), dim=-1)
        rank, world_size = distributed_rank_and_size()
        if world_size == 1:
            k_1, k_2, real, total, offset = q_1, q_2, None, q_1.shape[0], 0
        else:
            (k_1, k_2), real, total, offset = gather_padded(q_1, q_2, rows=batch_rows)
        labels = offset + torch.arange(q_1.shape[0], device=q_1.device)
        itself = F.one_hot(labels, k_1.shape[0]).bool()
        with torch.autocast(q_1.device.type, enabled=False):  # fp32 similarities under mixed precision too
            # Row i: [the other view of every image | the same view of every image], the positive at column i.
            logits_1 = torch.cat([q_1 @ k_2.T, (q_1 @ k_1.T).masked_fill(itself, -inf)], dim=1)
            logits_2 = torch.cat([q_2 @ k_1.T, (q_2 @ k_2.T).masked_fill(itself, -inf)], dim=1)
        if real is not None:  # padding rows of short ranks are nobody's candidates
            logits_1, logits_2 = (logits.masked_fill(~real.repeat(2), -inf) for logits in (logits_1, logits_2))
        losses = F.cross_entropy(logits_1 / self.temperature, labels, reduction="none") + F.cross_entropy(
            logits_2 / self.temperature, labels, reduction="none"
        )
        if real is None:
            return {"ssl_loss": losses.mean() / 2}
        return {"ssl_loss": losses.sum() / 2 * world_size / total}  # DDP's average: the mean over real images


def logged_sum(module, terms: dict[str, Tensor], batch_size: int) -> Tensor:
    """The sum of a method's named loss terms, which training minimises, logged by the LightningModule ``module`` as
    ``train/loss`` (in the progress bar) with each term as ``train/<name>``."""
    loss = sum(terms.values())
    for name, value in terms.items():
        module.log(f"train/{name}", value, batch_size=batch_size)
    module.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
    return loss
