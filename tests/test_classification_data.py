"""Prompt templates, CLIP's eval preprocessing, and the on-disk classification data modules.

The data modules read ShapesWorld samples exported in the real layouts, so the real
parsers run end to end on a few tiny images.
"""
import json

import numpy as np
import pytest
import torch
from lit_clip.datamodules import CoOpClassification, ImageFolderClassification
from lit_clip.datamodules.classification import COOP_LAYOUTS, ImageFileDataset
from lit_clip.datamodules.export import export_coop, export_imagefolder
from lit_clip.datamodules.shapesworld import class_names
from PIL import Image

from lit_clip.templates import (
    COOP_TEMPLATES,
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_TEMPLATES,
    VILD_TEMPLATES,
    fill_template,
    resolve_templates,
)
from lit_clip.transforms import clip_eval_transform

COOP_DATASETS = [
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101",
    "FGVCAircraft", "SUN397", "DescribableTextures", "EuroSAT", "UCF101",
]
SPLIT_FILE_DATASETS = [name for name in COOP_DATASETS if name not in ("ImageNet", "FGVCAircraft")]
IMAGE_SIZE = 32


def small_coop(root, dataset, **kwargs):
    return CoOpClassification(root, dataset, image_size=IMAGE_SIZE, batch_size=16, num_workers=0, **kwargs)


def small_imagefolder(root, **kwargs):
    return ImageFolderClassification(root, image_size=IMAGE_SIZE, batch_size=16, num_workers=0, **kwargs)


def check_batch(batch, expected_labels):
    images, labels = batch["image"], batch["label"]
    assert images.dtype == torch.float32 and images.shape == (len(expected_labels), 3, IMAGE_SIZE, IMAGE_SIZE)
    assert labels.dtype == torch.long and labels.tolist() == expected_labels


# -- templates ----------------------------------------------------------------------------------


def test_template_sets_have_the_published_sizes_and_one_slot_each():
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80 and len(set(OPENAI_IMAGENET_TEMPLATES)) == 80
    assert len(SIMPLE_TEMPLATES) == 7 and set(SIMPLE_TEMPLATES) <= set(OPENAI_IMAGENET_TEMPLATES)
    assert list(COOP_TEMPLATES) == COOP_DATASETS
    for template in (*OPENAI_IMAGENET_TEMPLATES, *SIMPLE_TEMPLATES, *COOP_TEMPLATES.values()):
        assert template.count("{}") == 1


def test_templates_equal_open_clip():
    zero_shot_metadata = pytest.importorskip("open_clip.zero_shot_metadata")
    name = "great white shark"
    assert [t.format(name) for t in OPENAI_IMAGENET_TEMPLATES] == [
        f(name) for f in zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES
    ]
    assert [t.format(name) for t in SIMPLE_TEMPLATES] == [f(name) for f in zero_shot_metadata.SIMPLE_IMAGENET_TEMPLATES]


def test_coop_templates_are_coops_custom_templates():
    assert COOP_TEMPLATES["OxfordPets"] == "a photo of a {}, a type of pet."
    assert COOP_TEMPLATES["OxfordFlowers"] == "a photo of a {}, a type of flower."
    assert COOP_TEMPLATES["FGVCAircraft"] == "a photo of a {}, a type of aircraft."
    assert COOP_TEMPLATES["DescribableTextures"] == "{} texture."
    assert COOP_TEMPLATES["EuroSAT"] == "a centered satellite photo of {}."
    assert COOP_TEMPLATES["Food101"] == "a photo of {}, a type of food."
    assert COOP_TEMPLATES["UCF101"] == "a photo of a person doing {}."
    for name in ("ImageNet", "Caltech101", "StanfordCars", "SUN397"):
        assert COOP_TEMPLATES[name] == "a photo of a {}."


