"""ShapesWorld's 3D solids (meshes, surface sampling, clouds) and the point-cloud data module."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from lit_clip.datamodules.shapesworld.points import ShapesWorldPoints
from lit_clip.datamodules.shapesworld.solids import (
    SOLIDS,
    ShapesWorldSolids,
    random_pose,
    random_scale,
    sample_surface,
    solid_mesh,
)


@pytest.mark.parametrize("name", SOLIDS)
def test_meshes_are_closed_outward_and_inside_the_unit_sphere(name):
    vertices, faces = solid_mesh(name)
    assert vertices.dtype == np.float32 and faces.dtype == np.int64
    assert vertices.shape[1] == 3 and faces.shape[1] == 3 and faces.min() >= 0 and faces.max() < len(vertices)
    # Closed and consistently oriented: every undirected edge in exactly two faces, every directed edge in one.
    directed = Counter((int(a), int(b)) for face in faces for a, b in zip(face, np.roll(face, -1)))
    undirected = Counter(tuple(sorted(edge)) for edge in directed.elements())
    assert set(undirected.values()) == {2} and set(directed.values()) == {1}
    corners = vertices[faces].astype(np.float64)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert np.linalg.norm(normals, axis=1).min() > 1e-6  # no degenerate faces
    # Outward: the divergence theorem's signed volume is positive.
    assert np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6 > 0.1
    norms = np.linalg.norm(vertices, axis=1)
    assert norms.max() == pytest.approx(1.0, abs=1e-5)
    # Centred on the bounding-box centre, so a solid rests on y = vertices[:, 1].min().
    np.testing.assert_allclose(vertices.min(axis=0), -vertices.max(axis=0), atol=1e-5)
    assert len(faces) <= 600
    with pytest.raises(ValueError):
        vertices[0, 0] = 5.0  # cached, so read-only


def test_mesh_shapes_are_the_named_solids():
    assert len(solid_mesh("cube")[1]) >= 12 and len(solid_mesh("octahedron")[0]) == 6
    assert len(solid_mesh("pyramid")[0]) == 5 + 1 and len(solid_mesh("prism")[0]) == 6 + 2  # + centres of flat caps
    torus = solid_mesh("torus")[0]
    assert np.ptp(torus[:, 1]) < 0.5 * np.ptp(torus[:, 0])  # flat, hole along y
    cone = solid_mesh("cone")[0]
    assert np.sum(np.isclose(cone[:, 1], cone[:, 1].max())) == 1  # the apex is up


def test_unknown_solid_names_the_solids():
    with pytest.raises(ValueError, match="unknown solid 'teapot'.*sphere"):
        solid_mesh("teapot")
    with pytest.raises(ValueError, match="unknown solid"):
        random_scale("teapot", np.random.default_rng(0))


def test_sampling_is_uniform_by_area_and_on_the_surface():
    vertices, faces = solid_mesh("cube")
    half = float(vertices.max())
    points, normals = sample_surface(vertices, faces, 12_000, np.random.default_rng(0))
    assert points.shape == normals.shape == (12_000, 3) and points.dtype == normals.dtype == np.float32
    # On the surface: the largest coordinate magnitude is the half side; each point's normal is its face's axis.
    np.testing.assert_allclose(np.abs(points).max(axis=1), half, atol=1e-5)
    axis = np.abs(points).argmax(axis=1)
    np.testing.assert_allclose(np.abs(normals[np.arange(len(points)), axis]), 1.0, atol=1e-5)
    # Outward normals point the way the points lie.
    assert np.all(np.sign(normals[np.arange(len(points)), axis]) == np.sign(points[np.arange(len(points)), axis]))
    # Each face gets a sixth of the points (the caps are 4-triangle fans, the sides 2 triangles: areas count).
    face_of_point = axis * 2 + (points[np.arange(len(points)), axis] > 0)
    fractions = np.bincount(face_of_point, minlength=6) / len(points)
    np.testing.assert_allclose(fractions, 1 / 6, atol=0.02)
    # Uniform within a face too: the quadrants of the top face hold a quarter each.
    top = points[face_of_point == 3]
    quadrants = np.bincount((top[:, 0] > 0) * 2 + (top[:, 2] > 0), minlength=4) / len(top)
    np.testing.assert_allclose(quadrants, 0.25, atol=0.04)


def test_sampling_rejects_bad_meshes():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"vertices \[V, 3\]"):
        sample_surface(np.zeros((4, 2)), np.zeros((1, 3), dtype=np.int64), 8, rng)
    with pytest.raises(ValueError, match="no surface"):
        sample_surface(np.zeros((3, 3)), np.array([[0, 1, 2]]), 8, rng)


def test_pose_is_a_turned_upright_rotation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rotation = random_pose(rng, tilt_degrees=10.0)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        up = rotation @ np.array([0.0, 1.0, 0.0])
        assert up[1] >= np.cos(np.radians(10.0)) - 1e-12  # the tilt stays below 10 degrees
    yaws = [np.arctan2(r[0, 2], r[0, 0]) for r in (random_pose(rng, 0.0) for _ in range(200))]
    assert np.ptp(yaws) > 5.5  # turned all the way round
    with pytest.raises(ValueError, match="tilt_degrees"):
        random_pose(rng, tilt_degrees=-1)


def test_clouds_are_deterministic_normalised_and_distinct_per_split():
    solids = ShapesWorldSolids(seed=3, num_points=256, noise=0.01)
    cloud = solids.cloud("train", 5)
    again = ShapesWorldSolids(seed=3, num_points=256, noise=0.01).cloud("train", 5)
    np.testing.assert_array_equal(cloud.points, again.points)
    assert cloud.label == again.label and cloud.name == SOLIDS[cloud.label]
    assert cloud.points.shape == cloud.normals.shape == (256, 3) and cloud.points.dtype == np.float32
    np.testing.assert_allclose(cloud.points.mean(axis=0), 0.0, atol=1e-6)
    assert np.linalg.norm(cloud.points, axis=1).max() == pytest.approx(1.0, abs=1e-6)
    others = [solids.cloud(split, 5).points for split in ("val", "test")] + [solids.cloud("train", 6).points]
    others.append(ShapesWorldSolids(seed=4, num_points=256, noise=0.01).cloud("train", 5).points)
    assert all(not np.allclose(cloud.points, other) for other in others)


def test_noise_free_points_lie_on_the_posed_scaled_surface():
    solids = ShapesWorldSolids(seed=0, num_points=512)
    cloud = next(c for c in (solids.cloud("val", i) for i in range(8)) if c.name == "cube")
    # Undo the pose: the cube's points then lie on the six planes of a box, each at max |coordinate| per axis.
    local = cloud.points @ cloud.rotation
    local -= (local.min(axis=0) + local.max(axis=0)) / 2
    extent = local.max(axis=0)
    distance_to_faces = np.min(np.abs(np.abs(local) - extent), axis=1)
    assert distance_to_faces.max() < 1e-4
    np.testing.assert_allclose(extent / extent.max(), cloud.scale / cloud.scale.max(), atol=1e-4)


def test_classes_are_balanced_in_every_block_of_eight():
    solids = ShapesWorldSolids(seed=0)
    for split in ShapesWorldSolids.SPLITS:
        labels = [solids.label(split, index) for index in range(64)]
        for block in range(8):
            assert sorted(labels[block * 8 : block * 8 + 8]) == list(range(8))
        assert labels[:8] != labels[8:16]  # blocks are ordered differently
    assert [solids.label("train", i) for i in range(8)] != [solids.label("test", i) for i in range(8)]


def test_generator_rejects_bad_arguments():
    for kwargs, message in (({"num_points": 0}, "num_points"), ({"noise": -0.1}, "noise"), ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=message):
            ShapesWorldSolids(**kwargs)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        ShapesWorldSolids().cloud("dev", 0)
    with pytest.raises(ValueError, match="index"):
        ShapesWorldSolids().cloud("train", -1)


def test_data_module_batches_and_splits():
    data = ShapesWorldPoints(num_points=64, train_samples=32, val_samples=16, test_samples=24, batch_size=8)
    assert data.classnames == list(SOLIDS) and data.templates == ["point cloud depth map of a {}."]
    batch = next(iter(data.train_dataloader()))
    assert batch["points"].shape == (8, 64, 3) and batch["points"].dtype == torch.float32
    assert batch["label"].dtype == batch["index"].dtype == torch.long and batch["label"].shape == (8,)
    test = list(data.test_dataloader())
    assert sum(len(b["index"]) for b in test) == 24
    test_labels = torch.cat([b["label"] for b in test])
    assert torch.bincount(test_labels, minlength=8).tolist() == [3] * 8
    val = torch.cat([b["points"] for b in data.val_dataloader()])
    test_points = torch.cat([b["points"] for b in test])
    # Validation clouds are not test clouds: no validation cloud equals any test cloud.
    assert not any(torch.allclose(v, t) for v in val for t in test_points)
    predicted = next(iter(data.predict_dataloader()))
    assert torch.equal(predicted["points"], test[0]["points"])


def test_few_shot_draws_k_per_class_by_seed():
    data = ShapesWorldPoints(num_points=16, train_samples=64, shots=2, seed=1, batch_size=4)
    indices = data.train_indices()
    labels = [data.solids.label("train", index) for index in indices]
    assert Counter(labels) == {label: 2 for label in range(8)}
    assert data.train_indices() == indices  # deterministic
    other = ShapesWorldPoints(num_points=16, train_samples=64, shots=2, seed=2, batch_size=4).train_indices()
    assert other != indices
    seen = torch.cat([b["index"] for b in data.train_dataloader()])
    assert sorted(seen.tolist()) == indices  # 16 clouds, batches of 4: nothing dropped


def test_data_module_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shots must be at least 1"):
        ShapesWorldPoints(shots=0)
    with pytest.raises(ValueError, match="train_samples >= 128"):
        ShapesWorldPoints(shots=16, train_samples=100)
    with pytest.raises(ValueError, match="val_samples"):
        ShapesWorldPoints(val_samples=0)
    data = ShapesWorldPoints(train_samples=8, shots=1, batch_size=16)
    with pytest.raises(ValueError, match="fewer than one training batch"):
        data.train_dataloader()
