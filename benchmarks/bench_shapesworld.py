"""Generation speed of ShapesWorld scenes (image, masks, boxes, caption) per image size.

The world must never be the bottleneck of a training run: a 64 px scene with its
labels should take well under a millisecond. Run from the repository root:

    python -m benchmarks.bench_shapesworld --n 500

Prints a Markdown table of the mean time per scene and scenes per second, on one
CPU core (a DataLoader with k workers generates about k times as many).
"""

import argparse
import time

from lit_clip.datamodules.shapesworld import ShapesWorld

IMAGE_SIZES = (32, 64, 128, 224)


def seconds_per_scene(image_size: int, n: int) -> float:
    world = ShapesWorld(image_size=image_size)
    for index in range(min(n, 20)):  # warm-up: first calls pay for imports and allocations
        world.scene("train", index)
    start = time.perf_counter()
    for index in range(n):
        world.scene("train", index)
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="scenes generated per image size")
    args = parser.parse_args()
    print("| image size | ms / scene | scenes / s |")
    print("|---:|---:|---:|")
    for image_size in IMAGE_SIZES:
        seconds = seconds_per_scene(image_size, args.n)
        print(f"| {image_size} | {seconds * 1e3:.3f} | {1 / seconds:,.0f} |")


if __name__ == "__main__":
    main()