def test_vild_templates_are_the_demos_63_with_this_is_and_articles():
    assert len(VILD_TEMPLATES) == 63 and len(set(VILD_TEMPLATES)) == 63
    assert resolve_templates("vild") == list(VILD_TEMPLATES)
    assert resolve_templates(list(VILD_TEMPLATES)) == list(VILD_TEMPLATES)  # one {} each, {article} allowed
    # The demo's default this_is=True: "This is " before every prompt starting with "a" or "the" (58 of them).
    assert sum(t.startswith("This is ") for t in VILD_TEMPLATES) == 58
    assert [fill_template(t, "apple") for t in VILD_TEMPLATES[:3]] == [
        "There is an apple in the scene.",
        "There is the apple in the scene.",
        "This is a photo of an apple in the scene.",
    ]
    assert fill_template(VILD_TEMPLATES[0], "car") == "There is a car in the scene."
    assert fill_template("itap of {article} {}.", "Umbrella") == "itap of an Umbrella."
    assert fill_template("This is an embroidered {}.", "car") == "This is an embroidered car."


def test_templates_without_article_format_as_before():
    for template in (*OPENAI_IMAGENET_TEMPLATES, *COOP_TEMPLATES.values(), "{}", "{} texture."):
        for name in ("apple", "car"):
            assert fill_template(template, name) == template.format(name)


def test_resolve_templates_by_name_and_list():
    assert resolve_templates("openai_imagenet") == list(OPENAI_IMAGENET_TEMPLATES)
    assert resolve_templates("simple") == list(SIMPLE_TEMPLATES)
    assert resolve_templates("coop:EuroSAT") == ["a centered satellite photo of {}."]
    assert resolve_templates(("a {}.", "{} texture.")) == ["a {}.", "{} texture."]
    assert resolve_templates(["a photo of {article} {}."]) == ["a photo of {article} {}."]


@pytest.mark.parametrize(
    "spec, named",
    [
        ("imagenet", "'imagenet'"),
        ("coop:Pets", "'coop:Pets'"),
        (["a photo of a {}.", "a photo without a slot."], "'a photo without a slot.'"),
        (["{} next to {}."], "'{} next to {}.'"),
        (["a photo of a {name}."], "'a photo of a {name}.'"),
        (["a photo of {article}."], "'a photo of {article}.'"),
        (["a photo of {article!r} {}."], "'a photo of {article!r} {}.'"),
        (["a photo of a {."], "'a photo of a {.'"),
        ([], "empty"),
    ],
)
def test_resolve_templates_rejects_bad_specs(spec, named):
    with pytest.raises(ValueError) as error:
        resolve_templates(spec)
    assert named in str(error.value)
    assert "openai_imagenet" in str(error.value) and "coop:OxfordPets" in str(error.value)


# -- eval preprocessing -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
@pytest.mark.parametrize("image_size", [224, 32])
def test_clip_eval_transform_equals_open_clip(mode, image_size):
    open_clip_transform = pytest.importorskip("open_clip.transform")
    pixels = np.random.default_rng(0).integers(0, 256, size=(61, 97, 3), dtype=np.uint8)  # landscape, odd sides
    image = Image.fromarray(pixels).convert(mode)
    ours = clip_eval_transform(image_size)(image)
    assert ours.shape == (3, image_size, image_size)
    assert torch.equal(ours, open_clip_transform.image_transform(image_size, is_train=False)(image))


# -- the shared image-file dataset --------------------------------------------------------------


def test_unreadable_image_files_raise_errors_naming_the_path(tmp_path):
    missing, broken = tmp_path / "missing.png", tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    dataset = ImageFileDataset([(missing, 0), (broken, 1)], clip_eval_transform(IMAGE_SIZE))
    for index, path in enumerate((missing, broken)):
        with pytest.raises(OSError, match="cannot read image") as error:
            dataset[index]
        assert str(path) in str(error.value)


# -- an image-folder tree -----------------------------------------------------------------------


def test_imagefolder_round_trip(tmp_path):
    exported = export_imagefolder(tmp_path, {"train": 1, "test": 2}, image_size=IMAGE_SIZE)
    data = small_imagefolder(tmp_path)
    names = class_names("color_shape")
    assert data.classnames == sorted(names)  # folder order; "red_circle" read back as "red circle"
    assert data.templates == list(SIMPLE_TEMPLATES)
    for split in ("train", "test"):
        read = {(path, data.classnames[label]) for path, label in data.samples(split)}
        assert read == {(path, names[label]) for path, label in exported[split]}
    test_samples = data.samples("test")
    check_batch(next(iter(data.test_dataloader())), [label for _, label in test_samples[:16]])
    assert data.val_dataloader() == []  # no val/: fit runs without validation


