"""Tests of 3D ShapesWorld's renderer, depth scenes and 3D caption pairs."""

import math

import numpy as np
import pytest
from lit_clip.datamodules.shapesworld.depth import (
    DEPTHCLIP_BINS,
    DEPTHCLIP_WORDS,
    FARTHEST,
    NEAREST,
    ShapesWorldDepth,
    ShapesWorldDepthScenes,
    distance_word,
)
from lit_clip.datamodules.shapesworld.rendering import Camera, Mesh, depth_map_image, render
from lit_clip.datamodules.shapesworld.solids import SOLIDS
from lit_clip.datamodules.shapesworld.solids_captions import (
    POINTCLIP_TEMPLATES,
    ShapesWorldSolidsCaptions,
    SolidsCaptionWorld,
)

GREY, RED = (100, 100, 100), (200, 0, 0)


def quad(x0, x1, y0, y1, z):
    """A rectangle facing the camera (normal along -z) at depth z."""
    vertices = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=np.float32)
    return vertices, np.array([[0, 2, 1], [0, 3, 2]])


def cube(center, half):
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    faces = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
             [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]  # fmt: skip
    return corners * half + np.asarray(center), np.array(faces)


def test_a_plane_gives_its_z_depth_wherever_it_covers_and_nothing_elsewhere():
    camera = Camera(32, focal=20.0)
    rendering = render([Mesh(*quad(-1, 1, -1, 1, 2.0), GREY)], camera, background=(1, 2, 3))
    # x in [-1, 1] at z = 2 spans u = 16 -+ 20 * 0.5: the centres of columns 6 to 25 fall inside.
    covered = np.zeros((32, 32), dtype=bool)
    covered[6:26, 6:26] = True
    assert np.array_equal(rendering.object_id >= 0, covered)
    # z-depth, not the distance along the ray, which grows towards the corners.
    assert np.allclose(rendering.depth[covered], 2.0, atol=1e-5)
    assert (rendering.depth[~covered] == 0).all() and (rendering.object_id[~covered] == -1).all()
    assert (rendering.rgb[~covered] == (1, 2, 3)).all()
    assert rendering.rgb.dtype == np.uint8 and rendering.depth.dtype == np.float32


@pytest.mark.parametrize("cube_first", [True, False])
def test_the_nearest_surface_wins_whatever_the_order(cube_first):
    camera = Camera(32, focal=20.0)
    wall = Mesh(*quad(-3, 3, -3, 3, 4.0), GREY)
    box = Mesh(*cube((0, 0, 2.0), 0.25), RED)
    meshes = [box, wall] if cube_first else [wall, box]
    rendering = render(meshes, camera)
    box_id = 0 if cube_first else 1
    assert rendering.object_id[16, 16] == box_id
    assert math.isclose(rendering.depth[16, 16], 1.75, abs_tol=1e-5)  # the cube's front face
    assert (rendering.rgb[16, 16, 1:] == 0).all() and rendering.rgb[16, 16, 0] > 0
    assert rendering.object_id[2, 2] == 1 - box_id and math.isclose(rendering.depth[2, 2], 4.0, abs_tol=1e-5)
    # The cube's front face spans u = 16 -+ 20 * 0.25 / 1.75: columns 13 to 18.
    assert np.array_equal(np.unique(np.nonzero(rendering.object_id == box_id)[1]), np.arange(13, 19))


def test_projection_follows_the_pinhole_formula_and_the_documented_axes():
    camera = Camera((40, 50), focal=30.0, position=(0.2, 1.0, -0.5))
    point = np.array([0.6, 0.7, 2.5])
    x, y, z = point - camera.position
    u, v = 25 + 30 * x / z, 20 - 30 * y / z  # the principal point in the middle, image rows growing downwards
    assert np.allclose(camera.project(point), [u, v, z])
    # A small cube around the point covers the pixels around its projection.
    rows, columns = np.nonzero(render([Mesh(*cube(point, 0.1), GREY)], camera).object_id == 0)
    assert len(rows) >= 4
    assert abs(columns.mean() + 0.5 - u) < 0.5 and abs(rows.mean() + 0.5 - v) < 0.5
    # Yaw 90 degrees looks along world +x, with world -z to the right; pitch -90 looks straight down.
    turned = Camera(32, focal=20.0, yaw=90.0)
    assert np.allclose(turned.project(np.array([3.0, 0.0, 0.0])), [16, 16, 3])
    assert turned.project(np.array([3.0, 0.0, -1.0]))[0] > 16
    assert np.allclose(Camera(32, focal=20.0, pitch=-90.0).project(np.array([0.0, -2.0, 0.0])), [16, 16, 2])
    # looking_at puts its target in the middle of the image.
    aimed = Camera.looking_at((1.0, 2.0, -3.0), (0.3, 0.5, 1.0), fov=50.0, image_size=64)
    assert np.allclose(aimed.project(np.array([0.3, 0.5, 1.0]))[:2], [32, 32])


