"""GLIP's pretraining data read as data: Objects365's files written from ShapesWorld scenes and read back by
Objects365Detection, detection samples read as grounding (DetectionAsGrounding: prompts, phrases, draws per epoch,
bad samples), and GroundingMixture's one loader over grounding and detection sources, built in Python and from a
LightningCLI config."""
import json
import logging
import shutil
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lit_clip.datamodules import DetectionAsGrounding, GroundingMixture, MDETRGrounding, Objects365Detection
from lit_clip.datamodules.export import export_mdetr_grounding, export_objects365_detection, main
from lit_clip.datamodules.grounding import grounding_collate
from lit_clip.datamodules.images import BadSampleError, RobustSamples, without_bad_samples
from lit_clip.datamodules.shapesworld import ShapesWorldDetection
from lit_clip.datamodules.shapesworld.detection import visible_boxes
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names
from pycocotools.coco import COCO

from lit_clip.cli import LitClipCLI
from lit_clip.grounding import check_phrases

SIZE = 32
NAMES = class_names("color_shape")
O365_NAMES = [name.capitalize() for name in NAMES]  # Objects365 names with a capital: "Person", "Other Shoes"
LOADERS = {"batch_size": 2, "eval_batch_size": 4, "num_workers": 0}


def _world() -> ShapesWorld:
    return ShapesWorld(image_size=SIZE, max_objects=4)


def _objects365(root, **kwargs) -> Objects365Detection:
    return Objects365Detection(str(root), **{**LOADERS, **kwargs})


def _mdetr(root, **kwargs) -> MDETRGrounding:
    files = {f"{split}_file": str(root / "mdetr_annotations" / f"final_flickr_separateGT_{split}.json")
             for split in ("train", "val")}  # fmt: skip
    return MDETRGrounding(str(root / "flickr30k-images"), **files, **{**LOADERS, **kwargs})


def _prompt_names(caption: str, phrases) -> list[str]:
    return [caption[start:end] for ((start, end),) in phrases]


# -- Objects365 v2's files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flat", [False, True], ids=["as-file-names-say", "flattened"])
def test_objects365_export_reads_back_with_its_categories_and_boxes(tmp_path, flat):
    world = _world()
    exported = export_objects365_detection(tmp_path, world, {"train": 5, "val": 2}, flat=flat)
    content = json.loads((tmp_path / "zhiyuan_objv2_val.json").read_text())
    assert content["images"][0]["file_name"] == "images/v2/patch2/objects365_v2_00000006.jpg"
    if flat:
        assert exported["train"][0][0] == tmp_path / "train" / "objects365_v1_00000001.jpg"
    else:
        assert exported["train"][0][0] == tmp_path / "images" / "v1" / "patch0" / "objects365_v1_00000001.jpg"
        assert exported["train"][4][0] == tmp_path / "images" / "v2" / "patch2" / "objects365_v2_00000005.jpg"
    assert not (tmp_path / "train2017").exists()

    data = _objects365(tmp_path)
    assert data.categories.names == tuple(O365_NAMES) and data.categories.ids == tuple(range(1, 65))
    assert data.classnames == O365_NAMES and data.categories.novel == ()
    for split in ("train", "val"):
        images = data.split_images(split)
        assert [image.path for image in images] == [path for path, _ in exported[split]]
        for index, image in enumerate(images):
            scene = world.scene(split, index)
            assert [O365_NAMES[label] for label in image.labels] == [obj.name.capitalize() for obj in scene.objects]
            assert torch.equal(torch.from_numpy(image.boxes), visible_boxes(scene))

    batch = next(iter(data.val_dataloader()))
    assert [t["image_id"] for t in batch["targets"]] == [image_id for _, image_id in exported["val"]]
    (val_set,) = data.evaluation_sets("validate")
    assert val_set.classnames == tuple(O365_NAMES) and val_set.subsets == {}
    assert isinstance(val_set.annotations, COCO) and len(val_set.annotations.cats) == 64
    assert len(val_set.annotations.anns) == sum(len(t["labels"]) for t in batch["targets"])


