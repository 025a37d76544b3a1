"""Language backbones for grounding (GLIP's text encoder): per-token features with a padding mask, and each token's
character offsets, so that phrases given as character spans (:mod:`lit_clip.grounding`) find their tokens.

- :class:`BertBackbone`: BERT from transformers, as GLIP: a pretrained one by hub id or folder
  ("bert-base-uncased"), or a small random-initialised one for a CPU, whose tokenizer is built offline from a word
  list (:func:`word_vocabulary`).
- :class:`CLIPTextBackbone`: a CLIP's text tower (any checkpoint ``lit_clip.load_clip`` reads) with CLIP's BPE
  tokenizer, every token's output after ``ln_final``. GLIP's code has this option too (its ``MODEL_TYPE "clip"``).
  The tower is causal: a token has seen only the words before it, so a name's last word carries the whole name
  ("circle" in "red circle" has seen "red"). Its context is CLIP's 77 tokens.

Both offer ``tokenize(captions)``, ``forward(input_ids, attention_mask)``, ``width``, ``layer_config`` (the
``BertConfig`` of the BERT layers GLIP's fusion blocks put on the text) and ``token_names(ids)``; BERT's also
``mask_token_id`` and ``vocab_size`` for masked language modelling.
"""
from __future__ import annotations

import string
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizerFast, PreTrainedTokenizerFast

from lit_clip.checkpoints import load_clip
from lit_clip.tokenizer import default_tokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def word_vocabulary(words: Sequence[str]) -> list[str]:
    """A WordPiece vocabulary of the special tokens, ``words`` whole, and every letter, digit and punctuation mark
    alone and as a continuation ("##e"), with the plural ending "##es": any text tokenizes, a word of the list as
    one token, any other spelt in pieces ("stars" -> "star", "##s" when only "star" is listed)."""
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


class BertBackbone(nn.Module):
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

    @property
    def layer_config(self) -> BertConfig:
        return self.model.config

    @property
    def mask_token_id(self) -> int:
        return self.tokenizer.mask_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def token_names(self, ids: Sequence[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(list(ids))

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


class CLIPTextBackbone(nn.Module):
    """A CLIP text tower's per-token features ``[B, L, width]`` (after ``ln_final``, before the projection) and
    CLIP's tokenizer; captions are cut at the tower's context (77 tokens), the last kept token made end-of-text.
    The fusion blocks' BERT layers get its width and a head per 64 channels."""

    def __init__(self, pretrained: str, architecture: str | None = None):
        super().__init__()
        self.model = load_clip(pretrained, architecture=architecture)
        self.max_length = self.model.positional_embedding.shape[0]
        # Only the text tower is used (and trained): the image tower is left out of the module.
        del self.model.visual

    @property
    def width(self) -> int:
        return self.model.ln_final.normalized_shape[0]

    @property
    def layer_config(self) -> BertConfig:
        return BertConfig(hidden_size=self.width, num_attention_heads=max(1, self.width // 64),
                          intermediate_size=4 * self.width)  # fmt: skip

    def token_names(self, ids: Sequence[int]) -> list[str]:
        return [default_tokenizer().decode([int(i)]).strip() for i in ids]

    def tokenize(self, captions: Sequence[str]) -> dict[str, Tensor]:
        """As :meth:`BertBackbone.tokenize`: start of text, the tokens, end of text, zeros; offsets (0, 0) for the
        special and padding tokens."""
        tokenizer = default_tokenizer()
        rows = [tokenizer.encode_with_offsets(caption) for caption in captions]
        length = min(self.max_length, max(len(ids) for ids, _ in rows) + 2)
        input_ids = torch.zeros(len(rows), length, dtype=torch.long)
        offsets = torch.zeros(len(rows), length, 2, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.long)
        for row, (ids, spans) in enumerate(rows):
            ids, spans = ids[: length - 2], spans[: length - 2]
            input_ids[row, : len(ids) + 2] = torch.tensor([tokenizer.sot_token_id, *ids, tokenizer.eot_token_id])
            offsets[row, 1 : len(ids) + 1] = torch.tensor(spans, dtype=torch.long).reshape(-1, 2)
            mask[row, : len(ids) + 2] = 1
        device = self.model.token_embedding.weight.device
        return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "offsets": offsets}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        tokens, _ = self.model.encode_text_tokens(input_ids, project=False)
        return tokens * attention_mask.unsqueeze(-1).to(tokens.dtype)


def language_backbone(
    text_encoder: str | None, kind: str = "bert", words: Sequence[str] = (), width: int = 768, layers: int = 12,
    heads: int = 12, max_length: int = 256,
) -> BertBackbone | CLIPTextBackbone:  # fmt: skip
    """The text encoder of ``kind`` "bert" (``text_encoder`` a BERT's hub id or folder; None: a random one of the
    other arguments) or "clip" (``text_encoder`` a CLIP checkpoint)."""
    if kind == "clip":
        if text_encoder is None:
            raise ValueError("text_encoder_type 'clip' reads the text tower of a CLIP checkpoint: give its path")
        return CLIPTextBackbone(text_encoder)
    if kind != "bert":
        raise ValueError(f"text_encoder_type must be 'bert' or 'clip', not {kind!r}")
    return BertBackbone(text_encoder, words, width, layers, heads, max_length)
