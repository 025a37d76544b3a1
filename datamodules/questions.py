"""Questions as VQA models read them: MCAN's word tokens, a word vocabulary, answers as soft scores.

Shared by the VQA data modules (ShapesWorld questions, VQA v2): words are lower-cased with MCAN's punctuation rule
(``.,'!?"()*#:;`` removed, ``-`` and ``/`` as spaces) and cut at ``max_tokens`` (14 in MCAN); word 0 pads and word 1
stands for any word the vocabulary lacks.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from lit_clip.metrics.vqa import answer_scores

PAD, UNKNOWN = "<pad>", "<unk>"
_REMOVED = re.compile(r"[.,'!?\"()*#:;]")
_SPACED = re.compile(r"[-/]")


def question_words(question: str) -> list[str]:
    """MCAN's tokens of a question."""
    return _SPACED.sub(" ", _REMOVED.sub("", question.lower())).split()


def word_vocabulary(questions: Iterable[str]) -> list[str]:
    """Every word of the questions, in order of first appearance, after the padding and unknown entries."""
    words = dict.fromkeys(word for question in questions for word in question_words(question))
    return [PAD, UNKNOWN, *words]


def encode_question(question: str, vocabulary: dict[str, int], max_tokens: int) -> Tensor:
    """``[max_tokens]`` word ids, padded with 0, unknown words 1."""
    ids = [vocabulary.get(word, 1) for word in question_words(question)[:max_tokens]]
    return torch.tensor(ids + [0] * (max_tokens - len(ids)), dtype=torch.long)


def frequent_answers(answers: Iterable[str], min_count: int) -> list[str]:
    """The answers given at least ``min_count`` times, most frequent first (MCAN's vocabulary: VQA v2's
    train + val ``multiple_choice_answer``, normalised, at least 9 times: 3129 answers)."""
    counts = Counter(answers)
    return [answer for answer, count in counts.most_common() if count >= min_count]


def score_vector(human_answers: Sequence[str], answer_index: dict[str, int]) -> Tensor:
    """``[A]`` float: each vocabulary answer's VQA accuracy against the human answers (0 for the rest)."""
    scores = torch.zeros(len(answer_index))
    for answer, score in answer_scores(human_answers).items():
        if answer in answer_index:
            scores[answer_index[answer]] = score
    return scores
