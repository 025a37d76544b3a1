"""PointCLIP: clouds/s of the projections (V1 zero-shot and few-shot, V2) beside clouds/s of the frozen CLIP encoding
their views, with the ratio of their times: the projection must not dominate.

Projection is what :meth:`~lit_clip.methods.three_d.pointclip.PointCLIP.batch_input` does: the official views at
the official resolutions (V1: 6 views at 128 px, 10 at 224 px; V2: 10 views of a 112 x 112 x 8 grid), then three
channels and the resize to the CLIP's input. Encoding is the image tower on all views of the clouds (random
weights of ``--architecture``; its cost does not depend on them). Both run on the same random unit-sphere clouds,
timed in alternating rounds, medians reported.

    python -m benchmarks.bench_pointclip                       # RN-Tiny at 64 px, batch 32, 1024 points, on a CPU
    python -m benchmarks.bench_pointclip --quick               # micro sizes: CI keeps this running
    python -m benchmarks.bench_pointclip --device cuda --architecture RN101 --image-size 224 --batch-size 64
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from benchmarks.measure import machine_name, median_seconds
from lit_clip.methods.three_d.projection import (
    V1_FEW_SHOT_DISTANCE,
    V1_FEW_SHOT_SIZE,
    V1_FEW_SHOT_VIEWS,
    V1_ZERO_SHOT_DISTANCE,
    V1_ZERO_SHOT_SIZE,
    V1_ZERO_SHOT_VIEWS,
    V2_VIEWS,
    project_v1,
    project_v2,
    view_rotations,
    views_to_clip_input,
)
from lit_clip.models.clip import CLIP, get_config


def projections(device: torch.device) -> dict[str, tuple[int, str, Callable]]:
    """Each projection: its number of views, its resolution, and ``project(points) -> [B, V, H, W]``."""
    v1_zero_shot = view_rotations(V1_ZERO_SHOT_VIEWS).to(device)
    v1_few_shot = view_rotations(V1_FEW_SHOT_VIEWS).to(device)
    v2 = view_rotations(V2_VIEWS).to(device)
    return {
        "V1 zero-shot": (6, f"{V1_ZERO_SHOT_SIZE} px",
                         lambda points: project_v1(points, v1_zero_shot, V1_ZERO_SHOT_SIZE, V1_ZERO_SHOT_DISTANCE)),
        "V1 few-shot": (10, f"{V1_FEW_SHOT_SIZE} px",
                        lambda points: project_v1(points, v1_few_shot, V1_FEW_SHOT_SIZE, V1_FEW_SHOT_DISTANCE)),
        "V2": (10, "112 x 112 x 8 grid", lambda points: project_v2(points, v2)),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="RN-Tiny")
    parser.add_argument("--image-size", type=int, help="the CLIP's input side (default: the architecture's)")
    parser.add_argument("--batch-size", type=int, default=32, help="clouds per batch")
    parser.add_argument("--points", type=int, default=1024, help="points per cloud (PointCLIP: 1024)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="of the encoding (autocast)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="ViT-Micro-8, 2 clouds of 256 points: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.architecture, args.batch_size, args.points, args.rounds = "ViT-Micro-8", 2, 256, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = get_config(args.architecture)
    if args.image_size:
        config = dataclasses.replace(config, vision=dataclasses.replace(config.vision, image_size=args.image_size))
    image_size = config.vision.image_size
    torch.manual_seed(0)
    clip = CLIP(config).to(device).eval().requires_grad_(False)
    points = F.normalize(torch.randn(args.batch_size, args.points, 3, device=device), dim=-1)
    points = points * torch.rand(args.batch_size, args.points, 1, device=device)  # inside the unit sphere

    rows = []
    for name, (num_views, resolution, project) in projections(device).items():
        images = views_to_clip_input(project(points), image_size).flatten(0, 1)

        def projection(project=project) -> None:
            views_to_clip_input(project(points), image_size)

        def encoding(images=images) -> None:
            bf16 = args.precision == "bf16"
            precision = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with torch.no_grad(), precision:
                clip.encode_image(images)

        seconds = median_seconds({"projection": projection, "encoding": encoding}, args.warmup, args.rounds, 1, device)
        rows.append((name, num_views, resolution, seconds["projection"], seconds["encoding"]))

    print(f"\n{machine_name(device)}; {args.architecture} at {image_size} px, {args.precision}; "
          f"batch {args.batch_size} clouds of {args.points} points\n")  # fmt: skip
    print("| projection | views | resolution | projection (clouds/s) | encoding (clouds/s) "
          "| projection time / encoding time |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|")
    for name, num_views, resolution, projecting, encoding in rows:
        print(f"| {name} | {num_views} | {resolution} | {args.batch_size / projecting:,.1f} | "
              f"{args.batch_size / encoding:,.1f} | {projecting / encoding:.3f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