def test_imagefolder_with_only_a_test_split(tmp_path):
    export_imagefolder(tmp_path, {"test": 1}, vocabulary="shape", image_size=IMAGE_SIZE)
    data = small_imagefolder(tmp_path, templates="coop:ImageNet")
    assert data.classnames == sorted(class_names("shape")) and data.templates == ["a photo of a {}."]
    assert len(data.test_dataloader().dataset) == 8
    with pytest.raises(FileNotFoundError, match="no train split") as error:
        data.train_dataloader()
    assert str(tmp_path / "train") in str(error.value)


def test_imagefolder_classnames_file(tmp_path):
    export_imagefolder(tmp_path, {"test": 1}, vocabulary="shape", image_size=IMAGE_SIZE)
    readable = [f"a {name} shape" for name in sorted(class_names("shape"))]
    (tmp_path / "names.txt").write_text("\n".join(readable) + "\n")
    assert small_imagefolder(tmp_path, classnames_file=str(tmp_path / "names.txt")).classnames == readable

    (tmp_path / "short.txt").write_text("\n".join(readable[:-1]))
    with pytest.raises(ValueError) as error:
        small_imagefolder(tmp_path, classnames_file=str(tmp_path / "short.txt"))
    assert "short.txt has 7 class names" in str(error.value) and "8 class folders" in str(error.value)


def test_imagefolder_rejects_a_tree_in_the_wrong_layout(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    with pytest.raises(FileNotFoundError, match="no train/, val/ or test/ folder") as error:
        small_imagefolder(tmp_path)
    assert "test/<class_name>/<image files>" in str(error.value)

    (tmp_path / "test").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "test" / "loose.png")
    with pytest.raises(FileNotFoundError, match="no class folders") as error:
        small_imagefolder(tmp_path)
    assert str(tmp_path / "test") in str(error.value) and "<root>/" in str(error.value)


def test_imagefolder_rejects_bad_templates(tmp_path):
    export_imagefolder(tmp_path, {"test": 1}, vocabulary="shape", image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match="'a photo'"):
        small_imagefolder(tmp_path, templates=["a photo"])


# -- CoOp's data sets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, split_file, image_dir",
    [
        ("Caltech101", "caltech-101/split_zhou_Caltech101.json", "caltech-101/101_ObjectCategories"),
        ("OxfordPets", "oxford_pets/split_zhou_OxfordPets.json", "oxford_pets/images"),
        ("StanfordCars", "stanford_cars/split_zhou_StanfordCars.json", "stanford_cars"),
        ("OxfordFlowers", "oxford_flowers/split_zhou_OxfordFlowers.json", "oxford_flowers/jpg"),
        ("Food101", "food-101/split_zhou_Food101.json", "food-101/images"),
        ("SUN397", "sun397/split_zhou_SUN397.json", "sun397/SUN397"),
        ("DescribableTextures", "dtd/split_zhou_DescribableTextures.json", "dtd/images"),
        ("EuroSAT", "eurosat/split_zhou_EuroSAT.json", "eurosat/2750"),
        ("UCF101", "ucf101/split_zhou_UCF101.json", "ucf101/UCF-101-midframes"),
    ],
)
def test_coop_split_file_data_sets_read_coops_paths(tmp_path, dataset, split_file, image_dir):
    exported = export_coop(tmp_path, {"val": 1}, dataset, vocabulary="shape", image_size=IMAGE_SIZE)
    assert (tmp_path / split_file).is_file()
    data = small_coop(tmp_path, dataset)
    assert data.classnames == class_names("shape") and data.templates == [COOP_TEMPLATES[dataset]]
    assert data.samples("val") == exported["val"] and data.samples("test") == []
    assert all(path.is_relative_to(tmp_path / image_dir) and path.is_file() for path, _ in data.samples("val"))