def test_a_floor_passing_under_the_camera_is_clipped_and_has_perspective_correct_depth():
    height, focal = 0.5, 30.0
    camera = Camera(32, focal=focal, position=(0.0, height, 0.0))
    floor = np.array([[-10, 0, -5], [10, 0, -5], [10, 0, 20], [-10, 0, 20]], dtype=np.float64)
    rendering = render([Mesh(floor, np.array([[0, 2, 1], [0, 3, 2]]), GREY)], camera)
    rows = np.arange(17, 32)
    # A ray through row i falls by (i + 0.5 - 16) / focal per metre: it meets the floor at z = height * focal / that.
    expected = height * focal / (rows + 0.5 - 16)
    expected_seen = expected <= 20
    assert np.allclose(rendering.depth[rows[expected_seen], 5], expected[expected_seen], rtol=1e-5)
    assert (rendering.depth[:16] == 0).all()  # above the horizon


def test_rendering_in_chunks_changes_nothing():
    camera = Camera(24, focal=15.0, position=(0.0, 0.5, 0.0), pitch=-10.0)
    floor = Mesh(np.array([[-5, 0, 0.2], [5, 0, 0.2], [5, 0, 6], [-5, 0, 6]]), np.array([[0, 2, 1], [0, 3, 2]]), GREY)
    meshes = [Mesh(*cube((0.2, 0.3, 2.0), 0.3), RED), Mesh(*cube((-0.3, 0.3, 2.5), 0.3), GREY), floor]
    whole, chunked = render(meshes, camera), render(meshes, camera, max_pairs=1)  # chunks of one image's pixels
    for a, b in zip(whole, chunked):
        assert np.array_equal(a, b)
    assert set(np.unique(whole.object_id)) == {-1, 0, 1, 2}


def test_lambert_shading_and_the_depth_map_image():
    camera = Camera(8, focal=8.0)
    facing = render([Mesh(*quad(-1, 1, -1, 1, 1.0), (200, 200, 200))], camera, light=(0, 0, -1), ambient=0.25)
    away = render([Mesh(*quad(-1, 1, -1, 1, 1.0), (200, 200, 200))], camera, light=(1, 0, 0), ambient=0.25)
    assert (facing.rgb[4, 4] == 200).all() and (away.rgb[4, 4] == 50).all()
    image = depth_map_image(np.array([[0.0, 1.0, 2.0, 3.0, np.inf]]), near=1.0, far=3.0)
    assert image.tolist() == [[0, 255, 153, 51, 0]]  # background black, near white, far dim grey
    with pytest.raises(ValueError, match="far > near"):
        depth_map_image(np.ones((2, 2)), near=2.0, far=1.0)
    with pytest.raises(ValueError, match="mesh 0: face indices"):
        render([Mesh(*quad(-1, 1, -1, 1, 1.0)[:1], np.array([[0, 1, 7]]), GREY)], camera)


def test_distance_words_are_those_of_depthclips_nearest_bin():
    assert len(DEPTHCLIP_WORDS) == len(DEPTHCLIP_BINS) == 7
    for word, depth in zip(DEPTHCLIP_WORDS, DEPTHCLIP_BINS):
        assert distance_word(depth) == word
    assert distance_word(0.8) == "giant" and distance_word(1.3) == "extremely close"
    assert distance_word(2.1) == "close" and distance_word(2.2) == "not in distance"
    assert distance_word(2.9) == "unseen" and distance_word(4.0) == "unseen"


@pytest.fixture(scope="module")
def scenes():
    generator = ShapesWorldDepthScenes(image_size=48, max_objects=3, seed=1)
    return [generator.scene("train", i) for i in range(24)]


def test_depth_scenes_are_deterministic_and_split_streams_differ():
    a, b = ShapesWorldDepthScenes(image_size=32, seed=2), ShapesWorldDepthScenes(image_size=32, seed=2)
    first = a.scene("val", 3)
    assert first.image.tobytes() == b.scene("val", 3).image.tobytes() and first.caption == b.scene("val", 3).caption
    assert np.array_equal(first.depth, b.scene("val", 3).depth)
    for other in (a.scene("val", 4), a.scene("test", 3), ShapesWorldDepthScenes(image_size=32, seed=3).scene("val", 3)):
        assert not np.array_equal(other.depth, first.depth)


