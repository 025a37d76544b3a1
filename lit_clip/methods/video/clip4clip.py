"""CLIP4Clip (Luo et al., 2021): text-video retrieval by fine-tuning CLIP on frames.

**Video and text encoders** (the paper's section 3). A clip's frames each go through CLIP's image tower, giving
frame features ``[B, T, D]`` in the joint space; a caption goes through CLIP's text tower, pooled at its
end-of-text token. The patches of a ViT tower are embedded per frame (``linear_patch="2d"``) or by a 3D
convolution across neighbouring frames (``"3d"``): CLIP's ``conv1`` inflated to a Conv3d of temporal kernel 3,
stride 1 and zero padding 1 in time (T frames in, T out), whose centre tap holds the 2D weights and whose other
taps start at zero, so training starts from CLIP's own embedding.

**Similarity calculator**, ``sim_header``:

- ``meanP`` (parameter-free): each frame feature L2-normalised, the mean over the real frames, normalised again;
  the score of a caption and a clip is their cosine times CLIP's logit scale ``exp(logit_scale)``.
- ``seqLSTM``: a one-layer LSTM over the real frames, its outputs added to the frame features (residual), then
  meanP.
- ``seqTransf``: frame position embeddings (initialised from the first rows of CLIP's text position embedding)
  added to the frame features, a transformer of ``cross_num_hidden_layers`` (4) non-causal blocks initialised as
  copies of CLIP's first text blocks, its output added to the frame features (residual), then meanP. Padding
  frames are never attended to.
- ``tightTransf`` (tight type): a cross-encoder over the sequence [caption embedding; frame features] (the
  caption as one token: CLIP's pooled text embedding, as in the paper and the code), position embeddings
  initialised from CLIP's text ones, type embeddings, a transformer initialised from CLIP's first text blocks,
  the first token's output through LayerNorm, Linear and QuickGELU, then ``Linear -> 1``: the score. Every
  caption-clip pair is its own sequence, so scoring B captions against B clips runs the cross-encoder B^2 times:
  training scores the local batch's B x B pairs (the official code does the same and gathers nothing for this
  header); evaluation computes the whole caption x clip matrix in chunks of ``eval_chunk_size`` captions.

**Training**: symmetric cross-entropy over the caption x clip score matrix, each caption picking its
clip and each clip its caption (the loose headers through :class:`lit_clip.losses.ClipLoss`: negatives gathered
from every process with gradient; one process gathers nothing). CLIP's logit scale is clamped to at most
``log 100`` after every step. The new modules train at ``lr`` (1e-4), CLIP at ``lr * coef_lr`` (1e-3: CLIP moves
1000x slower), weight decay 0.2 on everything whose name has no "bias", a linear warm-up over the first
``warmup_proportion`` (0.1) of the steps and a cosine decay. ``freeze_layer_num`` as the official script's
(``--freeze_layer_num 0`` in every published recipe): CLIP's parameters below that block index are frozen
(with 0, the patch and token embeddings, the position embeddings, the class token and ``ln_pre``), the top
(``ln_final``, ``text_projection``, ``logit_scale``, ``visual.ln_post``, ``visual.proj``) always trains; -1 freezes
nothing.

**Evaluation**: text->video and video->text retrieval, R@1/5/10, median and mean rank (``val/t2v_R@1``, ...,
``val/v2t_MnR``), as the official ``metrics.py``: with several captions per clip, each caption ranks the clips,
and each clip ranks the clips' caption sets, a set scoring the best of its captions. Under DDP every clip and
caption counts once (``gather_unique`` on ``index`` and ``text_index``); batches with several captions per clip
give ``text``, ``text_index`` and ``text_video_index`` (each caption's clip ``index``), as the image-caption
evaluation sets do (``lit_clip.batches.PairsBatch``). Each evaluation loader is its own retrieval problem, its
metrics prefixed with its set's name in the data module's ``evaluation_sets`` (``val/heldout_t2v_R@1``).

Official code: ArrowLuo/CLIP4Clip (``modules/modeling.py``, ``module_cross.py``, ``module_clip.py``,
``main_task_retrieval.py``, ``metrics.py``). Deliberate differences:

- Optimiser: torch's AdamW (betas 0.9/0.98, eps 1e-6 as the official) has Adam's bias correction; the official
  BertAdam has none, and clips each parameter's gradient norm to 1 inside the step. The official also clips the
  global gradient norm to 1: set the Trainer's ``gradient_clip_val: 1.0``.
- The schedule is BertAdam's ``warmup_cosine`` (the lr rises linearly from 0, then follows
  ``0.5 (1 + cos(pi * step / total))`` over the whole run, a small drop at the end of the warm-up), not
  :func:`lit_clip.optim.warmup_cosine_schedule`.
- Gradients under DDP are those of one process holding the global batch (``ClipLoss``, ``local_loss``); the
  official AllGather returns only each rank's slice of the gradient without summing over ranks, 1/world_size of
  that (the same direction, which Adam hardly sees).
- Padding frames: the official adds -1e6 to the attention scores of padding keys; here each group of clips of
  equal length runs on its real frames alone, which is the same up to exp(-1e6), and exact. Padding positions
  leave the temporal module unchanged (the official computes them; either way meanP drops them). The frame mask
  must be True on a prefix (padding last, as ``collate_videos`` pads), as the official's LSTM packing assumes. In
  3D mode padding frames are zeroed before the convolution, as the official's loader pads with zero frames, so
  padding never reaches a real frame's patches.
- The copied blocks keep CLIP's activation and LayerNorm epsilon (the official rebuilds them with QuickGELU and
  BERT's 1e-12: the same for OpenAI's weights up to the epsilon).
- tightTransf's type embeddings (in the paper; commented out in the official ``CrossEmbeddings``) start at zero,
  so the start is the official's. The official builds an unused frame position table for seqLSTM: not here.
- With ``linear_patch="3d"`` the official's freezing test ``name.find("conv2.")`` is true for nearly every name,
  so it freezes nothing; here the inflated convolution trains and the rest follows the rule (what it means).
- The official supports ViT towers only. Here a ResNet tower works with the 2D patch and ``freeze_layer_num=-1``
  (its parameters have no block numbers for the rule); seqTransf and tightTransf need the joint space as wide as
  the text tower (true of OpenAI's ViTs), whose blocks they copy.
"""
from __future__ import annotations

