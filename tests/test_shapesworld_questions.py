"""ShapesWorld questions: every answer is true of its scene, checked from the scene's objects with rules written
independently of the generator; types are balanced; the held-out compositions stay out of training."""
import re
from collections import Counter

import numpy as np
import pytest
import torch

from lit_clip.datamodules.questions import encode_question, question_words
from lit_clip.datamodules.shapesworld.questions import (
    QUESTION_TYPES,
    ShapesWorldQuestions,
    answer_vocabulary,
    ask,
    question_vocabulary,
    scene_and_question,
)
from lit_clip.datamodules.shapesworld.world import COLORS, SHAPES, ShapesWorld

MARGIN = 0.15  # the captions' margin for a relation, as a fraction of the image


def direction(obj, anchor, size):
    """Where obj is from anchor, if clearly so (None if not), by the captions' rule."""
    dx, dy = obj.center[0] - anchor.center[0], obj.center[1] - anchor.center[1]
    if abs(dx) >= abs(dy) and abs(dx) > MARGIN * size:
        return "to the left of" if dx < 0 else "to the right of"
    if abs(dy) > abs(dx) and abs(dy) > MARGIN * size:
        return "above" if dy < 0 else "below"
    return None


def true_answer(scene, text, size):
    """The answer the question's words and the scene's objects fix, or an assertion error if they fix none."""
    objects = scene.objects
    words = question_words(text)
    named_colors = [w for w in words if w in COLORS]
    singular = {**{shape: shape for shape in SHAPES}, **{shape + "s": shape for shape in SHAPES}, "crosses": "cross"}
    named_shapes = [singular[w] for w in words if w in singular]
    if text.startswith(("how many", "what number")):
        if named_shapes:
            return str(sum(o.shape == named_shapes[0] for o in objects))
        return str(sum(o.color == named_colors[0] for o in objects))
    if text.startswith(("is there", "does the image")):
        return "yes" if any((o.color, o.shape) == (named_colors[0], named_shapes[0]) for o in objects) else "no"
    relation = re.search(r"(to the left of|to the right of|above|below) the (\w+) (\w+)", text)
    if relation:
        where, color, shape = relation.groups()
        (anchor,) = [o for o in objects if (o.color, o.shape) == (color, shape)]
        others = [o for o in objects if o is not anchor]
        assert all(direction(o, anchor, size) is not None for o in others), "an object too close to call"
        (answer,) = [o for o in others if direction(o, anchor, size) == where]
        return answer.name
    if "color" in words or "colour" in words:
        (obj,) = [o for o in objects if o.shape == named_shapes[0]]
        return obj.color
    (obj,) = [o for o in objects if o.color == named_colors[0]]
    return obj.shape


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_answer_is_true_of_its_scene(split):
    world = ShapesWorld(64, 2, 4, seed=3)
    kinds = Counter()
    for index in range(400):
        scene, question = scene_and_question(world, split, index)
        assert question.answer == true_answer(scene, question.text, 64), (index, question)
        kinds[question.kind] += 1
    assert kinds == {kind: 80 for kind in QUESTION_TYPES}


def test_answers_are_spread():
    world = ShapesWorld(64, 2, 4, seed=0)
    counts = Counter(scene_and_question(world, "train", i)[1].answer for i in range(2, 1000, 5))
    assert set(counts) == {"0", "1", "2", "3"} and counts["2"] > 10
    exist = Counter(scene_and_question(world, "train", i)[1].answer for i in range(3, 1000, 5))
    assert abs(exist["yes"] - exist["no"]) < 40


def test_samples_are_deterministic_and_the_vocabularies_cover_them():
    data = ShapesWorldQuestions(min_objects=2, max_objects=4, held_out=8, train_samples=32, batch_size=8)
    words, answers = set(question_vocabulary()), set(answer_vocabulary(4))
    train = data._dataset("train", 100)
    for index in range(100):
        sample = train[index]
        assert set(question_words(sample["question_text"])) <= words
        assert sample["answers_text"] in answers
        assert sample["answer_scores"].max() == 1 and sample["answer_scores"].sum() == 1
        assert data.answers[int(sample["answer_scores"].argmax())] == sample["answers_text"]
    again = data._dataset("train", 100)[7]
    assert torch.equal(again["image"], train[7]["image"]) and again["question_text"] == train[7]["question_text"]


def test_held_out_compositions_stay_out_of_training_and_make_the_unseen_test():
    data = ShapesWorldQuestions(min_objects=2, max_objects=4, held_out=8, test_samples=40, batch_size=8)
    held_out = set(data.held_out)
    assert len(held_out) == 8
    for index in range(200):
        scene, _ = scene_and_question(data.world, "train", index)
        assert not {o.name for o in scene.objects} & held_out
    for index in range(40):
        scene, _ = scene_and_question(data.world, "test", index, data.held_out)
        assert {o.name for o in scene.objects} <= held_out
    assert data.evaluation_names == ["", "unseen/"]


def test_an_unknown_question_type_is_named():
    scene = ShapesWorld(64, 2, 4, seed=0).scene("train", 0)
    with pytest.raises(ValueError, match="unknown question type 'size'"):
        ask(scene, "size", np.random.default_rng(0), 64)


def test_encoding_pads_cuts_and_marks_unknown_words():
    vocabulary = {"<pad>": 0, "<unk>": 1, "what": 2, "color": 3}
    assert encode_question("What color?", vocabulary, 4).tolist() == [2, 3, 0, 0]
    assert encode_question("what colour is it", vocabulary, 3).tolist() == [2, 1, 1]
    assert question_words("Is the man's T-shirt red/blue?") == ["is", "the", "mans", "t", "shirt", "red", "blue"]
