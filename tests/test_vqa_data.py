"""VQA v2 read from its official files (written by export_vqa_v2): vocabularies as MCAN builds them, soft scores
from the ten human answers, answer types, and bad input named."""
import json

import pytest
import torch

from lit_clip.datamodules.export import export_vqa_v2
from lit_clip.datamodules.vqa import VQAv2, read_vqa


@pytest.fixture(scope="module")
def vqa_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqa")
    export_vqa_v2(root, {"train2014": 10, "val2014": 6}, image_size=32, questions_per_image=3)
    return root


def test_vocabularies_and_soft_scores(vqa_root):
    data = VQAv2(str(vqa_root), min_answer_count=1, image_size=32, batch_size=4, num_workers=0)
    data.setup("fit")
    annotations = json.loads((vqa_root / "v2_mscoco_train2014_annotations.json").read_text())["annotations"]
    chosen = {a["multiple_choice_answer"] for a in annotations}
    assert chosen <= set(data.answers)  # every multiple-choice answer given once or more
    assert "none" not in data.answers  # the distractors are never anyone's most frequent answer
    assert data.words[:2] == ["<pad>", "<unk>"]
    batch = next(iter(data.val_dataloader()))
    first = read_vqa(vqa_root, "val2014")[0]
    truth = data.answers.index(first.chosen_answer)
    # Eight of ten annotators said the truth: accuracy 1; spelt "Yes" or "two" it is normalised first.
    assert batch["answer_scores"][0, truth] == 1
    assert batch["question_text"][0] == first.question
    assert batch["question_type"].tolist() == [q.answer_type for q in read_vqa(vqa_root, "val2014")[:4]]


def test_min_answer_count_keeps_the_frequent_answers(vqa_root):
    data = VQAv2(str(vqa_root), min_answer_count=5, image_size=32, num_workers=0)
    data.prepare_vocabularies()
    assert set(data.answers) <= {"yes", "no", "0", "1", "2", "3", "4"}  # only counts and yes / no repeat that often
    with pytest.raises(ValueError, match="min_answer_count"):
        VQAv2(str(vqa_root), min_answer_count=1000, num_workers=0).prepare_vocabularies()


def test_missing_files_and_unreadable_images_are_named(vqa_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="v2_OpenEnded_mscoco_train2014_questions.json"):
        VQAv2(str(tmp_path), num_workers=0).prepare_vocabularies()
    broken = tmp_path / "broken"
    export_vqa_v2(broken, {"train2014": 4, "val2014": 2}, image_size=32, questions_per_image=1)
    (broken / "val2014" / "COCO_val2014_000000000001.jpg").write_bytes(b"not a jpeg")
    data = VQAv2(str(broken), min_answer_count=1, image_size=32, batch_size=2, num_workers=0)
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    assert batch["skipped_index"].tolist() == [0] and len(batch["index"]) == 1
    strict = VQAv2(str(broken), min_answer_count=1, image_size=32, batch_size=2, num_workers=0, bad_samples="raise")
    strict.setup("validate")
    with pytest.raises(Exception, match="COCO_val2014_000000000001.jpg"):
        next(iter(strict.val_dataloader()))


def test_forced_resize_as_clip_vil(vqa_root):
    data = VQAv2(str(vqa_root), min_answer_count=1, image_size=[24, 40], batch_size=2, num_workers=0)
    data.setup("validate")
    assert next(iter(data.val_dataloader()))["image"].shape == torch.Size([2, 3, 24, 40])
