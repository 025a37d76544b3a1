"""Tests of the ShapesWorld generator: determinism, labels, captions, held-out classes."""

import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from lit_clip.datamodules.shapesworld import world as shapesworld
from lit_clip.datamodules.shapesworld.world import COLORS, SHAPES, SIZES, ShapesWorld, class_names

N_SCENES = 300
_COLOR = "|".join(COLORS)
_SHAPE = "|".join(SHAPES)
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
# "a small red circle": a single object, size optional.
_SINGULAR = re.compile(rf"\b(?:a|an) (?:(small|large) )?({_COLOR}) ({_SHAPE})\b")
# "two green squares": a counted group, size optional.
_PLURAL = re.compile(rf"\b({'|'.join(_NUMBERS)}) (?:(small|large) )?({_COLOR}) ({_SHAPE})(?:s|es)\b")
_NP = rf"(?:a|an) (?:small |large )?({_COLOR}) ({_SHAPE})"
_RELATION = re.compile(rf"{_NP} (?:is )?(to the left of|to the right of|above|below) {_NP}")


@pytest.fixture(scope="module")
def world():
    return ShapesWorld()


@pytest.fixture(scope="module")
def scenes(world):
    return [world.scene("train", i) for i in range(N_SCENES)]


def _bytes(scene):
    return scene.image.tobytes()


def test_scene_is_deterministic_in_seed_split_index():
    a, b = ShapesWorld(seed=3), ShapesWorld(seed=3)
    for index in range(20):
        sa, sb = a.scene("val", index), b.scene("val", index)
        assert _bytes(sa) == _bytes(sb)
        assert sa.caption == sb.caption
        assert np.array_equal(sa.instance_masks, sb.instance_masks)
    # Order of generation does not matter: a scene is a function of its arguments only.
    assert _bytes(a.scene("val", 5)) == _bytes(ShapesWorld(seed=3).scene("val", 5))
    reference = _bytes(a.scene("val", 0))
    assert _bytes(a.scene("val", 1)) != reference
    assert _bytes(a.scene("test", 0)) != reference
    assert _bytes(ShapesWorld(seed=4).scene("val", 0)) != reference


def test_single_object_scene_and_classification_are_deterministic():
    a, b = ShapesWorld(seed=1), ShapesWorld(seed=1)
    assert _bytes(a.single_object_scene("test", 7, 12)) == _bytes(b.single_object_scene("test", 7, 12))
    assert _bytes(a.single_object_scene("test", 7, 12)) != _bytes(a.single_object_scene("test", 7, 13))
    image_a, label_a = a.classification_sample("train", 9, "shape")
    image_b, label_b = b.classification_sample("train", 9, "shape")
    assert label_a == label_b and image_a.tobytes() == image_b.tobytes()


def test_splits_draw_from_different_streams(world):
    for index in range(30):
        images = {_bytes(world.scene(split, index)) for split in ShapesWorld.SPLITS}
        assert len(images) == 3
    # A single-object scene never repeats the multi-object scene of the same index.
    assert _bytes(world.single_object_scene("train", 0, 0)) != _bytes(world.scene("train", 0))


def test_class_names_and_indexing():
    assert len(SHAPES) == len(COLORS) == 8 and SIZES == ("small", "large")
    assert class_names("shape") == list(SHAPES)
    assert class_names("color") == list(COLORS)
    names = class_names("color_shape")
    assert len(names) == 64 and len(set(names)) == 64
    for c, color in enumerate(COLORS):
        for s, shape in enumerate(SHAPES):
            assert names[c * 8 + s] == f"{color} {shape}"
    obj = shapesworld.ShapeObject("star", "blue", "small", (0.0, 0.0, 1.0, 1.0), (0.5, 0.5))
    assert obj.name == "blue star"
    assert obj.class_index() == COLORS.index("blue") * 8 + SHAPES.index("star")
    assert obj.class_index("shape") == SHAPES.index("star")
    assert obj.class_index("color") == COLORS.index("blue")


def test_object_counts_stay_in_range():
    world = ShapesWorld(min_objects=2, max_objects=4)
    counts = Counter(len(world.scene("train", i).objects) for i in range(150))
    assert set(counts) == {2, 3, 4}


def test_every_caption_names_colour_and_shape_of_every_object(scenes):
    for scene in scenes:
        assert scene.caption.endswith(".")
        for obj in scene.objects:
            assert re.search(rf"\b{obj.color} {obj.shape}", scene.caption), (scene.caption, obj)
        assert scene.noun_phrases == [f"{o.size} {o.color} {o.shape}" for o in scene.objects]


