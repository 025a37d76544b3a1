"""What the captioning methods share: the word vocabulary, captions as text, the COCO caption evaluation and the
pictures.

- The word vocabulary (``self.words``) comes from the data module, and checkpoints keep it, so a checkpoint decodes
  with the words it was trained on (a data module with other words is an error).
- Validation and test write a caption for every image (``beam_size`` 1: greedy) and score the corpus with the COCO
  caption evaluation's BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR with ``with_meteor``, which needs Java), after the
  evaluation's tokenisation of both sides (:mod:`lit_clip.metrics.captioning`). Scores are logged under their COCO
  names (``val/CIDEr``, ``test/Bleu_4``, ...); each image is counted once however many processes evaluate.
- TensorBoard: the first validation batch's images with the generated caption and a reference.
- ``lit-clip predict`` captions the data module's ``predict_images`` (a folder, a list of paths or an image) or its
  test split, into ``predictions.csv`` (path or index, caption).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from lit_clip import drawing
from lit_clip.datamodules.captioning import END_ID, PAD_ID
from lit_clip.distributed import evaluate_on_first_rank
from lit_clip.metrics.captioning import caption_scores, tokenize_caption
from lit_clip.methods.frozen_clip import FrozenCLIP


def with_end(captions: Tensor) -> Tensor:
    """``[N, t + 1]``: word-id captions ``[N, t]`` (padded with 0, no end word) each followed by the end word."""
    ended = F.pad(captions, (0, 1), value=PAD_ID)
    ended[torch.arange(len(ended)), (captions != PAD_ID).sum(dim=1)] = END_ID
    return ended


class CaptioningMethod(FrozenCLIP):
    """A captioner on a frozen CLIP; subclasses build their model in :meth:`build` and caption a batch in
    :meth:`generate`."""

    def __init__(self, pretrained: str | None, architecture: str | None, quick_gelu: bool | None,
                 with_meteor: bool, pictures: int):  # fmt: skip
        super().__init__(pretrained, architecture=architecture, quick_gelu=quick_gelu)
        self.with_meteor, self.pictures = with_meteor, pictures
        self.words: list[str] = []
        self.written: dict[str, dict[int, tuple[list[str], str]]] = {}  # per loader: index -> (references, caption)

    # --- the vocabulary, from the data module or a checkpoint ------------------------------------------------------
    def setup(self, stage: str) -> None:
        words = list(self.trainer.datamodule.words)
        if self.words and words != self.words:
            raise ValueError("the data module's caption vocabulary differs from the one this model was built with "
                             "(its checkpoint's)")  # fmt: skip
        if not self.words:
            self.words = words
            self.build()

    def build(self) -> None:
        """Build the model for ``self.words``."""
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["caption_vocabulary"] = self.words

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = list(checkpoint["caption_vocabulary"])
        if not self.words:
            self.words = saved
            self.build()
        elif saved != self.words:  # resuming with a data module of other words
            raise ValueError("the checkpoint's caption vocabulary differs from the data module's")
        super().on_load_checkpoint(checkpoint)

    # --- captions -----------------------------------------------------------------------------------------------
    def generate(self, batch: dict) -> Tensor:
        """``[B, max_length]`` word ids of a caption of each image (ended by ``<eos>``, padded with 0)."""
        raise NotImplementedError

    def to_text(self, ids: Tensor) -> list[str]:
        """The captions' words up to their end, joined by spaces."""
        texts = []
        for row in ids.tolist():
            words = []
            for word in row:
                if word in (END_ID, PAD_ID):
                    break
                words.append(self.words[word])
            texts.append(" ".join(words))
        return texts

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """A caption of each image, with its path (or data set index)."""
        prediction = {key: batch[key] for key in ("path", "index") if key in batch}
        return {**prediction, "caption": self.to_text(self.generate(batch))}

    # --- evaluation ---------------------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.written = {"": {}}

    def on_test_epoch_start(self) -> None:
        self.written = {name: {} for name in getattr(self.trainer.datamodule, "evaluation_names", [""])}

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        if "image" not in batch:  # every sample of the batch was unreadable (see lit_clip.batches)
            return
        captions = self.to_text(self.generate(batch))
        written = list(self.written.values())[dataloader_idx]
        for index, references, caption in zip(batch["index"].tolist(), batch["references"], captions):
            written[index] = (list(references), caption)
        if batch_idx == 0 and dataloader_idx == 0 and not self.trainer.sanity_checking:
            self.draw_captions(batch, captions)

    test_step = validation_step

    def on_validation_epoch_end(self) -> None:
        self.log_scores("val")

    def on_test_epoch_end(self) -> None:
        self.log_scores("test")

    def log_scores(self, stage: str) -> None:
        for name, written in self.written.items():
            scores = evaluate_on_first_rank(written, self.score)
            if scores:
                self.log_dict({f"{stage}/{name}{key}": value for key, value in scores.items()}, sync_dist=False)

    def score(self, every_rank: list[dict[int, tuple[list[str], str]]]) -> dict[str, float]:
        """The COCO caption scores of every image written (once each, however many ranks wrote it)."""
        written = {index: entry for rank in every_rank for index, entry in rank.items()}
        if not written:
            return {}
        entries = [written[index] for index in sorted(written)]
        references = [[tokenize_caption(reference) for reference in refs] for refs, _ in entries]
        hypotheses = [tokenize_caption(caption) for _, caption in entries]
        return caption_scores(references, hypotheses, with_meteor=self.with_meteor)

    def draw_captions(self, batch: dict, captions: list[str]) -> None:
        logger = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None or not self.trainer.is_global_zero:
            return
        n = min(self.pictures, len(captions))
        texts = [f"{caption} (truth: {refs[0]})" for caption, refs in zip(captions[:n], batch["references"][:n])]
        images = list(drawing.to_uint8_image(batch["image"][:n]))
        logger.experiment.add_image("val/captions", drawing.caption_grid(images, texts, px=128), self.global_step,
                                    dataformats="HWC")  # fmt: skip
