"""Detection data read from real layouts: COCO 2017's and LVIS v1's files written from ShapesWorld scenes, read back
by pycocotools and by COCODetection / LVISDetection (the open-vocabulary split, what training leaves out and counts,
the errors a wrong layout gets, region caches, and AP against the data module's ground truth)."""
import json
import logging

import numpy as np
import pytest
import torch
from lit_clip.datamodules import COCODetection, LVISDetection
from lit_clip.datamodules.detection import COCO_OVD_BASE, COCO_OVD_NOVEL
from lit_clip.datamodules.export import export_coco_detection, export_lvis_detection, main
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.segmentation import COCO_STUFF_171_CLASSES
from lit_clip.datamodules.shapesworld.detection import visible_boxes
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names
from PIL import Image
from pycocotools.coco import COCO

from lit_clip.metrics.detection import DetectionMetrics
from lit_clip.region_cache import RegionCache

SIZE = 32
NAMES = class_names("color_shape")
COCO_NAMES = COCO_STUFF_171_CLASSES[:80]  # COCO's 80 categories in category-id order
LOADERS = {"batch_size": 2, "eval_batch_size": 4, "num_workers": 0}


def _world() -> ShapesWorld:
    return ShapesWorld(image_size=SIZE, max_objects=4)


def _novel(world: ShapesWorld) -> list[str]:
    """Every composition of training scene 0 (which so has no base box) and one of validation scene 0's, in
    category order."""
    chosen = {obj.name for obj in world.scene("train", 0).objects} | {world.scene("val", 0).objects[0].name}
    return [name for name in NAMES if name in chosen]


