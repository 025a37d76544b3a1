"""Sound clips read from disk for AudioCLIP: reading, resampling, the official augmentations, and the data modules
of ESC-50, UrbanSound8K and AudioSet-style clip lists (CSV files and WebDataset shards).

Waveforms are float32 ``[channels, samples]`` in [-1, 1], as soundfile reads them; batches are
:class:`~lit_clip.batches.AudioBatch` es: ``audio`` float ``[B, C, L]``, ``sample_rate`` a plain int (added by
the collate function, so it is never a tensor of B copies), and the rest per data module. The model multiplies by
32768 itself (AudioCLIP trained on int16-range floats).

The reading and the augmentations follow AudioCLIP's code (``AndreyGuzhov/AudioCLIP``: ``utils/transforms.py``,
``utils/datasets/{esc50,us8k}.py``, ``protocols/audioclip-{esc50,us8k}.json``). Deliberate differences:

- **Scale**: [-1, 1] instead of the official int16 range (soundfile / librosa floats x 32768). Every transform here
  commutes with that factor (time stretch, edge-mean padding and crops are linear, the crop's std tests compare
  stds of the same clip, the noise is relative to the clip's power), so ``official = ours x 32768`` up to float
  rounding, for the same random draws. :func:`min_max_scale` is the official US8K scaling divided by 32768.
- **Resampling**: ``scipy.signal.resample_poly`` (polyphase, Kaiser window) instead of librosa 0.7.2's
  ``kaiser_best`` (resampy). ESC-50 is 44.1 kHz already, so this changes nothing there; US8K's clips (many sample
  rates) differ slightly in the highest frequencies.
- **Random draws**: torch's generator (the global one, or one passed in), as our image transforms draw, so runs are
  deterministic under ``seed_everything`` and every DataLoader worker augments differently (torch seeds each worker);
  the official draws from numpy's global generator.
- **Channel flip**: the official ``RandomFlip(p=0.5)`` flips the *channel* axis of a ``[C, L]`` clip (not time): a
  no-op on mono ESC-50 and a left/right swap on stereo US8K. :class:`RandomChannelFlip` keeps it for ``C > 1``,
  where it matters, and draws nothing for mono clips.
- **Min-max of a constant clip**: zeros instead of the official NaN (0 / 0).
"""
from __future__ import annotations

import csv
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import lightning as L
import numpy as np
import soundfile as sf
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import (
    BadSampleError,
    BadSamplePolicy,
    RobustSamples,
    check_policy,
    openable,
    without_bad_samples,
)
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.webdataset import (
    _check_local_shards,
    _ExactBatches,
    decoded,
    evaluation_samples,
    sample_member,
    sample_name,
    sample_text,
    shard_error_handler,
    training_samples,
)
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.templates import fill_template, resolve_templates
from lit_clip.tokenizer import tokenize

log = logging.getLogger(__name__)

# int16 full scale: the official waveforms are ours times this.
INT16_SCALE = 32768.0

# soundfile reports unreadable data as LibsndfileError (a RuntimeError); odd inputs give the others.
_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, EOFError)


# -- reading ------------------------------------------------------------------------------------


def read_audio(
    source: str | Path | bytes, sample_rate: int, channels: int | None = 1, name: str | None = None
) -> np.ndarray:
    """A sound file (WAV, FLAC, OGG, ... anything libsndfile reads), or its bytes, as float32 ``[C, L]`` in [-1, 1]
    at ``sample_rate`` Hz.

    Args:
        source: a file path, or the file's bytes.
        sample_rate: the rate to return; other rates are resampled with ``scipy.signal.resample_poly`` by
            ``sample_rate / g`` up and ``file rate / g`` down, ``g`` their greatest common divisor (``ceil(L *
            up / down)`` samples).
        channels: 1: the mean of the file's channels (librosa's ``mono=True``, the official ESC-50 reading);
            k > 1: a file of k channels as it is, a mono file repeated k times (the official US8K reading with
            k = 2: mono duplicated, stereo kept), any other count mixed down to mono and repeated; None: the
            file's channels.
        name: what to call ``source`` in errors; by default the path, or "<bytes>".

    Values are not clipped: soundfile's float reads of integer files are in [-1, 1] already (float files hold
    what they hold), and resampling may overshoot slightly, as librosa's does.

    Raises:
        BadSampleError: naming the file, for a missing or empty file, data libsndfile cannot decode (its message
            included), a file with no samples or with non-finite ones.
    """
    _check_rate(sample_rate)
    if channels is not None and channels < 1:
        raise ValueError(f"channels must be None or at least 1, got {channels}")
    name, opened = openable(source, name)
    try:
        wave, file_rate = sf.read(opened, dtype="float32", always_2d=True)
    except _DECODE_ERRORS as error:
        raise BadSampleError(f"{name}: cannot decode audio ({type(error).__name__}: {error})") from error
    if wave.shape[0] == 0:
        raise BadSampleError(f"{name}: no audio samples (0 frames)")
    if not np.isfinite(wave).all():
        raise BadSampleError(f"{name}: non-finite samples (NaN or infinity)")
    wave = to_channels(wave.T, channels)  # mixed down before resampling: fewer channels to resample
    return np.ascontiguousarray(resample(wave, file_rate, sample_rate), dtype=np.float32)


