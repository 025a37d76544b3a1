"""AudioCLIP's audio tower: ESResNeXt-fbsp (Guzhov et al., "ESResNe(X)t-fbsp: Learning Robust Time-Frequency
Transformation of Audio", 2021), as AudioCLIP (Guzhov et al., 2021) builds it, numerically the official code's
(``AndreyGuzhov/AudioCLIP``, ``model/esresnet/{base,fbsp,attention}.py``) and with its parameter names, so its
state dicts (``ESResNeXtFBSP_AudioSet.pt``, the ``audio.*`` entries of an AudioCLIP checkpoint) load as they are.
Checked once against the official classes with the same random weights (non-trivial filter bank, batch-norm
statistics) on CPU in fp32: spectrogram and embedding bitwise equal, in eval and in train mode, for mono and stereo
clips; ``loss_ttf`` equal; gradients within 5e-7 of the largest.

The forward pass, top-down (:meth:`ESResNeXtFBSP.forward`, shapes for a 5 s clip at 44.1 kHz):

1. The waveform ``[B, C, L]`` (C audio channels) is taken to the official amplitude range: ``x * 32768``, then the
   official rescale ``((x + 32768) * 2) / 65535 - 1`` (not ``x / 32768``: it divides by 32767.5 and adds 1/65535).
2. Framing (:func:`frame_signal`): zero padding split evenly to whole frames of ``win_length`` (1654) every
   ``hop_length`` (561) samples, 392 frames; times the periodic Blackman-Harris window (:func:`blackman_harris`);
   each frame zero-padded in the middle of ``n_fft`` (2048) samples.
3. :class:`LinearFBSP`, the trainable filter bank: ``n_fft // 2 + 1`` (1025) complex filters, filter ``k`` being
   ``sqrt(fb_k) * sinc(fb_k t / m_k) ** m_k * exp(-i fc_k t) / sqrt(n_fft)`` on ``t = pi * linspace(-1, 1, n_fft)``.
   At initialisation (``m = 0, fb = 1, fc = k``) this is a DFT whose bins are ``sample_rate / (n_fft - 1)`` apart
   (the grid of ``linspace`` has ``n_fft - 1`` steps), with the phase referred to the frame's centre.
4. The power ``re^2 + im^2`` of the first ``3 * (bins // 3)`` bins (the last two of 1025 are dropped) is cut into
   three bands of consecutive bins, the three input planes of the ResNeXt (not one spectrogram repeated), in dB:
   ``10 log10(power)``, exact zeros replaced by 1e-18: :meth:`ESResNeXtFBSP.spectrogram`, ``[B, C, 3, 341, 392]``.
5. Each audio channel ``[B, 3, 341, 392]`` goes through the same ResNeXt-50 32x4d (torchvision's blocks and
   parameter names: ``conv1``, ``bn1``, ``layer1``-``layer4``); each stage's output is multiplied by a sigmoid gate
   computed from the stage's input (:class:`Attention2d`, ``att1``-``att4``), the average-pooled last map by one
   from the max-pooled map (``att5``): ``[B, 2048]`` per channel, summed over the audio channels
   (:meth:`ESResNeXtFBSP.forward_features`).
6. ``fc``: the un-normalised audio embedding, ``[B, output_dim]`` (1024 in AudioCLIP).

Input convention: float waveforms in [-1, 1] (as torchaudio, soundfile and librosa read them) at the config's sample
rate, ``[batch, audio channels, samples]``. The official data loaders feed the same waveforms times 32768, and the
tower multiplies by 32768 itself (exact in fp32), so this tower on ``w`` computes what the official one computes on
``w * 32768``. (Waveforms that already are in int16 range would be 90 dB too loud here.)

Deliberate differences from the official code (none changes a number where both compute one):

- The input is [-1, 1], as above (the official tower takes int16-range floats; its demo notebook feeds [-1, 1],
  which the official rescale quantises to ~641 levels).
- A clip shorter than the front end's window raises a ValueError (the official pads it to one frame).
- The front end (steps 1-4) runs in fp32 under autocast: the official code has no mixed precision, and dB of a
  power spectrum in bf16 would be useless. Framing is not under ``no_grad``: gradients reach the waveform when it
  asks for them (the official graph stops there).
- :meth:`LinearFBSP.filter_norm_loss` (the official ``loss_ttf``) materialises the filters from the current
  parameters; the official reads the filters of the last forward from a module-global dict per device. Between a
  forward and the optimiser's step both give the same value and gradient.
- The empty ``fbsp.bias`` (shape [0], kept so official state dicts load strictly) does not require a gradient: a
  parameter that never gets one stops DDP (the official's does, unused).
- The gradient hooks of ``m``, ``fb``, ``fc`` are registered again on parameters that replace them (a deepcopy, a
  pickle, ``load_state_dict(..., assign=True)``), at the next forward (the official's are lost there).
- Only what AudioCLIP uses: the fbsp front end (not torch.stft), normalised filters, one-sided, no resizing of the
  spectrogram, 3 bands; no ImageNet initialisation, no stand-alone classification loss. ``n_fft`` must be even and
  at least ``win_length``. The blocks' ReLUs are in place and the gates' inputs are not cloned: the same numbers.
- ``ESResNeXt-Tiny`` is ours: the same network, small, on 8 kHz audio, for CPU tests and runs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

# The official LinearFBSP's epsilon: added to t (so that t is never 0), to m in the sinc's argument, and to the
# gradients' inf-norm in the hooks.
FBSP_EPS = 1e-8
# The official floor of the power spectrum: exact zeros (and negatives) become this before the log.
POWER_FLOOR = 1e-18
# The official amplitude range: int16. The rescale maps [-32768, 32767] onto [-1, 1].
INT16_MIN, INT16_MAX = -32768.0, 32767.0
# Kernel sizes and paddings of att1-att5: (3, 1) runs along frequency, (1, 5) along time.
ATTENTION_KERNELS = (((3, 1), (1, 0)), ((1, 5), (0, 2)), ((3, 1), (1, 0)), ((1, 5), (0, 2)), ((3, 5), (1, 2)))


@dataclass(frozen=True)
class AudioConfig:
    """The front end (sample rate, filter bank size, framing) and the ResNeXt body of an ESResNeXt-fbsp tower.

    ``channels`` are the stages' planes as torchvision's and timm's ResNets count them (a block's inner width is
    ``int(planes * base_width / 64) * cardinality``, a stage's output ``4 * planes``); ``stem_width`` is conv1's.
    """

    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 561
    win_length: int = 1654
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    channels: tuple[int, int, int, int] = (64, 128, 256, 512)
    stem_width: int = 64
    cardinality: int = 32
    base_width: int = 4
    attention: bool = True

    def __post_init__(self):
        for name in ("layers", "channels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            if len(getattr(self, name)) != 4:
                raise ValueError(f"AudioConfig.{name} needs one entry per stage (4), got {getattr(self, name)}")
        if self.n_fft % 2 or self.win_length > self.n_fft or min(self.win_length, self.hop_length) < 1:
            raise ValueError(
                f"AudioConfig needs an even n_fft of at least win_length >= 1 and hop_length >= 1, got n_fft "
                f"{self.n_fft}, win_length {self.win_length}, hop_length {self.hop_length}"
            )

    @property
    def bins(self) -> int:
        """The filter bank's size: ``n_fft // 2 + 1`` one-sided frequency bins."""
        return self.n_fft // 2 + 1

    @property
    def band_height(self) -> int:
        """Bins per band (per input plane of the ResNeXt): the last ``bins % 3`` bins are dropped."""
        return self.bins // 3

    @property
    def width(self) -> int:
        """The pooled features' size, the last stage's output: ``4 * channels[-1]``."""
        return 4 * self.channels[-1]

    def to_dict(self) -> dict:
        """Plain values (lists for the tuples), as YAML and JSON write them; :meth:`from_dict` reads them back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping) -> AudioConfig:
        """The config of :meth:`to_dict`'s ``values`` (lists or tuples); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown AudioConfig keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


