"""CLIP training and zero-shot speed: lit-clip against open_clip and Hugging Face transformers, side by side.

For each architecture and precision, one process builds every contender with the
same geometry, feeds them the same batch, and times them in alternating rounds
(so a slow minute of a shared machine hits all of them alike); medians are reported.

- training step: forward of both towers, contrastive loss, backward, AdamW step.
  lit-clip runs the optimizer and loss of ``CLIPPretraining``; open_clip its
  ``create_model`` + ``ClipLoss`` with the AdamW groups of its training script;
  transformers ``CLIPModel(return_loss=True)`` with ``torch.optim.AdamW``.
  ``lit-clip compiled`` is ``CLIPPretraining(compile=True)`` (torch.compile of both towers).
- zero-shot evaluation: images/s of encode + classify against a prebuilt classifier
  of 1,000 classes, next to the image tower's own images/s.
- GFLOP per sample of a training step (torch's FlopCounterMode) and the fraction of
  the machine's matmul peak, measured here for fp32 and bf16, that the step achieves.
- peak memory of a training step: CUDA's allocator peak on a GPU; on a CPU the peak
  resident memory of a fresh process that builds the contender and runs two steps,
  minus that process's memory before the model existed.

Every caption fills the 77-token context (the same work for every contender).
Run from the repository root:

    python -m benchmarks.bench_clip                     # ViT-B-32 and RN50, batch 32 (minutes per row on a CPU)
    python -m benchmarks.bench_clip --quick             # a micro architecture, a few steps: CI keeps this running
    python -m benchmarks.bench_clip --device cuda --batch-size 128
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.measure import (
    cuda_peak_growth,
    machine_name,
    median_seconds,
    peak_memory_in_fresh_process,
    report_peak_resident_growth,
    synchronize,
)
from lit_clip.checkpoints import _hf_config
from lit_clip.methods import CLIPPretraining
from lit_clip.models.clip import get_config
from lit_clip.zeroshot import ZeroShotHead

CONTENDERS = ("lit-clip", "lit-clip compiled", "open_clip", "transformers")
ZEROSHOT_CLASSES = 1000


@dataclass
class Contender:
    """One implementation of a CLIP: a training step and the two zero-shot timings, all on the same inputs."""

    train_step: Callable[[], None]
    classify: Callable[[], torch.Tensor]  # encode the images and score them against the prebuilt classifier
    encode_images: Callable[[], torch.Tensor]  # the image tower alone


def build(name: str, architecture: str, images: torch.Tensor, tokens: torch.Tensor, bf16: bool) -> Contender:
    device = images.device
    classifier = F.normalize(torch.randn(get_config(architecture).embed_dim, ZEROSHOT_CLASSES, device=device), dim=0)
    if name.startswith("lit-clip"):
        module = CLIPPretraining(architecture=architecture, lr=5e-4, weight_decay=0.2, compile=name.endswith("compiled"))
        model = module.model.to(device)
        optimizer = module.build_optimizer()
        head = ZeroShotHead()
        head.classifier = classifier
        loss = lambda: module.contrastive_loss(*model(images, tokens))["contrastive_loss"]  # noqa: E731
        classify = lambda: head(model.encode_image(images))  # noqa: E731
        encode_images = lambda: model.encode_image(images)  # noqa: E731
    elif name == "open_clip":
        import open_clip

        model = open_clip_model(architecture).to(device)
        clip_loss = open_clip.ClipLoss()
        # open_clip's training script: no weight decay on gains, biases, norms and the logit scale.
        exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
        parameters = list(model.named_parameters())
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for n, p in parameters if exclude(n, p)], "weight_decay": 0.0},
                {"params": [p for n, p in parameters if not exclude(n, p)], "weight_decay": 0.2},
            ],
            lr=5e-4, betas=(0.9, 0.98), eps=1e-6,
        )  # fmt: skip
        loss = lambda: clip_loss(*model(images, tokens)[:3])  # noqa: E731
        classify = lambda: 100.0 * F.normalize(model.encode_image(images), dim=-1) @ classifier  # noqa: E731
        encode_images = lambda: model.encode_image(images)  # noqa: E731
    elif name == "transformers":
        model = transformers_model(architecture).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
        loss = lambda: model(input_ids=tokens, pixel_values=images, return_loss=True).loss  # noqa: E731
        classify = lambda: 100.0 * F.normalize(image_features(model, images), dim=-1) @ classifier  # noqa: E731
        encode_images = lambda: image_features(model, images)  # noqa: E731
    else:
        raise ValueError(f"unknown contender {name!r}; expected one of {CONTENDERS}")
    model.train()

    def train_step() -> None:
        with autocast(device, bf16):
            value = loss()
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def evaluate(function: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            model.eval()
            with torch.inference_mode(), autocast(device, bf16):
                out = function()
            model.train()
            return out

        return run

    return Contender(train_step, evaluate(classify), evaluate(encode_images))


def open_clip_model(architecture: str):
    import open_clip

    config = get_config(architecture)
    vision, text = config.vision, config.text
    vision_cfg = {"image_size": vision.image_size, "layers": vision.layers, "width": vision.width,
                  "patch_size": vision.patch_size, "head_width": vision.head_width, "mlp_ratio": vision.mlp_ratio}  # fmt: skip
    text_cfg = {"context_length": text.context_length, "vocab_size": text.vocab_size, "width": text.width,
                "heads": text.heads, "layers": text.layers, "mlp_ratio": text.mlp_ratio}  # fmt: skip
    return open_clip.model.CLIP(config.embed_dim, vision_cfg, text_cfg, quick_gelu=config.quick_gelu)


def transformers_model(architecture: str):
    from transformers import CLIPConfig, CLIPModel

    config = _hf_config(get_config(architecture))
    return CLIPModel(
        CLIPConfig(text_config=config["text_config"], vision_config=config["vision_config"],
                   projection_dim=config["projection_dim"])  # fmt: skip
    )


def image_features(model, images: torch.Tensor) -> torch.Tensor:
    features = model.get_image_features(pixel_values=images)
    # transformers 5 returns an output object here, 4.x a tensor.
    return features if isinstance(features, torch.Tensor) else features.pooler_output


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def contenders_for(architecture: str, wanted: list[str]) -> list[str]:
    """transformers has no ModifiedResNet tower."""
    return [c for c in wanted if not (c == "transformers" and get_config(architecture).vision.is_resnet)]


def inputs(architecture: str, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and captions that fill the whole context, ending in EOT (the highest id)."""
    config = get_config(architecture)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, config.vision.image_size, config.vision.image_size, generator=generator)
    tokens = torch.randint(1, config.text.vocab_size - 2, (batch_size, config.text.context_length), generator=generator)
    tokens[:, 0], tokens[:, -1] = config.text.vocab_size - 2, config.text.vocab_size - 1
    return images.to(device), tokens.to(device)