def test_captions_are_true(scenes):
    for scene in scenes:
        caption, by_name = scene.caption, Counter(obj.name for obj in scene.objects)
        for size, color, shape in _SINGULAR.findall(caption):
            matching = [o for o in scene.objects if o.name == f"{color} {shape}"]
            assert len(matching) == 1, caption
            assert size in ("", matching[0].size), caption
        for number, size, color, shape in _PLURAL.findall(caption):
            assert by_name[f"{color} {shape}"] == _NUMBERS.index(number) + 2, caption
            if size:
                assert all(o.size == size for o in scene.objects if o.name == f"{color} {shape}"), caption
        for number in re.findall(r"\b(\w+) shapes\b", caption):
            assert number == shapesworld._number(len(scene.objects)), caption
    openings = {" ".join(scene.caption.split()[:2]) for scene in scenes}
    assert len(openings) > 10  # the phrasing varies


def test_counts_in_captions_are_true():
    # With only two colour-shape pairs left to train on, most scenes repeat one of them.
    kept = ["green square", "red circle"]
    world = ShapesWorld(min_objects=2, max_objects=4, held_out=[n for n in class_names("color_shape") if n not in kept])
    counted = 0
    for index in range(200):
        scene = world.scene("train", index)
        by_name = Counter(obj.name for obj in scene.objects)
        for number, size, color, shape in _PLURAL.findall(scene.caption):
            assert by_name[f"{color} {shape}"] == _NUMBERS.index(number) + 2, scene.caption
            if size:
                assert all(o.size == size for o in scene.objects if o.name == f"{color} {shape}"), scene.caption
            counted += 1
        for name, count in by_name.items():
            if count > 1:
                assert re.search(rf"\b{_NUMBERS[count - 2]} (?:small |large )?{name}(?:s|es)\b", scene.caption)
    assert counted > 50


def test_relation_words_are_true():
    world = ShapesWorld(min_objects=2, max_objects=3, seed=5)
    checked = 0
    for index in range(400):
        scene = world.scene("train", index)
        for color_a, shape_a, relation, color_b, shape_b in _RELATION.findall(scene.caption):
            (a,) = [o for o in scene.objects if o.name == f"{color_a} {shape_a}"]
            (b,) = [o for o in scene.objects if o.name == f"{color_b} {shape_b}"]
            dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
            expected = {"to the left of": dx < 0, "to the right of": dx > 0, "above": dy < 0, "below": dy > 0}
            assert expected[relation], (scene.caption, a, b)
            checked += 1
    assert checked > 50


def test_masks_and_boxes(scenes):
    for scene in scenes:
        masks = scene.instance_masks
        size = scene.image.size[0]
        assert masks.dtype == bool and masks.shape == (len(scene.objects), size, size)
        assert masks.sum(axis=0).max() <= 1  # disjoint: occlusion respected
        for obj, mask in zip(scene.objects, masks):
            assert mask.any()
            x, y, w, h = obj.box
            assert 0 <= x and 0 <= y and x + w <= size and y + h <= size and w > 0 and h > 0
            rows, cols = np.nonzero(mask)
            assert cols.min() >= np.floor(x) and cols.max() < np.ceil(x + w)
            assert rows.min() >= np.floor(y) and rows.max() < np.ceil(y + h)
            assert x <= obj.center[0] <= x + w and y <= obj.center[1] <= y + h
        for vocabulary in ("shape", "color", "color_shape"):
            semantic = scene.semantic_mask(vocabulary)
            assert semantic.dtype == np.int64 and semantic.shape == (size, size)
            assert np.array_equal(semantic == 0, ~masks.any(axis=0))
            for obj, mask in zip(scene.objects, masks):
                assert (semantic[mask] == 1 + obj.class_index(vocabulary)).all()


def test_objects_are_large_enough_and_sized(scenes):
    areas = {size: [] for size in SIZES}
    for scene in scenes:
        for obj in scene.objects:
            areas[obj.size].append(obj.box[2] * obj.box[3])
    assert np.mean(areas["large"]) > 2 * np.mean(areas["small"])


