"""Segmentation data: ShapesWorld's masks and zero-shot split, the VOC / ADE20K / Context / COCO-Stuff readers on
files in their real layouts, LSeg's crops, and the errors a wrong layout gets."""
import numpy as np
import pytest
import torch
from lit_clip.datamodules import (
    ADE20KSegmentation,
    COCOObjectSegmentation,
    COCOStuffSegmentation,
    PascalContext60Segmentation,
    PascalContextSegmentation,
    PascalVOCSegmentation,
    ShapesWorldSegmentation,
)
from lit_clip.datamodules.export import export_ade20k, export_voc_segmentation
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.segmentation import pad_collate, segmentation_train_transform
from lit_clip.datamodules.shapesworld.segmentation import held_out_compositions
from lit_clip.datamodules.shapesworld.world import COLOR_RGB, COLORS, SHAPES, ShapesWorld, class_names
from PIL import Image
from torchvision import tv_tensors

from lit_clip.batches import IGNORE_INDEX, EvaluationSet
from lit_clip.transforms import denormalize

SMALL = {"image_size": 32, "train_samples": 8, "val_samples": 6, "test_samples": 6, "batch_size": 4}


def _interior(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Pixels whose whole ``(2 radius + 1)``-square neighbourhood carries their label: away from antialiased and
    resampled edges."""
    height, width = mask.shape
    padded = np.pad(mask.astype(np.int64), radius, constant_values=-1)
    inside = np.ones(mask.shape, dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            inside &= padded[dy : dy + height, dx : dx + width] == mask
    return inside


def _check_masks_match_pixels(batch: dict, labels: tuple[str, ...]) -> None:
    """Every interior object pixel has its label's colour; interior background pixels are grey."""
    pixels = (denormalize(batch["image"]).permute(0, 2, 3, 1).numpy() * 255).astype(np.float64)
    for image, mask in zip(pixels, batch["mask"].numpy()):
        assert (mask != IGNORE_INDEX).all()
        objects = _interior(mask) & (mask > 0)
        assert objects.any()
        nearest = np.linalg.norm(image[objects][:, None] - COLOR_RGB[None], axis=-1).argmin(axis=1)
        colours = [COLORS.index(labels[label].split()[0]) for label in mask[objects]]
        assert (nearest == colours).all()
        # Background pixels 2 px away from any object are grey (a low-saturation tint), never an object's colour.
        background = image[_interior(mask, radius=2) & (mask == 0)]
        assert (background.max(axis=1) - background.min(axis=1)).max() < 24


def test_masks_label_the_drawn_pixels_of_every_set():
    data = ShapesWorldSegmentation(held_out=8, **SMALL)
    loaders = [data.val_dataloader(), *data.test_dataloader()]
    sets = data.evaluation_sets("validate") + data.evaluation_sets("test")
    for loader, evaluation_set in zip(loaders, sets):
        _check_masks_match_pixels(next(iter(loader)), evaluation_set.classnames)
    _check_masks_match_pixels(next(iter(data.train_dataloader())), tuple(data.classnames))


def test_masks_follow_the_world_and_its_occlusion():
    data = ShapesWorldSegmentation(held_out=0, vocabulary="shape", **SMALL)
    world = ShapesWorld(image_size=32, max_objects=4)
    for index in range(6):
        scene, sample = world.scene("val", index), data.val_dataloader().dataset[index]
        expected = np.zeros((32, 32), dtype=np.int64)
        for obj, visible in zip(scene.objects, scene.instance_masks):  # later objects drawn over earlier ones
            expected[visible] = 1 + SHAPES.index(obj.shape)
        assert np.array_equal(sample["mask"].numpy(), expected)


def test_held_out_compositions_only_in_the_unseen_test_set_renumbered_there():
    held = ["red circle", "blue star", "pink ring"]
    data = ShapesWorldSegmentation(held_out=held, **SMALL)
    assert not set(held) & set(data.classnames) and data.classnames[0] == "background"
    assert len(data.classnames) == 1 + 64 - 3
    assert data.evaluation_sets("validate") == [EvaluationSet("", tuple(data.classnames))]
    seen, unseen = data.evaluation_sets("test")
    assert seen == EvaluationSet("seen", tuple(data.classnames))
    assert unseen == EvaluationSet("unseen", ("background", "red circle", "blue star", "pink ring"))
    world = ShapesWorld(image_size=32, max_objects=4)
    train, val = data.train_dataloader().dataset, data.val_dataloader().dataset
    test_seen, test_unseen = (loader.dataset for loader in data.test_dataloader())
    for dataset, split, allowed in ((train, "train", data.classnames[1:]), (val, "val", data.classnames[1:]),
                                    (test_seen, "test", data.classnames[1:]), (test_unseen, "test", held)):  # fmt: skip
        for index in range(len(dataset)):
            scene = world.scene(split, index, allowed)
            assert {obj.name for obj in scene.objects} <= set(allowed)
            mask = dataset[index]["mask"].numpy()
            labels = unseen.classnames if dataset is test_unseen else data.classnames
            # The unseen set numbers its labels from 1: "red circle" is 1 there, 1 + 0 in the vocabulary.
            expected = np.zeros_like(mask)
            for obj, visible in zip(scene.objects, scene.instance_masks):
                expected[visible] = labels.index(obj.name)
            assert np.array_equal(mask, expected)
    assert max(int(test_unseen[i]["mask"].max()) for i in range(len(test_unseen))) <= 3


def test_held_out_numbers_and_no_held_out():
    first = held_out_compositions(8)
    assert {name.split()[0] for name in first} == set(COLORS) and {name.split()[1] for name in first} == set(SHAPES)
    assert held_out_compositions(16)[:8] == first and len(set(held_out_compositions(63))) == 63
    with pytest.raises(ValueError, match="held_out"):
        held_out_compositions(64)
    data = ShapesWorldSegmentation(held_out=0, **SMALL)
    assert data.classnames == ["background", *class_names("color_shape")]
    assert data.evaluation_sets("test") == [EvaluationSet("", tuple(data.classnames))]
    assert not isinstance(data.test_dataloader(), list)
    assert next(iter(data.predict_dataloader()))["mask"].shape == (4, 32, 32)  # predict reads the test scenes
    shape_sets = ShapesWorldSegmentation(vocabulary="shape", held_out=["red circle"], **SMALL).evaluation_sets("test")
    assert [s.classnames for s in shape_sets] == [("background", *SHAPES), ("background", "circle")]


def test_shapesworld_segmentation_is_deterministic():
    a, b = ShapesWorldSegmentation(seed=3, **SMALL), ShapesWorldSegmentation(seed=3, **SMALL)
    for loaders in ((a.val_dataloader(), b.val_dataloader()), (a.test_dataloader()[1], b.test_dataloader()[1])):
        batch_a, batch_b = (next(iter(loader)) for loader in loaders)
        assert torch.equal(batch_a["image"], batch_b["image"]) and torch.equal(batch_a["mask"], batch_b["mask"])
    other = next(iter(ShapesWorldSegmentation(seed=4, **SMALL).val_dataloader()))
    assert not torch.equal(other["image"], next(iter(a.val_dataloader()))["image"])
    train = next(iter(a.train_dataloader()))
    assert train["image"].shape == (4, 3, 32, 32) and train["mask"].dtype == torch.long


def test_the_existing_scenes_are_unchanged_by_allowed_sets():
    world = ShapesWorld(seed=2)
    assert world.scene("val", 1).image.tobytes() == ShapesWorld(seed=2).scene("val", 1).image.tobytes()
    everything = class_names("color_shape")
    assert world.scene("val", 1, everything).image.tobytes() != world.scene("val", 1).image.tobytes()
    with pytest.raises(ValueError, match="held out"):
        ShapesWorld(held_out=["red circle"]).scene("train", 0, ["red circle"])


def test_train_transform_moves_the_mask_with_the_image():
    palette = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)], dtype=np.uint8)
    labels = np.zeros((40, 60), dtype=np.uint8)
    labels[:20, 30:], labels[20:, :30], labels[20:, 30:] = 1, 2, 3
    transform = segmentation_train_transform(base_size=32, crop_size=48)
    padded = flipped = 0
    for seed in range(20):
        torch.manual_seed(seed)
        out = transform({"image": Image.fromarray(palette[labels]), "mask": tv_tensors.Mask(torch.from_numpy(labels))})
        image = (denormalize(out["image"][None])[0].permute(1, 2, 0).numpy() * 255).round()
        mask = out["mask"].numpy()
        assert image.shape[:2] == mask.shape == (48, 48)
        inside = _interior(mask) & (mask != IGNORE_INDEX)
        assert np.abs(image[inside] - palette[mask[inside]]).max() <= 2
        assert (image[mask == IGNORE_INDEX] <= 1).all()  # padding: black image, ignored mask
        padded += (mask == IGNORE_INDEX).any()
        # Unflipped, label 0 (top left) lies left of label 1 (top right) in every row that holds both.
        flipped += any(
            (row == 1).any() and (row == 0).any() and np.flatnonzero(row == 1).max() < np.flatnonzero(row == 0).min()
            for row in mask
        )
    assert padded and flipped


