"""The differentiable vector rasteriser: coverage against Pillow's hard rasteriser, gradients against finite
differences, translation, SVG export, compositing order, unused segments and batching, the culled image against the
dense one, and clear errors."""
import math

import numpy as np
import pytest
import torch

from lit_clip.methods.generation import rasterizer
from lit_clip.methods.generation.rasterizer import (
    bezier_points,
    rasterize,
    rasterize_dense,
    render_svg_with_pillow,
    to_svg,
)

BLACK = (0.0, 0.0, 0.0, 1.0)


def random_strokes(generator, size, paths, segments, widths=(2.0, 8.0)):
    """Strokes inside the image: a random start, then control points a random walk of up to 15% of the side."""
    start = torch.rand(1, paths, 1, 2, generator=generator) * size * 0.5 + size * 0.25
    steps = (torch.rand(1, paths, 3 * segments, 2, generator=generator) - 0.5) * size * 0.3
    points = torch.cat([start, start + steps.cumsum(2)], dim=2).clamp(1, size - 1)
    low, high = widths
    return points, low + (high - low) * torch.rand(1, paths, generator=generator)


def polygon_path(corners):
    """A closed path of straight cubic segments through ``[K, 2]`` corners: ``[1, 1, 3K + 1, 2]``."""
    following = corners.roll(-1, dims=0)
    thirds = torch.stack([corners, corners + (following - corners) / 3, corners + 2 * (following - corners) / 3], 1)
    return torch.cat([thirds.reshape(-1, 2), corners[:1]])[None, None]


def blob(size):
    """A five-lobed closed path of 20 straight sides around the image centre (non-convex, not self-intersecting)."""
    angles = torch.linspace(0, 2 * math.pi, 21)[:-1]
    radius = size * (0.3 + 0.08 * torch.cos(5 * angles))
    return polygon_path(torch.stack([torch.cos(angles), torch.sin(angles)], -1) * radius[:, None] + size / 2)


def bent_triangle(size, generator):
    """A closed path of three curved sides (``[1, 1, 10, 2]``): its inner control points moved off the sides."""
    corners = torch.tensor([[0.15, 0.2], [0.85, 0.35], [0.45, 0.9]]) * size
    points = polygon_path(corners)
    points[0, 0, 1:-1] += (torch.rand(8, 2, generator=generator) - 0.5) * size * 0.1
    return points


def ink(image_hwc):
    """Coverage of black ink on white: ``1 - red``."""
    return 1 - image_hwc[..., 0]


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("size", [32, 64, 224])
def test_stroke_and_fill_coverage_match_pillow(size):
    generator = torch.Generator().manual_seed(size)
    for segments in (1, 2):
        points, widths = random_strokes(generator, size, paths=3, segments=segments)
        colours = torch.tensor(BLACK).expand(1, 3, 4)
        ours = ink(rasterize(points, widths, colours, size, size)[0].permute(1, 2, 0).numpy())
        theirs = ink(render_svg_with_pillow(to_svg(points, widths, colours, size, size)[0], supersample=8) / 255)
        assert iou(ours > 0.5, theirs > 0.5) >= 0.9
        assert ours.sum() == pytest.approx(theirs.sum(), rel=0.05)  # the same ink, edges included
    points, filled, colours = blob(size), torch.tensor([True]), torch.tensor(BLACK).expand(1, 1, 4)
    ours = ink(rasterize(points, torch.ones(1, 1), colours, size, size, filled=filled)[0].permute(1, 2, 0).numpy())
    svg = to_svg(points, torch.ones(1, 1), colours, size, size, filled=filled)[0]
    theirs = ink(render_svg_with_pillow(svg, supersample=8) / 255)
    assert iou(ours > 0.5, theirs > 0.5) >= 0.95 and ours.sum() == pytest.approx(theirs.sum(), rel=0.03)
    assert 0 < ours.mean() < 0.6  # something drawn, not everything


