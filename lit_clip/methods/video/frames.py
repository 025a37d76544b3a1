"""What every video method does with frames first: each frame through the CLIP image tower, then a mean over
the real (unpadded) frames."""
from __future__ import annotations

from typing import Callable

from torch import Tensor


def encode_frames(encode_image: Callable[[Tensor], Tensor], video: Tensor) -> Tensor:
    """``[B, T, D]`` features of a ``[B, T, 3, H, W]`` video: all ``B * T`` frames go through the tower at once."""
    batch, frames = video.shape[:2]
    return encode_image(video.flatten(0, 1)).unflatten(0, (batch, frames))


def masked_mean(features: Tensor, frame_mask: Tensor) -> Tensor:
    """``[B, D]`` mean of ``[B, T, D]`` over the frames where ``frame_mask`` ``[B, T]`` is True."""
    weights = frame_mask.to(features.dtype).unsqueeze(-1)
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
