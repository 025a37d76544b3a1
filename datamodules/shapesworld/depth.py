"""ShapesWorld depth scenes: solids on a floor in front of a wall, an RGB image and its metric depth map.

The embedded stand-in for NYU Depth v2 in DepthCLIP's zero-shot monocular depth estimation: 1 to N of the eight
ShapesWorld solids (``solids.py``) stand on a tiled floor in front of a back wall, 0.8 to 4 m from a pinhole camera
at a fixed height looking slightly down (Kinect-like: 60 degrees across). The image and its ground truth come from
one z-buffer render (``rendering.py``): depth is z along the optical axis in metres, as NYU's and KITTI's, and the
floor's tiles give the perspective cue of a texture gradient. Optional holes (depth 0, no measurement, in small
round blobs as a Kinect leaves them on dark, shiny or oblique surfaces) exercise the benchmarks' masking of
invalid pixels.

Each scene comes with a caption naming every object's solid, colour and distance in varied phrasing, among them
DepthCLIP's seven distance words in its own template ("this sphere is close"), a word tied to DepthCLIP's depth
bins (see :func:`distance_word`): the captions of the 3D ShapesWorld CLIP (``solids_captions.py``).

Like every ShapesWorld sample, a scene is a function of ``(seed, split, index)`` alone, drawn from a stream of its
own per split, so that every DataLoader worker and DDP rank renders its own share without files or duplicates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.predict import prediction_loaders
from lit_clip.datamodules.shapesworld.rendering import Camera, Mesh, render
from lit_clip.datamodules.shapesworld.solids import SOLIDS, random_pose, random_scale, solid_mesh
from lit_clip.datamodules.shapesworld.world import COLOR_RGB, COLORS
from PIL import Image
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.templates import DEPTHCLIP_BINS, DEPTHCLIP_WORDS
from lit_clip.transforms import to_normalized_tensor

# The camera: NYU's Kinect sees about 60 degrees across; low and looking slightly down, so that the floor fills
# the lower image from 0.6 m on and the wall the upper part.
CAMERA_HEIGHT = 0.5
CAMERA_PITCH = -10.0
FIELD_OF_VIEW = 60.0
# Objects' centres lie this far along the optical axis; their bounding spheres have these radii (metres).
NEAREST, FARTHEST = 0.8, 4.0
_RADIUS = (0.25, 0.45)
_WALL_DISTANCE = (4.6, 5.5)  # from the camera, along the floor
_WALL_HALF_WIDTH, _WALL_HEIGHT = 6.0, 4.0
_TILE = 0.5  # floor tiles (metres)
_FLOOR_START = 0.1  # along the floor from the camera; the image shows it from 0.6 m on
_TILE_CONTRAST = 0.8  # dark tiles' brightness relative to light ones
_NOISE = 6  # per-pixel luminance noise of the image (not of the depth)
# An object keeps at least 1 - this of its bounding disc in the image unhidden by nearer ones, and stands this
# far (metres) from any other, so that every object a caption names can be seen.
_MAX_HIDDEN = 0.35
_GAP = 0.05
_PLACEMENT_TRIES = 20
_SCENE_TRIES = 100
_HOLE_RADIUS = (1.0, 0.05)  # a hole's radius: from 1 pixel to this fraction of the image size


def distance_word(distance: float) -> str:
    """DepthCLIP's word for ``distance`` metres: that of the nearest of its bins (a tie goes to the nearer bin), so
    0.8 m is "giant", 2.2 m "not in distance" and anything beyond 2.875 m "unseen"."""
    return DEPTHCLIP_WORDS[int(np.argmin(np.abs(np.asarray(DEPTHCLIP_BINS) - distance)))]


@dataclass(frozen=True)
class DepthObject:
    solid: str
    color: str
    distance: float  # z-depth of its centre (metres along the optical axis), as a depth map measures
    position: tuple[float, float, float]  # its centre (of its bounding box) in world coordinates, y up
    radius: float  # of its bounding sphere, metres

    @property
    def word(self) -> str:
        """DepthCLIP's distance word for it."""
        return distance_word(self.distance)


