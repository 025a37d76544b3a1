"""Optimiser pieces shared by the methods: decay groups, the warm-up + cosine schedules and the poly schedule."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lit_clip.models.transformer import VisionTransformer

# open_clip's `CLIP.no_weight_decay()`: the text and ViT positional embeddings and the ViT class token.
# The token embedding is decayed, and so is a ResNet tower's attention-pool position table.
POSITION_AND_CLASS_EMBEDDINGS = {"positional_embedding", "visual.positional_embedding", "visual.class_embedding"}


def exempt_from_weight_decay(name: str, param: nn.Parameter) -> bool:
    """What open_clip leaves undecayed: every parameter of fewer than two dimensions (gains, biases, norms,
    the logit scale and bias, the class token) and the position embeddings of its ``no_weight_decay()``.

    ``name`` is relative to the CLIP (``positional_embedding``, ``visual.class_embedding``). The CLIP paper
    exempts gains and biases only; open_clip's training script (``p.ndim < 2`` or a bn / ln / bias / logit_scale
    name) also decays the position embeddings: here the model's own declaration is followed.
    """
    return param.ndim < 2 or name in POSITION_AND_CLASS_EMBEDDINGS


def adamw_betas_and_eps(image_tower: nn.Module) -> tuple[tuple[float, float], float]:
    """The CLIP paper's AdamW betas and eps for a model, by its image tower (open_clip's ``get_default_params``,
    which decides by "vit" in the model's name): (0.9, 0.98) and 1e-6 for a ViT, (0.9, 0.999) and 1e-8 for any
    other (ResNet, ConvNeXt, Swin)."""
    if isinstance(image_tower, VisionTransformer) or "vit" in getattr(image_tower, "model_name", "").lower():
        return (0.9, 0.98), 1e-6
    return (0.9, 0.999), 1e-8


def weight_decay_groups(
    parameters: nn.Module | Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    exempt: Callable[[str, nn.Parameter], bool] = exempt_from_weight_decay,
) -> list[dict]:
    """Two parameter groups, decayed and not (by the rule ``exempt(name, param)``), over the trainable parameters
    of a module or of ``(name, parameter)`` pairs."""
    named = parameters.named_parameters() if isinstance(parameters, nn.Module) else parameters
    decay, no_decay = [], []
    for name, param in named:
        if param.requires_grad:
            (no_decay if exempt(name, param) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine_schedule(optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warm-up from 0 to the base lr over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``."""
    if total_steps <= 0:
        raise ValueError(f"a cosine schedule needs a positive number of steps, got {total_steps}")
    warmup_steps = min(warmup_steps, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)


def warmup_cosine_per_epoch(optimizer: Optimizer, max_epochs: int, warmup_epochs: int = 1, warmup_lr: float = 1e-5) -> LambdaLR:
    """CoOp's schedule (Dassl's constant warm-up + cosine), stepped once per epoch.

    The first ``warmup_epochs`` run at the constant ``warmup_lr``; epoch ``e`` after them runs at
    ``lr * (1 + cos(pi * (e - warmup_epochs) / max_epochs)) / 2``: the cosine spans ``max_epochs`` and
    starts at the full lr right after the warm-up, so it never quite reaches zero.
    """
    if max_epochs <= 0:
        raise ValueError(f"an epoch schedule needs a positive number of epochs, got {max_epochs}")

    def factor_for(base_lr: float):
        def factor(epoch: int) -> float:
            if epoch < warmup_epochs:
                return warmup_lr / base_lr
            return 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / max_epochs))

        return factor

    return LambdaLR(optimizer, [factor_for(group["lr"]) for group in optimizer.param_groups])


def poly_schedule(optimizer: Optimizer, total: int, power: float = 0.9) -> LambdaLR:
    """The segmentation papers' poly decay: step (or epoch) ``t`` runs at ``lr * (1 - t / total) ** power``,
    ``0`` from ``total`` on (LSeg: power 0.9, stepped per epoch over ``max_epochs``)."""
    if total <= 0:
        raise ValueError(f"a poly schedule needs a positive number of steps, got {total}")

    def factor(step: int) -> float:
        return (1 - min(step, total) / total) ** power

    return LambdaLR(optimizer, factor)


def epoch_step_schedule(
    optimizer: Optimizer,
    steps_per_epoch: int,
    warmup_epochs: int,
    decay_epochs: Sequence[int],
    decay_factor: float,
) -> LambdaLR:
    """MCAN's schedule, stepped every batch: the learning rate times ``(e + 1) / (warmup_epochs + 1)`` in epoch ``e``
    of the first ``warmup_epochs`` (1/4, 2/4, 3/4 for 3), then times ``decay_factor`` once for each of
    ``decay_epochs`` (0-based) reached."""

    def factor(step: int) -> float:
        epoch = step // steps_per_epoch
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        return decay_factor ** sum(epoch >= decay for decay in decay_epochs)

    return LambdaLR(optimizer, factor)
