"""The differentiable rasteriser: seconds per forward + backward of CLIPDraw-like and CLIPasso-like drawings, and
strokes x pixels per second (paths * H * W / seconds), beside the dense computation of the same images (every pixel
against every piece of every path, every path composited in every pixel): the culling's speed-up.

CLIPDraw-like: ``--paths`` (256) paths of 1-3 segments, each starting at a random point, its control points a
random walk of +-0.05 of the side, widths 1-4 px, random RGBA (CLIPDraw's initialisation). CLIPasso-like:
``--strokes`` (16) black strokes of one segment, width 3 (diffvg's ``stroke_width=1.5``), laid out the same way.
The loss is the image's sum. The culled renderer is timed in ``--rounds`` rounds after a warm-up, medians reported;
the dense one, 25 to 200 times slower, in ``--dense-rounds`` rounds without warm-up. The last column is the largest
difference between the two images (float32 rounding, not a different picture).

    python -m benchmarks.bench_rasterizer                    # 224 px, one drawing each, on a CPU
    python -m benchmarks.bench_rasterizer --quick            # micro sizes: CI keeps this running
    python -m benchmarks.bench_rasterizer --batch 4 --threads 2
"""
from __future__ import annotations

import argparse
from typing import Callable

import torch

from benchmarks.measure import machine_name, median_seconds
from lit_clip.methods.generation.rasterizer import rasterize, rasterize_dense

Drawing = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # points, widths, colours, num_segments


def random_walk_paths(batch: int, paths: int, segments: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``[batch, paths, 3 * segments + 1, 2]``: a random start in the image, then steps of up to 0.05 of the side."""
    start = torch.rand(batch, paths, 1, 2, generator=generator) * size
    steps = (torch.rand(batch, paths, 3 * segments, 2, generator=generator) * 2 - 1) * 0.05 * size
    return torch.cat([start, start + steps.cumsum(2)], dim=2)


def clipdraw_like(batch: int, paths: int, size: int, generator: torch.Generator) -> Drawing:
    points = random_walk_paths(batch, paths, 3, size, generator)
    num_segments = torch.randint(1, 4, (batch, paths), generator=generator)
    widths = 1 + 3 * torch.rand(batch, paths, generator=generator)
    return points, widths, torch.rand(batch, paths, 4, generator=generator), num_segments


def clipasso_like(batch: int, strokes: int, size: int, generator: torch.Generator) -> Drawing:
    points = random_walk_paths(batch, strokes, 1, size, generator)
    black = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(batch, strokes, 4)
    return points, torch.full((batch, strokes), 3.0), black, torch.ones(batch, strokes, dtype=torch.long)


def forward_backward(render: Callable, drawing: Drawing, size: int) -> Callable[[], torch.Tensor]:
    """One step: render from fresh leaves, backward the image's sum; returns the image."""

    def step() -> torch.Tensor:
        points, widths, colours = (value.clone().requires_grad_() for value in drawing[:3])
        image = render(points, widths, colours, size, size, num_segments=drawing[3])
        image.sum().backward()
        return image.detach()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", type=int, default=256, help="CLIPDraw-like paths per drawing (CLIPDraw: 256)")
    parser.add_argument("--strokes", type=int, default=16, help="CLIPasso-like strokes per drawing (CLIPasso: 16)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=1, help="drawings rendered together")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds of the culled renderer; the median")
    parser.add_argument("--dense-rounds", type=int, default=1, help="timing rounds of the dense computation")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="16 paths and 4 strokes at 32 px: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.paths, args.strokes, args.size, args.rounds = 16, 4, 32, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    workloads = {
        "CLIPDraw-like": (args.paths, "1-3", clipdraw_like(args.batch, args.paths, args.size, generator)),
        "CLIPasso-like": (args.strokes, "1", clipasso_like(args.batch, args.strokes, args.size, generator)),
    }

    rows = []
    for name, (paths, segments, drawing) in workloads.items():
        culled, dense = (forward_backward(render, drawing, args.size) for render in (rasterize, rasterize_dense))
        difference = (culled() - dense()).abs().max().item()
        culled_seconds = median_seconds({"culled": culled}, args.warmup, args.rounds, 1, device)["culled"]
        dense_seconds = median_seconds({"dense": dense}, 0, args.dense_rounds, 1, device)["dense"]
        rows.append((name, paths, segments, culled_seconds, dense_seconds, difference))

    pixels = args.batch * args.size * args.size
    print(f"\n{machine_name(device)}; {args.size} x {args.size} px, batch {args.batch}; forward + backward\n")
    print("| drawing | paths | segments | culled (s) | culled (strokes x pixels/s) | dense (s) "
          "| dense (strokes x pixels/s) | culling speed-up | largest image difference |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, paths, segments, culled, dense, difference in rows:
        print(f"| {name} | {paths} | {segments} | {culled:.4f} | {paths * pixels / culled:,.0f} | {dense:.3f} | "
              f"{paths * pixels / dense:,.0f} | {dense / culled:.1f}x | {difference:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