AUDIO_ARCHITECTURES: dict[str, AudioConfig] = {
    # AudioCLIP's (and ESResNeXt-fbsp's AudioSet / ESC-50 / US8K protocols'): ResNeXt-50 32x4d on 44.1 kHz audio,
    # 37.5 ms windows every 12.7 ms.
    "ESResNeXt-fbsp": AudioConfig(),
    # Ours, for a CPU: 8 kHz audio, 25 ms windows every 8 ms, 129 bins (3 bands of 43, none dropped); a ResNeXt
    # 8x4d with one block per stage and a quarter of the planes (0.7M parameters with a 32-d fc).
    "ESResNeXt-Tiny": AudioConfig(
        sample_rate=8000, n_fft=256, hop_length=64, win_length=200, layers=(1, 1, 1, 1), channels=(16, 32, 64, 128),
        stem_width=16, cardinality=8, base_width=4, attention=True,
    ),  # fmt: skip
}


def audio_config(name: str) -> AudioConfig:
    """The config of a named audio tower of :data:`AUDIO_ARCHITECTURES`."""
    if name not in AUDIO_ARCHITECTURES:
        raise ValueError(f"unknown audio tower {name!r}; known: {', '.join(sorted(AUDIO_ARCHITECTURES))}")
    return AUDIO_ARCHITECTURES[name]


