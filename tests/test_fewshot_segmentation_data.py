"""Few-shot segmentation data (PASCAL-5i, COCO-20i, FSS-1000) read from ShapesWorld exported in HSNet's layouts:
the official folds and episode lists, binary episode masks with their labels, and the errors bad input gets."""
import pickle
import shutil

import numpy as np
import pytest
import torch
from lit_clip.datamodules import COCO20iSegmentation, FSS1000Segmentation, Pascal5iSegmentation
from lit_clip.datamodules.export import export_coco20i, export_fss1000, export_pascal5i
from lit_clip.datamodules.fewshot_segmentation import (
    COCO_20I_CLASSES,
    PASCAL_5I_CLASSES,
    load_split_pickle,
    read_fss_mask,
)
from PIL import Image

from lit_clip.batches import IGNORE_INDEX

SMALL = {"image_size": 32, "batch_size": 2, "eval_batch_size": 4, "num_workers": 0}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each benchmark exported once, read by the tests that do not change files."""
    root = tmp_path_factory.mktemp("fewshot")
    return {
        "root": root,
        "pascal": export_pascal5i(root, {"train": 5, "val": 7}, image_size=32),
        "coco": export_coco20i(root, {"train": 1, "val": 1}, image_size=32),
        "fss": export_fss1000(root, {"train": 3, "val": 2, "test": 2}, images_per_category=4, image_size=32),
    }


def _episode_mask(mask_file, value: int) -> np.ndarray:
    values = np.asarray(Image.open(mask_file))
    return np.where(values == 255, IGNORE_INDEX, values == value)


def test_class_names_and_folds_are_the_official_ones(exported):
    assert len(PASCAL_5I_CLASSES) == 20 and PASCAL_5I_CLASSES[10::9] == ("diningtable", "tvmonitor")
    assert len(COCO_20I_CLASSES) == 80 and COCO_20I_CLASSES[9::70] == ("trafficlight", "toothbrush")
    for fold in range(4):
        pascal = Pascal5iSegmentation(exported["root"], fold=fold, **SMALL)
        (evaluation,) = pascal.evaluation_sets("test")
        assert evaluation.episodic and evaluation.classnames == ("others", *PASCAL_5I_CLASSES[5 * fold : 5 * fold + 5])
        assert pascal.evaluation_sets("validate") == [evaluation]
        assert pascal.classnames == ["others", *(c for c in PASCAL_5I_CLASSES if c not in evaluation.classnames)]
        coco = COCO20iSegmentation(exported["root"], fold=fold, background_label="background", **SMALL)
        (evaluation,) = coco.evaluation_sets("test")
        assert evaluation.classnames == ("background", *COCO_20I_CLASSES[fold::4])
        assert len(coco.classnames) == 61 and not set(coco.classnames[1:]) & set(evaluation.classnames)
    with pytest.raises(ValueError, match="fold must be 0, 1, 2 or 3, got 4"):
        Pascal5iSegmentation(exported["root"], fold=4)


def test_pascal_episodes_are_binary_masks_of_their_class_with_borders_kept(exported):
    data = Pascal5iSegmentation(exported["root"], fold=2, **SMALL)
    label_set = data.evaluation_sets("test")[0].classnames
    dataset = data.test_dataloader().dataset
    lines = exported["pascal"]["val"][2]
    for index in (0, 3, 8):
        image, mask_file, class_id = lines[index % len(lines)]
        sample = dataset[index]
        assert label_set[sample["labels"][1]] == PASCAL_5I_CLASSES[class_id] and sample["labels"][0] == 0
        expected = _episode_mask(mask_file, class_id + 1)
        assert torch.equal(sample["mask"], torch.from_numpy(expected).long())
        assert (expected == 1).any() and (expected == IGNORE_INDEX).any() and (expected == 0).any()
    # Other classes' pixels are 0: the scenes may show class + 5 of the next fold.
    shown = [np.unique(np.asarray(Image.open(mask))) for _, mask, _ in lines]
    assert any(len(set(values.tolist()) - {0, 255}) > 1 for values in shown)


def test_pascal_evaluation_cycles_its_episodes_through_the_validation_lines(exported):
    data = Pascal5iSegmentation(exported["root"], fold=1, **SMALL)
    episodes = data.episodes("val")
    lines = exported["pascal"]["val"][1]
    assert len(episodes) == 1000 and len(data.val_dataloader().dataset) == 1000
    for index in (0, 6, 7, 999):
        assert episodes[index].image == lines[index % 7][0]
    assert len(Pascal5iSegmentation(exported["root"], fold=1, episodes=3, **SMALL).episodes("test")) == 3
    train = data.episodes("train")
    assert len(train) == 3 * 5 and {episode.image.name[:4] for episode in train} == {"trn0", "trn2", "trn3"}
    assert {data.classnames[episode.label] for episode in train} == set(data.classnames[1:])


def test_coco_evaluation_is_deterministic_per_index_and_draws_the_fold_classes_only(exported):
    root = exported["root"]
    data = COCO20iSegmentation(root, fold=3, episodes=200, **SMALL)
    episodes = data.episodes("test")
    assert episodes == COCO20iSegmentation(root, fold=3, episodes=50, **SMALL).episodes("val")[:50] + episodes[50:]
    assert episodes != COCO20iSegmentation(root, fold=3, episodes=200, seed=1, **SMALL).episodes("test")
    label_set = data.evaluation_sets("test")[0].classnames
    assert {label_set[episode.label] for episode in episodes} == set(label_set[1:])  # 200 draws cover all 20
    val_pickle = load_split_pickle(root / "splits" / "coco" / "val" / "fold3.pkl")
    for episode in episodes[:20]:
        class_id = COCO_20I_CLASSES.index(label_set[episode.label])
        assert class_id % 4 == 3 and episode.mask_value == class_id + 1
        assert episode.image.relative_to(root / "COCO2014").as_posix() in val_pickle[class_id]
        assert (np.asarray(Image.open(episode.mask)) == class_id + 1).any()
    sample = data.test_dataloader().dataset[5]
    assert torch.equal(sample["mask"], torch.from_numpy(_episode_mask(episodes[5].mask, episodes[5].mask_value)).long())


def test_coco_training_draws_a_random_class_then_image_per_unique_image(exported):
    root = exported["root"]
    data = COCO20iSegmentation(root, fold=0, **SMALL)
    train_pickle = load_split_pickle(root / "splits" / "coco" / "trn" / "fold0.pkl")
    assert all(not train_pickle[c] for c in range(0, 80, 4))
    episodes = data.episodes("train")
    assert len(episodes) == len({name for names in train_pickle.values() for name in names})
    torch.manual_seed(0)
    drawn = [episodes[0] for _ in range(30)]
    torch.manual_seed(0)
    assert drawn == [episodes[7] for _ in range(30)]  # the draw, not the index, picks the episode
    assert len({episode.label for episode in drawn}) > 10
    for episode in drawn:
        class_id = episode.mask_value - 1
        assert data.classnames[episode.label] == COCO_20I_CLASSES[class_id] and class_id % 4 != 0
        assert episode.image.relative_to(root / "COCO2014").as_posix() in train_pickle[class_id]
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 32, 32)
    assert batch["labels"].shape == (2, 2) and batch["mask"].dtype == torch.long


def test_fss_uses_the_category_splits_and_tests_without_the_support_image(exported):
    data = FSS1000Segmentation(exported["root"], **SMALL)
    assert data.classnames == ["others", "red_circle", "red_square", "red_triangle"]
    assert data.evaluation_sets("validate")[0].classnames == ("others", "red_cross", "red_star")  # sorted
    assert data.evaluation_sets("test")[0].classnames == ("others", "red_diamond", "red_hexagon")  # "\r\n" ends
    test, val = data.episodes("test"), data.episodes("val")
    assert len(test) == 2 * 3 and "1.jpg" not in {episode.image.name for episode in test}
    assert len(val) == 2 * 4 and [episode.image.name for episode in val[:4]] == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    sample = data.test_dataloader().dataset[4]
    assert sample["labels"].tolist() == [0, 2] and test[4].image.parent.name == "red_hexagon"
    assert torch.equal(sample["mask"], torch.from_numpy(np.asarray(Image.open(test[4].mask)) >= 128).long())
    batch = next(iter(FSS1000Segmentation(exported["root"], **{**SMALL, "image_size": 24}).train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 24) and set(batch["mask"].unique().tolist()) <= {0, 1}


def test_mask_readers(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.array([[0, 127], [128, 255]], dtype=np.uint8), "L").convert("RGB").save(grey)
    assert read_fss_mask(grey).tolist() == [[0, 0], [1, 1]]  # converted to grey as the official code does
    coco = tmp_path / "coco.png"
    Image.fromarray(np.array([[0, 80], [255, 3]], dtype=np.uint8), "L").save(coco)
    assert COCO20iSegmentation.read_values(coco).tolist() == [[0, 80], [255, 3]]
    Image.fromarray(np.array([[81]], dtype=np.uint8), "L").save(coco)
    with pytest.raises(ValueError, match=r"mask values \[81\] are outside the label set"):
        COCO20iSegmentation.read_values(coco)


# -- clear errors --------------------------------------------------------------------------------


def test_missing_folders_split_files_and_images_name_the_path_and_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"VOC2012 not found; expected HSNet's PASCAL-5i layout"):
        Pascal5iSegmentation(tmp_path)
    exported = export_pascal5i(tmp_path, {"train": 2, "val": 2}, image_size=32)
    (tmp_path / "splits" / "pascal" / "val" / "fold0.txt").unlink()
    layout = r"(?s)split file .*fold0\.txt not found; expected HSNet's PASCAL-5i.*juhongm999/hsnet.*lang-seg"
    with pytest.raises(FileNotFoundError, match=layout):
        Pascal5iSegmentation(tmp_path, **SMALL).val_dataloader()
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "splits", moved)
    assert len(Pascal5iSegmentation(tmp_path, fold=1, splits=str(moved), **SMALL).episodes("val")) == 1000
    exported["train"][2][1][0].unlink()
    with pytest.raises(FileNotFoundError, match=r"trn2_000001\.jpg not found .*; expected HSNet's PASCAL-5i"):
        Pascal5iSegmentation(tmp_path, splits=str(moved), **SMALL).train_dataloader()
    export_fss1000(tmp_path, {"train": 1}, images_per_category=2, image_size=32)
    with pytest.raises(FileNotFoundError, match=r"fss/test\.txt not found; expected HSNet's FSS-1000 layout"):
        FSS1000Segmentation(tmp_path, **SMALL).test_dataloader()
    (tmp_path / "splits" / "fss").mkdir(parents=True, exist_ok=True)
    (tmp_path / "splits" / "fss" / "test.txt").write_text("no_such_category\n")
    with pytest.raises(FileNotFoundError, match=r"FSS-1000/no_such_category not found"):
        FSS1000Segmentation(tmp_path, **SMALL).test_dataloader()


def test_bad_split_lines_and_pickles_are_errors_naming_the_file(tmp_path):
    export_pascal5i(tmp_path, {"val": 2}, image_size=32)
    split_file = tmp_path / "splits" / "pascal" / "val" / "fold0.txt"
    split_file.write_text("val0_000000__01\nval0_000001__07\n")  # class 7 is of fold 1
    with pytest.raises(ValueError, match=rf"{split_file} line 2: 'val0_000001__07'; expected .* \(1 aeroplane, "):
        Pascal5iSegmentation(tmp_path, **SMALL).val_dataloader()

    class RunsCode:
        def __reduce__(self):
            return print, ("unpickling ran code",)

    export_coco20i(tmp_path, {"val": 1}, image_size=32)
    pickle_file = tmp_path / "splits" / "coco" / "val" / "fold0.pkl"
    pickle_file.write_bytes(pickle.dumps({0: [RunsCode()]}))
    with pytest.raises(ValueError, match=r"not a plain pickle .*refusing to load builtins\.print"):
        COCO20iSegmentation(tmp_path, **SMALL).val_dataloader()
    pickle_file.write_bytes(pickle.dumps([["val2014/COCO_val2014_000000000001.jpg"]]))
    with pytest.raises(ValueError, match=r"expected a dict of class id \(int\) -> list of image names"):
        load_split_pickle(pickle_file)
    pickle_file.write_bytes(pickle.dumps({0: ["val2014/COCO_val2014_000000000001.jpg"]}))
    with pytest.raises(ValueError, match=r"fold0\.pkl lists no image of class 4 aeroplane \(19 such classes\)"):
        COCO20iSegmentation(tmp_path, **SMALL).val_dataloader()


def test_bad_masks_size_mismatches_and_undecodable_images(tmp_path):
    exported = export_pascal5i(tmp_path, {"val": 3}, image_size=32)["val"][0]
    (_, bad_mask, _), (image, small_mask, _), (broken, _, _) = exported
    Image.fromarray(np.full((32, 32), 21, dtype=np.uint8), "L").save(bad_mask)
    Image.new("L", (16, 32)).save(small_mask)
    broken.write_bytes(broken.read_bytes()[:40])
    data = Pascal5iSegmentation(tmp_path, episodes=3, **SMALL)
    dataset = data.val_dataloader().dataset
    with pytest.raises(ValueError, match=rf"{bad_mask}: mask values \[21\] are outside the label set"):
        dataset[0]
    with pytest.raises(ValueError, match=rf"image {image} is 32x32 but its mask {small_mask} is 16x32"):
        dataset[1]
    assert dataset[2] == {"skipped_index": 2}
    with pytest.raises(ValueError, match="bad_samples"):
        Pascal5iSegmentation(tmp_path, bad_samples="ignore")
