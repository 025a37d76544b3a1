"""AudioCLIP's audio tower: clips per second, in evaluation and in a training step, and the front end's share.

For each audio architecture (``ESResNeXt-fbsp``: the paper's, 5 s clips at 44.1 kHz; ``ESResNeXt-Tiny``: 1 s at
8 kHz) and precision: clips/s of the tower's forward pass (no gradient), of a training step of the tower alone
(forward, the audio-text loss against fixed text features, the filter-norm penalty, backward, SGD), and the share of
the forward pass spent in the front end (framing, the filter bank and dB, always in fp32). Medians of alternating
rounds.

    python -m benchmarks.bench_audio                     # both towers, batch 8, fp32 and bf16 on a CPU
    python -m benchmarks.bench_audio --quick             # ESResNeXt-Tiny, batch 2: CI keeps this running
    python -m benchmarks.bench_audio --device cuda --batch-size 64
"""
from __future__ import annotations

import argparse
import contextlib

import torch
import torch.nn.functional as F

from benchmarks.measure import machine_name, median_seconds
from lit_clip.models.esresnext import ESResNeXtFBSP, audio_config

DURATIONS = {"ESResNeXt-fbsp": 5.0, "ESResNeXt-Tiny": 1.0}  # ESC-50's clips; ShapesWorld's sounds
EMBED_DIM = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architectures", nargs="+", default=list(DURATIONS), choices=list(DURATIONS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="ESResNeXt-Tiny, batch 2, 1 round: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.architectures, args.batch_size, args.rounds, args.precisions = ["ESResNeXt-Tiny"], 2, 1, ["fp32"]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"batch {args.batch_size}, {machine_name(device)}")
    print("| audio tower | clip | precision | parameters | inference (clips/s) | training step (clips/s) | front end share |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name in args.architectures:
        config = audio_config(name)
        torch.manual_seed(0)
        tower = ESResNeXtFBSP(config, EMBED_DIM).to(device)
        optimizer = torch.optim.SGD(tower.parameters(), lr=1e-5, momentum=0.9, nesterov=True)
        samples = round(config.sample_rate * DURATIONS[name])
        audio = (0.1 * torch.randn(args.batch_size, 1, samples)).to(device)
        texts = F.normalize(torch.randn(args.batch_size, EMBED_DIM), dim=-1).to(device)
        labels = torch.arange(args.batch_size, device=device)
        for precision in args.precisions:
            autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

            def infer() -> None:
                tower.eval()
                with torch.inference_mode(), autocast:
                    tower(audio)

            def front_end() -> None:
                with torch.inference_mode(), autocast:
                    tower.spectrogram(audio)

            def train_step() -> None:
                tower.train()
                with autocast:
                    logits = 100 * F.normalize(tower(audio).float(), dim=-1) @ texts.T
                    loss = F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels) + tower.filter_norm_loss()
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            seconds = median_seconds({"infer": infer, "front": front_end, "train": train_step}, 1, args.rounds, 1, device)
            parameters = sum(p.numel() for p in tower.parameters())
            print(
                f"| {name} | {DURATIONS[name]:g} s at {config.sample_rate} Hz | {precision} | {parameters:,} "
                f"| {args.batch_size / seconds['infer']:,.1f} | {args.batch_size / seconds['train']:,.1f} "
                f"| {seconds['front'] / seconds['infer']:.0%} |"
            )


if __name__ == "__main__":
    main()
