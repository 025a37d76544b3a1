"""The cost of per-image prompts: CoOp against CoCoOp training steps at batch 1, 8 and 32 over 64 classes.

CoOp encodes one prompt per class per step; CoCoOp one per class *per image* (B x C prompts
through the text tower, batched in one pass here). Both start from the same 4-token context
("a photo of a"), so the prompts have the same length and only their number differs. Prints samples/s and the peak memory of a
training step (forward, cross-entropy, backward, SGD step), with random CLIP weights of the
given architecture. Run from the repository root:

    python -m benchmarks.bench_prompts                                  # ViT-B-16, on the CPU: slow at batch 32
    python -m benchmarks.bench_prompts --architecture ViT-Tiny-8        # the ShapesWorld CLIP's size
    python -m benchmarks.bench_prompts --device cuda
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from lit_clip.datamodules.shapesworld import class_names

import lit_clip
from benchmarks.measure import (
    cuda_peak_growth,
    machine_name,
    median_seconds,
    peak_memory_in_fresh_process,
    report_peak_resident_growth,
)
from lit_clip.methods import CoCoOp, CoOp
from lit_clip.models.clip import get_config

METHODS = {"CoOp": CoOp, "CoCoOp": CoCoOp}


def training_step(method: str, weights: str, architecture: str, batch_size: int, device: torch.device, bf16: bool):
    """A closure running one training step of ``method`` on random images of the 64 ShapesWorld classes."""
    # The same 4-token context ("a photo of a") for both, so only the per-image prompts differ.
    module = METHODS[method](weights, ctx_init="a photo of a", architecture=architecture).to(device)
    module.set_classes(class_names("color_shape"))
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.002, momentum=0.9)
    size = get_config(architecture).vision.image_size
    images = torch.randn(batch_size, 3, size, size, device=device)
    labels = torch.randint(0, 64, (batch_size,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            loss = F.cross_entropy(module(images).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def train_twice(method: str, weights: str, architecture: str, batch_size: int, device: torch.device, bf16: bool):
    step = training_step(method, weights, architecture, batch_size, device, bf16)
    step()
    step()
    return step


def random_weights(architecture: str, folder: str) -> str:
    path = Path(folder) / f"{architecture}.pt"
    if not path.exists():
        torch.manual_seed(0)
        lit_clip.save_open_clip(lit_clip.create_model(architecture), path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="ViT-B-16")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure-memory", nargs=3, metavar=("METHOD", "BATCH", "WEIGHTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.measure_memory:  # the child process of the CPU memory measurement
        method, batch, weights = args.measure_memory
        report_peak_resident_growth(functools.partial(train_twice, method, weights, args.architecture, int(batch), device, args.bf16))
        return

    with tempfile.TemporaryDirectory() as folder:
        weights = random_weights(args.architecture, folder)
        rows = []
        for batch in args.batch_sizes:
            steps = {m: training_step(m, weights, args.architecture, batch, device, args.bf16) for m in METHODS}
            seconds = median_seconds(steps, warmup=1, rounds=args.rounds, steps=1, device=device)
            del steps
            for method in METHODS:
                if device.type == "cuda":
                    memory = cuda_peak_growth(functools.partial(train_twice, method, weights, args.architecture, batch, device, args.bf16), device)
                else:
                    extra = ["--architecture", args.architecture, *(["--bf16"] if args.bf16 else [])]
                    memory = peak_memory_in_fresh_process("benchmarks.bench_prompts", ["--measure-memory", method, str(batch), weights, *extra])
                rows.append((method, batch, batch / seconds[method], memory, 64 * (batch if method == "CoCoOp" else 1)))
    print(f"\n{args.architecture}, 64 classes, {'bf16' if args.bf16 else 'fp32'}; {machine_name(device)}; torch {torch.__version__}\n")
    print("| method | batch | prompts per step | train samples/s | peak memory |")
    print("|---|---:|---:|---:|---:|")
    for method, batch, rate, memory, prompts in rows:
        print(f"| {method} | {batch} | {prompts:,} | {rate:.2f} | {memory / 2**20:,.0f} MiB |")


if __name__ == "__main__":
    main()