def test_colours_are_distinct_from_each_other_and_the_background(scenes):
    for scene in scenes[:100]:
        pixels = np.asarray(scene.image, dtype=np.float64)
        background = pixels[~scene.instance_masks.any(axis=0)]
        if len(background):
            assert np.median(background.max(axis=1) - background.min(axis=1)) < 30  # greyish
        for obj, mask in zip(scene.objects, scene.instance_masks):
            mean = pixels[mask].mean(axis=0)
            nearest = np.argmin(np.linalg.norm(shapesworld.COLOR_RGB - mean, axis=1))
            assert COLORS[nearest] == obj.color
            assert mean.max() - mean.min() > 80  # saturated


def test_held_out_classes_never_appear_in_train():
    held_out = ["purple star", "red circle"]
    world = ShapesWorld(held_out=held_out)
    for index in range(2000):
        scene = world.scene("train", index)
        for obj in scene.objects:
            assert obj.name not in held_out
        assert not re.search(r"purple stars?\b|red circles?\b", scene.caption), scene.caption
    seen = {obj.name for i in range(300) for obj in world.scene("val", i).objects}
    assert set(held_out) <= seen  # they do appear outside train

    names = class_names("color_shape")
    with pytest.raises(ValueError, match="purple star"):
        world.single_object_scene("train", 0, names.index("purple star"))
    scene = world.single_object_scene("test", 0, names.index("purple star"))
    assert [obj.name for obj in scene.objects] == ["purple star"]
    # Other vocabularies still draw "star" in train, just never a purple one.
    star = SHAPES.index("star")
    for index in range(100):
        (obj,) = world.single_object_scene("train", index, star, "shape").objects
        assert obj.shape == "star" and obj.color != "purple"
    train_labels = {world.classification_sample("train", i)[1] for i in range(64)}
    assert train_labels == set(range(64)) - {names.index(name) for name in held_out}


@pytest.mark.parametrize("vocabulary", ["shape", "color", "color_shape"])
def test_classification_samples_are_balanced_and_labelled(world, vocabulary):
    n_classes = len(class_names(vocabulary))
    labels = []
    for index in range(2 * n_classes):
        image, label = world.classification_sample("val", index, vocabulary)
        (obj,) = world.single_object_scene("val", index, label, vocabulary).objects
        assert obj.class_index(vocabulary) == label
        assert image.tobytes() == world.single_object_scene("val", index, label, vocabulary).image.tobytes()
        labels.append(label)
    assert Counter(labels) == {label: 2 for label in range(n_classes)}


def test_single_object_scene_caption(world):
    names = class_names("color_shape")
    for class_index in range(0, 64, 7):
        scene = world.single_object_scene("train", class_index, class_index)
        (obj,) = scene.objects
        assert obj.name == names[class_index]
        assert obj.name in scene.caption


@pytest.mark.parametrize("image_size", [32, 224])
def test_image_size_is_honoured(image_size):
    world = ShapesWorld(image_size=image_size)
    scene = world.scene("train", 0)
    assert scene.image.size == (image_size, image_size) and scene.image.mode == "RGB"
    assert scene.instance_masks.shape[1:] == (image_size, image_size)
    assert world.classification_sample("test", 3)[0].size == (image_size, image_size)


def test_errors_name_the_bad_value(world):
    with pytest.raises(ValueError, match="'dev'.*train"):
        world.scene("dev", 0)
    with pytest.raises(ValueError, match="'dev'"):
        world.classification_sample("dev", 0)
    with pytest.raises(ValueError, match="'colour'.*color_shape"):
        class_names("colour")
    with pytest.raises(ValueError, match="'colour'"):
        world.classification_sample("val", 0, "colour")
    with pytest.raises(ValueError, match="'colour'"):
        world.scene("val", 0).semantic_mask("colour")
    with pytest.raises(ValueError, match="'violet star'.*purple star"):
        ShapesWorld(held_out=["violet star"])
    with pytest.raises(ValueError, match="held_out holds every"):
        ShapesWorld(held_out=class_names("color_shape"))
    with pytest.raises(ValueError, match="min_objects=0"):
        ShapesWorld(min_objects=0)
    with pytest.raises(ValueError, match="min_objects=3, max_objects=2"):
        ShapesWorld(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="image_size.*8"):
        ShapesWorld(image_size=8)
    with pytest.raises(ValueError, match="class_index 64"):
        world.single_object_scene("val", 0, 64)


def test_module_does_not_import_torch():
    # Loaded by path, so that the package's own imports do not count.
    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('sw', {shapesworld.__file__!r}); "
        "module = sys.modules['sw'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "module.ShapesWorld().scene('train', 0); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
