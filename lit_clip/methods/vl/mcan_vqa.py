"""CLIP-ViL's VQA (Shen et al., 2021, "How Much Can CLIP Benefit Vision-and-Language Tasks?"): CLIP's image tower as
the visual encoder of a VQA model, its grid features in place of a detector's region features.

1. **Grid features.** The frozen image tower's last feature map before pooling: a ResNet's layer4 map (CLIP-ViL-
   Direct: images resized to 600 x 1000, a 18 x 31 grid of 2048 or 2560 channels), a ViT's last block's patch
   tokens after ``ln_post``. Flattened into a sequence of grid cells, no positions added (as CLIP-ViL).
2. **MCAN** (Yu et al., 2019; MILVLG/mcan-vqa, the encoder-decoder "MCA-ED"): the question's words (GloVe where
   given, else learnt; 14 at most) through an LSTM; ``layers`` self-attention blocks over the question; then
   ``layers`` blocks over the grid cells, each self-attention, attention guided by the final question states,
   a feed-forward block (residual + layer norm after each). Attentional pooling of each modality (a 2-layer MLP
   scores each token), the two summed, layer-normed and classified over the answer vocabulary.
3. **Loss**: binary cross-entropy against the soft scores (each answer's VQA accuracy against the ten human
   answers), summed over answers and the batch (MCAN's ``BCELoss(reduction="sum")``).
4. **Schedule** (MCAN): Adam (0.9, 0.98), eps 1e-9; ``lr`` warmed up as 1/4, 2/4, 3/4 of it over the first three
   epochs, then times ``decay_factor`` at each of ``decay_epochs``.

Deliberate differences, where the user should know them:

- CLIP-ViL's published MCAN numbers come from mmf's MoViE+MCAN (hidden 1024, a modulated-convolution branch and
  three classifier heads, AdamW 5e-5 for 236k updates); this is MILVLG's MCAN-small, the model the paper names.
- MCAN's custom layer norm (unbiased standard deviation, eps added to it) is kept; its GloVe vectors come from
  spaCy's ``en_vectors_web_lg``, read here from a GloVe text file (``glove``) when given.
- Each question's human answers are scored with the official evaluation's rules (:mod:`lit_clip.metrics.vqa`):
  MCAN's own soft scores are the same numbers for in-vocabulary answers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn

from lit_clip import drawing
from lit_clip.metrics.vqa import VQAAccuracy
from lit_clip.methods.vl.attention import FeedForward, LayerNorm, MultiHeadAttention
from lit_clip.methods.frozen_clip import FrozenCLIP
from lit_clip.optim import epoch_step_schedule


# --- MCAN's blocks ----------------------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    """MCAN's SA: self-attention and a feed-forward block, each residual then layer-normed."""

    def __init__(self, hidden: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.mhatt, self.ffn = MultiHeadAttention(hidden, heads, dropout), FeedForward(hidden, ff, dropout)
        self.dropout1, self.norm1 = nn.Dropout(dropout), LayerNorm(hidden)
        self.dropout2, self.norm2 = nn.Dropout(dropout), LayerNorm(hidden)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.norm1(x + self.dropout1(self.mhatt(x, x, x, mask)))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class GuidedAttention(nn.Module):
    """MCAN's SGA: self-attention over ``x``, attention from ``x`` to ``y`` (the question), a feed-forward block."""

    def __init__(self, hidden: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.mhatt1 = MultiHeadAttention(hidden, heads, dropout)
        self.mhatt2 = MultiHeadAttention(hidden, heads, dropout)
        self.ffn = FeedForward(hidden, ff, dropout)
        self.dropout1, self.norm1 = nn.Dropout(dropout), LayerNorm(hidden)
        self.dropout2, self.norm2 = nn.Dropout(dropout), LayerNorm(hidden)
        self.dropout3, self.norm3 = nn.Dropout(dropout), LayerNorm(hidden)

    def forward(self, x: Tensor, y: Tensor, x_mask: Tensor | None, y_mask: Tensor | None) -> Tensor:
        x = self.norm1(x + self.dropout1(self.mhatt1(x, x, x, x_mask)))
        x = self.norm2(x + self.dropout2(self.mhatt2(y, y, x, y_mask)))
        return self.norm3(x + self.dropout3(self.ffn(x)))


class AttentionFlatten(nn.Module):
    """MCAN's AttFlat: a 2-layer MLP scores each token, the softmax-weighted sum, a linear map to ``out``."""

    def __init__(self, hidden: int, mlp: int, out: int, dropout: float, glimpses: int = 1):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(mlp, glimpses)
        )
        self.linear_merge = nn.Linear(hidden * glimpses, out)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        scores = self.mlp(x)
        if mask is not None:
            scores = scores.masked_fill(mask[..., None], -1e9)
        weights = scores.softmax(dim=1)  # [B, tokens, glimpses]
        return self.linear_merge((weights.transpose(1, 2) @ x).flatten(1))


class MCAN(nn.Module):
    """MCAN-ED over a question (word ids) and a sequence of visual features: answer logits ``[B, answers]``."""

    def __init__(self, words: int, visual_dim: int, answers: int, hidden: int = 512, layers: int = 6, heads: int = 8,
                 ff: int | None = None, dropout: float = 0.1, word_dim: int = 300, flat_mlp: int = 512,
                 flat_out: int = 1024):  # fmt: skip
        super().__init__()
        self.embedding = nn.Embedding(words, word_dim)
        self.lstm = nn.LSTM(word_dim, hidden, batch_first=True)
        self.visual_projection = nn.Linear(visual_dim, hidden)
        ff = ff or 4 * hidden
        self.encoder = nn.ModuleList(SelfAttention(hidden, heads, ff, dropout) for _ in range(layers))
        self.decoder = nn.ModuleList(GuidedAttention(hidden, heads, ff, dropout) for _ in range(layers))
        self.flatten_question = AttentionFlatten(hidden, flat_mlp, flat_out, dropout)
        self.flatten_visual = AttentionFlatten(hidden, flat_mlp, flat_out, dropout)
        self.norm = LayerNorm(flat_out)
        self.classifier = nn.Linear(flat_out, answers)

    def forward(self, question: Tensor, visual: Tensor) -> Tensor:
        question_mask = question == 0  # padding
        key_mask = question_mask[:, None]  # the same for every query
        words, _ = self.lstm(self.embedding(question))
        visual = self.visual_projection(visual)
        for block in self.encoder:
            words = block(words, key_mask)
        for block in self.decoder:
            visual = block(visual, words, None, key_mask)  # every grid cell is real: no visual mask
        fused = self.flatten_question(words, question_mask) + self.flatten_visual(visual, None)
        return self.classifier(self.norm(fused))


def read_glove(path: str | Path, words: Sequence[str], dim: int) -> Tensor:
    """``[len(words), dim]``: each word's GloVe vector from a GloVe text file (``word v1 ... v_dim`` per line); words
    it lacks (and the padding and unknown entries) are zero, as MCAN's spaCy vectors leave them."""
    index = {word: k for k, word in enumerate(words)}
    vectors = torch.zeros(len(words), dim)
    with open(path, encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, 1):
            word, *values = line.rstrip().split(" ")
            if word in index:
                if len(values) != dim:
                    raise ValueError(f"{path}:{line_number}: {len(values)} values for {word!r}, expected {dim}")
                vectors[index[word]] = torch.tensor([float(v) for v in values])
    return vectors


# --- the method ---------------------------------------------------------------------------------------------------
class MCANVQA(FrozenCLIP):
    """VQA with MCAN on a frozen CLIP image tower's grid features (CLIP-ViL-Direct); the data module gives the word
    and answer vocabularies (``words``, ``answers``) and the question types (``question_types``)."""

    def __init__(
        self,
        pretrained: str | None = None,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        input_size: int | tuple[int, int] | None = None,
        hidden: int = 512,
        layers: int = 6,
        heads: int = 8,
        dropout: float = 0.1,
        word_dim: int = 300,
        flat_mlp: int = 512,
        flat_out: int = 1024,
        glove: str | None = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-9,
        warmup_epochs: int = 3,
        decay_epochs: Sequence[int] = (10, 12),
        decay_factor: float = 0.2,
        pictures: int = 8,
    ):
        """
        Args:
            pretrained: the CLIP whose image tower gives the grid (see :func:`lit_clip.load_clip`); None: a randomly
                initialised CLIP of ``architecture`` (the baseline CLIP-ViL's claim is measured against), which
                checkpoints then keep.
            architecture, quick_gelu: see :func:`lit_clip.load_clip`.
            input_size: the size images are resized to before the tower, ``(height, width)`` or a side (CLIP-ViL:
                600 x 1000); a larger input gives a finer grid. None: as they come.
            hidden, layers, heads, dropout, word_dim, flat_mlp, flat_out: MCAN's sizes (MCAN-small: 512, 6, 8, 0.1,
                300, 512, 1024).
            glove: a GloVe text file to start the word embeddings from (300-d for ``word_dim`` 300); None: learnt.
            lr, betas, eps: Adam's (MCAN: 1e-4, (0.9, 0.98), 1e-9).
            warmup_epochs: epochs over which ``lr`` warms up, as 1/4, 2/4, 3/4 of it with 3 (MCAN).
            decay_epochs, decay_factor: ``lr`` times ``decay_factor`` from each of these epochs (0-based) on.
            pictures: validation questions drawn with their answers in TensorBoard.
        """
        super().__init__(pretrained, architecture=architecture, quick_gelu=quick_gelu)
        self.save_hyperparameters()
        self.mcan: MCAN | None = None
        self.vocabulary: dict[str, list[str]] = {}
        self.metrics: dict[str, VQAAccuracy] = {}  # per evaluation loader, by its metric prefix

    # --- vocabularies, from the data module or a checkpoint ------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        vocabulary = {"words": list(datamodule.words), "answers": list(datamodule.answers),
                      "question_types": list(datamodule.question_types)}  # fmt: skip
        if self.mcan is not None and vocabulary != self.vocabulary:
            raise ValueError("the data module's words, answers or question types differ from those this model was "
                             "built with (its checkpoint's)")  # fmt: skip
        self.build(vocabulary)
        if self.hparams.glove and stage == "fit":
            weights = read_glove(self.hparams.glove, vocabulary["words"], self.hparams.word_dim)
            self.mcan.embedding.weight.data.copy_(weights)

    def build(self, vocabulary: dict[str, list[str]]) -> None:
        if self.mcan is not None:
            return
        h = self.hparams
        self.vocabulary = vocabulary
        self.mcan = MCAN(len(vocabulary["words"]), self.model.visual.feature_info[-1]["num_chs"],
                         len(vocabulary["answers"]), h.hidden, h.layers, h.heads, dropout=h.dropout,
                         word_dim=h.word_dim, flat_mlp=h.flat_mlp, flat_out=h.flat_out)  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["vqa_vocabulary"] = self.vocabulary

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.build(checkpoint["vqa_vocabulary"])
        super().on_load_checkpoint(checkpoint)

    # --- the model ----------------------------------------------------------------------------------------------
    def forward(self, images: Tensor, questions: Tensor) -> Tensor:
        """Answer logits ``[B, answers]``."""
        return self.mcan(questions, self.grid_features(images, self.hparams.input_size))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        logits = self(batch["image"], batch["question"])
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch["answer_scores"], reduction="sum")
        self.log("train/loss", loss / len(logits), prog_bar=True, batch_size=len(logits))  # per question
        return loss

    # --- evaluation ---------------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.metrics = {"": VQAAccuracy(self.vocabulary["question_types"])}

    def on_test_epoch_start(self) -> None:
        names = getattr(self.trainer.datamodule, "evaluation_names", [""])
        self.metrics = {name: VQAAccuracy(self.vocabulary["question_types"]) for name in names}

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        if "image" not in batch:  # every sample of the batch was unreadable (see lit_clip.batches)
            return
        predicted = self(batch["image"], batch["question"]).argmax(dim=-1)
        accuracy = batch["answer_scores"].gather(1, predicted[:, None])[:, 0]
        list(self.metrics.values())[dataloader_idx].update(accuracy, batch["question_type"], batch["index"])
        if batch_idx == 0 and dataloader_idx == 0 and not self.trainer.sanity_checking:
            self.draw_answers(batch, predicted)

    test_step = validation_step

    def on_validation_epoch_end(self) -> None:
        self.log_accuracy("val")

    def on_test_epoch_end(self) -> None:
        self.log_accuracy("test")

    def log_accuracy(self, stage: str) -> None:
        for name, metric in self.metrics.items():
            if metric.has_updates:
                self.log_dict({f"{stage}/{name}{key}": value for key, value in metric.compute().items()})

    def draw_answers(self, batch: dict, predicted: Tensor) -> None:
        logger = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None or not self.trainer.is_global_zero:
            return
        n = min(self.hparams.pictures, len(predicted))
        answers = self.vocabulary["answers"]
        captions = [f"Q: {q} A: {answers[p]} ({'right' if batch['answer_scores'][k, p] > 0 else 'wrong'}; "
                    f"truth: {batch['answers_text'][k]})"
                    for k, (q, p) in enumerate(zip(batch["question_text"][:n], predicted[:n].tolist()))]  # fmt: skip
        images = list(drawing.to_uint8_image(batch["image"][:n]))
        logger.experiment.add_image("val/answers", drawing.caption_grid(images, captions, px=128), self.global_step,
                                    dataformats="HWC")  # fmt: skip

    # --- optimisation -------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.Adam(self.mcan.parameters(), lr=h.lr, betas=tuple(h.betas), eps=h.eps)
        steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // max(1, self.trainer.max_epochs or 1))
        schedule = epoch_step_schedule(optimizer, steps_per_epoch, h.warmup_epochs, h.decay_epochs, h.decay_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
