"""GroupViT's speed: lit-clip's against transformers' GroupViTModel, side by side.

For each geometry and precision, one process builds both with the same config and the same weights (ours copied
into transformers' layout; the image embeddings of the two are checked to agree first), feeds them the same batch,
and times them in alternating rounds (a slow minute of a shared machine hits both alike); medians are reported:

- training step: forward of both towers in training mode (Gumbel-softmax assignment), the symmetric InfoNCE loss
  on the normalised embeddings scaled by ``exp(logit_scale)``, backward;
- evaluation: images/s of the image embedding in eval mode (hard argmax assignment), no grad.

Stochastic depth is off in ours (transformers' port has none), and both take the same pixels (ours without its
ImageNet-statistics conversion). Every caption fills the context.
Run from the repository root:

    python -m benchmarks.bench_groupvit                     # GroupViT-Micro at batch 32 and a mid-sized one
    python -m benchmarks.bench_groupvit --quick             # GroupViT-Micro, batch 8, 2 rounds: CI keeps this running
    python -m benchmarks.bench_groupvit --architectures GroupViT-S-16 --batch-sizes 64 --device cuda --precisions bf16
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from benchmarks.measure import machine_name, median_seconds
from lit_clip.models import groupvit as gv

# Between GroupViT-Micro and the paper's GroupViT-S: half its width and the full stage plan, at 224 px.
MID = gv.GroupViTConfig(
    embed_dim=128,
    projection_hidden=1024,
    vision=gv.GroupViTVisionConfig(width=192, heads=3),
    text=gv.GroupViTTextConfig(width=128, heads=2, layers=6),
)
CONFIGS = {**gv.GROUPVIT_ARCHITECTURES, "GroupViT-Mid": MID}
CONTENDERS = ("lit-clip", "transformers")


def build(config: gv.GroupViTConfig, device: torch.device) -> dict[str, torch.nn.Module]:
    """Ours and transformers' GroupViTModel with the same weights, in training mode."""
    from transformers import GroupViTConfig as HFGroupViTConfig
    from transformers import GroupViTModel

    # The same pixels into both: with "imagenet" (the released weights') ours would first convert the CLIP-normalised
    # input it expects to ImageNet statistics, and the two would see different images.
    vision = dataclasses.replace(config.vision, drop_path_rate=0.0, image_normalization="clip")
    config = dataclasses.replace(config, vision=vision)
    ours = gv.GroupViT(config)
    theirs = GroupViTModel(HFGroupViTConfig(**gv.hf_config(config)))
    # (transformers has no multi-label logit scale)
    theirs.load_state_dict({k: v for k, v in gv.to_hf(ours.state_dict()).items() if k != "multi_label_logit_scale"})
    return {"lit-clip": ours.to(device).train(), "transformers": theirs.to(device).train()}


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    logits = logit_scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits.float(), labels) + F.cross_entropy(logits.float().T, labels)) / 2


def embeddings(name: str, model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor | None):
    """The image embedding, and with ``tokens`` the text one, as each contender computes them."""
    if name == "lit-clip":
        return model.encode_image(images), None if tokens is None else model.encode_text(tokens)
    image = model.visual_projection(model.vision_model(pixel_values=images).pooler_output)
    if tokens is None:
        return image, None
    return image, model.text_projection(model.text_model(input_ids=tokens).pooler_output)


def timed_functions(
    models: dict[str, torch.nn.Module], images: torch.Tensor, tokens: torch.Tensor, bf16: bool
) -> dict[str, Callable[[], None]]:
    device = images.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    functions = {}
    for name, model in models.items():

        def train_step(name=name, model=model) -> None:
            model.train()
            with autocast:
                image, text = embeddings(name, model, images, tokens)
                loss = contrastive_loss(image, text, model.logit_scale)
            loss.backward()
            model.zero_grad(set_to_none=True)

        def evaluate(name=name, model=model) -> None:
            model.eval()
            with torch.no_grad(), autocast:
                embeddings(name, model, images, None)

        functions[f"{name} train"], functions[f"{name} eval"] = train_step, evaluate
    return functions


def inputs(config: gv.GroupViTConfig, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    side, text = config.vision.image_size, config.text
    images = torch.randn(batch_size, 3, side, side, generator=generator)
    tokens = torch.randint(1, text.vocab_size - 2, (batch_size, text.context_length), generator=generator)
    tokens[:, 0], tokens[:, -1] = text.vocab_size - 2, text.vocab_size - 1  # SOT ... EOT, the context filled
    return images.to(device), tokens.to(device)


def agreement(models: dict[str, torch.nn.Module], images: torch.Tensor) -> float:
    """The largest difference of the two image embeddings in eval mode, relative to their scale."""
    with torch.no_grad():
        ours, theirs = (embeddings(name, models[name].eval(), images[:4], None)[0] for name in CONTENDERS)
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--architectures", nargs="+", default=["GroupViT-Micro", "GroupViT-Mid"], choices=sorted(CONFIGS)
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 16], help="one per architecture, or one")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--threads", type=int, help="CPU threads (torch's default if not given)")
    parser.add_argument("--quick", action="store_true", help="GroupViT-Micro, batch 8, 2 rounds: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.architectures, args.batch_sizes, args.rounds, args.warmup = ["GroupViT-Micro"], [8], 2, 1
    batch_sizes = args.batch_sizes * len(args.architectures) if len(args.batch_sizes) == 1 else args.batch_sizes
    if len(batch_sizes) != len(args.architectures):
        parser.error("give one batch size, or one per architecture")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"\n{machine_name(device)}; torch {torch.__version__}; median of {args.rounds} rounds\n")
    print("| architecture | batch | precision | contender | train step s | train vs transformers | eval images/s "
          "| eval vs transformers | image embeddings agree to |")  # fmt: skip
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for architecture, batch_size in zip(args.architectures, batch_sizes):
        config = CONFIGS[architecture]
        torch.manual_seed(0)
        models = build(config, device)
        images, tokens = inputs(config, batch_size, device)
        difference = agreement(models, images)
        for precision in args.precisions:
            functions = timed_functions(models, images, tokens, precision == "bf16")
            seconds = median_seconds(functions, args.warmup, args.rounds, 1, device)
            for name in CONTENDERS:
                train, evaluation = seconds[f"{name} train"], seconds[f"{name} eval"]
                train_ratio = seconds["transformers train"] / train  # > 1: faster than transformers
                eval_ratio = seconds["transformers eval"] / evaluation
                print(
                    f"| {architecture} | {batch_size} | {precision} | {name} | {train:.3f} | {train_ratio:.2f}x | "
                    f"{batch_size / evaluation:,.1f} | {eval_ratio:.2f}x | {difference:.1e} |"
                )
        del models


if __name__ == "__main__":
    main()
