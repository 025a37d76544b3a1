"""ClipCap (Mokady et al., 2021, "ClipCap: CLIP Prefix for Image Captioning"; rmokady/CLIP_prefix_caption): CLIP's
image embedding mapped to a prefix of word embeddings from which a GPT-2 writes the caption.

1. **Image embedding.** The frozen CLIP's ``encode_image`` (the official code: ViT-B/32), not normalised (the
   official ``--normalize_prefix`` is an option).
2. **Mapping** to ``prefix_length`` embeddings of the language model's width ``D``:
   - ``mlp`` (the official default): ``Linear(clip -> prefix_length * D / 2) -> Tanh -> Linear(-> prefix_length *
     D)``, with the language model fine-tuned;
   - ``transformer`` (the official ``--only_prefix`` recipe): ``Linear(clip -> clip_length * D)`` as
     ``clip_length`` tokens, followed by ``prefix_length`` learnt constant tokens, through ``mapping_layers``
     pre-norm transformer layers (8 heads, MLP 2 D, ReLU, no dropout, queries / keys / values without bias); the
     constants' outputs are the prefix, and the language model stays frozen.
3. **Language model**: the prefix, then the caption's token embeddings; cross-entropy on the caption's tokens
   (each predicted from the prefix and the tokens before it). AdamW 2e-5 (no weight decay), 5000 warmup steps then
   linear decay to 0.
4. **Decoding**: beam search (5 beams) ranked by mean log-probability per token, or greedy (``beam_size`` 1).

The language model is a Hugging Face causal LM (``language_model``: a hub id or folder, e.g. "gpt2", with its
``tokenizer``), or a GPT-2 of a given configuration with random weights over the data module's word vocabulary
(``tokenizer`` None): the CPU-sized one of the ShapesWorld config.

Deliberate differences, where the user should know them:

- Captions end with the end token (GPT-2's ``<|endoftext|>``, or ``<eos>`` of the word vocabulary) and decoding
  stops at it; the official captions have no end token and decoding stops at a ".".
- Padding is ignored by the loss; the official loss ignores token 0, which is padding but also GPT-2's "!".
- Each image is trained with all its training captions in a batch (``references_per_image``); the official code
  stores the embedding once per caption and shuffles captions.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel
from transformers import get_linear_schedule_with_warmup

from lit_clip.datamodules.captioning import END_ID, PAD_ID
from lit_clip.methods.vl import decoding
from lit_clip.methods.vl.captioning import CaptioningMethod, with_end


# --- the mapping networks -----------------------------------------------------------------------------------------
class MLPMapper(nn.Sequential):
    def __init__(self, clip_dim: int, width: int, prefix_length: int):
        out = width * prefix_length
        super().__init__(nn.Linear(clip_dim, out // 2), nn.Tanh(), nn.Linear(out // 2, out))
        self.width = width

    def forward(self, embedding: Tensor) -> Tensor:
        return super().forward(embedding).unflatten(-1, (-1, self.width))


class MapperLayer(nn.Module):
    """The official mapper's pre-norm transformer layer."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.to_queries = nn.Linear(width, width, bias=False)
        self.to_keys_values = nn.Linear(width, 2 * width, bias=False)
        self.project = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        queries = self.to_queries(h).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        keys, values = self.to_keys_values(h).unflatten(-1, (2, self.heads, -1)).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(queries, keys, values)
        x = x + self.project(attended.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x))


class TransformerMapper(nn.Module):
    def __init__(self, clip_dim: int, width: int, prefix_length: int, clip_length: int, layers: int, heads: int = 8):
        super().__init__()
        self.clip_length, self.width = clip_length, width
        self.linear = nn.Linear(clip_dim, clip_length * width)
        self.prefix_const = nn.Parameter(torch.randn(prefix_length, width))
        self.layers = nn.ModuleList(MapperLayer(width, heads) for _ in range(layers))

    def forward(self, embedding: Tensor) -> Tensor:
        tokens = self.linear(embedding).unflatten(-1, (self.clip_length, self.width))
        x = torch.cat([tokens, self.prefix_const.expand(len(tokens), -1, -1)], dim=1)
        for layer in self.layers:
            x = layer(x)
        return x[:, self.clip_length :]


