"""CLIP-ViL's captioning (Shen et al., 2021; clip-vil/CLIP-ViL, CLIP-ViL-Direct/caption, a fork of
ruotianluo/self-critical.pytorch): a transformer that writes captions from CLIP's grid features.

1. **Grid features.** The frozen image tower's last feature map before pooling (CLIP-ViL: images resized to
   448 x 448, a ResNet's 14 x 14 layer4 map of 2048 or 2560 channels), its cells a sequence, no positions added.
2. **Embedding.** Each cell through ``Linear -> ReLU -> Dropout(0.5)`` to the model's width.
3. **Transformer** (the Annotated Transformer, as ruotianluo's ``TransformerModel``): an encoder of ``layers``
   self-attention blocks over the cells and a decoder of ``layers`` blocks (masked self-attention over the words so
   far, attention to the encoded cells, a feed-forward block), each sublayer ``x + dropout(sublayer(norm(x)))``, a
   final norm after each stack; words embedded times sqrt(width) plus sinusoidal positions; a linear map and a
   log-softmax over the vocabulary. Xavier-uniform initialisation.
4. **Cross-entropy** over every training caption of an image (5 per image), the mean over words, the end word
   included; Adam (0.9, 0.98, eps 1e-9) with the Noam schedule ``factor * width^-0.5 * min(step^-0.5,
   step * warmup^-1.5)``.
5. **Self-critical sequence training** (Rennie et al., 2017) from epoch ``self_critical_after`` on: for each image,
   ``samples`` captions drawn from the model (train mode) and the greedy caption (eval mode) as the baseline;
   reward = CIDEr-D(sample) - CIDEr-D(greedy) against all the image's references, with document frequencies from
   the training references (word strings with the end word, as ruotianluo's id strings); loss = minus the
   reward-weighted log-probability of the sampled words, the mean over words. A fresh Adam (0.9, 0.999, eps 1e-8)
   at the constant ``scst_lr``, as CLIP-ViL's second stage.
6. **Decoding** at most ``max_length`` words (20), greedy (``beam_size`` 1, ruotianluo's default) or beam search.

Deliberate differences, where the user should know them:

- The two stages are one run here (``self_critical_after`` epochs of cross-entropy, then SCST, as ruotianluo's own
  ``self_critical_after`` option); CLIP-ViL ran them as two, the second resuming the first's weights.
- The samples are drawn without gradient and scored again by teacher forcing (the same words and probabilities,
  new dropout masks), not back-propagated through the sampling loop.
- Padding is never written; ids 0, 1 and 2 are padding, unknown and end (ruotianluo: 0 for padding, start and end).
- Gradient clipping by value (0.1) and the COCO settings are the configs' (``configs/captioning/coco_*.yaml``).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.datamodules.captioning import END, END_ID, PAD_ID, UNKNOWN
from lit_clip.metrics.captioning import CIDErD, tokenize_caption
from lit_clip.methods.vl import decoding
from lit_clip.methods.vl.attention import FeedForward, LayerNorm, MultiHeadAttention
from lit_clip.methods.vl.captioning import CaptioningMethod, with_end


# --- the Annotated Transformer, pre-norm ----------------------------------------------------------------------------
class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.self_attn, self.feed_forward = MultiHeadAttention(hidden, heads, dropout), FeedForward(hidden, ff, dropout)
        self.norm1, self.norm2, self.dropout = LayerNorm(hidden), LayerNorm(hidden), nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, None))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.self_attn = MultiHeadAttention(hidden, heads, dropout)
        self.src_attn = MultiHeadAttention(hidden, heads, dropout)
        self.feed_forward = FeedForward(hidden, ff, dropout)
        self.norm1, self.norm2, self.norm3 = LayerNorm(hidden), LayerNorm(hidden), LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, mask: Tensor | None, earlier: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """The words ``x`` attend to themselves and to the ``earlier`` words' normed inputs where given (decoding one
        word at a time); returns the output and the normed inputs of all the words so far."""
        h = self.norm1(x)
        context = h if earlier is None else torch.cat([earlier, h], dim=1)
        x = x + self.dropout(self.self_attn(context, context, h, mask))
        x = x + self.dropout(self.src_attn(memory, memory, self.norm2(x), None))
        return x + self.dropout(self.feed_forward(self.norm3(x))), context


def sinusoidal_positions(length: int, width: int, device: torch.device) -> Tensor:
    """``[length, width]``: sin on even, cos on odd channels at wavelengths up to 10000 * 2 pi."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, device=device).float() * (-math.log(10000.0) / width))
    table = torch.zeros(length, width, device=device)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return table


