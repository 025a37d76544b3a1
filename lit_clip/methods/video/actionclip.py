"""ActionCLIP (Wang, Xing and Liu, "ActionCLIP: A New Paradigm for Video Action Recognition", 2021).

**Action recognition as video-text matching** (paper, section 3). An action's label is not a one-hot index but
words: its class name written into a prompt ("The man is {}"). A clip's frames each go through CLIP's image tower,
giving frame features ``[B, T, D]`` in the joint space; a *post-network prompt* (the visual prompt, the code's
``fusion_model``) turns them into one video embedding; the prompt goes through CLIP's text tower. Both towers are
fine-tuned (``freeze_image`` / ``freeze_text`` freeze one).

**The fusion** (section 3.4, "post-network prompt"), ``fusion``:

- ``meanP``: the mean of the frame features (parameter-free).
- ``Conv1D``: a depthwise temporal convolution (kernel 3) initialised as a temporal shift (TSM): the first quarter
  of the channels take the previous frame, the middle half their own, the last quarter the next frame; added to the
  frame features (residual), then the mean.
- ``LSTM``: a one-layer LSTM over the frames, residual, then the mean.
- ``Transf`` (the paper's choice and the default): frame position embeddings added, ``fusion_layers`` (6)
  pre-norm transformer blocks of ``text width / 64`` heads (8 for ViT-B), residual, then the mean.
- ``Transf_cls``: a class token and position embeddings before ``fusion_layers`` post-norm blocks of 8 heads
  (torch's ``TransformerEncoderLayer``: ReLU, 2048 wide, dropout 0.1) and a LayerNorm; the class token's output.

**Training** (section 3.3). Each clip of a batch is paired with its class name in one of the data module's
``templates`` drawn at random (the 16 of :data:`lit_clip.templates.ACTIONCLIP_TEMPLATES` for the real data sets).
Clips of the same action are not negatives of each other: the target of the batch's ``B x B`` similarity matrix
(cosines times CLIP's learned ``exp(logit_scale)``) is the "same label" matrix ``G`` (``G_ij = 1`` when clips i and
j share their label), softmaxed per row at temperature 1/10 as the official ``KLLoss`` does:
``Q = softmax(10 G)``, nearly ``G`` normalised per row (``e^-10`` elsewhere). The loss is
``KL(Q || softmax(logits))`` summed over the matrix and divided by ``B`` (``nn.KLDivLoss``'s mean over the ``B^2``
entries times ``B``), for the video->text rows and the text->video rows, averaged. Under DDP the features and
labels of every process are gathered (with gradient) and every process computes that loss over the global batch,
as the official code's single-process DataParallel sees it.

Optimiser (``utils/solver.py``, the K400 config): AdamW, lr 5e-6, betas (0.9, 0.98), eps 1e-8, weight decay 0.2 on
every parameter (biases, norms and the logit scale included), three groups: CLIP's text side (and the logit scale)
at ``lr``, the image tower at ``lr * image_lr_ratio`` (1), the fusion at ``lr * fusion_lr_ratio`` (10). Schedule: a
linear warm-up over ``warmup_epochs`` (5; or ``warmup_steps``), then a cosine to 0 at the end of training.

**Evaluation** (``test.py``). Every class name in every template is embedded; a clip's L2-normalised video
embedding is scored against each template's classifier at the fixed scale ``eval_logit_scale`` (100, as
``test.py``), softmaxed over the classes per template, and the probabilities are averaged over the templates:
top-1 / top-5 of that (``val/top1``, ``val/top5``; an evaluation set's name in front,
``val/heldout_top1``). Each template's classifier is :func:`lit_clip.zeroshot.build_zeroshot_classifier` of that
template alone; the shared builder's own averaging (of the embeddings, CLIP's prompt ensemble) is not ActionCLIP's
(of the probabilities). Several views per video: a batch's ``video`` ``[B, V, T, 3, H, W]`` (``frame_mask``
``[B, V, T]``) holds ``V`` views of each video (clips x crops); their probabilities are averaged (the official
test scores one view: 78.36 top-1 for ViT-B/32 8 frames on K400). Every video counts once under DDP (its
``index``).

Official code: sallymmx/ActionCLIP (``train.py``, ``test.py``, ``modules/Visual_Prompt.py``, ``utils/KLLoss.py``,
``utils/Text_Prompt.py``, ``utils/solver.py``, ``utils/lr_scheduler.py``, ``configs/k400/k400_train.yaml``).
Parameter names of the fusion are the official ones (``frame_position_embeddings``, ``transformer.resblocks``,
``lstm_visual``, ``shift``, ``transformer.transformer_enc``). Deliberate differences:

- Conv1D: the official reshapes ``[B, T, D]`` with ``view(-1, D, T)``, which reorders memory rather than
  transposing, so its "temporal" convolution mixes channels and frames; here it runs along time, as the shift
  initialisation intends.
- Padding frames of short videos (``frame_mask``; the official always has T frames) never reach a real frame's
  output: the means skip them, the transformers' attention ignores them, Conv1D sees zeros there (its own zero
  padding), and the LSTM reads them after the real frames (padding last, as ``collate_videos`` pads).
- The official builds a frame position table for LSTM, Conv_1D and Transf_cls too, unused: here only Transf has
  one. The fusion is named ``Conv1D`` (the official ``Conv_1D``).
- The schedule steps every iteration (the official every 10, at fractional epochs) and its first step is at
  ``lr / warmup`` (the official's at 0).
- Mixed precision is Lightning's (the official keeps CLIP in fp16 and steps fp32 copies).
- The transformers' LayerNorm is torch's with eps 1e-12 (the official's TF-style one: the same computation).

The official "zero-shot" results (UCF101, HMDB51) evaluate a Kinetics-trained model, temporal fusion included, on
the new classes (its issue #3): here that is ``lit-clip test`` of a trained checkpoint on the other data module.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_clip.batches import EvaluationSet, VideoBatch
from lit_clip.checkpoints import load_clip, record_clip_geometry
from lit_clip.distributed import gather_padded, gather_unique, is_distributed
from lit_clip.methods.class_sets import EvaluatesPerClassSet
from lit_clip.methods.video.frames import encode_frames, masked_mean
from lit_clip.metrics import TopKAccuracy
from lit_clip.models import create_model
from lit_clip.models.clip import CLIP
from lit_clip.models.transformer import QuickGELU
from lit_clip.optim import warmup_cosine_schedule
from lit_clip.templates import fill_template
from lit_clip.tokenizer import tokenize, trim_padding
from lit_clip.zeroshot import build_zeroshot_classifier, scaled_cosine_logits

FUSIONS = ("meanP", "Conv1D", "LSTM", "Transf", "Transf_cls")
# The official KLLoss sharpens the "same label" matrix by 10 before its softmax.
TARGET_SHARPNESS = 10.0


# --- the fusion (the official visual_prompt) ----------------------------------------------------------------
def fmod_normal_(tensor: Tensor, std: float) -> Tensor:
    """The official ``trunc_normal_``: a standard normal with values beyond +-2 folded back by ``fmod``, times
    ``std``."""
    with torch.no_grad():
        return tensor.normal_().fmod_(2).mul_(std)


class TemporalBlock(nn.Module):
    """A pre-norm block as CLIP's (``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))``, QuickGELU) whose attention skips
    padding frames."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width, eps=1e-12)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(width, width * 4), gelu=QuickGELU(), c_proj=nn.Linear(width * 4, width))
        )
        self.ln_2 = nn.LayerNorm(width, eps=1e-12)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, key_padding_mask=padding, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class TemporalTransformer(nn.Module):
    """Transf's blocks over ``[B, T, width]``; ``padding`` ``[B, T]`` is True on padding frames."""

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(TemporalBlock(width, heads) for _ in range(layers))

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x, padding)
        return x


