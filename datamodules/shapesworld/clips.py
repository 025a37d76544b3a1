"""ShapesWorld clips: short videos of moving shapes whose captions state the motion (the data of the video methods).

A clip is ``num_frames`` frames of one object doing one motion of :data:`MOTIONS` on a static ShapesWorld
background ("a red circle moves to the left", "the blue star is growing"), or of two objects swapping places.
Frames are drawn with the image world's shapes, colours and rasteriser (see :mod:`.world`) and get fresh sensor
noise each; the action label of a clip is the index of its motion in :data:`MOTIONS`.

Motions that mirror each other in time (left / right, up / down, growing / shrinking) cannot be told apart from
one frame: a clip's pose at its middle frame (``num_frames // 2``, the frame a one-frame sampler takes) is drawn
from the same distribution whichever of the two motions it shows; only the direction of the motion through that
pose differs. With ``clip(split, index, motion=...)`` the two motions of a pair render the same
middle frame exactly, pixel for pixel.

Held-out compositions "<shape> <motion>" ("star moving left") never occur in a "train" clip and occur in "val"
and "test"; ``clip(..., allowed=...)`` draws from a set of compositions only (the held-out ones: a zero-shot test).
:meth:`ShapesWorldClips.long_video` strings clips together into one longer video with each segment's caption and
its time span in seconds, the timed captions of VideoCLIP's data.

Deterministic like the images: clip ``(seed, split, index)`` is always the same, in any worker or rank. Like
:mod:`.world`, this file depends on numpy and Pillow only.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lit_clip.datamodules.shapesworld.world import (
    _MAX_ROTATION_DEG,
    _NOISE,
    _OUTLINES,
    _RADIUS,
    COLOR_RGB,
    COLORS,
    SHAPES,
    SIZES,
    _article,
    _background,
    _rasterize,
)

MOTIONS: tuple[str, ...] = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "growing",
    "shrinking",
    "swapping places",
)
# Image y grows down.
_DIRECTIONS = {
    "moving left": (-1.0, 0.0),
    "moving right": (1.0, 0.0),
    "moving up": (0.0, -1.0),
    "moving down": (0.0, 1.0),
}
_GROWTH_SIGN = {"growing": 1.0, "shrinking": -1.0}
_SWAP = "swapping places"

# Distance a moving object travels over a clip, as a fraction of the image size.
_TRAVEL = (0.25, 0.35)
# A growing or shrinking object: its radius at the middle frame (fraction of the image size), and the ratio of its
# largest to its smallest radius over the clip.
_MIDDLE_RADIUS = (0.11, 0.15)
_GROWTH = (2.0, 2.5)
# Two objects swapping places keep at least this many pixels between their bounding circles.
_SWAP_GAP = 1.0

# Stream tags of the random generators: a clip of a split, a clip of a set of compositions, a long video.
_CLIP_STREAM, _ALLOWED_STREAM, _LONG_STREAM = 1, 2, 3

# What each motion's caption says: finite verb phrases ("moves to the left") and participles ("moving left"). The
# plural ones of swapping places take the two objects as subject; "swaps places with" takes one on each side.
_FINITE = {
    "moving left": ("moves to the left", "moves left", "is moving left", "slides to the left", "travels left"),
    "moving right": ("moves to the right", "moves right", "is moving right", "slides to the right", "travels right"),
    "moving up": ("moves up", "moves upward", "is moving up", "rises", "slides up"),
    "moving down": ("moves down", "moves downward", "is moving down", "falls", "slides down"),
    "growing": ("grows", "is growing", "gets bigger", "expands", "grows larger"),
    "shrinking": ("shrinks", "is shrinking", "gets smaller", "contracts", "shrinks down"),
    _SWAP: ("swap places", "are swapping places", "trade places", "switch places"),
}
_PARTICIPLE = {
    "moving left": ("moving left", "moving to the left", "sliding to the left"),
    "moving right": ("moving right", "moving to the right", "sliding to the right"),
    "moving up": ("moving up", "moving upward", "rising"),
    "moving down": ("moving down", "moving downward", "falling"),
    "growing": ("growing", "getting bigger", "expanding"),
    "shrinking": ("shrinking", "getting smaller", "contracting"),
    _SWAP: ("swapping places", "trading places"),
}
_SWAPS_WITH = ("swaps places with", "trades places with", "switches places with")
_TEMPLATES = (
    "{a} {finite}.",
    "{the} {finite}.",
    "a video of {a} {participle}.",
    "a clip of {a} {participle}.",
    "{a} {participle}.",
    "in this video, {the} {finite}.",
)
_SINGLE_TEMPLATES = (*_TEMPLATES, "there is {a} {participle}.")
_PAIR_TEMPLATES = (*_TEMPLATES, "there are {a} {participle}.", "{one} {swaps_with} {other}.")


@dataclass(frozen=True)
class ClipObject:
    """An object of a clip and where it is in each frame (pixels of the full, unoccluded shape)."""

    shape: str
    color: str
    size: str | None  # "small" / "large" while its size stays the same; None when it grows or shrinks
    centers: np.ndarray  # [T, 2] float (x, y)
    boxes: np.ndarray  # [T, 4] float, COCO xywh

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass
class Clip:
    frames: list[Image.Image]  # num_frames RGB images
    caption: str
    motion: int  # index into MOTIONS: the action label
    objects: list[ClipObject]

    @property
    def motion_name(self) -> str:
        return MOTIONS[self.motion]

    @property
    def compositions(self) -> list[str]:
        """The "<shape> <motion>" compositions the clip shows, one per object."""
        return [f"{obj.shape} {self.motion_name}" for obj in self.objects]


@dataclass
class TimedVideo:
    """Clips in a row: ``frames`` of all of them, and per segment its caption, action label and ``[start, end)``
    time span in seconds at ``frames_per_second`` (segment ``k`` shows frames ``start * fps`` to ``end * fps``)."""

    frames: list[Image.Image]
    captions: list[str]
    motions: list[int]
    spans: list[tuple[float, float]]
    frames_per_second: float


@dataclass(frozen=True)
class _Track:
    """An object's drawing over a clip: its outline turned once, then scaled and moved per frame."""

    shape: str
    color_idx: int
    size: str | None
    unit_outlines: tuple[np.ndarray, ...]  # the rotated outlines at radius 1, centred on 0
    centers: np.ndarray  # [T, 2]
    radii: np.ndarray  # [T]

    def outlines(self, frame: int) -> list[np.ndarray]:
        return [polygon * self.radii[frame] + self.centers[frame] for polygon in self.unit_outlines]