# --- the method ---------------------------------------------------------------------------------------------------
class ClipCap(CaptioningMethod):
    """ClipCap on a frozen CLIP; the data module gives the word vocabulary (``words``), used where ``tokenizer`` is
    None."""

    def __init__(
        self,
        pretrained: str | None = None,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        language_model: str | dict[str, Any] = "gpt2",
        tokenizer: str | None = "gpt2",
        mapping: Literal["mlp", "transformer"] = "mlp",
        prefix_length: int = 10,
        clip_length: int = 10,
        mapping_layers: int = 8,
        train_language_model: bool | None = None,
        normalize_prefix: bool = False,
        lr: float = 2e-5,
        warmup_steps: int = 5000,
        max_tokens: int = 67,
        beam_size: int = 5,
        with_meteor: bool = False,
        pictures: int = 8,
    ):
        """
        Args:
            pretrained: the CLIP whose image embedding is mapped (see :func:`lit_clip.load_clip`; the official code:
                ViT-B/32); None: a randomly initialised CLIP of ``architecture`` (a baseline), which checkpoints keep.
            architecture, quick_gelu: see :func:`lit_clip.load_clip`.
            language_model: a Hugging Face causal LM (hub id or folder; the official: "gpt2"), or a dict of
                ``GPT2Config`` settings for a GPT-2 with random weights (its vocabulary: the tokenizer's or the data
                module's words).
            tokenizer: the language model's tokenizer (hub id or folder); None: the data module's words.
            mapping: "mlp" or "transformer" (see the module's description).
            prefix_length, clip_length, mapping_layers: prefix tokens; the transformer mapper's CLIP tokens and
                layers (official: 10, 10, 8; the README's transformer recipe: 40, 40, 8).
            train_language_model: fine-tune the language model; None: with the MLP mapping only (as the official).
            normalize_prefix: L2-normalise the CLIP embedding first.
            lr, warmup_steps: AdamW's peak learning rate and its linear warmup (official: 2e-5, 5000).
            max_tokens: tokens written at most (official: 67).
            beam_size: beams of evaluation's decoding (official: 5); 1 is greedy.
            with_meteor: score METEOR too (Java; seconds per evaluation).
            pictures: validation images drawn with their captions in TensorBoard.
        """
        super().__init__(pretrained, architecture, quick_gelu, with_meteor, pictures)
        self.save_hyperparameters()
        if mapping not in ("mlp", "transformer"):
            raise ValueError(f"mapping must be 'mlp' or 'transformer', got {mapping!r}")
        self.train_language_model = mapping == "mlp" if train_language_model is None else train_language_model
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer) if tokenizer is not None else None
        self.language_model: nn.Module | None = None
        self.mapper: nn.Module | None = None

    # --- the model ----------------------------------------------------------------------------------------------
    def build(self) -> None:
        h = self.hparams
        if isinstance(h.language_model, str):
            self.language_model = AutoModelForCausalLM.from_pretrained(h.language_model)
            if not self.train_language_model:  # loaded from its own files again: left out of checkpoints
                self.frozen_modules = (*self.frozen_modules, "language_model")
        else:
            vocabulary = len(self.tokenizer) if self.tokenizer is not None else len(self.words)
            ends = {"bos_token_id": self.end_id, "eos_token_id": self.end_id}  # GPT-2's own ids are its vocabulary's
            self.language_model = GPT2LMHeadModel(GPT2Config(**{**ends, **dict(h.language_model),
                                                                "vocab_size": vocabulary}))  # fmt: skip
        self.language_model.requires_grad_(self.train_language_model)
        width = self.language_model.get_input_embeddings().embedding_dim
        clip_dim = self.model.config.embed_dim
        if h.mapping == "mlp":
            self.mapper = MLPMapper(clip_dim, width, h.prefix_length)
        else:
            self.mapper = TransformerMapper(clip_dim, width, h.prefix_length, h.clip_length, h.mapping_layers)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.language_model is not None and not self.train_language_model:
            self.language_model.eval()  # frozen as the official only_prefix: no dropout
        return self

    @property
    def end_id(self) -> int:
        return self.tokenizer.eos_token_id if self.tokenizer is not None else END_ID

    def prefix(self, images: Tensor) -> Tensor:
        """``[B, prefix_length, D]``: the images' CLIP embeddings mapped to word embeddings."""
        with torch.no_grad():
            embedding = self.model.encode_image(images).float()
        if self.hparams.normalize_prefix:
            embedding = F.normalize(embedding, dim=-1)
        return self.mapper(embedding)

    def next_token_logits(self, prefix: Tensor, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """``[N, prefix_length + t, vocabulary]`` logits of the language model reading the prefix, then the tokens."""
        embeddings = torch.cat([prefix, self.language_model.get_input_embeddings()(tokens)], dim=1)
        if mask is not None:
            mask = F.pad(mask.long(), (prefix.shape[1], 0), value=1)
        return self.language_model(inputs_embeds=embeddings, attention_mask=mask).logits

    def caption_tokens(self, batch: dict) -> Tensor:
        """``[B * R, t]`` the training captions' tokens, each followed by the end token, padded with 0."""
        if self.tokenizer is None:
            return with_end(batch["captions"].flatten(0, 1))
        texts = [text for captions in batch["caption_text"] for text in captions]
        encoded = [ids[: self.hparams.max_tokens - 1] + [self.end_id]
                   for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]  # fmt: skip
        tokens = torch.zeros(len(encoded), max(map(len, encoded)), dtype=torch.long, device=batch["image"].device)
        for row, ids in enumerate(encoded):
            tokens[row, : len(ids)] = torch.tensor(ids)
        return tokens

    def token_lengths(self, tokens: Tensor) -> Tensor:
        """How many tokens each row has, its end token included (0 pads after it)."""
        is_end = tokens == self.end_id
        return torch.where(is_end.any(dim=1), is_end.float().argmax(dim=1) + 1, tokens.shape[1])

    # --- training -----------------------------------------------------------------------------------------------
    def caption_loss(self, batch: dict) -> Tensor:
        """The cross-entropy of the training captions' tokens (and ends), each given the prefix and the tokens
        before it; the mean over tokens."""
        tokens = self.caption_tokens(batch)
        per_image = len(tokens) // len(batch["image"])
        prefix = self.prefix(batch["image"]).repeat_interleave(per_image, dim=0)
        real = torch.arange(tokens.shape[1], device=tokens.device) < self.token_lengths(tokens)[:, None]
        logits = self.next_token_logits(prefix, tokens, real)[:, prefix.shape[1] - 1 : -1]
        return F.cross_entropy(logits.float().flatten(0, 1), tokens.masked_fill(~real, -100).flatten())

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.caption_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    # --- captions -----------------------------------------------------------------------------------------------
    def generate(self, batch: dict) -> Tensor:
        h = self.hparams
        prefix = self.prefix(batch["image"])
        pad = PAD_ID if self.tokenizer is None else self.end_id

        def next_logprobs(rows: Tensor, words: Tensor) -> Tensor:  # words[:, 0] is the start: the prefix itself
            logprobs = self.next_token_logits(prefix[rows], words[:, 1:])[:, -1].float().log_softmax(dim=-1)
            if self.tokenizer is None:  # padding is never written
                logprobs = logprobs.index_fill(1, torch.tensor(PAD_ID, device=logprobs.device), float("-inf"))
            return logprobs

        common = dict(images=len(prefix), start=self.end_id, end=self.end_id, pad=pad, max_length=h.max_tokens,
                      device=prefix.device)  # fmt: skip
        if h.beam_size == 1:
            return decoding.greedy(next_logprobs, **common)
        return decoding.beam_search(next_logprobs, beam_size=h.beam_size, length_normalised=True, **common)

    def to_text(self, ids: Tensor) -> list[str]:
        if self.tokenizer is None:
            return super().to_text(ids)
        rows = [row[: int(length)] for row, length in zip(ids.tolist(), self.token_lengths(ids))]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in rows]

    # --- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        h = self.hparams
        parameters = [p for p in [*self.mapper.parameters(), *self.language_model.parameters()] if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=h.lr, weight_decay=0.0)
        schedule = get_linear_schedule_with_warmup(optimizer, h.warmup_steps, self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
