"""CLIPasso (Vinker et al., 2022): a photo abstracted into a sketch of a few black strokes, by optimising the
strokes so that a frozen CLIP's intermediate features (the geometry) and its embedding (the meaning) of the sketch
match those of the photo. The number of strokes sets the abstraction: 4, 8, 16 or 32.

As the official code (yael-vinker/CLIPasso: ``painterly_rendering.py``, ``models/painter_params.py``,
``models/loss.py``, ``run_object_sketching.py``):

1. **Where strokes start.** A saliency map of the photo times its edges, as a distribution: the map is the mean
   attention of a ViT CLIP's class token to the patches over all heads and layers (``interpret``: despite its name it
   uses no gradients and no text), upsampled bicubically and min-max scaled; for a ResNet CLIP a gradient saliency.
   The edges are the official XDoG on the CLIP-normalised photo (grey ``0.2125 R + 0.7154 G + 0.0721 B``,
   Gaussians of sigma 0.8 and 8, ``D = g1 - 0.98 g2``, ``1`` where ``D < -0.1`` else ``1 + tanh(200 D)``,
   min-max, Otsu's threshold; the map is multiplied by *one minus* that binary image).
   Starts are drawn without replacement from a softmax over the positive pixels at temperature 0.3.
2. **Strokes.** Each one cubic Bezier curve: its start, then three control points each a random step of up to
   +-0.025 of the side; black, opaque, diffvg width 1.5 (a 3 px line); only the points are optimised.
3. **Loss** on the sketch and the photo, un-augmented plus four joint augmentations (one draw of
   ``RandomPerspective(fill=0, p=1, distortion_scale=0.5)`` and ``RandomResizedCrop(224, scale=(0.8, 0.8),
   ratio=(1, 1))`` for both), through a ResNet CLIP (RN101) on normalised pixels: the geometric loss, the mean squared
   difference of the feature maps of layer2 and layer3 (``clip_conv_layer_weights = 0,0,1,1,0`` over the stem and
   the four stages), plus 0.1 times the semantic loss ``1 - cos`` of the embeddings.
4. **Optimisation.** Adam, lr 1.0, on the points, 2000 steps. Every 10 steps the loss of the un-augmented pair is
   measured and the best strokes so far kept; each of three seeds (0, 1000, 2000) draws its own sketch and the one
   whose best loss is lowest is the result (``run_object_sketching.py``).

Here the seeds run as one batch: every target picture gets ``len(seeds)`` drawings, optimised together (their
losses summed, which leaves each one's gradient its own), and the pictures are the best of each target's seeds.

Deliberate differences from the official code:

- The rasteriser (see :mod:`~lit_clip.methods.generation.rasterizer`) replaces diffvg.
- Random numbers come from torch generators seeded with each seed, not numpy's and Python's global ones.
- The best strokes are those measured, before the step that follows (the official saves the strokes after it).
- A ResNet's saliency is the input gradient of the image-text cosine (the official's non-default alternative is a
  Grad-CAM of layer4, which on a small tower is a 2 x 2 map and, after its ReLU, was empty for half the ShapesWorld
  pictures).
- No U2-Net object mask (``mask_object``, off by default in the official code; its weights are a download).
- The CLIP input is its own size: the augmentations crop to it and the un-augmented pair is resized to it (224 for
  RN101; 64 for the ShapesWorld CLIP).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu
from torch import Tensor, nn

from lit_clip.checkpoints import load_clip
from lit_clip.methods.generation.guidance import GuidedGeneration, random_perspective, random_resized_crop
from lit_clip.methods.generation.rasterizer import rasterize, to_svg
from lit_clip.models.resnet import ModifiedResNet
from lit_clip.models.transformer import VisionTransformer
from lit_clip.tokenizer import tokenize
from lit_clip.transforms import CLIP_MEAN, CLIP_STD


class CLIPasso(GuidedGeneration):
    """CLIPasso: each target picture of the data module sketched in ``num_strokes`` black strokes.

    Args:
        pretrained: the CLIP of the loss, a ResNet (RN101 in the paper); architecture, quick_gelu: as there.
        saliency_clip: the CLIP whose saliency places the strokes (ViT-B/32 in the paper); None: ``pretrained``.
        saliency_architecture: its architecture, when its checkpoint does not tell.
        num_strokes: strokes per sketch (16; the abstraction levels 4, 8, 16, 32).
        half_width: diffvg's stroke width, a half-width (1.5: a 3 px line).
        step_radius: each control point is a step of up to +- step_radius / 2 of the side from the last (0.05).
        softmax_temperature: of the start-point distribution (0.3).
        use_edges: multiply the saliency by the XDoG edges (the official ``xdog_intersec``).
        saliency_text: the text a ResNet's gradient saliency explains (the official's default target is "none").
        num_augmentations: joint augmentations a step besides the un-augmented pair (4).
        distortion_scale, crop_scale: RandomPerspective's (0.5) and RandomResizedCrop's (0.8, with ratio 1).
        conv_layer_weights: geometric loss weights over the stem and layer1-layer4 (0, 0, 1, 1, 0).
        fc_weight: the semantic loss's weight (0.1).
        lr: Adam's learning rate on the points (1.0).
        evaluate_every: steps between measurements of the un-augmented loss, which pick the best strokes (10).
        seeds: one sketch per seed and target; the best is kept (0, 1000, 2000).
    """

    frozen_modules = ("model", "saliency_clip")

    def __init__(
        self,
        pretrained: str,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        saliency_clip: str | None = None,
        saliency_architecture: str | None = None,
        num_strokes: int = 16,
        half_width: float = 1.5,
        step_radius: float = 0.05,
        softmax_temperature: float = 0.3,
        use_edges: bool = True,
        saliency_text: str = "none",
        num_augmentations: int = 4,
        distortion_scale: float = 0.5,
        crop_scale: float = 0.8,
        conv_layer_weights: Sequence[float] = (0.0, 0.0, 1.0, 1.0, 0.0),
        fc_weight: float = 0.1,
        lr: float = 1.0,
        evaluate_every: int = 10,
        seeds: Sequence[int] = (0, 1000, 2000),
    ):
        super().__init__(pretrained, architecture=architecture, quick_gelu=quick_gelu, normalize=True)
        if not isinstance(self.model.visual, ModifiedResNet) and any(conv_layer_weights):
            raise ValueError(
                f"CLIPasso's geometric loss reads a ResNet CLIP's stages; {pretrained} has a "
                f"{type(self.model.visual).__name__} image tower (use an RN CLIP, or conv_layer_weights of zeros)"
            )
        if len(conv_layer_weights) != 5:
            raise ValueError(f"conv_layer_weights: the stem's and the 4 stages' weights, not {conv_layer_weights}")
        if num_strokes < 1 or not seeds:
            raise ValueError(f"need at least one stroke and one seed, got {num_strokes} strokes and seeds {seeds}")
        self.save_hyperparameters()
        self.saliency_clip = self.model if saliency_clip is None else load_clip(saliency_clip, saliency_architecture)
        self.saliency_clip.requires_grad_(False)

    # --- where the strokes start -----------------------------------------------------------------
    def saliency(self, photos: Tensor) -> Tensor:
        """``[N, H, W]`` in [0, 1]: class-token attention (ViT) or input-gradient saliency (ResNet) of the saliency
        CLIP."""
        normalised = (photos - self.clip_mean) / self.clip_std
        visual = self.saliency_clip.visual
        small = F.interpolate(normalised, size=(visual.image_size,) * 2, mode="bicubic", align_corners=False)
        if isinstance(visual, VisionTransformer):
            maps = class_token_attention(visual, small)
        elif isinstance(visual, ModifiedResNet):
            tokens = tokenize([self.hparams.saliency_text], self.saliency_clip.context_length).to(self.device)
            text = F.normalize(self.saliency_clip.encode_text(tokens).float(), dim=-1)
            maps = gradient_saliency(self.saliency_clip, small, text[0])
        else:
            raise ValueError(f"no saliency for a {type(visual).__name__} image tower; use a ViT or ResNet CLIP")
        maps = F.interpolate(maps[:, None], size=photos.shape[-2:], mode="bicubic", align_corners=False)[:, 0]
        return min_max(maps)

    def stroke_starts(self, photos: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
        """``[N, seeds, strokes, 2]`` start points in pixels (x, y), drawn from saliency x edges."""
        hp = self.hparams
        with torch.no_grad():  # (the gradient saliency turns gradients on for itself)
            weights = self.saliency(photos).float().cpu()
        if hp.use_edges:
            weights = weights * (1 - torch.stack([xdog(photo) for photo in photos]))
        starts = []
        for weight in weights:
            flat = weight.flatten()
            positive = flat > 0
            if int(positive.sum()) < hp.num_strokes:
                raise ValueError(
                    f"the saliency x edge map has {int(positive.sum())} positive pixels, fewer than {hp.num_strokes} "
                    "strokes; use fewer strokes or use_edges: false"
                )
            probabilities = torch.zeros_like(flat)
            probabilities[positive] = torch.softmax(flat[positive] / hp.softmax_temperature, dim=0)
            seeded = []
            for generator in generators:
                index = torch.multinomial(probabilities, hp.num_strokes, replacement=False, generator=generator)
                rows, cols = index // weight.shape[1], index % weight.shape[1]
                seeded.append(torch.stack([cols, rows], dim=-1).float())
            starts.append(torch.stack(seeded))
        return torch.stack(starts)

    def create_pictures(self, datamodule) -> None:
        photos = datamodule.target_images()
        if len(photos) == 0:
            raise ValueError("CLIPasso sketches pictures: the data module has none (data.images, shapesworld_scenes)")
        hp = self.hparams
        self.register_buffer("photos", photos.to(self.device), persistent=False)
        generators = [torch.Generator().manual_seed(seed) for seed in hp.seeds]
        starts = self.stroke_starts(self.photos, generators)  # [N, seeds, strokes, 2]
        size = photos.shape[-1]
        walks = [
            (torch.rand(len(photos), hp.num_strokes, 3, 2, generator=generator) - 0.5) * hp.step_radius * size
            for generator in generators
        ]
        walk = torch.stack(walks, dim=1).cumsum(dim=3)  # [N, seeds, strokes, 3, 2]
        points = torch.cat([starts[..., None, :], starts[..., None, :] + walk], dim=3)
        self.points = nn.Parameter(points.flatten(0, 1).to(self.device))  # drawings: [N * seeds, strokes, 4, 2]
        self.register_buffer("best_points", self.points.detach().clone())
        self.register_buffer("best_loss", torch.full((len(self.points),), float("inf"), device=self.device))
        self.augmentation_generator = torch.Generator().manual_seed(hp.seeds[0])
        self.captions = list(datamodule.target_names)

    # --- drawing ---------------------------------------------------------------------------------
    def render(self, points: Tensor) -> Tensor:
        drawings, strokes = points.shape[:2]
        widths = torch.full((drawings, strokes), 2 * self.hparams.half_width, device=points.device)
        black = torch.zeros(drawings, strokes, 4, device=points.device)
        black[..., 3] = 1
        size = self.photos.shape[-1]
        return rasterize(points, widths, black, size, size)

    def best_of_seeds(self) -> Tensor:
        """The best strokes of each target: ``[N, strokes, 4, 2]``, the seed whose best loss is lowest."""
        seeds = len(self.hparams.seeds)
        best_seed = self.best_loss.view(-1, seeds).argmin(dim=1)
        points = self.best_points.view(-1, seeds, *self.best_points.shape[1:])
        return points[torch.arange(len(points)), best_seed]

    def pictures(self) -> Tensor:
        return self.render(self.best_of_seeds())

    def save_vector_pictures(self, directory: Path, stems: Sequence[str]) -> None:
        points = self.best_of_seeds()
        widths = torch.full(points.shape[:2], 2 * self.hparams.half_width)
        black = torch.zeros(*points.shape[:2], 4)
        black[..., 3] = 1
        size = self.photos.shape[-1]
        for stem, document in zip(stems, to_svg(points.cpu(), widths, black, size, size)):
            (directory / f"{stem}.svg").write_text(document)

    # --- the loss --------------------------------------------------------------------------------
    def pair_losses(self, sketches: Tensor, photos: Tensor, augment: bool = True) -> Tensor:
        """Each pair's loss, ``[N]``: the weighted mean squared feature differences plus fc_weight x (1 - cos),
        over the pair seen as it is and, with ``augment``, through ``num_augmentations`` joint augmentations."""
        hp = self.hparams
        losses = []
        for sketch, photo in zip(sketches, photos):
            pair = torch.stack([sketch, photo])
            views = [F.interpolate(pair, size=(self.clip_size,) * 2, mode="bilinear", antialias=True)]
            if augment:
                for _ in range(hp.num_augmentations):
                    generator = self.augmentation_generator
                    warped = random_perspective(pair, hp.distortion_scale, fill=0.0, generator=generator)
                    crop_scale = (hp.crop_scale, hp.crop_scale)
                    views.append(random_resized_crop(warped, self.clip_size, crop_scale, (1.0, 1.0), generator))
            views = (torch.stack(views) - self.clip_mean[None]) / self.clip_std[None]  # [views, 2, 3, S, S]
            sketch_views, photo_views = views[:, 0], views[:, 1]
            sketch_fc, sketch_maps = self.model.visual.forward_intermediates(sketch_views)
            with torch.no_grad():
                photo_fc, photo_maps = self.model.visual.forward_intermediates(photo_views)
            loss = sum(
                weight * F.mse_loss(a.float(), b.float())
                for weight, a, b in zip(hp.conv_layer_weights, sketch_maps, photo_maps)
                if weight
            )
            semantic = 1 - F.cosine_similarity(sketch_fc.float(), photo_fc.float(), dim=1)
            losses.append(loss + hp.fc_weight * semantic.mean())
        return torch.stack(losses)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        seeds = len(self.hparams.seeds)
        photos = self.photos.repeat_interleave(seeds, dim=0)
        if self.global_step % self.hparams.evaluate_every == 0:
            self.log("train/eval_loss", self.keep_best(photos).mean())
            self.log("train/best_loss", self.best_loss.view(-1, len(self.hparams.seeds)).min(dim=1).values.mean())
        losses = self.pair_losses(self.render(self.points), photos)
        self.log("train/loss", losses.mean(), prog_bar=True)
        return losses.sum()

    @torch.no_grad()
    def keep_best(self, photos: Tensor) -> Tensor:
        """Measure the un-augmented loss of every drawing, keep the strokes that improved on their best; the losses."""
        losses = self.pair_losses(self.render(self.points), photos, augment=False)
        better = losses < self.best_loss
        self.best_loss[better] = losses[better]
        self.best_points[better] = self.points[better].detach()
        return losses

    def on_train_end(self) -> None:
        self.keep_best(self.photos.repeat_interleave(len(self.hparams.seeds), dim=0))
        super().on_train_end()

    def configure_optimizers(self):
        return torch.optim.Adam([self.points], lr=self.hparams.lr)


# --- saliency and edges -------------------------------------------------------------------------------------------
def min_max(maps: Tensor) -> Tensor:
    """Each map scaled to [0, 1]."""
    low = maps.flatten(1).min(dim=1).values.view(-1, 1, 1)
    high = maps.flatten(1).max(dim=1).values.view(-1, 1, 1)
    return (maps - low) / (high - low).clamp_min(1e-12)


def class_token_attention(visual: VisionTransformer, images: Tensor) -> Tensor:
    """CLIPasso's relevancy: the class token's attention to each patch, mean over heads and layers, ``[B, g, g]``."""
    x = visual.ln_pre(visual.embed(images))
    grid = images.shape[-1] // visual.patch_size
    maps = []
    for block in visual.transformer.resblocks:
        attention = block.attn
        batch, tokens, width = x.shape
        qkv = F.linear(block.ln_1(x), attention.in_proj_weight, attention.in_proj_bias)
        q, k, _ = qkv.view(batch, tokens, 3, attention.heads, width // attention.heads).permute(2, 0, 3, 1, 4)
        probabilities = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        maps.append(probabilities[:, :, 0, 1 : 1 + grid * grid].mean(dim=1))
        x = block(x)
    return torch.stack(maps).mean(dim=0).view(-1, grid, grid)


def gradient_saliency(clip, images: Tensor, text: Tensor) -> Tensor:
    """How much each pixel moves the cosine of a ResNet CLIP's image embedding with ``text``: the absolute input
    gradient, averaged over the colour channels, ``[B, H, W]`` (Simonyan et al.'s saliency)."""
    with torch.enable_grad():
        pixels = images.detach().requires_grad_(True)
        embedding = F.normalize(clip.encode_image(pixels).float(), dim=-1)
        (gradient,) = torch.autograd.grad((embedding @ text).sum(), pixels)
    return gradient.abs().mean(dim=1)


def xdog(photo: Tensor) -> Tensor:
    """CLIPasso's XDoG edges of a photo ``[3, H, W]`` in [0, 1]: the binary ``[H, W]`` image (1: white) computed, as
    the official ``XDoG_``, on the CLIP-normalised photo with gamma 0.98, phi 200, eps -0.1, sigma 0.8, k 10."""
    normalised = (photo.cpu().double() - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    grey = rgb2gray(normalised.permute(1, 2, 0).numpy())
    difference = gaussian_filter(grey, 0.8) - 0.98 * gaussian_filter(grey, 0.8 * 10)
    edges = np.where(difference < -0.1, 1.0, 1.0 + np.tanh(200 * difference))
    edges = edges - edges.min()
    edges = edges / max(edges.max(), 1e-12)
    return torch.from_numpy((edges >= threshold_otsu(edges)).astype(np.float32))
