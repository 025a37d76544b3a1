"""OpenAI CLIP's byte-level BPE tokenizer, written for lit-clip.

It gives the same ids as `open_clip.tokenize` (OpenAI's original tokenizer), so that
pretrained CLIP text towers and our own models see identical inputs. No network is
needed: the merges file ships in `lit_clip/assets/` (see the README there).
"""

from __future__ import annotations

import functools
import gzip
import html
import os
from collections.abc import Sequence
from pathlib import Path

import ftfy
import regex
import torch

DEFAULT_VOCAB_PATH = Path(__file__).resolve().parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"

SOT, EOT = "<start_of_text>", "<end_of_text>"
_END_OF_WORD = "</w>"
# CLIP keeps only the first 49152 - 256 - 2 merges, so the vocabulary has 49408 entries:
# 256 bytes, 256 bytes ending a word, the merges, then SOT and EOT.
_NUM_MERGES = 49152 - 256 - 2

# Contractions, runs of letters, single digits, runs of other symbols. The special tokens
# come first so a literal "<start_of_text>" in a caption becomes that token, as in OpenAI's.
# IGNORECASE is kept for exact parity: it makes U+0345 (a combining mark that case-folds
# to a letter) count as a letter.
_PIECE_PATTERN = regex.compile(
    rf"{SOT}|{EOT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
    regex.IGNORECASE,
)


@functools.lru_cache(maxsize=None)
def _byte_to_char() -> dict[int, str]:
    """A reversible map from each of the 256 byte values to a visible unicode character.

    BPE works on strings; printable Latin-1 bytes map to themselves and the rest
    (control chars, space, ...) are moved to code points 256 and up, in byte order.
    The dict's order (printable bytes first) is the order of the first 256 vocab ids.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    shifted = [b for b in range(256) if b not in mapping]
    for offset, b in enumerate(shifted):
        mapping[b] = chr(256 + offset)
    return mapping


def _clean(text: str) -> str:
    """open_clip's default "lower" clean-up: repair mojibake, unescape HTML, squash whitespace."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))  # twice, so "&amp;amp;" becomes "&"
    return " ".join(text.split()).lower()


def _read_merges(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"CLIP BPE vocabulary file not found: {path}")
    try:
        with gzip.open(path, "rb") as f:  # bytes, so no newline translation happens
            lines = f.read().decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read CLIP BPE vocabulary file {path}: {exc}") from exc
    # Line 0 is a version header; each following line is one merge "left right".
    merges = [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]
    if len(merges) != _NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"CLIP BPE vocabulary file {path} is corrupt: expected {_NUM_MERGES} merge pairs")
    return merges