def _edit(path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def _names(labels: torch.Tensor, names) -> list[str]:
    return [names[label] for label in labels.tolist()]


def test_the_open_vocabulary_split_is_48_base_and_17_novel_coco_names():
    assert len(COCO_OVD_BASE) == 48 and len(COCO_OVD_NOVEL) == 17
    assert not set(COCO_OVD_BASE) & set(COCO_OVD_NOVEL)
    assert set(COCO_OVD_BASE) | set(COCO_OVD_NOVEL) <= set(COCO_NAMES)
    assert set(COCO_NAMES) - set(COCO_OVD_BASE) - set(COCO_OVD_NOVEL) == {
        "traffic light", "fire hydrant", "stop sign", "parking meter", "sports ball", "baseball bat", "baseball glove",
        "tennis racket", "wine glass", "hot dog", "potted plant", "dining table", "cell phone", "teddy bear",
        "hair drier",
    }  # fmt: skip


def test_coco_export_reads_back_with_pycocotools(tmp_path):
    world = _world()
    exported = export_coco_detection(tmp_path, world, {"train": 3, "val": 2})
    ids = [image_id for split in exported.values() for _, image_id in split]
    assert len(set(ids)) == len(ids)  # unique over the splits, as COCO's
    for split, written in exported.items():
        coco = COCO(str(tmp_path / "annotations" / f"instances_{split}2017.json"))
        assert len(coco.cats) == 64 and [coco.cats[i + 1]["name"] for i in range(64)] == NAMES
        assert sorted(coco.imgs) == [image_id for _, image_id in written]
        for index, (path, image_id) in enumerate(written):
            scene = world.scene(split, index)
            assert path == tmp_path / f"{split}2017" / f"{image_id:012d}.jpg" and Image.open(path).format == "JPEG"
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            assert [NAMES[a["category_id"] - 1] for a in annotations] == [obj.name for obj in scene.objects]
            boxes = torch.tensor([a["bbox"] for a in annotations])
            boxes[:, 2:] += boxes[:, :2]
            assert torch.equal(boxes, visible_boxes(scene))
            masks = np.stack([coco.annToMask(a) for a in annotations]).astype(bool)
            assert np.array_equal(masks, scene.instance_masks)
            assert [a["area"] for a in annotations] == scene.instance_masks.sum(axis=(1, 2)).tolist()
            assert all(a["iscrowd"] == 0 for a in annotations)


def test_coco_detection_trains_on_base_boxes_and_evaluates_every_name(tmp_path):
    world = _world()
    novel = _novel(world)
    exported = export_coco_detection(tmp_path, world, {"train": 6, "val": 4})
    data = COCODetection(str(tmp_path), split="all", novel=novel, masks=True, **LOADERS)
    base = [name for name in NAMES if name not in novel]
    assert data.classnames == base
    (evaluation_set,) = data.evaluation_sets("validate")
    assert evaluation_set.classnames == tuple(NAMES)
    assert evaluation_set.subsets == {"base": tuple(NAMES.index(n) for n in base),
                                      "novel": tuple(NAMES.index(n) for n in novel)}  # fmt: skip

    # Training: base boxes only; scene 0, all of whose objects are novel, is left out.
    train = data.train_dataset()
    written = {image_id: index for index, (_, image_id) in enumerate(exported["train"])}
    assert sorted(written[image.image_id] for image in train.images) == [1, 2, 3, 4, 5]
    for index, image in enumerate(train.images):
        scene = world.scene("train", written[image.image_id])
        kept = [i for i, obj in enumerate(scene.objects) if obj.name not in novel]
        assert _names(torch.from_numpy(image.labels), base) == [scene.objects[i].name for i in kept]
        assert np.array_equal(image.boxes, visible_boxes(scene)[kept].numpy())
        assert train.key(index) == f"train2017/{image.image_id:012d}.jpg"
        target = train[index]["target"]
        assert target["masks"].shape == (len(kept), SIZE, SIZE) and target["image_id"] == image.image_id
    batch = next(iter(data.train_dataloader()))
    assert all(set(_names(t["labels"], base)).isdisjoint(novel) for t in batch["targets"])

    # Evaluation: every image at its size, labelled over all 64 names, with the file's image ids.
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["skipped_index"].numel() == 0
    assert [t["image_id"] for t in batch["targets"]] == [image_id for _, image_id in exported["val"]]
    for index, target in enumerate(batch["targets"]):
        scene = world.scene("val", index)
        assert _names(target["labels"], NAMES) == [obj.name for obj in scene.objects]
        assert torch.equal(target["boxes"], visible_boxes(scene))
        assert np.array_equal(target["masks"].numpy(), scene.instance_masks)
    assert set(novel) & {name for t in batch["targets"] for name in _names(t["labels"], NAMES)}


def test_images_without_boxes_are_skipped_in_training_and_kept_in_evaluation(tmp_path, caplog):
    exported = export_coco_detection(tmp_path, _world(), {"train": 4, "val": 3}, masks=False)
    (_, empty_train), (_, empty_val) = exported["train"][2], exported["val"][1]
    for split, image_id in (("train", empty_train), ("val", empty_val)):
        _edit(tmp_path / "annotations" / f"instances_{split}2017.json",
              lambda c: c.update(annotations=[a for a in c["annotations"] if a["image_id"] != image_id]))  # fmt: skip
    data = COCODetection(str(tmp_path), split="all", **LOADERS)
    with caplog.at_level(logging.INFO, logger="lit_clip.datamodules.detection"):
        data.setup("fit")
    (train_line,) = [m for m in caplog.messages if "instances_train2017.json" in m]
    assert "3 images with" in train_line and "left out 1 images without a base box" in train_line
    assert empty_train not in [image.image_id for image in data.split_images("train")]
    batch = next(iter(data.val_dataloader()))
    assert [t["image_id"] for t in batch["targets"]] == [image_id for _, image_id in exported["val"]]
    assert batch["targets"][1]["boxes"].shape == (0, 4) and batch["targets"][1]["labels"].numel() == 0


def test_boxes_are_clipped_to_the_image_slivers_and_crowds_left_out_and_counted(tmp_path, caplog):
    export_coco_detection(tmp_path, _world(), {"train": 3, "val": 2}, masks=False)

    def change(content):
        first, second, third = content["annotations"][:3]
        first["bbox"] = [-4.0, 2.0, 50.0, 10.0]  # clipped to (0, 2, 32, 12)
        second["bbox"] = [31.5, 5.0, 3.0, 3.0]  # 0.5 px wide once clipped: left out
        third["iscrowd"] = 1

    _edit(tmp_path / "annotations" / "instances_train2017.json", change)
    data = COCODetection(str(tmp_path), split="all", **LOADERS)
    with caplog.at_level(logging.INFO, logger="lit_clip.datamodules.detection"):
        images = data.split_images("train")
    assert "1 crowd boxes" in caplog.text and "1 boxes under 1 px after clipping" in caplog.text
    assert "clipped 1 boxes to their image" in caplog.text
    boxes = np.concatenate([image.boxes for image in images])
    assert [0, 2, 32, 12] in boxes.tolist() and (boxes >= 0).all() and (boxes <= SIZE).all()
    written = json.loads((tmp_path / "annotations" / "instances_train2017.json").read_text())["annotations"]
    assert len(boxes) == len(written) - 2


def test_an_unknown_category_id_names_the_file_and_annotation(tmp_path):
    export_coco_detection(tmp_path, _world(), {"train": 2, "val": 2}, masks=False)
    _edit(tmp_path / "annotations" / "instances_val2017.json", lambda c: c["annotations"][1].update(category_id=999))
    data = COCODetection(str(tmp_path), split="all", **LOADERS)
    with pytest.raises(ValueError, match=r"instances_val2017\.json: annotation \d+ has category id 999"):
        data.setup("validate")


def test_a_missing_folder_or_file_names_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected COCO 2017's layout"):
        COCODetection(str(tmp_path / "nowhere"))
    export_coco_detection(tmp_path / "coco", _world(), {"train": 1, "val": 1}, masks=False)
    (tmp_path / "coco" / "annotations" / "instances_train2017.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"instances_train2017\.json not found; expected COCO 2017's layout"):
        COCODetection(str(tmp_path / "coco"))
    export_lvis_detection(tmp_path / "lvis", _world(), {"val": 1}, masks=False)
    with pytest.raises(FileNotFoundError, match=r"train2017 not found; expected LVIS v1's layout"):
        LVISDetection(str(tmp_path / "lvis"))
    (tmp_path / "lvis" / "train2017").mkdir()
    with pytest.raises(FileNotFoundError, match=r"lvis_v1_train\.json not found in .* nor in .*annotations"):
        LVISDetection(str(tmp_path / "lvis"))


def test_the_ovd_split_reads_cocos_names_and_evaluates_its_65_categories_alone(tmp_path):
    world = _world()
    exported = export_coco_detection(tmp_path, world, {"train": 8, "val": 4}, masks=False)
    # ShapesWorld's composition i stands in for COCO's category i + 1; ids 65-80 have no object.
    coco_categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(COCO_NAMES)]
    for split in ("train", "val"):
        _edit(tmp_path / "annotations" / f"instances_{split}2017.json", lambda c: c.update(categories=coco_categories))
    data = COCODetection(str(tmp_path), split="ovd", **LOADERS)
    evaluated = [name for name in COCO_NAMES if name in {*COCO_OVD_BASE, *COCO_OVD_NOVEL}]
    assert data.classnames == [name for name in COCO_NAMES if name in COCO_OVD_BASE]
    (evaluation_set,) = data.evaluation_sets("test")
    assert evaluation_set.classnames == tuple(evaluated)
    assert [evaluated[i] for i in evaluation_set.subsets["novel"]] == [n for n in evaluated if n in COCO_OVD_NOVEL]
    ground_truth = evaluation_set.annotations
    assert isinstance(ground_truth, COCO) and data.evaluation_sets("test")[0].annotations is ground_truth  # built once
    assert sorted(ground_truth.cats) == [COCO_NAMES.index(name) + 1 for name in evaluated]
    assert {a["category_id"] for a in ground_truth.dataset["annotations"]} <= set(ground_truth.cats)
    assert sorted(ground_truth.imgs) == [image_id for _, image_id in exported["val"]]
    for image in data.split_images("train"):
        assert set(_names(torch.from_numpy(image.labels), data.classnames)) <= set(COCO_OVD_BASE)

    # Perfect detections, the targets themselves, score 1 overall and on base and novel, though the val scenes hold
    # objects of categories not evaluated (their boxes would be misses against the unrestricted file).
    shown = {COCO_NAMES[obj.class_index()] for index in range(4) for obj in world.scene("val", index).objects}
    assert shown & set(COCO_OVD_NOVEL) and shown - set(evaluated)
    metric = DetectionMetrics(ground_truth, category_subsets=evaluation_set.subsets)
    for batch in data.val_dataloader():
        predictions = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
                       for t in batch["targets"]]  # fmt: skip
        metric.update(predictions, batch["targets"])
    result = metric.compute()
    assert [result["AP"], result["base_AP"], result["novel_AP"]] == pytest.approx([1.0, 1.0, 1.0])

    _edit(tmp_path / "annotations" / "instances_val2017.json",
          lambda c: c.update(categories=[{"id": i + 1, "name": name} for i, name in enumerate(NAMES)]))  # fmt: skip
    with pytest.raises(ValueError, match=r"lacks 65 categories of the open-vocabulary split: \['person'"):
        _ = COCODetection(str(tmp_path), split="ovd").categories


