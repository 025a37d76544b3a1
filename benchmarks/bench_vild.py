"""ViLD's speed beside torchvision's Faster R-CNN: what the open-vocabulary head costs a training iteration, and how
fast the region cache is built.

1. **Training iteration**: forward, losses, backward and an SGD step on one batch of ShapesWorld detection scenes,
   timed in alternating rounds (a slow minute of a shared machine hits all alike), medians reported, each as a
   multiple of Faster R-CNN's time measured in the same run. The contenders, one process, the same batch:

   - Faster R-CNN: torchvision's ``FasterRCNN`` on the same ``fpn_backbone``, with ViLD's anchors, RPN, RoI
     sampling and image size, and the box head closest to ViLD's: torchvision's ``FastRCNNConvFCHead`` (the head of
     ``fasterrcnn_resnet50_fpn_v2``) with 4 convolutions with batch norm as its own and 2 fully connected layers of
     ViLD's width (v2 has 1; these have no batch norm, ViLD's do), then ``FastRCNNPredictor`` over the 48 base
     categories and background (class-specific boxes);
   - ViLD-text: ViLD's head (region embeddings against the text classifier of a random-weight RN-Tiny CLIP, a
     class-agnostic box);
   - ViLD: ViLD-text plus the distillation of M cached regions per image, fabricated (random boxes inside the image,
     random unit embeddings of the CLIP's dimension), through the same head;
   - ViLD-ens: the distillation through a second head of its own.

   A CPU-sized row (configs/vild/shapes.yaml: ResNet-18, FPN 64, 128 px, batch 8, 32 regions) and a paper-sized one
   (ResNet-50, FPN 256, ViLD's RPN and RoI settings, 512 px, batch 2, 300 regions; LVIS's 1024 px is a GPU's job:
   ``--paper-image 1024``). fp32, and on a GPU bf16 autocast too where it has it. A small learning rate keeps the
   random weights finite over the steps.
2. **The region cache builder**: crops/s of ``vild_cache.crop_embeddings`` (two crops per box: PIL crops, CLIP's
   evaluation preprocessing, the image tower, fp32) on a 128 px ShapesWorld scene with ``--boxes`` random boxes,
   for random-weight CLIPs: RN-Tiny at its 64 px and ViT-B/32 at 224 px.

Run from the repository root:

    python -m benchmarks.bench_vild                     # the CPU-sized and paper-sized rows, RN-Tiny and ViT-B/32 crops
    python -m benchmarks.bench_vild --quick             # micro detectors, 64 px, RN-Tiny crops: CI keeps this running
    python -m benchmarks.bench_vild --threads 1 --warmup 0    # a CPU shared with another job: one thread each
    python -m benchmarks.bench_vild --device cuda --paper-image 1024
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from lit_clip.datamodules import ShapesWorldDetection
from lit_clip.datamodules.detection import detection_collate
from lit_clip.datamodules.shapesworld import ShapesWorld
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

import lit_clip
from benchmarks.measure import machine_name, median_seconds
from lit_clip.methods.detection import vild_cache
from lit_clip.methods.detection.vild import LEVELS, ROI_SIZE, ViLD, fpn_backbone
from lit_clip.optim import weight_decay_groups
from lit_clip.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize

CLIP = "RN-Tiny"  # ViLD's text classifier (random weights)
CPU = dict(backbone="resnet18", fpn_channels=64, head_fc=256, min_size=128, max_size=128,
           anchor_sizes=(16, 32, 64, 128, 256), proposals_per_image=100, proposals_before_nms=300,
           roi_samples_per_image=64)  # fmt: skip
PAPER = dict(backbone="resnet50", fpn_channels=256, head_fc=1024)  # and ViLD's defaults: 1000 proposals, 512 samples
MICRO = dict(backbone="resnet18", fpn_channels=16, head_fc=32, min_size=64, max_size=64,
             anchor_sizes=(8, 16, 32, 64, 128), proposals_per_image=20, proposals_before_nms=50,
             roi_samples_per_image=16)  # fmt: skip
VARIANTS = {"ViLD-text": "text", "ViLD": "vild", "ViLD-ens": "ensemble"}
BASELINE = "Faster R-CNN (4conv-2fc head)"
LR, MOMENTUM, WEIGHT_DECAY = 1e-3, 0.9, 4e-5


def faster_rcnn(vild: ViLD, classes: int) -> FasterRCNN:
    """torchvision's Faster R-CNN with ``vild``'s backbone, anchors, RPN and RoI sampling (torchvision's defaults are
    ViLD's thresholds and fractions), the conv-fc box head of its size and a classifier over ``classes`` and
    background, in train mode."""
    h = vild.hparams
    anchors = AnchorGenerator(tuple((size,) for size in h.anchor_sizes), ((0.5, 1.0, 2.0),) * len(h.anchor_sizes))
    head = FastRCNNConvFCHead((h.fpn_channels, ROI_SIZE, ROI_SIZE), [h.fpn_channels] * h.head_convs,
                              [h.head_fc] * h.head_fcs, norm_layer=nn.BatchNorm2d)  # fmt: skip
    model = FasterRCNN(
        fpn_backbone(h.backbone, h.backbone_weights, h.fpn_channels), min_size=h.min_size, max_size=h.max_size,
        image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, rpn_anchor_generator=anchors,
        rpn_head=RPNHead(h.fpn_channels, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=h.proposals_before_nms, rpn_post_nms_top_n_train=h.proposals_per_image,
        box_roi_pool=MultiScaleRoIAlign(LEVELS, ROI_SIZE, 2), box_head=head,
        box_predictor=FastRCNNPredictor(h.head_fc, classes + 1), box_batch_size_per_image=h.roi_samples_per_image,
    )  # fmt: skip
    return model.to(vild.device).train()


def random_boxes(count: int, side: int, generator: torch.Generator) -> Tensor:
    """``count`` boxes (x1, y1, x2, y2) inside a ``side`` square, each side at least an eighth of it."""
    smallest = side / 8
    corner = torch.rand(count, 2, generator=generator) * (side - smallest)
    extent = smallest + torch.rand(count, 2, generator=generator) * (side - smallest - corner)
    return torch.cat([corner, corner + extent], dim=1)


def scenes(data: ShapesWorldDetection, batch_size: int, regions: int, dim: int, device: torch.device) -> dict:
    """A training batch of ``batch_size`` scenes, each with ``regions`` fabricated cached regions (``dim``-wide unit
    embeddings), on ``device``."""
    generator = torch.Generator().manual_seed(0)
    dataset, side = data.train_dataset(), data.hparams.image_size
    samples = [dataset[i] for i in range(batch_size)]
    for sample in samples:
        sample["target"]["regions"] = random_boxes(regions, side, generator)
        sample["target"]["region_embeddings"] = F.normalize(torch.randn(regions, dim, generator=generator), dim=-1)
    batch = detection_collate(samples)
    batch["image"] = batch["image"].to(device)
    batch["targets"] = [{key: value.to(device) if isinstance(value, Tensor) else value for key, value in t.items()}
                        for t in batch["targets"]]  # fmt: skip
    return batch


def detection_targets(batch: dict) -> list[dict[str, Tensor]]:
    """The batch's boxes, labelled 1.. (0: background)."""
    return [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in batch["targets"]]


def vild_loss(model: ViLD, batch: dict) -> Tensor:
    """ViLD's training loss, as its ``training_step`` minimises it (without the logging)."""
    return sum(model.losses(batch).values())


def faster_rcnn_loss(model: FasterRCNN, batch: dict) -> Tensor:
    """torchvision's training loss, on the same [0, 1] pixels ViLD gives its transform."""
    pixels = denormalize(batch["image"])
    images = [image[:, :h, :w] for image, (h, w) in zip(pixels, batch["image_size"].tolist())]
    return sum(model(images, detection_targets(batch)).values())


def train_step(model: nn.Module, loss: Callable[[nn.Module, dict], Tensor], batch: dict, bf16: bool) -> Callable:
    """One training iteration: forward, losses, backward, an SGD step."""
    optimizer = torch.optim.SGD(weight_decay_groups(model, WEIGHT_DECAY), lr=LR, momentum=MOMENTUM)
    autocast = torch.autocast(batch["image"].device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            value = loss(model, batch)
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def training_rows(name: str, settings: dict, batch_size: int, regions: int, clip_file: str, args,
                  device: torch.device) -> None:  # fmt: skip
    """Print the Faster R-CNN and ViLD rows of one size, per precision."""
    data = ShapesWorldDetection(image_size=settings["min_size"], batch_size=batch_size)
    detectors = {}
    for label, variant in VARIANTS.items():
        torch.manual_seed(0)
        detectors[label] = ViLD(clip_file, variant=variant, architecture=CLIP, **settings).to(device).train()
        detectors[label].set_classes(data.classnames, data.templates)
    vild = detectors["ViLD"]
    torch.manual_seed(0)
    models = {BASELINE: faster_rcnn(vild, len(data.classnames)), **detectors}
    losses = {BASELINE: faster_rcnn_loss, **{label: vild_loss for label in VARIANTS}}
    batch = scenes(data, batch_size, regions, vild.model.text_projection.shape[1], device)
    h = vild.hparams
    precisions = ["fp32", "bf16"] if device.type == "cuda" and torch.cuda.is_bf16_supported() else ["fp32"]
    for precision in precisions:
        bf16 = precision == "bf16"
        functions = {label: train_step(model, losses[label], batch, bf16) for label, model in models.items()}
        seconds = median_seconds(functions, args.warmup, args.rounds, 1, device)
        for label in models:
            cached = regions if label in ("ViLD", "ViLD-ens") else "-"
            print(
                f"| {name} | {h.backbone}, FPN {h.fpn_channels} | {h.min_size} px | {batch_size} | {precision} | "
                f"{label} | {cached} | {seconds[label]:.3f} | {batch_size / seconds[label]:,.2f} | "
                f"{seconds[label] / seconds[BASELINE]:.2f}x |"
            )


def crops_per_second(architecture: str, boxes: int, args, device: torch.device) -> tuple[int, float]:
    """The CLIP's input side and the crops/s of ``crop_embeddings`` on a 128 px scene with ``boxes`` random boxes."""
    torch.manual_seed(0)
    clip = lit_clip.create_model(architecture).to(device).eval()
    image = ShapesWorld(image_size=128).scene("train", 0).image
    regions = random_boxes(boxes, 128, torch.Generator().manual_seed(0))
    functions = {"crops": lambda: vild_cache.crop_embeddings(clip, image, regions)}
    seconds = median_seconds(functions, args.warmup, args.rounds, 1, device)["crops"]
    return clip.config.vision.image_size, 2 * boxes / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paper-image", type=int, default=512, help="the paper-sized row's image side (ViLD: 1024)")
    parser.add_argument("--boxes", type=int, default=32, help="boxes per scene for the region cache's crops")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first")
    parser.add_argument("--threads", type=int, help="CPU threads (torch's default if not given)")
    parser.add_argument("--quick", action="store_true", help="micro detectors, RN-Tiny crops: checks that it runs")
    args = parser.parse_args()
    paper = {**PAPER, "min_size": args.paper_image, "max_size": args.paper_image}
    # (row, ViLD's settings, batch size, cached regions per image)
    sizes = [("micro", MICRO, 2, 4)] if args.quick else [("CPU-sized", CPU, 8, 32), ("paper-sized", paper, 2, 300)]
    clips = [CLIP] if args.quick else [CLIP, "ViT-B-32"]
    if args.quick:
        args.rounds, args.warmup = 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"\n{machine_name(device)}; torch {torch.__version__}; median of {args.rounds} rounds\n")
    print(f"Training iteration (forward, losses, backward, SGD step); ViLD's text classifier: a random {CLIP} CLIP\n")
    print("| size | backbone | image | batch | precision | detector | cached regions / image | train step s | images/s "
          "| step / Faster R-CNN's |")  # fmt: skip
    print("|---|---|---:|---:|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        clip_file = str(Path(folder) / f"{CLIP}.pt")
        torch.save(lit_clip.create_model(CLIP).state_dict(), clip_file)
        for name, settings, batch_size, regions in sizes:
            training_rows(name, settings, batch_size, regions, clip_file, args, device)
    print(f"\nRegion cache builder: crop_embeddings, {args.boxes} boxes (1x and 1.5x crops) on a 128 px scene\n")
    print("| CLIP | crop px | crops / call | crops/s |")
    print("|---|---:|---:|---:|")
    for architecture in clips:
        side, rate = crops_per_second(architecture, args.boxes, args, device)
        print(f"| {architecture} | {side} | {2 * args.boxes} | {rate:,.1f} |")


if __name__ == "__main__":
    main()