def test_pad_collate_pads_images_with_zero_and_masks_with_ignore():
    samples = [
        {"image": torch.ones(3, 4, 6), "mask": torch.zeros(4, 6, dtype=torch.long), "index": 0},
        {"image": torch.ones(3, 5, 3), "mask": torch.ones(5, 3, dtype=torch.long), "index": 1},
    ]
    batch = pad_collate(samples)
    assert batch["image"].shape == (2, 3, 5, 6) and batch["mask"].shape == (2, 5, 6)
    assert (batch["mask"][0, 4] == IGNORE_INDEX).all() and (batch["mask"][1, :, 3:] == IGNORE_INDEX).all()
    assert batch["image"][1, :, :, 3:].abs().sum() == 0 and batch["index"].tolist() == [0, 1]


# -- real layouts ---------------------------------------------------------------------------------


def _voc(root, **kwargs):
    return PascalVOCSegmentation(root, base_size=32, crop_size=24, batch_size=2, num_workers=0, **kwargs)


def test_voc_reads_palette_masks_borders_and_the_augmented_list(tmp_path):
    exported = export_voc_segmentation(tmp_path, {"train": 3, "val": 2}, augmented=2, image_size=32)
    world = ShapesWorld(image_size=32)
    mask_file = Image.open(exported["val"][0][1])
    assert mask_file.mode == "P" and mask_file.getpalette()[3:6] == [128, 0, 0]
    data = _voc(tmp_path)
    assert data.augmented and len(data.classnames) == 21 and data.classnames[0] == "background"
    assert data.samples("train") == exported["train_aug"]
    for index in range(2):
        sample = data.val_dataloader().dataset[index]
        mask = sample["mask"].numpy()
        semantic = world.scene("val", index).semantic_mask("shape")
        labelled = mask != IGNORE_INDEX
        assert np.array_equal(mask[labelled], semantic[labelled]) and (~labelled).any()  # VOC's void borders
        assert sample["image"].shape == (3, 32, 32)  # evaluation at the original size
    aug_mask = data.train_dataloader().dataset.dataset.samples[4][1]
    assert np.array_equal(np.asarray(Image.open(aug_mask)), world.scene("train", 4).semantic_mask("shape"))
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 24) and set(batch["mask"].unique().tolist()) <= {*range(9), 255}
    assert _voc(tmp_path, augmented=False).samples("train") == exported["train"]