import contextlib
import copy
import math
import re
from typing import Iterator, Literal, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.optim.lr_scheduler import LambdaLR

from lit_clip.batches import VideoBatch
from lit_clip.checkpoints import load_clip, record_clip_geometry
from lit_clip.distributed import all_gather_rows, distributed_rank_and_size, gather_unique
from lit_clip.losses import ClipLoss
from lit_clip.methods.class_sets import evaluation_prefix
from lit_clip.methods.video.frames import encode_frames, masked_mean
from lit_clip.metrics import retrieval_ranks
from lit_clip.models import create_model
from lit_clip.models.clip import CLIP
from lit_clip.models.transformer import QuickGELU, Transformer, VisionTransformer
from lit_clip.optim import weight_decay_groups
from lit_clip.tokenizer import trim_padding

SIM_HEADERS = ("meanP", "seqLSTM", "seqTransf", "tightTransf")
MAX_LOGIT_SCALE = math.log(100)
TEMPORAL_KERNEL = 3
# The official freezing rule: these CLIP parameters always train (prefixes of their names).
ALWAYS_TRAINED = ("ln_final.", "text_projection", "logit_scale", "visual.ln_post.", "visual.proj")
BLOCK_NUMBER = re.compile(r"^(?:visual\.)?transformer\.resblocks\.(\d+)\.")


