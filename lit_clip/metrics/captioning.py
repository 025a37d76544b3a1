"""Caption metrics as the COCO caption evaluation (pycocoevalcap) computes them: BLEU-1..4, ROUGE-L and CIDEr-D in
pure Python, METEOR through pycocoevalcap's Java program where both are installed (``lit-clip[captioning]``).

Captions are compared as lists of tokens. :func:`tokenize_caption` stands in for the evaluation's Stanford
PTBTokenizer (Java): lower case, the clitics split as PTB splits them ("man's" -> "man 's", "can't" -> "ca n't"),
brackets spelt as PTB spells them, abbreviations, numbers and hyphenated words kept whole, punctuation dropped. It
agrees with PTB on common captions (tests/test_caption_metrics.py); PTB has rules for rarer text it lacks. Give the
scorers PTB's tokens to score exactly as the evaluation.

Each function takes ``references``, a list of reference-caption lists, and ``hypotheses``, one caption per image,
both already tokenised (lists of words).
"""
from __future__ import annotations

import math
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence

Tokens = Sequence[str]
NGram = tuple[str, ...]

# The tokens the evaluation drops after PTB tokenisation (pycocoevalcap/tokenizer/ptbtokenizer.py). PTB's lower-cased
# brackets ("-lrb-") are not among them: the evaluation keeps them, and so does tokenize_caption.
PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_CLITIC = re.compile(r"(\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
# Clitics, abbreviations ("u.s."), numbers ("3.5", "3,000"), words with inner hyphens or apostrophes ("o'clock").
_TOKEN = re.compile(r"n't|'\w+|(?:[a-z]\.){2,}|\d+(?:[.,:]\d+)+|\w+(?:['-]\w+)*|[^\w\s]")


def tokenize_caption(caption: str) -> list[str]:
    """PTB-like tokens of a caption, lower-cased, the evaluation's punctuation dropped."""
    text = caption.lower().replace("can't", "ca n't").replace("cannot", "can not")
    tokens = (_BRACKETS.get(token, token) for token in _TOKEN.findall(_CLITIC.sub(r"\1 \2", text)))
    return [token for token in tokens if token not in PUNCTUATION and (token[0].isalnum() or token[0] in "-'")]


def ngram_counts(tokens: Tokens, max_n: int = 4) -> Counter[NGram]:
    """Every n-gram of 1 to ``max_n`` words with its count."""
    return Counter(tuple(tokens[i : i + n]) for n in range(1, max_n + 1) for i in range(len(tokens) - n + 1))


# --- BLEU ------------------------------------------------------------------------------------------------------------
def bleu(references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens], max_n: int = 4) -> list[float]:
    """Corpus BLEU-1..``max_n`` (cumulative geometric means, as the evaluation reports them).

    Each hypothesis n-gram counts at most as often as in one reference (the most in any); the matches, the
    hypothesis n-grams and the lengths are summed over the corpus; the reference length of an image is the
    closest to its hypothesis (the shorter on a tie); the brevity penalty applies when the corpus' hypotheses are
    shorter. As the evaluation, 1e-15 and 1e-9 keep a zero count from zeroing or dividing by zero."""
    correct, guessed = [0] * max_n, [0] * max_n
    hypothesis_length = reference_length = 0
    for refs, hypothesis in zip(references, hypotheses, strict=True):
        most = Counter()
        for ref in refs:
            most |= ngram_counts(ref, max_n)  # Counter's | keeps the larger count
        for gram, count in ngram_counts(hypothesis, max_n).items():
            correct[len(gram) - 1] += min(count, most[gram])
        for n in range(max_n):
            guessed[n] += max(0, len(hypothesis) - n)
        hypothesis_length += len(hypothesis)
        reference_length += min((abs(len(ref) - len(hypothesis)), len(ref)) for ref in refs)[1]
    scores, product = [], 1.0
    for n in range(max_n):
        product *= (correct[n] + 1e-15) / (guessed[n] + 1e-9)
        scores.append(product ** (1 / (n + 1)))
    ratio = (hypothesis_length + 1e-15) / (reference_length + 1e-9)
    if ratio < 1:
        scores = [score * math.exp(1 - 1 / ratio) for score in scores]
    return scores


# --- ROUGE-L ---------------------------------------------------------------------------------------------------------
def longest_common_subsequence(a: Tokens, b: Tokens) -> int:
    previous = [0] * (len(b) + 1)
    for word in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens], beta: float = 1.2) -> float:
    """Mean over images of ROUGE-L's F-measure, from the best precision and the best recall over the references
    (each taken on its own, as the evaluation does)."""
    scores = []
    for refs, hypothesis in zip(references, hypotheses, strict=True):
        common = [longest_common_subsequence(ref, hypothesis) for ref in refs]
        precision = max(c / len(hypothesis) if hypothesis else 0.0 for c in common)
        recall = max(c / len(ref) if ref else 0.0 for c, ref in zip(common, refs))
        f = (1 + beta**2) * precision * recall / (recall + beta**2 * precision) if precision and recall else 0.0
        scores.append(f)
    return sum(scores) / len(scores)