def test_coop_split_file_round_trip(tmp_path):
    exported = export_coop(tmp_path, {"train": 1, "val": 1, "test": 2}, "OxfordPets", image_size=IMAGE_SIZE)
    data = small_coop(tmp_path, "OxfordPets", templates="simple")
    assert data.classnames == class_names("color_shape") and data.templates == list(SIMPLE_TEMPLATES)
    for split in ("train", "val", "test"):
        assert data.samples(split) == exported[split]
    check_batch(next(iter(data.val_dataloader())), [label for _, label in exported["val"][:16]])
    train_labels = torch.cat([batch["label"] for batch in data.train_dataloader()])
    assert sorted(train_labels.tolist()) == list(range(64))  # shuffled, all there


def test_coop_imagenet_round_trip(tmp_path):
    exported = export_coop(tmp_path, {"train": 2, "val": 1}, "ImageNet", vocabulary="shape", image_size=IMAGE_SIZE)
    assert (tmp_path / "imagenet" / "classnames.txt").read_text().splitlines()[0] == "n00000000 circle"
    data = small_coop(tmp_path, "ImageNet")
    assert data.classnames == class_names("shape") and data.templates == ["a photo of a {}."]
    assert sorted(data.samples("train")) == sorted(exported["train"])
    # CoOp validates and tests on ImageNet's val set.
    assert sorted(data.samples("val")) == sorted(data.samples("test")) == sorted(exported["val"])
    test_samples = data.samples("test")
    check_batch(next(iter(data.test_dataloader())), [label for _, label in test_samples])


def test_coop_imagenet_labels_follow_sorted_wnids(tmp_path):
    export_coop(tmp_path, {"val": 1}, "ImageNet", vocabulary="shape", image_size=IMAGE_SIZE)
    classnames_path = tmp_path / "imagenet" / "classnames.txt"
    classnames_path.write_text("\n".join(reversed(classnames_path.read_text().splitlines())))
    assert small_coop(tmp_path, "ImageNet").classnames == class_names("shape")


def test_coop_fgvc_aircraft_round_trip(tmp_path):
    exported = export_coop(tmp_path, {"train": 1, "val": 1, "test": 1}, "FGVCAircraft", image_size=IMAGE_SIZE)
    assert (tmp_path / "fgvc_aircraft" / "images_variant_test.txt").read_text().startswith("test00000 red circle\n")
    data = small_coop(tmp_path, "FGVCAircraft")
    assert data.classnames == class_names("color_shape")  # multi-word variants survive the "<id> <variant>" lines
    assert data.templates == ["a photo of a {}, a type of aircraft."]
    for split in ("train", "val", "test"):
        assert data.samples(split) == exported[split]
    check_batch(next(iter(data.test_dataloader())), list(range(16)))


def test_coop_rejects_unknown_data_sets(tmp_path):
    with pytest.raises(ValueError, match="unknown CoOp data set 'Pets'") as error:
        small_coop(tmp_path, "Pets")
    assert all(name in str(error.value) for name in COOP_DATASETS)


@pytest.mark.parametrize("dataset", ["OxfordPets", "StanfordCars"])
def test_coop_missing_split_file_names_the_expected_path(tmp_path, dataset):
    with pytest.raises(FileNotFoundError) as error:
        small_coop(tmp_path, dataset)
    folder, _ = COOP_LAYOUTS[dataset]
    assert str(tmp_path / folder / f"split_zhou_{dataset}.json") in str(error.value)
    assert f"<root>/{folder}/" in str(error.value) and "relative to" in str(error.value)


