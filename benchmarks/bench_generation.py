"""CLIP-guided generation: seconds per optimisation step of CLIPDraw, CLIPasso and VQGAN-CLIP at their default sizes,
and, measured in the same run, the seconds of the step's picture alone (forward and backward of the rasteriser, or of
the VQGAN's decoder), with the ratio: what the picture costs beside the CLIP.

A step is what ``fit`` does once: render (decode), augment, encode, the loss, backward and the optimizer's step. The
weights are random (a step's cost does not depend on them): CLIPDraw with ViT-B-32, 256 paths at 224 px, 4
augmentations; CLIPasso with RN101 (the saliency CLIP, ViT-B-32, works only before the first step), 16 strokes at 224 px, 3
seeds as one batch, 4 augmentations; VQGAN-CLIP with ViT-B-32 and the ImageNet f16 16384-code VQGAN at 256 px, 32
cutouts. Alternating rounds, medians.

    python -m benchmarks.bench_generation                  # the defaults above, on a CPU
    python -m benchmarks.bench_generation --quick          # micro models and sizes: CI keeps this running
    python -m benchmarks.bench_generation --device cuda
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import lit_clip
from benchmarks.measure import machine_name, median_seconds
from lit_clip.datamodules import GenerationTargets
from lit_clip.methods.generation.clipasso import CLIPasso
from lit_clip.methods.generation.clipdraw import CLIPDraw
from lit_clip.methods.generation.vqgan_clip import VQGANCLIP
from lit_clip.models.vqgan import VQGAN, VQGAN_CONFIGS

QUICK_VQGAN = dict(embed_dim=8, n_embed=16, ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8],
                   resolution=16, z_channels=8)  # fmt: skip


def saved_clip(directory: Path, architecture: str) -> str:
    path = directory / f"{architecture}.pt"
    torch.save(lit_clip.create_model(architecture).state_dict(), path)
    return str(path)


def step_and_picture(method, device: torch.device):
    """``step()``: one optimisation step of ``method``; ``picture()``: its pictures' forward and backward alone (of the
    strokes being optimised: CLIPasso's ``pictures()`` are its best strokes so far)."""
    method.to(device).train()
    # The methods' own optimizers are Adam on these parameters (with per-group learning rates: the same cost).
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad])
    batch = {"step": torch.zeros(1, dtype=torch.long)}
    method.log = lambda *args, **kwargs: None  # outside a Trainer

    def step() -> None:
        optimizer.zero_grad()
        method.training_step(batch, 0).backward()
        optimizer.step()

    def picture() -> None:
        optimizer.zero_grad()
        drawn = method.render(method.points) if isinstance(method, CLIPasso) else method.pictures()
        drawn.sum().backward()

    return step, picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="micro models and sizes: checks that it runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    quick = args.quick
    vit, resnet = ("ViT-Micro-8", "RN-Tiny") if quick else ("ViT-B-32", "RN101")
    canvas, paths, strokes = (64, 16, 4) if quick else (224, 256, 16)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        vit_file, resnet_file = saved_clip(scratch, vit), saved_clip(scratch, resnet)
        vqgan_config = QUICK_VQGAN if quick else VQGAN_CONFIGS["imagenet-f16-16384"]
        torch.save({"state_dict": VQGAN(**vqgan_config).state_dict()}, scratch / "vqgan.ckpt")
        prompts = GenerationTargets(prompts=["a red circle"], steps=1)

        clipdraw = CLIPDraw(vit_file, architecture=vit, num_paths=paths, canvas_size=canvas)
        clipdraw.create_pictures(prompts)
        rows.append(("CLIPDraw", f"{vit}, {paths} paths, {canvas} px, 4 views", "rasteriser", clipdraw))

        clipasso = CLIPasso(resnet_file, architecture=resnet, saliency_clip=vit_file, saliency_architecture=vit,
                            num_strokes=strokes, use_edges=not quick)  # fmt: skip
        clipasso.create_pictures(GenerationTargets(shapesworld_scenes=[0], image_size=canvas, steps=1))
        rows.append(("CLIPasso", f"{resnet}, {strokes} strokes x 3 seeds, {canvas} px, 5 views", "rasteriser",
                     clipasso))  # fmt: skip

        size, cutouts = (32, 4) if quick else (256, 32)
        vqgan_clip = VQGANCLIP(vit_file, str(scratch / "vqgan.ckpt"), vqgan_config=vqgan_config, architecture=vit,
                               image_size=size, cutouts=cutouts)  # fmt: skip
        vqgan_clip.create_pictures(prompts)
        rows.append(("VQGAN-CLIP", f"{vit}, {'tiny' if quick else 'f16 16384'} VQGAN, {size} px, {cutouts} cutouts",
                     "VQGAN decoder", vqgan_clip))  # fmt: skip

        results = []
        for name, setting, drawn_by, method in rows:
            step, picture = step_and_picture(method, device)
            seconds = median_seconds({"step": step, "picture": picture}, args.warmup, args.rounds, 1, device)
            results.append((name, setting, drawn_by, seconds["step"], seconds["picture"]))

    print(f"\n{machine_name(device)}; fp32, random weights\n")
    print("| method | setting | picture by | step (s) | picture forward + backward (s) | picture / step |")
    print("|---|---|---|---:|---:|---:|")
    for name, setting, drawn_by, step_seconds, picture_seconds in results:
        print(f"| {name} | {setting} | {drawn_by} | {step_seconds:.3f} | {picture_seconds:.3f} | "
              f"{picture_seconds / step_seconds:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
