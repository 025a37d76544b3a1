"""The few-shot protocol of CoOp: shots drawn per class with a seed, validation cut, base-to-new, schedules."""
import math
import random
from collections import Counter

import pytest
import torch
from lit_clip.datamodules import CoOpFewShot, ShapesWorldFewShot
from lit_clip.datamodules.export import export_coop
from lit_clip.datamodules.fewshot import base_and_new_labels, keep_labels, sample_shots

from lit_clip.optim import warmup_cosine_per_epoch


def pool(per_class: dict[int, int]) -> list[tuple[str, int]]:
    return [(f"img{label}_{i}", label) for label, count in per_class.items() for i in range(count)]


def test_shots_are_k_per_class_in_order_of_first_appearance_and_follow_the_seed():
    samples = pool({2: 10, 0: 10, 1: 10})
    drawn = sample_shots(samples, 3, random.Random(1))
    assert [label for _, label in drawn] == [2, 2, 2, 0, 0, 0, 1, 1, 1]
    assert len(set(drawn)) == 9, "without replacement when a class has enough images"
    assert sample_shots(samples, 3, random.Random(1)) == drawn
    assert sample_shots(samples, 3, random.Random(2)) != drawn
    # Dassl's algorithm: random.sample per class, one random stream.
    rng = random.Random(1)
    expected = [item for label in (2, 0, 1) for item in rng.sample([s for s in samples if s[1] == label], 3)]
    assert drawn == expected


def test_a_class_with_too_few_images_keeps_them_all_without_repeats():
    samples = pool({0: 2, 1: 8})
    drawn = sample_shots(samples, 4, random.Random(0))
    assert Counter(label for _, label in drawn) == {0: 2, 1: 4}
    assert [s for s in drawn if s[1] == 0] == samples[:2]
    # Dassl's repeat=False draws nothing for the small class, so the next class sees the same stream.
    assert [s for s in drawn if s[1] == 1] == random.Random(0).sample(samples[2:], 4)


@pytest.mark.parametrize("classes, base", [(64, 32), (101, 51), (1000, 500), (3, 2)])
def test_base_is_the_first_ceil_half_of_the_sorted_labels(classes, base):
    base_labels, new_labels = base_and_new_labels(classes)
    assert base_labels == list(range(base)) and new_labels == list(range(base, classes))
    assert len(base_labels) == math.ceil(classes / 2)


def test_kept_labels_are_renumbered_from_zero():
    assert keep_labels([("a", 5), ("b", 3), ("c", 4)], [4, 5]) == [("a", 1), ("c", 0)]


def test_shapes_few_shot_splits():
    data = ShapesWorldFewShot(shots=2, seed=1, image_size=32, pool_per_class=4, test_per_class=1)
    train, val = data.samples("train"), data.samples("val")
    assert Counter(label for _, label in train) == {label: 2 for label in range(64)}
    assert Counter(label for _, label in val) == {label: 2 for label in range(64)}  # min(2, 4)
    assert len(data.samples("test")) == 64
    assert [s.name for s in data.evaluation_sets("test")] == [""]
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (32, 3, 32, 32) and batch["label"].max() < 64
    # The image of a sample is its class: the label is what ShapesWorld drew.
    key, label = train[0]
    assert data.world.classification_sample(*key)[1] == label

    eight = ShapesWorldFewShot(shots=8, seed=1, pool_per_class=16)
    assert Counter(label for _, label in eight.samples("val")) == {label: 4 for label in range(64)}  # min(8, 4)
    # The whole validation split too (Tip-Adapter searches on it), and the cut's draw is unchanged by it.
    assert Counter(label for _, label in eight.samples("full_val")) == {label: 16 for label in range(64)}
    assert set(eight.samples("val")) <= set(eight.samples("full_val"))
    assert len(eight.full_val_dataloader().dataset) == 16 * 64


