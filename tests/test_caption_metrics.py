"""Caption metrics: worked examples by hand, and the COCO evaluation's own scorers (pycocoevalcap, a dev dependency)
on random corpora, which ours must equal."""
import math
import random
import shutil

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from lit_clip.metrics.captioning import CIDErD, bleu, caption_scores, meteor, rouge_l, tokenize_caption

CAT = [["the cat sat on a mat".split(), "a cat is on the mat".split()]]


def test_bleu_of_one_caption_by_hand():
    # Clipped matches: 1-grams 5/6 ("the" counts once: at most once in either reference), 2-grams 5/5, 3-grams 3/4,
    # 4-grams 1/3; the closest reference length equals the hypothesis', so no brevity penalty.
    scores = bleu(CAT[0:1], ["the cat sat on the mat".split()])
    expected = [5 / 6, (5 / 6) ** 0.5, (5 / 6 * 3 / 4) ** (1 / 3), (5 / 6 * 3 / 4 / 3) ** 0.25]
    assert scores == pytest.approx(expected, rel=1e-9)


def test_bleu_brevity_penalty_uses_the_closest_reference_length():
    refs = [["a cat sits on a mat".split(), "a cat is on the mat".split()],
            ["a dog runs in the park".split(), "a dog is running".split()]]  # fmt: skip
    scores = bleu(refs, ["a cat on a mat".split(), "a dog runs".split()])
    # 8 words against the closest references' 6 + 4 = 10: penalty exp(1 - 10 / 8).
    assert scores[0] == pytest.approx(8 / 8 * math.exp(1 - 10 / 8), rel=1e-9)
    assert scores[3] < 1e-3  # no 4-gram matches: the evaluation's 1e-15 keeps it above zero
    assert scores[3] > 0


def test_rouge_l_takes_the_best_precision_and_recall_separately():
    refs = [["a cat sits on a mat".split()]]
    # LCS 5 of 5 hypothesis words (precision 1) and of 6 reference words (recall 5/6), beta 1.2.
    expected = (1 + 1.44) * 1 * (5 / 6) / (5 / 6 + 1.44 * 1)
    assert rouge_l(refs, ["a cat on a mat".split()]) == pytest.approx(expected)


def test_cider_d_by_hand_on_two_exact_captions():
    # Two images, each caption its own reference. "a" is in both reference sets: idf log(2/2) = 0; every other
    # n-gram has idf log 2. Image 1: every order's cosine is 1: 10. Image 2 ("a dog runs") has no 4-gram: 7.5.
    refs = [["a cat on a mat".split()], ["a dog runs".split()]]
    corpus, per_image = CIDErD()(refs, [r[0] for r in refs])
    assert per_image == pytest.approx([10.0, 7.5])
    assert corpus == pytest.approx(8.75)


def test_cider_d_clips_repeats_and_penalises_length():
    refs = [["a red circle".split()], ["a blue square".split()], ["a green star".split()]]
    right = CIDErD()(refs, ["a red circle".split(), "a blue square".split(), "a green star".split()])[1]
    repeated = CIDErD()(refs, ["a red circle red circle red circle".split(), "a blue square".split(), "x".split()])[1]
    assert repeated[0] < right[0]  # more of a right n-gram does not earn more than the reference holds
    assert repeated[2] == 0.0


def test_cider_d_with_fixed_document_frequencies_as_self_critical_training():
    train = [["a red circle".split()], ["a blue circle".split()], ["a red square".split()], ["a green star".split()]]
    scorer = CIDErD(document_references=train)
    batch_refs = [["a red circle".split()]]
    # One image alone would have log(1) = 0 weights; with the training frequencies it scores.
    assert CIDErD()(batch_refs, ["a red circle".split()])[0] == 0.0
    assert scorer(batch_refs, ["a red circle".split()])[0] > 0
    assert scorer(batch_refs, ["a red circle".split()])[0] > scorer(batch_refs, ["a red square".split()])[0]


def random_corpus(seed, images=40):
    rng = random.Random(seed)
    words = "a the red blue circle square star is on left of small large two there".split()
    caption = lambda shortest, longest: [rng.choice(words) for _ in range(rng.randint(shortest, longest))]  # noqa: E731
    refs = [[caption(2, 10) for _ in range(rng.randint(1, 5))] for _ in range(images)]
    hyps = [caption(1, 11) for _ in range(images)]
    return refs, hyps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bleu_rouge_and_cider_equal_pycocoevalcaps(seed):
    refs, hyps = random_corpus(seed)
    gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [" ".join(h)] for i, h in enumerate(hyps)}
    official_bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert bleu(refs, hyps) == pytest.approx(official_bleu, rel=1e-12)
    assert rouge_l(refs, hyps) == pytest.approx(Rouge().compute_score(gts, res)[0], rel=1e-12)
    official_cider, official_each = Cider().compute_score(gts, res)
    corpus, each = CIDErD()(refs, hyps)
    assert corpus == pytest.approx(official_cider, rel=1e-12)
    assert each == pytest.approx(list(official_each), rel=1e-12, abs=1e-12)
    named = caption_scores(refs, hyps)
    assert named == {**{f"Bleu_{n}": official_bleu[n - 1] for n in range(1, 5)}, "ROUGE_L": rouge_l(refs, hyps),
                     "CIDEr": corpus}  # fmt: skip


needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's tokenizer and METEOR run Java")


@needs_java
def test_tokenize_caption_agrees_with_the_evaluations_ptb_tokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions = [
        "A man's T-shirt, isn't it? The dog can't run...",
        "Two dogs playing in the snow.",
        'A red-and-white bus (parked) near a "stop" sign!',
        "The U.S. flag flies at 3.5 m; a cat: sleeping -- quietly.",
        "I'm sure they're fine, we'll see; you'd know.",
        "Cannot believe it's 5 o'clock",
    ]
    official = PTBTokenizer().tokenize({k: [{"caption": c}] for k, c in enumerate(captions)})
    assert [" ".join(tokenize_caption(c)) for c in captions] == [official[k][0] for k in range(len(captions))]


@needs_java
def test_meteor_runs_the_official_program_and_ranks_a_right_caption_first():
    refs = [["a red circle on the left".split()], ["two blue squares".split()]] * 2
    captions = ("a red circle on the left", "two blue squares", "a green star", "one ring")
    hypotheses = [caption.split() for caption in captions]
    corpus, (*right, wrong_1, wrong_2) = meteor(refs, hypotheses)
    assert min(right) > 0.9 and max(wrong_1, wrong_2) < 0.2
    assert 0 < corpus < 1
