"""Video: clips/s of the data modules' training loaders with 0, 1 and 2 workers next to clips/s of each method's
training step, so one can see whether the loader keeps up.

Loaders: ShapesWorld clips generated in memory (``ShapesWorldVideo``), ShapesWorld clips written as MSR-VTT
(lossless H.264 mp4, decoded with PyAV; ``MSRVTT``) and as Kinetics-400 (lossy H.264 mp4, TSN sampling and
ActionCLIP's augmentations; ``Kinetics400``). Training steps (a Lightning ``fit`` of a few steps on ShapesWorld
clips, timed from batch start to batch end: forward, loss, backward, optimiser; loading excluded): CLIP4Clip
(meanP, seqTransf), ActionCLIP (Transf) and VideoCLIP (the CLIP text setting, without the per-epoch clustering).

    python -m benchmarks.bench_video                      # RN-Tiny CLIP, 64 px, 8 frames, batch 16, on a CPU
    python -m benchmarks.bench_video --quick              # a few steps of each: CI keeps this running
    python -m benchmarks.bench_video --device cuda --architecture ViT-B-32 --image-size 224 --batch-size 64
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from benchmarks.measure import machine_name
from lit_clip.datamodules import MSRVTT, Kinetics400, ShapesWorldVideo
from lit_clip.datamodules.export_video import export_kinetics, export_msrvtt
from lit_clip.datamodules.shapesworld import MOTIONS, ShapesWorldClips
from lit_clip.methods import ActionCLIP, CLIP4Clip, VideoCLIP


class StepTimer(L.Callback):
    """Seconds of each training step from batch start to batch end (the batch already loaded)."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._start)


def loader_modules(root: Path, args, workers: int) -> dict[str, L.LightningDataModule]:
    """Each video data module reading ``args.clips`` clips, from files in ``root`` (written on the first call)."""
    if not (root / "msrvtt").exists():
        clips = ShapesWorldClips(image_size=args.stored_size, num_frames=args.frames)
        export_msrvtt(root / "msrvtt", train_videos=args.clips, test_videos=1, captions_per_video=1, clips=clips)
        per_class = {"train": max(1, args.clips // len(MOTIONS)), "val": 1}
        export_kinetics(root / "kinetics", per_class=per_class, clips=clips, codec="lossy")
    common = {"image_size": args.image_size, "batch_size": args.batch_size, "num_workers": workers}
    return {
        "ShapesWorldVideo (generated)": ShapesWorldVideo(train_samples=args.clips, **common),
        "MSRVTT (lossless mp4, 1 fps)": MSRVTT(str(root / "msrvtt"), num_frames=args.frames, sampling="uniform", **common),
        "Kinetics400 (lossy mp4, TSN + augmentation)": Kinetics400(str(root / "kinetics"), num_frames=args.frames, **common),
    }


def loader_clips_per_second(datamodule: L.LightningDataModule, warmup_batches: int = 1) -> float:
    datamodule.setup("fit")
    clips, start = 0, None
    for batch_index, batch in enumerate(datamodule.train_dataloader()):
        if batch_index == warmup_batches:  # workers started: time from here
            start = time.perf_counter()
        elif start is not None:
            clips += batch["video"].shape[0]
    return clips / (time.perf_counter() - start)


def methods(args) -> dict[str, tuple[L.LightningModule, str]]:
    """Each method, random CLIP weights of ``args.architecture``, and the task of its data."""
    layers = 2 if args.quick else 4  # the micro CLIP has 2 text layers for seqTransf to copy
    return {
        "CLIP4Clip meanP": (CLIP4Clip(args.architecture, sim_header="meanP", freeze_layer_num=-1), "retrieval"),
        "CLIP4Clip seqTransf": (
            CLIP4Clip(args.architecture, sim_header="seqTransf", cross_num_hidden_layers=layers, freeze_layer_num=-1),
            "retrieval",
        ),
        "ActionCLIP Transf": (ActionCLIP(args.architecture, fusion="Transf", num_frames=args.frames, warmup_steps=1), "recognition"),
        "VideoCLIP (CLIP text)": (VideoCLIP(architecture=args.architecture, video_layers=layers,
                                            retrieval_augmented=False), "retrieval"),
    }  # fmt: skip


def step_clips_per_second(method: L.LightningModule, task: str, args) -> float:
    data = ShapesWorldVideo(
        task, image_size=args.image_size, clip_frames=args.frames, train_samples=args.batch_size * (args.steps + 2),
        batch_size=args.batch_size, context_length=32,
    )  # fmt: skip
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator=args.device, devices=1, precision=args.precision, max_steps=args.steps + 2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[timer],
    )  # fmt: skip
    trainer.fit(method, data)
    return args.batch_size / statistics.median(timer.seconds[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="RN-Tiny")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--stored-size", type=int, default=None, help="frame size of the files (default: image size)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--clips", type=int, default=224, help="clips each loader reads")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per method (after 2 warm-up)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch's CPU threads (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="a few clips and steps at 32 px: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.architecture, args.image_size, args.batch_size, args.clips, args.steps = "ViT-Micro-8", 32, 4, 14, 1
        args.workers, args.frames = [0], 4
    args.stored_size = args.stored_size or args.image_size
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as root:
        loaders: dict[str, dict[int, float]] = {}
        for workers in args.workers:
            for name, datamodule in loader_modules(Path(root), args, workers).items():
                loaders.setdefault(name, {})[workers] = loader_clips_per_second(datamodule)
    steps = {name: step_clips_per_second(method, task, args) for name, (method, task) in methods(args).items()}

    frames = f"{args.frames} frames of {args.image_size} px"
    print(f"\n{machine_name(torch.device(args.device))}; {frames}, batch {args.batch_size}\n")
    print("| training loader (clips/s) | " + " | ".join(f"{w} workers" for w in args.workers) + " |")
    print("|---|" + "---:|" * len(args.workers))
    for name, by_workers in loaders.items():
        print(f"| {name} | " + " | ".join(f"{by_workers[w]:,.1f}" for w in args.workers) + " |")
    print(f"\n| training step, {args.architecture}, {args.precision} | clips/s |")
    print("|---|---:|")
    for name, clips_per_second in steps.items():
        print(f"| {name} | {clips_per_second:,.1f} |")


if __name__ == "__main__":
    main()