def test_the_last_partial_training_batch_is_dropped_as_dassl_or_kept_as_tip_adapter_f():
    settings = dict(shots=1, image_size=32, pool_per_class=1, test_per_class=1, batch_size=48)  # 64 shots
    assert [len(b["label"]) for b in ShapesWorldFewShot(**settings).train_dataloader()] == [48]
    kept = ShapesWorldFewShot(**settings, train_drop_last=False).train_dataloader()
    assert sorted(len(b["label"]) for b in kept) == [16, 48]


def test_shapes_base_to_new():
    data = ShapesWorldFewShot(shots=1, base_to_new=True, image_size=32, pool_per_class=2, test_per_class=1)
    base, new = data.evaluation_sets("test")
    assert data.classnames == list(base.classnames) and len(base.classnames) == 32 and len(new.classnames) == 32
    assert base.classnames[0] == "red circle" and new.classnames[0] == "cyan circle"
    assert {label for _, label in data.samples("train")} == set(range(32))
    assert {label for _, label in data.samples("new")} == set(range(32))
    # A new-class test image is labelled within the new classes: "cyan circle" is new label 0, was 32.
    key, label = next(s for s in data.samples("new") if s[1] == 0)
    assert data.world.classification_sample(*key)[1] == 32
    base_loader, new_loader = data.test_dataloader()
    assert len(base_loader.dataset) == len(new_loader.dataset) == 32
    assert [s.name for s in data.evaluation_sets("validate")] == [""]
    assert {label for _, label in data.samples("full_val")} == set(range(32))  # the base classes' images only


def test_coop_few_shot_reads_the_coop_layout(tmp_path):
    export_coop(tmp_path, {"train": 6, "val": 2, "test": 1}, dataset="OxfordPets", vocabulary="shape", image_size=32)
    data = CoOpFewShot(str(tmp_path), "OxfordPets", shots=4, seed=2, image_size=32, num_workers=0)
    assert data.templates == ["a photo of a {}, a type of pet."]
    assert Counter(label for _, label in data.samples("train")) == {label: 4 for label in range(8)}
    # min(4, 4) per class wanted, 2 images each: both kept, none repeated, as Dassl does
    assert Counter(label for _, label in data.samples("val")) == {label: 2 for label in range(8)}
    assert {path for path, _ in data.samples("val")} <= {path for path, _ in data.full_split("val")}
    assert all(path.exists() for path, _ in data.samples("train"))
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape[1:] == (3, 32, 32)


def test_imagenet_validation_shots_are_training_images_that_are_not_shots(tmp_path):
    export_coop(tmp_path, {"train": 8, "val": 2}, dataset="ImageNet", vocabulary="shape", image_size=32)
    data = CoOpFewShot(str(tmp_path), "ImageNet", shots=2, seed=1, image_size=32, num_workers=0)
    shots, val, test = ({path for path, _ in data.samples(split)} for split in ("train", "val", "test"))
    assert len(shots) == 16 and len(val) == 16  # min(2, 4) per class
    assert not shots & val, "a validation image is a shot"
    assert all("/train/" in str(path) for path in val), "validation must not use the test (val) images"
    assert all("/val/" in str(path) for path in test)
    # The whole validation split of ImageNet: up to 50 per class of the training images that are not shots.
    full_val = {path for path, _ in data.samples("full_val")}
    assert len(full_val) == 8 * 6 and not full_val & shots and val <= full_val
    assert all("/train/" in str(path) for path in full_val)


def test_bad_shots_and_data_sets_are_named(tmp_path):
    with pytest.raises(ValueError, match="shots"):
        ShapesWorldFewShot(shots=0)
    with pytest.raises(ValueError, match="Pets"):
        CoOpFewShot(str(tmp_path), "Pets")


def test_coop_schedule_equals_dassl_constant_warmup_then_cosine():
    # Dassl, max_epoch 10, base lr 0.002, one warm-up epoch at 1e-5 (its lr per epoch, worked out by hand).
    expected = [1e-5, 0.002, 0.001951, 0.001809, 0.001588, 0.001309, 0.001, 0.000691, 0.000412, 0.000191]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    schedule = warmup_cosine_per_epoch(optimizer, max_epochs=10, warmup_epochs=1, warmup_lr=1e-5)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs == pytest.approx(expected, abs=1e-6)
