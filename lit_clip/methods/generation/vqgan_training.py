"""VQGAN training (Esser et al., 2021): an autoencoder with a learned codebook, trained to reconstruct its images.

As taming-transformers' ``VQModel`` with ``VQLPIPSWithDiscriminator``: the generator (encoder, quantiser,
decoder) minimises ``|x - x_rec|`` + ``codebook_weight`` x the quantiser's legacy loss (see
:class:`~lit_clip.models.vqgan.VectorQuantizer`); with ``disc_start`` set, from that batch on also a PatchGAN
discriminator's hinge loss, whose generator term ``-mean(D(x_rec))`` is weighted adaptively: the ratio of the
reconstruction loss's gradient norm to the adversarial loss's at the decoder's last layer, times ``disc_weight``.
Both are Adam, with taming's betas (0.5, 0.9) by default. Validation reports the L1 reconstruction loss, the PSNR,
and the fraction of the codebook the validation images use; its first batch is drawn above its reconstructions.

Images come CLIP-normalised from every lit-clip data module; they are mapped back to ``[-1, 1]``, the VQGAN's range.

Deliberate differences from taming:

- No perceptual (LPIPS) term: it needs VGG16 weights and LPIPS' linear heads, downloaded at construction, which
  cannot be had offline. With L1 alone (and without the discriminator) reconstructions are blurrier than taming's.
- The discriminator learns from the reconstruction of the generator's step (detached), where taming's second
  optimizer step decodes the batch again with the updated generator; before ``disc_start`` neither adversarial
  term is computed (taming computes both and multiplies them by 0).
- Manual optimization (Lightning 2 has no per-optimizer ``training_step``): with the discriminator, Lightning's
  ``global_step`` (``max_steps``, checkpoint intervals) counts both optimizers' steps; ``disc_start`` counts batches,
  as taming's step did.
- The learning rate is given as is (taming scales ``base_learning_rate`` by batch size and GPUs).
- Options taming lacks, off by default, for training from scratch in minutes rather than days (what they bought on
  ShapesWorld: configs/vqgan/shapes.yaml): the codebook started from the first batch's latents and codes unused
  for a while restarted on current latents (Jukebox's remedy for codebook collapse), Adam's betas, a cosine
  decay, and training on random crops.
"""
from __future__ import annotations

import warnings
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchvision.utils import make_grid

from lit_clip.distributed import gather_unique
from lit_clip.models.vqgan import VQGAN, VQGAN_CONFIGS
from lit_clip.optim import warmup_cosine_schedule
from lit_clip.transforms import denormalize

# With manual optimization Lightning warns that step-interval checkpoints (LastCheckpoint's) hold the state after
# the step's optimizer updates: that is the state wanted.
warnings.filterwarnings("ignore", message=r".*ModelCheckpoint with manual optimization and every_n_train_steps")


class NLayerDiscriminator(nn.Module):
    """pix2pix's PatchGAN as taming's (``taming/modules/discriminator/model.py``): a logit per overlapping patch.

    Convolutions 4x4, stride 2 but the last two, BatchNorm (so those convolutions have no bias) and LeakyReLU(0.2);
    parameter names ``main.{i}`` as taming's, so checkpoints' ``loss.discriminator.*`` keys match.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            previous, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * previous, ndf * mult, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        for module in self.modules():  # taming's weights_init
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        return self.main(images)


def as_list(items: Any) -> list:
    """Lightning's ``optimizers()`` / ``lr_schedulers()`` (one, a list or None) as a list."""
    return [] if items is None else items if isinstance(items, list) else [items]


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


