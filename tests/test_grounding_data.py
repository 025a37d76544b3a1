"""Grounding data read from real layouts and generated: MDETR's Flickr30k Entities files and ODinW's Roboflow exports
written from ShapesWorld scenes and read back by MDETRGrounding / ODinWDetection (phrases, boxes, labels, what is left
out, the errors a wrong file gets), ShapesWorldGrounding's batches, and phrase-grounding recall on a hand-made case."""
import json
import logging

import pytest
import torch
from lit_clip.datamodules import MDETRGrounding, ODinWDetection
from lit_clip.datamodules.export import export_mdetr_grounding, export_odinw_detection, main
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.shapesworld.detection import visible_boxes
from lit_clip.datamodules.shapesworld.grounding import ShapesWorldGrounding
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names
from PIL import Image
from pycocotools.coco import COCO

from lit_clip.batches import EvaluationSet
from lit_clip.metrics.detection import DetectionMetrics
from lit_clip.metrics.grounding import PhraseGroundingRecall

SIZE = 32
NAMES = class_names("color_shape")
LOADERS = {"batch_size": 2, "eval_batch_size": 4, "num_workers": 0}
ODINW_NAMES = ["red circle", "blue star", "green square"]


def _world() -> ShapesWorld:
    return ShapesWorld(image_size=SIZE, max_objects=4)


def _edit(path, change) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def _mdetr_file(root, split: str):
    return root / "mdetr_annotations" / f"final_flickr_separateGT_{split}.json"


def _mdetr(root, splits=("train", "val", "test"), **kwargs) -> MDETRGrounding:
    files = {f"{split}_file": str(_mdetr_file(root, split)) for split in splits}
    return MDETRGrounding(str(root / "flickr30k-images"), **files, **{**LOADERS, **kwargs})


# -- MDETR's grounding files ---------------------------------------------------------------------------------


def test_mdetr_export_reads_back_with_the_scenes_captions_phrases_and_boxes(tmp_path):
    world = _world()
    exported = export_mdetr_grounding(tmp_path, world, {"train": 4, "val": 6, "test": 2})
    content = json.loads(_mdetr_file(tmp_path, "val").read_text())
    assert [entry["original_img_id"] for entry in content["images"]] == list(range(1000004, 1000010))
    assert {a["category_id"] for a in content["annotations"]} == {1}

    data = _mdetr(tmp_path)
    assert data.classnames == [] and data.merge_boxes is False
    assert data.evaluation_sets("test") == [EvaluationSet("", (), phrase_grounding=True)]
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["skipped_index"].numel() == 0
    shared = 0
    for index, (caption, target) in enumerate(zip(batch["caption"], batch["targets"])):
        scene = world.scene("val", index)
        assert caption == scene.caption and target["image_id"] == exported["val"][index][1]
        assert target["phrases"] == [[span] for span, _ in scene.grounded_phrases]
        boxes = visible_boxes(scene)
        for k, (_, objects) in enumerate(scene.grounded_phrases):
            # Boxes of one phrase (a counted one: "two red circles") share its label.
            assert torch.equal(target["boxes"][target["labels"] == k], boxes[list(objects)])
            shared += len(objects) > 1
        assert len(target["labels"]) == len(scene.objects)
    assert shared, "no scene of the test has a phrase of several objects"
    image = data.split_images("test")[1]
    assert image.path == exported["test"][1][0] and Image.open(image.path).format == "JPEG"

    batch = next(iter(data.train_dataloader()))
    assert len(batch["caption"]) == 2 and all(t["labels"].max() < len(t["phrases"]) for t in batch["targets"])


