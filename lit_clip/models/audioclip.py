"""AudioCLIP (Guzhov et al., "AudioCLIP: Extending CLIP to Image, Text and Audio", ICASSP 2022): a CLIP with a third
tower for sound, all three in one joint space.

The model is a CLIP (OpenAI's RN50 in the paper) with ``audio``, an ESResNeXt-fbsp audio tower
(:mod:`lit_clip.models.esresnext`) whose output has the CLIP's embedding size, and two more logit scales beside the
CLIP's image-text one: ``logit_scale_ai`` (audio-image) and ``logit_scale_at`` (audio-text), both starting at
ln 100. Parameter names are the released code's, so ``AudioCLIP-Full-Training.pt`` and
``AudioCLIP-Partial-Training.pt`` load as they are (``lit_clip.load_clip``). A CLIP of any other family becomes
an AudioCLIP with :func:`with_audio_tower` (what the paper did with OpenAI's RN50, and what the ShapesWorld config
does with the ShapesWorld CLIP).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lit_clip.models.clip import CLIP, CLIPConfig, config_from_dict
from lit_clip.models.esresnext import AUDIO_ARCHITECTURES, AudioConfig, ESResNeXtFBSP, audio_config

# The released code's scales: each starts at ln 100 and is used as exp, clamped to [1, 100].
INIT_AUDIO_LOGIT_SCALE = math.log(100)
AUDIO_SCALE_NAMES = ("logit_scale_ai", "logit_scale_at")


@dataclass(frozen=True)
class AudioCLIPConfig:
    """A CLIP's geometry and its audio tower's."""

    clip: CLIPConfig
    audio: AudioConfig

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self.clip), "audio": self.audio.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> AudioCLIPConfig:
        values = dict(values)
        return cls(config_from_dict({k: v for k, v in values.items() if k != "audio"}), AudioConfig.from_dict(values["audio"]))


def is_audioclip_config_dict(values: dict) -> bool:
    return isinstance(values, dict) and "audio" in values


class AudioCLIP(CLIP):
    def __init__(
        self,
        config: AudioCLIPConfig,
        init_logit_scale: float = math.log(1 / 0.07),
        init_logit_bias: float | None = None,
        visual: nn.Module | None = None,
    ):
        """``config``: the CLIP's geometry and the audio tower's; ``visual``: an image tower to use instead of the one
        the CLIP's config describes (as ``CLIP``'s)."""
        super().__init__(config.clip, init_logit_scale, init_logit_bias, visual)
        self.audio_config = config.audio
        self.audio = ESResNeXtFBSP(config.audio, config.clip.embed_dim)
        self.logit_scale_ai = nn.Parameter(torch.tensor(INIT_AUDIO_LOGIT_SCALE))
        self.logit_scale_at = nn.Parameter(torch.tensor(INIT_AUDIO_LOGIT_SCALE))

    @property
    def full_config(self) -> AudioCLIPConfig:
        return AudioCLIPConfig(self.config, self.audio_config)

    def encode_audio(self, audio: Tensor) -> Tensor:
        """Un-normalised audio embeddings ``[batch, embed_dim]`` of waveforms ``[batch, channels, samples]`` in
        [-1, 1] at the tower's ``sample_rate``."""
        return self.audio(audio)

    def logit_scales(self) -> dict[tuple[str, str], Tensor]:
        """Each modality pair's scale, exponentiated and clamped to [1, 100] where it is used, as the released code."""
        scales = {("audio", "image"): self.logit_scale_ai, ("audio", "text"): self.logit_scale_at,
                  ("image", "text"): self.logit_scale}  # fmt: skip
        return {pair: scale.exp().clamp(1.0, 100.0) for pair, scale in scales.items()}


def with_audio_tower(clip: CLIP, audio: AudioConfig | str) -> AudioCLIP:
    """An AudioCLIP of ``clip`` (its towers and weights, shared) and a new, randomly initialised audio tower."""
    if clip.architecture is not None:
        raise ValueError(
            f"an AudioCLIP needs a CLIP that its config describes (a ViT or ModifiedResNet image tower), not a "
            f"{clip.architecture!r}: the checkpoint could not be rebuilt"
        )
    audio = audio_config(audio) if isinstance(audio, str) else audio
    bias = None if clip.logit_bias is None else 0.0
    model = AudioCLIP(AudioCLIPConfig(clip.config, audio), visual=clip.visual, init_logit_bias=bias)
    missing, unexpected = model.load_state_dict(clip.state_dict(), strict=False)
    new = [key for key in missing if not key.startswith("audio.") and key not in AUDIO_SCALE_NAMES]
    if new or unexpected:
        raise ValueError(f"this CLIP does not fit an AudioCLIP: missing {new[:5]}, unexpected {unexpected[:5]}")
    model.architecture = None  # the full config describes it
    return model.train(clip.training)


def audio_architecture_name(config: AudioConfig) -> str:
    """The name of ``config`` among the audio architectures, or its fields."""
    return next((name for name, known in AUDIO_ARCHITECTURES.items() if known == config), repr(config))


def is_audioclip_state(state: dict) -> bool:
    """Whether a state dict holds an AudioCLIP (the released names, or ours: the same)."""
    return "audio.fbsp.m" in state and all(name in state for name in AUDIO_SCALE_NAMES)


def infer_audio_config(state: dict[str, Tensor], source: str) -> AudioConfig:
    """The audio architecture of :data:`~lit_clip.models.esresnext.AUDIO_ARCHITECTURES` whose front end the state's
    has (its window and its filter bank: the hop length and the sample rate are not stored, they come with the
    architecture); a strict load then names whatever else does not fit."""
    window, filters = tuple(state["audio.window"].shape), tuple(state["audio.fbsp.m"].shape)
    for config in AUDIO_ARCHITECTURES.values():
        if window == (config.win_length,) and filters == (config.n_fft // 2 + 1,):
            return config
    raise ValueError(
        f"{source}: its audio front end (a window of {window[0]} samples, {filters[0]} filters) is none of the "
        f"audio architectures': {sorted(AUDIO_ARCHITECTURES)}"
    )