# --- the video encoder: frames, and the 3D patch embedding -------------------------------------------------------
class InflatedPatchEmbedding(nn.Conv3d):
    """A ViT tower's ``conv1`` inflated to time, in its place: a Conv3d of kernel ``(3, patch, patch)``, stride
    ``(1, patch, patch)``, zero padding 1 in time, the 2D weights at the centre tap and zeros at the others.

    The tower still gets ``[B * T, 3, H, W]`` frames; :meth:`clips_of` tells it T, so that it convolves each clip
    ``[3, T, H, W]`` and hands back ``[B * T, width, h, w]``. Without it, each image is a one-frame clip.
    """

    def __init__(self, conv1: nn.Conv2d):
        super().__init__(
            conv1.in_channels, conv1.out_channels, (TEMPORAL_KERNEL, *conv1.kernel_size), stride=(1, *conv1.stride),
            padding=(TEMPORAL_KERNEL // 2, 0, 0), bias=False, device=conv1.weight.device, dtype=conv1.weight.dtype,
        )  # fmt: skip
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:, :, TEMPORAL_KERNEL // 2] = conv1.weight
        self.frames = 1

    @contextlib.contextmanager
    def clips_of(self, frames: int) -> Iterator[None]:
        self.frames = frames
        try:
            yield
        finally:
            self.frames = 1

    def forward(self, images: Tensor) -> Tensor:
        if images.shape[0] % self.frames:
            raise ValueError(f"{images.shape[0]} frames do not make clips of {self.frames} frames")
        clips = images.unflatten(0, (-1, self.frames)).transpose(1, 2)  # [B, 3, T, H, W]
        return super().forward(clips).transpose(1, 2).flatten(0, 1)  # [B * T, width, h, w]


def frame_lengths(frame_mask: Tensor) -> Tensor:
    """Each clip's number of real frames, checking that they come first (padding last, as ``collate_videos``)."""
    lengths = frame_mask.sum(dim=1)
    positions = torch.arange(frame_mask.shape[1], device=frame_mask.device)
    if not torch.equal(frame_mask, positions < lengths[:, None]):
        raise ValueError("frame_mask must mark each clip's real frames first and its padding last")
    if frame_mask.shape[0] and int(lengths.min()) == 0:
        raise ValueError("every clip needs at least one real frame; frame_mask has a clip of padding alone")
    return lengths


def by_length(frame_mask: Tensor) -> list[tuple[int, Tensor]]:
    """``(length, clips)``: the clips (row indices) grouped by their number of real frames."""
    lengths = frame_lengths(frame_mask)
    return [(length, (lengths == length).nonzero().squeeze(1)) for length in lengths.unique().tolist()]


def first_text_blocks(clip: CLIP, layers: int, header: str) -> Transformer:
    """A non-causal copy of CLIP's first ``layers`` text blocks (seqTransf's and tightTransf's initialisation)."""
    if layers > clip.transformer.layers:
        raise ValueError(
            f"{header} copies CLIP's first {layers} text blocks and this CLIP's text tower has "
            f"{clip.transformer.layers}: set cross_num_hidden_layers to at most {clip.transformer.layers}"
        )
    embed_dim = clip.text_projection.shape[1]
    if embed_dim != clip.transformer.width:
        raise ValueError(
            f"{header} runs CLIP's text blocks (width {clip.transformer.width}) on features of the joint space "
            f"(width {embed_dim}): it needs a CLIP whose joint space is as wide as its text tower (OpenAI's ViTs); "
            "use meanP or seqLSTM"
        )
    transformer = copy.deepcopy(clip.transformer)
    transformer.resblocks = transformer.resblocks[:layers]
    transformer.layers, transformer.causal = layers, False
    return transformer


# --- the similarity calculators -------------------------------------------------------------------------------
class TemporalTransformer(nn.Module):
    """seqTransf: frame positions, CLIP's first text blocks over the real frames, residual."""

    def __init__(self, clip: CLIP, layers: int):
        super().__init__()
        self.frame_position_embeddings = nn.Parameter(clip.positional_embedding.detach().clone())
        self.transformer = first_text_blocks(clip, layers, "seqTransf")

    def forward(self, features: Tensor, frame_mask: Tensor) -> Tensor:
        frames = features.shape[1]
        if frames > self.frame_position_embeddings.shape[0]:
            raise ValueError(
                f"seqTransf has {self.frame_position_embeddings.shape[0]} frame positions (CLIP's context length), "
                f"got clips of {frames} frames"
            )
        x = features + self.frame_position_embeddings[:frames].to(features.dtype)
        temporal = torch.zeros_like(features)
        for length, clips in by_length(frame_mask):
            temporal[clips, :length] = self.transformer(x[clips, :length]).to(features.dtype)
        return temporal + features


class TemporalLSTM(nn.Module):
    """seqLSTM: a one-layer LSTM over the real frames, residual."""

    def __init__(self, width: int):
        super().__init__()
        self.lstm = nn.LSTM(width, width, num_layers=1, batch_first=True)

    def forward(self, features: Tensor, frame_mask: Tensor) -> Tensor:
        lengths = frame_lengths(frame_mask).cpu()
        packed = pack_padded_sequence(features, lengths, batch_first=True, enforce_sorted=False)
        output, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=features.shape[1])
        return output + features


