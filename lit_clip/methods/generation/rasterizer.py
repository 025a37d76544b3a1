"""A differentiable vector rasteriser in plain torch: the stand-in for diffvg that CLIPDraw and CLIPasso optimise
their strokes through.

**What diffvg does.** diffvg (Li et al. 2020) renders 2D vector paths and differentiates the image with respect to
their control points, widths and colours, in a CUDA/C++ kernel with a bounding volume hierarchy. A stroke covers the
points within half its width of the curve (nearest points found by solving polynomials); each pixel is prefiltered
by supersampling; the gradients of coverage discontinuities (an edge moving across a pixel) come from sampling
points on the edges analytically ("edge sampling").

**What this does instead.** Each path is a chain of cubic Bezier segments (the control points of segment ``s`` are
points ``3s .. 3s + 3``, as SVG's ``M p0 C p1 p2 p3 C p4 p5 p6 ...``), flattened into ``samples_per_segment``
straight pieces per segment. A stroke covers a pixel by ``clamp(width / 2 - d + 0.5, 0, 1)``, ``d`` the distance
from the pixel centre ``(x + 0.5, y + 0.5)`` to the nearest piece: a one-pixel box filter across a straight edge.
Coverage is then a continuous function of the geometry, so plain autograd differentiates it: control points and
widths get gradients through the one-pixel ramp at the edges, colours and alpha wherever a path covers anything. A
filled path (closed: its last point joined to its first) covers ``clamp(0.5 - signed_distance, 0, 1)``, the
distance negative inside by the **even-odd** rule (diffvg's default, ``use_even_odd_rule=True``; a crossing test
against the flattened polygon), and draws no stroke.

**Culling.** A dense distance tensor (50k pixels x 256 paths x 48 pieces, CLIPDraw's size) is far too large. The
image is split into 4 x 4 tiles; each piece is paired with the tiles its bounding box, grown by ``width / 2 + 1``,
touches, and distances are computed only for those (tile, piece) pairs. The nearest piece of every (path, tile)
pixel is found without autograd (a ``scatter_reduce`` minimum over the pairs), and only that one distance per
(path, pixel) is recomputed with autograd: the backward pass never sees the pairs. Filled paths are few and
computed densely, over every pixel. :func:`rasterize_dense` computes the same image without culling, the reference.

**Compositing.** Straight-alpha RGBA paths are composited in order, path 0 at the bottom, with "over": ``out = c *
a * cov + out * (1 - a * cov)``, over the background (white by default: diffvg's RGBA image composited over white,
``A * RGB + (1 - A)``). Per tile, the paths near it are stacked in order (padded with transparent layers to the most
crowded tile's count) and composited at once through a cumulative product of ``1 - a * cov`` from the top, rather
than a loop over the paths.

**Widths.** ``widths`` is the full stroke width in pixels, SVG's ``stroke-width``. diffvg's ``Path.stroke_width``
is a *half* width (its SVG parser divides ``stroke-width`` by 2): CLIPasso's ``stroke_width=1.5`` is a width of 3
here.

**Speed** (``python -m benchmarks.bench_rasterizer --threads 1``: one forward + backward at 224 x 224 on one thread
of an AMD EPYC, shared with other jobs): CLIPDraw-like, 256 paths of 1-3 segments, 0.033 s; CLIPasso-like, 16
strokes of one segment, 0.0095 s. The same images computed densely take 7.2 s and 0.24 s: the culling is 216 and 25
times faster.

Deliberate differences from diffvg:

- No analytic edge-sampling gradients: the box-filtered distance ramp makes coverage smooth in the geometry and
  autograd differentiates it. The ramp is a pixel's exact coverage by an axis-aligned straight edge (close for
  others); a stroke narrower than a pixel is drawn too strong, its coverage peaking at ``width / 2 + 0.5`` rather
  than at its width.
- Curves are flattened into ``samples_per_segment`` straight pieces per segment, not solved for their nearest
  points (16 by default: CLIPDraw's curves at 224 px are at most 0.05 px from their flattening).
- Caps and joins are round, as diffvg's (points within half the width of the curve); SVG renderers draw them so
  only when told: :func:`to_svg` writes ``stroke-linecap="round"``, ``stroke-linejoin="round"`` and, for fills,
  ``fill-rule="evenodd"``.
- A path is either filled (the even-odd rule only, no stroke) or an open stroke; no per-point thickness, circles,
  ellipses, rectangles or gradients.
"""
from __future__ import annotations