def test_depth_scenes_measure_every_pixel_in_range_and_objects_where_they_stand(scenes):
    for scene in scenes:
        assert scene.depth.shape == (48, 48) and scene.image.size == (48, 48)
        assert (scene.depth > 0.3).all() and (scene.depth < 7).all()  # floor and wall everywhere, nothing beyond
        assert 1 <= len(scene.objects) <= 3
        for k, obj in enumerate(scene.objects):
            assert NEAREST <= obj.distance <= FARTHEST and obj.solid in SOLIDS
            seen = scene.depth[scene.object_id == k]
            assert len(seen) > 0, f"object {obj} is hidden"
            # Its surface lies in its bounding sphere, around its centre's depth.
            assert (np.abs(seen - obj.distance) <= obj.radius + 1e-4).all()


def test_captions_name_every_object_and_depthclips_sentences_use_the_nearest_bins_word(scenes):
    depthclip_sentences = 0
    for scene in scenes:
        for obj in scene.objects:
            assert obj.solid in scene.caption
        if scene.caption.startswith("this ") and len(scene.objects) == 1:
            depthclip_sentences += 1
            assert scene.caption.endswith(f" is {scene.objects[0].word}.")
    assert depthclip_sentences > 0


def test_holes_have_no_measurement():
    generator = ShapesWorldDepthScenes(image_size=32, holes=0.05)
    scene, whole = generator.scene("test", 0), ShapesWorldDepthScenes(image_size=32).scene("test", 0)
    holes = scene.depth == 0
    assert 0.05 <= holes.mean() < 0.2
    assert np.array_equal(scene.depth[~holes], whole.depth[~holes])  # the same scene, unmeasured in places
    assert scene.caption == whole.caption and scene.image.tobytes() == whole.image.tobytes()


def test_depth_data_module_gives_depth_batches():
    data = ShapesWorldDepth(image_size=32, holes=0.05, val_samples=4, test_samples=6, batch_size=3)
    batch = next(iter(data.test_dataloader()))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["depth"].shape == (3, 32, 32)
    assert batch["index"].tolist() == [0, 1, 2]
    assert batch["image"].min() < -1  # CLIP-normalised, not [0, 1]
    measured = batch["depth"][batch["depth"] > 0]
    assert (batch["depth"] == 0).any() and data.min_depth < measured.min() and measured.max() < data.max_depth
    assert len(data.predict_dataloader().dataset) == 6


def test_solids_caption_pairs_and_the_zero_shot_depth_maps():
    data = ShapesWorldSolidsCaptions(image_size=32, val_samples=8, zeroshot_samples_per_class=2, batch_size=4)
    assert data.classnames == list(SOLIDS) and data.templates == POINTCLIP_TEMPLATES
    pairs, zeroshot = data.val_dataloader()
    batch = next(iter(pairs))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["text"].shape == (4, 32) and len(batch["caption"]) == 4
    labelled = next(iter(zeroshot))
    assert labelled["label"].tolist() == [0, 1, 2, 3] and len(zeroshot.dataset) == 16
    image = labelled["image"]
    std = np.array([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    mean = np.array([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    pixels = image[0].numpy() * std + mean
    assert np.allclose(pixels[0], pixels[1], atol=1e-5) and np.allclose(pixels[1], pixels[2], atol=1e-5)  # grey
    assert pixels[:, 0, 0].max() < 1e-5 and pixels.max() > 0.99  # black background, its nearest point white


def test_the_mix_holds_depth_maps_and_scenes_in_proportion():
    world = SolidsCaptionWorld(image_size=16, depth_map_fraction=0.5)
    samples = [world.scene("train", i) for i in range(40)]
    depth_maps = [s for s in samples if s.kind == "depth_map"]
    assert 10 <= len(depth_maps) <= 30
    for sample in depth_maps:
        assert any(solid in sample.caption for solid in SOLIDS)
    scenes_only = SolidsCaptionWorld(16, depth_map_fraction=0)
    assert all(scenes_only.scene("val", i).kind == "scene" for i in range(5))
    with pytest.raises(ValueError, match="vocabulary must be 'solid'"):
        world.classification_sample("val", 0, "color_shape")