def test_gradients_match_finite_differences():
    generator = torch.Generator().manual_seed(1)
    stroke = torch.tensor([[1.3, 2.2], [4.1, 9.7], [8.4, 0.9], [9.2, 6.3], [7.7, 8.8], [3.1, 7.9], [2.4, 4.6]])
    shape = polygon_path(torch.tensor([[2.2, 1.6], [9.1, 3.3], [5.4, 9.2]]))[0, 0, :7]  # the first two sides
    shape = shape + 0.3 * torch.randn(shape.shape, generator=generator)  # bent: the closing side is straight
    points = torch.stack([stroke, shape])[None].double().requires_grad_()
    widths = torch.tensor([[2.7, 1.0]], dtype=torch.float64, requires_grad=True)
    colours = torch.tensor([[[0.9, 0.2, 0.4, 0.8], [0.1, 0.7, 0.3, 0.6]]], dtype=torch.float64, requires_grad=True)
    background = torch.rand(1, 3, 11, 10, generator=generator, dtype=torch.float64).requires_grad_()
    filled = torch.tensor([False, True])

    def render(points, widths, colours, background):
        return rasterize(points, widths, colours, 11, 10, filled=filled, background=background, samples_per_segment=4)

    def render_paths(points, widths, colours):
        return render(points, widths, colours, background.detach())

    # Every entry of the Jacobian of the paths' parameters; the background's (linear) by random projections.
    assert torch.autograd.gradcheck(render_paths, (points, widths, colours), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradcheck(render, (points, widths, colours, background), eps=1e-6, atol=1e-5, fast_mode=True)
    # Every parameter reaches the image (the check above is not of zeros).
    points_grad, widths_grad, colours_grad = torch.autograd.grad(render_paths(points, widths, colours).sum(),
                                                                 (points, widths, colours))  # fmt: skip
    assert (points_grad.abs().sum(-1) > 0).all() and (widths_grad[0, 0] != 0) and (colours_grad != 0).all()


def test_translation_moves_the_pixels():
    generator = torch.Generator().manual_seed(2)
    points, widths = random_strokes(generator, 40, paths=1, segments=2, widths=(3.0, 3.0))
    points = (points - 20) * 0.5 + 20  # away from the borders
    colours = torch.tensor([[[0.2, 0.4, 0.9, 1.0]]])
    before = rasterize(points, widths, colours, 48, 48)
    after = rasterize(points + torch.tensor([3.0, 5.0]), widths, colours, 48, 48)
    torch.testing.assert_close(after, torch.roll(before, (5, 3), dims=(2, 3)), atol=1e-4, rtol=0)
    mass_before, mass_after = (1 - image[0, 0] for image in (before, after))  # red: 0.2 where inked
    y, x = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")

    def centre(mass):
        return torch.stack([(mass * x).sum(), (mass * y).sum()]) / mass.sum()

    torch.testing.assert_close(centre(mass_after) - centre(mass_before), torch.tensor([3.0, 5.0]), atol=1e-3, rtol=0)
    # A sub-pixel move shifts the centre by as much: the box-filtered edges are not snapped to pixels.
    nudged = 1 - rasterize(points + torch.tensor([0.3, 0.0]), widths, colours, 48, 48)[0, 0]
    assert (centre(nudged) - centre(mass_before))[0].item() == pytest.approx(0.3, abs=0.05)


def test_svg_export_rerendered_by_pillow_matches():
    generator = torch.Generator().manual_seed(3)
    strokes, widths = random_strokes(generator, 64, paths=4, segments=3, widths=(3.0, 6.0))
    points = torch.cat([bent_triangle(64, generator), strokes], dim=1)  # a filled path, then strokes
    widths = torch.cat([torch.ones(1, 1), widths], dim=1)
    colours = torch.rand(1, 5, 4, generator=generator) * torch.tensor([1, 1, 1, 0.5]) + torch.tensor([0, 0, 0, 0.5])
    filled = torch.tensor([True, False, False, False, False])
    ours = rasterize(points, widths, colours, 64, 64, filled=filled, background=(0.9, 0.95, 1.0))[0]
    ours = ours.permute(1, 2, 0).numpy()
    svg = to_svg(points, widths, colours, 64, 64, filled=filled, background=(0.9, 0.95, 1.0))[0]
    assert svg.count("<path") == 5 and svg.count(" Z") == 1 and 'stroke-linecap="round"' in svg
    theirs = render_svg_with_pillow(svg, supersample=8) / 255
    backdrop = np.array([0.9, 0.95, 1.0])
    inked_ours, inked_theirs = (np.abs(image - backdrop).max(-1) > 0.1 for image in (ours, theirs))
    assert iou(inked_ours, inked_theirs) >= 0.9
    both = inked_ours & inked_theirs
    assert np.abs(ours - theirs)[both].mean() < 0.03 and np.median(np.abs(ours - theirs)[both]) < 0.01


def test_svg_document_layout():
    points = torch.tensor([[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9, 10], [11, 12], [13, 14]]]])
    svg = to_svg(points, torch.tensor([[2.5]]), torch.tensor([[[1.0, 0.5, 0.0, 0.25]]]), 20, 30,
                 num_segments=torch.tensor([1]))[0]  # fmt: skip
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" width="30" height="20" viewBox="0 0 30 20">')
    assert '<rect x="0" y="0" width="30" height="20" fill="white"/>' in svg
    assert ('<path d="M 1.000 2.000 C 3.000 4.000 5.000 6.000 7.000 8.000" fill="none" stroke="rgb(255, 128, 0)" '
            'stroke-opacity="0.250" stroke-width="2.500" stroke-linecap="round" stroke-linejoin="round"/>') in svg
    with pytest.raises(ValueError, match="<circle>"):
        render_svg_with_pillow(svg.replace("<rect", "<circle"))
    with pytest.raises(ValueError, match="M x y C"):
        render_svg_with_pillow(svg.replace(" C ", " L "))