from typing import Callable, Sequence
from xml.etree import ElementTree

import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw
from torch import Tensor

TILE = 4  # pixels; measured: 8 and 16 waste distances on pixels far from short pieces, 2 makes too many pairs
# Pixels the dense computations (fills, the un-culled reference) take at once: a chunk of distances stays in cache.
DENSE_PIXELS = 4096
# (piece, tile) pairs whose distances the culled renderer holds at once.
PAIR_CHUNK = 1 << 16
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
# Avoids the infinite derivative of sqrt at 0 (a pixel centre exactly on the curve).
_DISTANCE_EPS = 1e-12


def bezier_points(points: Tensor, num_segments: Tensor | None = None, samples_per_segment: int = 16) -> Tensor:
    """The polyline of chained cubic Bezier segments: ``[..., 3 * S + 1, 2]`` control points to ``[..., S * N + 1,
    2]`` points (``N = samples_per_segment``), segment ``s`` sampled at ``t = 0, 1 / N, ..., (N - 1) / N`` and the
    last point appended. Where ``num_segments`` (``[...]``, ints) uses fewer than ``S`` segments, the points of the
    unused ones all sit on the last used end point (zero-length pieces), so the polyline keeps its shape."""
    num_control = points.shape[-2]
    num_all = (num_control - 1) // 3
    t = torch.arange(samples_per_segment, dtype=points.dtype, device=points.device) / samples_per_segment
    basis = torch.stack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3], dim=-1)  # [N, 4]
    index = 3 * torch.arange(num_all, device=points.device)[:, None] + torch.arange(4, device=points.device)
    control = points[..., index, :]  # [..., S, 4, 2]
    curve = torch.einsum("nk,...skc->...snc", basis, control).flatten(-3, -2)
    curve = torch.cat([curve, points[..., -1:, :]], dim=-2)
    if num_segments is None:
        return curve
    num_segments = num_segments.to(points.device).long().expand(points.shape[:-2])
    end_index = (3 * num_segments)[..., None, None].expand(*num_segments.shape, 1, 2)
    ends = points.gather(-2, end_index)  # [..., 1, 2]
    used = torch.arange(curve.shape[-2], device=points.device) <= num_segments[..., None] * samples_per_segment
    return torch.where(used[..., None], curve, ends)


