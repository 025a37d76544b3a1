"""ShapesWorld: a deterministic procedural world of coloured shapes.

The default data of lit-clip (see shared/design/SHAPESWORLD.md): every image is
generated on the fly from ``(seed, split, index)``, so any DataLoader worker or
DDP rank can produce its own share of a data set without files and without
duplicates, and every task has ground truth: captions for contrastive
pretraining, class labels for zero-/few-shot classification, boxes and masks
for detection and segmentation.

An image holds 1 to N objects on a grey, low-saturation textured background.
An object is a shape (8), a colour (8), a size (small / large) and a position.
Captions are varied natural sentences that are always true of the image and
always name the colour and shape of every object, since they are where a
CLIP model learns the colour-shape vocabulary from.

This file deliberately depends on numpy and Pillow only (no torch), so that it
can be used by exporters and tests without the training stack.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "ring")
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
SIZES: tuple[str, ...] = ("small", "large")
VOCABULARIES: tuple[str, ...] = ("shape", "color", "color_shape")

# Saturated colours, far apart in RGB and from any grey, so the background is never
# mistaken for an object and no two colour words describe the same pixels.
COLOR_RGB = np.array(
    [
        (220, 40, 40),  # red
        (245, 140, 20),  # orange
        (240, 220, 30),  # yellow
        (40, 170, 60),  # green
        (30, 200, 220),  # cyan
        (40, 70, 220),  # blue
        (140, 50, 190),  # purple
        (245, 120, 190),  # pink
    ],
    dtype=np.float64,
)

# Radius of an object as a fraction of the image size.
_RADIUS = {"small": 0.14, "large": 0.22}
# Shapes are drawn this many times larger and box-downsampled: cheap antialiasing.
_SUPERSAMPLE = 4
# A coverage of at least half a pixel makes the pixel part of an object's mask.
_MASK_THRESHOLD = 128
# A new object may hide at most this fraction of an earlier one, so every object
# stays recognisable (a half-hidden star no longer reads as a star).
_MAX_HIDDEN = 0.35
_PLACEMENT_TRIES = 10  # random poses tried per object before it is dropped
_SCENE_TRIES = 100  # redraws of a scene left with fewer than min_objects objects
# Small in-plane rotations vary the look without turning a square into a diamond.
_MAX_ROTATION_DEG = 12.0
# Relations are only stated when the centres are this far apart (fraction of the
# image size) along the dominant axis, so they are clearly true.
_RELATION_MARGIN = 0.15
# Per-pixel luminance noise of the whole image, objects included, like sensor noise.
_NOISE = 10


def _regular_polygon(n: int, radius: float, phase_deg: float) -> list[tuple[float, float]]:
    phase = math.radians(phase_deg)
    return [
        (radius * math.cos(phase + 2 * math.pi * k / n), radius * math.sin(phase + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _star(points: int, outer: float, inner: float) -> list[tuple[float, float]]:
    vertices = []
    for k in range(2 * points):
        radius = outer if k % 2 == 0 else inner
        angle = -math.pi / 2 + math.pi * k / points  # first tip points up (image y grows down)
        vertices.append((radius * math.cos(angle), radius * math.sin(angle)))
    return vertices


def _cross(arm: float, half_width: float) -> list[tuple[float, float]]:
    a, w = arm, half_width
    return [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]


# Outlines in units of the object radius, centred on the object centre. A shape is a
# filled outline minus optional holes. Extents differ a little so that shapes of the
# same size look about equally big.
_OUTLINES: dict[str, tuple[np.ndarray, ...]] = {
    name: tuple(np.array(polygon, dtype=np.float64) for polygon in polygons)
    for name, polygons in {
        "circle": (_regular_polygon(32, 1.0, 0),),
        "square": (_regular_polygon(4, 1.1, 45),),
        "triangle": (_regular_polygon(3, 1.2, -90),),
        "star": (_star(5, 1.2, 0.5),),
        "cross": (_cross(1.05, 0.36),),
        "diamond": ([(0.0, -1.15), (0.7, 0.0), (0.0, 1.15), (-0.7, 0.0)],),
        "hexagon": (_regular_polygon(6, 1.05, 0),),
        "ring": (_regular_polygon(32, 1.05, 0), _regular_polygon(32, 0.55, 0)),
    }.items()
}

_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"
)
_SINGLE_TEMPLATES = (
    "a photo of {}.",
    "a picture of {}.",
    "an image of {}.",
    "{}.",
    "there is {} in the image.",
    "{} on a textured background.",
    "a rendering of {}.",
)
_LIST_TEMPLATES = (
    "{objects}.",
    "a photo of {objects}.",
    "a picture of {count} shapes: {objects}.",
    "{count} shapes: {objects}.",
    "there are {count} shapes: {objects}.",
    "an image with {objects}.",
)
_RELATION_TEMPLATES = (
    "{a} {relation} {b}",
    "there is {a} {relation} {b}",
    "a photo of {a} {relation} {b}",
    "{a} is {relation} {b}",
)


def class_names(vocabulary: str) -> list[str]:
    """Class names of a vocabulary: 'shape' (8), 'color' (8) or 'color_shape' (64).

    'color_shape' is colour-major: the index of "red circle" is color_idx * 8 + shape_idx.
    """
    _check_vocabulary(vocabulary)
    if vocabulary == "shape":
        return list(SHAPES)
    if vocabulary == "color":
        return list(COLORS)
    return [f"{color} {shape}" for color in COLORS for shape in SHAPES]


def _check_vocabulary(vocabulary: str) -> None:
    if vocabulary not in VOCABULARIES:
        raise ValueError(f"unknown vocabulary {vocabulary!r}; expected one of {list(VOCABULARIES)}")


def _class_of_pair(color_idx: int, shape_idx: int, vocabulary: str) -> int:
    if vocabulary == "shape":
        return shape_idx
    if vocabulary == "color":
        return color_idx
    return color_idx * len(SHAPES) + shape_idx


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    color: str
    size: str
    box: tuple[float, float, float, float]  # COCO xywh in pixels of the full (unoccluded) shape
    center: tuple[float, float]

    def class_index(self, vocabulary: str = "color_shape") -> int:
        _check_vocabulary(vocabulary)
        return _class_of_pair(COLORS.index(self.color), SHAPES.index(self.shape), vocabulary)

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass
class Scene:
    image: Image.Image  # RGB, image_size x image_size
    objects: list[ShapeObject]  # in drawing order, later ones on top
    instance_masks: np.ndarray  # [n_objects, H, W] bool, visible pixels only
    caption: str
    noun_phrases: list[str]  # "{size} {color} {shape}" per object, in drawing order
    # The caption's phrases that name objects ("a small red circle", "two blue stars"): each one's character
    # span in the caption (end exclusive) and the indices of the objects it names, for grounding.
    grounded_phrases: list[tuple[tuple[int, int], tuple[int, ...]]]

    def semantic_mask(self, vocabulary: str = "color_shape") -> np.ndarray:
        """[H, W] int64: 0 for background, 1 + class index where an object is visible."""
        _check_vocabulary(vocabulary)
        mask = np.zeros(self.instance_masks.shape[1:], dtype=np.int64)
        for obj, instance in zip(self.objects, self.instance_masks):
            mask[instance] = 1 + obj.class_index(vocabulary)
        return mask


class ShapesWorld:
    """Deterministic generator of ShapesWorld scenes and classification samples.

    Args:
        image_size: side of the square images in pixels (at least 16).
        min_objects, max_objects: range of the number of objects per scene (uniform). Every
            object keeps most of its area visible, so more than about 8 rarely fit.
        seed: selects the world; scene ``(seed, split, index)`` is always the same image
            (for a given numpy and Pillow version).
        held_out: colour-shape names ("purple star") that never occur in a "train" scene,
            caption or label: the novel classes of open-vocabulary and compositional tests.
    """

    SPLITS = ("train", "val", "test")

    def __init__(
        self,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 3,
        seed: int = 0,
        held_out: Sequence[str] = (),
    ):
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        if min_objects < 1 or max_objects < min_objects:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects, got min_objects={min_objects}, max_objects={max_objects}"
            )
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        pair_names = class_names("color_shape")
        unknown = [name for name in held_out if name not in pair_names]
        if unknown:
            raise ValueError(f"unknown held_out class {unknown[0]!r}; expected colour-shape names from {pair_names}")
        self.image_size = image_size
        self.min_objects = min_objects
        self.max_objects = max_objects
        self.seed = seed
        self.held_out = tuple(held_out)
        held_out_ids = {pair_names.index(name) for name in held_out}
        # Colour-shape pair ids (color_idx * 8 + shape_idx) each split may draw from.
        self._pairs = {split: np.arange(len(pair_names)) for split in self.SPLITS}
        self._pairs["train"] = np.array([i for i in range(len(pair_names)) if i not in held_out_ids], dtype=np.int64)
        if len(self._pairs["train"]) == 0:
            raise ValueError("held_out holds every colour-shape class; the train split needs at least one")

    # -- public API ---------------------------------------------------------------

    def scene(self, split: str, index: int, allowed: Sequence[str] | None = None) -> Scene:
        """Scene ``index`` of ``split``; a function of (seed, split, index) only.

        ``allowed``: colour-shape names ("purple star") to draw the objects from instead of all those of
        the split, e.g. only the held-out ones for a zero-shot test. Each set has its own stream of
        scenes, a function of (seed, split, index, set).
        """
        split_id = self._split_id(split)
        if allowed is None:
            rng = np.random.default_rng([self.seed, split_id, index])
            pairs = self._pairs[split]
        else:
            pairs = self._allowed_pairs(split, allowed)
            # 1 + len(VOCABULARIES) tells this stream from single_object_scene's (1 + a vocabulary's index
            # there); the set's bit mask from every other set's.
            bits = sum(1 << int(pair) for pair in pairs)
            rng = np.random.default_rng([self.seed, split_id, index, 1 + len(VOCABULARIES), bits])
        # An object that finds no room is dropped; the rare scene left with too few is
        # drawn again from the same stream, so it stays deterministic.
        for _ in range(_SCENE_TRIES):
            n_objects = int(rng.integers(self.min_objects, self.max_objects + 1))
            scene = self._render(rng, pairs[rng.integers(len(pairs), size=n_objects)])
            if len(scene.objects) >= self.min_objects:
                return scene
        raise RuntimeError(
            f"could not fit min_objects={self.min_objects} recognisable objects into scene {index} of {split!r}; "
            "lower min_objects"
        )

    def single_object_scene(self, split: str, index: int, class_index: int, vocabulary: str = "color_shape") -> Scene:
        """A scene of one object of class ``class_index``; the other attributes are random.

        Held-out classes are allowed in "val" and "test" (that is what they are for),
        not in "train".
        """
        split_id = self._split_id(split)
        candidates = self._pairs_of_class(split, class_index, vocabulary)
        # Tagged with 1 + ... so this stream never coincides with a scene() stream:
        # numpy's SeedSequence treats trailing zeros as absent.
        rng = np.random.default_rng(
            [self.seed, split_id, index, 1 + VOCABULARIES.index(vocabulary), 1 + class_index]
        )
        return self._render(rng, candidates[rng.integers(len(candidates), size=1)])

    def classification_sample(
        self, split: str, index: int, vocabulary: str = "color_shape"
    ) -> tuple[Image.Image, int]:
        """(image, class index) with balanced labels: class = index modulo the classes of the split.

        In "train" the classes exclude those with no allowed colour-shape pair (the
        held-out ones); the returned label is always an index into ``class_names(vocabulary)``.
        """
        classes = self.split_classes(split, vocabulary)
        class_index = classes[index % len(classes)]
        return self.single_object_scene(split, index, class_index, vocabulary).image, class_index

    def split_classes(self, split: str, vocabulary: str = "color_shape") -> list[int]:
        """Indices into ``class_names(vocabulary)`` of the classes that occur in ``split``."""
        self._split_id(split)
        _check_vocabulary(vocabulary)
        return sorted({_class_of_pair(*divmod(int(p), len(SHAPES)), vocabulary) for p in self._pairs[split]})

    # -- helpers ------------------------------------------------------------------

    def _split_id(self, split: str) -> int:
        if split not in self.SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(self.SPLITS)}")
        return self.SPLITS.index(split)

    def _allowed_pairs(self, split: str, allowed: Sequence[str]) -> np.ndarray:
        pair_names = class_names("color_shape")
        unknown = [name for name in allowed if name not in pair_names]
        if unknown or not allowed:
            raise ValueError(f"allowed must name colour-shape classes from {pair_names}, got {list(allowed)}")
        pairs = np.array(sorted({pair_names.index(name) for name in allowed}), dtype=np.int64)
        excluded = [pair_names[pair] for pair in pairs if pair not in self._pairs[split]]
        if excluded:
            raise ValueError(f"{excluded} are held out and cannot be drawn in split {split!r}")
        return pairs

    def _pairs_of_class(self, split: str, class_index: int, vocabulary: str) -> np.ndarray:
        n_classes = len(class_names(vocabulary))
        if not 0 <= class_index < n_classes:
            raise ValueError(
                f"class_index {class_index} out of range for vocabulary {vocabulary!r} ({n_classes} classes)"
            )
        pairs = self._pairs[split]
        candidates = pairs[[_class_of_pair(*divmod(int(p), len(SHAPES)), vocabulary) == class_index for p in pairs]]
        if len(candidates) == 0:
            raise ValueError(
                f"class {class_names(vocabulary)[class_index]!r} is held out and cannot be drawn in split {split!r}; "
                f"held out: {list(self.held_out)}"
            )
        return candidates

    def _render(self, rng: np.random.Generator, pair_ids: np.ndarray) -> Scene:
        size = self.image_size
        image = _background(rng, size)
        objects: list[ShapeObject] = []
        layers: list[_Layer] = []
        for pair_id in pair_ids:
            color_idx, shape_idx = divmod(int(pair_id), len(SHAPES))
            size_name = SIZES[int(rng.integers(len(SIZES)))]
            placed = self._place(rng, SHAPES[shape_idx], size_name, color_idx, layers)
            if placed is None and size_name == "large":
                # A crowded scene often still has room for a small one.
                size_name = "small"
                placed = self._place(rng, SHAPES[shape_idx], size_name, color_idx, layers)
            if placed is None:
                continue
            (x0, y0, x1, y1), crop, coverage, local_mask = placed
            # Brightness jitter keeps a colour word covering a range of pixel values.
            rgb = np.clip(COLOR_RGB[color_idx] * rng.uniform(0.85, 1.08), 0, 255).astype(int)
            image.paste(tuple(rgb), crop, coverage)
            rows, cols = slice(crop[1], crop[3]), slice(crop[0], crop[2])
            for layer in layers:
                layer.visible[rows, cols] &= ~local_mask
            visible = np.zeros((size, size), dtype=bool)
            visible[rows, cols] = local_mask
            layers.append(_Layer(color_idx, crop, visible, np.count_nonzero(local_mask)))
            objects.append(
                ShapeObject(
                    shape=SHAPES[shape_idx],
                    color=COLORS[color_idx],
                    size=size_name,
                    box=(x0, y0, x1 - x0, y1 - y0),
                    center=((x0 + x1) / 2, (y0 + y1) / 2),
                )
            )
        noise = rng.integers(-_NOISE, _NOISE + 1, size=(size, size, 1), dtype=np.int16)
        pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        caption, grounded_phrases = _caption(rng, objects, size)
        return Scene(
            image=Image.fromarray(pixels, "RGB"),
            objects=objects,
            instance_masks=np.stack([layer.visible for layer in layers]),
            caption=caption,
            noun_phrases=[f"{obj.size} {obj.name}" for obj in objects],
            grounded_phrases=grounded_phrases,
        )

    def _place(
        self, rng: np.random.Generator, shape: str, size_name: str, color_idx: int, layers: list[_Layer]
    ) -> tuple[tuple[float, float, float, float], tuple[int, int, int, int], Image.Image, np.ndarray] | None:
        """Try random poses of a shape until one leaves every earlier object recognisable.

        Returns (box as x0, y0, x1, y1, crop box, coverage image of the crop, mask of the
        crop), or None when every try failed.
        """
        size = self.image_size
        radius = _RADIUS[size_name] * size
        for _ in range(_PLACEMENT_TRIES):
            angle = math.radians(rng.uniform(-_MAX_ROTATION_DEG, _MAX_ROTATION_DEG))
            rotation = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
            outlines = [polygon @ rotation * radius for polygon in _OUTLINES[shape]]
            low, high = outlines[0].min(axis=0), outlines[0].max(axis=0)
            # The whole shape stays inside the image, so its box and mask do too.
            center = rng.uniform(-low, size - high)
            outlines = [polygon + center for polygon in outlines]
            box = (*(low + center).tolist(), *(high + center).tolist())
            crop, coverage = _rasterize(outlines, box, size)
            local_mask = np.asarray(coverage) >= _MASK_THRESHOLD
            if all(layer.survives(crop, local_mask, color_idx) for layer in layers):
                return box, crop, coverage, local_mask
        return None


@dataclass
class _Layer:
    """An object already drawn into a scene, as the placement of later ones sees it."""

    color_idx: int
    crop: tuple[int, int, int, int]  # integer pixel box x0, y0, x1, y1 around the shape
    visible: np.ndarray  # [H, W] bool, shrinks as later objects cover it
    area: int  # unoccluded area in pixels

    def survives(self, crop: tuple[int, int, int, int], mask: np.ndarray, color_idx: int) -> bool:
        """Whether this object stays recognisable under a new object ``mask`` drawn at ``crop``."""
        if color_idx == self.color_idx:
            # Touching shapes of one colour would merge into a single blob: keep a 1 px gap.
            return crop[0] > self.crop[2] or self.crop[0] > crop[2] or crop[1] > self.crop[3] or self.crop[1] > crop[3]
        hidden = np.count_nonzero(self.visible[crop[1] : crop[3], crop[0] : crop[2]] & mask)
        return np.count_nonzero(self.visible) - hidden >= (1 - _MAX_HIDDEN) * self.area


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Grey, low-saturation, smoothly varying background of random overall brightness."""
    brightness = rng.uniform(70, 185)
    tint = rng.uniform(-8, 8, size=3)  # a faint colour cast, far below any object's saturation
    field = brightness + tint + rng.uniform(-30, 30, size=(3, 3, 1))
    small = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8), "RGB")
    return small.resize((size, size), Image.Resampling.BILINEAR)


