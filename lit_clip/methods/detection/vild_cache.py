"""Build ViLD-image's region cache: proposals of every training image and the CLIP embeddings of their crops.

    python -m lit_clip.methods.detection.vild_cache --config configs/vild/shapes.yaml \\
        --proposals runs/vild-shapes/version_0/checkpoints/last.ckpt

As the paper: the proposals come from a detector trained on the base categories (any ViLD checkpoint: its RPN is
class-agnostic and has seen base boxes only; ViLD-text's is the natural first run); the ``--regions`` best of each
image (300 in the paper) are cropped from the image at 1x and 1.5x their size (1.5x grows each side by a quarter
of the box, black outside the image, as DetPro), each crop through the CLIP's evaluation preprocessing (short
side resized to the tower's size, centre crop) and image tower, the two embeddings summed and normalised.

The config's data module names the cache folder (``region_cache``) and the training images; its model the CLIP
(``pretrained``). A build that is interrupted resumes where it stopped; one for another CLIP or other proposals
starts over (see :mod:`lit_clip.region_cache`). Progress and crops/s are shown as it goes.
"""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from lit_clip.cli import LitClipCLI
from lit_clip.methods.detection.vild import ViLD
from lit_clip.models.clip import CLIP
from lit_clip.region_cache import RegionCache, module_fingerprint
from lit_clip.transforms import clip_eval_transform, to_normalized_tensor

log = logging.getLogger(__name__)

ENLARGED = 1.5  # the second crop's size relative to the box


def enlarge(boxes: Tensor, factor: float) -> Tensor:
    """Boxes (x1, y1, x2, y2) scaled by ``factor`` about their centres."""
    centres, half_sizes = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return torch.cat([centres - half_sizes, centres + half_sizes], dim=1)


@torch.no_grad()
def crop_embeddings(clip: CLIP, image: Image.Image, boxes: Tensor, batch_size: int = 256) -> Tensor:
    """``[K, D]``: per box, the normalised sum of the CLIP embeddings of its 1x and 1.5x crops."""
    preprocess = clip_eval_transform(clip.config.vision.image_size)
    device = next(clip.parameters()).device
    crops = [preprocess(image.crop(tuple(box))) for scale in (1.0, ENLARGED) for box in enlarge(boxes, scale).tolist()]
    embeddings = [clip.encode_image(torch.stack(crops[i : i + batch_size]).to(device)).float()
                  for i in range(0, len(crops), batch_size)]  # fmt: skip
    if not embeddings:
        return torch.zeros(0, clip.text_projection.shape[1])
    one, enlarged = torch.cat(embeddings).chunk(2)
    return F.normalize(one + enlarged, dim=-1).cpu()


@torch.no_grad()
def best_proposals(detector: ViLD, image: Image.Image, count: int) -> Tensor:
    """The ``count`` best proposals of the detector's RPN on ``image`` (x1, y1, x2, y2 in its pixels)."""
    pixels = to_normalized_tensor(image).to(detector.device)
    batch = {"image": pixels[None], "image_size": torch.tensor([[image.height, image.width]])}
    image_list, _, proposals, _, _ = detector.features_and_proposals(batch)
    height, width = image_list.image_sizes[0]
    # Proposals come sorted by objectness after NMS, at the detector's resolution.
    scale = torch.tensor([image.width / width, image.height / height] * 2, device=proposals[0].device)
    boxes = proposals[0][:count] * scale
    return boxes[(boxes[:, 2:] - boxes[:, :2] >= 1).all(dim=1)].cpu()


def build(config_args: Sequence[str], proposals: str, regions: int, flush_every: int = 64) -> RegionCache:
    """Fill the config's region cache from the ``proposals`` checkpoint's RPN and the config's CLIP."""
    cli = LitClipCLI(args=list(config_args), run=False)
    method, data = cli.model, cli.datamodule
    if not isinstance(method, ViLD):
        raise TypeError(f"the config's model is {type(method).__name__}; the region cache is ViLD's")
    folder = data.hparams.get("region_cache")
    if not folder:
        raise ValueError("the config's data module names no region_cache folder: set data.init_args.region_cache")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    detector = ViLD.load_from_checkpoint(proposals, map_location=device).eval()
    clip = method.model.to(device).eval()
    dataset = data.train_dataset(with_cache=False)
    keys = [dataset.key(i) for i in range(len(dataset))]
    proposer = f"{module_fingerprint(detector.backbone)}-{module_fingerprint(detector.rpn)}"
    cache = RegionCache.create(folder, keys, regions, clip.text_projection.shape[1], module_fingerprint(clip), proposer)
    todo = [row for row, done in enumerate(cache.done) if not done]
    crops, start = 0, time.perf_counter()
    with tqdm(todo, desc=f"region cache {folder}", unit="image") as progress:
        for n, row in enumerate(progress, 1):
            image = dataset.image(row)
            boxes = best_proposals(detector, image, regions)
            cache.write(row, boxes, crop_embeddings(clip, image, boxes))
            crops += 2 * len(boxes)
            progress.set_postfix(crops_per_s=f"{crops / (time.perf_counter() - start):.0f}")
            if n % flush_every == 0:
                cache.flush()
    cache.flush()
    log.info("region cache %s: %d images, %d crops in %.0f s", folder, len(todo), crops, time.perf_counter() - start)
    return cache


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, help="the ViLD config(s), as for lit-clip fit")
    parser.add_argument("--proposals", required=True, help="a ViLD checkpoint whose RPN proposes the regions")
    parser.add_argument("--regions", type=int, default=300, help="proposals per image (the paper's M: 300)")
    known, overrides = parser.parse_known_args(args)
    config_args = [arg for path in known.config for arg in ("--config", path)] + overrides
    logging.basicConfig(level=logging.INFO)
    build(config_args, known.proposals, known.regions)


if __name__ == "__main__":
    main()