def _composition_mask(names: Sequence[str], what: str) -> np.ndarray:
    """``[len(MOTIONS), len(SHAPES)]`` bool, True for each composition of ``names``."""
    if isinstance(names, str):
        raise ValueError(f"{what} must be a list of '<shape> <motion>' compositions, got the string {names!r}")
    mask = np.zeros((len(MOTIONS), len(SHAPES)), dtype=bool)
    for name in names:
        shape, _, motion = str(name).partition(" ")
        if shape not in SHAPES or motion not in MOTIONS:
            raise ValueError(
                f"unknown {what} composition {name!r}; expected '<shape> <motion>' with a shape of {list(SHAPES)} "
                f"and a motion of {list(MOTIONS)}, e.g. 'star moving left'"
            )
        mask[MOTIONS.index(motion), SHAPES.index(shape)] = True
    return mask


class ShapesWorldClips:
    """Deterministic generator of ShapesWorld clips and of long videos with timed captions.

    Args:
        image_size: side of the square frames in pixels (at least 16).
        num_frames: frames of a clip (at least 2); its middle frame is ``num_frames // 2``.
        frames_per_second: the clips' nominal frame rate: a clip lasts ``num_frames / frames_per_second`` seconds.
        seed: selects the world; clip ``(seed, split, index)`` is always the same video (for a given numpy and
            Pillow version).
        held_out: "<shape> <motion>" compositions ("star moving left") that never occur in a "train" clip, caption
            or label (a two-object clip shows the motion with both its shapes): zero-shot compositions for
            "val" and "test".
    """

    SPLITS = ("train", "val", "test")

    def __init__(
        self,
        image_size: int = 64,
        num_frames: int = 8,
        frames_per_second: float = 4.0,
        seed: int = 0,
        held_out: Sequence[str] = (),
    ):
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        if num_frames < 2:
            raise ValueError(f"num_frames must be at least 2 (a motion needs two frames), got {num_frames}")
        if not frames_per_second > 0:
            raise ValueError(f"frames_per_second must be positive, got {frames_per_second}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        held = _composition_mask(held_out, "held_out")
        self.image_size, self.num_frames, self.frames_per_second = image_size, num_frames, float(frames_per_second)
        self.seed, self.held_out = seed, tuple(held_out)
        self.middle_frame = num_frames // 2
        # The compositions each split may draw from, as [motion, shape] masks.
        self._compositions = {split: np.ones_like(held) for split in self.SPLITS}
        self._compositions["train"] = ~held
        for motion, shapes in zip(MOTIONS, self._compositions["train"]):
            if not shapes.any():
                raise ValueError(f"held_out holds every shape of {motion!r}; the train split needs at least one")

    @property
    def duration(self) -> float:
        """Length of a clip in seconds."""
        return self.num_frames / self.frames_per_second

    # -- public API ---------------------------------------------------------------

    def clip(
        self, split: str, index: int, allowed: Sequence[str] | None = None, motion: str | int | None = None
    ) -> Clip:
        """Clip ``index`` of ``split``; a function of (seed, split, index, allowed, motion) only.

        Motions are balanced: clip ``index`` shows the ``index % n``-th of the n motions it may draw.
        ``allowed``: "<shape> <motion>" compositions to draw from instead of all those of the split (e.g. the
        held-out ones, for a zero-shot test), a stream of clips of its own. ``motion``: show this motion (a name
        or an index into MOTIONS) instead; everything else comes from the same draws, so the two motions of a
        mirrored pair (left / right, up / down, growing / shrinking) give the same middle frame (when the same
        shapes may show both).
        """
        split_id = self._split_id(split)
        if allowed is None:
            compositions = self._compositions[split]
            rng = np.random.default_rng([self.seed, split_id, index, _CLIP_STREAM])
        else:
            compositions = self._allowed(split, allowed)
            bits = sum(1 << int(i) for i in np.flatnonzero(compositions))  # tells each set's stream from the others'
            rng = np.random.default_rng([self.seed, split_id, index, _ALLOWED_STREAM, bits])
        motions = np.flatnonzero(compositions.any(axis=1))
        if motion is None:
            motion_id = int(motions[index % len(motions)])
        else:
            motion_id = self._motion_id(motion, compositions, split)
        tracks = self._tracks(rng, motion_id, np.flatnonzero(compositions[motion_id]))
        frames = self._draw(rng, _background(rng, self.image_size), tracks)
        return Clip(frames, _caption(rng, MOTIONS[motion_id], tracks), motion_id, self._objects(tracks))

    def long_video(self, split: str, index: int, segments: int) -> TimedVideo:
        """Long video ``index`` of ``split``: ``segments`` clips in a row on one background, each of its own
        objects and motion (drawn at random from the split's compositions) and with its own caption and time span."""
        split_id = self._split_id(split)
        if segments < 1:
            raise ValueError(f"segments must be at least 1, got {segments}")
        rng = np.random.default_rng([self.seed, split_id, index, _LONG_STREAM, segments])
        compositions = self._compositions[split]
        motions = np.flatnonzero(compositions.any(axis=1))
        background = _background(rng, self.image_size)
        frames, captions, labels = [], [], []
        for _ in range(segments):
            motion_id = int(motions[rng.integers(len(motions))])
            tracks = self._tracks(rng, motion_id, np.flatnonzero(compositions[motion_id]))
            frames += self._draw(rng, background, tracks)
            captions.append(_caption(rng, MOTIONS[motion_id], tracks))
            labels.append(motion_id)
        spans = [(k * self.duration, (k + 1) * self.duration) for k in range(segments)]
        return TimedVideo(frames, captions, labels, spans, self.frames_per_second)

    # -- helpers ------------------------------------------------------------------

    def _split_id(self, split: str) -> int:
        if split not in self.SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(self.SPLITS)}")
        return self.SPLITS.index(split)

    def _allowed(self, split: str, allowed: Sequence[str]) -> np.ndarray:
        mask = _composition_mask(allowed, "allowed")
        if not mask.any():
            raise ValueError("allowed must name at least one '<shape> <motion>' composition, got none")
        excluded = [f"{SHAPES[s]} {MOTIONS[m]}" for m, s in zip(*np.nonzero(mask & ~self._compositions[split]))]
        if excluded:
            raise ValueError(f"{excluded} are held out and cannot be drawn in split {split!r}")
        return mask

    @staticmethod
    def _motion_id(motion: str | int, compositions: np.ndarray, split: str) -> int:
        if isinstance(motion, str):
            if motion not in MOTIONS:
                raise ValueError(f"unknown motion {motion!r}; expected one of {list(MOTIONS)}")
            motion = MOTIONS.index(motion)
        if not 0 <= motion < len(MOTIONS):
            raise ValueError(f"motion index {motion} out of range for {len(MOTIONS)} motions")
        if not compositions[motion].any():
            raise ValueError(f"no shape may be drawn {MOTIONS[motion]!r} in split {split!r} with these compositions")
        return int(motion)

    def _tracks(self, rng: np.random.Generator, motion_id: int, shapes: np.ndarray) -> list[_Track]:
        """The objects of a clip showing motion ``motion_id``, their shapes drawn from ``shapes`` (indices).

        Every draw but the motion's direction is the same for both motions of a mirrored pair, so that their
        middle frames are the same: a pair differs only in which way the path through that frame is walked.
        """
        motion = MOTIONS[motion_id]
        if motion == _SWAP:
            return self._swap(rng, shapes)
        size, frames = self.image_size, self.num_frames
        middle = frames // 2
        reach = max(middle, frames - 1 - middle)  # frames from the middle one to the farther end
        offsets = np.arange(frames, dtype=np.float64) - middle
        shape = SHAPES[int(shapes[rng.integers(len(shapes))])]
        color_idx = int(rng.integers(len(COLORS)))
        unit = _turned_outlines(rng, shape)
        low, high = unit[0].min(axis=0), unit[0].max(axis=0)
        if motion in _DIRECTIONS:
            size_name = SIZES[int(rng.integers(len(SIZES)))]
            radius = _RADIUS[size_name] * size
            step = rng.uniform(*_TRAVEL) * size / (frames - 1)
            direction = np.array(_DIRECTIONS[motion])
            # The middle pose leaves room for the path either way along its axis, so mirrored motions share it.
            margin = reach * step * np.abs(direction)
            middle_center = rng.uniform(-low * radius + margin, size - high * radius - margin)
            centers = middle_center + offsets[:, None] * step * direction
            radii = np.full(frames, radius)
        else:
            size_name = None
            radius = rng.uniform(*_MIDDLE_RADIUS) * size
            ratio = rng.uniform(*_GROWTH) ** (1 / (frames - 1))  # radius ratio of consecutive frames
            largest = radius * ratio**reach  # the largest radius either way, so mirrored motions share the middle pose
            middle_center = rng.uniform(-low * largest, size - high * largest)
            centers = np.tile(middle_center, (frames, 1))
            radii = radius * ratio ** (_GROWTH_SIGN[motion] * offsets)
        return [_Track(shape, color_idx, size_name, unit, centers, radii)]

    def _swap(self, rng: np.random.Generator, shapes: np.ndarray) -> list[_Track]:
        """Two small objects swap places along the two halves of an ellipse, one on each side of the line between
        them: their bounding circles stay apart in every frame, and each ends exactly where the other started."""
        size, frames = self.image_size, self.num_frames
        radius = _RADIUS["small"] * size
        picks = [int(shapes[i]) for i in rng.integers(len(shapes), size=2)]
        colors = [int(c) for c in rng.integers(len(COLORS), size=2)]
        if picks[0] == picks[1] and colors[0] == colors[1]:  # two objects of one name could not be told apart
            colors[1] = (colors[1] + int(rng.integers(1, len(COLORS)))) % len(COLORS)
        units = [_turned_outlines(rng, SHAPES[shape]) for shape in picks]
        extents = [float(np.linalg.norm(unit[0], axis=1).max()) * radius for unit in units]
        apart = extents[0] + extents[1] + _SWAP_GAP  # the nearest the two centres come, along either axis
        reach = max(extents)
        distance = rng.uniform(apart, size - 2 * reach)  # between the start positions
        width = rng.uniform(apart, size - 2 * reach)  # between the two paths at half time
        along = rng.uniform(distance / 2 + reach, size - distance / 2 - reach)
        across = rng.uniform(width / 2 + reach, size - width / 2 - reach)
        axis = int(rng.integers(2))  # 0: they start side by side, 1: one above the other
        side = 1.0 if rng.random() < 0.5 else -1.0  # which one passes on which side
        angle = np.linspace(0.0, math.pi, frames)
        tracks = []
        for k, sign in enumerate((-1.0, 1.0)):
            path = np.empty((frames, 2))
            path[:, axis] = along + sign * distance / 2 * np.cos(angle)
            path[:, 1 - axis] = across + sign * side * width / 2 * np.sin(angle)
            tracks.append(_Track(SHAPES[picks[k]], colors[k], "small", units[k], path, np.full(frames, radius)))
        return tracks

    def _draw(self, rng: np.random.Generator, background: Image.Image, tracks: list[_Track]) -> list[Image.Image]:
        size = self.image_size
        # Brightness jitter per object, as in the images; kept over the clip.
        colors = [tuple(np.clip(COLOR_RGB[t.color_idx] * rng.uniform(0.85, 1.08), 0, 255).astype(int)) for t in tracks]
        frames = []
        for k in range(len(tracks[0].radii)):
            image = background.copy()
            for track, rgb in zip(tracks, colors):
                outlines = track.outlines(k)
                box = (*outlines[0].min(axis=0).tolist(), *outlines[0].max(axis=0).tolist())
                crop, coverage = _rasterize(outlines, box, size)
                image.paste(rgb, crop, coverage)
            noise = rng.integers(-_NOISE, _NOISE + 1, size=(size, size, 1), dtype=np.int16)
            frames.append(Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)))
        return frames

    @staticmethod
    def _objects(tracks: list[_Track]) -> list[ClipObject]:
        objects = []
        for track in tracks:
            outline = track.unit_outlines[0]
            low = track.centers + track.radii[:, None] * outline.min(axis=0)
            high = track.centers + track.radii[:, None] * outline.max(axis=0)
            boxes = np.concatenate([low, high - low], axis=1)
            objects.append(ClipObject(track.shape, COLORS[track.color_idx], track.size, track.centers, boxes))
        return objects