def _rasterize(
    outlines: list[np.ndarray], box: tuple[float, float, float, float], size: int
) -> tuple[tuple[int, int, int, int], Image.Image]:
    """Antialiased coverage (0..255) of a shape, drawn only over its bounding crop for speed."""
    x0, y0 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
    x1, y1 = min(math.ceil(box[2]), size), min(math.ceil(box[3]), size)
    canvas = Image.new("L", ((x1 - x0) * _SUPERSAMPLE, (y1 - y0) * _SUPERSAMPLE))
    draw = ImageDraw.Draw(canvas)
    for k, polygon in enumerate(outlines):
        # Pixel i of the canvas covers [i, i + 1), so its centre is at i + 0.5.
        scaled = (polygon - (x0, y0)) * _SUPERSAMPLE - 0.5
        draw.polygon(scaled.ravel().tolist(), fill=255 if k == 0 else 0)  # later outlines are holes
    return (x0, y0, x1, y1), canvas.reduce(_SUPERSAMPLE)


# -- captions --------------------------------------------------------------------------


def _caption(
    rng: np.random.Generator, objects: list[ShapeObject], image_size: int
) -> tuple[str, list[tuple[tuple[int, int], tuple[int, ...]]]]:
    """A true caption naming the colour and shape of every object, in a random phrasing, and its phrases with the
    objects each names (see ``Scene.grounded_phrases``)."""
    named: list[tuple[str, list[ShapeObject]]] = []  # each phrase written into the caption, with its objects

    def phrase_of(group: list[ShapeObject]) -> str:
        phrase = _group_phrase(rng, group)
        named.append((phrase, group))
        return phrase

    if len(objects) == 1:
        phrase = phrase_of(objects)
        caption = _SINGLE_TEMPLATES[int(rng.integers(len(_SINGLE_TEMPLATES)))].format(phrase)
        return caption, _phrase_spans(caption, named, objects)

    # Objects that share colour and shape are counted together ("two green squares").
    groups: dict[str, list[ShapeObject]] = {}
    for obj in objects:
        groups.setdefault(obj.name, []).append(obj)
    order = [list(groups.values())[int(i)] for i in rng.permutation(len(groups))]

    # A relation only links objects unique in colour and shape, so "the red circle" is unambiguous.
    singles = [group[0] for group in order if len(group) == 1]
    relations = []
    for a in singles:
        for b in singles:
            relation = _relation(a, b, image_size) if a is not b else None
            if relation:
                relations.append((a, b, relation))
    if relations and rng.random() < 0.5:
        a, b, relation = relations[int(rng.integers(len(relations)))]
        template = _RELATION_TEMPLATES[int(rng.integers(len(_RELATION_TEMPLATES)))]
        sentence = template.format(a=phrase_of([a]), relation=relation, b=phrase_of([b]))
        rest = [phrase_of(group) for group in order if group[0] is not a and group[0] is not b]
        caption = f"{sentence}, and {_join(rest)}." if rest else f"{sentence}."
        return caption, _phrase_spans(caption, named, objects)

    phrases = [phrase_of(group) for group in order]
    template = _LIST_TEMPLATES[int(rng.integers(len(_LIST_TEMPLATES)))]
    caption = template.format(objects=_join(phrases), count=_number(len(objects)))
    return caption, _phrase_spans(caption, named, objects)