def test_phrases_are_distinct_spans_in_first_seen_order_and_boxless_phrases_are_left_out(tmp_path, caplog):
    world = _world()
    export_mdetr_grounding(tmp_path, world, {"val": 3})
    scene = world.scene("val", 0)
    (first, first_objects), (second, second_objects), *_ = scene.grounded_phrases

    def change(content):
        mine = [a for a in content["annotations"] if a["image_id"] == 0]
        others = [a for a in content["annotations"] if a["image_id"] != 0]
        # The second phrase's boxes first, the first phrase's box then cut to a sliver by the image's edge.
        reordered = [a for a in mine if a["phrase_ids"] == 1] + [a for a in mine if a["phrase_ids"] != 1]
        first_box = next(a for a in reordered if a["phrase_ids"] == 0)
        first_box["bbox"] = [SIZE - 0.5, 2.0, 4.0, 4.0]
        content["annotations"] = reordered + others

    assert len(first_objects) == 1, "scene 0's first phrase must name one object"
    _edit(_mdetr_file(tmp_path, "val"), change)
    data = _mdetr(tmp_path, splits=("val",))
    with caplog.at_level(logging.INFO, logger="lit_clip.datamodules.grounding"):
        image = data.split_images("val")[0]
    assert "1 boxes under 1 px after clipping" in caplog.text and "1 phrases left without a box" in caplog.text
    assert image.phrases[0] == (second,) and first not in [phrase[0] for phrase in image.phrases]
    assert image.labels[: len(second_objects)].tolist() == [0] * len(second_objects)
    assert torch.equal(torch.from_numpy(image.boxes[: len(second_objects)]), visible_boxes(scene)[list(second_objects)])


def test_a_span_outside_the_caption_or_a_box_without_a_phrase_names_the_file_and_entry(tmp_path):
    export_mdetr_grounding(tmp_path, _world(), {"val": 3})
    path = _mdetr_file(tmp_path, "val")
    original = path.read_text()

    def outside(content):
        annotation = next(a for a in content["annotations"] if a["image_id"] == 2)
        annotation["tokens_positive"] = [[0, 999]]

    _edit(path, outside)
    with pytest.raises(ValueError, match=r"final_flickr_separateGT_val\.json: image 2: phrase \d+'s span \(0, 999\) is "
                                         r"outside its caption"):  # fmt: skip
        _mdetr(tmp_path, splits=("val",)).setup("validate")

    path.write_text(original)
    _edit(path, lambda content: content["annotations"][3].update(tokens_positive=[]))
    annotation = json.loads(path.read_text())["annotations"][3]
    with pytest.raises(ValueError, match=rf"final_flickr_separateGT_val\.json: annotation 3 of image "
                                         rf"{annotation['image_id']} has no tokens_positive"):  # fmt: skip
        _mdetr(tmp_path, splits=("val",)).setup("validate")


def test_a_missing_file_or_folder_names_the_expected_layout_and_a_missing_split_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere not found; expected MDETR's grounding annotations"):
        MDETRGrounding(str(tmp_path / "nowhere"))
    export_mdetr_grounding(tmp_path, _world(), {"train": 2})
    with pytest.raises(FileNotFoundError, match=r"final_flickr_separateGT_val\.json not found; expected MDETR's"):
        _mdetr(tmp_path, splits=("train", "val"))
    data = _mdetr(tmp_path, splits=("train",))
    with pytest.raises(ValueError, match="no test_file"):
        data.test_dataloader()


def test_a_corrupt_image_is_skipped_and_counted_or_raised(tmp_path):
    exported = export_mdetr_grounding(tmp_path, _world(), {"val": 4})
    broken = exported["val"][1][0]
    broken.write_bytes(broken.read_bytes()[:100])  # a truncated JPEG
    batch = next(iter(_mdetr(tmp_path, splits=("val",)).val_dataloader()))
    assert batch["skipped_index"].tolist() == [1] and len(batch["targets"]) == len(batch["caption"]) == 3
    with pytest.raises(BadSampleError, match=broken.name):
        next(iter(_mdetr(tmp_path, splits=("val",), bad_samples="raise").val_dataloader()))


