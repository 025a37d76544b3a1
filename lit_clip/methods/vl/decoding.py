"""Writing a caption word by word from a model's next-word log-probabilities: greedy, sampling and beam search.

Each takes ``next_logprobs(rows, words)``: ``rows`` ``[N]`` the image each partial caption is of, ``words``
``[N, t]`` the caption so far (the first word is ``start``), returning ``[N, vocabulary]`` log-probabilities of the
next word. A caption ends with the word ``end``; the ids after it are ``pad``. The captions come back without
their start, ``[N, max_length]``.

A ``next_logprobs`` may keep state from call to call (the earlier words' activations, to compute only the newest):
each decoding starts with ``words`` of one column, the rows stay in place, and beam search calls its ``reorder``
method, if it has one, with the rows each beam continues after re-ranking.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

NextLogprobs = Callable[[Tensor, Tensor], Tensor]


def _unroll(next_logprobs: NextLogprobs, rows: Tensor, start: int, end: int, pad: int, max_length: int,
            choose: Callable[[Tensor], Tensor]) -> Tensor:  # fmt: skip
    words = torch.full((len(rows), 1), start, dtype=torch.long, device=rows.device)
    ended = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
    for _ in range(max_length):
        chosen = choose(next_logprobs(rows, words)).masked_fill(ended, pad)
        words = torch.cat([words, chosen[:, None]], dim=1)
        ended |= chosen == end
        if ended.all():
            break
    return torch.nn.functional.pad(words[:, 1:], (0, max_length + 1 - words.shape[1]), value=pad)


def greedy(next_logprobs: NextLogprobs, images: int, start: int, end: int, pad: int, max_length: int,
           device: torch.device | str = "cpu") -> Tensor:  # fmt: skip
    """The most likely next word at every step: ``[images, max_length]``."""
    rows = torch.arange(images, device=device)
    return _unroll(next_logprobs, rows, start, end, pad, max_length, lambda logprobs: logprobs.argmax(dim=-1))


def sample(next_logprobs: NextLogprobs, images: int, start: int, end: int, pad: int, max_length: int,
           per_image: int = 1, temperature: float = 1.0, device: torch.device | str = "cpu") -> Tensor:  # fmt: skip
    """``per_image`` captions of each image drawn word by word from the softmax at ``temperature``:
    ``[images * per_image, max_length]``, an image's captions next to each other."""
    rows = torch.arange(images, device=device).repeat_interleave(per_image)

    def draw(logprobs: Tensor) -> Tensor:
        return torch.multinomial((logprobs / temperature).softmax(dim=-1), 1)[:, 0]

    return _unroll(next_logprobs, rows, start, end, pad, max_length, draw)


def beam_search(next_logprobs: NextLogprobs, images: int, start: int, end: int, pad: int, max_length: int,
                beam_size: int, length_normalised: bool = False,
                device: torch.device | str = "cpu") -> Tensor:  # fmt: skip
    """The caption of highest summed log-probability among ``beam_size`` kept at every step (``length_normalised``:
    kept and chosen by mean log-probability per word, ClipCap's ranking): ``[images, max_length]``. An ended caption
    stays in its beam, extended by padding at no cost, until every beam has ended or ``max_length`` words."""
    rows = torch.arange(images, device=device).repeat_interleave(beam_size)
    words = torch.full((len(rows), 1), start, dtype=torch.long, device=device)
    scores = torch.full((images, beam_size), float("-inf"), device=device)
    scores[:, 0] = 0.0  # the beams start as one caption, so the first step picks distinct words
    ended = torch.zeros(len(rows), dtype=torch.bool, device=device)
    lengths = torch.zeros(len(rows), device=device)
    first_of_image = torch.arange(images, device=device)[:, None] * beam_size
    for _ in range(max_length):
        logprobs = next_logprobs(rows, words).float()
        vocabulary = logprobs.shape[-1]
        padding_only = torch.full_like(logprobs[0], float("-inf")).index_fill_(0, torch.tensor(pad, device=device), 0)
        logprobs = torch.where(ended[:, None], padding_only, logprobs)
        candidates = (scores.reshape(-1, 1) + logprobs).reshape(images, beam_size * vocabulary)
        ranking = candidates
        if length_normalised:  # each candidate's words: its beam's, one more unless the beam has ended
            grown = (lengths + (~ended).float()).reshape(images, beam_size, 1).expand(-1, -1, vocabulary)
            ranking = candidates / grown.reshape(images, -1)
        chosen = ranking.topk(beam_size, dim=-1).indices
        scores = candidates.gather(1, chosen)
        source = (first_of_image + chosen // vocabulary).flatten()
        word = (chosen % vocabulary).flatten()
        lengths = lengths[source] + (~ended[source]).float()
        ended = ended[source] | (word == end)
        words = torch.cat([words[source], word[:, None]], dim=1)
        if hasattr(next_logprobs, "reorder"):
            next_logprobs.reorder(source)
        if ended.all():
            break
    ranking = scores / lengths.reshape(images, beam_size) if length_normalised else scores
    best = (first_of_image[:, 0] + ranking.argmax(dim=-1))
    return torch.nn.functional.pad(words[best, 1:], (0, max_length + 1 - words.shape[1]), value=pad)
