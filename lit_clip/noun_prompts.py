"""Noun prompts of a caption, for GroupViT's multi-label contrastive loss (NVlabs/GroupViT,
``datasets/builder.py``, ``WordAugTokenizeWrapper``).

1. **Words** (``word_type="noun"``, the released configs'): the caption's words that a part-of-speech tagger
   calls nouns or verbs: the official tag list is NN, NNS, NNP, VBG, VB, VBD, VBN, VBP, VBZ (verbs included,
   proper plurals and adjectives not). Or **noun phrases** (``word_type="noun_phrase"``, the code's other
   option): runs of adjectives and nouns ending in a noun ("small red circle"), the code's chunk grammar
   ``{<NN.*|JJ>*<NN.*>}``.
2. **Choice**: up to ``count`` of them drawn without replacement (a word written twice may be drawn twice, as
   the official ``np.random.choice`` over the list does), each written into a random template ("a photo of a
   {}.", the 80 ImageNet templates of the official ``full`` set by default).
3. **Padding**: a caption with fewer words gives its own text for the missing prompts, so every image has
   exactly ``count`` prompts.

Two taggers:

- ``"nltk"``: ``nltk.word_tokenize`` and ``nltk.pos_tag``, the official tool. It needs the ``nltk`` package
  and its tokenizer and tagger data (``punkt_tab``, ``averaged_perceptron_tagger_eng``) installed beforehand
  (``python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng``): nothing is downloaded at run time.
- ``"rules"``: no data needed, our approximation of the tag list above: a word is a noun or verb unless it is
  a closed-class word (article, pronoun, preposition, conjunction, auxiliary, number, spatial relation), an
  adverb in ``-ly``, or an adjective (a list of colours, sizes and common adjectives, and the suffixes ``-ous``,
  ``-ful``, ``-less``, ``-ive``, ``-able``, ``-ible``). It differs from the tagger on words whose part of speech
  depends on the sentence ("left" in "to the left of" is a relation here, often a verb to the tagger) and on
  adjectives outside the list; on ShapesWorld's captions it finds the shape words and the nouns of the
  captions' openings ("a photo of ...", "a rendering of ...").

``"auto"`` (the default) uses nltk when it and its data are installed, else the rules, and says which once.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from lit_clip.templates import OPENAI_IMAGENET_TEMPLATES, fill_template
from lit_clip.tokenizer import tokenize

Tagger = Literal["auto", "nltk", "rules"]
WordType = Literal["noun", "noun_phrase"]

# The official code's "nouns": Penn Treebank tags of nouns and verbs.
NOUN_AND_VERB_TAGS = frozenset({"NN", "NNS", "NNP", "VBG", "VB", "VBD", "VBN", "VBP", "VBZ"})

_CLOSED_CLASS = frozenset(
    """a an the this that these those some any each every no all both either neither another such what which
    whose who whom i me my mine you your yours he him his she her hers it its we us our ours they them their
    theirs one ones there here where when why how in on at of to from by with without within into onto upon
    over under above below beside besides between among behind before after near next around through across
    along against toward towards off out up down about inside outside left right top bottom front back middle
    and or but nor so yet if than as because while is are was were be been being am has have had having do does
    did done can could may might must shall should will would not very too also just only zero two three four
    five six seven eight nine ten eleven twelve many much more most few several lot lots""".split()
)
_ADJECTIVES = frozenset(
    """red orange yellow green cyan blue purple pink black white grey gray brown golden silver dark light bright
    pale small large big little tiny huge giant long short tall wide narrow thick thin flat old new
    young good bad great nice beautiful pretty cute happy sad hot cold warm cool wet dry clean dirty empty full
    open closed high low deep heavy soft hard fresh single double multiple various other same different first
    second third last next whole half cloudy sunny rainy snowy wooden metal plastic glass""".split()
)
_ADJECTIVE_SUFFIXES = ("ous", "ful", "less", "ive", "able", "ible")
_WORD = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*")


def rule_tags(caption: str) -> list[tuple[str, str]]:
    """Each word with a coarse tag by the rules (see the module's description): "noun" (nouns and verbs),
    "adjective", or "other"."""
    tagged = []
    for word in _WORD.findall(caption):
        lower = word.lower()
        if lower in _ADJECTIVES or lower.endswith(_ADJECTIVE_SUFFIXES):
            tagged.append((word, "adjective"))
        elif lower in _CLOSED_CLASS or len(lower) < 2 or lower.endswith("ly"):
            tagged.append((word, "other"))
        else:
            tagged.append((word, "noun"))
    return tagged


def rule_words(caption: str) -> list[str]:
    """The caption's nouns and verbs by the rules, in order."""
    return [word for word, tag in rule_tags(caption) if tag == "noun"]


def rule_noun_phrases(caption: str) -> list[str]:
    """The caption's runs of adjectives and nouns that end in a noun, by the rules, in order."""
    phrases, run = [], []
    for word, tag in [*rule_tags(caption), ("", "other")]:
        if tag != "other":
            run.append((word, tag))
            continue
        while run and run[-1][1] != "noun":  # a phrase ends in its noun
            run.pop()
        if run:
            phrases.append(" ".join(word for word, _ in run))
        run = []
    return phrases


def nltk_words(caption: str) -> list[str]:
    """The caption's words that nltk's tagger calls nouns or verbs (the official list), in order."""
    import nltk

    return [word for word, tag in nltk.pos_tag(nltk.word_tokenize(caption)) if tag in NOUN_AND_VERB_TAGS]


def nltk_noun_phrases(caption: str) -> list[str]:
    """The official ``get_noun_phrase``: nltk's chunks of the grammar ``NBAR: {<NN.*|JJ>*<NN.*>}`` (and NBAR IN NBAR),
    consecutive chunks joined, each phrase once."""
    import nltk

    grammar = "NBAR: {<NN.*|JJ>*<NN.*>}\nNP: {<NBAR>}\n{<NBAR><IN><NBAR>}"
    chunked = nltk.RegexpParser(grammar).parse(nltk.pos_tag(nltk.word_tokenize(caption)))
    phrases, current = [], []
    for subtree in chunked:
        if isinstance(subtree, nltk.Tree):
            current.append(" ".join(token for token, _ in subtree.leaves()))
        elif current:
            phrase = " ".join(current)
            if phrase not in phrases:
                phrases.append(phrase)
            current = []
    return phrases


def nltk_available() -> bool:
    """Whether nltk and the data its tokenizer and tagger read are installed."""
    try:
        import nltk

        nltk.pos_tag(nltk.word_tokenize("a test sentence."))
    except (ImportError, LookupError):
        return False
    return True


class NounPrompts:
    """``prompts(caption, rng)``: ``count`` prompts of the caption's nouns (see the module's description)."""

    def __init__(
        self,
        count: int = 3,
        templates: Sequence[str] = OPENAI_IMAGENET_TEMPLATES,
        tagger: Tagger = "auto",
        word_type: WordType = "noun",
    ):
        if count < 1:
            raise ValueError(f"count is the number of noun prompts per caption, at least 1; got {count}")
        if word_type not in ("noun", "noun_phrase"):
            raise ValueError(f"word_type must be 'noun' or 'noun_phrase', got {word_type!r}")
        if tagger not in ("auto", "nltk", "rules"):
            raise ValueError(f"tagger must be 'auto', 'nltk' or 'rules', got {tagger!r}")
        if tagger == "nltk" and not nltk_available():
            raise RuntimeError(
                "tagger 'nltk' needs the nltk package and its data: pip install nltk, then "
                "python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng (nothing is downloaded at run "
                "time); or use tagger 'rules'"
            )
        if tagger == "auto":
            tagger = "nltk" if nltk_available() else "rules"
            if tagger == "rules":
                warnings.warn(
                    "noun prompts: nltk or its tagger data is not installed, so nouns are found by lit-clip's rules "
                    "(see lit_clip.noun_prompts); install them for the official tagger",
                    stacklevel=2,
                )
        self.count, self.templates, self.tagger = count, list(templates), tagger
        finders = {
            ("nltk", "noun"): nltk_words,
            ("nltk", "noun_phrase"): nltk_noun_phrases,
            ("rules", "noun"): rule_words,
            ("rules", "noun_phrase"): rule_noun_phrases,
        }
        self.words = finders[tagger, word_type]

    def __call__(self, caption: str, rng: np.random.Generator | None = None) -> list[str]:
        """The prompts, drawn with ``rng``; by default with one seeded from torch's generator, so that
        ``seed_everything`` (and Lightning's per-worker seeds) govern them."""
        rng = np.random.default_rng(int(torch.randint(2**62, ()))) if rng is None else rng
        words = self.words(caption)
        chosen = rng.choice(len(words), min(self.count, len(words)), replace=False) if words else []
        prompts = [fill_template(self.templates[int(rng.integers(len(self.templates)))], words[i]) for i in chosen]
        return prompts + [caption] * (self.count - len(prompts))


def caption_entries(caption: str, context_length: int, noun_prompts: NounPrompts | None = None) -> dict[str, Tensor | str]:
    """A training sample's text: ``text`` (the caption's token ids), ``caption``, and with ``noun_prompts``
    ``noun_text`` ``[count, context_length]``, the token ids of its noun prompts."""
    entries: dict[str, Tensor | str] = {"text": tokenize(caption, context_length=context_length)[0], "caption": caption}
    if noun_prompts is not None:
        entries["noun_text"] = tokenize(noun_prompts(caption), context_length=context_length)
    return entries
