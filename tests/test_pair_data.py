"""Image-caption data modules (COCO Captions, Flickr30k, CSV) and CLIP's training preprocessing.

The data modules read ShapesWorld scenes exported in the real layouts, so the real parsers
run end to end on a few tiny images.
"""
import json

import pytest
import torch
from lit_clip.datamodules import CocoCaptions, CsvPairs, Flickr30k
from lit_clip.datamodules.export import export_coco_captions, export_csv_pairs, export_flickr_karpathy
from lit_clip.datamodules.images import BadSampleError
from PIL import Image

from lit_clip.metrics import retrieval_recall
from lit_clip.tokenizer import tokenize
from lit_clip.transforms import CLIP_MEAN, CLIP_STD, clip_train_transform

SIZE, CONTEXT = 32, 32
SMALL = dict(image_size=SIZE, context_length=CONTEXT, batch_size=4, num_workers=0)


def check_train_batch(batch, pairs):
    """The ShapesWorldCaptions format, each caption one of its image's."""
    n = len(batch["caption"])
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (n, 3, SIZE, SIZE)
    assert batch["text"].dtype == torch.long and batch["text"].shape == (n, CONTEXT)
    assert batch["index"].dtype == torch.long and batch["skipped_index"].dtype == torch.long
    assert batch["skipped_index"].tolist() == []
    for index, caption, text in zip(batch["index"].tolist(), batch["caption"], batch["text"]):
        assert caption in pairs[index][1]
        assert torch.equal(text, tokenize(caption, CONTEXT)[0])


def check_retrieval_batch(batch, pairs, first_image, captions_per_image):
    """All captions of images ``first_image, first_image + 1, ...``, numbered over the split."""
    n = batch["image"].shape[0]
    assert batch["image"].shape == (n, 3, SIZE, SIZE)
    assert batch["index"].tolist() == list(range(first_image, first_image + n))
    assert batch["text"].shape == (captions_per_image * n, CONTEXT)
    assert batch["text_image_index"].tolist() == batch["index"].repeat_interleave(captions_per_image).tolist()
    first_caption = first_image * captions_per_image
    assert batch["text_index"].tolist() == list(range(first_caption, first_caption + captions_per_image * n))
    assert batch["caption"] == [c for i in batch["index"].tolist() for c in pairs[i][1]]
    assert torch.equal(batch["text"], tokenize(batch["caption"], CONTEXT))
    assert batch["skipped_index"].tolist() == []


# -- training preprocessing ---------------------------------------------------------------------


def test_clip_train_transform_crops_resizes_and_normalizes():
    white = clip_train_transform(SIZE)(Image.new("L", (50, 40), 255))
    expected = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert white.shape == (3, SIZE, SIZE)
    assert torch.allclose(white, expected.view(3, 1, 1).expand_as(white), atol=1e-5)


def test_clip_train_transform_equals_open_clip():
    open_clip = pytest.importorskip("open_clip")
    image = Image.effect_noise((60, 45), 64).convert("P")  # a palette image: converted after the crop, as there
    ours = []
    for seed in range(3):
        torch.manual_seed(seed)
        ours.append(clip_train_transform(SIZE)(image))
        torch.manual_seed(seed)
        assert torch.equal(ours[-1], open_clip.image_transform(SIZE, is_train=True)(image))
    assert not torch.equal(ours[0], ours[1])  # the crop is random


# -- COCO Captions ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return root, export_coco_captions(root, {"train": 6, "val": 5}, image_size=SIZE, captions_per_image=2)