def frame_signal(signal: Tensor, frame_length: int, hop_length: int) -> Tensor:
    """Frames ``[N, T, frame_length]`` of ``signal`` ``[N, L]``, every ``hop_length`` samples, as the official
    ``frame_signal``: one frame if ``L <= frame_length``, else ``1 + ceil((L - frame_length) / hop_length)``; the
    zeros that make whole frames are split evenly, the odd one on the right (no reflection, no centring)."""
    length = signal.shape[-1]
    frames = 1 if length <= frame_length else 1 + -(-(length - frame_length) // hop_length)
    extra = (frames - 1) * hop_length + frame_length - length
    if extra > 0:
        signal = F.pad(signal, (extra // 2, extra - extra // 2))
    return signal.unfold(-1, frame_length, hop_length)


def blackman_harris(length: int) -> Tensor:
    """The periodic 4-term Blackman-Harris window, float32 ``[length]``: scipy's
    ``get_window("blackmanharris", length, fftbins=True)``, the official front end's window.

    ``w[n] = 0.35875 - 0.48829 cos(2 pi n / N) + 0.14128 cos(4 pi n / N) - 0.01168 cos(6 pi n / N)``, ``N = length``
    (periodic: the symmetric window of ``length + 1`` without its last sample), computed in float64.
    """
    x = torch.arange(length, dtype=torch.float64) * (2 * math.pi / length)
    window = 0.35875 - 0.48829 * torch.cos(x) + 0.14128 * torch.cos(2 * x) - 0.01168 * torch.cos(3 * x)
    return window.to(torch.float32)


def _sinc(x: Tensor) -> Tensor:
    """The unnormalised sinc, ``sin(x) / x`` (torch.sinc is ``sin(pi x) / (pi x)``), as the official computes it."""
    return torch.where(x == 0, torch.ones_like(x), torch.sin(x) / x)


def _fp32(device: torch.device):
    """Autocast off on ``device`` (which may have none: meta): the front end runs in fp32."""
    if not torch.amp.is_autocast_available(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device.type, enabled=False)


# The parameters that carry the hook, by id (a flag on the tensor would be pickled with it, the hook is not).
_HOOKED: dict[int, weakref.ref] = {}


@torch.utils.hooks.unserializable_hook
def _unit_max_gradient(grad: Tensor) -> Tensor:
    """The official hook on ``m``, ``fb``, ``fc``: the gradient divided by its largest magnitude (+ 1e-8)."""
    return grad / (torch.linalg.vector_norm(grad, ord=math.inf) + FBSP_EPS)


class LinearFBSP(nn.Module):
    """The trainable frequency B-spline filter bank: ``n_fft // 2 + 1`` complex filters of ``n_fft`` samples.

    Filter ``k`` is ``sqrt(fb_k) * sinc(fb_k t / (m_k + 1e-8)) ** m_k * exp(-i fc_k t) / sqrt(n)`` on
    ``t = pi * linspace(-1, 1, n) + 1e-8``: a tone of (fractional) bin ``fc_k`` under a window of shape ``m_k`` and
    bandwidth ``fb_k``. The initial ``m = 0, fb = 1, fc = 0, 1, 2, ...`` give unit filters of a DFT (on a grid of
    ``2 pi / (n - 1)``). Every filter's L2 norm is kept near 1 by :meth:`filter_norm_loss`. The gradients of
    ``m``, ``fb`` and ``fc`` are each divided by their inf-norm (+ 1e-8) before they reach ``.grad``, as official.
    """

    def __init__(self, n_fft: int):
        super().__init__()
        self.n_fft = n_fft
        bins = n_fft // 2 + 1
        self.m = nn.Parameter(torch.zeros(bins))
        self.fb = nn.Parameter(torch.ones(bins))
        self.fc = nn.Parameter(torch.arange(bins, dtype=torch.float32))
        # The official module's bias, disabled: an empty tensor, in every state dict. No gradient: see the docstring.
        self.bias = nn.Parameter(torch.empty(0), requires_grad=False)
        self._hook_gradients()

    def _hook_gradients(self) -> None:
        """The gradient hooks on the current ``m``, ``fb`` and ``fc`` objects, once each: hooks belong to a tensor,
        so parameters that replace them (a deepcopy, a pickle, ``load_state_dict(assign=True)``) get theirs here."""
        for param in (self.m, self.fb, self.fc):
            hooked = _HOOKED.get(id(param))
            if param.requires_grad and (hooked is None or hooked() is not param):
                param.register_hook(_unit_max_gradient)
                _HOOKED[id(param)] = weakref.ref(param, lambda _, key=id(param): _HOOKED.pop(key, None))

    def weights(self, n: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """The filters on ``n`` samples, their real and imaginary parts ``[bins, n]``.

        The official op sequence, so that the numbers are the same: the window ``sinc ** m`` is the official complex
        power of a real base ``(w, 0)`` and a real exponent ``(m, 0)`` (``|w| ** m`` with the phase ``m * pi``
        where ``w < 0``), zero imaginary terms included.
        """
        self._hook_gradients()
        t = math.pi * torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device).reshape(1, -1) + FBSP_EPS
        m, fb, fc = (p.to(dtype).reshape(-1, 1) for p in (self.m, self.fb, self.fc))
        kernel_re, kernel_im = torch.cos(fc * t), -torch.sin(fc * t)
        gain = fb.sqrt()
        base = _sinc(fb * t / (m + FBSP_EPS))
        base_im, exponent_im = torch.zeros_like(base), torch.zeros_like(m)
        magnitude = (base**2 + base_im**2) ** 0.5
        phase = base_im.atan2(base)
        window_magnitude = (magnitude**2) ** (0.5 * m) * torch.exp(-exponent_im * phase)
        angle = m * phase + 0.5 * exponent_im * (magnitude**2).log()
        window_re, window_im = window_magnitude * angle.cos(), window_magnitude * angle.sin()
        real = gain * (window_re * kernel_re - window_im * kernel_im)
        imag = gain * (window_re * kernel_im + window_im * kernel_re)
        return real / n**0.5, imag / n**0.5

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """The filter bank's outputs for real frames ``[N, T, n]``: real and imaginary parts ``[N, T, bins]``."""
        real, imag = self.weights(frames.shape[-1], frames.dtype, frames.device)
        return F.linear(frames, real), F.linear(frames, imag)

    def filter_norm_loss(self) -> Tensor:
        """The official ``loss_ttf``: the mean squared difference between each complex filter's L2 norm (over its
        ``n_fft`` samples and the real and imaginary parts) and 1, in fp32."""
        device = self.m.device
        with _fp32(device):
            real, imag = self.weights(self.n_fft, torch.float32, device)
            norms = torch.linalg.vector_norm(torch.stack((real, imag), dim=-1), dim=(-1, -2))
            return F.mse_loss(norms, torch.ones_like(norms))

    def extra_repr(self) -> str:
        return f"n_fft={self.n_fft}, bins={self.m.numel()}"


class Attention2d(nn.Module):
    """The official attention gate: ``sigmoid(bn(pointwise(depthwise(adaptive_max_pool(x, size)))))``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], padding: tuple[int, int]):
        super().__init__()
        self.conv_depth = nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding, groups=in_channels)
        self.conv_point = nn.Conv2d(in_channels, out_channels, 1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """Gates ``[B, out_channels, *size]`` in (0, 1) from a map ``x`` ``[B, in_channels, H, W]``."""
        return torch.sigmoid(self.bn(self.conv_point(self.conv_depth(F.adaptive_max_pool2d(x, size)))))


class ESResNeXtFBSP(nn.Module):
    """ESResNeXt-fbsp, AudioCLIP's audio tower: waveforms ``[B, C, L]`` in [-1, 1] to embeddings ``[B, output_dim]``.

    See the module's docstring for the computation. State-dict names and order are the official tower's (inside
    AudioCLIP they have the prefix ``audio.``): ``window``, ``conv1``, ``bn1``, ``layer1``, ``att1``, ...,
    ``layer4``, ``att4``, ``att5``, ``fc``, ``fbsp.{m,fb,fc,bias}``.
    """

    def __init__(self, config: AudioConfig, output_dim: int):
        super().__init__()
        self.config, self.output_dim = config, output_dim
        self.register_buffer("window", blackman_harris(config.win_length))
        # torchvision's ResNeXt (the official Bottleneck is a copy of torchvision's), built here for any stem width
        # (torchvision's and timm's ResNets fix a plain stem at 64), registered in the official order: the state
        # dict's order follows it.
        inplanes = config.stem_width
        self.conv1 = nn.Conv2d(3, inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = [config.stem_width] + [Bottleneck.expansion * planes for planes in config.channels] + [config.width]
        for i, (kernel_size, padding) in enumerate(ATTENTION_KERNELS):
            if i < 4:
                planes, stride, out = config.channels[i], 1 if i == 0 else 2, widths[i + 1]
                downsample = None
                if stride != 1 or inplanes != out:
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
                    )
                blocks = [Bottleneck(inplanes, planes, stride, downsample, config.cardinality, config.base_width)]
                blocks += [
                    Bottleneck(out, planes, groups=config.cardinality, base_width=config.base_width)
                    for _ in range(1, config.layers[i])
                ]
                self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
                inplanes = out
            if config.attention:
                self.add_module(f"att{i + 1}", Attention2d(widths[i], widths[i + 1], kernel_size, padding))
        self.fc = nn.Linear(config.width, output_dim)
        self.fbsp = LinearFBSP(config.n_fft)
        self.init_parameters()

    def init_parameters(self) -> None:
        """The official initialisation: convolutions (attention gates' included) He-normal for the fan-out, batch
        norms 1 and 0, the rest (fc, the gates' conv biases, the filter bank) as PyTorch and LinearFBSP make them."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def check(self, audio: Tensor) -> None:
        """A ValueError that says what is wrong unless ``audio`` is a float ``[B, C, L]`` of at least one window."""
        if not isinstance(audio, Tensor) or audio.ndim != 3 or not audio.is_floating_point():
            got = f"a {audio.dtype} tensor of shape {tuple(audio.shape)}" if isinstance(audio, Tensor) else type(audio)
            hint = "; add dimensions with audio.view(batch, channels, -1)" if isinstance(audio, Tensor) else ""
            raise ValueError(
                f"the audio tower takes float waveforms [batch, audio channels, samples] in [-1, 1], got {got}{hint}"
            )
        c = self.config
        if audio.shape[-1] < c.win_length:
            raise ValueError(
                f"a clip of {audio.shape[-1]} samples is shorter than the front end's window of {c.win_length} "
                f"samples ({1000 * c.win_length / c.sample_rate:.3g} ms at {c.sample_rate} Hz)"
            )

    def spectrogram(self, audio: Tensor) -> Tensor:
        """The three-band dB spectrogram of waveforms ``[B, C, L]`` in [-1, 1]: ``[B, C, 3, bins // 3, T]``, in fp32
        (also under autocast), with ``T = 1 + ceil((L - win_length) / hop_length)`` frames."""
        self.check(audio)
        c = self.config
        batch, channels, length = audio.shape
        with _fp32(audio.device):
            x = audio.float() * -INT16_MIN  # [-1, 1] -> the official int16 range, exactly
            x = ((x - INT16_MIN) * 2.0) / (INT16_MAX - INT16_MIN) - 1.0  # the official rescale, in its order
            frames = frame_signal(x.reshape(-1, length), c.win_length, c.hop_length) * self.window.float()
            pad = c.n_fft - c.win_length
            frames = F.pad(frames, (pad // 2, pad - pad // 2))
            real, imag = self.fbsp(frames)  # [B * C, T, bins]
            power = real**2 + imag**2
            power = power[..., : 3 * c.band_height].transpose(1, 2).reshape(batch, channels, 3, c.band_height, -1)
            power = torch.where(power > 0.0, power, torch.full_like(power, POWER_FLOOR))
            return torch.log10(power).mul(10.0)

    def _pooled(self, x: Tensor) -> Tensor:
        """One audio channel's bands ``[B, 3, H, T]`` through the gated ResNeXt, pooled: ``[B, width]``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            y = getattr(self, f"layer{i}")(x)
            x = y * getattr(self, f"att{i}")(x, y.shape[-2:]) if self.config.attention else y
        pooled = F.adaptive_avg_pool2d(x, (1, 1))
        if self.config.attention:
            pooled = pooled * self.att5(x, pooled.shape[-2:])
        return torch.flatten(pooled, 1)

    def forward_features(self, audio: Tensor) -> Tensor:
        """The pooled features ``[B, width]`` of waveforms ``[B, C, L]``: each audio channel through the same body,
        summed over the channels (as official: a sum, not a mean)."""
        spec = self.spectrogram(audio)
        device = spec.device.type
        if not (torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
            spec = spec.to(self.conv1.weight.dtype)
        return torch.stack([self._pooled(spec[:, c]) for c in range(spec.shape[1])], dim=-1).sum(dim=-1)

    def forward(self, audio: Tensor) -> Tensor:
        """The un-normalised audio embedding ``[B, output_dim]`` of waveforms ``[B, C, L]`` in [-1, 1]."""
        return self.fc(self.forward_features(audio))

    def filter_norm_loss(self) -> Tensor:
        """The filter bank's regulariser, AudioCLIP's ``loss_ttf`` (see :meth:`LinearFBSP.filter_norm_loss`)."""
        return self.fbsp.filter_norm_loss()


def load_audioset_weights(tower: ESResNeXtFBSP, state: Mapping[str, Tensor]) -> None:
    """Load an ``ESResNeXtFBSP_AudioSet.pt`` state dict (official names, no prefix, a 527-class ``fc``) into
    ``tower``: every tensor but ``fc.*``, strictly; a ValueError lists missing, unexpected and mismatched keys.

    ``fc`` stays as initialised, as in the official AudioCLIP: it loads this file into a tower whose ``fc`` maps to
    the 1024-d joint space (not AudioSet's 527 classes), and keeps its random ``fc`` on purpose (the shape mismatch
    raises after everything else was copied, and the error is caught); AudioSet's classifier has no place in the
    joint space. (The ``audio.*`` entries of an AudioCLIP checkpoint, ``fc`` included, load into a tower of
    ``output_dim`` 1024 with ``load_state_dict`` once the prefix is stripped: the names are the same.)
    """
    own = tower.state_dict()
    body = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = [k for k in own if not k.startswith("fc.")]
    missing = [k for k in expected if k not in body]
    unexpected = [k for k in body if k not in own]
    mismatched = [
        f"{k}: {tuple(body[k].shape)} in the state dict, {tuple(own[k].shape)} in the tower"
        for k in expected
        if k in body and tuple(body[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        found = {"missing keys": missing, "unexpected keys": unexpected, "wrong shapes": mismatched}
        problems = "; ".join(f"{label} {keys}" for label, keys in found.items() if keys)
        hint = ""
        if any(k.startswith("audio.") for k in unexpected):
            hint = " (an AudioCLIP state dict? take its audio.* entries without the prefix)"
        raise ValueError(f"not an ESResNeXt-fbsp state dict for this tower{hint}: {problems}")
    result = tower.load_state_dict(body, strict=False)
    assert not result.unexpected_keys and all(k.startswith("fc.") for k in result.missing_keys), result