def to_channels(wave: np.ndarray, channels: int | None) -> np.ndarray:
    """``[C, L]`` with ``channels`` channels, as :func:`read_audio` describes."""
    if channels is None or wave.shape[0] == channels:
        return wave
    mono = wave if wave.shape[0] == 1 else wave.mean(axis=0, keepdims=True)
    return mono if channels == 1 else np.repeat(mono, channels, axis=0)


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """``wave`` ``[..., L]`` at ``orig_rate`` Hz resampled to ``target_rate`` Hz by polyphase filtering
    (``scipy.signal.resample_poly``): ``ceil(L * up / down)`` samples, ``up / down = target_rate / orig_rate`` in
    lowest terms."""
    if orig_rate == target_rate:
        return wave
    from scipy.signal import resample_poly  # imported here: scipy.signal takes a while, and only resampling needs it

    g = math.gcd(int(orig_rate), int(target_rate))
    return resample_poly(wave, int(target_rate) // g, int(orig_rate) // g, axis=-1)


def min_max_scale(wave: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """The official US8K per-clip min-max normalisation, in our [-1, 1] convention.

    The official ``scale(wav, wav.min(), wav.max(), -32768.0, 32767.0)`` is, in int16 units,
    ``(x - min) * 65535 / (max - min) - 32768``; this is exactly that divided by 32768:
    ``(x - min) * (65535 / 32768) / (max - min) - 1``. So the clip's minimum (over all channels) maps to -1, its
    maximum to 32767 / 32768 (not 1), and the midpoint of [min, max] to -1 / 65536 (the official -0.5): peak
    normalisation with a DC shift. A constant clip (officially 0 / 0 = NaN) gives zeros. Computed in float64,
    returned as float32 of the input's kind (numpy array or tensor).
    """
    is_tensor = isinstance(wave, Tensor)
    x = wave.detach().cpu().double().numpy() if is_tensor else np.asarray(wave, dtype=np.float64)
    low, high = x.min(), x.max()
    if high > low:
        scaled = (x - low) * ((INT16_SCALE * 2 - 1) / INT16_SCALE) / (high - low) - 1.0
    else:
        scaled = np.zeros_like(x)
    scaled = scaled.astype(np.float32)
    return torch.from_numpy(scaled).to(wave.device) if is_tensor else scaled


@dataclass(frozen=True)
class AudioReader:
    """Reads a clip as a data module does: :func:`read_audio` at ``sample_rate`` with ``channels``, then (US8K)
    cut to its first ``max_samples`` and :func:`min_max_scale` d. Picklable, for DataLoader workers."""

    sample_rate: int
    channels: int | None = 1
    max_samples: int | None = None
    min_max: bool = False

    def __call__(self, source: str | Path | bytes, name: str | None = None) -> np.ndarray:
        wave = read_audio(source, self.sample_rate, self.channels, name)
        if self.max_samples is not None:
            wave = wave[:, : self.max_samples]
        return min_max_scale(wave) if self.min_max else wave


def _check_rate(sample_rate: int) -> None:
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")


# -- the official augmentations -----------------------------------------------------------------


def _as_wave(wave: np.ndarray | Tensor) -> Tensor:
    """A ``[C, L]`` float32 tensor of ``wave`` (what the official ``ToTensor1D`` gives: no value scaling)."""
    if isinstance(wave, np.ndarray):
        wave = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if wave.dim() != 2:
        raise ValueError(f"expected a waveform [channels, samples], got shape {tuple(wave.shape)}")
    return wave if wave.dtype == torch.float32 else wave.float()


def _uniform(generator: torch.Generator | None) -> float:
    """U[0, 1), as ``np.random.rand()``, from ``generator`` (torch's global one when None)."""
    return float(torch.rand((), dtype=torch.float64, generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """An integer of [0, high), as ``np.random.randint(0, high)``."""
    return int(torch.randint(0, high, (), generator=generator))


class RandomChannelFlip:
    """Swap the order of the channels (left <-> right) with probability ``p``: the official ``RandomFlip`` on a
    ``[C, L]`` clip, which flips axis 0. Mono clips are returned as they are, with no draw."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p, self.generator = p, generator

    def __call__(self, wave: np.ndarray | Tensor) -> Tensor:
        wave = _as_wave(wave)
        if wave.shape[0] > 1 and _uniform(self.generator) <= self.p:
            wave = wave.flip(0)
        return wave


def time_stretch(wave: np.ndarray | Tensor, scaling: float) -> Tensor:
    """The official ``RandomScale`` for a given factor: resample ``[C, L]`` to ``int(L * scaling)`` samples by
    linear interpolation, output sample ``j`` read at ``t = j / scaling``:
    ``x[i0] * (1 - r) + x[i1] * r`` with ``i0 = int(t)``, ``i1 = min(i0 + 1, L - 1)``, ``r = t - i0``
    (``t`` in float32, as there). At least one sample is kept (the official would return none for ``L = 1``)."""
    wave = _as_wave(wave)
    length = wave.shape[-1]
    out_len = max(1, int(length * scaling))
    ref = torch.arange(out_len, dtype=wave.dtype).div_(scaling)
    ref1 = ref.long()
    ref2 = torch.clamp(ref1 + 1, max=length - 1)
    r = ref - ref1.to(ref.dtype)
    return wave[..., ref1] * (1 - r) + wave[..., ref2] * r


class RandomScale:
    """Time stretch (speed and pitch together) by ``s = max_scale ** U[-1, 1)``, the official ``RandomScale``:
    ``int(L * s)`` samples by linear interpolation (see :func:`time_stretch`)."""

    def __init__(self, max_scale: float = 1.5, generator: torch.Generator | None = None):
        if max_scale < 1:
            raise ValueError(f"max_scale must be at least 1, got {max_scale}")
        self.max_scale, self.generator = max_scale, generator

    def __call__(self, wave: np.ndarray | Tensor) -> Tensor:
        scaling = self.max_scale ** (_uniform(self.generator) * 2 - 1)
        return time_stretch(wave, scaling)


class RandomPadding:
    """Pad a clip shorter than ``out_len`` samples to ``out_len``, the official ``RandomPadding``.

    The clip starts at ``left``, drawn from [0, out_len - L) in training and ``round(0.5 * (out_len - L))`` (Python's
    round, halves to even) at test time; the padding left of it holds the mean over channels of the clip's first
    sample, the padding right of it that of its last sample (edge means, not zeros). Longer clips pass unchanged.
    """

    def __init__(self, out_len: int, train: bool = True, generator: torch.Generator | None = None):
        if out_len < 1:
            raise ValueError(f"out_len must be positive, got {out_len}")
        self.out_len, self.train, self.generator = out_len, train, generator

    def __call__(self, wave: np.ndarray | Tensor) -> Tensor:
        wave = _as_wave(wave)
        length = wave.shape[-1]
        if length >= self.out_len:
            return wave
        if self.train:
            left = _randint(self.out_len - length, self.generator)
        else:
            left = int(round(0.5 * (self.out_len - length)))
        right = self.out_len - (left + length)
        channels = wave.shape[0]
        return torch.cat(
            (
                wave.new_full((channels, left), float(wave[..., 0].mean())),
                wave,
                wave.new_full((channels, right), float(wave[..., -1].mean())),
            ),
            dim=-1,
        )


class RandomCrop:
    """Cut a clip longer than ``out_len`` samples to ``out_len``, the official ``RandomCrop`` with its fallbacks.

    The crop starts at ``left``, drawn from [0, L - out_len) in training and ``round(0.5 * (L - out_len))`` at test
    time. Then, with ``std`` over all channels and samples (unbiased, as torch's): if the crop's std is below half
    the clip's, the first ``out_len`` samples are taken instead; and if those have a std between the crop's and half
    the clip's, the last ``out_len`` samples. Shorter clips pass unchanged.
    """

    def __init__(self, out_len: int, train: bool = True, generator: torch.Generator | None = None):
        if out_len < 1:
            raise ValueError(f"out_len must be positive, got {out_len}")
        self.out_len, self.train, self.generator = out_len, train, generator

    def __call__(self, wave: np.ndarray | Tensor) -> Tensor:
        wave = _as_wave(wave)
        length = wave.shape[-1]
        if length <= self.out_len:
            return wave
        if self.train:
            left = _randint(length - self.out_len, self.generator)
        else:
            left = int(round(0.5 * (length - self.out_len)))
        half_std = wave.std() * 0.5
        output = wave[..., left : left + self.out_len]
        crop_std = output.std()
        if crop_std < half_std:
            output = wave[..., : self.out_len]
        if half_std > output.std() > crop_std:
            output = wave[..., -self.out_len :]
        return output


class RandomNoise:
    """Add white Gaussian noise with probability ``p``, the official ``RandomNoise``: at an SNR drawn as
    ``U[0, 1) * (snr_max_db - snr_min_db + 1) + snr_min_db`` dB (so U[10, 121) dB with the defaults: the official
    ``+ 1``), relative to the clip's power (mean square over channels and samples). A silent clip gets none."""

    def __init__(
        self,
        snr_min_db: float = 10.0,
        snr_max_db: float = 120.0,
        p: float = 0.25,
        generator: torch.Generator | None = None,
    ):
        self.snr_min_db, self.snr_max_db, self.p, self.generator = snr_min_db, snr_max_db, p, generator

    def __call__(self, wave: np.ndarray | Tensor) -> Tensor:
        wave = _as_wave(wave)
        if _uniform(self.generator) > self.p:
            return wave
        snr_db = _uniform(self.generator) * (self.snr_max_db - self.snr_min_db + 1.0) + self.snr_min_db
        power = float(wave.double().pow(2).mean())
        if power == 0:
            return wave
        std = math.sqrt(power / 10 ** (snr_db / 10))
        noise = torch.randn(wave.shape, generator=self.generator, dtype=wave.dtype) * std
        return wave + noise


class Compose:
    """The transforms applied one after the other to a ``[C, L]`` clip."""

    def __init__(self, transforms: Sequence[Callable[[Tensor], Tensor]]):
        self.transforms = list(transforms)

    def __call__(self, wave: np.ndarray | Tensor) -> Tensor:
        wave = _as_wave(wave)
        for transform in self.transforms:
            wave = transform(wave)
        return wave

    def __repr__(self) -> str:
        return f"Compose({[type(t).__name__ for t in self.transforms]})"


def audio_train_transform(
    out_len: int,
    max_scale: float = 1.5,
    noise_p: float = 0.25,
    generator: torch.Generator | None = None,
) -> Compose:
    """AudioCLIP's training augmentation (``protocols/audioclip-{esc50,us8k}.json``), in its order: channel flip
    (p 0.5; the official ``RandomFlip``, which flips channels: kept for C > 1, a no-op on mono, see the module
    docstring), time stretch by ``1.5 ** U[-1, 1)``, random edge-mean padding and random crop to ``out_len``,
    and with p 0.25 Gaussian noise at U[10, 121) dB SNR."""
    return Compose(
        [
            RandomChannelFlip(0.5, generator),
            RandomScale(max_scale, generator),
            RandomPadding(out_len, train=True, generator=generator),
            RandomCrop(out_len, train=True, generator=generator),
            RandomNoise(10.0, 120.0, noise_p, generator),
        ]
    )


def audio_eval_transform(out_len: int) -> Compose:
    """AudioCLIP's test-time preprocessing: centred edge-mean padding or centred crop to ``out_len`` (the identity
    for a clip of exactly ``out_len`` samples, as every ESC-50 clip at 44.1 kHz and 5 s)."""
    return Compose([RandomPadding(out_len, train=False), RandomCrop(out_len, train=False)])


# -- data sets and loaders ----------------------------------------------------------------------


@dataclass(frozen=True)
class AudioClip:
    """One clip of a data set: its file, and what it is labelled with (each optional).

    ``label``: an index into the data module's ``classnames``; ``text``: the text paired with the clip (a class
    prompt, or AudioSet's labels joined with ", "); ``labels``: indices into ``classnames`` (multi-label).
    """

    path: Path
    label: int | None = None
    text: str | None = None
    labels: tuple[int, ...] = ()


class AudioFileDataset(Dataset):
    """Samples ``{"audio" [C, L], "index"}`` of a list of :class:`AudioClip` s, with, as asked,
    ``"label"`` (long), ``"text"`` (token ids ``[context_length]`` of the clip's text), ``"caption"`` (the text) and
    ``"labels"`` (float multi-hot ``[num_classes]``). A clip that cannot be read raises :class:`BadSampleError`
    naming its file (see :class:`~lit_clip.datamodules.images.RobustSamples`)."""

    def __init__(
        self,
        clips: Sequence[AudioClip],
        reader: Callable[[Path], np.ndarray],
        transform: Callable[[np.ndarray], Tensor],
        label: bool = False,
        context_length: int | None = None,
        caption: bool = False,
        num_classes: int | None = None,
    ):
        self.clips, self.reader, self.transform = clips, reader, transform
        self.label, self.context_length, self.caption, self.num_classes = label, context_length, caption, num_classes

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        sample: dict = {"audio": self.transform(self.reader(clip.path)), "index": index}
        if self.label:
            sample["label"] = torch.tensor(clip.label, dtype=torch.long)
        if self.context_length is not None:
            sample["text"] = tokenize(clip.text, context_length=self.context_length)[0]
        if self.caption:
            sample["caption"] = clip.text
        if self.num_classes is not None:
            sample["labels"] = multi_hot(clip.labels, self.num_classes)
        return sample


def multi_hot(labels: Iterable[int], num_classes: int) -> Tensor:
    """Float ``[num_classes]``: 1 at ``labels``, 0 elsewhere."""
    hot = torch.zeros(num_classes)
    hot[list(labels)] = 1.0
    return hot


def with_sample_rate(collate: Callable[[list[dict]], dict], sample_rate: int) -> Callable[[list[dict]], dict]:
    """``collate`` that adds ``"sample_rate"``, the int, to every batch (also to an evaluation batch of bad samples
    only, which holds no ``audio``); in the samples it would be collated into a tensor of B copies."""
    return functools.partial(_collate_with_sample_rate, collate=collate, sample_rate=int(sample_rate))


def _collate_with_sample_rate(samples: list[dict], collate: Callable[[list[dict]], dict], sample_rate: int) -> dict:
    batch = collate(samples)
    batch["sample_rate"] = sample_rate
    return batch


def audio_loader(
    dataset: Dataset,
    sample_rate: int,
    batch_size: int,
    num_workers: int,
    bad_samples: BadSamplePolicy,
    train: bool,
) -> StatefulDataLoader:
    """A loader of sound files under the bad-sample policy: a clip that cannot be read is left out of its batch and
    counted in ``skipped_index`` ("skip"), or stops the run with an error naming the file ("raise"). Training
    loaders are shuffled and drop their last partial batch; stateful, so a run killed mid-epoch resumes with the
    batches it had not yet seen."""
    collate = with_sample_rate(without_bad_samples(default_collate, training=train), sample_rate)
    samples = RobustSamples(dataset, bad_samples)
    return stateful_loader(samples, batch_size, num_workers, shuffle=train, collate_fn=collate)


# The splits each Lightning stage reads, so that setup() finds bad paths before the run starts.
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


class _AudioFilesDataModule(L.LightningDataModule):
    """Loaders over ``clips(split)``; subclasses list the clips, set ``classnames`` and ``templates``, and have the
    hparams ``sample_rate``, ``duration``, ``batch_size``, ``eval_batch_size``, ``num_workers``, ``bad_samples``,
    ``augment`` and ``context_length``."""

    classnames: list[str]
    templates: list[str]

    def clips(self, split: str) -> list[AudioClip]:
        raise NotImplementedError

    def has_split(self, split: str) -> bool:
        return True

    def reader(self) -> AudioReader:
        raise NotImplementedError

    def sample_fields(self, split: str) -> dict:
        """The :class:`AudioFileDataset` options of ``split``'s samples."""
        raise NotImplementedError

    @property
    def out_len(self) -> int:
        """Samples per clip in the batches: ``round(sample_rate * duration)``."""
        return round(self.hparams.sample_rate * self.hparams.duration)

    def setup(self, stage: str) -> None:
        # Probe a few files of every split the stage reads, so that a wrong folder stops the run now.
        for split in _STAGE_SPLITS.get(stage, ()):
            if self.has_split(split):
                _probe_audio(self.clips(split), split, self.hparams.bad_samples)

    def train_transform(self) -> Callable[[np.ndarray], Tensor]:
        """AudioCLIP's training augmentation with ``augment``, else the evaluation preprocessing."""
        return audio_train_transform(self.out_len) if self.hparams.augment else audio_eval_transform(self.out_len)

    def _loader(self, split: str) -> StatefulDataLoader:
        h = self.hparams
        train = split == "train"
        clips = self.clips(split)
        if train:
            require_one_batch(len(clips), h.batch_size, self.trainer, f"training clips of {type(self).__name__}")
        transform = self.train_transform() if train else audio_eval_transform(self.out_len)
        dataset = AudioFileDataset(clips, self.reader(), transform, **self.sample_fields(split))
        batch_size = h.batch_size if train or h.eval_batch_size is None else h.eval_batch_size
        return audio_loader(dataset, h.sample_rate, batch_size, h.num_workers, h.bad_samples, train)

    def train_dataloader(self) -> StatefulDataLoader:
        return self._loader("train")

    def val_dataloader(self) -> StatefulDataLoader | list:
        return self._loader("val") if self.has_split("val") else []

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader("test")


def _check_common(sample_rate: int, duration: float, bad_samples: str, channels: int | None = 1) -> None:
    _check_rate(sample_rate)
    if not duration > 0:
        raise ValueError(f"duration must be positive (seconds), got {duration}")
    if channels is not None and channels < 1:
        raise ValueError(f"channels must be None or at least 1, got {channels}")
    check_policy(bad_samples)


def _probe_audio(clips: Sequence[AudioClip], split: str, policy: BadSamplePolicy, probes: int = 8) -> None:
    """Open the headers of a few files spread over ``split``: with policy "raise" any failure, and with "skip" all
    of them failing, stops the run now, naming the files."""
    probed = clips[:: max(1, len(clips) // probes)][:probes]
    errors = []
    for clip in probed:
        try:
            _check_header(clip.path)
        except BadSampleError as error:
            if policy == "raise":
                raise
            errors.append(str(error))
    if errors and len(errors) == len(probed):
        raise BadSampleError(
            f"none of {len(errors)} sound files probed across the {split} split can be read, e.g. {errors[0]}; "
            "is the audio folder right?"
        )


def _check_header(path: Path) -> None:
    if not path.is_file():
        raise BadSampleError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise BadSampleError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except _DECODE_ERRORS as error:
        raise BadSampleError(f"{path}: cannot decode audio ({type(error).__name__}: {error})") from error
    if info.frames == 0:
        raise BadSampleError(f"{path}: no audio samples (0 frames)")


def _read_table(path: Path, columns: Sequence[str], expected: str, separator: str = ",") -> list[tuple[int, dict]]:
    """The rows of a CSV file with a header, as ``(line number, row)``; a missing file or column is an error that
    says what was expected."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {expected}")
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file, delimiter=separator)
        header = reader.fieldnames or []
        for column in columns:
            if column not in header:
                raise ValueError(
                    f"{path} has no column {column!r}; its header, split at {separator!r}, has {header}; {expected}"
                )
        rows = []
        for row in reader:
            if any(row[column] is None for column in columns):
                raise ValueError(f"{path}, line {reader.line_num}: fewer fields than the header's {len(header)}")
            rows.append((reader.line_num, row))
    return rows


def _int_field(row: dict, column: str, path: Path, line: int) -> int:
    try:
        return int(row[column])
    except ValueError:
        raise ValueError(f"{path}, line {line}: {column} {row[column]!r} is not an integer") from None


def _classnames_by_id(names: dict[int, str], path: Path) -> list[str]:
    """The class names in id order; ids must run from 0 without gaps."""
    ids = sorted(names)
    if ids != list(range(len(ids))):
        gap = next(i for i in range(len(ids) + 1) if i not in names)
        raise ValueError(f"{path}: class ids must run from 0 to the number of classes - 1, but {gap} never occurs")
    return [names[i] for i in ids]


def _check_fold(test_fold: int, folds: int, dataset: str) -> None:
    if isinstance(test_fold, bool) or test_fold not in range(1, folds + 1):
        raise ValueError(f"test_fold must be one of {dataset}'s folds 1..{folds}, got {test_fold!r}")


class _FoldedClassification(_AudioFilesDataModule):
    """A classification data set of official folds: train on all but ``test_fold``, validate and test on it."""

    def _set_folds(self, clips: list[tuple[int, AudioClip]], folds: int, path: Path) -> None:
        h = self.hparams
        unknown = sorted({fold for fold, _ in clips} - set(range(1, folds + 1)))
        if unknown:
            raise ValueError(f"{path}: fold {unknown[0]} is not one of the {folds} folds 1..{folds}")
        self._clips = {
            "train": [clip for fold, clip in clips if fold != h.test_fold],
            "test": [clip for fold, clip in clips if fold == h.test_fold],
        }
        if not self._clips["test"]:
            raise ValueError(f"{path} lists no clip of fold {h.test_fold}, the test_fold")

    def clips(self, split: str) -> list[AudioClip]:
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; expected train, val or test")
        return self._clips["train" if split == "train" else "test"]

    def sample_fields(self, split: str) -> dict:
        # Training pairs each clip with its class prompt (AudioCLIP fine-tunes with the audio-text loss);
        # evaluation classifies against the zero-shot head of `classnames` x `templates`.
        if split == "train":
            return {"label": True, "context_length": self.hparams.context_length}
        return {"label": True}

    def _prompt(self, label: int) -> str:
        return fill_template(self.templates[0], self.classnames[label])


_ESC50_LAYOUT = """expected ESC-50's layout (github.com/karolpiczak/ESC-50):
  <root>/
    audio/<filename>.wav      2000 clips, 5 s, 44.1 kHz mono
    meta/esc50.csv            filename,fold,target,category,esc10,src_file,take"""


class ESC50(_FoldedClassification):
    """ESC-50 (environmental sounds: 50 classes x 40 clips of 5 s, 44.1 kHz mono, in 5 folds), as AudioCLIP reads it.

    Layout: ``root/audio/*.wav`` and ``root/meta/esc50.csv`` (columns filename, fold, target, category, esc10,
    src_file, take). ``classnames``: the 50 categories by ``target`` id, "_" read as " " ("crying baby"); the text is
    the bare class name (``templates`` ``["{}"]``), as AudioCLIP's zero-shot evaluation.

    Protocol (AudioCLIP, ``protocols/audioclip-esc50.json``): train on the 4 folds other than ``test_fold``
    (shuffled, the last partial batch dropped), evaluate on ``test_fold`` (the official config uses fold 1; whether
    the published numbers average the 5 folds is not stated in the code); clips read as mono at 44.1 kHz, 5 s
    (220500 samples); training augmentation :func:`audio_train_transform`, evaluation :func:`audio_eval_transform`
    (the identity on 5 s clips). Zero-shot is the test fold's accuracy before fine-tuning, with the bare class
    names; fine-tuning trains the audio tower only, SGD Nesterov lr 5e-5, 50 epochs, batch 64. Published AudioCLIP
    accuracy: zero-shot **69.4 %** (69.40 %, the partially trained model), fine-tuned **97.2 %** (97.15 %).

    Batches: training ``{"audio" [B, 1, L], "text" [B, context_length] (the class prompt's token ids), "label",
    "index", "skipped_index", "sample_rate"}``; validation and test (both the test fold) ``{"audio", "label",
    "index", "skipped_index", "sample_rate"}``. ``L = round(sample_rate * duration)``.
    """

    FOLDS = 5

    def __init__(
        self,
        root: str,
        test_fold: int = 1,
        sample_rate: int = 44100,
        duration: float = 5.0,
        context_length: int = 77,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        augment: bool = True,
        templates: str | Sequence[str] = ("{}",),
    ):
        """
        Args:
            root: the folder holding ``audio/`` and ``meta/esc50.csv``.
            test_fold: the fold evaluated on (1..5); the other four are trained on.
            sample_rate: Hz of the batches' clips (files at other rates are resampled).
            duration: seconds per clip; shorter clips are padded, longer ones cropped.
            context_length: token length of the training texts; at most the model's context length.
            batch_size: training clips per process; eval_batch_size: evaluation clips per batch (None: batch_size).
            num_workers: DataLoader worker processes.
            bad_samples: "skip" a clip that cannot be read (left out of its batch, its index in
                ``skipped_index``) or "raise" an error naming the file.
            augment: AudioCLIP's training augmentation; False: training clips are only padded / cropped (centred).
            templates: prompt templates of the class names, ``templates[0]`` the training text: the bare name by
                default (AudioCLIP's), or "simple", "openai_imagenet", ... or a list of strings with one ``{}``.
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(sample_rate, duration, bad_samples)
        _check_fold(test_fold, self.FOLDS, "ESC-50")
        self.root = Path(root)
        csv_path = self.root / "meta" / "esc50.csv"
        rows = _read_table(csv_path, ("filename", "fold", "target", "category"), _ESC50_LAYOUT)
        audio_dir = self.root / "audio"
        if not audio_dir.is_dir():
            raise FileNotFoundError(f"audio folder {audio_dir} not found; {_ESC50_LAYOUT}")
        names: dict[int, str] = {}
        folded = []
        for line, row in rows:
            target = _int_field(row, "target", csv_path, line)
            category = row["category"].replace("_", " ").strip()
            known = names.setdefault(target, category)
            if known != category:
                raise ValueError(f"{csv_path}, line {line}: target {target} is named both {known!r} and {category!r}")
            folded.append((_int_field(row, "fold", csv_path, line), (audio_dir / row["filename"], target)))
        if not folded:
            raise ValueError(f"{csv_path} lists no clips; {_ESC50_LAYOUT}")
        self.classnames = _classnames_by_id(names, csv_path)
        self.templates = resolve_templates(templates)
        clips = [(fold, AudioClip(path, target, self._prompt(target))) for fold, (path, target) in folded]
        self._set_folds(clips, self.FOLDS, csv_path)

    def reader(self) -> AudioReader:
        return AudioReader(self.hparams.sample_rate, channels=1)


_US8K_LAYOUT = """expected UrbanSound8K's layout (urbansounddataset.weebly.com):
  <root>/
    audio/fold<k>/<slice_file_name>   8732 clips of up to 4 s in 10 folds, various rates and channels
    metadata/UrbanSound8K.csv         slice_file_name,fsID,start,end,salience,fold,classID,class"""


class UrbanSound8K(_FoldedClassification):
    """UrbanSound8K (urban sounds: 10 classes, 8732 clips of up to 4 s, in 10 folds), as AudioCLIP reads it.

    Layout: ``root/audio/fold<k>/<slice_file_name>`` and ``root/metadata/UrbanSound8K.csv`` (columns
    slice_file_name, fsID, start, end, salience, fold, classID, class). ``classnames``: the classes by ``classID``,
    "_" read as " " ("dog bark", "children playing"); the text is the bare class name, as AudioCLIP's zero-shot.

    Protocol (AudioCLIP, ``utils/datasets/us8k.py`` with ``mono: false``, ``protocols/audioclip-us8k.json``): the
    official folds, train on the 9 other than ``test_fold``, evaluate on it (the official config uses fold 1; the
    10-fold average is the data set's usual figure); every file resampled to 44.1 kHz, 2 channels (mono
    duplicated, stereo kept), cut to its first 4 s and min-max scaled per clip (:func:`min_max_scale`, the official
    scaling in our convention); then the augmentation of ESC-50 with ``out_len`` 4 s (176400 samples), its channel
    flip a real left/right swap here. Fine-tuning: SGD Nesterov lr 1e-5, 50 epochs, batch 64. Published AudioCLIP
    accuracy: zero-shot **68.8 %** (68.78 %), fine-tuned **90.1 %** (90.07 %).

    Batches as :class:`ESC50`'s, ``audio`` ``[B, channels, L]``.
    """

    FOLDS = 10

    def __init__(
        self,
        root: str,
        test_fold: int = 1,
        sample_rate: int = 44100,
        duration: float = 4.0,
        channels: int = 2,
        min_max: bool = True,
        context_length: int = 77,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        augment: bool = True,
        templates: str | Sequence[str] = ("{}",),
    ):
        """
        Args:
            root: the folder holding ``audio/fold1/`` ... ``audio/fold10/`` and ``metadata/UrbanSound8K.csv``.
            test_fold: the fold evaluated on (1..10); the other nine are trained on.
            sample_rate: Hz of the batches' clips (every file is resampled to it).
            duration: seconds per clip: files are cut to it, then shorter clips padded (training: randomly).
            channels: 2 (official: mono duplicated, stereo kept) or 1 (the mean of the channels).
            min_max: the official per-clip min-max scaling (:func:`min_max_scale`); False: the file's values.
            context_length, batch_size, eval_batch_size, num_workers, bad_samples, augment, templates: as
                :class:`ESC50`'s.
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(sample_rate, duration, bad_samples, channels)
        _check_fold(test_fold, self.FOLDS, "UrbanSound8K")
        self.root = Path(root)
        csv_path = self.root / "metadata" / "UrbanSound8K.csv"
        rows = _read_table(csv_path, ("slice_file_name", "fold", "classID", "class"), _US8K_LAYOUT)
        audio_dir = self.root / "audio"
        if not audio_dir.is_dir():
            raise FileNotFoundError(f"audio folder {audio_dir} not found; {_US8K_LAYOUT}")
        names: dict[int, str] = {}
        folded = []
        for line, row in rows:
            class_id = _int_field(row, "classID", csv_path, line)
            fold = _int_field(row, "fold", csv_path, line)
            name = row["class"].replace("_", " ").strip()
            known = names.setdefault(class_id, name)
            if known != name:
                raise ValueError(f"{csv_path}, line {line}: classID {class_id} is named both {known!r} and {name!r}")
            folded.append((fold, (audio_dir / f"fold{fold}" / row["slice_file_name"], class_id)))
        if not folded:
            raise ValueError(f"{csv_path} lists no clips; {_US8K_LAYOUT}")
        self.classnames = _classnames_by_id(names, csv_path)
        self.templates = resolve_templates(templates)
        clips = [(fold, AudioClip(path, label, self._prompt(label))) for fold, (path, label) in folded]
        self._set_folds(clips, self.FOLDS, csv_path)

    def reader(self) -> AudioReader:
        h = self.hparams
        return AudioReader(h.sample_rate, channels=h.channels, max_samples=self.out_len, min_max=h.min_max)


class AudioClips(_AudioFilesDataModule):
    """AudioSet-style clip lists: CSV files of a sound file and its labels per row, for audio-text training.

    A row names a file (relative to the CSV file's folder, or absolute) and its labels, separated by
    ``label_separator`` (``path,labels`` / ``audio/0001.flac,Dog;Bark``). The clip's text is its labels joined with
    ", " ("Dog, Bark"), AudioCLIP's AudioSet text. ``classnames``: every label of the given files, sorted;
    ``labels`` in the batches is the clip's multi-hot vector over them (for multi-label evaluation, e.g. mAP).
    A row without labels is left out with a warning ("skip") or raised ("raise") when the file is read.

    Batches of every split: ``{"audio" [B, channels, L], "text" [B, context_length], "caption" (the B texts),
    "labels" float [B, len(classnames)], "index", "skipped_index", "sample_rate"}``: audio-text pairs, for the
    contrastive loss and audio<->text retrieval. Training clips get AudioCLIP's augmentation (``augment``).
    """

    def __init__(
        self,
        train_csv: str,
        val_csv: str | None = None,
        test_csv: str | None = None,
        path_key: str = "path",
        labels_key: str = "labels",
        label_separator: str = ";",
        separator: str = ",",
        sample_rate: int = 44100,
        duration: float = 10.0,
        channels: int = 1,
        context_length: int = 77,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        augment: bool = True,
        templates: str | Sequence[str] = ("{}",),
    ):
        """
        Args:
            train_csv: CSV file of the training clips.
            val_csv: CSV file of the validation clips; without it, no validation.
            test_csv: CSV file of the test clips; needed only for testing.
            path_key, labels_key: the columns of the sound file's path and of its labels.
            label_separator: what separates a row's labels.
            separator: the CSV field separator.
            sample_rate: Hz of the batches' clips (files at other rates are resampled).
            duration: seconds per clip (AudioSet's are 10 s); shorter clips are padded, longer ones cropped.
            channels: 1 (the mean of the file's channels), or k (mono repeated, k-channel files kept).
            context_length, batch_size, eval_batch_size, num_workers, bad_samples, augment, templates: as
                :class:`ESC50`'s (``templates`` serve a zero-shot head over ``classnames``).
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(sample_rate, duration, bad_samples, channels)
        if not label_separator:
            raise ValueError("label_separator must not be empty")
        labelled = {
            split: _read_clip_list(Path(file), path_key, labels_key, label_separator, separator, bad_samples)
            for split, file in (("train", train_csv), ("val", val_csv), ("test", test_csv))
            if file is not None
        }
        self.classnames = sorted({label for rows in labelled.values() for _, labels in rows for label in labels})
        self.templates = resolve_templates(templates)
        index_of = {name: i for i, name in enumerate(self.classnames)}
        self._clips = {
            split: [AudioClip(path, None, ", ".join(names), tuple(index_of[x] for x in names)) for path, names in rows]
            for split, rows in labelled.items()
        }

    def has_split(self, split: str) -> bool:
        return split in self._clips

    def clips(self, split: str) -> list[AudioClip]:
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; expected train, val or test")
        if split not in self._clips:
            raise ValueError(f"AudioClips has no {split} split: give {split}_csv")
        return self._clips[split]

    def sample_fields(self, split: str) -> dict:
        return {"context_length": self.hparams.context_length, "caption": True, "num_classes": len(self.classnames)}

    def reader(self) -> AudioReader:
        return AudioReader(self.hparams.sample_rate, channels=self.hparams.channels)


def _read_clip_list(
    path: Path, path_key: str, labels_key: str, label_separator: str, separator: str, policy: BadSamplePolicy
) -> list[tuple[Path, list[str]]]:
    """``(sound file, labels)`` per row; a row without labels is left out with a warning, or raised."""
    expected = f"expected a CSV file with a header and the columns {path_key!r} and {labels_key!r}"
    rows = []
    for line, row in _read_table(path, (path_key, labels_key), expected, separator):
        labels = [label.strip() for label in row[labels_key].split(label_separator) if label.strip()]
        if not labels:
            message = f"{path}, line {line}: {row[path_key]!r} has no labels"
            if policy == "raise":
                raise BadSampleError(message)
            log.warning("leaving out a clip: %s", message)
            continue
        rows.append((path.parent / row[path_key], labels))
    if not rows:
        raise ValueError(f"{path} lists no clips with labels; {expected}")
    return rows


# -- WebDataset shards --------------------------------------------------------------------------


class AudioWebDataset(L.LightningDataModule):
    """Audio-text pairs streamed from WebDataset tar shards: ``<key>.flac`` (or wav, ogg) and ``<key>.txt`` (the
    clip's text, e.g. its AudioSet labels joined with ", ") form sample ``<key>``.

    Shards are read, split and numbered as :class:`~lit_clip.datamodules.webdataset.WebDatasetPairs` reads them
    (its helpers: splitting over ranks and workers, ``index`` = shard number * 2**32 + position in the shard, and
    exactly ``train_samples_per_epoch // (world_size * batch_size)`` training batches per rank and epoch); see its
    docstring for ``resampled`` and for what DDP needs of the shards. The sound bytes are decoded in memory by
    soundfile (:func:`read_audio`); a bad sample (undecodable or empty sound, no sound member, missing or empty
    text) is left out of its batch and listed in ``skipped_index``, or raised naming shard and key.

    Batches: ``{"audio" [B, channels, L], "text" [B, context_length], "caption", "index", "key", "skipped_index",
    "sample_rate"}``.
    """

    def __init__(
        self,
        train_shards: str,
        train_samples_per_epoch: int,
        val_shards: str | None = None,
        resampled: bool = False,
        audio_keys: str = "flac;wav;ogg",
        text_key: str = "txt",
        sample_rate: int = 44100,
        duration: float = 10.0,
        channels: int = 1,
        context_length: int = 77,
        batch_size: int = 64,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        augment: bool = True,
    ):
        """
        Args:
            train_shards: the training shards, brace-expanded (``"data/shard-{000000..000099}.tar"``, URLs, several
                lists joined by ``::``).
            train_samples_per_epoch: samples in one training epoch over all ranks.
            val_shards: the validation shards, in the same notation; None for no validation.
            resampled: draw training shards at random with replacement instead of reading each once.
            audio_keys: the sound's file extension in a sample, alternatives separated by ``;``, first match used.
            text_key: the text's file extension (UTF-8).
            sample_rate, duration, channels: as :class:`AudioClips`'.
            context_length: token length of the texts.
            batch_size: per process; num_workers: DataLoader worker processes per process.
            bad_samples: "skip" bad samples (unreadable shards are skipped with a warning) or "raise".
            augment: AudioCLIP's training augmentation; False: training clips are only padded / cropped (centred).
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(sample_rate, duration, bad_samples, channels)
        if train_samples_per_epoch < 1:
            raise ValueError(f"train_samples_per_epoch must be positive, got {train_samples_per_epoch}")
        self.audio_keys = [key.strip().lower() for key in audio_keys.split(";") if key.strip()]
        if not self.audio_keys:
            raise ValueError(f"audio_keys {audio_keys!r} names no extension")

    @property
    def out_len(self) -> int:
        return round(self.hparams.sample_rate * self.hparams.duration)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            _check_local_shards(self.hparams.train_shards)
        if self.hparams.val_shards is not None and stage in ("fit", "validate"):
            _check_local_shards(self.hparams.val_shards)

    def train_dataloader(self) -> Iterable[dict]:
        h = self.hparams
        samples, batches = training_samples(
            h.train_shards, h.resampled, h.num_workers, h.batch_size, h.train_samples_per_epoch,
            shard_error_handler(h.bad_samples),
        )
        transform = audio_train_transform(self.out_len) if h.augment else audio_eval_transform(self.out_len)
        pipeline = samples.compose(self._decoder(transform))
        return _ExactBatches(self._loader(pipeline, train=True), batches, h.train_shards)

    def val_dataloader(self) -> DataLoader | list:
        h = self.hparams
        if h.val_shards is None:
            return []
        samples = evaluation_samples(h.val_shards, shard_error_handler(h.bad_samples))
        return self._loader(samples.compose(self._decoder(audio_eval_transform(self.out_len))), train=False)

    def _loader(self, dataset: IterableDataset, train: bool) -> DataLoader:
        h = self.hparams
        return DataLoader(
            dataset,
            batch_size=h.batch_size,
            drop_last=train,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            collate_fn=with_sample_rate(without_bad_samples(training=train), h.sample_rate),
        )

    def _decoder(self, transform: Callable) -> Callable:
        h = self.hparams
        decode = functools.partial(
            _decode_clip,
            audio_keys=self.audio_keys,
            text_key=h.text_key.lower(),
            reader=AudioReader(h.sample_rate, channels=h.channels),
            transform=transform,
            context_length=h.context_length,
        )
        return functools.partial(decoded, decode=decode, policy=h.bad_samples)


def _decode_clip(
    sample: dict, audio_keys: list[str], text_key: str, reader: AudioReader, transform: Callable, context_length: int
) -> dict:
    audio_key = sample_member(sample, audio_keys, "sound")
    text = sample_text(sample, text_key, "text")
    wave = reader(sample[audio_key], name=f"{sample_name(sample)}.{audio_key}")
    return {
        "audio": transform(wave),
        "text": tokenize(text, context_length=context_length)[0],
        "caption": text,
        "index": sample["__index__"],
        "key": sample["__key__"],
    }