def rasterize(
    points: Tensor,
    widths: Tensor,
    colours: Tensor,
    height: int,
    width: int,
    num_segments: Tensor | None = None,
    filled: Tensor | None = None,
    background: Tensor | float | Sequence[float] = 1.0,
    samples_per_segment: int = 16,
) -> Tensor:
    """Render ``B`` drawings of ``P`` paths each into ``[B, 3, height, width]`` images in [0, 1], differentiably.

    Args:
        points: ``[B, P, 3 * S + 1, 2]`` control points in pixels (x to the right, y down) of chained cubic Bezier
            segments; segment ``s`` uses points ``3s .. 3s + 3``.
        widths: ``[B, P]`` full stroke widths in pixels (SVG's ``stroke-width``; diffvg's ``stroke_width`` is half
            of it). Ignored for filled paths.
        colours: ``[B, P, 4]`` straight (not premultiplied) RGBA in [0, 1].
        height, width: the image size.
        num_segments: ``[B, P]`` or ``[P]`` ints in ``1 .. S``, the segments each path uses; None: all ``S``.
        filled: ``[P]`` bool, the closed paths whose inside (even-odd rule) is filled instead of stroked; None:
            every path is an open stroke.
        background: ``[B, 3, H, W]`` (or ``[1, 3, H, W]``) images, an RGB colour or a grey value (white: 1.0).
        samples_per_segment: straight pieces each Bezier segment is flattened into.

    Returns:
        ``[B, 3, height, width]``: the paths composited in order (path 0 at the bottom) over the background.
    """
    num_segments, filled = _validated(points, widths, colours, height, width, num_segments, filled,
                                      samples_per_segment)  # fmt: skip
    batch, num_paths = points.shape[:2]
    widths, colours = widths.to(points.dtype), colours.to(points.dtype)
    backdrop = _background(background, batch, height, width, points)
    if batch * num_paths == 0:
        return (backdrop if backdrop.dim() == 4 else backdrop[:, None, None]).expand(batch, 3, height, width).clone()
    curve = bezier_points(points, num_segments, samples_per_segment)
    rows, cols = -(-height // TILE), -(-width // TILE)
    keys, coverage = _culled_stroke_coverage(curve, widths, num_segments, ~filled, samples_per_segment, rows, cols)
    fill_index = filled.nonzero().flatten()
    if len(fill_index):
        tiles = torch.arange(rows * cols, device=points.device)
        tile_x, tile_y = _tile_pixels(tiles, cols, points)
        fill_coverage = _fill_coverage(curve[:, fill_index], tile_x.flatten(), tile_y.flatten())
        drawing = torch.arange(batch, device=points.device)
        fill_keys = ((drawing[:, None, None] * rows * cols + tiles) * num_paths + fill_index[:, None]).flatten()
        keys = torch.cat([keys, fill_keys])
        coverage = torch.cat([coverage, fill_coverage.reshape(-1, TILE * TILE)])
        order = keys.argsort()
        keys, coverage = keys[order], coverage[order]

    # keys sort by (drawing, tile, path): each (drawing, tile) group lists its paths bottom to top. They become the
    # group's layers, top first, padded with transparent ones to the most crowded tile's count.
    group = keys // num_paths
    path = group // (rows * cols) * num_paths + keys % num_paths
    colour = colours.reshape(-1, 4)[path]
    counts = torch.bincount(group, minlength=batch * rows * cols)
    from_top = counts.cumsum(0)[group] - 1 - torch.arange(len(keys), device=keys.device)
    layers = max(int(counts.max()), 1)
    alpha = coverage.new_zeros(batch * rows * cols, layers, TILE * TILE)
    alpha = alpha.index_put((group, from_top), coverage * colour[:, 3:])
    rgb = colours.new_zeros(batch * rows * cols, layers, 3).index_put((group, from_top), colour[:, :3])
    if backdrop.dim() == 4:
        padded = torch.nn.functional.pad(backdrop, (0, cols * TILE - width, 0, rows * TILE - height))
        backdrop = padded.reshape(batch, 3, rows, TILE, cols, TILE).permute(0, 2, 4, 3, 5, 1)
        backdrop = backdrop.reshape(batch * rows * cols, TILE * TILE, 3)
    image = _composite(alpha, rgb, backdrop)  # [B * tiles, T * T, 3]
    image = image.reshape(batch, rows, cols, TILE, TILE, 3).permute(0, 5, 1, 3, 2, 4)
    return image.reshape(batch, 3, rows * TILE, cols * TILE)[:, :, :height, :width]


def rasterize_dense(
    points: Tensor,
    widths: Tensor,
    colours: Tensor,
    height: int,
    width: int,
    num_segments: Tensor | None = None,
    filled: Tensor | None = None,
    background: Tensor | float | Sequence[float] = 1.0,
    samples_per_segment: int = 16,
) -> Tensor:
    """:func:`rasterize` without culling: every pixel against every piece of every path, and every path in the
    compositing of every pixel. The same image; the reference the tests and the benchmark compare with."""
    num_segments, filled = _validated(points, widths, colours, height, width, num_segments, filled,
                                      samples_per_segment)  # fmt: skip
    batch, num_paths = points.shape[:2]
    widths, colours = widths.to(points.dtype), colours.to(points.dtype)
    backdrop = _background(background, batch, height, width, points)
    curve = bezier_points(points, num_segments, samples_per_segment)
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pixel_x, pixel_y = x.flatten().to(points) + 0.5, y.flatten().to(points) + 0.5
    start, end = curve[:, :, :-1].flatten(0, 1), curve[:, :, 1:].flatten(0, 1)
    nearest = _nearest_pieces(pixel_x, pixel_y, start, end, (num_segments * samples_per_segment).flatten())
    index = nearest[..., None].expand(-1, -1, 2)
    distance = _squared_distance(pixel_x, pixel_y, start.gather(1, index), end.gather(1, index))
    distance = distance.add(_DISTANCE_EPS).sqrt().view(batch, num_paths, -1)
    coverage = (widths[..., None] / 2 - distance + 0.5).clamp(0, 1)
    fill_index = filled.nonzero().flatten()
    if len(fill_index):
        coverage = coverage.index_copy(1, fill_index, _fill_coverage(curve[:, fill_index], pixel_x, pixel_y))
    flat_backdrop = backdrop.flatten(2).transpose(1, 2) if backdrop.dim() == 4 else backdrop
    alpha, rgb = (coverage * colours[..., 3:]).flip(1), colours[..., :3].flip(1)  # top first
    image = _composite(alpha, rgb, flat_backdrop)  # [B, H * W, 3]
    return image.transpose(1, 2).reshape(batch, 3, height, width)


def _culled_stroke_coverage(
    curve: Tensor,
    widths: Tensor,
    num_segments: Tensor,
    stroked: Tensor,
    samples_per_segment: int,
    rows: int,
    cols: int,
) -> tuple[Tensor, Tensor]:
    """The stroke coverage of every (drawing, tile, path) that a piece of a stroked path comes near: their keys
    ``(drawing * tiles + tile) * P + path``, sorted, and ``[keys, T * T]`` coverages."""
    num_paths, num_points = curve.shape[1:3]
    start, end = curve[:, :, :-1].reshape(-1, 2), curve[:, :, 1:].reshape(-1, 2)
    with torch.no_grad():
        segment = torch.arange(num_points - 1, device=curve.device) // samples_per_segment
        valid = (segment < num_segments[..., None]) & stroked[:, None]  # [B, P, L]
        piece = valid.flatten().nonzero().flatten()
        reach = (widths / 2 + 1).repeat_interleave(num_points - 1)[piece, None]
        # The tiles holding pixel centres (x + 0.5) within reach of the piece's bounding box, in tile units.
        low = (torch.minimum(start[piece], end[piece]) - reach - 0.5) / TILE
        high = (torch.maximum(start[piece], end[piece]) + reach - 0.5) / TILE
        limit = torch.tensor([cols, rows], device=curve.device)
        first = low.clamp(-1, max(rows, cols)).floor().long().clamp_min(0)  # [pieces, (x, y)]
        last = torch.minimum(high.clamp(-1, max(rows, cols)).floor().long(), limit - 1)
        span = (last - first + 1).clamp_min(0)
        count = span[:, 0] * span[:, 1]
        # Every (piece, tile) pair: piece i repeated count[i] times, walking its span of tiles row by row.
        owner = torch.repeat_interleave(torch.arange(len(piece), device=curve.device), count)
        offset = torch.arange(len(owner), device=curve.device) - (count.cumsum(0) - count)[owner]
        tile = (first[owner, 1] + offset // span[owner, 0]) * cols + first[owner, 0] + offset % span[owner, 0]
        pair_piece = piece[owner]
        path = pair_piece // (num_points - 1)  # drawing * P + path
        keys, combo = torch.unique((path // num_paths * rows * cols + tile) * num_paths + path % num_paths,
                                   return_inverse=True)  # fmt: skip

        def squared_of(pairs: slice) -> Tensor:
            origin, along = start[pair_piece[pairs]], end[pair_piece[pairs]] - start[pair_piece[pairs]]
            pixels = _tile_pixels(tile[pairs], cols, curve, origin)
            return _piece_squared_distance(*pixels, *along[:, :, None].unbind(1))

        nearest = _nearest_piece(squared_of, combo, pair_piece, len(keys), curve.dtype)  # [keys, T * T]
    tiles = keys // num_paths % (rows * cols)
    origin = start[nearest]
    squared = _piece_squared_distance(*_tile_pixels(tiles, cols, curve, origin), *(end[nearest] - origin).unbind(-1))
    path = keys // (num_paths * rows * cols) * num_paths + keys % num_paths
    coverage = (widths.reshape(-1)[path, None] / 2 - squared.add(_DISTANCE_EPS).sqrt() + 0.5).clamp(0, 1)
    return keys, coverage


def _tile_pixels(tiles: Tensor, cols: int, like: Tensor, origin: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``[len(tiles), T * T]`` x and y of the pixel centres of tiles (row-major tile and pixel order), less
    ``origin`` (``[len(tiles), 2]`` or ``[len(tiles), T * T, 2]``) when given."""
    offset = torch.arange(TILE * TILE, device=like.device)
    x = (tiles % cols * TILE + 0.5).to(like)[:, None] + (offset % TILE).to(like)
    y = (tiles // cols * TILE + 0.5).to(like)[:, None] + (offset // TILE).to(like)
    if origin is None:
        return x, y
    if origin.dim() == 2:
        origin = origin[:, None]
    return x - origin[..., 0], y - origin[..., 1]


def _nearest_piece(squared_of: Callable[[slice], Tensor], combo: Tensor, piece: Tensor, num_combos: int,
                   dtype: torch.dtype) -> Tensor:  # fmt: skip
    """For each combination's pixel, the piece at the least squared distance among the pairs ``combo`` maps to it.
    ``squared_of(pairs)`` gives a slice of the pairs' ``[pairs, T * T]`` squared distances: they are computed in
    chunks, so wide strokes (a piece near hundreds of tiles) do not hold them all at once."""
    chunks = [slice(first, first + PAIR_CHUNK) for first in range(0, len(combo), PAIR_CHUNK)]
    shape = (num_combos, TILE * TILE)
    if dtype == torch.float32:
        # Non-negative floats order as their bits: one minimum of (distance bits, piece) packed in 64 bits.
        least = torch.full(shape, torch.iinfo(torch.long).max, device=combo.device)
        for pairs in chunks:
            packed = squared_of(pairs).view(torch.int32).long() << 32 | piece[pairs, None]
            least.scatter_reduce_(0, combo[pairs, None].expand_as(packed), packed, "amin")
        return least & 0xFFFFFFFF
    least = torch.full(shape, float("inf"), dtype=dtype, device=combo.device)
    for pairs in chunks:
        squared = squared_of(pairs)
        least.scatter_reduce_(0, combo[pairs, None].expand_as(squared), squared, "amin")
    nearest = torch.full(shape, -1, device=combo.device)
    for pairs in chunks:  # the same distances again, so that equality finds the minimum
        candidate = torch.where(squared_of(pairs) == least[combo[pairs]], piece[pairs, None], -1)
        nearest.scatter_reduce_(0, combo[pairs, None].expand_as(candidate), candidate, "amax")
    return nearest


def _fill_coverage(polygons: Tensor, pixel_x: Tensor, pixel_y: Tensor) -> Tensor:
    """``[B, F, Q]`` coverages of ``Q`` pixels by ``[B, F, M, 2]`` polygons (closed: point M - 1 joins point 0),
    from the distance to the nearest edge, negative inside by the even-odd rule."""
    batch, num_fills = polygons.shape[:2]
    start, end = polygons.flatten(0, 1), polygons.roll(-1, dims=2).flatten(0, 1)
    nearest = _nearest_pieces(pixel_x, pixel_y, start, end)
    inside = torch.stack([_inside(pixel_x, pixel_y, first, last) for first, last in zip(start, end)])
    index = nearest[..., None].expand(-1, -1, 2)
    distance = _squared_distance(pixel_x, pixel_y, start.gather(1, index), end.gather(1, index))
    distance = distance.add(_DISTANCE_EPS).sqrt()
    return (0.5 - torch.where(inside, -distance, distance)).clamp(0, 1).view(batch, num_fills, -1)


@torch.no_grad()
def _nearest_pieces(pixel_x: Tensor, pixel_y: Tensor, start: Tensor, end: Tensor,
                    lengths: Tensor | None = None) -> Tensor:  # fmt: skip
    """``[M, Q]``: for each of ``M`` polylines (pieces ``start -> end``, ``[M, L, 2]``; only the first
    ``lengths[m]`` when given), the index of the piece nearest each of ``Q`` pixels. Every pixel against every
    piece, a polyline and a few thousand pixels at a time, in place: the dense computations' costly part."""
    nearest = torch.empty(len(start), len(pixel_x), dtype=torch.long, device=start.device)
    along = end - start
    scale = 1 / (along * along).sum(-1).clamp_min(1e-12)
    counts = [start.shape[1]] * len(start) if lengths is None else lengths.tolist()
    for m, count in enumerate(counts):
        (ax, ay), (ex, ey), s = start[m, :count].unbind(-1), along[m, :count].unbind(-1), scale[m, :count]
        for first in range(0, len(pixel_x), DENSE_PIXELS):
            x = pixel_x[first : first + DENSE_PIXELS, None] - ax
            y = pixel_y[first : first + DENSE_PIXELS, None] - ay
            t = (x * ex).addcmul_(y, ey).mul_(s).clamp_(0, 1)
            x.addcmul_(t, ex, value=-1).square_()
            nearest[m, first : first + DENSE_PIXELS] = x.add_(y.addcmul_(t, ey, value=-1).square_()).argmin(-1)
    return nearest


@torch.no_grad()
def _inside(pixel_x: Tensor, pixel_y: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """``[Q]``: whether pixel centres are inside the polygon of edges ``start -> end`` (``[M, 2]``), even-odd."""
    (ax, ay), (bx, by) = start.unbind(-1), end.unbind(-1)
    slope = (bx - ax) / (by - ay)  # infinite or NaN for horizontal edges, which straddle no row
    inside = torch.empty(len(pixel_x), dtype=torch.bool, device=start.device)
    for first in range(0, len(pixel_x), DENSE_PIXELS):
        x, y = pixel_x[first : first + DENSE_PIXELS, None], pixel_y[first : first + DENSE_PIXELS, None]
        # A ray from the pixel centre to the right crosses the edges straddling its row right of it (half-open:
        # a vertex on the row counts once).
        crossed = ((ay > y) != (by > y)) & (x < ax + (y - ay) * slope)
        inside[first : first + DENSE_PIXELS] = crossed.sum(-1) % 2 == 1
    return inside


def _squared_distance(pixel_x: Tensor, pixel_y: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Squared distances from pixel centres to the pieces ``start -> end`` (``[..., 2]``), broadcast."""
    return _piece_squared_distance(pixel_x - start[..., 0], pixel_y - start[..., 1], *(end - start).unbind(-1))


def _piece_squared_distance(x: Tensor, y: Tensor, along_x: Tensor, along_y: Tensor) -> Tensor:
    """Squared distances from points ``(x, y)`` to pieces from the origin to ``(along_x, along_y)``, broadcast."""
    t = ((x * along_x + y * along_y) / (along_x * along_x + along_y * along_y).clamp_min(1e-12)).clamp(0, 1)
    return (x - t * along_x) ** 2 + (y - t * along_y) ** 2


def _composite(alpha: Tensor, rgb: Tensor, backdrop: Tensor) -> Tensor:
    """``[G, D, Q]`` alphas and ``[G, D, 3]`` colours of ``D`` layers, **top first**, over ``[G, Q, 3]`` (or an
    ``[3]`` colour): ``[G, Q, 3]``. Layer d shows through the product of ``1 - alpha`` of the layers above it."""
    kept = (1 - alpha).cumprod(1)  # kept[:, d]: the light that layers 0 .. d let through
    through = torch.cat([torch.ones_like(kept[:, :1]), kept[:, :-1]], dim=1)
    weight = alpha * through
    drawn = torch.stack([(weight * rgb[:, :, channel, None]).sum(1) for channel in range(3)], dim=-1)
    return backdrop * kept[:, -1, :, None] + drawn


def _validated(
    points: Tensor,
    widths: Tensor,
    colours: Tensor,
    height: int,
    width: int,
    num_segments: Tensor | None,
    filled: Tensor | None,
    samples_per_segment: int,
) -> tuple[Tensor, Tensor]:
    """``num_segments`` as ``[B, P]`` longs and ``filled`` as ``[P]`` bools, after checking every argument."""
    if not isinstance(points, Tensor) or points.dim() != 4 or points.shape[-1] != 2 or points.shape[2] < 4 \
            or (points.shape[2] - 1) % 3:  # fmt: skip
        raise ValueError(f"points must be [B, P, 3 * S + 1, 2] (S >= 1 chained cubic segments), got {_shape(points)}")
    if not points.is_floating_point():
        raise ValueError(f"points must be floating point, got {points.dtype}")
    batch, num_paths, num_control, _ = points.shape
    num_all = (num_control - 1) // 3
    if not isinstance(widths, Tensor) or widths.shape != (batch, num_paths):
        raise ValueError(f"widths must be [B, P] = [{batch}, {num_paths}], got {_shape(widths)}")
    if not isinstance(colours, Tensor) or colours.shape != (batch, num_paths, 4):
        raise ValueError(f"colours must be [B, P, 4] = [{batch}, {num_paths}, 4] RGBA, got {_shape(colours)}")
    if not torch.isfinite(points).all():
        raise ValueError("points must be finite, got NaN or infinite coordinates")
    if not torch.isfinite(widths).all():
        raise ValueError("widths must be finite, got NaN or infinite widths")
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width must be at least 1, got {height} x {width}")
    if int(samples_per_segment) < 1:
        raise ValueError(f"samples_per_segment must be at least 1, got {samples_per_segment}")
    if num_segments is None:
        num_segments = torch.full((batch, num_paths), num_all, device=points.device)
    else:
        num_segments = torch.as_tensor(num_segments, device=points.device)
        if num_segments.is_floating_point() or num_segments.dtype == torch.bool \
                or num_segments.shape not in ((batch, num_paths), (num_paths,)):  # fmt: skip
            raise ValueError(f"num_segments must be integers of shape [B, P] = [{batch}, {num_paths}] or "
                             f"[P] = [{num_paths}], got {num_segments.dtype} {tuple(num_segments.shape)}")  # fmt: skip
        if num_segments.numel() and (num_segments.min() < 1 or num_segments.max() > num_all):
            raise ValueError(f"num_segments must be in 1 .. {num_all} (the segments points holds), got values "
                             f"{int(num_segments.min())} .. {int(num_segments.max())}")  # fmt: skip
        num_segments = num_segments.long().expand(batch, num_paths)
    if filled is None:
        filled = torch.zeros(num_paths, dtype=torch.bool, device=points.device)
    else:
        filled = torch.as_tensor(filled, device=points.device)
        if filled.dtype != torch.bool or filled.shape != (num_paths,):
            raise ValueError(f"filled must be [P] = [{num_paths}] bools, got {filled.dtype} {tuple(filled.shape)}")
    return num_segments, filled


def _background(background: Tensor | float | Sequence[float], batch: int, height: int, width: int,
                points: Tensor) -> Tensor:  # fmt: skip
    """``[B, 3, H, W]`` images, or an ``[3]`` colour, in the points' dtype."""
    if isinstance(background, Tensor) and background.dim() == 4:
        if background.shape[1:] != (3, height, width) or background.shape[0] not in (1, batch):
            raise ValueError(f"background images must be [B, 3, H, W] = [{batch}, 3, {height}, {width}] (or "
                             f"[1, 3, H, W]), got {tuple(background.shape)}")  # fmt: skip
        return background.to(points).expand(batch, -1, -1, -1)
    colour = torch.as_tensor(background, dtype=points.dtype, device=points.device)
    if colour.dim() == 0:
        colour = colour.expand(3)
    if colour.shape != (3,):
        raise ValueError(f"background must be [B, 3, H, W] images, an RGB colour (3 values) or a grey value, got "
                         f"shape {tuple(colour.shape)}")  # fmt: skip
    return colour


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def to_svg(
    points: Tensor,
    widths: Tensor,
    colours: Tensor,
    height: int,
    width: int,
    num_segments: Tensor | None = None,
    filled: Tensor | None = None,
    background: str | float | Sequence[float] | None = "white",
) -> list[str]:
    """One SVG document per drawing, of what :func:`rasterize` draws from the same arguments: a background
    ``<rect>`` (``background``: an SVG colour name, a grey value or RGB in [0, 1]; None: none) and one ``<path>``
    per path, strokes with round caps and joins, filled paths closed (``Z``) with the even-odd rule."""
    num_segments, filled = _validated(points, widths, colours, height, width, num_segments, filled, 1)
    points, widths, colours = (value.detach().cpu().double() for value in (points, widths, colours))
    if background is None or isinstance(background, str):
        backdrop = background
    else:
        backdrop = _svg_colour(torch.as_tensor(background, dtype=torch.float64).expand(3))
    documents = []
    for drawing in range(points.shape[0]):
        lines = [f'<svg xmlns="{SVG_NAMESPACE}" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
        if backdrop is not None:
            lines.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="{backdrop}"/>')
        for path in range(points.shape[1]):
            used = points[drawing, path, : 3 * int(num_segments[drawing, path]) + 1].tolist()
            xy = [f"{x:.3f} {y:.3f}" for x, y in used]
            commands = f"M {xy[0]}" + "".join(f" C {' '.join(xy[i:i + 3])}" for i in range(1, len(xy), 3))
            colour = _svg_colour(colours[drawing, path, :3])
            opacity = f"{float(colours[drawing, path, 3].clamp(0, 1)):.3f}"
            if filled[path]:
                style = f'fill="{colour}" fill-opacity="{opacity}" fill-rule="evenodd" stroke="none"'
                commands += " Z"
            else:
                style = (f'fill="none" stroke="{colour}" stroke-opacity="{opacity}" '
                         f'stroke-width="{float(widths[drawing, path]):.3f}" stroke-linecap="round" '
                         f'stroke-linejoin="round"')  # fmt: skip
            lines.append(f'<path d="{commands}" {style}/>')
        lines.append("</svg>")
        documents.append("\n".join(lines))
    return documents


def _svg_colour(rgb: Tensor) -> str:
    red, green, blue = (int(value) for value in (rgb.clamp(0, 1) * 255).round().tolist())
    return f"rgb({red}, {green}, {blue})"


def render_svg_with_pillow(svg: str, supersample: int = 4) -> np.ndarray:
    """``[H, W, 3]`` uint8: a hard rasteriser of what :func:`to_svg` writes (that subset only), for checks. Each
    path is flattened into a polyline and drawn by ``PIL.ImageDraw`` (a wide line with round joins and round-cap
    discs, or a polygon) into its own mask, composited with its opacity, ``supersample`` times larger, then averaged
    down."""
    root = ElementTree.fromstring(svg)
    if root.tag != f"{{{SVG_NAMESPACE}}}svg":
        raise ValueError(f"expected an <svg> document in the {SVG_NAMESPACE} namespace, got <{root.tag}>")
    width, height, scale = int(root.get("width", "0")), int(root.get("height", "0")), supersample
    canvas = Image.new("RGB", (width * scale, height * scale), (255, 255, 255))
    for element in root:
        tag = element.tag.removeprefix(f"{{{SVG_NAMESPACE}}}")
        if tag == "rect":
            canvas.paste(_pillow_colour(element.get("fill")), (0, 0, *canvas.size))
            continue
        if tag != "path":
            raise ValueError(f"render_svg_with_pillow reads <rect> and <path> (what to_svg writes), got <{tag}>")
        polyline, closed = _svg_polyline(element.get("d", ""))
        xy = [(x * scale - 0.5, y * scale - 0.5) for x, y in polyline]  # Pillow's pixel centres are integers
        mask = Image.new("L", canvas.size, 0)  # the whole path, so that its own overlaps are drawn once
        draw = ImageDraw.Draw(mask)
        if closed:
            draw.polygon(xy, fill=255)
            colour, opacity = element.get("fill"), element.get("fill-opacity", "1")
        else:
            radius = float(element.get("stroke-width", "1")) * scale / 2
            draw.line(xy, fill=255, width=max(1, round(2 * radius)), joint="curve")
            inner = max(radius - 0.5, 0)  # Pillow's ellipse covers its bounding box's last row and column too
            for x, y in (xy[0], xy[-1]):
                draw.ellipse((x - inner, y - inner, x + inner, y + inner), fill=255)
            colour, opacity = element.get("stroke"), element.get("stroke-opacity", "1")
        canvas.paste(_pillow_colour(colour), mask=mask.point(lambda value, alpha=float(opacity): round(value * alpha)))
    pixels = np.asarray(canvas, dtype=np.float64).reshape(height, scale, width, scale, 3).mean(axis=(1, 3))
    return pixels.round().astype(np.uint8)


def _pillow_colour(value: str | None) -> tuple[int, int, int]:
    try:
        return ImageColor.getrgb(value or "")[:3]
    except ValueError:
        raise ValueError(f"render_svg_with_pillow reads rgb(r, g, b) and colour names, got {value!r}") from None


def _svg_polyline(commands: str, samples_per_segment: int = 32) -> tuple[np.ndarray, bool]:
    """The polyline of ``M x y C x y x y x y ... [Z]``, and whether it is closed."""
    tokens = commands.replace(",", " ").split()
    closed = tokens[-1:] == ["Z"]
    tokens = tokens[:-1] if closed else tokens
    if len(tokens) < 10 or tokens[0] != "M" or (len(tokens) - 3) % 7 or any(t != "C" for t in tokens[3::7]):
        raise ValueError(f"render_svg_with_pillow reads paths 'M x y C x y x y x y ... [Z]', got {commands!r}")
    numbers = [token for i, token in enumerate(tokens) if i != 0 and (i - 3) % 7]
    try:
        control = np.array(numbers, dtype=np.float64).reshape(-1, 2)
    except ValueError:
        raise ValueError(f"render_svg_with_pillow reads numbers in paths, got {commands!r}") from None
    t = np.arange(samples_per_segment) / samples_per_segment
    basis = np.stack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3], axis=-1)
    segments = np.stack([control[i : i + 4] for i in range(0, len(control) - 1, 3)])  # [S, 4, 2]
    return np.concatenate([np.einsum("nk,skc->snc", basis, segments).reshape(-1, 2), control[-1:]]), closed
