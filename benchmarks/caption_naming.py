"""Do ShapesWorld captioners name what is in the picture? The share of test captions that name exactly the scene's
colour-shape pairs (every object's colour and shape, and no other), beside the COCO scores that also reward
fluent sentences about the wrong objects. Reads the captioners' checkpoints (``TransformerCaptioning`` or
``ClipCap``) and rebuilds each one's ShapesWorld test sets from the data settings its checkpoint keeps; prints a
table. Run from the repository root after the README's runs:

    python -m benchmarks.caption_naming runs/captioning-shapes/version_0/checkpoints/last.ckpt \\
        runs/captioning-shapes-random/version_0/checkpoints/last.ckpt --test-samples 500
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lit_clip.datamodules import ShapesWorldCaptioning
from lit_clip.datamodules.shapesworld.captioning import names_the_scene
from lit_clip.methods import ClipCap, TransformerCaptioning
from lit_clip.metrics.captioning import caption_scores, tokenize_caption


def load_captioner(checkpoint: Path):
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    method = TransformerCaptioning if any(k.startswith("captioner.") for k in state["state_dict"]) else ClipCap
    settings = state.get("datamodule_hyper_parameters", {})  # as the data module was built (LightningCLI adds _keys)
    data = ShapesWorldCaptioning(**{key: value for key, value in settings.items() if not key.startswith("_")})
    return method.load_from_checkpoint(checkpoint, map_location="cpu").eval(), data


def evaluate(captioner, data: ShapesWorldCaptioning) -> dict[str, float]:
    scores = {}
    for name, loader in zip(data.evaluation_names, data.test_dataloader()):
        references, captions, named = [], [], []
        allowed = data.held_out if name else None
        for batch in loader:
            with torch.no_grad():
                written = captioner.to_text(captioner.generate(batch))
            for index, caption, refs in zip(batch["index"].tolist(), written, batch["references"]):
                named.append(names_the_scene(caption, data.world.scene("test", index, allowed)))
                references.append([tokenize_caption(r) for r in refs])
                captions.append(tokenize_caption(caption))
        scores[f"{name}CIDEr"] = caption_scores(references, captions)["CIDEr"]
        scores[f"{name}named"] = sum(named) / len(named)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--test-samples", type=int, default=500, help="scenes of each test set")
    args = parser.parse_args()
    print("| checkpoint | CIDEr | named | unseen CIDEr | unseen named |")
    print("|---|---:|---:|---:|---:|")
    for checkpoint in args.checkpoints:
        captioner, data = load_captioner(checkpoint)
        data.hparams.test_samples = args.test_samples
        data.setup("test")
        s = evaluate(captioner, data)
        unseen = f"{s['unseen/CIDEr']:.2f} | {s['unseen/named']:.3f}" if "unseen/CIDEr" in s else "- | -"
        print(f"| {checkpoint} | {s['CIDEr']:.2f} | {s['named']:.3f} | {unseen} |")


if __name__ == "__main__":
    main()
