"""VQA accuracy as the official evaluation computes it (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/
vqaEval.py): an answer is right for as many of the ten annotators as match it, three being enough.

For each question the predicted answer is cleaned (punctuation, number words to digits, articles dropped, missing
apostrophes restored); the ten human answers only have their punctuation cleaned, and only when they are not all
the same. Then each annotator in turn is left out and the prediction scores ``min(1, matches among the other nine /
3)``; the question's accuracy is the mean of the ten: 0, 0.3, 0.6, 0.9 or 1 for 0, 1, 2, 3 or more matches.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor

from lit_clip.distributed import gather_unique

_PUNCTUATION = list(";/[]\"{}()=+\\_-><@`,?!")
# As the official: its look-behind is misspelt, so this deletes any period not followed by a digit.
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                 "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
# The official table of contractions written without their apostrophes, as "written=restored" pairs. Its keys are
# matched after lower-casing, so the capitalised ones ("Im") never apply; "somebody'd" maps to "somebodyd" there too.
_CONTRACTIONS = dict(pair.split("=") for pair in """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've couldnt've=couldn't've
didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've hadn'tve=hadn't've hasnt=hasn't
havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd howll=how'll hows=how's Id've=I'd've
I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am
mightnt=mightn't mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at
shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't
shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've
somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd someoned've=someone'd've
someone'dve=someone'd've someonell=someone'll someones=someone's somethingd=something'd
somethingd've=something'd've something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd theyd've=they'd've
they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've
we'dve=we'd've weve=we've werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's
whered=where'd wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll yall'd've=y'all'd've
y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've you'dve=you'd've youll=you'll youre=you're
youve=you've
""".split())


def clean_punctuation(text: str) -> str:
    """The official ``processPunctuation``: each mark deleted where it touches a space (or anywhere, when a comma
    sits between digits), otherwise replaced by a space; then periods not followed by a digit deleted (at most 32,
    as the official passes ``re.UNICODE`` where ``re.sub`` takes its count)."""
    out = text
    spaced_anywhere = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in _PUNCTUATION:
        out = out.replace(mark, "" if (mark + " " in text or " " + mark in text or spaced_anywhere) else " ")
    return _PERIOD.sub("", out, count=re.UNICODE)


def clean_digits_and_articles(text: str) -> str:
    """The official ``processDigitArticle``: lower case, number words to digits, articles dropped, contractions."""
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def normalize_answer(answer: str) -> str:
    """A predicted answer as the evaluation compares it (and the form lit-clip keeps answer vocabularies in)."""
    return clean_digits_and_articles(clean_punctuation(answer.replace("\n", " ").replace("\t", " ").strip()))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official accuracy of one predicted answer against the (ten) human answers."""
    answers = [answer.replace("\n", " ").replace("\t", " ").strip() for answer in answers]
    if len(set(answers)) > 1:
        answers = [clean_punctuation(answer) for answer in answers]
    prediction = normalize_answer(prediction)
    matches = sum(answer == prediction for answer in answers)
    # Leaving out a matching annotator leaves matches - 1 among the others; leaving out another leaves all of them.
    left_out_matching = matches * min(1.0, (matches - 1) / 3) if matches else 0.0
    return (left_out_matching + (len(answers) - matches) * min(1.0, matches / 3)) / len(answers)


def answer_scores(answers: Sequence[str]) -> dict[str, float]:
    """Each answer the annotators gave (normalised) with the accuracy of predicting it: VQA's soft targets."""
    return {candidate: vqa_accuracy(candidate, answers) for candidate in {normalize_answer(a) for a in answers}}


class VQAAccuracy:
    """The mean accuracy over questions, overall and per question type, each question counted once under DDP.

    ``update(accuracy, question_type, index)``: each question's accuracy (the soft score of the predicted answer:
    :func:`answer_scores` of its human answers), an integer type and the data set index."""

    def __init__(self, type_names: Sequence[str]):
        self.type_names = list(type_names)
        self._parts: list[tuple[Tensor, Tensor, Tensor]] = []

    def update(self, accuracy: Tensor, question_type: Tensor, index: Tensor) -> None:
        self._parts.append((index, accuracy.float(), question_type))

    @property
    def has_updates(self) -> bool:
        return bool(self._parts)

    def compute(self) -> dict[str, Tensor]:
        """``{"accuracy", "accuracy_<type>"...}`` over every question seen since the last ``compute``; a type with
        no question is left out."""
        index, accuracy, types = (torch.cat(parts) for parts in zip(*self._parts))
        _, accuracy, types = gather_unique(index, accuracy, types)
        self._parts = []
        results = {"accuracy": accuracy.mean()}
        for k, name in enumerate(self.type_names):
            if (types == k).any():
                results[f"accuracy_{name}"] = accuracy[types == k].mean()
        return results
