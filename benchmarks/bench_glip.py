"""GLIP's cost beside ViLD's on the same images, and the cost of each fusion depth.

A training iteration (forward, losses, backward, an optimizer step) on one batch of ShapesWorld scenes, timed in
alternating rounds (a slow minute of a shared machine hits all alike), medians reported, each as a multiple of
ViLD-text's time measured in the same run; and the peak memory of building a model and running its steps (CUDA's
allocator peak on a GPU; on a CPU the peak resident growth, each contender in a fresh process):

- ViLD-text (configs/vild/shapes.yaml's detector: ResNet-18-FPN, a random RN-Tiny CLIP's text classifier), its
  loss on the batch's boxes over the 48 base names;
- GLIP at every fusion depth from 0 (GLIP-T(A): DyHead blocks alone) to all of its blocks (GLIP-T(B, C)), on the
  same images grounding detection prompts of their base names and 8 negatives (GLIP's data as grounding).

A CPU-sized row (configs/glip/shapes.yaml: ResNet-18, 64 channels, a 2-layer BERT, 2 blocks, 128 px, batch 8;
ViLD's shapes config beside it) and a paper-sized one (GLIP-T: Swin-T, 256 channels, a random-weight BERT-base, 6
DyHead blocks with deformable convolutions; ViLD's paper detector, ResNet-50, FPN 256; 512 px, batch 2; GLIP's
800 x 1333 is a GPU's job: ``--paper-image 800``). fp32, and bf16 autocast on a GPU that has it.

Run from the repository root:

    python -m benchmarks.bench_glip                      # the CPU-sized and paper-sized rows
    python -m benchmarks.bench_glip --quick              # micro models, 64 px: CI keeps this running
    python -m benchmarks.bench_glip --threads 1 --warmup 0
    python -m benchmarks.bench_glip --device cuda --paper-image 800
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from lit_clip.datamodules import ShapesWorldDetection
from lit_clip.datamodules.detection import detection_collate
from torch import Tensor, nn

import lit_clip
from benchmarks.measure import cuda_peak_growth, machine_name, median_seconds, peak_memory_in_fresh_process, \
    report_peak_resident_growth  # fmt: skip
from lit_clip.methods.detection.glip import GLIP
from lit_clip.methods.detection.vild import ViLD
from lit_clip.transforms import IMAGENET_MEAN, IMAGENET_STD

CLIP = "RN-Tiny"  # ViLD-text's classifier (random weights)
WORDS = ["circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "ring", "red", "orange", "yellow",
         "green", "cyan", "blue", "purple", "pink"]  # fmt: skip
RGB = dict(pixel_mean=[255 * m for m in IMAGENET_MEAN], pixel_std=[255 * s for s in IMAGENET_STD], bgr=False)
SIZES = {
    "micro": dict(
        image=64, batch=2,
        glip=dict(backbone="resnet18", channels=16, text_encoder=None, text_words=WORDS, text_width=32,
                  text_layers=1, text_heads=2, blocks=2, fusion_dim=32, fusion_heads=2, deformable=False,
                  anchor_scale=4.0, **RGB),
        vild=dict(backbone="resnet18", fpn_channels=16, head_fc=32, anchor_sizes=(8, 16, 32, 64, 128),
                  proposals_per_image=20, proposals_before_nms=50, roi_samples_per_image=16)),
    "CPU-sized": dict(
        image=128, batch=8,
        glip=dict(backbone="resnet18", channels=64, text_encoder=None, text_words=WORDS, text_width=128,
                  text_layers=2, text_heads=4, blocks=2, fusion_dim=256, fusion_heads=4, deformable=False,
                  anchor_scale=4.0, **RGB),
        vild=dict(backbone="resnet18", fpn_channels=64, head_fc=256, anchor_sizes=(16, 32, 64, 128, 256),
                  proposals_per_image=100, proposals_before_nms=300, roi_samples_per_image=64)),
    "paper-sized": dict(
        image=512, batch=2,
        glip=dict(backbone="swin_tiny_patch4_window7_224", channels=256, text_encoder=None, text_words=WORDS,
                  text_width=768, text_layers=12, text_heads=12, blocks=6),
        vild=dict(backbone="resnet50", fpn_channels=256, head_fc=1024)),
}  # fmt: skip
LR = 1e-4


def scenes(image: int, batch_size: int, device: torch.device) -> tuple[dict, list[str]]:
    """A training batch of ShapesWorld detection scenes (labels over the base names) and the base names."""
    data = ShapesWorldDetection(image_size=image, batch_size=batch_size)
    dataset = data.train_dataset()
    batch = detection_collate([dataset[i] for i in range(batch_size)])
    batch["image"] = batch["image"].to(device)
    batch["targets"] = [{key: value.to(device) if isinstance(value, Tensor) else value for key, value in t.items()}
                        for t in batch["targets"]]  # fmt: skip
    return batch, data.classnames


def contenders(size: str, clip_file: str, classnames: list[str], device: torch.device) -> dict[str, nn.Module]:
    """ViLD-text and GLIP at each fusion depth, of one size, in train mode on ``device``."""
    settings = SIZES[size]
    image = settings["image"]
    torch.manual_seed(0)
    vild = ViLD(clip_file, variant="text", architecture=CLIP, min_size=image, max_size=image, **settings["vild"])
    vild.set_classes(classnames, ["a photo of a {}."])
    models: dict[str, nn.Module] = {"ViLD-text": vild}
    blocks = settings["glip"]["blocks"]
    for depth in sorted({0, blocks // 2, blocks}):
        torch.manual_seed(0)
        glip = GLIP(fusion_depth=depth, min_size=image, max_size=image, negatives=8, **settings["glip"])
        models[f"GLIP, fusion depth {depth}/{blocks}"] = glip
    return {name: model.to(device).train() for name, model in models.items()}


def train_step(model: nn.Module, batch: dict, classnames: list[str], bf16: bool) -> Callable[[], None]:
    """One training iteration: forward, the method's losses (GLIP's with prompts of ``classnames``), backward, an
    AdamW step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    autocast = torch.autocast(batch["image"].device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            losses = model.losses(batch, classnames) if isinstance(model, GLIP) else model.losses(batch)
            value = sum(losses.values())
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def peak_bytes(size: str, name: str, clip_file: str, device: torch.device, steps: int = 2) -> int:
    """The peak memory growth of building ``name`` of ``size`` and running ``steps`` training iterations."""
    if device.type == "cuda":
        return cuda_peak_growth(lambda: _build_and_run(size, name, clip_file, device, steps), device)
    arguments = ["--measure-memory", size, name, clip_file, "--device", str(device)]
    return peak_memory_in_fresh_process("benchmarks.bench_glip", arguments)


def _build_and_run(size: str, name: str, clip_file: str, device: torch.device, steps: int) -> object:
    batch, classnames = scenes(SIZES[size]["image"], SIZES[size]["batch"], device)
    model = contenders(size, clip_file, classnames, device)[name]
    step = train_step(model, batch, classnames, bf16=False)
    for _ in range(steps):
        step()
    return model


def rows(size: str, clip_file: str, args, device: torch.device) -> None:
    settings = SIZES[size]
    batch, classnames = scenes(settings["image"], settings["batch"], device)
    models = contenders(size, clip_file, classnames, device)
    precisions = ["fp32", "bf16"] if device.type == "cuda" and torch.cuda.is_bf16_supported() else ["fp32"]
    memory = {name: peak_bytes(size, name, clip_file, device) for name in models} if args.memory else {}
    for precision in precisions:
        functions = {name: train_step(model, batch, classnames, precision == "bf16") for name, model in models.items()}
        seconds = median_seconds(functions, args.warmup, args.rounds, 1, device)
        for name, model in models.items():
            backbone = model.hparams.backbone
            peak = f"{memory[name] / 2**20:,.0f}" if name in memory else "-"
            print(
                f"| {size} | {backbone} | {settings['image']} px | {settings['batch']} | {precision} | {name} | "
                f"{sum(p.numel() for p in model.parameters()):,} | {seconds[name]:.3f} | "
                f"{seconds[name] / seconds['ViLD-text']:.2f}x | {peak} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paper-image", type=int, default=512, help="the paper-sized row's image side (GLIP: 800)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument("--threads", type=int, help="CPU threads (torch's default if not given)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak memory column")
    parser.add_argument("--quick", action="store_true", help="micro models: checks that it runs")
    parser.add_argument("--measure-memory", nargs=3, metavar=("SIZE", "NAME", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    SIZES["paper-sized"]["image"] = args.paper_image
    if args.measure_memory:  # the child of peak_memory_in_fresh_process
        size, name, clip_file = args.measure_memory
        report_peak_resident_growth(lambda: _build_and_run(size, name, clip_file, device, steps=2))
        return
    sizes = ["micro"] if args.quick else ["CPU-sized", "paper-sized"]
    if args.quick:
        args.rounds, args.warmup = 2, 1
    print(f"\n{machine_name(device)}; torch {torch.__version__}; median of {args.rounds} rounds\n")
    print("Training iteration (forward, losses, backward, optimizer step) on the same ShapesWorld scenes\n")
    print("| size | backbone | image | batch | precision | model | parameters (ViLD's frozen CLIP included) | "
          "train step s | step / ViLD-text's | peak memory MiB |")  # fmt: skip
    print("|---|---|---:|---:|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        clip_file = str(Path(folder) / f"{CLIP}.pt")
        torch.save(lit_clip.create_model(CLIP).state_dict(), clip_file)
        for size in sizes:
            rows(size, clip_file, args, device)


if __name__ == "__main__":
    main()