def _phrase_spans(
    caption: str, named: list[tuple[str, list[ShapeObject]]], objects: list[ShapeObject]
) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
    """Where each phrase stands in the caption: phrases name distinct colour-shape groups, so each occurs once as
    whole words."""
    spans = []
    for phrase, group in named:
        found = [match.span() for match in re.finditer(rf"\b{re.escape(phrase)}\b", caption)]
        assert len(found) == 1, f"phrase {phrase!r} occurs {len(found)} times in {caption!r}"
        spans.append((found[0], tuple(next(i for i, obj in enumerate(objects) if obj is member) for member in group)))
    return spans


def _relation(a: ShapeObject, b: ShapeObject, image_size: int) -> str | None:
    """Where ``a`` is relative to ``b``, if clearly so along the dominant axis (image y grows down)."""
    dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
    margin = _RELATION_MARGIN * image_size
    if abs(dx) >= abs(dy) and abs(dx) > margin:
        return "to the left of" if dx < 0 else "to the right of"
    if abs(dy) > abs(dx) and abs(dy) > margin:
        return "above" if dy < 0 else "below"
    return None


def _object_phrase(rng: np.random.Generator, obj: ShapeObject) -> str:
    words = f"{obj.size} {obj.name}" if rng.random() < 0.6 else obj.name
    return f"{_article(words)} {words}"


def _group_phrase(rng: np.random.Generator, group: list[ShapeObject]) -> str:
    if len(group) == 1:
        return _object_phrase(rng, group[0])
    obj = group[0]
    plural = obj.shape + ("es" if obj.shape.endswith("s") else "s")
    sizes = {member.size for member in group}
    # A size word is only true of a group whose members all have that size.
    size_word = f"{obj.size} " if len(sizes) == 1 and rng.random() < 0.5 else ""
    return f"{_number(len(group))} {size_word}{obj.color} {plural}"


def _article(words: str) -> str:
    return "an" if words[0] in "aeiou" else "a"


def _number(n: int) -> str:
    return _NUMBER_WORDS[n] if n < len(_NUMBER_WORDS) else str(n)


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