def test_coco_reads_the_exported_files(coco):
    root, exported = coco
    data = CocoCaptions(str(root), **SMALL)
    data.setup("fit")
    assert data.pairs("train") == exported["train"] and data.pairs("val") == exported["val"]
    assert data.classnames is None
    batch = next(iter(data.train_dataloader()))
    assert len(batch["caption"]) == 4
    check_train_batch(batch, exported["train"])
    first, second = list(data.val_dataloader())  # 5 images in batches of 4
    check_retrieval_batch(first, exported["val"], 0, 2)
    check_retrieval_batch(second, exported["val"], 4, 2)
    # COCO 2017's test captions are not public: testing ranks the val split.
    check_retrieval_batch(next(iter(data.test_dataloader())), exported["val"], 0, 2)


def test_coco_errors_name_the_missing_file_folder_or_key(coco, tmp_path):
    root, _ = coco
    with pytest.raises(FileNotFoundError, match="captions_val2014.json"):
        CocoCaptions(str(root), val_annotations="annotations/captions_val2014.json", **SMALL).setup("fit")
    with pytest.raises(FileNotFoundError, match="val2014"):
        CocoCaptions(str(root), val_images="val2014", **SMALL).setup("validate")
    content = json.loads((root / "annotations" / "captions_val2017.json").read_text())
    del content["annotations"]
    broken = tmp_path / "captions_broken.json"
    broken.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"captions_broken\.json has no 'annotations' key"):
        CocoCaptions(str(root), val_annotations=str(broken), **SMALL).setup("validate")
    # An instances file instead of a captions file: annotations without captions.
    instances = tmp_path / "instances_val2017.json"
    instances.write_text(json.dumps({"images": content["images"], "annotations": [{"id": 1, "image_id": 1}]}))
    with pytest.raises(ValueError, match=r"instances_val2017\.json: an entry has no 'caption' key"):
        CocoCaptions(str(root), val_annotations=str(instances), **SMALL).setup("validate")


# -- Flickr30k ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flickr(tmp_path_factory):
    root = tmp_path_factory.mktemp("flickr")
    per_split = {"train": 3, "restval": 2, "val": 3, "test": 2}
    return root, export_flickr_karpathy(root, per_split, image_size=SIZE, captions_per_image=5)


def test_flickr_reads_karpathy_splits_with_restval_in_train(flickr):
    root, exported = flickr
    data = Flickr30k(str(root), **SMALL)
    data.setup("fit")
    assert data.pairs("train") == exported["train"] + exported["restval"]
    assert data.pairs("test") == exported["test"]
    check_train_batch(next(iter(data.train_dataloader())), data.pairs("train"))
    check_retrieval_batch(next(iter(data.val_dataloader())), exported["val"], 0, 5)
    check_retrieval_batch(next(iter(data.test_dataloader())), exported["test"], 0, 5)


def test_training_draws_every_caption_of_an_image(flickr):
    root, exported = flickr
    dataset = Flickr30k(str(root), **SMALL).train_dataloader().dataset
    torch.manual_seed(0)
    drawn = {dataset[1]["caption"] for _ in range(40)}
    assert drawn == set(exported["train"][1][1]) and len(drawn) == 5


def test_flickr_errors_name_the_missing_file_or_folder(flickr, tmp_path):
    root, _ = flickr
    with pytest.raises(FileNotFoundError, match="dataset_flickr8k.json"):
        Flickr30k(str(root), karpathy_json="dataset_flickr8k.json", **SMALL).setup("fit")
    with pytest.raises(FileNotFoundError, match="flickr8k-images"):
        Flickr30k(str(root), images_dir="flickr8k-images", **SMALL).setup("test")
    (tmp_path / "dataset.json").write_text(json.dumps({"dataset": "flickr30k"}))
    with pytest.raises(ValueError, match=r"dataset\.json has no 'images' key"):
        Flickr30k(str(root), karpathy_json=str(tmp_path / "dataset.json"), **SMALL).setup("fit")


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_with_open_clip_defaults(tmp_path):
    exported = export_csv_pairs(tmp_path, {"train": 5}, image_size=SIZE)
    assert (tmp_path / "train.csv").read_text().startswith("filepath\ttitle\nimages/train/00000.jpg\t")
    data = CsvPairs(str(tmp_path / "train.csv"), **SMALL)
    data.setup("fit")
    assert data.pairs("train") == exported["train"]
    assert data.val_dataloader() == []  # no val_file: fit without validation
    check_train_batch(next(iter(data.train_dataloader())), exported["train"])
    with pytest.raises(ValueError, match="give test_file"):
        data.test_dataloader()


