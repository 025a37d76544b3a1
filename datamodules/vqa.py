"""VQA v2 (Goyal et al., 2017) from its official files: questions, annotations (ten human answers each) and COCO's
image folders.

    <root>/v2_OpenEnded_mscoco_train2014_questions.json   {"questions": [{"question_id", "image_id", "question"}]}
    <root>/v2_mscoco_train2014_annotations.json           {"annotations": [{"question_id", "answer_type",
                                                             "multiple_choice_answer", "answers": [{"answer"}] x 10}]}
    <root>/train2014/COCO_train2014_000000000009.jpg      (and the same for val2014)

The answer vocabulary is MCAN's: the normalised ``multiple_choice_answer`` of the training (by default train + val)
annotations given at least ``min_answer_count`` times (9: 3129 answers). The word vocabulary is every word of the
questions read. A question's target is each answer's official VQA accuracy against its ten human answers
(:func:`~lit_clip.metrics.vqa.answer_scores`), and validation reports the official accuracy, overall and per answer
type (yes/no, number, other): answers outside the vocabulary can never be predicted and count as wrong, as in the
official evaluation.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, Dataset

from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import (
    BadSampleError,
    BadSamplePolicy,
    RobustSamples,
    check_policy,
    load_rgb,
    without_bad_samples,
)
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.pairs import _read_json, _require_dir
from lit_clip.datamodules.questions import encode_question, frequent_answers, score_vector, word_vocabulary
from lit_clip.metrics.vqa import normalize_answer
from lit_clip.transforms import clip_eval_transform

ANSWER_TYPES = ("yes/no", "number", "other")
LAYOUT = (
    'expected VQA v2\'s files: v2_OpenEnded_mscoco_<split>_questions.json {"questions": [{"question_id", "image_id", '
    '"question"}]} and v2_mscoco_<split>_annotations.json {"annotations": [{"question_id", "answer_type", '
    '"multiple_choice_answer", "answers": [{"answer"}]}]}'
)


@dataclass(frozen=True)
class VQAQuestion:
    image: Path
    question: str
    answers: tuple[str, ...]  # the human answers, as given
    chosen_answer: str  # multiple_choice_answer: the annotators' most frequent answer
    answer_type: int  # index into ANSWER_TYPES
    question_id: int


def read_vqa(root: Path, split: str) -> list[VQAQuestion]:
    """The questions of one VQA v2 split (e.g. "val2014") with their annotations, in question id order."""
    questions = _read_json(root / f"v2_OpenEnded_mscoco_{split}_questions.json", ("questions",), LAYOUT)["questions"]
    annotations_path = root / f"v2_mscoco_{split}_annotations.json"
    annotations = {a["question_id"]: a for a in _read_json(annotations_path, ("annotations",), LAYOUT)["annotations"]}
    images = root / split
    _require_dir(images, f"the images of {split}")
    read = []
    for entry in sorted(questions, key=lambda q: q["question_id"]):
        annotation = annotations.get(entry["question_id"])
        if annotation is None:
            raise ValueError(f"{annotations_path} has no annotation of question {entry['question_id']}; {LAYOUT}")
        if annotation["answer_type"] not in ANSWER_TYPES:
            raise ValueError(f"{annotations_path}: question {entry['question_id']} has answer_type "
                             f"{annotation['answer_type']!r}; expected one of {list(ANSWER_TYPES)}")  # fmt: skip
        read.append(VQAQuestion(
            image=images / f"COCO_{split}_{entry['image_id']:012d}.jpg",
            question=entry["question"],
            answers=tuple(answer["answer"] for answer in annotation["answers"]),
            chosen_answer=annotation["multiple_choice_answer"],
            answer_type=ANSWER_TYPES.index(annotation["answer_type"]),
            question_id=entry["question_id"],
        ))  # fmt: skip
    return read


class VQADataset(Dataset):
    """:class:`~lit_clip.batches.QuestionsBatch` samples; an unreadable image raises :class:`BadSampleError`."""

    def __init__(self, questions: Sequence[VQAQuestion], words: dict[str, int], answers: dict[str, int],
                 max_tokens: int, transform):  # fmt: skip
        self.questions, self.words, self.answers = questions, words, answers
        self.max_tokens, self.transform = max_tokens, transform

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> dict:
        item = self.questions[index]
        try:
            image = load_rgb(item.image)
        except BadSampleError as error:
            raise BadSampleError(f"question {item.question_id}: {error}") from error
        return {
            "image": self.transform(image),
            "question": encode_question(item.question, self.words, self.max_tokens),
            "answer_scores": score_vector(item.answers, self.answers),
            "question_type": item.answer_type,
            "question_text": item.question,
            "answers_text": "|".join(item.answers),
            "index": index,
        }


class VQAv2(L.LightningDataModule):
    """VQA v2 for training and evaluation with the official accuracy per answer type."""

    question_types = ("yes_no", "number", "other")  # ANSWER_TYPES as metric names

    def __init__(
        self,
        root: str,
        train_splits: Sequence[str] = ("train2014",),
        val_split: str = "val2014",
        answer_splits: Sequence[str] = ("train2014", "val2014"),
        min_answer_count: int = 9,
        image_size: int | list[int] = 224,
        max_tokens: int = 14,
        batch_size: int = 64,
        num_workers: int = 8,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the folder of the question and annotation files and the image folders (``train2014``, ...).
            train_splits: the splits trained on (MCAN: train2014 + val2014 for test-dev; train2014 to report val).
            val_split: the split validated (and tested) on.
            answer_splits: the splits whose ``multiple_choice_answer`` make the answer vocabulary (MCAN: train + val).
            min_answer_count: how often an answer must be given to enter the vocabulary (MCAN: 9, 3129 answers).
            image_size: a side: CLIP's resize of the short side and centre crop; ``[height, width]``: resized to
                exactly that, as CLIP-ViL's grid features (600 x 1000). CLIP's mean and std.
            max_tokens: words a question is cut to (MCAN: 14).
            batch_size, num_workers: DataLoader settings.
            bad_samples: "skip" an unreadable image (left out of its batch) or "raise" an error naming it.
        """
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)
        self.root = Path(root)
        self._splits: dict[str, list[VQAQuestion]] = {}
        self.words: list[str] = []
        self.answers: list[str] = []

    def _split(self, split: str) -> list[VQAQuestion]:
        if split not in self._splits:
            self._splits[split] = read_vqa(self.root, split)
        return self._splits[split]

    def prepare_vocabularies(self) -> None:
        """The word and answer vocabularies, from the question files (read once)."""
        if self.answers:
            return
        h = self.hparams
        read = {split: self._split(split) for split in dict.fromkeys([*h.train_splits, h.val_split, *h.answer_splits])}
        self.words = word_vocabulary(q.question for questions in read.values() for q in questions)
        chosen = [normalize_answer(q.chosen_answer) for split in h.answer_splits for q in read[split]]
        self.answers = frequent_answers(chosen, h.min_answer_count)
        if not self.answers:
            raise ValueError(f"no answer is given {h.min_answer_count} times in {list(h.answer_splits)}; "
                             "lower min_answer_count")  # fmt: skip

    def setup(self, stage: str) -> None:
        self.prepare_vocabularies()

    def _loader(self, questions: Sequence[VQAQuestion], training: bool) -> DataLoader:
        h = self.hparams
        size = h.image_size if isinstance(h.image_size, int) else tuple(h.image_size)
        words, answers = {w: k for k, w in enumerate(self.words)}, {a: k for k, a in enumerate(self.answers)}
        dataset = VQADataset(questions, words, answers, h.max_tokens, clip_eval_transform(size))
        collate = without_bad_samples(training=training)
        return stateful_loader(RobustSamples(dataset, h.bad_samples), h.batch_size, h.num_workers, training, collate)

    def train_dataloader(self) -> DataLoader:
        questions = [q for split in self.hparams.train_splits for q in self._split(split)]
        require_one_batch(len(questions), self.hparams.batch_size, self.trainer, "training questions")
        return self._loader(questions, training=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._split(self.hparams.val_split), training=False)

    test_dataloader = val_dataloader

