"""ShapesWorld's sounds: every object makes a sound that names it, so a scene is an image, a sound and a caption.

An object's sound is a tone whose **pitch is its colour** (eight fundamentals half an octave apart, 220 Hz for
red up to 2.5 kHz for pink) and whose **timbre and rhythm are its shape**:

=========  ===========  ==========================================================
shape      timbre       rhythm
=========  ===========  ==========================================================
circle     sine         steady
ring       sine         tremolo (a circle with a hole: the tone flutters at 9 Hz)
square     odd          steady (odd harmonics, a clarinet-like square wave)
diamond    odd          pulsed (a square turned: the tone gated on and off at 4 Hz)
triangle   saw          plucked (three decaying plucks a second)
star       saw          tremolo
hexagon    organ        steady (the first four harmonics, equally loud)
cross      organ        pulsed
=========  ===========  ==========================================================

A large object is twice as loud as a small one. Each sound varies a little (detune up to 2 %, its own phase, onset
and loudness), and a scene's sound is its objects' sounds mixed over low white noise. Sounds are band-limited
(harmonics above the Nyquist frequency are left out) and deterministic: a function of the world's seed, the split,
the index and the scene. Like :mod:`~lit_clip.datamodules.shapesworld.world`, this file needs numpy only.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lit_clip.datamodules.shapesworld.world import COLORS, SHAPES, Scene, ShapeObject, ShapesWorld

# Half an octave apart: far more than any detune, and every fundamental below 4 kHz (the Nyquist frequency at 8 kHz).
FUNDAMENTALS: dict[str, float] = {color: 220.0 * 2 ** (k / 2) for k, color in enumerate(COLORS)}
TIMBRES: dict[str, str] = {
    "circle": "sine", "ring": "sine", "square": "odd", "diamond": "odd",
    "triangle": "saw", "star": "saw", "hexagon": "organ", "cross": "organ",
}  # fmt: skip
RHYTHMS: dict[str, str] = {
    "circle": "steady", "ring": "tremolo", "square": "steady", "diamond": "pulsed",
    "triangle": "plucked", "star": "tremolo", "hexagon": "steady", "cross": "pulsed",
}  # fmt: skip
_LOUDNESS = {"small": 0.15, "large": 0.3}
_NOISE = 0.01  # standard deviation of the scene's white noise
_MAX_DETUNE = 0.02
# Tags that keep the sound streams apart from each other and from the images' (see ShapesWorld.scene).
_SCENE_SOUND_STREAM, _OBJECT_SOUND_STREAM = 101, 102
assert set(TIMBRES) == set(RHYTHMS) == set(SHAPES), "every shape needs a timbre and a rhythm"


def harmonic_amplitudes(timbre: str) -> dict[int, float]:
    """The relative amplitude of each harmonic (1 = the fundamental) of a timbre."""
    if timbre == "sine":
        return {1: 1.0}
    if timbre == "odd":
        return {n: 1.0 / n for n in (1, 3, 5, 7, 9)}
    if timbre == "saw":
        return {n: 1.0 / n for n in range(1, 9)}
    if timbre == "organ":
        return {n: 0.5 for n in range(1, 5)}
    raise ValueError(f"unknown timbre {timbre!r}; expected sine, odd, saw or organ")


def envelope(rhythm: str, time: np.ndarray, phase: float) -> np.ndarray:
    """The loudness over ``time`` (seconds since the sound's onset) of a rhythm; ``phase`` in [0, 1) shifts it."""
    if rhythm == "steady":
        return np.ones_like(time)
    if rhythm == "tremolo":
        return 0.55 + 0.45 * np.sin(2 * np.pi * (9.0 * time + phase))
    if rhythm == "pulsed":
        return ((4.0 * time + phase) % 1.0 < 0.5).astype(time.dtype)
    if rhythm == "plucked":
        return np.exp(-12.0 * (((3.0 * time + phase) % 1.0) / 3.0))
    raise ValueError(f"unknown rhythm {rhythm!r}; expected steady, tremolo, pulsed or plucked")


def object_sound(obj: ShapeObject, rng: np.random.Generator, sample_rate: int, samples: int) -> np.ndarray:
    """The sound of one object, ``[samples]`` float64; silent before its onset (in the first fifth of the clip)."""
    fundamental = FUNDAMENTALS[obj.color] * (1 + rng.uniform(-_MAX_DETUNE, _MAX_DETUNE))
    onset = int(rng.integers(0, max(1, samples // 5)))
    time = np.arange(samples - onset) / sample_rate
    tone = np.zeros_like(time)
    for harmonic, amplitude in harmonic_amplitudes(TIMBRES[obj.shape]).items():
        if harmonic * fundamental < sample_rate / 2:  # band-limited: nothing folds back below Nyquist
            tone += amplitude * np.sin(2 * np.pi * harmonic * fundamental * time + rng.uniform(0, 2 * np.pi))
    loudness = _LOUDNESS[obj.size] * rng.uniform(0.8, 1.2)
    sound = np.zeros(samples)
    sound[onset:] = loudness * envelope(RHYTHMS[obj.shape], time, rng.uniform()) * tone
    return sound


def mix(objects: Sequence[ShapeObject], rng: np.random.Generator, sample_rate: int, samples: int) -> np.ndarray:
    """The objects' sounds over white noise, ``[samples]`` float32 in [-1, 1]."""
    sound = rng.normal(0.0, _NOISE, samples)
    for obj in objects:
        sound += object_sound(obj, rng, sample_rate, samples)
    return np.clip(sound, -1.0, 1.0).astype(np.float32)


class ShapesWorldSounds:
    """The sounds of a :class:`ShapesWorld`'s scenes: ``sample_rate`` Hz, ``duration`` seconds, mono."""

    def __init__(self, world: ShapesWorld, sample_rate: int = 8000, duration: float = 1.0):
        if sample_rate < 2 * max(FUNDAMENTALS.values()):
            raise ValueError(
                f"sample_rate {sample_rate} Hz is below twice the highest pitch ({max(FUNDAMENTALS.values()):.0f} Hz)"
            )
        if duration <= 0:
            raise ValueError(f"duration must be positive, got {duration} s")
        self.world, self.sample_rate, self.samples = world, sample_rate, round(sample_rate * duration)

    def scene(self, split: str, index: int, allowed: Sequence[str] | None = None) -> tuple[Scene, np.ndarray]:
        """Scene ``index`` of ``split`` (as ``ShapesWorld.scene``) and its sound."""
        scene = self.world.scene(split, index, allowed)
        rng = np.random.default_rng([self.world.seed, ShapesWorld.SPLITS.index(split), index, _SCENE_SOUND_STREAM])
        return scene, mix(scene.objects, rng, self.sample_rate, self.samples)

    def single_object(self, split: str, index: int, class_index: int) -> tuple[Scene, np.ndarray]:
        """A scene of one object of colour-shape class ``class_index`` (as ``ShapesWorld.single_object_scene``)
        and its sound."""
        scene = self.world.single_object_scene(split, index, class_index)
        split_id = ShapesWorld.SPLITS.index(split)
        rng = np.random.default_rng([self.world.seed, split_id, index, _OBJECT_SOUND_STREAM, 1 + class_index])
        return scene, mix(scene.objects, rng, self.sample_rate, self.samples)