class Tokenizer:
    """CLIP's byte-level BPE tokenizer; `tokenizer(texts)` gives a padded [N, context_length] id tensor."""

    sot_token_id = 49406
    eot_token_id = 49407
    vocab_size = 49408
    _NO_MERGE = float("inf")  # rank of a pair that is not a merge

    def __init__(self, vocab_path: str | os.PathLike | None = None):
        path = Path(vocab_path) if vocab_path is not None else DEFAULT_VOCAB_PATH
        merges = _read_merges(path)
        self._byte_to_char = _byte_to_char()
        self._char_to_byte = {c: b for b, c in self._byte_to_char.items()}

        chars = list(self._byte_to_char.values())
        tokens = chars + [c + _END_OF_WORD for c in chars] + ["".join(m) for m in merges] + [SOT, EOT]
        self._token_to_id = {tok: i for i, tok in enumerate(tokens)}
        self._id_to_token = tokens
        if len(self._token_to_id) != self.vocab_size:
            raise ValueError(f"CLIP BPE vocabulary file {path} is corrupt: it has duplicate merges")
        self._merge_rank = {m: i for i, m in enumerate(merges)}
        self._special_ids = {SOT: self.sot_token_id, EOT: self.eot_token_id}
        # Captions repeat words a lot, so BPE results are memoised per word.
        self._cache: dict[str, list[int]] = {}

    def _word_ids(self, word: str) -> list[int]:
        """Ids for one pre-tokenized piece whose bytes are already mapped to characters."""
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        parts = list(word[:-1]) + [word[-1] + _END_OF_WORD]
        while len(parts) > 1:
            # Apply the merge learned earliest, at every (non-overlapping) place it occurs.
            pairs = list(zip(parts, parts[1:]))
            best = min(pairs, key=lambda p: self._merge_rank.get(p, self._NO_MERGE))
            if best not in self._merge_rank:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self._token_to_id[p] for p in parts]
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without the start/end-of-text tokens."""
        ids: list[int] = []
        for piece in _PIECE_PATTERN.findall(_clean(text)):
            if piece in self._special_ids:
                ids.append(self._special_ids[piece])
            else:
                ids.extend(self._word_ids("".join(self._byte_to_char[b] for b in piece.encode("utf-8"))))
        return ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of ``text`` (without start / end of text) and each token's (start, end) characters in it, for
        phrases given as character spans (GLIP's grounding). The pieces are found in ``text`` lower-cased but not
        otherwise cleaned, so that positions stay the text's: the ids equal :meth:`encode`'s for any text that
        ftfy, HTML unescaping and whitespace squashing leave as it is (plain captions and prompts)."""
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for match in _PIECE_PATTERN.finditer(text.lower()):
            piece, start = match.group(), match.start()
            if piece in self._special_ids:
                ids.append(self._special_ids[piece])
                offsets.append(match.span())
                continue
            for token_id in self._word_ids("".join(self._byte_to_char[b] for b in piece.encode("utf-8"))):
                token = self._id_to_token[token_id].removesuffix(_END_OF_WORD)
                length = len(bytes(self._char_to_byte[c] for c in token).decode("utf-8", errors="ignore"))
                ids.append(token_id)
                offsets.append((start, min(start + length, match.end())))
                start += length
        return ids, offsets

    def decode(self, ids) -> str:
        """Text of `ids` (ints or a tensor); each word end becomes a space, as in OpenAI's."""
        chars = "".join(self._id_to_token[int(i)] for i in ids)
        text = bytes(self._char_to_byte[c] for c in chars).decode("utf-8", errors="replace")
        return text.replace(_END_OF_WORD, " ")

    def __call__(self, texts: str | Sequence[str], context_length: int = 77) -> torch.LongTensor:
        """[N, context_length] ids: SOT, the text's ids, EOT, then zeros.

        Too-long texts are cut to `context_length` ids and the last one is set to EOT,
        so every row still ends its text with EOT (models pool the text at EOT).
        """
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2 (SOT and EOT), got {context_length}")
        if isinstance(texts, str):
            texts = [texts]
        elif isinstance(texts, bytes) or not hasattr(texts, "__iter__"):
            raise TypeError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
        texts = list(texts)
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is of type {type(text).__name__}, not a string")
        result = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > context_length:
                ids = ids[: context_length - 1] + [self.eot_token_id]
            result[row, : len(ids)] = torch.tensor(ids)
        return result


@functools.lru_cache(maxsize=None)
def default_tokenizer() -> Tokenizer:
    """The shared Tokenizer on the shipped vocabulary, built on first use (it takes ~0.3 s)."""
    return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = 77) -> torch.LongTensor:
    """Tokenize with the shared default Tokenizer; same ids as `open_clip.tokenize`."""
    return default_tokenizer()(texts, context_length)


def trim_padding(token_ids: torch.Tensor) -> torch.Tensor:
    """Token ids ``[..., length]`` cut after the last end-of-text token (the highest id) of any sequence.

    The text tower attends causally and pools at EOT, so the padding after the longest
    sequence's EOT never changes an output: dropping it is exact.
    """
    return token_ids[..., : int(token_ids.argmax(dim=-1).max()) + 1]
