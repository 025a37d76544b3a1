"""VQA accuracy: the official normalisation and the leave-one-annotator-out mean, on answer sets worked by hand."""
import itertools

import pytest
import torch

from lit_clip.metrics.vqa import VQAAccuracy, answer_scores, clean_punctuation, normalize_answer, vqa_accuracy


def leave_one_out(prediction: str, answers: list[str]) -> float:
    """The official loop, written out: each annotator left out in turn, min(1, matches among the rest / 3)."""
    return sum(min(1.0, sum(a == prediction for a in answers[:k] + answers[k + 1 :]) / 3) for k in range(10)) / 10


@pytest.mark.parametrize("matches, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_accuracy_by_the_number_of_matching_annotators(matches, expected):
    answers = ["2"] * matches + ["3"] * (10 - matches)
    assert vqa_accuracy("2", answers) == pytest.approx(expected)
    assert vqa_accuracy("2", answers) == pytest.approx(leave_one_out("2", answers))


def test_predictions_are_normalised_before_matching():
    answers = ["2", "2", "2", "3", "3", "3", "3", "4", "4", "4"]
    assert vqa_accuracy("Two.", answers) == pytest.approx(0.9)  # "Two." -> "two" -> "2"
    assert vqa_accuracy("the 2", answers) == pytest.approx(0.9)  # articles dropped
    assert vqa_accuracy("5", answers) == 0.0
    assert normalize_answer("Whats  that?") == "what's that"
    assert normalize_answer("  a dog!\n") == "dog"


def test_human_answers_only_lose_punctuation_and_only_when_they_differ():
    # Human answers keep their number words: the prediction's "two" becomes "2" and no longer matches them.
    assert vqa_accuracy("two", ["two"] * 5 + ["2"] * 5) == pytest.approx(1.0)  # matches the five "2"s
    assert vqa_accuracy("yes", ["yes."] * 10) == 0.0  # all alike: not cleaned, "yes." stays
    assert vqa_accuracy("yes", ["yes."] * 9 + ["no"]) == pytest.approx(1.0)  # differ: "yes." -> "yes"


def test_punctuation_is_deleted_next_to_spaces_and_spaced_elsewhere():
    assert clean_punctuation("black/white") == "black white"
    assert clean_punctuation("black / white") == "black  white"
    assert clean_punctuation("1,000") == "1000"  # a comma between digits: every mark deleted
    assert clean_punctuation("3.5 m.") == "3.5 m"


def test_soft_targets_are_the_accuracy_of_each_answer_given():
    answers = ["red"] * 6 + ["dark red"] * 2 + ["Red."] + ["maroon"]
    scores = answer_scores(answers)
    assert scores == pytest.approx({"red": 1.0, "dark red": 0.6, "maroon": 0.3})
    for candidate, score in scores.items():
        assert score == pytest.approx(leave_one_out(candidate, [clean_punctuation(a) for a in answers]))


def test_every_subset_of_matches_agrees_with_the_official_loop():
    for pattern in itertools.product("xy", repeat=10):
        answers = list(pattern)
        assert vqa_accuracy("x", answers) == pytest.approx(leave_one_out("x", answers))


def test_vqa_accuracy_metric_counts_each_question_once_and_per_type():
    metric = VQAAccuracy(["color", "count", "shape"])
    metric.update(torch.tensor([1.0, 0.3]), torch.tensor([0, 1]), torch.tensor([0, 1]))
    metric.update(torch.tensor([0.3, 0.0]), torch.tensor([1, 1]), torch.tensor([1, 2]))  # question 1 again (padding)
    results = metric.compute()
    assert results["accuracy"].item() == pytest.approx((1.0 + 0.3 + 0.0) / 3)
    assert results["accuracy_count"].item() == pytest.approx(0.15)
    assert "accuracy_shape" not in results