def _turned_outlines(rng: np.random.Generator, shape: str) -> tuple[np.ndarray, ...]:
    """A shape's outlines at radius 1, turned by a small random angle (kept over the clip)."""
    angle = math.radians(rng.uniform(-_MAX_ROTATION_DEG, _MAX_ROTATION_DEG))
    rotation = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    return tuple(polygon @ rotation for polygon in _OUTLINES[shape])


def _caption(rng: np.random.Generator, motion: str, tracks: list[_Track]) -> str:
    """A true caption naming the colour and shape of every object and the motion, in a random phrasing."""
    phrases = []
    for track in tracks:
        words = f"{COLORS[track.color_idx]} {track.shape}"
        if track.size is not None and len(tracks) == 1 and rng.random() < 0.4:
            words = f"{track.size} {words}"
        phrases.append(words)
    finite = _FINITE[motion][int(rng.integers(len(_FINITE[motion])))]
    participle = _PARTICIPLE[motion][int(rng.integers(len(_PARTICIPLE[motion])))]
    indefinite = [f"{_article(words)} {words}" for words in phrases]
    definite = [f"the {words}" for words in phrases]
    if len(tracks) == 1:
        template = _SINGLE_TEMPLATES[int(rng.integers(len(_SINGLE_TEMPLATES)))]
        return template.format(a=indefinite[0], the=definite[0], finite=finite, participle=participle)
    template = _PAIR_TEMPLATES[int(rng.integers(len(_PAIR_TEMPLATES)))]
    article = indefinite if rng.random() < 0.5 else definite
    return template.format(
        a=" and ".join(indefinite),
        the=" and ".join(definite),
        finite=finite,
        participle=participle,
        one=article[0],
        other=article[1],
        swaps_with=_SWAPS_WITH[int(rng.integers(len(_SWAPS_WITH)))],
    )