class CrossEncoder(nn.Module):
    """tightTransf: [caption; frames] with positions and types through CLIP's first text blocks -> one score."""

    def __init__(self, clip: CLIP, layers: int, dropout: float = 0.1):
        super().__init__()
        width = clip.transformer.width
        self.position_embeddings = nn.Parameter(clip.positional_embedding.detach().clone())
        self.type_embeddings = nn.Parameter(torch.zeros(2, width))  # 0: the caption, 1: a frame
        self.dropout = nn.Dropout(dropout)
        self.transformer = first_text_blocks(clip, layers, "tightTransf")
        self.ln_pool = nn.LayerNorm(width)
        self.pool = nn.Linear(width, width)
        self.activation = QuickGELU()
        self.score = nn.Linear(width, 1)
        for linear in (self.pool, self.score):  # the official's BERT initialisation of new Linear layers
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    @property
    def max_frames(self) -> int:
        return self.position_embeddings.shape[0] - 1

    def forward(self, text: Tensor, frames: Tensor) -> Tensor:
        """Scores ``[N, V]`` of every caption ``[N, D]`` with every clip of ``frames`` ``[V, L, D]`` (real frames)."""
        texts, clips, length = text.shape[0], frames.shape[0], frames.shape[1]
        sequence = torch.cat(
            [text[:, None, None].expand(-1, clips, 1, -1), frames[None].expand(texts, -1, -1, -1)], dim=2
        ).flatten(0, 1)  # [N * V, 1 + L, D]
        types = torch.ones(1 + length, dtype=torch.long, device=text.device)
        types[0] = 0
        x = sequence + (self.position_embeddings[: 1 + length] + self.type_embeddings[types]).to(sequence.dtype)
        x = self.transformer(self.dropout(x))
        pooled = self.activation(self.pool(self.ln_pool(x[:, 0])))
        return self.score(pooled).view(texts, clips)


class Frames(NamedTuple):
    """What tightTransf keeps of clips: the frame features ``[V, T, D]`` and their mask ``[V, T]``."""

    features: Tensor
    mask: Tensor


def cross_entropy_both_ways(scores: Tensor) -> Tensor:
    """The official ``CrossEn`` of a caption x clip matrix and of its transpose, averaged (pairs on the diagonal)."""
    labels = torch.arange(scores.shape[0], device=scores.device)
    return (F.cross_entropy(scores, labels) + F.cross_entropy(scores.T, labels)) / 2


def retrieval_metrics(similarity: Tensor, text_to_video: Tensor) -> dict[str, Tensor]:
    """``t2v_*`` and ``v2t_*`` R@1/5/10, MdR and MnR from ``similarity`` ``[captions, clips]``, ``text_to_video[t]``
    caption t's clip; as the official ``metrics.py``: a clip ranks the clips' caption sets, each scoring the best of
    its captions (with one caption per clip, simply the transpose)."""
    clips = similarity.shape[1]
    caption_sets = similarity.new_full((clips, clips), float("-inf")).scatter_reduce(
        1, text_to_video.expand(clips, -1), similarity.T, reduce="amax"
    )  # [clip, caption set]
    metrics = {f"t2v_{name}": value for name, value in retrieval_ranks(similarity, text_to_video).items()}
    own_set = torch.arange(clips, device=similarity.device)
    return metrics | {f"v2t_{name}": value for name, value in retrieval_ranks(caption_sets, own_set).items()}


