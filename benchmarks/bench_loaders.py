"""Training-loader throughput of every image-text data module: decode + augment + tokenize + collate.

ShapesWorld is written to disk in each real layout (COCO, Flickr30k Karpathy, CSV,
WebDataset shards) and read back by the real data modules; ShapesWorld's own
module generates its images. Run from the repository root:

    python -m benchmarks.bench_loaders --samples 2048 --image-size 224 --stored-size 256

Prints a Markdown table of images/s for 0, 1 and 2 DataLoader workers. A GPU
needs as many workers as it takes for images/s to exceed its training step's
samples/s (see the README).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lit_clip.datamodules import CocoCaptions, CsvPairs, Flickr30k, ShapesWorldCaptions, WebDatasetPairs
from lit_clip.datamodules.export import (
    export_coco_captions,
    export_csv_pairs,
    export_flickr_karpathy,
    export_webdataset,
)


def data_modules(root: Path, samples: int, stored_size: int, image_size: int, workers: int, batch_size: int):
    """Each data module, reading its files from ``root`` (written once, on the first call)."""
    if not (root / "coco").exists():
        splits = {"train": samples, "val": 1, "test": 1}
        export_coco_captions(root / "coco", splits, image_size=stored_size)
        export_flickr_karpathy(root / "flickr", splits, image_size=stored_size)
        export_csv_pairs(root / "csv", splits, image_size=stored_size)
        export_webdataset(root / "wds", samples, shard_size=max(1, samples // 8), image_size=stored_size)
    common = {"image_size": image_size, "batch_size": batch_size, "num_workers": workers}
    shards = sorted((root / "wds").glob("*.tar"))
    return {
        "ShapesWorldCaptions (generated)": ShapesWorldCaptions(train_samples=samples, **common),
        "CocoCaptions": CocoCaptions(str(root / "coco"), **common),
        "Flickr30k": Flickr30k(str(root / "flickr"), **common),
        "CsvPairs": CsvPairs(str(root / "csv" / "train.csv"), **common),
        "WebDatasetPairs": WebDatasetPairs(
            f"{root / 'wds'}/shard-{{000000..{len(shards) - 1:06d}}}.tar", train_samples_per_epoch=samples, **common
        ),
    }


def images_per_second(datamodule, warmup_batches: int = 2) -> float:
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    images, start = 0, None
    for batch_index, batch in enumerate(loader):
        if batch_index == warmup_batches:  # workers started and first files cached: time from here
            start = time.perf_counter()
        elif start is not None:
            images += batch["image"].shape[0]
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=2048, help="training samples per data set")
    parser.add_argument("--image-size", type=int, default=224, help="size of the training crops")
    parser.add_argument("--stored-size", type=int, default=256, help="size of the images written to disk")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        results: dict[str, dict[int, float]] = {}
        for workers in args.workers:
            modules = data_modules(Path(root), args.samples, args.stored_size, args.image_size, workers, args.batch_size)
            for name, datamodule in modules.items():
                results.setdefault(name, {})[workers] = images_per_second(datamodule)
    print(f"\ntraining loaders, images/s ({args.image_size} px crops from {args.stored_size} px files, batch {args.batch_size})\n")
    print("| data module | " + " | ".join(f"{w} workers" for w in args.workers) + " |")
    print("|---|" + "---:|" * len(args.workers))
    for name, by_workers in results.items():
        print(f"| {name} | " + " | ".join(f"{by_workers[w]:,.0f}" for w in args.workers) + " |")


if __name__ == "__main__":
    main()
