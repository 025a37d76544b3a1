"""ShapesWorld in 3D: eight solids as triangle meshes, sampled into ModelNet-like point clouds.

The 3D counterpart of ``world.py`` for PointCLIP (point clouds) and DepthCLIP (rendered scenes, see
``rendering.py``). Every solid is one closed triangle mesh; a cloud is its surface sampled uniformly by area,
after a per-object anisotropic scale and an upright-but-turned pose, then normalised the way ModelNet40's
``modelnet40_ply_hdf5_2048`` clouds are: centred and scaled into the unit sphere (max norm 1), y up.

Like the 2D world, a cloud is a function of ``(seed, split, index)`` alone, drawn from a stream of its own per
split, so any DataLoader worker or DDP rank generates its share without files or duplicates.

Meshes (``solid_mesh``): y is up; each is centred on its bounding-box centre, so it rests on the plane
``y = vertices[:, 1].min()`` (half its height below the centre), and scaled so that its farthest vertex lies on
the unit sphere. Faces are counter-clockwise seen from outside (normals point out). All eight are surfaces of
revolution about the y axis of a polyline profile, with few segments for the faceted ones (a cube is a
four-sided "cylinder", a pyramid a four-sided cone, an octahedron a four-sided double cone), so one builder
makes every mesh closed and consistently oriented.

This file depends on numpy only, like ``world.py``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

SOLIDS: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid", "octahedron", "prism")


def _arc(
    center_r: float, center_y: float, radius: float, start_deg: float, stop_deg: float, steps: int
) -> list[tuple[float, float]]:
    angles = np.radians(np.linspace(start_deg, stop_deg, steps + 1))
    # Rounded so that a sphere's poles land exactly on the axis (cos(90 degrees) is 6e-17 in floating point).
    return [(round(center_r + radius * math.cos(a), 12), round(center_y + radius * math.sin(a), 12)) for a in angles]


# Each solid: a profile of (radius from the y axis, height) points, counter-clockwise in the (r, y) half
# plane (bottom to top on the outside), revolved in ``segments`` steps starting at ``phase`` degrees;
# ``closed`` profiles (the torus) join their last point to their first. Profile points on the axis (r = 0)
# are poles. Proportions before normalisation; the resolution keeps curved solids at a few hundred faces.
_PROFILES: dict[str, dict] = {
    "sphere": dict(profile=_arc(0.0, 0.0, 1.0, -90, 90, 10), segments=20, phase=0.0, closed=False),
    "cube": dict(profile=[(0, -1), (math.sqrt(2), -1), (math.sqrt(2), 1), (0, 1)], segments=4, phase=45.0,
                 closed=False),
    "cylinder": dict(profile=[(0, -1), (1, -1), (1, 1), (0, 1)], segments=24, phase=0.0, closed=False),
    "cone": dict(profile=[(0, -1), (1, -1), (0, 1)], segments=24, phase=0.0, closed=False),
    # Lying flat (its hole along y), as a ring rests on a table; the last arc point repeats the first.
    "torus": dict(profile=_arc(1.0, 0.0, 0.4, -90, 270, 12)[:-1], segments=24, phase=0.0, closed=True),
    # A square pyramid a little lower than its base is wide, so it reads as neither a cone nor an octahedron.
    "pyramid": dict(profile=[(0, -0.75), (math.sqrt(2), -0.75), (0, 0.75)], segments=4, phase=45.0, closed=False),
    "octahedron": dict(profile=[(0, -1), (1, 0), (0, 1)], segments=4, phase=0.0, closed=False),
    # A triangular prism standing on a triangle (equilateral, circumradius 1).
    "prism": dict(profile=[(0, -0.8), (1, -0.8), (1, 0.8), (0, 0.8)], segments=3, phase=90.0, closed=False),
}


def _revolve(
    profile: list[tuple[float, float]], segments: int, phase: float, closed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and outward counter-clockwise faces of a profile revolved about the y axis."""
    theta = np.radians(phase) + 2 * np.pi * np.arange(segments) / segments
    vertices: list[np.ndarray] = []
    rings: list[np.ndarray] = []  # per profile point: indices of its ring (one index repeated for a pole)
    for r, y in profile:
        start = sum(len(v) for v in vertices)
        if r == 0:
            vertices.append(np.array([[0.0, y, 0.0]]))
            rings.append(np.full(segments, start))
        else:
            # z = -r sin: counter-clockwise seen from +y, which makes the faces below point outwards.
            vertices.append(np.stack([r * np.cos(theta), np.full(segments, y), -r * np.sin(theta)], axis=1))
            rings.append(start + np.arange(segments))
    pairs = list(zip(rings[:-1], rings[1:])) + ([(rings[-1], rings[0])] if closed else [])
    faces = []
    for lower, upper in pairs:
        lower_next, upper_next = np.roll(lower, -1), np.roll(upper, -1)
        # Each quad (lower_j, lower_j+1, upper_j+1, upper_j) is two triangles; at a pole one of them collapses.
        if lower[0] != lower[-1]:
            faces.append(np.stack([lower, lower_next, upper_next], axis=1))
        if upper[0] != upper[-1]:
            faces.append(np.stack([lower, upper_next, upper], axis=1))
    return np.concatenate(vertices), np.concatenate(faces)