def flops_per_sample(contender: Contender, batch_size: int) -> float:
    with FlopCounterMode(display=False) as counter:
        contender.train_step()
    return counter.get_total_flops() / batch_size


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int) -> float:
    """FLOP/s of the best of a few square matmuls: the machine's practical peak for ``dtype``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def build_and_train_twice(name: str, architecture: str, batch_size: int, bf16: bool, device: torch.device) -> Contender:
    images, tokens = inputs(architecture, batch_size, device)
    contender = build(name, architecture, images, tokens, bf16)
    for _ in range(2):
        contender.train_step()
    return contender


def peak_memory_bytes(name: str, architecture: str, batch_size: int, bf16: bool, device: torch.device) -> int:
    """Peak memory of building a contender and running two training steps: weights, gradients, optimizer
    state and activations (CUDA: the allocator's peak; CPU: the peak resident memory of a fresh process)."""
    if device.type == "cuda":
        return cuda_peak_growth(functools.partial(build_and_train_twice, name, architecture, batch_size, bf16, device), device)
    return peak_memory_in_fresh_process(
        "benchmarks.bench_clip",
        ["--measure-memory", name, "--architectures", architecture, "--batch-size", str(batch_size),
         "--precisions", "bf16" if bf16 else "fp32"],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architectures", nargs="+", default=["ViT-B-32", "RN50"])
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds; the median is reported")
    parser.add_argument("--steps", type=int, default=1, help="training steps per contender and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--quick", action="store_true", help="ViT-Micro-8, batch 8, 2 rounds: checks that it all runs")
    parser.add_argument("--measure-memory", metavar="CONTENDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.architectures, args.batch_size, args.rounds, args.warmup = ["ViT-Micro-8"], 8, 2, 1
    if args.measure_memory:  # the child process of peak_memory_bytes
        import open_clip  # noqa: F401  (imported before the baseline: libraries are not the model's memory)
        import transformers  # noqa: F401

        bf16 = args.precisions[0] == "bf16"
        run = functools.partial(build_and_train_twice, args.measure_memory, args.architectures[0], args.batch_size, bf16, torch.device("cpu"))
        report_peak_resident_growth(run)
        return

    device = torch.device(args.device)
    peak_size = 1024 if args.quick else 4096
    peaks = {"fp32": matmul_peak(torch.float32, device, peak_size), "bf16": matmul_peak(torch.bfloat16, device, peak_size)}
    print(f"\n{machine_name(device)}; torch {torch.__version__}; matmul peak {peaks['fp32'] / 1e9:,.0f} GFLOP/s fp32, "
          f"{peaks['bf16'] / 1e9:,.0f} GFLOP/s bf16; batch {args.batch_size}; median of {args.rounds} alternating rounds\n")  # fmt: skip

    rows = []
    for architecture in args.architectures:
        names = contenders_for(architecture, args.contenders)
        images, tokens = inputs(architecture, args.batch_size, device)
        for precision in args.precisions:
            bf16 = precision == "bf16"
            contenders = {name: build(name, architecture, images, tokens, bf16) for name in names}
            train = median_seconds({n: c.train_step for n, c in contenders.items()}, args.warmup, args.rounds, args.steps, device)
            memory = {name: peak_memory_bytes(name, architecture, args.batch_size, bf16, device) for name in names}
            # Compiled or not, lit-clip runs the same operations: they are counted on the eager model.
            flops = {
                name: flops_per_sample(build(name.removesuffix(" compiled"), architecture, images, tokens, bf16), args.batch_size)
                for name in names
            }
            classify = median_seconds({n: c.classify for n, c in contenders.items()}, 1, args.rounds, args.steps, device)
            tower = median_seconds({n: c.encode_images for n, c in contenders.items()}, 1, args.rounds, args.steps, device)
            for name in names:
                rows.append({
                    "architecture": architecture, "precision": precision, "contender": name,
                    "train": args.batch_size / train[name], "memory": memory[name],
                    "flops": flops[name], "classify": args.batch_size / classify[name],
                    "tower": args.batch_size / tower[name], "peak": peaks[precision],
                })  # fmt: skip
            del contenders
    print(markdown_table(rows))


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| arch | precision | contender | train samples/s | x open_clip | x transformers | peak memory | GFLOP/sample | % of matmul peak | zero-shot images/s | image tower images/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        same = {r["contender"]: r for r in rows if (r["architecture"], r["precision"]) == (row["architecture"], row["precision"])}
        ratio = lambda other: f"{row['train'] / same[other]['train']:.2f}" if other in same and row["contender"].startswith("lit-clip") else ""  # noqa: E731
        lines.append(
            f"| {row['architecture']} | {row['precision']} | {row['contender']} | {row['train']:.2f} | {ratio('open_clip')} | "
            f"{ratio('transformers')} | {row['memory'] / 2**20:,.0f} MiB | {row['flops'] / 1e9:.3g} | {100 * row['flops'] * row['train'] / row['peak']:.0f} % | "
            f"{row['classify']:.1f} | {row['tower']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