class VQGANTraining(L.LightningModule):
    def __init__(
        self,
        architecture: str | dict[str, Any] = "shapes-f4",
        learning_rate: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.9),
        lr_schedule: Literal["constant", "cosine"] = "constant",
        codebook_weight: float = 1.0,
        disc_start: int | None = None,
        disc_weight: float = 1.0,
        disc_factor: float = 1.0,
        disc_num_layers: int = 3,
        disc_ndf: int = 64,
        codebook_init: Literal["uniform", "data"] = "uniform",
        dead_code_steps: int | None = None,
        crop_size: int | None = None,
        pictures: int = 8,
    ):
        """
        Args:
            architecture: a name in :data:`~lit_clip.models.vqgan.VQGAN_CONFIGS` or a dict of
                :class:`~lit_clip.models.vqgan.VQGAN`'s arguments (taming's ddconfig with ``embed_dim``, ``n_embed``).
            learning_rate: both Adams' (taming: ``base_learning_rate`` 4.5e-6 x batch size x GPUs; 1e-3 trained the
                ShapesWorld VQGAN from scratch).
            betas: both Adams' (taming's (0.5, 0.9), usual for GANs; without the discriminator (0.9, 0.99) learnt
                ShapesWorld faster).
            lr_schedule: "constant" (taming) or "cosine": decay to 0 over the run's batches
                (``trainer.estimated_stepping_batches``), the discriminator's over those from ``disc_start`` on.
                With the discriminator, give ``max_epochs``: ``max_steps`` counts both optimizers' steps.
            codebook_weight: the weight of the quantiser's loss.
            disc_start: the batch from which the discriminator trains and the generator gets its adversarial
                term; None: no discriminator (an L1 autoencoder with a codebook).
            disc_weight: scales the adaptive weight of the generator's adversarial term.
            disc_factor: scales both adversarial losses once they start.
            disc_num_layers, disc_ndf: the PatchGAN's strided layers (3; taming's f16-16384 used 2) and base width.
            codebook_init: "uniform": taming's U(-1/n_embed, 1/n_embed); "data": the first training batch's latents
                (see :meth:`init_codebook`).
            dead_code_steps: move codes unused for this many batches onto latents of the batch (see
                :meth:`restart_dead_codes`); None: never, as taming.
            crop_size: train on a random square crop of this side of each image (a multiple of the downsampling
                factor; taming trains on 256 px crops too); None: whole images. Validation sees whole images.
            pictures: validation images drawn above their reconstructions in TensorBoard.
        """
        super().__init__()
        self.save_hyperparameters()
        config = VQGAN_CONFIGS[architecture] if isinstance(architecture, str) else architecture
        # channels_last: oneDNN's convolutions ran 2.3x faster on a 2-core CPU (and tensor cores want it).
        self.vqgan = VQGAN(**config).to(memory_format=torch.channels_last)
        if disc_start is not None:
            # Under ``loss`` as taming's VQLPIPSWithDiscriminator, so checkpoint keys are ``loss.discriminator.*``.
            self.loss = nn.Module()
            self.loss.discriminator = NLayerDiscriminator(config.get("out_ch", 3), disc_ndf, disc_num_layers)
        # Batches since each code was last chosen; not saved: checkpoints hold taming's keys only.
        self.register_buffer("idle_batches", torch.zeros(config["n_embed"], dtype=torch.long), persistent=False)
        self.automatic_optimization = False
        self._evaluation: list[tuple[Tensor, ...]] = []
        self._picture: Tensor | None = None

    def images(self, batch: dict) -> Tensor:
        """The batch's CLIP-normalised images in ``[-1, 1]``."""
        return (denormalize(batch["image"]) * 2 - 1).contiguous(memory_format=torch.channels_last)

    def random_latents(self, latents: Tensor, n: int) -> Tensor:
        """``n`` of the latent vectors ``latents`` ``[N, embed_dim]`` at random, the same on every process; with
        replacement where there are fewer than ``n``, then set apart by a little noise."""
        if len(latents) >= n:
            picked = latents[torch.randperm(len(latents), device=latents.device)[:n]]
        else:
            picked = latents[torch.randint(len(latents), (n,), device=latents.device)]
            picked = picked + 0.01 * latents.std() * torch.randn_like(picked)
        return self.trainer.strategy.broadcast(picked)

    def random_crops(self, images: Tensor) -> Tensor:
        """A random ``crop_size`` crop of each image (whole sides where they are not longer)."""
        if self.hparams.crop_size is None:
            return images
        height, width = images.shape[-2:]
        crop_h, crop_w = min(self.hparams.crop_size, height), min(self.hparams.crop_size, width)
        tops = torch.randint(height - crop_h + 1, (len(images),)).tolist()
        lefts = torch.randint(width - crop_w + 1, (len(images),)).tolist()
        crops = [image[:, t : t + crop_h, l : l + crop_w] for image, t, l in zip(images, tops, lefts)]
        return torch.stack(crops).contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def init_codebook(self, images: Tensor) -> None:
        """Every code a latent vector of ``images``: the codes start where the encoder's outputs are."""
        latents = self.vqgan.encode_to_latent(images).permute(0, 2, 3, 1).flatten(0, 2).float()
        self.vqgan.codebook.copy_(self.random_latents(latents, len(self.vqgan.codebook)))

    @torch.no_grad()
    def restart_dead_codes(self, latents: Tensor, indices: Tensor) -> Tensor:
        """Jukebox's restarts: codes that no process's batches chose for ``dead_code_steps`` batches move onto
        random latent vectors of this batch. The number moved."""
        used = torch.bincount(indices.flatten(), minlength=len(self.idle_batches)).float()
        used = self.trainer.strategy.reduce(used, reduce_op="sum") > 0
        self.idle_batches = torch.where(used, 0, self.idle_batches + 1)
        dead = self.idle_batches >= self.hparams.dead_code_steps
        if dead.any():
            flat = latents.permute(0, 2, 3, 1).flatten(0, 2).float()
            self.vqgan.codebook[dead] = self.random_latents(flat, int(dead.sum())).to(self.vqgan.codebook.dtype)
            self.idle_batches[dead] = 0
        return dead.sum()

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        if self.hparams.codebook_init == "data" and self.global_step == 0 and batch_idx == 0 and "image" in batch:
            self.init_codebook(self.random_crops(self.images(batch)))

    def configure_optimizers(self):
        h = self.hparams
        modules = [self.vqgan] + ([self.loss.discriminator] if h.disc_start is not None else [])
        betas = tuple(h.betas)
        optimizers = [torch.optim.Adam(m.parameters(), lr=h.learning_rate, betas=betas) for m in modules]
        if h.lr_schedule == "constant":
            return optimizers
        total = self.trainer.estimated_stepping_batches
        steps = [total] + ([max(1, total - h.disc_start)] if h.disc_start is not None else [])
        return optimizers, [warmup_cosine_schedule(optimizer, 0, n) for optimizer, n in zip(optimizers, steps)]

    # --- training ---------------------------------------------------------------------------------
    def adaptive_weight(self, rec_loss: Tensor, g_loss: Tensor) -> Tensor:
        """taming's ``calculate_adaptive_weight``: balances the two losses' gradients at the decoder's last layer."""
        last_layer = self.vqgan.decoder.conv_out.weight
        rec_grads = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
        g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        return (rec_grads.norm() / (g_grads.norm() + 1e-4)).clamp(0.0, 1e4).detach() * self.hparams.disc_weight

    def training_step(self, batch: dict, batch_idx: int) -> None:
        if "image" not in batch:  # every sample of this batch was bad
            return
        h = self.hparams
        images = self.random_crops(self.images(batch))
        rows = images.shape[0]
        latents = self.vqgan.encode_to_latent(images)
        z_q, codebook_loss, (perplexity, _, indices) = self.vqgan.quantize_latent(latents)
        reconstructions = self.vqgan.decode(z_q)
        rec_loss = (images - reconstructions).abs().mean()
        loss = rec_loss + h.codebook_weight * codebook_loss
        adversarial = h.disc_start is not None and self.trainer.fit_loop.epoch_loop.total_batch_idx >= h.disc_start
        optimizers, schedules = as_list(self.optimizers()), as_list(self.lr_schedulers())
        generator = optimizers[0]
        if adversarial:
            self.toggle_optimizer(generator)  # no gradients into the discriminator from the generator's loss
            g_loss = -self.loss.discriminator(reconstructions).mean()
            d_weight = self.adaptive_weight(rec_loss, g_loss)
            loss = loss + d_weight * h.disc_factor * g_loss
            self.log_dict({"train/g_loss": g_loss, "train/d_weight": d_weight}, batch_size=rows)
        generator.zero_grad()
        self.manual_backward(loss)
        generator.step()
        if schedules:
            schedules[0].step()
        if h.dead_code_steps:
            restarted = self.restart_dead_codes(latents.detach(), indices)
            self.log("train/restarted_codes", restarted.float(), batch_size=rows)
        if adversarial:
            self.untoggle_optimizer(generator)
            discriminator = optimizers[1]
            self.toggle_optimizer(discriminator)
            d_loss = h.disc_factor * hinge_d_loss(
                self.loss.discriminator(images), self.loss.discriminator(reconstructions.detach())
            )
            discriminator.zero_grad()
            self.manual_backward(d_loss)
            discriminator.step()
            if schedules:
                schedules[1].step()
            self.untoggle_optimizer(discriminator)
            self.log("train/disc_loss", d_loss, batch_size=rows)
        self.log("train/loss", loss, prog_bar=True, batch_size=rows)
        self.log("train/lr", generator.param_groups[0]["lr"], batch_size=rows)
        self.log("train/rec_loss", rec_loss, prog_bar=True, batch_size=rows)
        self.log_dict({"train/codebook_loss": codebook_loss, "train/perplexity": perplexity}, batch_size=rows)

    # --- evaluation -------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._evaluation, self._picture = [], None

    @torch.no_grad()
    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        if "image" not in batch:
            return
        images = self.images(batch)
        z_q, _, (_, _, indices) = self.vqgan.encode(images)
        reconstructions = self.vqgan.decode(z_q).float()
        rec_loss = (images - reconstructions).abs().flatten(1).mean(1)
        mse = (images - reconstructions.clamp(-1, 1)).pow(2).flatten(1).mean(1)
        # Each image once under DDP (the sampler repeats some); several loaders' indices kept apart.
        key = batch["index"] + (dataloader_idx << 32)
        self._evaluation.append((key, rec_loss, mse, indices.flatten(1)))
        n = self.hparams.pictures
        if batch_idx == 0 and dataloader_idx == 0 and n:
            self._picture = make_grid(torch.cat([images[:n], reconstructions[:n]]).add(1).div(2).clamp(0, 1), n)

    def on_validation_epoch_end(self) -> None:
        if not self._evaluation:
            return
        _, rec_loss, mse, indices = gather_unique(*(torch.cat(parts) for parts in zip(*self._evaluation)))
        self._evaluation = []
        used = torch.bincount(indices.flatten(), minlength=self.vqgan.quantize.n_embed) > 0
        self.log("val/rec_loss", rec_loss.mean(), prog_bar=True)
        self.log("val/psnr", (10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean())  # peak-to-peak 2 in [-1, 1]
        self.log("val/codebook_usage", used.float().mean())
        logger = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if self._picture is not None and logger is not None and not self.trainer.sanity_checking:
            logger.experiment.add_image("val/reconstructions", self._picture, self.global_step)
        self._picture = None