def test_compositing_order_alpha_and_background():
    straight = torch.tensor([[2.0, 10.0], [8.0, 10.0], [12.0, 10.0], [18.0, 10.0]])
    points = torch.stack([straight, straight.flip(-1)])[None]  # a horizontal and a vertical bar crossing at (10, 10)
    widths = torch.full((1, 2), 4.0)
    red, blue = torch.tensor([1.0, 0, 0, 1]), torch.tensor([0, 0, 1.0, 1])
    image = rasterize(points, widths, torch.stack([red, blue])[None], 20, 20)
    assert image[0, :, 10, 10].tolist() == [0, 0, 1]  # the later path on top
    assert image[0, :, 10, 3].tolist() == [1, 0, 0]
    image = rasterize(points, widths, torch.stack([blue, red])[None], 20, 20)
    assert image[0, :, 10, 10].tolist() == [1, 0, 0]
    # Half-transparent layers: "over" in order, over white.
    half = torch.tensor([[[1.0, 0, 0, 0.5], [0, 0, 1.0, 0.25]]])
    image = rasterize(points, widths, half, 20, 20)
    under = torch.tensor([1.0, 0, 0]) * 0.5 + 0.5
    torch.testing.assert_close(image[0, :, 10, 10], torch.tensor([0, 0, 1.0]) * 0.25 + under * 0.75)
    # Alpha 0 draws nothing; a background image shows through where nothing is drawn.
    backdrop = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(4))
    invisible = torch.tensor([[[1.0, 0, 0, 0], [0, 0, 1.0, 0]]])
    assert torch.equal(rasterize(points, widths, invisible, 20, 20, background=backdrop), backdrop)
    image = rasterize(points, widths, torch.stack([red, blue])[None], 20, 20, background=backdrop)
    assert torch.equal(image[..., :5, :5], backdrop[..., :5, :5]) and image[0, :, 10, 10].tolist() == [0, 0, 1]
    assert (rasterize(points, widths, invisible, 20, 20, background=0.25) == 0.25).all()


def test_unused_segments_are_masked_and_batches_match_single_drawings():
    generator = torch.Generator().manual_seed(5)
    points, widths = random_strokes(generator, 48, paths=6, segments=3)
    points = torch.cat([points, points.flip(1)])  # two drawings
    widths = torch.cat([widths, widths.flip(1)])
    colours = torch.rand(2, 6, 4, generator=generator)
    used = torch.tensor([[1, 2, 3, 1, 2, 3], [3, 3, 1, 1, 2, 2]])
    together = rasterize(points, widths, colours, 48, 40, num_segments=used)
    for drawing in range(2):
        alone = rasterize(points[drawing : drawing + 1], widths[drawing : drawing + 1],
                          colours[drawing : drawing + 1], 48, 40, num_segments=used[drawing : drawing + 1])  # fmt: skip
        torch.testing.assert_close(together[drawing : drawing + 1], alone, atol=1e-6, rtol=0)
    # One segment used is the same image as paths of one segment; far-away unused control points change nothing.
    moved = points.clone()
    moved[:, :, 4:] += 1000
    one = rasterize(moved, widths, colours, 48, 40, num_segments=torch.ones(6, dtype=torch.long))
    torch.testing.assert_close(one, rasterize(points[:, :, :4], widths, colours, 48, 40), atol=1e-6, rtol=0)
    assert not torch.allclose(one, rasterize(points, widths, colours, 48, 40))