@functools.lru_cache(maxsize=None)
def solid_mesh(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The mesh of solid ``name``: (vertices float32 [V, 3], faces int64 [F, 3]), both read-only.

    Closed, faces counter-clockwise seen from outside, y up, centred on the bounding-box centre (so it rests on
    ``y = vertices[:, 1].min()``), farthest vertex on the unit sphere. Copy before modifying.
    """
    if name not in _PROFILES:
        raise ValueError(f"unknown solid {name!r}; expected one of {list(SOLIDS)}")
    vertices, faces = _revolve(**_PROFILES[name])
    vertices -= (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    vertices /= np.linalg.norm(vertices, axis=1).max()
    vertices, faces = vertices.astype(np.float32), faces.astype(np.int64)
    vertices.flags.writeable = False
    faces.flags.writeable = False
    return vertices, faces


def sample_surface(
    vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniformly distributed over a mesh's surface, with the outward unit normal of each point's face.

    A face is picked with probability proportional to its area, then a point uniformly inside it (uniform
    barycentric coordinates, the square's far half folded back onto the triangle). Returns float32 [n, 3] twice.
    """
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"expected vertices [V, 3] and faces [F, 3], got {vertices.shape} and {faces.shape}")
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    corners = vertices[faces].astype(np.float64)  # [F, 3 corners, 3]
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    cross = np.cross(edge1, edge2)
    double_area = np.linalg.norm(cross, axis=1)
    cumulative = np.cumsum(double_area)
    if len(faces) == 0 or not cumulative[-1] > 0:
        raise ValueError("the mesh has no surface to sample (no faces, or all of zero area)")
    # searchsorted on the cumulative areas: a face per point, in proportion to area (faster than rng.choice).
    face = np.minimum(np.searchsorted(cumulative, rng.random(n) * cumulative[-1], side="right"), len(faces) - 1)
    u, v = rng.random((2, n, 1))
    folded = (u + v) > 1
    u, v = np.where(folded, 1 - u, u), np.where(folded, 1 - v, v)
    points = corners[face, 0] + u * edge1[face] + v * edge2[face]
    normals = cross[face] / double_area[face, None]
    return points.astype(np.float32), normals.astype(np.float32)


def random_pose(rng: np.random.Generator, tilt_degrees: float = 10.0) -> np.ndarray:
    """A rotation matrix (float64 [3, 3], applied as ``points @ R.T``): upright but turned, like ModelNet objects.

    A uniform turn about the vertical (y) axis, then a tilt of up to ``tilt_degrees`` (uniform) about a random
    horizontal axis: the object still stands, as scanned or modelled objects do, but never exactly so.
    """
    if not 0 <= tilt_degrees <= 180:
        raise ValueError(f"tilt_degrees must be in [0, 180], got {tilt_degrees}")
    yaw = rng.uniform(0, 2 * np.pi)
    turn = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    azimuth, tilt = rng.uniform(0, 2 * np.pi), math.radians(rng.uniform(0, tilt_degrees))
    axis = np.array([math.cos(azimuth), 0.0, math.sin(azimuth)])
    # Rodrigues' formula for a rotation by ``tilt`` about the unit vector ``axis``.
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    tilt_rotation = np.eye(3) + math.sin(tilt) * skew + (1 - math.cos(tilt)) * skew @ skew
    return tilt_rotation @ turn


# Range of each solid's height factor (log-uniform): elongated solids vary most, since a tall or a squat cylinder
# is still a cylinder; the sphere, cube and octahedron little, so they do not turn into ellipsoids, boxes and
# diamonds. The width and depth vary independently by _WIDTH_JITTER either way.
_HEIGHT_JITTER: dict[str, tuple[float, float]] = {
    "sphere": (0.9, 1.1),
    "cube": (0.9, 1.1),
    "cylinder": (0.6, 1.6),
    "cone": (0.7, 1.4),
    "torus": (0.75, 1.3),
    "pyramid": (0.7, 1.4),
    "octahedron": (0.85, 1.15),
    "prism": (0.6, 1.6),
}
_WIDTH_JITTER = 0.08