def test_csv_with_custom_columns_and_separator_groups_captions_for_retrieval(tmp_path):
    columns = dict(image_key="image", caption_key="sentence", separator=",")
    exported = export_csv_pairs(tmp_path, {"train": 3, "val": 3}, image_size=SIZE, captions_per_image=2, **columns)
    data = CsvPairs(str(tmp_path / "train.csv"), val_file=str(tmp_path / "val.csv"), **columns, **SMALL)
    data.setup("fit")
    # Training: one pair per row; an image with two captions is on two rows.
    assert data.pairs("train") == [(path, [c]) for path, captions in exported["train"] for c in captions]
    check_train_batch(next(iter(data.train_dataloader())), data.pairs("train"))
    assert data.pairs("val") == exported["val"]
    check_retrieval_batch(next(iter(data.val_dataloader())), exported["val"], 0, 2)


def test_csv_errors_name_the_missing_file_or_column(tmp_path):
    export_csv_pairs(tmp_path, {"train": 2}, image_size=SIZE)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        CsvPairs(str(tmp_path / "missing.csv"), **SMALL).setup("fit")
    with pytest.raises(ValueError, match=r"train\.csv has no column 'caption'.*\['filepath', 'title'\]"):
        CsvPairs(str(tmp_path / "train.csv"), caption_key="caption", **SMALL).setup("fit")


# -- unreadable images and retrieval ------------------------------------------------------------


def test_unreadable_images_are_left_out_and_counted_or_raised(tmp_path):
    exported = export_coco_captions(tmp_path, {"train": 4, "val": 4}, image_size=SIZE, captions_per_image=2)
    for split in ("train", "val"):
        exported[split][1][0].write_bytes(b"not a jpeg")
    data = CocoCaptions(str(tmp_path), **SMALL)
    train = next(iter(data.train_dataloader()))
    # Left out, not replaced by a good sample read twice: the batch is one smaller.
    assert sorted(train["index"].tolist()) == [0, 2, 3] and train["skipped_index"].tolist() == [1]
    # Retrieval leaves the image and its captions out.
    val = next(iter(data.val_dataloader()))
    assert val["index"].tolist() == [0, 2, 3] and val["text_image_index"].tolist() == [0, 0, 2, 2, 3, 3]
    assert val["text_index"].tolist() == [0, 1, 4, 5, 6, 7] and val["skipped_index"].tolist() == [1]
    assert val["caption"] == [c for i in (0, 2, 3) for c in exported["val"][i][1]]
    with pytest.raises(BadSampleError, match=exported["val"][1][0].name):
        list(CocoCaptions(str(tmp_path), bad_samples="raise", **SMALL).val_dataloader())


def test_retrieval_recall_on_a_validation_batch(coco):
    root, _ = coco
    batch = next(iter(CocoCaptions(str(root), **SMALL).val_dataloader()))
    # retrieval_recall wants each caption's image as a row of this batch's images.
    caption_image = (batch["text_image_index"][:, None] == batch["index"][None, :]).int().argmax(dim=1)
    images = torch.eye(len(batch["index"]))
    recall = retrieval_recall(images, images[caption_image], caption_image)
    assert all(value == 1 for value in recall.values())
    # Each caption pointing at the next image: every R@1 is 0.
    shifted = (caption_image + 1) % len(batch["index"])
    recall = retrieval_recall(images, images[shifted], caption_image, ks=(1,))
    assert recall["i2t_R@1"] == 0 and recall["t2i_R@1"] == 0