def test_coop_missing_imagenet_and_aircraft_files_describe_the_tree(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        small_coop(tmp_path, "ImageNet")
    assert str(tmp_path / "imagenet" / "classnames.txt") in str(error.value) and "images/val/<wnid>" in str(error.value)
    with pytest.raises(FileNotFoundError) as error:
        small_coop(tmp_path, "FGVCAircraft")
    assert str(tmp_path / "fgvc_aircraft" / "variants.txt") in str(error.value)
    assert "images_variant_{train,val,test}.txt" in str(error.value)

    export_coop(tmp_path, {"val": 1}, "ImageNet", vocabulary="shape", image_size=IMAGE_SIZE)
    data = small_coop(tmp_path, "ImageNet")  # val alone is enough for zero-shot evaluation
    with pytest.raises(FileNotFoundError) as error:
        data.train_dataloader()
    assert str(tmp_path / "imagenet" / "images" / "train") in str(error.value)


def rewrite_split_file(root, dataset, edit):
    path = root / COOP_LAYOUTS[dataset][0] / f"split_zhou_{dataset}.json"
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def test_coop_split_file_label_named_twice_is_an_error(tmp_path):
    export_coop(tmp_path, {"train": 1, "test": 1}, "OxfordPets", vocabulary="shape", image_size=IMAGE_SIZE)
    rewrite_split_file(tmp_path, "OxfordPets", lambda content: content["test"][3].__setitem__(2, "rhombus"))
    with pytest.raises(ValueError, match="label 3 is named both 'star' and 'rhombus'"):
        small_coop(tmp_path, "OxfordPets")


def test_coop_split_file_with_a_label_gap_is_an_error(tmp_path):
    export_coop(tmp_path, {"test": 1}, "OxfordPets", vocabulary="shape", image_size=IMAGE_SIZE)
    rewrite_split_file(tmp_path, "OxfordPets", lambda content: content["test"].pop(5))
    with pytest.raises(ValueError, match="label 5 never occurs"):
        small_coop(tmp_path, "OxfordPets")


def test_coop_split_file_with_a_malformed_entry_is_an_error(tmp_path):
    export_coop(tmp_path, {"test": 1}, "OxfordPets", vocabulary="shape", image_size=IMAGE_SIZE)
    rewrite_split_file(tmp_path, "OxfordPets", lambda content: content["test"][2].pop())
    with pytest.raises(ValueError, match="entry 2 of 'test'"):
        small_coop(tmp_path, "OxfordPets")


def test_coop_imagenet_classnames_count_must_match_the_folders(tmp_path):
    export_coop(tmp_path, {"val": 1}, "ImageNet", vocabulary="shape", image_size=IMAGE_SIZE)
    classnames_path = tmp_path / "imagenet" / "classnames.txt"
    classnames_path.write_text(classnames_path.read_text() + "n99999999 extra class\n")
    data = small_coop(tmp_path, "ImageNet")
    with pytest.raises(ValueError) as error:
        data.test_dataloader()
    assert "lists 9 classes" in str(error.value) and "has 8 class folders" in str(error.value)


def test_coop_aircraft_variants_count_must_match_the_split_lists(tmp_path):
    export_coop(tmp_path, {"test": 1}, "FGVCAircraft", vocabulary="shape", image_size=IMAGE_SIZE)
    variants_path = tmp_path / "fgvc_aircraft" / "variants.txt"
    variants_path.write_text(variants_path.read_text() + "Boeing 737-200\n")
    with pytest.raises(ValueError) as error:
        small_coop(tmp_path, "FGVCAircraft")
    assert "lists 9 class names" in str(error.value) and "use 8 of them" in str(error.value)

    variants_path.write_text("\n".join(class_names("shape")[1:]))
    with pytest.raises(ValueError, match="variant 'circle' of image test00000 is not in"):
        small_coop(tmp_path, "FGVCAircraft")


def test_coop_missing_image_raises_an_error_naming_it(tmp_path):
    exported = export_coop(tmp_path, {"test": 1}, "OxfordPets", vocabulary="shape", image_size=IMAGE_SIZE)
    missing_path = exported["test"][0][0]
    missing_path.unlink()
    with pytest.raises(OSError) as error:
        next(iter(small_coop(tmp_path, "OxfordPets").test_dataloader()))
    assert str(missing_path) in str(error.value)


def test_split_file_class_names_are_prompted_without_underscores(tmp_path):
    """CoOp's files name classes as "american_bulldog"; every CoOp-family method prompts "american bulldog"."""
    from lit_clip.datamodules.classification import coop_reader

    images = tmp_path / "oxford_pets" / "images"
    images.mkdir(parents=True)
    entries = []
    for label, name in enumerate(["american_bulldog", "Abyssinian"]):
        Image.new("RGB", (8, 8)).save(images / f"{name}_1.jpg")
        entries.append([f"{name}_1.jpg", label, name])
    split = {"train": entries, "val": entries, "test": entries}
    (tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json").write_text(json.dumps(split))
    assert coop_reader(tmp_path, "OxfordPets").classnames == ["american bulldog", "Abyssinian"]
