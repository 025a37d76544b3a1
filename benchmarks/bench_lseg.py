"""LSeg's speed beside its image encoder's: what the DPT decoder, the per-pixel logits and the training cost.

For each backbone, one process builds an LSeg (a random CLIP for the label embeddings, a random backbone) and
times, in alternating rounds (a slow minute of a shared machine hits all alike), medians reported:

- backbone forward: the image encoder alone up to its last hooked block (timm ViT or CLIP tower), no grad;
- inference: LSeg's forward, images to per-pixel logits over ``--labels`` labels at the image size, no grad;
- training step: forward, per-pixel cross-entropy, backward, SGD with LSeg's two learning-rate groups.

Inference and the training step are printed as multiples of the backbone forward's time for the same batch.
Run from the repository root:

    python -m benchmarks.bench_lseg                     # the official ViT-L/16 and ViT-B/32 at 480 px (a GPU's job)
    python -m benchmarks.bench_lseg --quick             # micro backbones, 64 px, a few steps: CI keeps this running
    python -m benchmarks.bench_lseg --device cuda --precision bf16 --batch-size 8
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import lit_clip
from benchmarks.measure import machine_name, median_seconds
from lit_clip.methods.segmentation.lseg import LSeg

# (backbone, CLIP architecture for the labels, image side)
FULL = [("vit_large_patch16_384", "ViT-B-32-quickgelu", 480), ("vit_base_patch32_384", "ViT-B-32-quickgelu", 480)]
QUICK = [("vit_tiny_patch16_224", "ViT-Micro-8", 64), ("clip", "ViT-Micro-8", 64), ("clip", "RN-Tiny", 64)]


def build(
    backbone: str, clip_architecture: str, labels: int, features: int, folder: Path, device: torch.device
) -> LSeg:
    """An LSeg with random weights and a random label set of ``labels`` text embeddings, in train mode."""
    clip_file = folder / f"{clip_architecture}.pt"
    if not clip_file.exists():
        torch.save(lit_clip.create_model(clip_architecture).state_dict(), clip_file)
    readout = "ignore" if backbone == "clip" else "project"
    model = LSeg(str(clip_file), architecture=clip_architecture, backbone=backbone, readout=readout, features=features)
    model = model.to(device)
    dim = model.model.text_projection.shape[1]
    classifier = F.normalize(torch.randn(dim, labels, device=device), dim=0)
    model.register_buffer("text_classifier", classifier, persistent=False)
    return model.train()


def timings(model: LSeg, batch_size: int, side: int, labels: int, bf16: bool, args) -> dict[str, float]:
    """Median seconds per call of the backbone forward, the inference and the training step."""
    device = model.device
    images = torch.randn(batch_size, 3, side, side, device=device)
    masks = torch.randint(0, labels, (batch_size, side, side), device=device)
    optimizer = torch.optim.SGD(model.parameter_groups(), lr=model.hparams.lr, momentum=0.9, weight_decay=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def backbone() -> None:
        with torch.no_grad(), autocast:
            model.encoder(images)

    def inference() -> None:
        with torch.no_grad(), autocast:
            model(images)

    def train_step() -> None:
        with autocast:
            loss = F.cross_entropy(model(images).float(), masks, ignore_index=255)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    functions = {"backbone": backbone, "inference": inference, "train": train_step}
    return median_seconds(functions, args.warmup, args.rounds, 1, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--labels", type=int, default=150, help="label set size (ADE20K: 150)")
    parser.add_argument("--features", type=int, default=256, help="the DPT decoder's channels (LSeg: 256)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--quick", action="store_true", help="micro backbones, 64 px, 2 rounds: checks that it runs")
    args = parser.parse_args()
    configurations = QUICK if args.quick else FULL
    if args.quick:
        args.rounds, args.warmup, args.labels, args.features = 2, 1, 8, 32
    device = torch.device(args.device)
    print(f"\n{machine_name(device)}; torch {torch.__version__}; {args.precision}; batch {args.batch_size}; "
          f"{args.labels} labels; decoder {args.features} channels; median of {args.rounds} rounds\n")  # fmt: skip
    print("| backbone | CLIP (labels) | image | backbone forward images/s | inference images/s | inference / backbone "
          "| train step s | train step / backbone forward |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for backbone, clip_architecture, side in configurations:
            model = build(backbone, clip_architecture, args.labels, args.features, Path(folder), device)
            seconds = timings(model, args.batch_size, side, args.labels, args.precision == "bf16", args)
            b = args.batch_size
            print(
                f"| {backbone} | {clip_architecture} | {side} | {b / seconds['backbone']:,.1f} | "
                f"{b / seconds['inference']:,.1f} | {seconds['inference'] / seconds['backbone']:.2f}x | "
                f"{seconds['train']:.3f} | {seconds['train'] / seconds['backbone']:.2f}x |"
            )
            del model


if __name__ == "__main__":
    main()
