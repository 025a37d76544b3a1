"""ShapesWorld questions: VQA on generated scenes, every answer exact.

Each sample is a scene and one question about it, of one of five types, in turn by index:

- ``color``: "what color is the star?", asked only of a shape the scene holds once;
- ``shape``: "what shape is the red object?", asked only of a colour the scene holds once;
- ``count``: "how many circles are there?" / "how many blue objects are there?", of a shape or colour in the scene
  or one that is not (answer "0");
- ``exist``: "is there a blue square?", yes or no equally often; a "no" names a colour and a shape that the scene
  holds, but not together, where it can (so the answer needs the binding of colour to shape);
- ``relation``: "what is to the left of the red circle?", asked only of an object the scene holds once, with
  exactly one object in that direction and every other one clearly in another (the captions' margin).

Answers are words of a fixed vocabulary (:func:`answer_vocabulary`): the colours, shapes, counts as digits (as VQA's
evaluation normalises them), yes / no, and colour-shape names for relations. A scene with no question of its
sample's type is drawn again, deterministically, so types stay balanced.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.questions import encode_question, score_vector, word_vocabulary
from lit_clip.datamodules.shapesworld.segmentation import held_out_compositions
from lit_clip.datamodules.shapesworld.world import COLORS, SHAPES, Scene, ShapesWorld, _article, _relation
from lit_clip.transforms import to_normalized_tensor

QUESTION_TYPES: tuple[str, ...] = ("color", "shape", "count", "exist", "relation")
RELATIONS: tuple[str, ...] = ("to the left of", "to the right of", "above", "below")
_REDRAWS = 64  # scenes tried for a question of the sample's type before giving up

_TEMPLATES = {
    "color": ("what color is the {shape}?", "what is the color of the {shape}?", "which color does the {shape} have?"),
    "shape": ("what shape is the {color} object?", "what is the shape of the {color} object?",
              "which shape is {color}?"),
    "count_shape": ("how many {shapes} are there?", "how many {shapes} are in the image?",
                    "what number of {shapes} is there?"),
    "count_color": ("how many {color} objects are there?", "how many {color} shapes are in the image?",
                    "what number of {color} objects is there?"),
    "exist": ("is there {a} {color} {shape}?", "is there {a} {color} {shape} in the image?",
              "does the image show {a} {color} {shape}?"),
    "relation": ("what is {relation} the {name}?", "which object is {relation} the {name}?",
                 "what is located {relation} the {name}?"),
}  # fmt: skip


def answer_vocabulary(max_objects: int) -> list[str]:
    """Every answer a question may have: colours, shapes, counts 0..max_objects, yes, no, colour-shape names."""
    counts = [str(n) for n in range(max_objects + 1)]
    return [*COLORS, *SHAPES, *counts, "yes", "no", *(f"{c} {s}" for c in COLORS for s in SHAPES)]


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    kind: str  # one of QUESTION_TYPES


def ask(scene: Scene, kind: str, rng: np.random.Generator, image_size: int) -> Question | None:
    """A question of type ``kind`` whose answer the scene fixes, or None where it has none."""
    if kind not in QUESTION_TYPES:
        raise ValueError(f"unknown question type {kind!r}; expected one of {list(QUESTION_TYPES)}")
    objects = scene.objects
    shapes = [obj.shape for obj in objects]
    colors = [obj.color for obj in objects]
    template = _TEMPLATES.get(kind)  # counting has two kinds of its own
    if kind == "color":
        unique = [shape for shape in SHAPES if shapes.count(shape) == 1]
        if not unique:
            return None
        shape = unique[rng.integers(len(unique))]
        return Question(_pick(rng, template).format(shape=shape), colors[shapes.index(shape)], kind)
    if kind == "shape":
        unique = [color for color in COLORS if colors.count(color) == 1]
        if not unique:
            return None
        color = unique[rng.integers(len(unique))]
        return Question(_pick(rng, template).format(color=color), shapes[colors.index(color)], kind)
    if kind == "count":
        by_shape = rng.random() < 0.5
        words, present = (SHAPES, shapes) if by_shape else (COLORS, colors)
        # A count drawn uniformly from those the scene offers (0 among them), then a word with that count: the
        # answers are not nearly all "1".
        by_count: dict[int, list[str]] = {}
        for word in words:
            by_count.setdefault(present.count(word), []).append(word)
        count = sorted(by_count)[rng.integers(len(by_count))]
        word = by_count[count][rng.integers(len(by_count[count]))]
        template = _TEMPLATES["count_shape" if by_shape else "count_color"]
        fill = {"shapes": _plural(word)} if by_shape else {"color": word}
        return Question(_pick(rng, template).format(**fill), str(count), kind)
    if kind == "exist":
        pairs = {(obj.color, obj.shape) for obj in objects}
        if rng.random() < 0.5:
            color, shape = sorted(pairs)[rng.integers(len(pairs))]
            return Question(_pick(rng, template).format(a=_article(color), color=color, shape=shape), "yes", kind)
        swapped = sorted({(c, s) for c in colors for s in shapes} - pairs)
        candidates = swapped or sorted({(c, s) for c in COLORS for s in SHAPES} - pairs)
        color, shape = candidates[rng.integers(len(candidates))]
        return Question(_pick(rng, template).format(a=_article(color), color=color, shape=shape), "no", kind)
    names = [obj.name for obj in objects]  # a relation question
    options = []
    for anchor in objects:
        if names.count(anchor.name) != 1:
            continue
        others = [obj for obj in objects if obj is not anchor]
        where = [_relation(obj, anchor, image_size) for obj in others]
        if None in where:  # an object too close to call: no relation question about this anchor
            continue
        options += [(relation, anchor, others[where.index(relation)]) for relation in RELATIONS
                    if where.count(relation) == 1]  # fmt: skip
    if not options:
        return None
    relation, anchor, answer = options[rng.integers(len(options))]
    return Question(_pick(rng, template).format(relation=relation, name=anchor.name), answer.name, kind)


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def _pick(rng: np.random.Generator, templates: tuple[str, ...]) -> str:
    return templates[rng.integers(len(templates))]


def scene_and_question(
    world: ShapesWorld, split: str, index: int, allowed: list[str] | None = None
) -> tuple[Scene, Question]:
    """Sample ``index`` of a split: its type is ``QUESTION_TYPES[index % 5]``; a function of (seed, split, index)."""
    kind = QUESTION_TYPES[index % len(QUESTION_TYPES)]
    rng = np.random.default_rng([world.seed, ShapesWorld.SPLITS.index(split), index, len(QUESTION_TYPES)])
    for attempt in range(_REDRAWS):
        scene = world.scene(split, index * _REDRAWS + attempt, allowed)
        question = ask(scene, kind, rng, world.image_size)
        if question is not None:
            return scene, question
    raise RuntimeError(f"no {kind} question in {_REDRAWS} scenes of {split!r} for sample {index}; more max_objects?")


def question_vocabulary() -> list[str]:
    """Every word a ShapesWorld question may hold (the templates with every colour, shape and relation)."""
    names = [f"{c} {s}" for c in COLORS for s in SHAPES]
    fills = {"shape": SHAPES, "shapes": [_plural(s) for s in SHAPES], "color": COLORS, "relation": RELATIONS,
             "name": names, "a": ("a", "an")}  # fmt: skip
    texts = []
    for templates in _TEMPLATES.values():
        for template in templates:
            keys = [key for key in fills if "{" + key + "}" in template]
            texts += [template.format(**dict(zip(keys, values))) for values in product(*(fills[k] for k in keys))]
    return word_vocabulary(texts)


class ShapesQuestionDataset(Dataset):
    """:class:`~lit_clip.batches.QuestionsBatch` samples of a split (``allowed``: draw the scenes' objects from
    these colour-shape names only, the held-out ones for the unseen test)."""

    def __init__(self, world: ShapesWorld, split: str, length: int, words: dict[str, int], answers: dict[str, int],
                 max_tokens: int, allowed: list[str] | None = None):  # fmt: skip
        self.world, self.split, self.length, self.allowed = world, split, length, allowed
        self.words, self.answers, self.max_tokens = words, answers, max_tokens

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        scene, question = scene_and_question(self.world, self.split, index, self.allowed)
        human_answers = [question.answer] * 10  # ten annotators who all see the truth
        return {
            "image": to_normalized_tensor(scene.image),
            "question": encode_question(question.text, self.words, self.max_tokens),
            "answer_scores": score_vector(human_answers, self.answers),
            "question_type": QUESTION_TYPES.index(question.kind),
            "question_text": question.text,
            "answers_text": question.answer,
            "index": index,
        }


class ShapesWorldQuestions(L.LightningDataModule):
    """Questions about ShapesWorld scenes (VQA), with exact answers; the test has a second set whose scenes hold
    only held-out colour-shape compositions (never in a training scene), when there are any."""

    question_types = QUESTION_TYPES

    def __init__(
        self,
        image_size: int = 64,
        min_objects: int = 2,
        max_objects: int = 4,
        held_out: int | list[str] = 0,
        seed: int = 0,
        train_samples: int = 20_000,
        val_samples: int = 500,
        test_samples: int = 1000,
        max_tokens: int = 14,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        """
        Args:
            image_size: side of the square images in pixels.
            min_objects, max_objects: objects per scene (relations need two).
            held_out: colour-shape compositions no training scene holds: names, or a number of them chosen along
                the diagonals (see :func:`~lit_clip.datamodules.shapesworld.segmentation.held_out_compositions`).
            seed: the world's seed; sample ``i`` of a split is the same for a given seed.
            train_samples, val_samples, test_samples: questions per training epoch, validation, each test set.
            max_tokens: words a question is cut to (MCAN: 14).
            batch_size, num_workers: DataLoader settings.
        """
        super().__init__()
        self.save_hyperparameters()
        self.held_out = held_out_compositions(held_out)
        self.world = ShapesWorld(image_size, min_objects, max_objects, seed, self.held_out)
        self.words = question_vocabulary()
        self.answers = answer_vocabulary(max_objects)

    def _dataset(self, split: str, length: int, allowed: list[str] | None = None) -> ShapesQuestionDataset:
        words = {word: k for k, word in enumerate(self.words)}
        answers = {answer: k for k, answer in enumerate(self.answers)}
        return ShapesQuestionDataset(self.world, split, length, words, answers, self.hparams.max_tokens, allowed)

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        return stateful_loader(dataset, self.hparams.batch_size, self.hparams.num_workers, shuffle)

    @property
    def evaluation_names(self) -> list[str]:
        """The test loaders' metric prefixes: "" (seen compositions) and "unseen/" where compositions are held out."""
        return ["", "unseen/"] if self.held_out else [""]

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        require_one_batch(h.train_samples, h.batch_size, self.trainer, "training samples (train_samples)")
        return self._loader(self._dataset("train", h.train_samples), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val", self.hparams.val_samples))

    def test_dataloader(self) -> list[DataLoader]:
        loaders = [self._loader(self._dataset("test", self.hparams.test_samples))]
        if self.held_out:
            loaders.append(self._loader(self._dataset("test", self.hparams.test_samples, self.held_out)))
        return loaders