# --- CIDEr-D ---------------------------------------------------------------------------------------------------------
class CIDErD:
    """CIDEr-D (the "CIDEr" of the COCO evaluation): per n of 1-4, the cosine of TF-IDF vectors of n-gram counts,
    the hypothesis' weights clipped at the reference's, times a Gaussian penalty (sigma 6) on the difference of
    lengths (counted as bigrams, as the evaluation's code does); the mean over n and references, times 10.

    The inverse document frequency comes from the reference sets of the evaluated corpus by default (one document
    per image): ``CIDErD()(references, hypotheses)``. Self-critical training scores samples against frequencies
    fixed beforehand from the training references: ``CIDErD(document_references=train_references)``.
    """

    def __init__(self, document_references: Iterable[Sequence[Tokens]] | None = None, sigma: float = 6.0, n: int = 4):
        self.sigma, self.n = sigma, n
        self.document_frequency: Counter[NGram] | None = None
        self.log_documents = 0.0
        if document_references is not None:
            self.document_frequency, self.log_documents = self._frequencies(document_references)

    def _frequencies(self, references: Iterable[Sequence[Tokens]]) -> tuple[Counter[NGram], float]:
        frequency, documents = Counter(), 0
        for refs in references:
            frequency.update(set().union(*(ngram_counts(ref, self.n) for ref in refs)))
            documents += 1
        return frequency, math.log(documents) if documents else 0.0

    def __call__(
        self, references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens]
    ) -> tuple[float, list[float]]:
        """The corpus score (the mean) and each image's."""
        scores = self.scores(references, hypotheses)
        return sum(scores) / len(scores), scores

    def scores(self, references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens]) -> list[float]:
        if len(references) != len(hypotheses):
            raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets")
        frequency, log_documents = self.document_frequency, self.log_documents
        if frequency is None:
            frequency, log_documents = self._frequencies(references)
        scores = []
        for refs, hypothesis in zip(references, hypotheses):
            vector, norm, length = self._tfidf(hypothesis, frequency, log_documents)
            total = [0.0] * self.n
            for ref in refs:
                ref_vector, ref_norm, ref_length = self._tfidf(ref, frequency, log_documents)
                penalty = math.exp(-((length - ref_length) ** 2) / (2 * self.sigma**2))
                for n in range(self.n):
                    reference = ref_vector[n]
                    value = sum(min(w, reference.get(g, 0.0)) * reference.get(g, 0.0) for g, w in vector[n].items())
                    if norm[n] and ref_norm[n]:
                        value /= norm[n] * ref_norm[n]
                    total[n] += value * penalty
            scores.append(10.0 * sum(total) / self.n / len(refs))
        return scores

    def _tfidf(self, tokens: Tokens, frequency: Counter[NGram], log_documents: float):
        vector: list[dict[NGram, float]] = [{} for _ in range(self.n)]
        for gram, count in ngram_counts(tokens, self.n).items():
            vector[len(gram) - 1][gram] = count * (log_documents - math.log(max(1.0, frequency[gram])))
        norm = [math.sqrt(sum(w * w for w in weights.values())) for weights in vector]
        return vector, norm, max(0, len(tokens) - 1)  # the evaluation's "length": the number of bigrams


# --- METEOR ----------------------------------------------------------------------------------------------------------
def meteor_available() -> bool:
    """pycocoevalcap (its meteor-1.5.jar) and a ``java`` on the PATH."""
    try:
        import pycocoevalcap.meteor.meteor  # noqa: F401
    except ImportError:
        return False
    return shutil.which("java") is not None


def meteor(references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens]) -> tuple[float, list[float]]:
    """METEOR 1.5 as the evaluation runs it (pycocoevalcap's Meteor: Java, English, normalised): the corpus score
    and each image's. Starting the Java program takes seconds."""
    if not meteor_available():
        raise RuntimeError("METEOR needs pycocoevalcap (pip install 'lit-clip[captioning]') and Java on the PATH")
    from pycocoevalcap.meteor.meteor import Meteor

    gts = {k: [" ".join(ref) for ref in refs] for k, refs in enumerate(references)}
    res = {k: [" ".join(hypothesis)] for k, hypothesis in enumerate(hypotheses)}
    score, scores = Meteor().compute_score(gts, res)  # the Java process ends with the scorer
    return float(score), [float(s) for s in scores]


def caption_scores(
    references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens], with_meteor: bool = False
) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr-D of a corpus (and METEOR with ``with_meteor``), named as the COCO evaluation
    names them."""
    scores = {f"Bleu_{n + 1}": value for n, value in enumerate(bleu(references, hypotheses))}
    scores["ROUGE_L"] = rouge_l(references, hypotheses)
    scores["CIDEr"] = CIDErD()(references, hypotheses)[0]
    if with_meteor:
        scores["METEOR"] = meteor(references, hypotheses)[0]
    return scores