class CaptionTransformer(nn.Module):
    """Grid features ``[B, cells, visual_dim]`` to the next-word log-probabilities of captions."""

    def __init__(self, words: int, visual_dim: int, hidden: int = 512, layers: int = 6, heads: int = 8,
                 ff: int = 2048, dropout: float = 0.1, embed_dropout: float = 0.5):  # fmt: skip
        super().__init__()
        self.hidden = hidden
        self.att_embed = nn.Sequential(nn.Linear(visual_dim, hidden), nn.ReLU(), nn.Dropout(embed_dropout))
        self.encoder = nn.ModuleList(EncoderLayer(hidden, heads, ff, dropout) for _ in range(layers))
        self.encoder_norm = LayerNorm(hidden)
        self.word_embedding = nn.Embedding(words, hidden)
        self.embedding_dropout = nn.Dropout(dropout)
        self.decoder = nn.ModuleList(DecoderLayer(hidden, heads, ff, dropout) for _ in range(layers))
        self.decoder_norm = LayerNorm(hidden)
        self.generator = nn.Linear(hidden, words)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def encode(self, grid: Tensor) -> Tensor:
        x = self.att_embed(grid)
        for layer in self.encoder:
            x = layer(x)
        return self.encoder_norm(x)

    def embed(self, words: Tensor, first_position: int = 0) -> Tensor:
        positions = sinusoidal_positions(first_position + words.shape[1], self.hidden, words.device)[first_position:]
        return self.embedding_dropout(self.word_embedding(words) * math.sqrt(self.hidden) + positions)

    def forward(self, memory: Tensor, words: Tensor) -> Tensor:
        """``[N, t, vocabulary]`` log-probabilities of each next word, ``words`` ``[N, t]`` (the first the start)
        attending to their own ``memory`` row ``[N, cells, hidden]``."""
        length = words.shape[1]
        later = torch.ones(length, length, dtype=torch.bool, device=words.device).triu(1)
        mask = later[None] | (words == PAD_ID)[:, None, :]
        x = self.embed(words)
        for layer in self.decoder:
            x, _ = layer(x, memory, mask)
        return self.generator(self.decoder_norm(x)).log_softmax(dim=-1)

    def step(self, memory: Tensor, words: Tensor, cache: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The next word's log-probabilities ``[N, vocabulary]`` after ``words`` ``[N, t]``, computing only the
        last word: ``cache`` holds each layer's normed inputs of the earlier ones (empty at the start)."""
        x = self.embed(words[:, -1:], first_position=words.shape[1] - 1)
        contexts = []
        for k, layer in enumerate(self.decoder):
            x, context = layer(x, memory, None, cache[k] if cache else None)
            contexts.append(context)
        return self.generator(self.decoder_norm(x[:, -1])).log_softmax(dim=-1), contexts


class CachedDecoding:
    """The captioner's next-word log-probabilities for :mod:`~lit_clip.methods.vl.decoding`, one new word per call
    (the earlier words' layer inputs kept, reordered with beam search's beams); padding is never written."""

    def __init__(self, captioner: CaptionTransformer, memory: Tensor):
        self.captioner, self.memory = captioner, memory
        self.cache: list[Tensor] = []
        self.rows_memory = memory

    def __call__(self, rows: Tensor, words: Tensor) -> Tensor:
        if words.shape[1] == 1:  # a new decoding
            self.cache, self.rows_memory = [], self.memory[rows]
        logprobs, self.cache = self.captioner.step(self.rows_memory, words, self.cache)
        return logprobs.float().index_fill(1, torch.tensor(PAD_ID, device=logprobs.device), float("-inf"))

    def reorder(self, source: Tensor) -> None:
        self.cache = [context[source] for context in self.cache]


def noam_rate(step: int, hidden: int, warmup: int, factor: float) -> float:
    """The Noam schedule's learning rate at (1-based) ``step``."""
    return factor * hidden**-0.5 * min(step**-0.5, step * warmup**-1.5)


# --- the method ---------------------------------------------------------------------------------------------------
class TransformerCaptioning(CaptioningMethod):
    """CLIP-ViL's captioner on a frozen CLIP image tower's grid features; the data module gives the word vocabulary
    (``words``) and, for self-critical training, the training references (``training_references()``)."""

    def __init__(
        self,
        pretrained: str | None = None,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        input_size: int | tuple[int, int] | None = None,
        hidden: int = 512,
        layers: int = 6,
        heads: int = 8,
        ff: int = 2048,
        dropout: float = 0.1,
        embed_dropout: float = 0.5,
        noam_warmup: int = 20_000,
        noam_factor: float = 1.0,
        self_critical_after: int | None = None,
        scst_lr: float = 5e-6,
        samples: int = 5,
        max_length: int = 20,
        beam_size: int = 1,
        with_meteor: bool = False,
        pictures: int = 8,
    ):
        """
        Args:
            pretrained: the CLIP whose image tower gives the grid (see :func:`lit_clip.load_clip`); None: a randomly
                initialised CLIP of ``architecture`` (the baseline CLIP-ViL's claim is measured against), which
                checkpoints then keep.
            architecture, quick_gelu: see :func:`lit_clip.load_clip`.
            input_size: the size images are resized to before the tower, ``(height, width)`` or a side (CLIP-ViL:
                448); a larger input gives a finer grid. None: as they come.
            hidden, layers, heads, ff, dropout: the transformer's width, encoder and decoder depth, heads,
                feed-forward width and dropout (CLIP-ViL: 512, 6, 8, 2048, 0.1).
            embed_dropout: dropout after the grid's embedding (ruotianluo's ``drop_prob_lm``: 0.5).
            noam_warmup, noam_factor: the Noam schedule of the cross-entropy stage (CLIP-ViL: 20000, 1).
            self_critical_after: the epoch self-critical training starts at; None: cross-entropy only.
            scst_lr: Adam's constant learning rate in self-critical training (CLIP-ViL: 5e-6).
            samples: captions sampled per image in self-critical training (CLIP-ViL: 5).
            max_length: words written at most (ruotianluo: 20).
            beam_size: beams of evaluation's decoding; 1 is greedy.
            with_meteor: score METEOR too (Java; seconds per evaluation).
            pictures: validation images drawn with their captions in TensorBoard.
        """
        super().__init__(pretrained, architecture, quick_gelu, with_meteor, pictures)
        self.save_hyperparameters()
        self.captioner: CaptionTransformer | None = None
        self.cider: CIDErD | None = None

    def build(self) -> None:
        h = self.hparams
        visual_dim = self.model.visual.feature_info[-1]["num_chs"]
        self.captioner = CaptionTransformer(len(self.words), visual_dim, h.hidden, h.layers, h.heads, h.ff,
                                            h.dropout, h.embed_dropout)  # fmt: skip

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.hparams.self_critical_after is not None and self.cider is None:
            documents = self.trainer.datamodule.training_references()
            self.cider = CIDErD(document_references=[self.reward_tokens(refs) for refs in documents])

    # --- the model ----------------------------------------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        return self.captioner.encode(self.grid(images))

    def grid(self, images: Tensor) -> Tensor:
        return self.grid_features(images, self.hparams.input_size)

    def next_word(self, memory: Tensor) -> CachedDecoding:
        return CachedDecoding(self.captioner, memory)

    def decoding_options(self, memory: Tensor) -> dict:
        """What every decoding of ``memory``'s images shares: captions start and end with ``<eos>``, at most
        ``max_length`` words."""
        return dict(images=len(memory), start=END_ID, end=END_ID, pad=PAD_ID, max_length=self.hparams.max_length,
                    device=memory.device)  # fmt: skip

    def generate(self, batch: dict) -> Tensor:
        memory = self.encode(batch["image"])
        if self.hparams.beam_size == 1:
            return decoding.greedy(self.next_word(memory), **self.decoding_options(memory))
        return decoding.beam_search(self.next_word(memory), beam_size=self.hparams.beam_size,
                                    **self.decoding_options(memory))  # fmt: skip

    def word_logprobs(self, memory: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: each word's log-probability ``[N, t]`` for captions ``targets`` ``[N, t]`` (word ids, each
        ended by ``<eos>`` or cut at ``t``, padded with 0) read after the start word, and the mask of the real words."""
        inputs = F.pad(targets[:, :-1], (1, 0), value=END_ID)
        logprobs = self.captioner(memory, inputs)
        return logprobs.gather(2, targets[..., None])[..., 0], targets != PAD_ID

    # --- training -----------------------------------------------------------------------------------------------
    def self_critical(self) -> bool:
        after = self.hparams.self_critical_after
        return after is not None and self.current_epoch >= after

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if self.self_critical():
            return self.self_critical_step(batch)
        captions = batch["captions"]  # [B, R, t]
        memory = self.encode(batch["image"]).repeat_interleave(captions.shape[1], dim=0)
        logprobs, mask = self.word_logprobs(memory, with_end(captions.flatten(0, 1)))
        loss = -(logprobs * mask).sum() / mask.sum()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def self_critical_step(self, batch: dict) -> Tensor:
        h = self.hparams
        grid = self.grid(batch["image"])  # the frozen tower once; the grid embedded in train and in eval mode
        memory = self.captioner.encode(grid)
        with torch.no_grad():
            self.captioner.eval()
            baseline = decoding.greedy(self.next_word(self.captioner.encode(grid)), **self.decoding_options(memory))
            self.captioner.train()
            samples = decoding.sample(self.next_word(memory), per_image=h.samples, **self.decoding_options(memory))
        references = [self.reward_tokens(refs, batch["captions"].shape[-1]) for refs in batch["references"]]
        sampled = self.cider.scores([refs for refs in references for _ in range(h.samples)], self.id_tokens(samples))
        greedy = self.cider.scores(references, self.id_tokens(baseline))
        reward = torch.tensor(sampled) - torch.tensor(greedy).repeat_interleave(h.samples)
        reward = reward.to(memory.device)
        # The sampled words up to and including the first end word (0 pads after it), scored again with gradient.
        logprobs, mask = self.word_logprobs(memory.repeat_interleave(h.samples, dim=0), samples)
        loss = -(logprobs * reward[:, None] * mask).sum() / mask.sum()
        size = len(memory)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({"train/sample_cider": sum(sampled) / len(sampled), "train/greedy_cider": sum(greedy) / size},
                      batch_size=size)  # fmt: skip
        return loss

    def reward_tokens(self, references: Sequence[str], max_words: int | None = None) -> list[list[str]]:
        """References as self-critical training compares them: vocabulary words (unknown ones as ``<unk>``), cut to
        ``max_words`` as the training captions are, then the end word."""
        known = set(self.words)
        return [[word if word in known else UNKNOWN for word in tokenize_caption(ref)][:max_words] + [END]
                for ref in references]  # fmt: skip

    def id_tokens(self, ids: Tensor) -> list[list[str]]:
        """Written captions as vocabulary words, with the end word where they have one (ruotianluo's id strings)."""
        ended = (ids == END_ID).any(dim=1).tolist()
        return [[*caption.split(), *([END] if end else [])] for caption, end in zip(self.to_text(ids), ended)]

    # --- optimisation -------------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        if not self.self_critical():
            return
        optimizer = self.optimizers().optimizer
        if tuple(optimizer.param_groups[0]["betas"]) != (0.9, 0.999):  # the switch, not a resumption after it
            optimizer.state.clear()
            for group in optimizer.param_groups:
                group["betas"], group["eps"], group["lr"] = (0.9, 0.999), 1e-8, self.hparams.scst_lr

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.Adam(self.captioner.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)

        def rate(step: int) -> float:  # absolute: Adam's lr is 1
            if self.self_critical():
                return h.scst_lr
            return noam_rate(step + 1, h.hidden, h.noam_warmup, h.noam_factor)

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