def test_merge_boxes_is_the_data_modules_to_say(tmp_path):
    export_mdetr_grounding(tmp_path, _world(), {"test": 1})
    assert _mdetr(tmp_path, splits=("test",), merge_boxes=True).merge_boxes is True


# -- ODinW's Roboflow exports ----------------------------------------------------------------------------------


def test_odinw_export_reads_back_without_the_background_category(tmp_path):
    world = _world()
    exported = export_odinw_detection(tmp_path, world, {"train": 4, "valid": 2, "test": 3}, compositions=ODINW_NAMES)
    content = json.loads((tmp_path / "test" / "_annotations.coco.json").read_text())
    assert content["categories"][0] == {"id": 0, "name": "shapes", "supercategory": "none"}
    assert exported["test"][0][0].parent == tmp_path / "test" and ".rf." in exported["test"][0][0].name

    data = ODinWDetection(str(tmp_path), **LOADERS)
    assert data.categories.names == tuple(ODINW_NAMES) and data.categories.ids == (1, 2, 3)
    assert data.classnames == ODINW_NAMES and data.categories.novel == ()
    for split, world_split in (("train", "train"), ("val", "val"), ("test", "test")):
        images = data.split_images(split)
        scenes = [world.scene(world_split, index, allowed=ODINW_NAMES) for index in range(len(images))]
        assert sum(len(image.labels) for image in images) == sum(len(scene.objects) for scene in scenes)
        for image, scene in zip(images, scenes):
            assert [ODINW_NAMES[label] for label in image.labels] == [obj.name for obj in scene.objects]

    batch = next(iter(data.test_dataloader()))
    assert [t["image_id"] for t in batch["targets"]] == [image_id for _, image_id in exported["test"]]
    (test_set,) = data.evaluation_sets("test")
    assert test_set.classnames == tuple(ODINW_NAMES) and test_set.subsets == {}
    ground_truth = test_set.annotations
    assert isinstance(ground_truth, COCO) and data.evaluation_sets("test")[0].annotations is ground_truth
    assert sorted(ground_truth.cats) == [1, 2, 3] and sorted(ground_truth.imgs) == [0, 1, 2]
    assert len(ground_truth.anns) == sum(len(t["labels"]) for t in batch["targets"])
    val_truth = data.evaluation_sets("validate")[0].annotations
    assert sorted(val_truth.imgs) == [0, 1] and val_truth is not ground_truth

    metric = DetectionMetrics(ground_truth)
    metric.update([{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
                   for t in batch["targets"]], batch["targets"])  # fmt: skip
    assert metric.compute()["AP"] == pytest.approx(1.0)


def test_odinw_prefers_glips_files_and_keeps_boxless_categories_of_a_real_supercategory(tmp_path):
    export_odinw_detection(tmp_path, _world(), {"train": 2, "valid": 1, "test": 1}, compositions=ODINW_NAMES,
                           without_background=True)  # fmt: skip
    data = ODinWDetection(str(tmp_path), **LOADERS)
    assert {path.name for path in data.files.values()} == {"annotations_without_background.json"}
    assert data.categories.names == tuple(ODINW_NAMES)

    boxless = {"id": 4, "name": "purple star", "supercategory": "shapes"}  # in no scene, yet one of the data set's
    for folder in ("train", "valid", "test"):
        (tmp_path / folder / "annotations_without_background.json").unlink()
        _edit(tmp_path / folder / "_annotations.coco.json", lambda content: content["categories"].append(boxless))
    assert ODinWDetection(str(tmp_path)).categories.names == (*ODINW_NAMES, "purple star")


def test_a_missing_odinw_folder_or_file_names_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere not found; expected an ODinW data set"):
        ODinWDetection(str(tmp_path / "nowhere"))
    export_odinw_detection(tmp_path, _world(), {"train": 1, "valid": 1, "test": 1}, compositions=ODINW_NAMES)
    (tmp_path / "valid" / "_annotations.coco.json").unlink()
    missing = r"neither annotations_without_background\.json nor _annotations\.coco\.json found in .*valid; expected"
    with pytest.raises(FileNotFoundError, match=missing):
        ODinWDetection(str(tmp_path))


def test_export_command_writes_grounding_and_odinw_files_the_data_modules_read(tmp_path):
    common = ["--train", "2", "--val", "1", "--test", "1", "--image-size", "32"]
    main(["mdetr-grounding", str(tmp_path / "flickr"), *common])
    main(["odinw-detection", str(tmp_path / "odinw"), *common])
    assert len(_mdetr(tmp_path / "flickr").split_images("train")) == 2
    odinw = ODinWDetection(str(tmp_path / "odinw"))
    assert len(odinw.split_images("test")) == 1 and len(odinw.split_images("train")) == 2


# -- ShapesWorld's grounding scenes ----------------------------------------------------------------------------


def test_shapesworld_grounding_batches_ground_spans_inside_their_captions_and_prompt_only_base_names():
    data = ShapesWorldGrounding(held_out=8, image_size=SIZE, train_samples=16, val_samples=4, test_samples=4,
                                negatives=3, batch_size=8)  # fmt: skip
    detection, grounding = data.evaluation_sets("validate")
    novel = {NAMES[label] for label in detection.subsets["novel"]}
    assert len(novel) == 8 and set(data.classnames) == set(NAMES) - novel and grounding.phrase_grounding
    kinds = set()
    for batch in [*data.train_dataloader(), next(iter(data.val_dataloader()[1]))]:
        for caption, target in zip(batch["caption"], batch["targets"]):
            assert all(0 <= start < end <= len(caption) for phrase in target["phrases"] for start, end in phrase)
            assert 0 <= target["labels"].min() and target["labels"].max() < len(target["phrases"])
            names = caption.split(". ")
            if all(name in NAMES for name in names):  # a detection prompt: its names only, joined by ". "
                kinds.add("prompt")
                assert set(names) <= set(data.classnames)
                assert [caption[s:e] for ((s, e),) in target["phrases"]] == names
            else:
                kinds.add("caption")
    assert kinds == {"prompt", "caption"}


# -- phrase-grounding recall -----------------------------------------------------------------------------------


def test_phrase_grounding_recall_counts_top_k_hits_per_protocol():
    a, b = torch.tensor([0.0, 0, 10, 10]), torch.tensor([20.0, 0, 30, 10])  # one phrase's two boxes, apart
    union, c, d = torch.tensor([0.0, 0, 30, 10]), torch.tensor([0.0, 20, 10, 30]), torch.tensor([20.0, 20, 30, 30])
    miss = torch.tensor([50.0, 50, 60, 60])
    truth = [[torch.stack([a, b]), c[None], d[None], c[None]]]
    ranked = [[
        torch.stack([b, union]),  # any box: found at 1 (b is one of its boxes); merged: at 2 (b is a third of union)
        torch.stack([c, miss]),  # found at 1 either way: one box is its own union
        torch.stack([miss, miss, d]),  # found at 3: a hit at 5, not at 1
        torch.zeros(0, 4),  # no prediction: missed
    ]]  # fmt: skip
    results = {}
    for merge in (False, True):
        metric = PhraseGroundingRecall(merge_boxes=merge)
        metric.update(ranked, truth, torch.tensor([0]))
        metric.update(ranked, truth, torch.tensor([0]))  # the same image again (a padded last batch): counted once
        results[merge] = {name: value.item() for name, value in metric.compute().items()}
    assert results[False] == pytest.approx({"R@1": 2 / 4, "R@5": 3 / 4, "R@10": 3 / 4})
    assert results[True] == pytest.approx({"R@1": 1 / 4, "R@5": 3 / 4, "R@10": 3 / 4})
