"""Grounding's text side, shared by data and methods: vocabularies as prompts, phrases as tokens.

GLIP reads detection as phrase grounding: the class names are written into one caption, the *prompt*,
``"red circle. blue star. green ring"`` (names joined by ". ", as the released code), and a box of a class is
grounded by its name's tokens. A phrase is a list of character spans of its caption (MDETR's
``tokens_positive``); :func:`positive_map` finds the tokens of each from a tokenizer's offsets, so that data
stays free of any tokenizer and every text encoder reads the same spans.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lit_clip.noun_prompts import rule_noun_phrases

SEPARATOR = ". "

Span = tuple[int, int]


@dataclass(frozen=True)
class Prompt:
    """A caption naming ``names``, name ``k`` at character span ``spans[k]`` (end exclusive)."""

    caption: str
    names: tuple[str, ...]
    spans: tuple[Span, ...]

    @property
    def phrases(self) -> list[list[Span]]:
        """One phrase per name, in the format of :class:`lit_clip.batches.GroundingTarget`."""
        return [[span] for span in self.spans]


def names_prompt(names: Sequence[str], separator: str = SEPARATOR) -> Prompt:
    """``names`` joined by ``separator`` ("person. bicycle. car", no separator after the last), as GLIP writes a
    detection vocabulary."""
    spans, caption = [], ""
    for k, name in enumerate(names):
        if not name.strip():
            raise ValueError(f"class name {k} is empty; a prompt needs words to ground")
        spans.append((len(caption), len(caption) + len(name)))
        caption += name + (separator if k < len(names) - 1 else "")
    return Prompt(caption, tuple(names), tuple(spans))


def sentence_prompt(sentence: str) -> Prompt:
    """A sentence as a prompt whose phrases are its noun phrases, runs of adjectives and nouns ending in a noun ("a
    small red circle left of two blue stars": "small red circle", "blue stars"). GLIP's demo finds them with nltk's
    tagger; lit-clip's rule tagger (:func:`lit_clip.noun_prompts.rule_noun_phrases`) needs nothing downloaded."""
    lowered, names, spans, start = sentence.lower(), [], [], 0
    for phrase in rule_noun_phrases(sentence):
        at = lowered.find(phrase.lower(), start)
        if at < 0:  # the tagger joined words the sentence spaces otherwise: not a span of it
            continue
        names.append(sentence[at : at + len(phrase)])
        spans.append((at, at + len(phrase)))
        start = at + len(phrase)
    if not spans:
        raise ValueError(f"no noun phrase found in the prompt {sentence!r} to ground; give a list of names instead")
    return Prompt(sentence, tuple(names), tuple(spans))


def training_prompt(
    present: Sequence[int], classnames: Sequence[str], negatives: int, rng: np.random.Generator
) -> tuple[Prompt, dict[int, int]]:
    """The prompt of a training image of a detection data set: the names of the classes ``present`` in it and other
    names drawn at random, in a random order. GLIP samples negative names so that the model learns to say no, and
    so that training prompts are as long as evaluation's: half the time ``negatives`` of them (all others when
    fewer), else a number drawn uniformly from 1 to ``negatives`` (the released CONTROL_PROB (0, 0, 0.5, 0) with
    RANDOM_SAMPLE_NEG 85). Returns the prompt and each present class's phrase index in it."""
    present = sorted(set(int(label) for label in present))
    others = np.setdiff1d(np.arange(len(classnames)), present)
    count = negatives if rng.random() < 0.5 else int(rng.integers(1, negatives + 1)) if negatives else 0
    drawn = rng.choice(others, size=min(count, len(others)), replace=False)
    labels = [*present, *drawn.tolist()]
    labels = [labels[i] for i in rng.permutation(len(labels))]
    prompt = names_prompt([classnames[label] for label in labels])
    return prompt, {label: k for k, label in enumerate(labels) if label in set(present)}


def vocabulary_chunks(names: Sequence[str], names_per_prompt: int | None) -> list[range]:
    """The label ranges of the prompts a long vocabulary is split into, ``names_per_prompt`` names each (GLIP's
    chunked evaluation: 40 for LVIS's 1203 names); one prompt for all with None."""
    if names_per_prompt is None or names_per_prompt >= len(names):
        return [range(len(names))]
    if names_per_prompt < 1:
        raise ValueError(f"names_per_prompt must be at least 1, got {names_per_prompt}")
    return [range(start, min(start + names_per_prompt, len(names))) for start in range(0, len(names), names_per_prompt)]


def check_phrases(caption: str, phrases: Sequence[Sequence[Span]], labels: Sequence[int], where: str) -> None:
    """Errors naming ``where`` (a file and an entry) for a phrase span outside its caption or empty, and for a box
    without a phrase (its label indexes none of ``phrases``)."""
    for k, phrase in enumerate(phrases):
        if not phrase:
            raise ValueError(f"{where}: phrase {k} has no character span; expected [(start, end), ...]")
        for start, end in phrase:
            if not 0 <= start < end <= len(caption):
                raise ValueError(
                    f"{where}: phrase {k}'s span ({start}, {end}) is outside its caption {caption!r} "
                    f"({len(caption)} characters); expected 0 <= start < end <= {len(caption)}"
                )
    for n, label in enumerate(labels):
        if not 0 <= int(label) < len(phrases):
            raise ValueError(
                f"{where}: box {n} grounds phrase {int(label)}, but the caption has {len(phrases)} phrases; "
                "every box needs the phrase that names it"
            )


def positive_map(
    offsets: Tensor, phrases: Sequence[Sequence[Span]], caption: str = "", required: bool = True
) -> Tensor:
    """bool ``[P, L]``: the tokens of each phrase, those whose characters overlap one of its spans. ``offsets``
    ``[L, 2]``: each token's (start, end) characters in the caption, as a fast tokenizer's ``offset_mapping``
    gives them; special and padding tokens are (0, 0) and belong to no phrase. A phrase without a token (cut off
    by the tokenizer's maximum length) is an error naming the caption when every phrase is ``required``; else its
    row is empty."""
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts
    found = torch.zeros(len(phrases), len(offsets), dtype=torch.bool, device=offsets.device)
    for k, phrase in enumerate(phrases):
        for start, end in phrase:
            found[k] |= real & (starts < end) & (ends > start)
        if required and not found[k].any():
            raise ValueError(
                f"phrase {k} ({[caption[s:e] for s, e in phrase] if caption else phrase}) of caption {caption!r} "
                f"has no token: the tokenizer cut the caption at {int(ends.max())} characters; shorten the prompt "
                "(fewer names per prompt, fewer negatives)"
            )
    return found