@pytest.mark.parametrize("dtype, pair_chunk", [(torch.float32, None), (torch.float32, 100), (torch.float64, 100)])
def test_culled_image_and_gradients_equal_the_dense_computation(dtype, pair_chunk, monkeypatch):
    if pair_chunk:  # the (piece, tile) pairs' distances in many chunks
        monkeypatch.setattr(rasterizer, "PAIR_CHUNK", pair_chunk)
    generator = torch.Generator().manual_seed(6)
    points, widths = random_strokes(generator, 37, paths=12, segments=3, widths=(0.5, 9.0))
    points = torch.cat([points, points * 1.6 - 10], dim=1)  # some paths partly or wholly outside the image
    points = torch.cat([points, bent_triangle(30, generator)], dim=1)
    widths = torch.cat([widths, widths, torch.ones(1, 1)], dim=1)
    colours = torch.rand(1, 25, 4, generator=generator)
    used = torch.randint(1, 4, (1, 25), generator=generator)
    filled = torch.arange(25) == 24
    backdrop = torch.rand(1, 3, 37, 29, generator=generator)
    results = []
    for render in (rasterize, rasterize_dense):
        inputs = [value.to(dtype).requires_grad_() for value in (points, widths, colours, backdrop)]
        image = render(*inputs[:3], 37, 29, num_segments=used, filled=filled, background=inputs[3])
        (image * torch.linspace(0, 1, image.numel()).view_as(image)).sum().backward()
        results.append([image, *(value.grad for value in inputs)])
    for culled, dense in zip(*results):
        torch.testing.assert_close(culled, dense, atol=1e-4, rtol=1e-4)


def test_bezier_points_pass_through_segment_ends():
    points = torch.randn(2, 3, 10, 2, dtype=torch.float64)
    curve = bezier_points(points, samples_per_segment=5)
    assert curve.shape == (2, 3, 16, 2)
    torch.testing.assert_close(curve[:, :, ::5], points[:, :, ::3])
    used = bezier_points(points, torch.tensor([1, 2, 3]), samples_per_segment=5)
    assert (used[:, 0, 5:] == points[:, 0, 3:4]).all() and (used[:, 1, 10:] == points[:, 1, 6:7]).all()


@pytest.mark.parametrize(
    "change, match",
    [
        ({"points": torch.zeros(1, 2, 5, 2)}, r"points must be \[B, P, 3 \* S \+ 1, 2\]"),
        ({"points": torch.zeros(2, 4, 2)}, r"points must be \[B, P, 3 \* S \+ 1, 2\]"),
        ({"widths": torch.ones(2)}, r"widths must be \[B, P\] = \[1, 2\]"),
        ({"colours": torch.ones(1, 2, 3)}, r"colours must be \[B, P, 4\]"),
        ({"num_segments": torch.tensor([0, 1])}, r"num_segments must be in 1 \.\. 2"),
        ({"num_segments": torch.tensor([1, 3])}, r"num_segments must be in 1 \.\. 2"),
        ({"num_segments": torch.tensor([1.0, 2.0])}, r"num_segments must be integers of shape \[B, P\]"),
        ({"filled": torch.tensor([1, 0])}, r"filled must be \[P\] = \[2\] bools"),
        ({"background": torch.ones(1, 3, 5, 5)}, r"background images must be \[B, 3, H, W\] = \[1, 3, 8, 8\]"),
        ({"background": (1.0, 0.5)}, r"background must be .* an RGB colour"),
    ],
)
def test_clear_errors(change, match):
    arguments = {"points": torch.rand(1, 2, 7, 2) * 8, "widths": torch.ones(1, 2), "colours": torch.ones(1, 2, 4)}
    arguments |= change
    with pytest.raises(ValueError, match=match):
        rasterize(height=8, width=8, **arguments)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_points_are_refused(bad):
    points = torch.rand(1, 2, 4, 2)
    points[0, 1, 2, 0] = bad
    with pytest.raises(ValueError, match="points must be finite"):
        rasterize(points, torch.ones(1, 2), torch.ones(1, 2, 4), 8, 8)
