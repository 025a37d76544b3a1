"""SLIP's training step beside CLIP's: the cost of the two extra views, measured in one run.

Both steps are those of the methods (``CLIPPretraining`` and ``SLIPPretraining``: forward, loss terms, backward, the
methods' own AdamW) on the same CLIP architecture and the same batch; SLIP adds two passes of the image tower (the
SSL views) and the SSL head. The two are timed in alternating rounds, medians reported, with their ratio; a SLIP
step costs about ``(1 + 3 x image tower share)`` of CLIP's when the text tower is cheap.

    python -m benchmarks.bench_slip                                  # ViT-B-16, batch 16, fp32 and bf16 on a CPU
    python -m benchmarks.bench_slip --quick                          # ViT-Micro-8, batch 8: CI keeps this running
    python -m benchmarks.bench_slip --device cuda --batch-size 64    # SLIP's per-GPU batch
"""
from __future__ import annotations

import argparse
import contextlib

import torch

from benchmarks.measure import machine_name, median_seconds
from lit_clip.methods import CLIPPretraining, SLIPPretraining
from lit_clip.models.clip import get_config


def training_step(method: CLIPPretraining, batch: dict, device: torch.device, bf16: bool):
    method = method.to(device).train()
    optimizer = method.build_optimizer()

    def step() -> None:
        precision = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with precision:
            loss = sum(method.loss_terms(batch).values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="ViT-B-16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ssl-hidden-dim", type=int, default=4096, help="the SSL head's width (SLIP's 4096)")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="ViT-Micro-8, batch 8, 2 rounds: checks that it all runs")
    args = parser.parse_args()
    if args.quick:
        args.architecture, args.batch_size, args.rounds, args.precisions = "ViT-Micro-8", 8, 2, ["fp32"]
        args.ssl_hidden_dim = 128  # sized for the micro tower: SLIP's 4096 would be the whole cost
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = get_config(args.architecture)
    size, context = config.vision.image_size, config.text.context_length
    generator = torch.Generator().manual_seed(0)
    batch = {
        name: torch.randn(args.batch_size, 3, size, size, generator=generator).to(device)
        for name in ("image", "ssl_view_1", "ssl_view_2")
    }
    batch["text"] = torch.randint(1, 49000, (args.batch_size, context), generator=generator).to(device)

    print(f"{args.architecture}, batch {args.batch_size}, SSL head width {args.ssl_hidden_dim}, {machine_name(device)}")
    print("| precision | CLIP step (ms) | SLIP step (ms) | SLIP / CLIP |")
    print("|---|---:|---:|---:|")
    for precision in args.precisions:
        torch.manual_seed(0)
        steps = {
            "CLIP": training_step(CLIPPretraining(architecture=args.architecture), batch, device, precision == "bf16"),
            "SLIP": training_step(
                SLIPPretraining(architecture=args.architecture, ssl_hidden_dim=args.ssl_hidden_dim),
                batch, device, precision == "bf16",
            ),
        }
        seconds = median_seconds(steps, args.warmup, args.rounds, 1, device)
        clip, slip = seconds["CLIP"] * 1000, seconds["SLIP"] * 1000
        print(f"| {precision} | {clip:.1f} | {slip:.1f} | {slip / clip:.2f} |")


if __name__ == "__main__":
    main()