class ClassTokenTransformer(nn.Module):
    """Transf_cls (the official ``TAggregate``): a class token before the frames, learned positions for up to
    ``num_frames`` frames, torch's post-norm encoder and a final LayerNorm; the class token's output."""

    def __init__(self, width: int, layers: int, heads: int, num_frames: int):
        super().__init__()
        layer = nn.TransformerEncoderLayer(width, heads, batch_first=True)
        norm = nn.LayerNorm(width)
        self.transformer_enc = nn.TransformerEncoder(layer, layers, norm=norm, enable_nested_tensor=False)
        self.cls_token = nn.Parameter(fmod_normal_(torch.empty(1, 1, width), 0.02))
        self.pos_embed = nn.Parameter(fmod_normal_(torch.empty(1, num_frames + 1, width), 0.02))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                fmod_normal_(module.weight, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        batch, frames = x.shape[:2]
        if frames >= self.pos_embed.shape[1]:
            raise ValueError(
                f"Transf_cls has positions for {self.pos_embed.shape[1] - 1} frames (num_frames), got clips of {frames}"
            )
        x = torch.cat([self.cls_token.expand(batch, -1, -1).to(x.dtype), x], dim=1) + self.pos_embed[:, : frames + 1]
        return self.transformer_enc(x, src_key_padding_mask=F.pad(padding, (1, 0), value=False))[:, 0]


class TemporalFusion(nn.Module):
    """Frame features ``[B, T, D]`` and their ``frame_mask`` ``[B, T]`` -> video embeddings ``[B, D]`` (the
    official ``visual_prompt``; see the module docstring for each ``kind``).

    ``heads``: Transf's and Transf_cls's attention heads; ``max_frames``: Transf's position table (the official
    sizes it as CLIP's text context); ``num_frames``: Transf_cls's positions.
    """

    def __init__(
        self, kind: str, width: int, layers: int = 6, heads: int = 8, max_frames: int = 77, num_frames: int = 8
    ):
        super().__init__()
        if kind not in FUSIONS:
            raise ValueError(f"unknown fusion {kind!r}; expected one of {', '.join(FUSIONS)}")
        if kind in ("Transf", "Transf_cls") and (heads < 1 or width % heads):
            raise ValueError(f"{kind} needs a number of heads dividing the embedding width {width}, got {heads}")
        self.kind = kind
        if kind == "Conv1D":
            self.shift = nn.Conv1d(width, width, 3, padding=1, groups=width, bias=False)
            weight = torch.zeros(width, 1, 3)
            weight[: width // 4, 0, 0] = 1.0  # out[t] = x[t - 1]
            weight[width // 4 : width // 4 + width // 2, 0, 1] = 1.0  # out[t] = x[t]
            weight[(-width) // 4 :, 0, 2] = 1.0  # out[t] = x[t + 1]; the official's slice, also for widths not of 4
            self.shift.weight = nn.Parameter(weight)
        elif kind == "LSTM":
            self.lstm_visual = nn.LSTM(width, width, num_layers=1, batch_first=True)
        elif kind == "Transf":
            self.frame_position_embeddings = nn.Embedding(max_frames, width)
            self.transformer = TemporalTransformer(width, layers, heads)
            for module in self.modules():  # the official init_weights
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        elif kind == "Transf_cls":
            self.transformer = ClassTokenTransformer(width, layers, heads, num_frames)

    def forward(self, features: Tensor, frame_mask: Tensor) -> Tensor:
        if self.kind == "Conv1D":
            real = features * frame_mask.unsqueeze(-1).to(features.dtype)
            features = features + self.shift(real.transpose(1, 2)).transpose(1, 2)
        elif self.kind == "LSTM":
            features = features + self.lstm_visual(features)[0].to(features.dtype)
        elif self.kind == "Transf":
            frames = features.shape[1]
            if frames > self.frame_position_embeddings.num_embeddings:
                raise ValueError(
                    f"Transf has {self.frame_position_embeddings.num_embeddings} frame positions, got clips of {frames}"
                )
            positions = self.frame_position_embeddings.weight[:frames].to(features.dtype)
            features = features + self.transformer(features + positions, ~frame_mask).to(features.dtype)
        elif self.kind == "Transf_cls":
            return self.transformer(features, ~frame_mask)
        return masked_mean(features, frame_mask)


# --- the loss (the official KLLoss) -------------------------------------------------------------------------
def same_label_target(labels: Tensor) -> Tensor:
    """``softmax(10 G)`` per row, ``G_ij = 1`` where clips i and j share their label (the official ``gen_label`` and
    ``KLLoss``'s target)."""
    same = (labels[:, None] == labels[None, :]).float()
    return (TARGET_SHARPNESS * same).softmax(dim=1)


def kl_loss(logits: Tensor, target: Tensor) -> Tensor:
    """The official ``KLLoss``: ``nn.KLDivLoss`` (mean over the entries) of ``log_softmax(logits)`` against
    ``target``, times the batch size; the sum over the matrix divided by its rows."""
    return F.kl_div(logits.float().log_softmax(dim=1), target, reduction="sum") / logits.shape[0]


def actionclip_loss(video_features: Tensor, text_features: Tensor, labels: Tensor, logit_scale: Tensor) -> Tensor:
    """The KL loss of video->text and text->video logits (cosines times ``logit_scale``), averaged; both ways the
    target is :func:`same_label_target` (of the symmetric "same label" matrix, as the official passes it twice)."""
    logits = logit_scale * F.normalize(video_features.float(), dim=-1) @ F.normalize(text_features.float(), dim=-1).T
    target = same_label_target(labels)
    return (kl_loss(logits, target) + kl_loss(logits.T, target)) / 2


def gather_batch(video: Tensor, text: Tensor, labels: Tensor, rows: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Every process's features (with gradient) and labels, the real rows only (``rows``: see ``gather_padded``)."""
    if not is_distributed():
        return video, text, labels
    (video, text, labels), real, _, _ = gather_padded(video, text, labels[:, None].float(), rows=rows)
    labels = labels[:, 0]
    if real is not None:
        video, text, labels = video[real], text[real], labels[real]
    return video, text, labels


# --- evaluation: the template-averaged probabilities -------------------------------------------------------
def template_averaged_probabilities(video_features: Tensor, classifiers: Tensor, scale: float | Tensor) -> Tensor:
    """``[N, C]``: ``softmax(scale * cos(video, class))`` per template, averaged over the templates (the official
    ``test.py``). ``classifiers`` ``[templates, D, C]``: each template's normalised class embeddings."""
    logits = scaled_cosine_logits(scale, F.normalize(video_features.float(), dim=-1), classifiers)  # [templates, N, C]
    return logits.softmax(dim=-1).mean(dim=0)


def split_views(batch: VideoBatch) -> tuple[Tensor, Tensor, int]:
    """``video`` ``[B * V, T, 3, H, W]``, ``frame_mask`` ``[B * V, T]`` and ``V``: a batch's views as clips, those of
    a video next to each other. ``video`` is ``[B, T, 3, H, W]`` (one view) or ``[B, V, T, 3, H, W]``; ``frame_mask``
    (all True when absent) has its leading dimensions."""
    video = batch["video"]
    if video.ndim not in (5, 6):
        raise ValueError(f"expected video [B, T, 3, H, W] or [B, views, T, 3, H, W], got shape {tuple(video.shape)}")
    frame_mask = batch.get("frame_mask")
    if frame_mask is None:
        frame_mask = torch.ones(video.shape[:-3], dtype=torch.bool, device=video.device)
    if frame_mask.shape != video.shape[:-3]:
        raise ValueError(f"frame_mask {tuple(frame_mask.shape)} does not match video {tuple(video.shape)}")
    views = video.shape[1] if video.ndim == 6 else 1
    return video.flatten(0, video.ndim - 5), frame_mask.flatten(0, frame_mask.ndim - 2), views


class ActionCLIP(EvaluatesPerClassSet):
    def __init__(
        self,
        architecture: str = "ViT-Tiny-8",
        pretrained: str | None = None,
        fusion: Literal["meanP", "Conv1D", "LSTM", "Transf", "Transf_cls"] = "Transf",
        fusion_layers: int = 6,
        fusion_heads: int | None = None,
        num_frames: int = 8,
        freeze_image: bool = False,
        freeze_text: bool = False,
        lr: float = 5e-6,
        weight_decay: float = 0.2,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        fusion_lr_ratio: float = 10.0,
        image_lr_ratio: float = 1.0,
        warmup_epochs: float = 5.0,
        warmup_steps: int | None = None,
        eval_logit_scale: float | None = 100.0,
        grad_checkpointing: bool = False,
    ):
        """
        Args:
            architecture: a random CLIP of this name (``lit_clip.architecture_names()``) when ``pretrained`` is None
                (tests; from scratch).
            pretrained: start from these CLIP weights (``lit_clip.load_clip``: a ShapesWorld CLIP checkpoint,
                OpenAI's file, open_clip or Hugging Face weights).
            fusion: the post-network prompt: ``meanP``, ``Conv1D``, ``LSTM``, ``Transf`` or ``Transf_cls``.
            fusion_layers: the blocks of Transf and Transf_cls (6, the official).
            fusion_heads: their attention heads; None: the official's, CLIP's text width / 64 for Transf (at
                least 1), 8 for Transf_cls.
            num_frames: the frames Transf_cls has positions for (the official's ``num_segments``, 8).
            freeze_image, freeze_text: keep a tower as loaded (the logit scale trains with either).
            lr, weight_decay, betas, eps: AdamW, on every trainable parameter (the official K400 values).
            fusion_lr_ratio: the fusion's lr is ``lr`` times this (the official ``f_ratio``, 10).
            image_lr_ratio: the image tower's lr is ``lr`` times this (the official ``ratio``, 1).
            warmup_epochs: linear warm-up epochs before the cosine decay (5); needs a Trainer with ``max_epochs``.
            warmup_steps: warm-up steps instead of ``warmup_epochs``.
            eval_logit_scale: the scale of the cosines softmaxed at evaluation (100, as ``test.py``); None: CLIP's
                learned ``exp(logit_scale)``.
            grad_checkpointing: recompute the towers' activations in the backward pass to save memory.
        """
        super().__init__()
        self.save_hyperparameters()
        self.model: CLIP = load_clip(pretrained).train() if pretrained is not None else create_model(architecture)
        width = self.model.text_projection.shape[1]
        if fusion_heads is None:
            fusion_heads = 8 if fusion == "Transf_cls" else max(1, self.model.transformer.width // 64)
        self.fusion = TemporalFusion(fusion, width, fusion_layers, fusion_heads, self.model.context_length, num_frames)
        if freeze_image:
            self.model.lock_image_tower()
        if freeze_text:
            self.model.lock_text_tower()
        self.model.set_grad_checkpointing(grad_checkpointing)
        self._prompt_tokens: Tensor | None = None  # [templates, classes, length]: the training prompts
        self._classes_step = -1
        self._skipped_indices: list[Tensor] = []

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.hparams.pretrained is not None:  # so that load_clip reads the fine-tuned CLIP out of the checkpoint
            record_clip_geometry(checkpoint, self.model)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.freeze_image:  # a frozen ResNet tower keeps its BatchNorm statistics
            self.model.visual.eval()
        return self

    # --- the data module's classes and prompts ------------------------------------------------------------
    @property
    def templates(self) -> list[str]:
        datamodule = self.trainer.datamodule
        templates = getattr(datamodule, "templates", None)
        if not templates:
            raise ValueError(
                f"ActionCLIP writes class names into the data module's `templates`, and {type(datamodule).__name__} "
                "has none (the real data sets use lit_clip.templates.ACTIONCLIP_TEMPLATES)"
            )
        return list(templates)

    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        classnames = getattr(datamodule, "classnames", None)
        if not classnames:
            raise ValueError(f"ActionCLIP trains on the data module's classnames; {type(datamodule).__name__} has none")
        prompts = [fill_template(template, name) for template in self.templates for name in classnames]
        tokens = tokenize(prompts, context_length=self.model.context_length)
        self._prompt_tokens = tokens.view(len(self.templates), len(classnames), -1)

    def prompt_tokens(self, labels: Tensor) -> Tensor:
        """Token ids ``[B, L]`` of each label's class name in one of the templates drawn at random."""
        templates, classes = self._prompt_tokens.shape[:2]
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
            raise ValueError(f"labels must index the data module's {classes} class names, got {labels.tolist()}")
        drawn = torch.randint(templates, labels.shape)
        return trim_padding(self._prompt_tokens[drawn, labels])

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Still on the host, where the draw and the trim cost no device sync.
        if self.trainer.training:
            if "label" not in batch:
                raise ValueError("ActionCLIP trains on action labels, and the batch has none: use a recognition task")
            batch["text"] = self.prompt_tokens(batch["label"])
        return batch

    def use_classes(self, classnames: Sequence[str]) -> None:
        # Both towers train: text classifiers built at an earlier step are stale.
        if self.global_step != self._classes_step:
            self.classnames = ()
        super().use_classes(classnames)
        self._classes_step = self.global_step

    def set_classes(self, classnames: Sequence[str]) -> None:
        """``text_classifiers`` ``[templates, D, classes]``: every class name in each template, normalised."""
        classifiers = torch.stack([build_zeroshot_classifier(self.model, classnames, [t]) for t in self.templates])
        self.register_buffer("text_classifiers", classifiers, persistent=False)

    # --- the video encoder --------------------------------------------------------------------------------
    def encode_video(self, video: Tensor, frame_mask: Tensor) -> Tensor:
        """Un-normalised video embeddings ``[B, D]`` of ``video`` ``[B, T, 3, H, W]``: frames, then the fusion."""
        return self.fusion(encode_frames(self.model.encode_image, video), frame_mask)

    def class_probabilities(self, batch: VideoBatch) -> Tensor:
        """``[B, classes]``: the template-averaged probabilities of each video, averaged over its views."""
        video, frame_mask, views = split_views(batch)
        return self.view_averaged_probabilities(self.encode_video(video, frame_mask), views)

    def view_averaged_probabilities(self, video_features: Tensor, views: int) -> Tensor:
        """``[B, classes]`` from the embeddings ``[B * views, D]`` of each video's views, next to each other."""
        scale = self.model.logit_scale.exp() if self.hparams.eval_logit_scale is None else self.hparams.eval_logit_scale
        probabilities = template_averaged_probabilities(video_features, self.text_classifiers, scale)
        return probabilities.unflatten(0, (-1, views)).mean(dim=1)

    # --- training -----------------------------------------------------------------------------------------
    def training_loss(self, batch: VideoBatch) -> Tensor:
        """The KL loss of a batch whose ``text`` holds its prompts' token ids (:meth:`prompt_tokens`)."""
        video, frame_mask, views = split_views(batch)
        if views != 1:
            raise ValueError(f"training batches hold one view per video, got {views}")
        rows = video.shape[0] + batch["skipped_index"].numel() if "skipped_index" in batch else None
        video_features, text_features, labels = gather_batch(
            self.encode_video(video, frame_mask), self.model.encode_text(batch["text"]), batch["label"], rows
        )
        return actionclip_loss(video_features, text_features, labels, self.model.logit_scale.exp())

    def training_step(self, batch: VideoBatch, batch_idx: int) -> Tensor:
        loss = self.training_loss(batch)
        rows = batch["label"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=rows)
        self.log("train/logit_scale", self.model.logit_scale.exp(), batch_size=rows)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], prog_bar=True, batch_size=rows)
        if "skipped_index" in batch:  # bad samples the data module left out (bad_samples: skip)
            skipped = float(batch["skipped_index"].numel())
            self.log("train/skipped_samples", skipped, on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True)
        return loss

    def parameter_groups(self) -> list[dict]:
        """The official three groups (those with trainable parameters): CLIP's text side with the logit scale at
        ``lr``, the image tower at ``lr * image_lr_ratio``, the fusion at ``lr * fusion_lr_ratio``."""
        h = self.hparams
        image = {id(p) for p in self.model.visual.parameters()}
        groups = [
            {"name": "text", "params": [p for p in self.model.parameters() if id(p) not in image], "lr": h.lr},
            {"name": "image", "params": list(self.model.visual.parameters()), "lr": h.lr * h.image_lr_ratio},
            {"name": "fusion", "params": list(self.fusion.parameters()), "lr": h.lr * h.fusion_lr_ratio},
        ]
        for group in groups:
            group["params"] = [p for p in group["params"] if p.requires_grad]
        return [group for group in groups if group["params"]]

    def build_optimizer(self) -> torch.optim.AdamW:
        h = self.hparams
        groups = self.parameter_groups()
        return torch.optim.AdamW(groups, lr=h.lr, betas=h.betas, eps=h.eps, weight_decay=h.weight_decay)

    def configure_optimizers(self):
        optimizer = self.build_optimizer()
        total = self.trainer.estimated_stepping_batches
        schedule = warmup_cosine_schedule(optimizer, self.warmup_length(), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def warmup_length(self) -> int:
        """``warmup_steps``, or ``warmup_epochs`` in optimiser steps (after ``estimated_stepping_batches``)."""
        h, trainer = self.hparams, self.trainer
        if h.warmup_steps is not None:
            return h.warmup_steps
        batches = trainer.num_training_batches
        if trainer.max_epochs in (None, -1) or math.isinf(batches):
            raise ValueError("warmup_epochs needs epochs of known length (a Trainer with max_epochs); set warmup_steps")
        return round(h.warmup_epochs * math.ceil(batches / trainer.accumulate_grad_batches))

    # --- evaluation ---------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._skipped_indices = []
        super().on_validation_epoch_start()

    def on_test_epoch_start(self) -> None:
        self._skipped_indices = []
        super().on_test_epoch_start()

    def evaluation_metric(self, evaluation_set: EvaluationSet) -> TopKAccuracy:
        return TopKAccuracy()

    def evaluate_batch(self, batch: VideoBatch, metric: TopKAccuracy) -> None:
        if "skipped_index" in batch:
            self._skipped_indices.append(batch["skipped_index"].to(self.device))
        if "video" in batch:  # (not a batch of bad samples only)
            metric.update(self.class_probabilities(batch), batch["label"], batch["index"])

    def on_validation_epoch_end(self) -> None:
        self._log_skipped("val")
        super().on_validation_epoch_end()

    def on_test_epoch_end(self) -> None:
        self._log_skipped("test")
        super().on_test_epoch_end()

    def _log_skipped(self, stage: str) -> None:
        if self._skipped_indices:  # each bad sample once, also where DDP's sampler repeats it on two ranks
            (skipped,) = gather_unique(torch.cat(self._skipped_indices))
            self.log(f"{stage}/skipped_samples", float(skipped.numel()))
            self._skipped_indices = []

    # --- pictures and prediction --------------------------------------------------------------------------
    @torch.no_grad()
    def similarity_matrix(self, batch: VideoBatch) -> tuple[Tensor, list[str]]:
        """``[videos, classes]``: the template-averaged class probabilities the method ranks by, and the class names
        (the data module's; call in eval mode)."""
        self.use_classes(self.trainer.datamodule.classnames)
        return self.class_probabilities(batch), list(self.classnames)

    def predict_step(self, batch: VideoBatch, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """L2-normalised video embeddings (``video_embedding``: the normalised mean of a video's normalised view
        embeddings) and / or text embeddings (``text_embedding``, of a batch's ``text``: queries to rank the videos
        by) in fp32, with the batch's ``path``, ``index``, ``label`` and ``caption`` where it has them; for videos,
        where the data module names ``classnames``, also the class probabilities and the most probable class with
        its name and probability."""
        prediction = {key: batch[key] for key in ("path", "index", "label", "caption") if key in batch}
        if "text" in batch:
            prediction["text_embedding"] = F.normalize(self.model.encode_text(batch["text"]).float(), dim=-1)
        if "video" not in batch:  # texts alone, or a batch of unreadable videos alone
            return prediction
        video, frame_mask, views = split_views(batch)
        features = self.encode_video(video, frame_mask)
        embeddings = F.normalize(features.float(), dim=-1).unflatten(0, (-1, views))
        prediction["video_embedding"] = F.normalize(embeddings.mean(dim=1), dim=-1)
        classnames = getattr(self.trainer.datamodule, "classnames", None)
        if classnames:
            self.use_classes(classnames)
            probabilities = self.view_averaged_probabilities(features, views)
            best = probabilities.max(dim=-1)
            prediction |= {
                "probabilities": probabilities,
                "predicted": best.indices,
                "predicted_class": [self.classnames[i] for i in best.indices.tolist()],
                "probability": best.values,
            }
        return prediction