@dataclass
class DepthScene:
    image: Image.Image  # RGB, image_size x image_size
    depth: np.ndarray  # float32 [H, W] z-depth in metres; 0 where there is no measurement (holes)
    object_id: np.ndarray  # int64 [H, W]: index into objects of the object seen, -1 for floor and wall
    objects: list[DepthObject]
    caption: str
    camera: Camera


class ShapesWorldDepthScenes:
    """Deterministic generator of ShapesWorld depth scenes.

    Args:
        image_size: side of the square images in pixels (at least 16).
        min_objects, max_objects: range of the number of solids per scene (uniform).
        holes: fraction of the pixels (about) whose depth is 0, no measurement, in small round blobs; 0 for none.
        seed: selects the world; scene ``(seed, split, index)`` is always the same (for a given numpy and torch).
    """

    SPLITS = ("train", "val", "test")

    def __init__(self, image_size: int = 64, min_objects: int = 1, max_objects: int = 3, holes: float = 0.0,
                 seed: int = 0):
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        if min_objects < 1 or max_objects < min_objects:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects, got min_objects={min_objects}, max_objects={max_objects}"
            )
        if not 0 <= holes < 1:
            raise ValueError(f"holes must be a fraction of the pixels in [0, 1), got {holes}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.image_size, self.min_objects, self.max_objects = image_size, min_objects, max_objects
        self.holes, self.seed = holes, seed
        self.camera = Camera.from_fov(FIELD_OF_VIEW, image_size, position=(0.0, CAMERA_HEIGHT, 0.0), pitch=CAMERA_PITCH)

    def scene(self, split: str, index: int) -> DepthScene:
        """Scene ``index`` of ``split``; a function of (seed, split, index) only."""
        if split not in self.SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(self.SPLITS)}")
        if index < 0:
            raise ValueError(f"index must be non-negative, got {index}")
        rng = np.random.default_rng([self.seed, self.SPLITS.index(split), index])
        # An object that finds no room is dropped; the rare scene left with too few is drawn again from the same
        # stream, so it stays deterministic.
        for _ in range(_SCENE_TRIES):
            count = int(rng.integers(self.min_objects, self.max_objects + 1))
            placed = [placement for placement in self._placements(rng, count) if placement is not None]
            if len(placed) >= self.min_objects:
                return self._render(rng, placed)
        raise RuntimeError(f"could not fit min_objects={self.min_objects} solids into scene {index} of {split!r}; "
                           "lower min_objects")

    # -- helpers ------------------------------------------------------------------

    def _placements(self, rng: np.random.Generator, count: int) -> list[_Placement | None]:
        placed: list[_Placement] = []
        for _ in range(count):
            solid = SOLIDS[int(rng.integers(len(SOLIDS)))]
            color = int(rng.integers(len(COLORS)))
            shape = posed_solid(solid, rng, tilt_degrees=0.0)  # upright: it stands on the floor
            radius = rng.uniform(*_RADIUS)
            placement = self._place(rng, solid, color, shape, radius, placed)
            if placement is not None:
                placed.append(placement)
        return placed

    def _place(
        self, rng: np.random.Generator, solid: str, color: int, shape: np.ndarray, radius: float,
        placed: list[_Placement],
    ) -> _Placement | None:
        """Random positions of a solid until one keeps it and every other object visible, or None."""
        camera, size = self.camera, self.image_size
        forward = camera.rotation()[2]
        center_height = -shape[:, 1].min() * radius  # resting on the floor (y = 0)
        for _ in range(_PLACEMENT_TRIES):
            distance = rng.uniform(NEAREST, FARTHEST)
            # Inside the view from left to right at that depth.
            half_width = distance * size / 2 / camera.focal - radius
            if half_width <= 0:
                continue
            x = rng.uniform(-0.95 * half_width, 0.95 * half_width)
            # The camera does not turn (yaw 0), so the optical axis has no x component.
            z = (distance - (center_height - CAMERA_HEIGHT) * forward[1]) / forward[2]
            center = np.array([x, center_height, z])
            u, v, _ = camera.project(center)
            disc = _Disc(u, v, camera.focal * radius / distance, distance)
            if v + 0.5 * disc.radius > size:  # at most the lowest part of a near object leaves the image
                continue
            if all(_apart(center, radius, other) and disc.both_visible(other.disc) for other in placed):
                return _Placement(solid, color, shape, center, radius, disc)
        return None

    def _render(self, rng: np.random.Generator, placed: list[_Placement]) -> DepthScene:
        objects = [
            DepthObject(p.solid, COLORS[p.color], p.disc.depth, tuple(float(c) for c in p.center), float(p.radius))
            for p in placed
        ]
        meshes = []
        for p in placed:
            # Brightness jitter keeps a colour word covering a range of pixel values, as in the 2D world.
            color = np.clip(COLOR_RGB[p.color] * rng.uniform(0.85, 1.08), 0, 255)
            meshes.append(Mesh(p.shape * p.radius + p.center, solid_mesh(p.solid)[1], color))
        meshes += _room(rng)
        rendering = render(meshes, self.camera)
        noise = rng.integers(-_NOISE, _NOISE + 1, size=(*rendering.rgb.shape[:2], 1))
        pixels = np.clip(rendering.rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        caption = depth_caption(rng, objects)
        depth = rendering.depth
        if self.holes > 0:  # drawn last, so that holes change nothing else in a scene
            depth = np.where(_holes(rng, depth.shape, self.holes), 0, depth).astype(np.float32)
        object_id = np.where(rendering.object_id < len(objects), rendering.object_id, -1)
        return DepthScene(Image.fromarray(pixels, "RGB"), depth, object_id, objects, caption, self.camera)


def posed_solid(solid: str, rng: np.random.Generator, tilt_degrees: float) -> np.ndarray:
    """The vertices [V, 3] (float64) of an instance of ``solid``: its own proportions (``random_scale``), turned
    (``random_pose``), centred on its bounding box and scaled into the unit sphere; faces are ``solid_mesh``'s."""
    vertices = solid_mesh(solid)[0] * random_scale(solid, rng) @ random_pose(rng, tilt_degrees).T
    vertices = vertices - (vertices.min(0) + vertices.max(0)) / 2
    return vertices / np.linalg.norm(vertices, axis=1).max()


@dataclass(frozen=True)
class _Disc:
    """An object's bounding sphere as the camera sees it: a disc at (u, v) pixels of ``radius`` pixels, its centre
    at z-depth ``depth``."""

    u: float
    v: float
    radius: float
    depth: float

    def both_visible(self, other: _Disc) -> bool:
        """Whether the nearer of two objects hides at most ``_MAX_HIDDEN`` of the farther one's disc."""
        far = self if self.depth > other.depth else other
        return _lens_area(self, other) <= _MAX_HIDDEN * math.pi * far.radius**2


@dataclass(frozen=True)
class _Placement:
    solid: str
    color: int  # index into COLORS
    shape: np.ndarray  # [V, 3] posed vertices in the unit sphere
    center: np.ndarray  # [3] world
    radius: float
    disc: _Disc


def _apart(center: np.ndarray, radius: float, other: _Placement) -> bool:
    """Whether two objects' bounding spheres keep a gap on the floor."""
    return float(np.hypot(*(center - other.center)[[0, 2]])) >= radius + other.radius + _GAP


def _lens_area(a: _Disc, b: _Disc) -> float:
    """Area of the intersection of two discs."""
    d = math.hypot(a.u - b.u, a.v - b.v)
    r, s = a.radius, b.radius
    if d >= r + s:
        return 0.0
    if d <= abs(r - s):
        return math.pi * min(r, s) ** 2
    alpha = math.acos((d * d + r * r - s * s) / (2 * d * r))
    beta = math.acos((d * d + s * s - r * r) / (2 * d * s))
    return r * r * alpha + s * s * beta - 0.5 * math.sqrt((-d + r + s) * (d + r - s) * (d - r + s) * (d + r + s))


def _room(rng: np.random.Generator) -> list[Mesh]:
    """The floor (two meshes: the light and the dark tiles of a chequerboard) and the back wall, in grey of random
    brightness with a faint colour cast, far below any object's saturation."""
    wall_distance = rng.uniform(*_WALL_DISTANCE)
    floor_grey = rng.uniform(90, 170) + rng.uniform(-8, 8, size=3)
    wall_grey = rng.uniform(110, 200) + rng.uniform(-8, 8, size=3)
    phase = rng.uniform(0, _TILE, size=2)  # so that the tiles' edges fall anywhere
    xs = np.arange(-_WALL_HALF_WIDTH - phase[0], _WALL_HALF_WIDTH, _TILE)
    zs = np.arange(-phase[1], wall_distance, _TILE)
    column, row = np.meshgrid(np.arange(len(xs)), np.arange(len(zs)), indexing="ij")
    column, row = column.ravel(), row.ravel()
    # From just ahead of the camera (the floor it stands on is out of view), so that nothing needs clipping.
    x0, z0 = xs[column], np.maximum(zs[row], _FLOOR_START)
    x1, z1 = x0 + _TILE, np.minimum(z0 + _TILE, wall_distance)
    zeros = np.zeros_like(x0)
    # Four corners per tile (y = 0), two triangles per tile.
    corners = np.stack([np.stack([x0, zeros, z0], 1), np.stack([x1, zeros, z0], 1), np.stack([x1, zeros, z1], 1),
                        np.stack([x0, zeros, z1], 1)], 1)
    floor = []
    for dark in (False, True):
        tiles = corners[(column + row) % 2 == int(dark)]
        first = 4 * np.arange(len(tiles))[:, None]
        faces = np.concatenate([first + [0, 2, 1], first + [0, 3, 2]])
        floor.append(Mesh(tiles.reshape(-1, 3), faces, floor_grey * (_TILE_CONTRAST if dark else 1.0)))
    w, h = _WALL_HALF_WIDTH, _WALL_HEIGHT
    wall = np.array([[-w, 0, wall_distance], [w, 0, wall_distance], [w, h, wall_distance], [-w, h, wall_distance]])
    return [*floor, Mesh(wall, np.array([[0, 1, 2], [0, 2, 3]]), wall_grey)]


def _holes(rng: np.random.Generator, shape: tuple[int, int], fraction: float) -> np.ndarray:
    """bool [H, W]: round blobs at random places until they cover ``fraction`` of the pixels."""
    height, width = shape
    rows, columns = np.mgrid[:height, :width] + 0.5
    holes = np.zeros(shape, dtype=bool)
    largest = max(_HOLE_RADIUS[0], _HOLE_RADIUS[1] * min(shape))
    while holes.mean() < fraction:
        row, column = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(_HOLE_RADIUS[0], largest)
        holes |= (rows - row) ** 2 + (columns - column) ** 2 <= radius**2
    return holes


# -- captions --------------------------------------------------------------------------

# How far an object is: {w} DepthCLIP's word, {m} the distance in metres rounded to a half.
_DISTANCE_PHRASES = (
    "that is {w}",
    "{m} meters away",
    "about {m} meters away",
    "{m} m from the camera",
    "at a distance of {m} meters",
)
_SINGLE_TEMPLATES = (
    "a photo of {}.",
    "a rendering of {}.",
    "{}.",
    "there is {} on the floor.",
    "an image of {} in a room.",
)
# DepthCLIP's own sentence ("This {obj} is {word}"), with the solid or "object" as the thing.
_DEPTHCLIP_TEMPLATES = ("this {s} is {w}.", "this {c} {s} is {w}.", "this object is {w}.")
_LIST_TEMPLATES = ("{}.", "a photo of {}.", "a rendering of {} in a room.", "there are {n} solids: {}.")
# "the red sphere is in front of the blue cube" only when their distances differ by at least this (metres).
_ORDER_MARGIN = 0.75
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def depth_caption(rng: np.random.Generator, objects: list[DepthObject]) -> str:
    """A true caption of a depth scene naming every object's solid and colour, and its distance in one of several
    ways: DepthCLIP's word ("close"), metres ("about 1.5 meters away"), or its order in depth ("in front of")."""
    if len(objects) == 1:
        obj = objects[0]
        if rng.random() < 0.4:
            template = _DEPTHCLIP_TEMPLATES[int(rng.integers(len(_DEPTHCLIP_TEMPLATES)))]
            return template.format(s=obj.solid, c=obj.color, w=obj.word)
        template = _SINGLE_TEMPLATES[int(rng.integers(len(_SINGLE_TEMPLATES)))]
        return template.format(_object_phrase(rng, obj))
    order = [objects[int(i)] for i in rng.permutation(len(objects))]
    kind = rng.random()
    names = [f"{obj.color} {obj.solid}" for obj in objects]
    if kind < 0.3:
        # The solid alone names an object unless another one is the same solid.
        solids = [obj.solid for obj in objects]
        clauses = [
            f"this {obj.solid if solids.count(obj.solid) == 1 and rng.random() < 0.5 else obj.color + ' ' + obj.solid}"
            f" is {obj.word}"
            for obj in order
        ]
        return _join(clauses) + "."
    if kind < 0.5 and len(set(names)) == len(names):
        nearest, farthest = min(order, key=lambda o: o.distance), max(order, key=lambda o: o.distance)
        if farthest.distance - nearest.distance >= _ORDER_MARGIN:
            near, far = f"the {nearest.color} {nearest.solid}", f"the {farthest.color} {farthest.solid}"
            sentence = (f"{near} is in front of {far}" if rng.random() < 0.5 else f"{far} is behind {near}")
            rest = [_object_phrase(rng, obj) for obj in order if obj is not nearest and obj is not farthest]
            return f"{sentence}, and there is {_join(rest)}." if rest else f"{sentence}."
    template = _LIST_TEMPLATES[int(rng.integers(len(_LIST_TEMPLATES)))]
    return template.format(_join([_object_phrase(rng, obj) for obj in order]), n=_NUMBER_WORDS[len(objects)])


def _object_phrase(rng: np.random.Generator, obj: DepthObject) -> str:
    distance = _DISTANCE_PHRASES[int(rng.integers(len(_DISTANCE_PHRASES)))]
    metres = round(obj.distance * 2) / 2
    words = f"{obj.color} {obj.solid}"
    article = "an" if words[0] in "aeiou" else "a"
    phrase = f"{article} {words} " + distance.format(w=obj.word, m=f"{metres:g}")
    return phrase.replace(" 1 meters", " 1 meter")


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


# -- the data module -------------------------------------------------------------------


class ShapesDepthDataset(Dataset):
    """``{"image", "depth", "index"}``: scene ``index`` of a split, its image normalised for CLIP and its depth
    map [H, W] in metres (0: no measurement)."""

    def __init__(self, scenes: ShapesWorldDepthScenes, split: str, length: int):
        self.scenes, self.split, self.length = scenes, split, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        scene = self.scenes.scene(self.split, index)
        return {"image": to_normalized_tensor(scene.image), "depth": torch.from_numpy(scene.depth), "index": index}


class ShapesWorldDepth(L.LightningDataModule):
    """ShapesWorld depth scenes as :class:`~lit_clip.batches.DepthBatch` es: monocular depth estimation.

    ``min_depth`` and ``max_depth`` are the range the metrics score (NYU's evaluation caps at 10 m): every
    measured depth of these scenes lies in it.
    """

    min_depth, max_depth = 1e-3, 10.0

    def __init__(
        self,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 3,
        holes: float = 0.0,
        seed: int = 0,
        train_samples: int = 2048,
        val_samples: int = 128,
        test_samples: int = 256,
        batch_size: int = 32,
        num_workers: int = 0,
        predict_images: str | None = None,
    ):
        """
        Args:
            image_size: side of the square images in pixels.
            min_objects, max_objects: solids per scene.
            holes: fraction of the pixels (about) with no depth measurement (0), in small blobs; 0 for none.
            seed: the world's seed; scene ``i`` of a split is the same for a given seed.
            train_samples, val_samples, test_samples: scenes per training epoch, validation and test.
            batch_size, num_workers: DataLoader settings.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test scenes (see ``lit_clip.datamodules.predict``).
        """
        super().__init__()
        self.save_hyperparameters()
        self.scenes = ShapesWorldDepthScenes(image_size, min_objects, max_objects, holes, seed)

    def _loader(self, split: str, length: int, shuffle: bool = False) -> StatefulDataLoader:
        h = self.hparams
        return stateful_loader(ShapesDepthDataset(self.scenes, split, length), h.batch_size, h.num_workers, shuffle)

    def train_dataloader(self) -> StatefulDataLoader:
        h = self.hparams
        require_one_batch(h.train_samples, h.batch_size, self.trainer, "training scenes (train_samples)")
        return self._loader("train", h.train_samples, shuffle=True)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader("val", self.hparams.val_samples)

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader("test", self.hparams.test_samples)

    def predict_dataloader(self) -> StatefulDataLoader:
        return prediction_loaders(self.hparams, default=self.test_dataloader)