def random_scale(name: str, rng: np.random.Generator) -> np.ndarray:
    """Per-axis scale factors (float64 [3], x y z) of one instance of solid ``name``; see ``_HEIGHT_JITTER``."""
    if name not in _HEIGHT_JITTER:
        raise ValueError(f"unknown solid {name!r}; expected one of {list(SOLIDS)}")
    low, high = _HEIGHT_JITTER[name]
    height = math.exp(rng.uniform(math.log(low), math.log(high)))
    width, depth = rng.uniform(1 - _WIDTH_JITTER, 1 + _WIDTH_JITTER, size=2)
    return np.array([width, height, depth])


def normalize_cloud(points: np.ndarray) -> np.ndarray:
    """Centred on the mean and scaled to max norm 1, as PointNet's ``pc_normalize`` prepares ModelNet40 clouds."""
    centred = points - points.mean(axis=0)
    return centred / np.linalg.norm(centred, axis=1).max()


@dataclass(frozen=True)
class SolidCloud:
    points: np.ndarray  # float32 [N, 3], y up, centred, max norm 1
    normals: np.ndarray  # float32 [N, 3], outward unit normal of the surface at each point (before noise)
    label: int  # index into SOLIDS
    name: str  # SOLIDS[label]
    rotation: np.ndarray  # float64 [3, 3], the pose applied (points @ rotation.T)
    scale: np.ndarray  # float64 [3], per-axis scale applied to the mesh before the pose


# Tags that keep the random streams of clouds and of label orders apart from each other and from the 2D world's
# (non-zero: numpy's SeedSequence treats trailing zeros as absent).
_CLOUD_STREAM, _LABEL_STREAM = 3001, 3002


class ShapesWorldSolids:
    """Deterministic generator of labelled point clouds of the eight SOLIDS.

    Args:
        seed: selects the world; cloud ``(seed, split, index)`` is always the same (for a given numpy version).
        num_points: points per cloud (ModelNet40's HDF5 files hold 2048, PointCLIP and PointNet++ use 1024).
        noise: standard deviation of Gaussian noise added to every coordinate, in units of the normalised cloud
            (which is then normalised again); 0 for points exactly on the surface. PointNet's training jitter is
            0.01.
        tilt_degrees: largest tilt away from upright (see ``random_pose``).
        scale_jitter: whether each instance gets its own proportions (see ``random_scale``).

    Labels are balanced: each block of 8 consecutive indices of a split holds every solid once, in an order of
    its own, so any multiple of 8 clouds has equally many of each class and the first ``8 * K`` clouds hold
    exactly K of each.
    """

    SPLITS = ("train", "val", "test")

    def __init__(
        self,
        seed: int = 0,
        num_points: int = 1024,
        noise: float = 0.0,
        tilt_degrees: float = 10.0,
        scale_jitter: bool = True,
    ):
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if num_points < 1:
            raise ValueError(f"num_points must be at least 1, got {num_points}")
        if not noise >= 0:
            raise ValueError(f"noise must be non-negative, got {noise}")
        if not 0 <= tilt_degrees <= 180:
            raise ValueError(f"tilt_degrees must be in [0, 180], got {tilt_degrees}")
        self.seed, self.num_points, self.noise = seed, num_points, noise
        self.tilt_degrees, self.scale_jitter = tilt_degrees, scale_jitter

    def label(self, split: str, index: int) -> int:
        """The class (index into SOLIDS) of cloud ``index`` of ``split``: every block of 8 holds each class once."""
        block, position = divmod(self._check_index(index), len(SOLIDS))
        order = np.random.default_rng([self.seed, self._split_id(split), block, _LABEL_STREAM]).permutation(len(SOLIDS))
        return int(order[position])

    def cloud(self, split: str, index: int) -> SolidCloud:
        """Cloud ``index`` of ``split``; a function of (seed, split, index) only."""
        label = self.label(split, index)
        name = SOLIDS[label]
        rng = np.random.default_rng([self.seed, self._split_id(split), index, _CLOUD_STREAM])
        scale = random_scale(name, rng) if self.scale_jitter else np.ones(3)
        rotation = random_pose(rng, self.tilt_degrees)
        vertices, faces = solid_mesh(name)
        # Scaled before sampling, so that the points stay uniform over the stretched surface.
        points, normals = sample_surface(vertices * scale, faces, self.num_points, rng)
        points, normals = normalize_cloud(points @ rotation.T), normals @ rotation.T
        if self.noise > 0:
            points = normalize_cloud(points + rng.normal(0.0, self.noise, points.shape))
        return SolidCloud(
            points=points.astype(np.float32),
            normals=normals.astype(np.float32),
            label=label,
            name=name,
            rotation=rotation,
            scale=scale,
        )

    def _split_id(self, split: str) -> int:
        if split not in self.SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(self.SPLITS)}")
        return self.SPLITS.index(split)

    @staticmethod
    def _check_index(index: int) -> int:
        if index < 0:
            raise ValueError(f"index must be non-negative, got {index}")
        return int(index)