def test_objects365_finds_the_images_where_the_official_archives_unpack_and_names_the_places_it_tried(tmp_path):
    exported = export_objects365_detection(tmp_path, _world(), {"train": 3, "val": 1})
    # The archives unpacked: train/patch<N>/<name>, and val/images/v<k>/patch<N>/<name> (the file_name under val/).
    for split in ("train", "val"):
        for path, _ in exported[split]:
            relative = path.relative_to(tmp_path)
            target = tmp_path / split / (Path(*relative.parts[-2:]) if split == "train" else relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
    shutil.rmtree(tmp_path / "images")
    data = _objects365(tmp_path)
    assert [image.key for image in data.split_images("train")] == [
        "train/patch0/objects365_v1_00000001.jpg", "train/patch0/objects365_v1_00000002.jpg",
        "train/patch1/objects365_v2_00000003.jpg",
    ]  # fmt: skip
    assert data.split_images("val")[0].key == "val/images/v2/patch1/objects365_v2_00000004.jpg"

    for path in (tmp_path / "val").rglob("*.jpg"):
        path.unlink()
    not_found = r"none of the first 1 images of .*zhiyuan_objv2_val\.json is found; the last, image 4, is at none of:\n"
    with pytest.raises(FileNotFoundError, match=not_found + r"  .*objects365_v2_00000004"):
        _objects365(tmp_path).split_images("val")
    with pytest.raises(FileNotFoundError, match="nowhere not found; expected Objects365 v2's layout"):
        _objects365(tmp_path / "nowhere")


def test_export_command_writes_objects365_files_the_data_module_reads(tmp_path):
    main(["objects365-detection", str(tmp_path), "--train", "3", "--val", "1", "--image-size", "32"])
    data = _objects365(tmp_path)
    assert len(data.split_images("train")) == 3 and len(data.split_images("val")) == 1


# -- detection read as grounding ---------------------------------------------------------------------------------


def test_detection_as_grounding_prompts_every_present_class_once_with_drawn_negatives_and_grounds_each_box(tmp_path):
    export_objects365_detection(tmp_path, _world(), {"train": 6, "val": 1})
    detection = _objects365(tmp_path).train_dataset()
    grounding = DetectionAsGrounding(detection, O365_NAMES, negatives=5, seed=0)
    assert len(grounding) == len(detection) == 6
    for index in range(len(grounding)):
        sample, original = grounding[index], detection[index]
        caption, target = sample["caption"], sample["target"]
        names = _prompt_names(caption, target["phrases"])
        present = {O365_NAMES[label] for label in original["target"]["labels"].tolist()}
        assert len(names) == len(set(names)) and present <= set(names) and 1 <= len(names) - len(present) <= 5
        assert caption == ". ".join(names) and sample["index"] == index
        check_phrases(caption, target["phrases"], target["labels"].tolist(), f"sample {index}")
        for phrase, label in zip(target["labels"].tolist(), original["target"]["labels"].tolist()):
            (start, end), = target["phrases"][phrase]
            assert caption[start:end] == O365_NAMES[label]
        assert len(target["boxes"]) == len(target["labels"]) == len(original["target"]["labels"])
    # Negatives are at most all the other names.
    everything = DetectionAsGrounding(detection, O365_NAMES, negatives=1000)[0]
    assert sorted(_prompt_names(everything["caption"], everything["target"]["phrases"])) == sorted(O365_NAMES)


def test_detection_as_grounding_draws_are_a_function_of_seed_index_and_epoch():
    detection = ShapesWorldDetection(held_out=0, image_size=SIZE, train_samples=8).train_dataset()
    names = ShapesWorldDetection(held_out=0, image_size=SIZE).classnames

    def captions(seed=0, epoch=0):
        grounding = DetectionAsGrounding(detection, names, negatives=4, seed=seed)
        grounding.set_epoch(epoch)
        return [grounding[index]["caption"] for index in range(len(grounding))]

    first = captions()
    assert captions() == first and captions(epoch=3) == captions(epoch=3)
    assert captions(epoch=1) != first and captions(seed=1) != first
    grounding = DetectionAsGrounding(detection, names, negatives=4)
    grounding.set_epoch(1)
    grounding.set_epoch(0)
    assert [grounding[index]["caption"] for index in range(8)] == first


def test_bad_samples_pass_through_detection_as_grounding_on_either_side_of_robust_samples(tmp_path):
    exported = export_objects365_detection(tmp_path, _world(), {"train": 4, "val": 1})
    broken = exported["train"][2][0]
    broken.write_bytes(broken.read_bytes()[:100])  # a truncated JPEG
    detection = _objects365(tmp_path).train_dataset()
    outside = RobustSamples(DetectionAsGrounding(detection, O365_NAMES, negatives=2))
    inside = DetectionAsGrounding(RobustSamples(detection), O365_NAMES, negatives=2)
    for dataset in (outside, inside):
        assert dataset[2] == {"skipped_index": 2}
        batch = without_bad_samples(grounding_collate)([dataset[index] for index in range(4)])
        assert batch["skipped_index"].tolist() == [2] and len(batch["caption"]) == len(batch["targets"]) == 3
        assert batch["index"].tolist() == [0, 1, 3]
    with pytest.raises(BadSampleError, match=broken.name):
        RobustSamples(DetectionAsGrounding(detection, O365_NAMES), "raise")[2]


def test_detection_as_grounding_names_a_label_beyond_its_class_names(tmp_path):
    detection = ShapesWorldDetection(held_out=0, image_size=SIZE, train_samples=2).train_dataset()
    with pytest.raises(ValueError, match=r"ShapesDetectionDataset sample 0 has box labels \[.*\], but there are 2 "
                                         r"class names"):  # fmt: skip
        DetectionAsGrounding(detection, ["red circle", "blue star"], negatives=1)[0]


# -- the mixture -----------------------------------------------------------------------------------------------


def _sources(tmp_path, corrupt: int | None = None):
    """A Flickr30k export (4 training captions, 2 val) and an Objects365 export (5 training images), as configs."""
    world = _world()
    export_mdetr_grounding(tmp_path / "flickr", world, {"train": 4, "val": 2})
    exported = export_objects365_detection(tmp_path / "o365", world, {"train": 5, "val": 1})
    if corrupt is not None:
        broken = exported["train"][corrupt][0]
        broken.write_bytes(broken.read_bytes()[:100])
    flickr = tmp_path / "flickr"
    files = {f"{split}_file": str(flickr / "mdetr_annotations" / f"final_flickr_separateGT_{split}.json")
             for split in ("train", "val")}  # fmt: skip
    return [
        {"class_path": "lit_clip.datamodules.MDETRGrounding",
         "init_args": {"root": str(flickr / "flickr30k-images"), **files, "merge_boxes": True, **LOADERS}},
        {"class_path": "lit_clip.datamodules.Objects365Detection", "init_args": {"root": str(tmp_path / "o365"),
                                                                                 **LOADERS}},
    ]  # fmt: skip


def test_the_mixture_gives_one_loader_of_grounding_and_detection_samples_and_skips_a_corrupt_image(tmp_path, caplog):
    world = _world()
    mixture = GroundingMixture(_sources(tmp_path, corrupt=1), negatives=3, batch_size=3, num_workers=0)
    with caplog.at_level(logging.INFO, logger="lit_clip.datamodules.grounding"):
        mixture.setup("fit")
    assert ("GroundingMixture: 9 training samples: MDETRGrounding (source 0, grounding) 4, "
            "Objects365Detection (source 1, detection) 5") in caplog.text
    captions, indices, skipped = {}, [], []
    for batch in mixture.train_dataloader():
        assert batch["image"].shape[0] == len(batch["caption"]) == len(batch["targets"])
        for index, caption, target in zip(batch["index"].tolist(), batch["caption"], batch["targets"]):
            check_phrases(caption, target["phrases"], target["labels"].tolist(), f"mixture sample {index}")
            captions[index] = caption
        indices += batch["index"].tolist()
        skipped += batch["skipped_index"].tolist()
    assert skipped == [4 + 1] and sorted(indices) == [0, 1, 2, 3, 4, 6, 7, 8]  # the Objects365 images follow Flickr's
    for index in range(4):
        assert captions[index] == world.scene("train", index).caption
    for index in (4, 6, 7, 8):  # a prompt of the scene's classes and up to 3 negatives
        names = captions[index].split(". ")
        present = {obj.name.capitalize() for obj in world.scene("train", index - 4).objects}
        assert present <= set(names) <= set(O365_NAMES) and 1 <= len(names) - len(present) <= 3

    # Evaluation is the evaluation source's: Flickr30k's val captions, its protocol, no fixed vocabulary.
    flickr = mixture.sources[0]
    assert isinstance(flickr, MDETRGrounding) and mixture.merge_boxes is True and mixture.classnames == []
    assert mixture.evaluation_sets("validate") == flickr.evaluation_sets("validate")
    batch = next(iter(mixture.val_dataloader()))
    assert batch["caption"] == [world.scene("val", index).caption for index in range(2)]


def test_the_mixture_can_evaluate_on_a_source_it_does_not_train_on(tmp_path):
    sources = _sources(tmp_path)
    mixture = GroundingMixture(sources, batch_size=2, num_workers=0, eval_source=1, train_eval_source=False)
    mixture.setup("fit")
    assert len(mixture.train_set()) == 4 and mixture.classnames == O365_NAMES and mixture.merge_boxes is False
    assert mixture.evaluation_sets("validate")[0].classnames == tuple(O365_NAMES)
    with pytest.raises(ValueError, match=r"eval_source 2 is not an index of the 2 sources"):
        GroundingMixture(sources, eval_source=2)


def test_the_mixture_names_a_source_without_training_samples_or_a_bad_entry(tmp_path):
    class EvaluationOnly(L.LightningDataModule):
        classnames = ["red circle"]

    with pytest.raises(ValueError, match=r"sources 0 \(EvaluationOnly\) have no train_dataset\(\)"):
        GroundingMixture([EvaluationOnly()])
    with pytest.raises(ValueError, match=r"(?s)source 0 \(lit_clip.datamodules.ShapesWorldDetection\): .*image_sizes"):
        GroundingMixture([{"class_path": "lit_clip.datamodules.ShapesWorldDetection", "init_args": {"image_sizes": 8}}])
    with pytest.raises(ValueError, match=r"source 0 is 'coco'; expected a data module's \{class_path"):
        GroundingMixture(["coco"])


def test_lightning_tells_the_detection_views_each_epoch_also_in_persistent_workers(trainer):
    class Recorder(L.LightningModule):
        """Records each epoch's captions by sample index."""

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.captions: dict[int, dict[int, str]] = {}

        def training_step(self, batch, batch_idx):
            seen = self.captions.setdefault(self.current_epoch, {})
            seen.update(zip(batch["index"].tolist(), batch["caption"]))
            return (self.weight**2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    source = ShapesWorldDetection(held_out=0, image_size=SIZE, train_samples=8)
    mixture = GroundingMixture([source], negatives=4, batch_size=4, num_workers=1)
    model = Recorder()
    trainer(max_epochs=2, limit_val_batches=0).fit(model, mixture)
    assert sorted(model.captions) == [0, 1] and all(len(seen) == 8 for seen in model.captions.values())
    assert model.captions[0] != model.captions[1]
    # Each epoch's draw is the one DetectionAsGrounding gives for it.
    grounding = DetectionAsGrounding(source.train_dataset(), source.classnames, negatives=4)
    for epoch, seen in model.captions.items():
        grounding.set_epoch(epoch)
        assert seen == {index: grounding[index]["caption"] for index in range(8)}


def test_a_loader_resumed_mid_epoch_gives_the_batches_it_had_not_given_with_the_same_prompts():
    def loader():
        source = ShapesWorldDetection(held_out=0, image_size=SIZE, train_samples=8)
        mixture = GroundingMixture([source], negatives=3, batch_size=2, num_workers=0, seed=5)
        training = mixture.train_dataloader()
        training.sampler.set_epoch(1)  # as Lightning does before each epoch
        return training

    interrupted = loader()
    batches = iter(interrupted)
    next(batches)
    state = interrupted.state_dict()
    rest = [(batch["index"].tolist(), batch["caption"]) for batch in batches]
    resumed = loader()
    resumed.load_state_dict(state)
    assert [(batch["index"].tolist(), batch["caption"]) for batch in resumed] == rest and len(rest) == 3


def test_lightning_cli_builds_the_mixture_and_its_sources_from_a_config(tmp_path, monkeypatch):
    config = tmp_path / "mixture.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"class_path": "lightning.pytorch.demos.boring_classes.BoringModel"},
        "data": {"class_path": "lit_clip.datamodules.GroundingMixture",
                 "init_args": {"sources": _sources(tmp_path), "negatives": 2, "batch_size": 2, "num_workers": 0}},
        "trainer": {"logger": False, "enable_checkpointing": False},
    }))  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["lit-clip"])  # pytest's own arguments are not the CLI's
    cli = LitClipCLI(args=["--config", str(config)], run=False)
    mixture = cli.datamodule
    assert isinstance(mixture, GroundingMixture) and mixture.hparams.negatives == 2
    flickr, o365 = mixture.sources
    assert isinstance(flickr, MDETRGrounding) and isinstance(o365, Objects365Detection)
    # Each source's own hyper-parameters, not the mixture's.
    assert flickr.hparams.merge_boxes is True and o365.hparams.root == str(tmp_path / "o365")
    mixture.setup("fit")
    batch = next(iter(mixture.train_dataloader()))
    assert len(batch["caption"]) == 2
