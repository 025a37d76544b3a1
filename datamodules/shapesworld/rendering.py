"""A pinhole z-buffer triangle rasteriser in torch: the RGB image, metric depth and object ids of triangle meshes.

ShapesWorld's 3D scenes (``depth.py``) and the depth-map renders its 3D CLIP is pretrained on
(``solids_captions.py``) are drawn with it. It is deliberately simple and exact rather than pretty: one sample at
every pixel centre (no antialiasing, so that depth at an object's edge is the depth of one surface, as a depth
sensor's ground truth is, never a blend of two), flat Lambertian shading, one directional light and an ambient
term, no shadows, no textures (a mesh is one colour, or one colour per face).

Conventions:

- World coordinates: y is up (as ShapesWorld's solids and ModelNet's clouds), in metres.
- Camera coordinates: x to the right, y up, z forward: the camera looks along +z, its optical axis. At
  ``yaw = pitch = 0`` they are the world's axes, moved to the camera's position.
- Pixels: row ``i`` grows downwards, column ``j`` to the right; pixel (i, j) is sampled at its centre
  (j + 0.5, i + 0.5). A camera point (x, y, z) projects to u = W / 2 + f x / z, v = H / 2 - f y / z (the
  principal point in the middle of the image, f the focal length in pixels).
- Depth: z in camera coordinates, the distance along the optical axis (not along the pixel's ray), as NYU
  Depth v2 and KITTI ground truth hold it; 0 where no surface is hit (no measurement).

Triangles are clipped at the camera's near plane (a floor passing under the camera is drawn up to it), faces are
two-sided (a plane seen from behind is lit as seen from the front), and at a pixel the nearest surface wins,
ties going to the earlier triangle in the order given, so a render is a deterministic function of its input.

Every (pixel, triangle) pair whose pixel lies in the triangle's bounding box is tested at once, in chunks of at
most ``max_pairs`` pairs to bound memory: a few hundred small triangles of solids cost little, a floor or a wall
one image's worth of pairs per triangle.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

# Pointing from the scene towards the light: from above, a little to the left and behind the camera, so that
# the tops, the fronts and the left sides of solids are lit differently and their faces tell their shape.
DEFAULT_LIGHT = (-0.4, 1.0, -0.6)
DEFAULT_AMBIENT = 0.35
# Depth maps show the nearest surface at full brightness and the farthest at this fraction, so that the far end
# of an object stays distinct from the black background.
_FAR_BRIGHTNESS = 0.2


class Mesh(NamedTuple):
    """A triangle mesh in world coordinates: ``vertices`` [V, 3], ``faces`` [F, 3] vertex indices, ``color``
    RGB 0-255, one for the mesh (3 values) or one per face ([F, 3])."""

    vertices: np.ndarray | Tensor
    faces: np.ndarray | Tensor
    color: Sequence[float] | np.ndarray | Tensor


class Rendering(NamedTuple):
    """``rgb`` uint8 [H, W, 3]; ``depth`` float32 [H, W] z-depth, 0 where nothing is hit; ``object_id`` int64
    [H, W], the index of the mesh seen at each pixel in the list rendered, -1 where nothing is hit."""

    rgb: np.ndarray
    depth: np.ndarray
    object_id: np.ndarray


@dataclass(frozen=True)
class Camera:
    """A pinhole camera (see the module's conventions).

    Args:
        image_size: (height, width) in pixels, or one number for a square image.
        focal: focal length in pixels (square pixels; :meth:`from_fov` computes it from a field of view).
        position: the optical centre in world coordinates.
        yaw: degrees about the world's y axis; 0 looks along world +z, positive turns the view towards +x.
        pitch: degrees; positive looks up, negative down.
        near: distance of the near plane along the optical axis; nearer geometry is clipped away.
    """

    image_size: int | tuple[int, int]
    focal: float
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0
    pitch: float = 0.0
    near: float = 0.01

    def __post_init__(self):
        if min(self.shape) < 1:
            raise ValueError(f"Camera.image_size must be positive, got {self.image_size}")
        if not self.focal > 0:
            raise ValueError(f"Camera.focal must be a positive number of pixels, got {self.focal}")
        if not self.near > 0:
            raise ValueError(f"Camera.near must be positive, got {self.near}")
        if len(self.position) != 3:
            raise ValueError(f"Camera.position must be (x, y, z), got {self.position}")

    @classmethod
    def from_fov(cls, fov: float, image_size: int | tuple[int, int], **kwargs) -> Camera:
        """A camera whose horizontal field of view is ``fov`` degrees."""
        if not 0 < fov < 180:
            raise ValueError(f"fov must be between 0 and 180 degrees, got {fov}")
        width = image_size if isinstance(image_size, int) else image_size[1]
        return cls(image_size, width / 2 / math.tan(math.radians(fov) / 2), **kwargs)

    @classmethod
    def looking_at(
        cls, position: Sequence[float], target: Sequence[float], fov: float, image_size: int | tuple[int, int],
        **kwargs,
    ) -> Camera:
        """A camera at ``position`` whose optical axis passes through ``target``, with a horizontal field of view
        of ``fov`` degrees. Straight up or down the yaw is 0 (the image's up is then world -z or +z)."""
        direction = np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64)
        if not np.linalg.norm(direction) > 0:
            raise ValueError(f"target {tuple(target)} must differ from position {tuple(position)}")
        horizontal = math.hypot(direction[0], direction[2])
        yaw = math.degrees(math.atan2(direction[0], direction[2])) if horizontal > 1e-12 else 0.0
        pitch = math.degrees(math.atan2(direction[1], horizontal))
        position = tuple(float(p) for p in position)
        return cls.from_fov(fov, image_size, position=position, yaw=yaw, pitch=pitch, **kwargs)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def rotation(self) -> np.ndarray:
        """[3, 3]: its rows are the camera's right, up and forward axes in world coordinates, so that camera
        coordinates are ``rotation() @ (world - position)``."""
        yaw, pitch = math.radians(self.yaw), math.radians(self.pitch)
        right = (math.cos(yaw), 0.0, -math.sin(yaw))
        up = (-math.sin(pitch) * math.sin(yaw), math.cos(pitch), -math.sin(pitch) * math.cos(yaw))
        forward = (math.cos(pitch) * math.sin(yaw), math.sin(pitch), math.cos(pitch) * math.cos(yaw))
        return np.array([right, up, forward])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] in camera coordinates [..., 3]."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.position)) @ self.rotation().T

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] as (u, v, z) [..., 3]: the pixel coordinates of their projections (column, row,
        pixel centres at + 0.5) and their z-depth."""
        camera = self.to_camera(points)
        height, width = self.shape
        z = camera[..., 2]
        u, v = width / 2 + self.focal * camera[..., 0] / z, height / 2 - self.focal * camera[..., 1] / z
        return np.stack([u, v, z], -1)


def render(
    meshes: Sequence[Mesh | tuple],
    camera: Camera,
    background: Sequence[float] = (0, 0, 0),
    light: Sequence[float] = DEFAULT_LIGHT,
    ambient: float = DEFAULT_AMBIENT,
    max_pairs: int = 1 << 19,
) -> Rendering:
    """Render ``meshes`` (each a :class:`Mesh` or a (vertices, faces, color) tuple, world coordinates) as seen by
    ``camera``: see :class:`Rendering`. A face's colour is scaled by ``ambient + (1 - ambient) * max(0, n . l)``,
    ``n`` its normal turned towards the camera and ``l`` the unit vector towards the ``light``; ``background`` is
    the RGB where nothing is hit."""
    height, width = camera.shape
    triangles, colors, mesh_ids = _gather(meshes)
    light_direction = torch.tensor(light, dtype=torch.float64)
    if light_direction.shape != (3,) or not light_direction.norm() > 0:
        raise ValueError(f"light must be a non-zero direction (x, y, z), got {tuple(light)}")
    if not 0 <= ambient <= 1:
        raise ValueError(f"ambient must be in [0, 1], got {ambient}")
    if np.shape(background) != (3,):
        raise ValueError(f"background must be an RGB colour (3 values), got {background}")

    # Flat shading: one normal per face, towards the camera (two-sided faces).
    position = torch.tensor(camera.position, dtype=torch.float64)
    normals = torch.linalg.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    lengths = normals.norm(dim=1, keepdim=True)
    solid = lengths[:, 0] > 0  # zero-area faces are never drawn
    normals = normals / lengths.clamp_min(1e-300)
    facing = ((position - triangles[:, 0]) * normals).sum(1, keepdim=True)
    normals = torch.where(facing < 0, -normals, normals)
    lambert = (normals @ (light_direction / light_direction.norm())).clamp_min(0)
    shades = colors * (ambient + (1 - ambient) * lambert)[:, None]

    rotation = torch.from_numpy(camera.rotation())
    in_camera = (triangles[solid] - position) @ rotation.T
    clipped, source = _clip_near(in_camera, camera.near)
    source = torch.nonzero(solid)[:, 0][source]  # index of each clipped triangle's face

    depth = torch.full((height * width,), math.inf, dtype=torch.float64)
    winner = torch.full((height * width,), -1, dtype=torch.int64)  # the clipped triangle seen at each pixel
    if len(clipped):
        _rasterize(clipped, camera, depth, winner, max_pairs)
    hit = winner >= 0
    face = source[winner[hit]]

    rgb = torch.tensor(background, dtype=torch.float64).expand(height * width, 3).clone()
    rgb[hit] = shades[face]
    object_id = torch.full((height * width,), -1, dtype=torch.int64)
    object_id[hit] = mesh_ids[face]
    return Rendering(
        rgb=rgb.round().clamp(0, 255).to(torch.uint8).reshape(height, width, 3).numpy(),
        depth=torch.where(hit, depth, 0.0).to(torch.float32).reshape(height, width).numpy(),
        object_id=object_id.reshape(height, width).numpy(),
    )


def depth_map_image(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """A depth map as a grey uint8 image [H, W]: ``near`` (and nearer) white, ``far`` (and farther) dim grey,
    linear in between, and black where there is no measurement (depth 0 or not finite): the look of a dense
    depth render of an object on an empty background."""
    if not far > near:
        raise ValueError(f"depth_map_image needs far > near, got near={near}, far={far}")
    depth = np.asarray(depth, dtype=np.float64)
    measured = np.isfinite(depth) & (depth > 0)
    nearness = 1 - np.clip((np.where(measured, depth, far) - near) / (far - near), 0, 1)
    brightness = _FAR_BRIGHTNESS + (1 - _FAR_BRIGHTNESS) * nearness
    return np.where(measured, np.round(255 * brightness), 0).astype(np.uint8)


def _gather(meshes: Sequence[Mesh | tuple]) -> tuple[Tensor, Tensor, Tensor]:
    """All faces as triangles [F, 3, 3] (float64, world), their colours [F, 3] and mesh indices [F]. In numpy:
    cheaper than torch for the many small arrays of a scene."""
    triangles, colors, mesh_ids = [np.zeros((0, 3, 3))], [np.zeros((0, 3))], [np.zeros(0, dtype=np.int64)]
    for k, mesh in enumerate(meshes):
        if len(mesh) != 3:
            raise ValueError(f"mesh {k} must be (vertices, faces, color), got {len(mesh)} items")
        vertices, faces, color = (np.asarray(part.cpu() if isinstance(part, Tensor) else part) for part in mesh)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise ValueError(f"mesh {k}: vertices must be [V, 3], got shape {vertices.shape}")
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise ValueError(f"mesh {k}: faces must be integer [F, 3], got {faces.dtype} {faces.shape}")
        if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ValueError(f"mesh {k}: face indices must be in [0, {len(vertices)}), got {faces.min()} to "
                             f"{faces.max()}")
        if not np.isfinite(vertices).all():
            raise ValueError(f"mesh {k}: vertices must be finite")
        if color.shape not in ((3,), (len(faces), 3)):
            raise ValueError(f"mesh {k}: color must be RGB (3 values) or one per face [{len(faces)}, 3], "
                             f"got shape {color.shape}")
        triangles.append(vertices[faces])
        colors.append(np.broadcast_to(color, (len(faces), 3)))
        mesh_ids.append(np.full(len(faces), k))
    return (torch.from_numpy(np.concatenate(triangles).astype(np.float64)),
            torch.from_numpy(np.concatenate(colors).astype(np.float64)), torch.from_numpy(np.concatenate(mesh_ids)))


def _clip_near(triangles: Tensor, near: float) -> tuple[Tensor, Tensor]:
    """Triangles [F, 3, 3] (camera coordinates) cut to z >= near: (triangles [F', 3, 3], index of each one's
    source triangle [F']). One vertex in front leaves a smaller triangle; two leave a quad, split in two."""
    behind = triangles[..., 2] < near
    if not behind.any():
        return triangles, torch.arange(len(triangles))
    count = behind.sum(1)
    kept = [triangles[count == 0]]
    sources = [torch.nonzero(count == 0)[:, 0]]
    for behind_count in (1, 2):
        index = torch.nonzero(count == behind_count)[:, 0]
        if not len(index):
            continue
        # Rotate each triangle's vertices (keeping their order around it) so that the odd one out comes first.
        odd = behind[index] if behind_count == 1 else ~behind[index]
        order = (odd.to(torch.int64).argmax(1, keepdim=True) + torch.arange(3)) % 3
        a, b, c = triangles[index[:, None], order].unbind(1)

        def cut(start: Tensor, end: Tensor) -> Tensor:
            t = (near - start[:, 2:]) / (end[:, 2:] - start[:, 2:])
            return start + t * (end - start)

        ab, ac = cut(a, b), cut(a, c)
        if behind_count == 1:  # a behind: the quad ab, b, c, ac
            kept += [torch.stack([ab, b, c], 1), torch.stack([ab, c, ac], 1)]
            sources += [index, index]
        else:  # only a in front
            kept.append(torch.stack([a, ab, ac], 1))
            sources.append(index)
    return torch.cat(kept), torch.cat(sources)


def _rasterize(triangles: Tensor, camera: Camera, depth: Tensor, winner: Tensor, max_pairs: int) -> None:
    """Z-buffer ``triangles`` [F, 3, 3] (camera coordinates, z >= near) into ``depth`` and ``winner`` (flat [H * W],
    updated in place)."""
    height, width = camera.shape
    z = triangles[..., 2]
    u = width / 2 + camera.focal * triangles[..., 0] / z
    v = height / 2 - camera.focal * triangles[..., 1] / z
    # Barycentric coordinate k of image point (x, y) is plane[:, k] . (x, y, 1): the edge function of the edge
    # opposite vertex k over twice the triangle's signed area, whichever way round the triangle is wound.
    following, preceding = [1, 2, 0], [2, 0, 1]
    du, dv = u[:, preceding] - u[:, following], v[:, preceding] - v[:, following]
    area = du[:, 0] * (v[:, 0] - v[:, 1]) - dv[:, 0] * (u[:, 0] - u[:, 1])  # the edge function at its own vertex
    plane = torch.stack([-dv, du, dv * u[:, following] - du * v[:, following]], 2) / area[:, None, None]
    # Pixels whose centres (j + 0.5, i + 0.5) lie in each triangle's bounding box; zero-area triangles get none.
    column_lo = torch.ceil(u.min(1).values - 0.5).clamp(0, width).long()
    column_hi = torch.floor(u.max(1).values - 0.5).clamp(-1, width - 1).long()
    row_lo = torch.ceil(v.min(1).values - 0.5).clamp(0, height).long()
    row_hi = torch.floor(v.max(1).values - 0.5).clamp(-1, height - 1).long()
    box_width = (column_hi - column_lo + 1).clamp_min(0)
    counts = torch.where(area.abs() > 1e-12, box_width * (row_hi - row_lo + 1).clamp_min(0), 0)
    # What a pair needs of its triangle, packed so that one gather fetches it.
    coefficients = torch.cat([plane.reshape(-1, 9), 1 / z], 1)
    boxes = torch.stack([column_lo, row_lo, box_width], 1)
    ends = torch.cumsum(counts, 0)
    chunk = max(max_pairs, height * width)  # a triangle's pairs always fit in one chunk
    first = 0
    while first < len(triangles):
        start = int(ends[first] - counts[first])
        last = max(int(torch.searchsorted(ends, start + chunk, right=True)), first + 1)
        pair_counts = counts[first:last]
        triangle = torch.repeat_interleave(torch.arange(first, last), pair_counts)
        offset = torch.arange(int(pair_counts.sum())) - torch.repeat_interleave(ends[first:last] - pair_counts - start,
                                                                              pair_counts)
        column_lo, row_lo, box_width = boxes.index_select(0, triangle).unbind(1)
        columns = column_lo + offset % box_width
        rows = row_lo + torch.div(offset, box_width, rounding_mode="floor")
        _depth_test(coefficients.index_select(0, triangle), triangle, rows, columns, width, depth, winner)
        first = last


def _depth_test(
    coefficients: Tensor, triangle: Tensor, rows: Tensor, columns: Tensor, width: int, depth: Tensor, winner: Tensor
) -> None:
    """Test each (pixel, triangle) pair (``coefficients`` [P, 12]: the triangle's barycentric planes [3, 3] and its
    vertices' 1 / z [3]) and keep the nearest hit per pixel; on a tie in depth the lower triangle index wins,
    whichever chunk it came in."""
    plane, inverse_z = coefficients[:, :9].view(-1, 3, 3), coefficients[:, 9:]
    barycentric = plane[:, :, 0] * (columns[:, None] + 0.5) + plane[:, :, 1] * (rows[:, None] + 0.5) + plane[:, :, 2]
    inside = (barycentric >= 0).all(1)
    # 1 / z is linear in the image, so perspective-correct depth interpolates it. Pairs outside: infinitely far.
    pair_depth = torch.where(inside, 1 / (barycentric * inverse_z).sum(1), math.inf)
    pixel = rows * width + columns
    nearest = depth.clone().scatter_reduce_(0, pixel, pair_depth, "amin")
    last = torch.iinfo(torch.int64).max
    candidate = torch.where(inside & (pair_depth == nearest[pixel]), triangle, last)
    best = torch.full_like(winner, last).scatter_reduce_(0, pixel, candidate, "amin")
    # Earlier chunks hold lower triangle indices, so at an equal depth the pixel keeps its earlier winner.
    improved = nearest < depth
    depth.copy_(nearest)
    winner.copy_(torch.where(improved, best, winner))