def batch_rows(batch: VideoBatch) -> int | None:
    """The batch size before bad samples were left out (``RobustSamples``); None where the data has none."""
    return batch["video"].shape[0] + batch["skipped_index"].numel() if "skipped_index" in batch else None


def official_no_decay(name: str, param: nn.Parameter) -> bool:
    """The official rule: no weight decay for names containing "bias" (its other two patterns, "LayerNorm.bias"
    and "LayerNorm.weight", name nothing in CLIP, whose norms are ``ln_*``)."""
    return "bias" in name


def bert_warmup_cosine(optimizer: torch.optim.Optimizer, warmup_proportion: float, total_steps: int) -> LambdaLR:
    """BertAdam's ``warmup_cosine``: at ``x = step / total_steps``, ``x / warmup_proportion`` while below it, then
    ``0.5 (1 + cos(pi x))``."""
    if total_steps <= 0:
        raise ValueError(f"a cosine schedule needs a positive number of steps, got {total_steps}")

    def factor(step: int) -> float:
        progress = step / total_steps
        if progress < warmup_proportion:
            return progress / warmup_proportion
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return LambdaLR(optimizer, factor)


class CLIP4Clip(L.LightningModule):
    def __init__(
        self,
        architecture: str = "ViT-Tiny-8",
        pretrained: str | None = None,
        sim_header: Literal["meanP", "seqLSTM", "seqTransf", "tightTransf"] = "meanP",
        linear_patch: Literal["2d", "3d"] = "2d",
        cross_num_hidden_layers: int = 4,
        lr: float = 1e-4,
        coef_lr: float = 1e-3,
        weight_decay: float = 0.2,
        warmup_proportion: float = 0.1,
        freeze_layer_num: int = 0,
        local_loss: bool = True,
        eval_chunk_size: int = 16,
    ):
        """
        Args:
            architecture: a random CLIP of this name (see ``lit_clip.architecture_names()``) when ``pretrained`` is
                None (tests; from scratch).
            pretrained: start from these CLIP weights (``lit_clip.load_clip``: a ShapesWorld CLIP checkpoint,
                OpenAI's file, open_clip or Hugging Face weights).
            sim_header: the similarity calculator: ``meanP``, ``seqLSTM``, ``seqTransf`` or ``tightTransf``.
            linear_patch: ``2d`` (CLIP's patch embedding per frame) or ``3d`` (inflated to 3 frames; ViT towers).
            cross_num_hidden_layers: the blocks of seqTransf's and tightTransf's transformers, copied from CLIP's
                first text blocks.
            lr: the new modules' learning rate; CLIP's is ``lr * coef_lr``.
            weight_decay: on every trainable parameter whose name has no "bias".
            warmup_proportion: the fraction of the steps warming up (then cosine).
            freeze_layer_num: freeze CLIP's blocks below this index and its embeddings (the official rule, see the
                module docstring); -1 freezes nothing.
            local_loss: under DDP, score local clips against the gathered captions (same gradients, less memory).
            eval_chunk_size: tightTransf scores this many captions against every clip at a time in evaluation.
        """
        super().__init__()
        self.save_hyperparameters()
        if sim_header not in SIM_HEADERS:
            raise ValueError(f"unknown sim_header {sim_header!r}; expected one of {', '.join(SIM_HEADERS)}")
        if linear_patch not in ("2d", "3d"):
            raise ValueError(f"unknown linear_patch {linear_patch!r}; expected '2d' or '3d'")
        if freeze_layer_num < -1:
            raise ValueError(f"freeze_layer_num must be -1 (nothing frozen) or a block index, got {freeze_layer_num}")
        self.model: CLIP = load_clip(pretrained).train() if pretrained is not None else create_model(architecture)
        if linear_patch == "3d":
            if not isinstance(self.model.visual, VisionTransformer):
                raise ValueError(f"linear_patch='3d' inflates a ViT's patch embedding; this CLIP's image tower is a "
                                 f"{type(self.model.visual).__name__}: use linear_patch='2d'")  # fmt: skip
            self.model.visual.conv1 = InflatedPatchEmbedding(self.model.visual.conv1)
        if freeze_layer_num >= 0:
            self.freeze_clip_layers(freeze_layer_num)
        self.temporal: nn.Module | None = None
        self.cross: CrossEncoder | None = None
        if sim_header == "seqLSTM":
            self.temporal = TemporalLSTM(self.model.text_projection.shape[1])
        elif sim_header == "seqTransf":
            self.temporal = TemporalTransformer(self.model, cross_num_hidden_layers)
        elif sim_header == "tightTransf":
            self.cross = CrossEncoder(self.model, cross_num_hidden_layers)
        self.clip_loss = ClipLoss(local_loss=local_loss)
        self._evaluation: dict[int, list[tuple[Tensor, ...]]] = {}  # per evaluation loader
        self._skipped_indices: dict[int, list[Tensor]] = {}

    def freeze_clip_layers(self, below: int) -> None:
        """The official ``--freeze_layer_num``: freeze CLIP's parameters but the top ones and the blocks numbered
        ``below`` or more (and the inflated 3D patch embedding, new)."""
        if not isinstance(self.model.visual, VisionTransformer):
            raise ValueError(
                f"freeze_layer_num freezes by a ViT's block numbers; this CLIP's image tower is a "
                f"{type(self.model.visual).__name__}: use freeze_layer_num=-1"
            )
        for name, param in self.model.named_parameters():
            block = BLOCK_NUMBER.match(name)
            trained = name.startswith(ALWAYS_TRAINED) or (block is not None and int(block[1]) >= below)
            if not trained and not (self.hparams.linear_patch == "3d" and name == "visual.conv1.weight"):
                param.requires_grad_(False)

    # --- encoders -------------------------------------------------------------------------------------------
    @property
    def tight(self) -> bool:
        return self.cross is not None

    def frame_features(self, video: Tensor, frame_mask: Tensor) -> Tensor:
        """``[B, T, D]``: each frame of ``video`` ``[B, T, 3, H, W]`` through CLIP's image tower (the 3D patch
        embedding sees whole clips, padding frames zeroed)."""
        conv1 = getattr(self.model.visual, "conv1", None)
        if not isinstance(conv1, InflatedPatchEmbedding):
            return encode_frames(self.model.encode_image, video)
        video = video * frame_mask[:, :, None, None, None].to(video.dtype)
        with conv1.clips_of(video.shape[1]):
            return encode_frames(self.model.encode_image, video)

    def encode_video(self, video: Tensor, frame_mask: Tensor) -> Tensor | Frames:
        """A loose header's L2-normalised clip embeddings ``[B, D]``; tightTransf's frame features and mask."""
        features = self.frame_features(video, frame_mask)
        if self.tight:
            if features.shape[1] > self.cross.max_frames:
                raise ValueError(f"tightTransf takes clips of at most {self.cross.max_frames} frames (CLIP's context "
                                 f"length minus the caption), got {features.shape[1]}")  # fmt: skip
            return Frames(features, frame_mask)
        if self.temporal is not None:
            features = self.temporal(features, frame_mask)
        return F.normalize(masked_mean(F.normalize(features, dim=-1), frame_mask), dim=-1)

    def encode_text(self, text: Tensor) -> Tensor:
        """Captions pooled at EOT: L2-normalised for the loose headers, as they are for tightTransf's encoder."""
        features = self.model.encode_text(text)
        return features if self.tight else F.normalize(features, dim=-1)

    def similarity(self, text: Tensor, video: Tensor | Frames, chunk_size: int | None = None) -> Tensor:
        """Scores ``[captions, clips]`` from :meth:`encode_text` and :meth:`encode_video`; tightTransf runs
        ``chunk_size`` captions at a time (all at once when None)."""
        if not self.tight:
            return self.model.logit_scale.exp() * text @ video.T
        rows = []
        for captions in text.split(chunk_size or max(1, text.shape[0])):
            scores = captions.new_empty(captions.shape[0], video.features.shape[0])
            for length, clips in by_length(video.mask):
                scores[:, clips] = self.cross(captions, video.features[clips, :length]).to(scores.dtype)
            rows.append(scores)
        return torch.cat(rows)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # So that load_clip reads the fine-tuned CLIP out of the checkpoint (not with the 3D patch: a 5-D conv1).
        if self.hparams.pretrained is not None and self.hparams.linear_patch == "2d":
            record_clip_geometry(checkpoint, self.model)

    # --- training -------------------------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Exact and cheaper: captions padded to the context length are cut after the batch's longest (see
        # CLIPPretraining).
        if "text" in batch:
            batch["text"] = trim_padding(batch["text"])
        return batch

    def loss(self, batch: VideoBatch) -> Tensor:
        """The symmetric cross-entropy of the batch's caption x clip scores (pairs on the diagonal)."""
        video = self.encode_video(batch["video"], batch["frame_mask"])
        text = self.encode_text(batch["text"])
        if self.tight:  # the local B x B pairs, as the official
            return cross_entropy_both_ways(self.similarity(text, video))
        return self.clip_loss(video, text, self.model.logit_scale.exp(), batch_rows(batch))["contrastive_loss"]

    def training_step(self, batch: VideoBatch, batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        rows = batch["video"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=rows)
        self.log("train/logit_scale", self.model.logit_scale.exp(), batch_size=rows)
        for name, lr in {group["name"]: group["lr"] for group in self.optimizers().param_groups}.items():
            self.log(f"train/lr_{name}", lr, batch_size=rows)
        if "skipped_index" in batch:
            skipped = float(batch["skipped_index"].numel())
            self.log("train/skipped_samples", skipped, on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        with torch.no_grad():  # as the official, after every step (openai/CLIP#46)
            self.model.logit_scale.clamp_(max=MAX_LOGIT_SCALE)

    def parameter_groups(self) -> list[dict]:
        """CLIP's trainable parameters at ``lr * coef_lr`` and the new modules' at ``lr``, each split by the
        official decay rule; every group is named ("clip" or "new")."""
        h = self.hparams
        new = [(name, param) for name, param in self.named_parameters() if not name.startswith("model.")]
        groups = []
        for name, parameters, lr in (("clip", self.model, h.lr * h.coef_lr), ("new", new, h.lr)):
            for group in weight_decay_groups(parameters, h.weight_decay, exempt=official_no_decay):
                if group["params"]:
                    groups.append({**group, "lr": lr, "name": name})
        return groups

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.AdamW(self.parameter_groups(), lr=h.lr, betas=(0.9, 0.98), eps=1e-6)
        schedule = bert_warmup_cosine(optimizer, h.warmup_proportion, self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- pictures and prediction ----------------------------------------------------------------------------
    @torch.no_grad()
    def similarity_matrix(self, batch: VideoBatch) -> tuple[Tensor, list[str]]:
        """``[clips, captions]`` scores of the batch's clips and captions, and the captions (the columns)."""
        video = self.encode_video(batch["video"], batch["frame_mask"])
        scores = self.similarity(self.encode_text(batch["text"]), video, self.hparams.eval_chunk_size)
        return scores.T, list(batch["caption"])

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """L2-normalised clip embeddings (``video_embedding``) and / or caption embeddings (``text_embedding``) in
        fp32, with the batch's ``path``, ``index`` and ``caption`` where it has them; their cosine ranks as the
        model does. tightTransf scores pairs and has no embeddings."""
        if self.tight:
            raise ValueError("tightTransf scores each caption-clip pair with its cross-encoder and has no clip or "
                             "caption embedding to predict: use similarity_matrix, or a meanP / seqLSTM / seqTransf "
                             "model")  # fmt: skip
        prediction = {key: batch[key] for key in ("path", "index", "caption") if key in batch}
        if "video" in batch:
            mask = batch.get("frame_mask")
            if mask is None:
                mask = torch.ones(batch["video"].shape[:2], dtype=torch.bool, device=batch["video"].device)
            prediction["video_embedding"] = self.encode_video(batch["video"], mask).float()
        if "text" in batch:
            prediction["text_embedding"] = self.encode_text(batch["text"]).float()
        return prediction

    # --- evaluation -----------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._evaluation, self._skipped_indices = {}, {}

    def on_test_epoch_start(self) -> None:
        self._evaluation, self._skipped_indices = {}, {}

    def validation_step(self, batch: VideoBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, "val", dataloader_idx)

    def test_step(self, batch: VideoBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, "test", dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def _evaluation_step(self, batch: VideoBatch, stage: str, dataloader_idx: int) -> None:
        if "skipped_index" in batch:
            self._skipped_indices.setdefault(dataloader_idx, []).append(batch["skipped_index"].to(self.device))
        if "video" not in batch:  # every sample of this batch was bad
            return
        video = self.encode_video(batch["video"], batch["frame_mask"])
        text = self.encode_text(batch["text"])
        if not self.tight and "text_index" not in batch:  # one caption per clip: the training loss on the pairs
            loss = self.clip_loss(video, text, self.model.logit_scale.exp(), batch_rows(batch))["contrastive_loss"]
            name = f"{stage}/{evaluation_prefix(self.trainer.datamodule, stage, dataloader_idx)}loss"
            self.log(name, loss, batch_size=batch["video"].shape[0], add_dataloader_idx=False, sync_dist=True)
        # tightTransf keeps the frames and each clip's length (its mask, padding last)
        videos = (video.features.float(), frame_lengths(video.mask)) if self.tight else (video.float(),)
        captions = batch.get("text_index", batch["index"]), batch.get("text_video_index", batch["index"])
        self._evaluation.setdefault(dataloader_idx, []).append((batch["index"], *captions, text.float(), *videos))

    def _log_evaluation(self, stage: str) -> None:
        """Each evaluation loader's metrics, prefixed with its set's name (``val/heldout_t2v_R@1``)."""
        for dataloader_idx, skipped in sorted(self._skipped_indices.items()):
            # each bad sample once, also where DDP's sampler repeats it on two ranks
            (skipped,) = gather_unique(torch.cat(skipped))
            prefix = evaluation_prefix(self.trainer.datamodule, stage, dataloader_idx)
            self.log(f"{stage}/{prefix}skipped_samples", float(skipped.numel()), add_dataloader_idx=False)
        for dataloader_idx, parts in sorted(self._evaluation.items()):
            prefix = evaluation_prefix(self.trainer.datamodule, stage, dataloader_idx)
            for name, value in retrieval_metrics(*self._evaluation_similarity(parts)).items():
                self.log(f"{stage}/{prefix}{name}", value, add_dataloader_idx=False)
        self._evaluation, self._skipped_indices = {}, {}

    @torch.no_grad()
    def _evaluation_similarity(self, parts: list[tuple[Tensor, ...]]) -> tuple[Tensor, Tensor]:
        """The ``[captions, clips]`` scores of one loader's batches, every clip and caption once in index order, and
        each caption's clip."""
        if self.tight:  # the batches' clips may differ in length: pad all to the longest of any rank's
            frames = int(self.all_gather(torch.tensor(max(p[4].shape[1] for p in parts), device=self.device)).max())
            parts = [(*p[:4], F.pad(p[4], (0, 0, 0, frames - p[4].shape[1])), p[5]) for p in parts]
        index, text_index, text_video_index, text, *videos = (torch.cat(columns) for columns in zip(*parts))
        index, *videos = gather_unique(index, *videos)
        _, text_video_index, text = gather_unique(text_index, text_video_index, text)
        text_to_video = torch.searchsorted(index, text_video_index)
        if not self.tight:
            return self.similarity(text, videos[0]).float(), text_to_video
        rank, world_size = distributed_rank_and_size()  # each rank scores its share of the captions
        features, lengths = videos
        mask = torch.arange(features.shape[1], device=lengths.device) < lengths[:, None]
        share = text.tensor_split(world_size)[rank]
        scores = self.similarity(share, Frames(features, mask), self.hparams.eval_chunk_size)
        return all_gather_rows(scores).float(), text_to_video
