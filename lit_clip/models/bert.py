"""BERT as a language backbone (GLIP's text encoder), from transformers: a pretrained one by hub id or folder, or a
small random-initialised one for a CPU, whose tokenizer is built offline from a word list.

Both give per-token features with a padding mask, and the character offsets of each token so that phrases given
as character spans (:mod:`lit_clip.grounding`) find their tokens.
"""
from __future__ import annotations

import string
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizerFast, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def word_vocabulary(words: Sequence[str]) -> list[str]:
    """A WordPiece vocabulary of the special tokens, ``words`` whole, and every letter, digit and punctuation mark
    alone and as a continuation ("##e"), with the plural endings "##s" and "##es": any text tokenizes, a word of
    the list as one token, any other spelt in pieces ("stars" -> "star", "##s" when only "star" is listed)."""
    characters = string.ascii_lowercase + string.digits
    for word in words:
        if not word or any(c.isspace() for c in word):
            raise ValueError(f"vocabulary words must be single words, got {word!r}")
    pieces = [*SPECIAL_TOKENS, *string.punctuation, *characters, *(f"##{c}" for c in characters), "##es"]
    return list(dict.fromkeys([*pieces, *(word.lower() for word in words)]))  # each piece once, in order


def word_tokenizer(words: Sequence[str]) -> BertTokenizerFast:
    """BERT's uncased tokenizer over :func:`word_vocabulary` of ``words`` (built offline, no download)."""
    vocabulary = {piece: i for i, piece in enumerate(word_vocabulary(words))}
    return BertTokenizerFast(vocab=vocabulary, do_lower_case=True)


class LanguageBackbone(nn.Module):
    """BERT's per-token features ``[B, L, width]`` of captions, and its tokenizer.

    ``pretrained``: a transformers hub id or folder of a BERT ("bert-base-uncased", GLIP's); or None for a random-
    initialised BERT of ``width``, ``layers`` and ``heads`` over :func:`word_vocabulary` of ``words`` (a CPU's).
    ``max_length``: captions are cut at this many tokens (GLIP's 256); a batch is padded to its longest.
    """

    def __init__(
        self,
        pretrained: str | None = "bert-base-uncased",
        words: Sequence[str] = (),
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        max_length: int = 256,
    ):
        super().__init__()
        self.max_length = max_length
        if pretrained is not None:
            self.tokenizer: PreTrainedTokenizerFast = AutoTokenizer.from_pretrained(pretrained, use_fast=True)
            self.model = AutoModel.from_pretrained(pretrained, add_pooling_layer=False)
            if not isinstance(self.model, BertModel):
                raise ValueError(f"{pretrained} is a {type(self.model).__name__}; expected a BERT (BertModel)")
        else:
            self.tokenizer = word_tokenizer(words)
            config = BertConfig(
                vocab_size=len(self.tokenizer), hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=4 * width, max_position_embeddings=max(512, max_length),
            )  # fmt: skip
            self.model = BertModel(config, add_pooling_layer=False)

    @property
    def width(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, captions: Sequence[str]) -> dict[str, Tensor]:
        """``input_ids`` and ``attention_mask`` ``[B, L]``, and ``offsets`` ``[B, L, 2]``: each token's characters in
        its caption ((0, 0) for special and padding tokens)."""
        encoded = self.tokenizer(list(captions), padding="longest", truncation=True, max_length=self.max_length,
                                 return_offsets_mapping=True, return_tensors="pt")  # fmt: skip
        device = self.model.embeddings.word_embeddings.weight.device
        return {"input_ids": encoded["input_ids"].to(device), "attention_mask": encoded["attention_mask"].to(device),
                "offsets": encoded["offset_mapping"]}  # fmt: skip

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The last layer's features of every token, zero at padding (as GLIP's ``embedded``)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)

    def extended_mask(self, attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
        """The additive mask ``[B, 1, 1, L]`` a BERT layer takes (0 for tokens, the dtype's minimum for padding)."""
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