def test_a_corrupt_image_is_skipped_and_counted_or_raised(tmp_path):
    exported = export_coco_detection(tmp_path, _world(), {"train": 2, "val": 4}, masks=False)
    broken = exported["val"][1][0]
    broken.write_bytes(broken.read_bytes()[:100])  # a truncated JPEG
    batch = next(iter(COCODetection(str(tmp_path), split="all", **LOADERS).val_dataloader()))
    assert batch["skipped_index"].tolist() == [1] and len(batch["targets"]) == 3
    with pytest.raises(BadSampleError, match=broken.name):
        next(iter(COCODetection(str(tmp_path), split="all", bad_samples="raise", **LOADERS).val_dataloader()))


def test_lvis_detection_trains_on_frequent_and_common_and_holds_out_rare(tmp_path):
    world = _world()
    novel = _novel(world)
    exported = export_lvis_detection(tmp_path, world, {"train": 6, "val": 4}, held_out=novel)
    content = json.loads((tmp_path / "lvis_v1_val.json").read_text())
    assert "file_name" not in content["images"][0] and "iscrowd" not in content["annotations"][0]
    frequency = {c["name"]: c["frequency"] for c in content["categories"]}
    assert {name for name, f in frequency.items() if f == "r"} == {name.replace(" ", "_") for name in novel}
    assert {"c", "f"} <= set(frequency.values())

    data = LVISDetection(str(tmp_path), **LOADERS)
    assert data.categories.names == tuple(NAMES) and data.categories.novel == tuple(novel)  # "_" read as a space
    assert data.classnames == [name for name in NAMES if name not in novel]
    (evaluation_set,) = data.evaluation_sets("validate")
    assert evaluation_set.backend == "lvis" and evaluation_set.annotations == str(tmp_path / "lvis_v1_val.json")
    assert [NAMES[i] for i in evaluation_set.subsets["novel"]] == novel
    train = data.train_dataset()
    assert len(train) == 5 and all(set(_names(torch.from_numpy(i.labels), data.classnames)).isdisjoint(novel)
                                   for i in train.images)  # fmt: skip
    assert train.images[0].path == tmp_path / "train2017" / f"{train.images[0].image_id:012d}.jpg"

    metric = DetectionMetrics(evaluation_set.annotations, category_subsets=evaluation_set.subsets, backend="lvis")
    batch = next(iter(data.val_dataloader()))
    assert [t["image_id"] for t in batch["targets"]] == [image_id for _, image_id in exported["val"]]
    predictions = [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
                   for t in batch["targets"]]  # fmt: skip
    metric.update(predictions, batch["targets"])
    result = metric.compute()
    assert [result["AP"], result["base_AP"], result["novel_AP"], result["APr"]] == pytest.approx([1.0] * 4)


