"""VQGAN-CLIP (Crowson et al., 2022; the method of Katherine Crowson's 2021 notebooks): a picture generated for a text
prompt by optimising the latent grid of a pretrained VQGAN, decoded through its codebook, so that a frozen CLIP
sees the prompt in it. Nothing is trained: the only parameter is the latent.

As nerdyrodent/VQGAN-CLIP's ``generate.py`` (the maintained command-line version of the notebook):

1. **Latent.** ``z`` of ``[embed_dim, H / f, W / f]``, started from random codebook entries (or from an initial
   picture encoded by the VQGAN); after every step clamped, channel by channel, into the range of the codebook.
2. **Picture.** ``z`` quantised to its nearest codebook entries with a straight-through gradient, decoded, mapped
   from [-1, 1] to [0, 1] and clamped with a gradient that still pulls values back into range (``ClampWithGrad``).
3. **Cutouts.** 32 copies of the picture pooled to the CLIP's input size (the mean of an average and a max pool, the
   default ``latest`` cutouts: all of the picture, so ``cut_pow`` plays no part), each augmented on its own: a
   random affine map (15 degrees, 10 % shift, 5 degrees shear), a perspective warp (0.7), a colour jitter (0.1) and
   an erased rectangle, each with probability 0.7; then Gaussian noise of a per-cutout scale up to 0.1.
4. **Loss.** For each prompt ``"text:weight:stop"``, the squared spherical distance of every cutout's normalised
   embedding to the text's, ``2 arcsin(|a - b| / 2)^2``, times the sign of the weight, averaged over the cutouts and
   scaled by ``|weight|`` (a negative weight pushes the picture away); ``stop`` cuts the gradient of distances below
   it. Optionally ``init_weight / 2`` times the squared distance of ``z`` to its start (Crowson's notebook; the
   nerdyrodent script pulls towards zero instead).
5. **Optimisation.** Adam, lr 0.1, 500 steps, with the ImageNet f16 16384-code VQGAN and CLIP ViT-B/32.

The VQGAN is :class:`~lit_clip.models.vqgan.VQGAN`, taming-transformers' architecture under its parameter names, so
released checkpoints load (:func:`~lit_clip.models.vqgan.load_vqgan`) without taming installed; on ShapesWorld, the
one :class:`~lit_clip.methods.generation.vqgan_training.VQGANTraining` trains.

Deliberate differences from the official code:

- The augmentations are ours in torch (the official uses kornia 0.5.4): the same kinds, ranges and probabilities;
  the colour jitter follows torchvision's definitions (brightness and contrast as factors, hue as a rotation of the
  chroma).
- The random start is seeded (``seed``; the official seeds only after drawing it), and there are ``steps`` steps
  (the official loop makes one more).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.methods.generation.guidance import GuidedGeneration, random_perspective
from lit_clip.models.vqgan import load_vqgan

AUGMENTATIONS = ("affine", "perspective", "jitter", "erasing")


class VQGANCLIP(GuidedGeneration):
    """VQGAN-CLIP: one picture per prompt of the data module (several weighted prompts for one picture separated by
    ``" | "``), started from the data module's pictures when it has them (one per prompt).

    Args:
        pretrained, architecture, quick_gelu: the guiding CLIP (see :class:`GuidedGeneration`).
        vqgan: a VQGAN checkpoint (taming's ``last.ckpt`` or ours); vqgan_config: its taming ``model.yaml``, or a name
            in :data:`~lit_clip.models.vqgan.VQGAN_CONFIGS` (None: ours carry their config).
        image_size: the picture's side, floored to a multiple of the VQGAN's factor f.
        cutouts: augmented cutouts a step (32).
        noise_factor: the largest scale of the cutouts' Gaussian noise (0.1).
        augmentations: of "affine", "perspective", "jitter", "erasing", in order (all four, as the official).
        augmentation_probability: each augmentation's (0.7).
        lr: Adam's learning rate on the latent (0.1).
        init_weight: the pull of the latent towards its start (0: none).
        seed: the random start and the augmentations' draws.
    """

    def __init__(
        self,
        pretrained: str,
        vqgan: str,
        vqgan_config: str | None = None,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        image_size: int = 256,
        cutouts: int = 32,
        noise_factor: float = 0.1,
        augmentations: Sequence[str] = AUGMENTATIONS,
        augmentation_probability: float = 0.7,
        lr: float = 0.1,
        init_weight: float = 0.0,
        seed: int = 0,
    ):
        super().__init__(pretrained, architecture=architecture, quick_gelu=quick_gelu, normalize=True)
        unknown = [name for name in augmentations if name not in AUGMENTATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation {unknown[0]!r}; expected some of {AUGMENTATIONS}")
        self.save_hyperparameters()
        self.vqgan = load_vqgan(vqgan, vqgan_config).eval().requires_grad_(False)
        self.generator = torch.Generator().manual_seed(seed)

    frozen_modules = ("model", "vqgan")

    def train(self, mode: bool = True):
        super().train(mode)
        self.vqgan.eval()
        return self

    # --- the latent ------------------------------------------------------------------------------
    def create_pictures(self, datamodule) -> None:
        texts = list(datamodule.prompts)
        if not texts:
            raise ValueError("VQGAN-CLIP generates from text prompts: the data module has none (set data.prompts)")
        self.prompts = [parse_prompts(text) for text in texts]
        self.captions = texts
        embeddings = self.text_features([text for prompts in self.prompts for text, _, _ in prompts])
        self.register_buffer("prompt_features", embeddings, persistent=False)
        f, codebook = self.vqgan.downsampling_factor, self.vqgan.codebook
        side = self.hparams.image_size // f
        starts = datamodule.target_images()
        if len(starts):
            if len(starts) != len(texts):
                raise ValueError(f"{len(starts)} initial pictures for {len(texts)} prompts; give one per prompt")
            pictures = F.interpolate(starts, size=(side * f,) * 2, mode="bicubic", align_corners=False)
            with torch.no_grad():
                z = self.vqgan.quantize_latent(self.vqgan.encode_to_latent(pictures.clamp(0, 1) * 2 - 1))[0]
        else:
            codes = torch.randint(len(codebook), (len(texts), side, side), generator=self.generator)
            z = codebook.detach().cpu()[codes].permute(0, 3, 1, 2)
        self.z = nn.Parameter(z.clone().to(self.device))
        self.register_buffer("z_start", z.clone().to(self.device))
        self.register_buffer("z_min", codebook.min(dim=0).values.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("z_max", codebook.max(dim=0).values.view(1, -1, 1, 1), persistent=False)

    def pictures(self) -> Tensor:
        """The decoded pictures, ``[N, 3, H, W]`` in [0, 1]."""
        quantised = self.vqgan.quantize_latent(self.z)[0]
        return ClampWithGrad.apply(self.vqgan.decode(quantised).add(1).div(2), 0.0, 1.0)

    # --- the loss --------------------------------------------------------------------------------
    def make_cutouts(self, picture: Tensor) -> Tensor:
        """``cutouts`` pooled, augmented and noised copies of one picture ``[1, 3, H, W]``."""
        hp, size = self.hparams, self.clip_size
        pooled = (F.adaptive_avg_pool2d(picture, size) + F.adaptive_max_pool2d(picture, size)) / 2
        batch = pooled.expand(hp.cutouts, -1, -1, -1)
        batch = torch.cat([self.augment(cutout[None]) for cutout in batch])
        scales = torch.rand(hp.cutouts, 1, 1, 1, generator=self.generator).to(batch) * hp.noise_factor
        return batch + scales * torch.randn(batch.shape, generator=self.generator).to(batch)

    def augment(self, cutout: Tensor) -> Tensor:
        hp = self.hparams

        def uniform(low: float, high: float) -> float:
            return float(torch.empty(1).uniform_(low, high, generator=self.generator))

        for name in hp.augmentations:
            if uniform(0, 1) >= hp.augmentation_probability:
                continue
            if name == "affine":
                cutout = random_affine(cutout, uniform(-15, 15), (uniform(-0.1, 0.1), uniform(-0.1, 0.1)),
                                       (uniform(-5, 5), uniform(-5, 5)))  # fmt: skip
            elif name == "perspective":
                cutout = random_perspective(cutout, 0.7, fill=0.0, generator=self.generator)
            elif name == "jitter":
                cutout = colour_jitter(cutout, *(uniform(-0.1, 0.1) for _ in range(4)))
            else:
                cutout = erase_rectangle(cutout, uniform(0.1, 0.4), math.exp(uniform(math.log(0.3), math.log(1 / 0.3))),
                                         uniform(0, 1), uniform(0, 1))  # fmt: skip
        return cutout

    def picture_losses(self, pictures: Tensor) -> Tensor:
        """Each picture's loss, ``[N]``: its prompts' weighted spherical distances, plus the pull towards the start."""
        losses, first = [], 0
        for picture, prompts in zip(pictures, self.prompts):
            embeddings = self.encode_pictures(self.make_cutouts(picture[None]))  # [cutouts, dim]
            loss = picture.new_zeros(())
            for k, (_, weight, stop) in enumerate(prompts):
                distances = spherical_distance(embeddings, self.prompt_features[first + k]) * math.copysign(1, weight)
                stopped = ReplaceGrad.apply(distances, torch.clamp_min(distances, stop))
                loss = loss + abs(weight) * stopped.mean()
            first += len(prompts)
            losses.append(loss)
        losses = torch.stack(losses)
        if self.hparams.init_weight:
            pull = ((self.z - self.z_start) ** 2).flatten(1).mean(dim=1)
            losses = losses + self.hparams.init_weight / 2 * pull
        return losses

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        losses = self.picture_losses(self.pictures())
        self.log("train/loss", losses.mean(), prog_bar=True)
        return losses.sum()

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        with torch.no_grad():
            self.z.copy_(torch.maximum(torch.minimum(self.z, self.z_max), self.z_min))

    def configure_optimizers(self):
        return torch.optim.Adam([self.z], lr=self.hparams.lr)


# --- the formulas ---------------------------------------------------------------------------------------------------
def parse_prompts(text: str) -> list[tuple[str, float, float]]:
    """``"a red circle:1 | a blue square:-0.5"`` into ``[(text, weight, stop), ...]``; weight 1 and stop -inf when not
    given. Only trailing numbers count as weight and stop, so a text may hold colons."""
    prompts = []
    for part in text.split(" | "):
        fields, numbers = part.rsplit(":", 2), []
        while len(fields) > 1 and len(numbers) < 2 and _is_number(fields[-1]):
            numbers.insert(0, float(fields.pop()))
        text = ":".join(fields).strip()
        if not text:
            raise ValueError(f"prompt {part!r} has no text; expected 'text', 'text:weight' or 'text:weight:stop'")
        weight, stop = (numbers + [1.0, float("-inf")][len(numbers):])[:2]
        prompts.append((text, weight, stop))
    return prompts


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def spherical_distance(a: Tensor, b: Tensor) -> Tensor:
    """``2 arcsin(|a - b| / 2)^2`` of unit vectors (half the squared angle between them), over the last axis."""
    return (a - b).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


class ReplaceGrad(torch.autograd.Function):
    """``forward``'s value, ``backward``'s gradient: the value of ``x_forward`` with the gradient of ``x_backward``."""

    @staticmethod
    def forward(ctx, x_forward: Tensor, x_backward: Tensor) -> Tensor:
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, grad.sum_to_size(ctx.shape)


class ClampWithGrad(torch.autograd.Function):
    """A clamp whose gradient still passes where it would move a clamped value back into range."""

    @staticmethod
    def forward(ctx, x: Tensor, low: float, high: float) -> Tensor:
        ctx.low, ctx.high = low, high
        ctx.save_for_backward(x)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        return grad * (grad * (x - x.clamp(ctx.low, ctx.high)) >= 0), None, None


def random_affine(images: Tensor, degrees: float, translate: tuple[float, float], shear: tuple[float, float]) -> Tensor:
    """Rotate, shift (fractions of the side) and shear (degrees) about the centre; zeros come in from outside."""
    angle, shear_x, shear_y = (math.radians(v) for v in (degrees, *shear))
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shearing = torch.tensor([[1.0, math.tan(shear_x)], [math.tan(shear_y), 1.0]])
    inverse = torch.linalg.inv(rotation @ shearing)  # affine_grid maps output to input coordinates
    shift = -inverse @ torch.tensor([2 * translate[0], 2 * translate[1]])
    theta = torch.cat([inverse, shift[:, None]], dim=1)[None].to(images)
    grid = F.affine_grid(theta.expand(len(images), -1, -1), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def colour_jitter(images: Tensor, brightness: float, contrast: float, saturation: float, hue: float) -> Tensor:
    """torchvision's jitter with given offsets: brightness, contrast, saturation factors ``1 + offset``; hue rotated by
    ``offset`` of a turn (a rotation of the chroma in YIQ)."""
    images = images * (1 + brightness)
    grey = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])[:, None]
    images = grey.mean(dim=(2, 3), keepdim=True) + (images - grey.mean(dim=(2, 3), keepdim=True)) * (1 + contrast)
    grey = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2])[:, None]
    images = grey + (images - grey) * (1 + saturation)
    to_yiq = images.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    turn = 2 * math.pi * hue
    rotate = images.new_tensor([[1, 0, 0], [0, math.cos(turn), -math.sin(turn)], [0, math.sin(turn), math.cos(turn)]])
    matrix = torch.linalg.inv(to_yiq) @ rotate @ to_yiq
    return torch.einsum("ij,bjhw->bihw", matrix, images)


def erase_rectangle(images: Tensor, area: float, aspect: float, centre_x: float, centre_y: float) -> Tensor:
    """Zero a rectangle of ``area`` of the picture and ``aspect`` (width / height), placed by its relative centre."""
    height, width = images.shape[-2:]
    rect_h = min(height, max(1, round(math.sqrt(area * height * width / aspect))))
    rect_w = min(width, max(1, round(math.sqrt(area * height * width * aspect))))
    top, left = round(centre_y * (height - rect_h)), round(centre_x * (width - rect_w))
    keep = torch.ones_like(images[:1, :1])
    keep[..., top : top + rect_h, left : left + rect_w] = 0
    return images * keep
