"""PointCLIP's projections of a point cloud into depth images a CLIP can read: V1's perspective splatting and V2's
realistic projection, batched over clouds and views, in torch.

**Views.** A view is a rotation of the cloud; the camera looks along +z of the rotated cloud. The official code
writes each view as Euler angles ``(a, b, c)`` and rotates by ``Rx(a) @ Ry(b) @ Rz(c)`` (``euler2mat``, applied as
``points @ R.T``). Here a view is a sequence of such angle triples applied one after the other: V1's views have one,
V2's two (the view, then a tilt "to reveal more surface"). The official sets are :data:`V1_ZERO_SHOT_VIEWS` (6),
:data:`V1_FEW_SHOT_VIEWS` (10) and :data:`V2_VIEWS` (10). With clouds y-up (ModelNet40's HDF5), ``Rz(pi/2)`` turns
y into -x and ``Rx(a)`` then circles the camera around the vertical axis; ``Ry(+-pi/2)`` looks from above and below.

**V1** (ZrrSkywalker/PointCLIP, ``trainers/mv_utils_zs.py`` / ``mv_utils_fs.py``: ``PCViews``, ``points2depth``,
``distribute`` with ``size_x = size_y = 1``): the rotated cloud is moved ``distance`` along +z (1.6 zero-shot,
1.4 few-shot: ``TRANS``), a point's depth is its z, and it is projected by a pinhole with a 90 degree field of view,
``u = (x / z + 1) * S / 2``, ``v = (y / z + 1) * S / 2``, onto the pixel (row ``ceil(u - 0.5)``, column
``ceil(v - 0.5)``) of an ``S x S`` image (S = 128 zero-shot, 224 few-shot): rows follow x, columns y, as in the
official image. Each pixel holds the **harmonic mean** of the depths of the points on it (the official weights each
point by ``1 / depth``: ``sum(d / d) / sum(1 / d)``), 0 where there is none; points behind the camera or outside
the image are dropped. No z-buffer: front and back surfaces mix, the nearer weighing more.

**V2** (yangyangyang127/PointCLIP_V2, ``zeroshot_cls/trainers/mv_utils_zs.py``: ``Realistic_Projection``,
``points2grid``, ``Grid2Image``): orthographic. Each rotated cloud is moved by (0.5, 0.5, 1.5), then centred on its
bounding box (which undoes the move, but for the rounding: kept, so the images are the official's to float
precision) and scaled so its longest side spans [-1, 1], x and y shrunk by 0.8 (``obj_ratio``); points fall into
a 112 x 112 x 8 voxel grid (x, y: ``ceil((c + 1) / 2 * 112)`` clipped to [1, 110]; depth
``z' = ((z + 1) / 2 + 0.2) / 1.2 * 6`` in [1, 6], slice ``ceil(z')``), each voxel keeping the largest ``z'`` of its
points (``scatter(..., reduce="max")``, 0 when empty). Then: a 7 x 7 max-pool within each depth slice (stride 1,
padding 2: the densifying step; the image shrinks to 110 x 110 and moves a pixel), a 3 x 3 Gaussian (sigma 3,
normalised) within each slice, the max over the depth slices (the surface of largest z' wins: V2 looks from +z,
where V1's camera looks along +z, from the other side), division by the image's maximum, and the inversion
``1 - image``: background 1, that surface darkest. ``invert=False`` skips the inversion (background 0, the
surface bright).

**CLIP input** (:func:`views_to_clip_input`): the official code repeats the single channel three times and
resizes bilinearly with ``align_corners=True`` to 224 (V1 zero-shot from 128, V2 from 110; V1 few-shot projects at
224 directly), then feeds the CLIP *without* its mean / std normalisation: V1 the raw depths (0.6 to 2.6 for a
unit-sphere cloud), V2 values in [0, 1]. ``normalize=True`` applies CLIP's normalisation instead, for a CLIP
trained on normalised depth renders.

Both give the official images to float precision (largest difference 4e-7, on random clouds and ShapesWorld solids,
checked against the official functions run on a CPU), rounding included: the rotations are computed in float32
and applied one after the other as the official does, since points on flat faces sit on pixel borders.

Deliberate differences from the official code:

- A cloud whose rotated extent is zero (every point in one place) is projected to the grid's centre; the official
  divides by the zero extent (NaN images).
- V1's pixel value is the harmonic mean computed as ``count / sum(1 / d)``; the official adds 1e-12 to the depths
  (a relative difference below 1e-11).
- Resizing to a *smaller* CLIP input (the official never shrinks) antialiases, so single-pixel points are averaged
  into the smaller image rather than skipped by the bilinear samples.
- No CUDA or ``torch_scatter`` needed: plain torch, on any device. V2's max-pooling is computed by spreading each
  point to the pooled pixels whose windows hold it and its smoothing as two 1D passes: the same images, about ten
  times faster on a CPU than the dense pooling and ``conv2d``.
- Bad clouds raise: no points, NaN or infinite coordinates, a shape other than ``[B, N, 3]``.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_clip.transforms import CLIP_MEAN, CLIP_STD

EulerAngles = Sequence[float]
View = Sequence[EulerAngles]  # rotations applied one after the other

_PI = math.pi
# PCViews of mv_utils_zs.py (zero-shot) and mv_utils_fs.py (few-shot): 4 around the vertical axis, then (few-shot)
# 4 from 45 degrees above / below between them, and from above and below.
V1_ZERO_SHOT_VIEWS: tuple[View, ...] = (
    ((0.0, 0.0, _PI / 2),),
    ((_PI / 2, 0.0, _PI / 2),),
    ((_PI, 0.0, _PI / 2),),
    ((3 * _PI / 2, 0.0, _PI / 2),),
    ((0.0, -_PI / 2, _PI / 2),),
    ((0.0, _PI / 2, _PI / 2),),
)
V1_FEW_SHOT_VIEWS: tuple[View, ...] = (
    ((0.0, 0.0, _PI / 2),),
    ((_PI / 2, 0.0, _PI / 2),),
    ((_PI, 0.0, _PI / 2),),
    ((3 * _PI / 2, 0.0, _PI / 2),),
    ((5 * _PI / 4, -_PI / 4, _PI / 2),),
    ((5 * _PI / 4, _PI / 4, _PI / 2),),
    ((7 * _PI / 4, -_PI / 4, _PI / 2),),
    ((7 * _PI / 4, _PI / 4, _PI / 2),),
    ((0.0, -_PI / 2, _PI / 2),),
    ((0.0, _PI / 2, _PI / 2),),
)
# Realistic_Projection: 8 around the vertical axis (every 45 degrees, odd multiples first), above and below; each
# then tilted by Ry(pi/9) (the last two by Ry(pi/15)), the official "_views_bias".
V2_VIEWS: tuple[View, ...] = (
    *(((k * _PI / 4, 0.0, _PI / 2), (0.0, _PI / 9, 0.0)) for k in (1, 3, 5, 7)),
    *(((k * _PI / 2, 0.0, _PI / 2), (0.0, _PI / 9, 0.0)) for k in (0, 1, 2, 3)),
    ((0.0, -_PI / 2, _PI / 2), (0.0, _PI / 15, 0.0)),
    ((0.0, _PI / 2, _PI / 2), (0.0, _PI / 15, 0.0)),
)
VIEW_SETS: dict[str, tuple[View, ...]] = {
    "v1_zero_shot": V1_ZERO_SHOT_VIEWS,
    "v1_few_shot": V1_FEW_SHOT_VIEWS,
    "v2": V2_VIEWS,
}

# V1's camera distance (TRANS) and image side, zero-shot and few-shot.
V1_ZERO_SHOT_DISTANCE, V1_FEW_SHOT_DISTANCE = 1.6, 1.4
V1_ZERO_SHOT_SIZE, V1_FEW_SHOT_SIZE = 128, 224
# V2's realistic projection ("params" of mv_utils_zs.py).
V2_GRID_SIZE, V2_GRID_DEPTH = 112, 8
V2_OBJECT_RATIO, V2_DEPTH_BIAS = 0.8, 0.2
V2_DENSIFY_KERNEL, V2_DENSIFY_PADDING = 7, 2
# Every V2 view moves the rotated cloud by this (minus its [-0.5, -0.5, TRANS = -1.5]). The cloud is re-centred right
# after, so only the rounding changes, but that decides the depth slice of the points at the ends of the longest side.
V2_SHIFT = (0.5, 0.5, 1.5)
V2_SMOOTHING_KERNEL, V2_SMOOTHING_SIGMA = 3, 3.0
# The CLIP input side both versions resize to.
OFFICIAL_CLIP_SIZE = 224


def euler_rotation(angles: EulerAngles) -> Tensor:
    """``Rx(a) @ Ry(b) @ Rz(c)`` ``[3, 3]`` for angles ``(a, b, c)`` in radians, in float32 as ``euler2mat``
    computes it (its rounding decides the pixel of points on pixel borders, which solids' flat faces have)."""
    if len(angles) != 3:
        raise ValueError(f"a view's rotation is three Euler angles (x, y, z) in radians, got {list(angles)}")
    a, b, c = (torch.tensor(float(angle)) for angle in angles)
    zero, one = torch.zeros(()), torch.ones(())
    rx = torch.stack([one, zero, zero, zero, a.cos(), -a.sin(), zero, a.sin(), a.cos()]).view(3, 3)
    ry = torch.stack([b.cos(), zero, b.sin(), zero, one, zero, -b.sin(), zero, b.cos()]).view(3, 3)
    rz = torch.stack([c.cos(), -c.sin(), zero, c.sin(), c.cos(), zero, zero, zero, one]).view(3, 3)
    return rx @ ry @ rz


def view_rotations(views: Sequence[View]) -> Tensor:
    """``[V, K, 3, 3]``: the K rotations of each view, applied in that order (views with fewer are padded with
    identities, which change no coordinate). Kept apart rather than multiplied together, as the official applies
    them, for the same rounding."""
    if len(views) == 0:
        raise ValueError("need at least one view")
    for position, view in enumerate(views):
        if len(view) == 0 or any(len(angles) != 3 for angles in view):
            raise ValueError(
                f"view {position} must be a list of Euler angle triples [[x, y, z], ...] (radians), got {view}"
            )
    steps = max(len(view) for view in views)
    identity = torch.eye(3)
    return torch.stack(
        [torch.stack([euler_rotation(angles) for angles in view] + [identity] * (steps - len(view))) for view in views]
    )


def check_points(points: Tensor) -> Tensor:
    """``points`` as float32, after checking it is ``[B, N, 3]`` with N >= 1 and finite coordinates."""
    if not isinstance(points, Tensor):
        raise TypeError(f"points must be a tensor [B, N, 3], got {type(points).__name__}")
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be [B, N, 3] (clouds, points, xyz), got shape {list(points.shape)}")
    if points.shape[1] == 0:
        raise ValueError(f"empty point cloud: points has shape {list(points.shape)}, with no points to project")
    finite = torch.isfinite(points).all(dim=-1)
    if not finite.all():
        cloud, point = (int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"point cloud {cloud} has NaN or infinite coordinates (point {point}: {points[cloud, point].tolist()}; "
            f"{int((~finite).sum())} such points in the batch)"
        )
    return points.float()


def rotate(points: Tensor, rotations: Tensor) -> Tensor:
    """``[B, V, N, 3]``: every cloud ``[B, N, 3]`` seen by every view: ``R @ p`` for rotations ``[V, 3, 3]``, or for
    ``[V, K, 3, 3]`` the K rotations of each view one after the other."""
    rotations = rotations.to(points)
    if rotations.ndim == 3:
        rotations = rotations[:, None]
    if rotations.ndim != 4 or rotations.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must be [V, 3, 3] or [V, K, 3, 3], got shape {list(rotations.shape)}")
    seen = points[:, None]  # [B, 1, N, 3]
    for step in range(rotations.shape[1]):
        seen = seen @ rotations[None, :, step].transpose(-1, -2)  # row vectors: p @ R^T, as the official
    return seen.expand(-1, rotations.shape[0], -1, -1)


def without_autocast(function: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``function(points, ...)`` in fp32 even under autocast: bf16 coordinates would move points by pixels."""

    @functools.wraps(function)
    def run(points: Tensor, *args, **kwargs) -> Tensor:
        device_type = points.device.type if isinstance(points, Tensor) else "cpu"
        with torch.autocast(device_type, enabled=False):
            return function(points, *args, **kwargs)

    return run


@without_autocast
def project_v1(
    points: Tensor,
    views: Sequence[View] | Tensor = V1_ZERO_SHOT_VIEWS,
    image_size: int = V1_ZERO_SHOT_SIZE,
    distance: float = V1_ZERO_SHOT_DISTANCE,
) -> Tensor:
    """PointCLIP V1's depth images ``[B, V, image_size, image_size]``: per pixel the harmonic mean of the depths
    of its points, 0 where none (see the module docstring).

    Args:
        points: ``[B, N, 3]`` clouds.
        views: a view set (Euler angle triples per view) or rotations ``[V, 3, 3]``.
        image_size: the image side (official: 128 zero-shot, 224 few-shot).
        distance: how far the camera is from the cloud's origin (official: 1.6 zero-shot, 1.4 few-shot).
    """
    points = check_points(points)
    rotations = views if isinstance(views, Tensor) else view_rotations(views)
    seen = rotate(points, rotations)  # [B, V, N, 3]
    batch, num_views = seen.shape[:2]
    depth = seen[..., 2] + distance
    in_front = depth > 0
    safe_depth = torch.where(in_front, depth, torch.ones_like(depth))
    rows = torch.ceil((seen[..., 0] / safe_depth + 1) * image_size / 2 - 0.5)
    columns = torch.ceil((seen[..., 1] / safe_depth + 1) * image_size / 2 - 0.5)
    inside = in_front & (rows >= 0) & (rows <= image_size - 1) & (columns >= 0) & (columns <= image_size - 1)
    image_index = torch.arange(batch * num_views, device=points.device).view(batch, num_views, 1)
    pixel = (image_index * image_size + rows.clamp(0, image_size - 1).long()) * image_size
    pixel = torch.where(inside, pixel + columns.clamp(0, image_size - 1).long(), torch.zeros_like(pixel))
    size = batch * num_views * image_size * image_size
    counts = torch.zeros(size, device=points.device).index_add_(0, pixel.flatten(), inside.flatten().float())
    inverse_depths = torch.where(inside, 1 / safe_depth, torch.zeros_like(safe_depth))
    inverse_sums = torch.zeros(size, device=points.device).index_add_(0, pixel.flatten(), inverse_depths.flatten())
    harmonic_mean = torch.where(counts > 0, counts / inverse_sums.clamp_min(1e-30), torch.zeros_like(counts))
    return harmonic_mean.view(batch, num_views, image_size, image_size)


def gaussian_blur(images: Tensor, size: int = V2_SMOOTHING_KERNEL, sigma: float = V2_SMOOTHING_SIGMA) -> Tensor:
    """``images`` ``[..., H, W]`` convolved with V2's normalised ``size x size`` Gaussian (``get2DGaussianKernel``),
    zero-padded to keep their size: two 1D passes (the kernel is an outer product), each adding shifted copies in
    place, which on a CPU costs a fraction of a one-channel ``conv2d``."""
    half = size // 2
    offsets = torch.arange(size, dtype=torch.float32) - half
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = (line / line.sum()).tolist()

    def along(values: Tensor, dim: int) -> Tensor:
        length = values.shape[dim]
        out = values * weights[half]
        for shift in range(1, min(half, length - 1) + 1):
            kept = length - shift
            out.narrow(dim, shift, kept).add_(values.narrow(dim, 0, kept), alpha=weights[half - shift])
            out.narrow(dim, 0, kept).add_(values.narrow(dim, shift, kept), alpha=weights[half + shift])
        return out

    return along(along(images, -2), -1)


@without_autocast
def project_v2(
    points: Tensor,
    views: Sequence[View] | Tensor = V2_VIEWS,
    grid_size: int = V2_GRID_SIZE,
    grid_depth: int = V2_GRID_DEPTH,
    invert: bool = True,
) -> Tensor:
    """PointCLIP V2's realistic projection ``[B, V, grid_size - 2, grid_size - 2]`` in [0, 1] (see the module
    docstring): voxelise, densify by max-pooling, smooth with a Gaussian, take the max over depth, scale by the
    image's maximum and (``invert``, official) invert.

    Args:
        points: ``[B, N, 3]`` clouds.
        views: a view set (Euler angle triples per view) or rotations ``[V, 3, 3]``.
        grid_size: the grid's side (official 112; the image is 2 pixels smaller, from the pooling's padding).
        grid_depth: the grid's depth slices (official 8; the points fill slices 1 to ``grid_depth - 2``).
        invert: ``1 - image`` (official): background white, the nearest surface darkest.
    """
    points = check_points(points)
    if grid_size < V2_DENSIFY_KERNEL or grid_depth < 3:
        raise ValueError(
            f"grid_size must be at least {V2_DENSIFY_KERNEL} and grid_depth at least 3, "
            f"got {grid_size} and {grid_depth}"
        )
    rotations = views if isinstance(views, Tensor) else view_rotations(views)
    seen = rotate(points, rotations) + torch.tensor(V2_SHIFT, device=points.device)  # [B, V, N, 3]
    batch, num_views = seen.shape[:2]
    highest, lowest = seen.amax(dim=2, keepdim=True), seen.amin(dim=2, keepdim=True)
    extent = (highest - lowest).amax(dim=-1, keepdim=True).clamp_min(1e-12)
    seen = (seen - (highest + lowest) / 2) / extent * 2  # the longest side spans [-1, 1]
    x, y, z = seen.unbind(dim=-1)
    rows = torch.ceil((x * V2_OBJECT_RATIO + 1) / 2 * grid_size).clamp(1, grid_size - 2).long()
    columns = torch.ceil((y * V2_OBJECT_RATIO + 1) / 2 * grid_size).clamp(1, grid_size - 2).long()
    depth = ((z + 1) / 2 + V2_DEPTH_BIAS) / (1 + V2_DEPTH_BIAS) * (grid_depth - 2)
    slices = torch.ceil(depth).clamp(0, grid_depth - 1).long()
    values = depth.clamp(1, grid_depth - 2)
    # Voxelise and densify in one step. The official scatters each point's z' into its voxel (keeping the largest)
    # and max-pools every depth slice 7 x 7; the grid being 0 but at the points, a pooled pixel is the largest z' of
    # the points in its window, or 0. Here each point's z' goes straight to the pooled pixels whose windows hold it,
    # the same image for far less work: grid row r is in the windows of pooled rows r + padding - kernel + 1 to
    # r + padding, i.e. rows r to r + kernel - 1 of a canvas with kernel - 1 - padding more rows in front.
    kernel, padding = V2_DENSIFY_KERNEL, V2_DENSIFY_PADDING
    side, canvas = grid_size + 2 * padding - kernel + 1, grid_size + kernel - 1
    first_slice, last_slice = int(slices.min()), int(slices.max())  # the slices outside stay 0, smoothed or not
    num_slices = last_slice - first_slice + 1
    image_index = torch.arange(batch * num_views, device=points.device).view(batch, num_views, 1)
    corner = ((image_index * num_slices + slices - first_slice) * canvas + rows) * canvas + columns  # [B, V, N]
    window = torch.arange(kernel, device=points.device)
    window = (window[:, None] * canvas + window[None, :]).flatten()  # [kernel * kernel]
    dense = torch.zeros(batch * num_views * num_slices * canvas * canvas, device=points.device)
    pixels, spread = corner[..., None] + window, values[..., None].expand(-1, -1, -1, len(window))
    dense = dense.scatter_reduce(0, pixels.flatten(), spread.flatten(), reduce="amax", include_self=True)
    start = kernel - 1 - padding
    dense = dense.view(batch * num_views, num_slices, canvas, canvas)[..., start : start + side, start : start + side]
    # Smooth within each slice (the official 3D kernel is 1 deep), then the max over the slices.
    image = gaussian_blur(dense).amax(dim=1)
    image = image / image.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    image = 1 - image if invert else image
    return image.view(batch, num_views, side, side)


def views_to_clip_input(views: Tensor, image_size: int, normalize: bool = False) -> Tensor:
    """``[B, V, 3, image_size, image_size]``: single-channel views ``[B, V, H, W]`` repeated into three channels and
    resized bilinearly (``align_corners=True``, as the official; antialiased when shrinking), with CLIP's mean / std
    normalisation if ``normalize`` (the official feeds the values as they are)."""
    if views.ndim != 4:
        raise ValueError(f"views must be [B, V, H, W], got shape {list(views.shape)}")
    batch, num_views, height, width = views.shape
    images = views.reshape(batch * num_views, 1, height, width).float()
    if (height, width) != (image_size, image_size):
        shrinking = image_size < min(height, width)
        images = F.interpolate(
            images, size=(image_size, image_size), mode="bilinear", align_corners=True, antialias=shrinking
        )
    images = images.expand(-1, 3, -1, -1)
    if normalize:
        mean = torch.tensor(CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=images.device).view(1, 3, 1, 1)
        images = (images - mean) / std
    return images.reshape(batch, num_views, 3, image_size, image_size).contiguous()