def test_cached_regions_arrive_with_training_images_and_move_with_the_flip(tmp_path):
    export_coco_detection(tmp_path / "coco", _world(), {"train": 3, "val": 1}, masks=False)
    images = COCODetection(str(tmp_path / "coco"), split="all").train_dataset(with_cache=False)
    keys = [images.key(index) for index in range(len(images))]
    cache = RegionCache.create(tmp_path / "cache", keys, regions_per_image=3, dim=4, clip="test", proposals="test")
    regions = torch.tensor([[1.0, 2.0, 10.0, 12.0], [20.0, 4.0, 31.0, 30.0]])
    embeddings = torch.eye(4)[:2]
    for row in range(len(keys)):
        cache.write(row, regions + row, embeddings)
    cache.flush()
    data = COCODetection(str(tmp_path / "coco"), split="all", region_cache=str(tmp_path / "cache"), **LOADERS)
    dataset = data.train_dataset()
    assert "regions" not in data.train_dataset(with_cache=False)[0]["target"]
    unflipped = regions + 1  # row 1's
    flipped = torch.stack([SIZE - unflipped[:, 2], unflipped[:, 1], SIZE - unflipped[:, 0], unflipped[:, 3]], dim=1)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        target = dataset[1]["target"]
        assert torch.equal(target["region_embeddings"], embeddings)
        box_flipped = not torch.equal(target["boxes"], torch.from_numpy(dataset.images[1].boxes))
        assert torch.equal(target["regions"], flipped if box_flipped else unflipped)  # with the objects' boxes
        seen.add(box_flipped)
    assert seen == {False, True}
    batch = next(iter(data.train_dataloader()))
    assert all(t["regions"].shape == (2, 4) and t["region_embeddings"].shape == (2, 4) for t in batch["targets"])


def test_export_command_writes_detection_files_the_data_modules_read(tmp_path):
    main(["coco-detection", str(tmp_path / "coco"), "--train", "2", "--val", "2", "--image-size", "32"])
    main(["lvis-detection", str(tmp_path / "lvis"), "--train", "2", "--val", "2", "--image-size", "32"])
    coco = COCODetection(str(tmp_path / "coco"), split="all")
    assert len(coco.split_images("val")) == 2 and coco.classnames == NAMES
    lvis = LVISDetection(str(tmp_path / "lvis"))
    assert len(lvis.split_images("train")) == 2 and len(lvis.categories.novel) == 16
