"""VQGAN (Esser et al., 2021): a convolutional autoencoder whose latent is quantised to a learned codebook.

The architecture and every parameter name are taming-transformers' ``VQModel`` (``taming/models/vqgan.py`` and
``taming/modules/diffusionmodules/model.py``), so its released checkpoints (ImageNet f16-16384, f16-1024) load
strictly: ``encoder`` (ResNet blocks, single-head spatial attention at ``attn_resolutions``, strided convolutions
padded only right and bottom), ``quant_conv`` into the codebook's width, ``quantize`` (nearest code,
straight-through gradient), ``post_quant_conv`` and ``decoder`` (one ResNet block more per level, nearest
upsampling). Images are in ``[-1, 1]``; the downsampling factor is ``2 ** (len(ch_mult) - 1)``.

Deliberate differences from taming:

- Only the network: the loss (LPIPS, discriminator) is training-only and built by
  ``lit_clip.methods.generation.vqgan_training``; :func:`load_vqgan` skips a checkpoint's ``loss.*`` keys.
- The quantiser is taming's ``VectorQuantizer2`` with ``legacy=True`` (what ``VQModel`` uses) but returns the
  perplexity of the batch's codes and indices of shape ``[B, h, w]`` (taming's ``sane_index_shape``); it does not
  build the one-hot encodings (``None``, as ``VectorQuantizer2``): ``[B*h*w, n_embed]`` is large for 16384 codes.
- The nearest code is chosen in fp32 also under autocast: bf16 distances tie between close codes.
- Attention is ``F.scaled_dot_product_attention``: taming's softmax(q^T k / sqrt(c)) v, without the
  ``[hw, hw]`` matrix in memory where a fused kernel exists.
- ``decode_indices`` replaces ``VQModel.decode_code``, which calls a method the quantiser does not have.
"""
from __future__ import annotations

import pickle
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

# taming's ddconfig of each named model, with the codebook's size and width: VQGAN's keyword arguments.
VQGAN_CONFIGS: dict[str, dict[str, Any]] = {
    "imagenet-f16-16384": dict(
        embed_dim=256, n_embed=16384, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16],
        resolution=256, z_channels=256, in_channels=3, out_ch=3, dropout=0.0,
    ),
    "imagenet-f16-1024": dict(
        embed_dim=256, n_embed=1024, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16],
        resolution=256, z_channels=256, in_channels=3, out_ch=3, dropout=0.0,
    ),
    # CPU-sized for ShapesWorld at 64 px (configs/vqgan/shapes.yaml): 16 x 16 codes an image, as the f16 models'
    # at 256 px; attention at 16 px.
    "shapes-f4": dict(
        embed_dim=32, n_embed=512, ch=32, ch_mult=[1, 1, 2], num_res_blocks=1, attn_resolutions=[16],
        resolution=64, z_channels=32, in_channels=3, out_ch=3, dropout=0.0,
    ),
}  # fmt: skip


def normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions after GroupNorm and swish; a 1x1 ``nin_shortcut`` where the width changes."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.norm1 = normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1 convolutions as projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, height, width = x.shape
        h = self.norm(x)
        q, k, v = (proj(h).flatten(2).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(b, c, height, width)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # taming pads right and bottom only


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution: its ResNet blocks, an attention block after each where the resolution has attention, and
    (set by the tower) its ``downsample`` / ``upsample``."""

    def __init__(self, widths: Sequence[int], attention: bool, dropout: float):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(i, o, dropout) for i, o in pairwise(widths))
        self.attn = nn.ModuleList(AttnBlock(w) for w in widths[1:]) if attention else nn.ModuleList()

    def forward(self, x: Tensor) -> Tensor:
        for k, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[k](x)
        return x


class Middle(nn.Module):
    """Block, attention, block at the lowest resolution: in both towers whatever ``attn_resolutions`` says."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(
        self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
        resolution: int, z_channels: int, in_channels: int, dropout: float,
    ):  # fmt: skip
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        width, res = ch, resolution
        for i, mult in enumerate(ch_mult):
            level = Level([width] + [ch * mult] * num_res_blocks, res in attn_resolutions, dropout)
            width = ch * mult
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(width)
                res //= 2
            self.down.append(level)
        self.mid = Middle(width, dropout)
        self.norm_out = normalize(width)
        # double_z=False: taming's VQ models (all of its released ones) output z_channels, not a Gaussian's
        # mean and log-variance (2 * z_channels) as its KL autoencoders do.
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    def __init__(
        self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
        resolution: int, z_channels: int, out_ch: int, dropout: float,
    ):  # fmt: skip
        super().__init__()
        width = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = Middle(width, dropout)
        levels = []
        for i in reversed(range(len(ch_mult))):  # lowest resolution first, as the data flows
            level = Level([width] + [ch * ch_mult[i]] * (num_res_blocks + 1), res in attn_resolutions, dropout)
            width = ch * ch_mult[i]
            if i != 0:
                level.upsample = Upsample(width)
                res *= 2
            levels.append(level)
        self.up = nn.ModuleList(reversed(levels))  # ``up.i`` is resolution level i, as taming's insert(0)
        self.norm_out = normalize(width)
        self.conv_out = nn.Conv2d(width, out_ch, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """taming's ``VectorQuantizer2`` (legacy loss): each latent vector becomes its nearest codebook row.

    The loss is ``mean((sg[z_q] - z)^2) + beta * mean((z_q - sg[z])^2)``: the commitment term (towards the encoder)
    has weight 1 and the codebook term ``beta`` -- the reverse of the VQ-VAE paper, kept because the released
    models were trained so (taming's ``legacy=True``).
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta = n_embed, embed_dim, beta
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, None, Tensor]]:
        """``z`` ``[B, embed_dim, h, w]`` -> ``(z_q, loss, (perplexity, None, indices [B, h, w]))``."""
        (b, _, height, width), dtype = z.shape, z.dtype
        z = z.permute(0, 2, 3, 1).float()
        flat = z.reshape(-1, self.embed_dim)
        codebook = self.embedding.weight.float()
        with torch.autocast(z.device.type, enabled=False):
            distances = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.T
        indices = distances.argmin(1)
        z_q = self.embedding(indices).float().view_as(z)
        loss = (z_q.detach() - z).pow(2).mean() + self.beta * (z_q - z.detach()).pow(2).mean()
        z_q = z + (z_q - z).detach()  # straight-through: the decoder's gradient reaches the encoder unchanged
        probabilities = torch.bincount(indices, minlength=self.n_embed).float() / indices.numel()
        perplexity = torch.exp(-(probabilities * torch.log(probabilities + 1e-10)).sum())
        z_q = z_q.permute(0, 3, 1, 2).contiguous().to(dtype)
        return z_q, loss, (perplexity, None, indices.view(b, height, width))


class VQGAN(nn.Module):
    """taming's ``VQModel`` without its loss; the constructor takes taming's ``ddconfig`` names and the codebook's
    ``embed_dim`` and ``n_embed`` (``VQGAN(**VQGAN_CONFIGS[name])``)."""

    def __init__(
        self, *, embed_dim: int, n_embed: int, ch: int, ch_mult: Sequence[int], num_res_blocks: int,
        attn_resolutions: Sequence[int], resolution: int, z_channels: int, in_channels: int = 3, out_ch: int = 3,
        dropout: float = 0.0,
    ):  # fmt: skip
        super().__init__()
        self.config = dict(
            embed_dim=embed_dim, n_embed=n_embed, ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks,
            attn_resolutions=list(attn_resolutions), resolution=resolution, z_channels=z_channels,
            in_channels=in_channels, out_ch=out_ch, dropout=dropout,
        )  # fmt: skip
        tower = dict(
            ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
            resolution=resolution, z_channels=z_channels, dropout=dropout,
        )  # fmt: skip
        self.encoder = Encoder(in_channels=in_channels, **tower)
        self.decoder = Decoder(out_ch=out_ch, **tower)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    @property
    def downsampling_factor(self) -> int:
        """Image pixels per code along each side: ``2 ** (len(ch_mult) - 1)``."""
        return 2 ** (len(self.config["ch_mult"]) - 1)

    @property
    def codebook(self) -> Tensor:
        """``[n_embed, embed_dim]``: the codes."""
        return self.quantize.embedding.weight

    def encode_to_latent(self, images: Tensor) -> Tensor:
        """Images in ``[-1, 1]`` -> the latent before quantisation, ``[B, embed_dim, H/f, W/f]`` (what VQGAN-CLIP
        optimises)."""
        return self.quant_conv(self.encoder(images))

    def quantize_latent(self, z: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, None, Tensor]]:
        """``(z_q, codebook loss, (perplexity, None, indices))``: see :class:`VectorQuantizer`."""
        return self.quantize(z)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor, tuple[Tensor, None, Tensor]]:
        """taming's ``encode``: images in ``[-1, 1]`` -> the quantised latent, its loss and its codes."""
        return self.quantize_latent(self.encode_to_latent(images))

    def decode(self, z_q: Tensor) -> Tensor:
        """A (quantised) latent ``[B, embed_dim, h, w]`` -> images, nominally in ``[-1, 1]`` (not clamped)."""
        return self.decoder(self.post_quant_conv(z_q))

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Codes ``[B, h, w]`` -> images."""
        return self.decode(self.quantize.embedding(indices).permute(0, 3, 1, 2))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(reconstruction, codebook loss)``."""
        z_q, loss, _ = self.encode(images)
        return self.decode(z_q), loss


# --- loading ----------------------------------------------------------------------------------------------


class _Missing:
    """What a pickled object of a class that cannot be imported here becomes (see :func:`_torch_load`)."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _Missing


_lenient_pickle = ModuleType("lenient_pickle")
_lenient_pickle.__dict__.update(vars(pickle))
_lenient_pickle.Unpickler = _LenientUnpickler


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # taming's releases are pytorch-lightning 1.0 checkpoints, which pickle more than tensors (callback states
        # keyed by their classes) and which weights_only refuses. Only then, for a file the user chose to load,
        # unpickle everything; classes that cannot be imported here (no pytorch_lightning, or renamed since) load
        # as placeholders: only the state dict is used.
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_lenient_pickle)


def _config_from_yaml(path: Path) -> dict[str, Any]:
    """taming's ``model.yaml``: ``model.params.ddconfig`` with ``embed_dim`` and ``n_embed``."""
    params = OmegaConf.to_container(OmegaConf.load(path))["model"]["params"]
    return {**params["ddconfig"], "embed_dim": params["embed_dim"], "n_embed": params["n_embed"]}


def _resolve_config(config: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A name in ``VQGAN_CONFIGS``, a dict of VQGAN's keyword arguments (taming's ddconfig keys with embed_dim and
    n_embed) or the path of taming's ``model.yaml``, as VQGAN's keyword arguments."""
    if isinstance(config, dict):
        resolved = dict(config)
    elif str(config) in VQGAN_CONFIGS:
        resolved = dict(VQGAN_CONFIGS[str(config)])
    elif Path(config).suffix in (".yaml", ".yml"):
        if not Path(config).is_file():
            raise FileNotFoundError(f"VQGAN config {config} does not exist")
        resolved = _config_from_yaml(Path(config))
    else:
        raise ValueError(f"unknown VQGAN config {config!r}; expected one of {sorted(VQGAN_CONFIGS)}, a dict or a yaml")
    if resolved.pop("double_z", False):
        raise ValueError("double_z: true is a KL autoencoder's (mean and log-variance); VQGANs have double_z: false")
    if not resolved.pop("resamp_with_conv", True) or resolved.pop("give_pre_end", False):
        raise ValueError("only taming's defaults resamp_with_conv: true and give_pre_end: false are built here")
    return resolved


def _infer_config(state_dict: dict[str, Tensor]) -> dict[str, Any]:
    """VQGAN's keyword arguments that a taming-layout state dict determines; ``attn_resolutions`` and
    ``resolution`` are missing (the state dict only tells which levels have attention, as ``attention_levels``)."""
    levels = sorted({int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.down.")})
    ch = state_dict["encoder.conv_in.weight"].shape[0]
    n_embed, embed_dim = state_dict["quantize.embedding.weight"].shape
    return dict(
        embed_dim=embed_dim, n_embed=n_embed, ch=ch,
        ch_mult=[state_dict[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in levels],
        num_res_blocks=len({k.split(".")[4] for k in state_dict if k.startswith("encoder.down.0.block.")}),
        attention_levels=[i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in state_dict],
        z_channels=state_dict["encoder.conv_out.weight"].shape[0],
        in_channels=state_dict["encoder.conv_in.weight"].shape[1],
        out_ch=state_dict["decoder.conv_out.weight"].shape[0],
    )  # fmt: skip


def _named_config(state_dict: dict[str, Tensor], source: str) -> dict[str, Any]:
    """The named config whose geometry the state dict has: a taming checkpoint loaded without its model.yaml."""
    try:
        inferred = _infer_config(state_dict)
    except KeyError as error:
        raise ValueError(f"{source} has no key {error} of a taming VQGAN; is it one?") from None
    levels = inferred.pop("attention_levels")
    for config in VQGAN_CONFIGS.values():
        resolutions = [config["resolution"] // 2**i for i in range(len(config["ch_mult"]))]
        attention = [i for i, res in enumerate(resolutions) if res in config["attn_resolutions"]]
        if attention == levels and all(config[key] == value for key, value in inferred.items()):
            return dict(config)
    raise ValueError(
        f"{source} is no named VQGAN config's geometry ({inferred}, attention at levels {levels}) and the state dict "
        "does not tell attn_resolutions' training resolution: pass config= (a name in VQGAN_CONFIGS, a dict of "
        "VQGAN's arguments or taming's model.yaml)"
    )


def load_vqgan(
    path_or_state_dict: str | Path | dict[str, Any], config: str | Path | dict[str, Any] | None = None
) -> VQGAN:
    """A VQGAN from taming's checkpoints (``{"state_dict": ...}`` or a bare state dict; its ``loss.*`` keys skipped) or
    a ``VQGANTraining`` checkpoint (``vqgan.*`` keys, the config in its hyper-parameters), loaded strictly.

    ``config``: a name in ``VQGAN_CONFIGS``, a dict of :class:`VQGAN`'s arguments or the path of taming's
    ``model.yaml``. Without it: a VQGANTraining checkpoint's own, else the named config whose geometry the state
    dict has (taming's released f16 models are found so), else a ValueError.
    """
    if isinstance(path_or_state_dict, dict):
        checkpoint, source = path_or_state_dict, "the given state dict"
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"VQGAN checkpoint {path} does not exist")
        checkpoint, source = _torch_load(path), str(path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    ours = any(key.startswith("vqgan.") for key in state_dict)
    if ours:
        state_dict = {k.removeprefix("vqgan."): v for k, v in state_dict.items()}
        if config is None:
            config = checkpoint.get("hyper_parameters", {}).get("architecture")
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("loss.")}  # LPIPS, discriminator
    model = VQGAN(**(_named_config(state_dict, source) if config is None else _resolve_config(config)))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {list(state_dict[k].shape)} (expected {list(v.shape)})"
        for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape
    ]  # fmt: skip
    if missing or unexpected or wrong_shape:
        problems = [
            f"{what} ({len(keys)}): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if keys
        ]  # fmt: skip
        raise ValueError(f"{source} does not match the VQGAN {model.config}: " + "; ".join(problems))
    model.load_state_dict(state_dict)
    return model