def test_voc_without_the_augmented_set(tmp_path):
    export_voc_segmentation(tmp_path, {"train": 2, "val": 1}, image_size=32)
    assert not _voc(tmp_path).augmented
    with pytest.raises(FileNotFoundError, match="train_aug.txt"):
        _voc(tmp_path, augmented=True)
    with pytest.raises(ValueError, match="VOC has 20 object labels"):
        export_voc_segmentation(tmp_path, {"val": 1}, vocabulary="color_shape")


def test_ade20k_ignores_other_and_shifts_the_classes(tmp_path):
    exported = export_ade20k(tmp_path, {"train": 2, "val": 3}, image_size=32)
    data = ADE20KSegmentation(tmp_path, base_size=32, crop_size=24, batch_size=2, eval_batch_size=3, num_workers=0)
    assert len(data.classnames) == 150 and data.classnames[:3] == ["wall", "building", "sky"]
    assert data.classnames[44] == "chest of drawers" and data.classnames[-1] == "flag"
    assert data.samples("val") == exported["val"]
    batch = next(iter(data.val_dataloader()))
    for index in range(3):
        semantic = ShapesWorld(image_size=32).scene("val", index).semantic_mask("color_shape")
        assert torch.equal(batch["mask"][index], torch.from_numpy(np.where(semantic == 0, IGNORE_INDEX, semantic - 1)))
    assert next(iter(data.train_dataloader()))["mask"].shape == (2, 24, 24)


def _write_pair(image_path, mask_path, mask: np.ndarray):
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    height, width = mask.shape
    Image.new("RGB", (width, height), (90, 90, 90)).save(image_path)
    Image.fromarray(mask.astype(np.uint8), "L").save(mask_path)


def test_pascal_context_and_coco_stuff_layouts(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2010"
    _write_pair(voc / "JPEGImages" / "2008_000002.jpg", voc / "SegmentationClassContext" / "2008_000002.png",
                np.array([[0, 1], [59, 5]]))  # fmt: skip
    (voc / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (voc / "ImageSets" / "SegmentationContext" / "val.txt").write_text("2008_000002\n")
    context = PascalContextSegmentation(tmp_path, num_workers=0)
    assert len(context.classnames) == 59 and context.classnames[-1] == "wood"
    assert context.val_dataloader().dataset[0]["mask"].tolist() == [[255, 0], [58, 4]]

    coco = tmp_path / "coco_stuff164k"
    name = "000000000139"
    mask = coco / "annotations" / "val2017" / f"{name}_labelTrainIds.png"
    _write_pair(coco / "images" / "val2017" / f"{name}.jpg", mask, np.array([[0, 170], [255, 7]]))
    stuff = COCOStuffSegmentation(tmp_path, num_workers=0)
    assert len(stuff.classnames) == 171 and stuff.classnames[0] == "person" and stuff.classnames[-1] == "wood"
    assert stuff.val_dataloader().dataset[0]["mask"].tolist() == [[0, 170], [255, 7]]

    # GroupViT's evaluation sets on the same files: Context with its background, COCO-Object (stuff is background)
    context60 = PascalContext60Segmentation(tmp_path, num_workers=0)
    assert len(context60.classnames) == 60 and context60.classnames[:2] == ["background", "aeroplane"]
    assert context60.val_dataloader().dataset[0]["mask"].tolist() == [[0, 1], [59, 5]]
    objects = COCOObjectSegmentation(tmp_path, num_workers=0)
    assert len(objects.classnames) == 81 and objects.classnames[:2] == ["background", "person"]
    assert objects.val_dataloader().dataset[0]["mask"].tolist() == [[1, 0], [255, 8]]


def test_a_paper_s_own_label_names_replace_the_module_s(tmp_path):
    (tmp_path / "ADEChallengeData2016").mkdir()
    names = [f"thing {k}" for k in range(150)]
    assert ADE20KSegmentation(tmp_path, classnames=names).classnames == names
    with pytest.raises(ValueError, match="names 2 labels; ADE20KSegmentation has 150"):
        ADE20KSegmentation(tmp_path, classnames=["wall", "sky"])


# -- clear errors --------------------------------------------------------------------------------


def test_missing_folders_and_files_name_the_path_and_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"VOC2012.*JPEGImages not found; expected PASCAL VOC 2012's layout"):
        _voc(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ADEChallengeData2016 not found; expected ADE20K's layout"):
        ADE20KSegmentation(tmp_path)
    exported = export_voc_segmentation(tmp_path, {"train": 2}, image_size=32)
    with pytest.raises(FileNotFoundError, match=r"val\.txt not found; expected"):
        _voc(tmp_path).val_dataloader()
    exported["train"][1][1].unlink()
    with pytest.raises(FileNotFoundError, match="train_000001.png not found"):
        _voc(tmp_path).train_dataloader()
    export_ade20k(tmp_path, {"val": 1}, image_size=32)
    with pytest.raises(FileNotFoundError, match=r"images/training not found; expected ADE20K"):
        ADE20KSegmentation(tmp_path).train_dataloader()


def test_mask_values_outside_the_label_set_and_size_mismatches_are_errors(tmp_path):
    exported = export_ade20k(tmp_path, {"val": 3}, image_size=32)
    (_, bad_mask), (image, mask), (_, rgb_mask) = exported["val"]
    Image.fromarray(np.full((32, 32), 151, dtype=np.uint8), "L").save(bad_mask)
    Image.new("L", (16, 32)).save(mask)
    Image.new("RGB", (32, 32)).save(rgb_mask)
    dataset = ADE20KSegmentation(tmp_path, num_workers=0, bad_samples="skip").val_dataloader().dataset
    with pytest.raises(ValueError, match=rf"{bad_mask}: mask values \[151\] are outside the label set"):
        dataset[0]
    with pytest.raises(ValueError, match=rf"image {image} is 32x32 but its mask {mask} is 16x32"):
        dataset[1]
    with pytest.raises(ValueError, match=rf"{rgb_mask}: a RGB image; expected a single-channel PNG"):
        dataset[2]


def test_bad_images_follow_the_bad_sample_policy(tmp_path):
    exported = export_ade20k(tmp_path, {"val": 2}, image_size=32)
    broken = exported["val"][0][0]
    broken.write_bytes(broken.read_bytes()[:40])
    skipping = ADE20KSegmentation(tmp_path, num_workers=0, eval_batch_size=2)
    batch = next(iter(skipping.val_dataloader()))
    assert batch["skipped_index"].tolist() == [0] and batch["index"].tolist() == [1]
    raising = ADE20KSegmentation(tmp_path, num_workers=0, bad_samples="raise")
    with pytest.raises(BadSampleError, match=str(broken)):
        next(iter(raising.val_dataloader()))
    with pytest.raises(ValueError, match="bad_samples"):
        ADE20KSegmentation(tmp_path, bad_samples="ignore")
