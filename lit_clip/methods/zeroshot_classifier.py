"""Zero-shot classification (Radford et al., 2021, section 3.1.2): classify images with no training.

Every class name is written into each prompt template ("a photo of a {}."), the
text tower embeds the prompts, and the class's classifier weight is the
renormalised mean of its prompts' normalised embeddings. An image's logits are
``100 * normalize(image_features) @ W``; accuracy is micro top-1 / top-5, as the
paper reports.

Use it with ``lit-clip test`` or ``lit-clip validate`` and any classification data
module that names its ``classnames`` and ``templates``.
"""
from __future__ import annotations

import lightning as L
import torch

from lit_clip.checkpoints import load_clip
from lit_clip.zeroshot import ZeroShotHead


class ZeroShotClassifier(L.LightningModule):
    def __init__(self, pretrained: str, architecture: str | None = None, quick_gelu: bool | None = None):
        """
        Args:
            pretrained: CLIP weights: an OpenAI or open_clip checkpoint file, a Hugging Face model directory
                or hub id, or a lit-clip checkpoint (see ``lit_clip.load_clip``).
            architecture: the architecture name, when it cannot be inferred from the weights.
            quick_gelu: force the activation; by default it is read from the checkpoint's format.
        """
        super().__init__()
        self.save_hyperparameters()
        self.model = load_clip(pretrained, architecture=architecture, quick_gelu=quick_gelu).requires_grad_(False)
        self.head = ZeroShotHead()

    def _start(self) -> None:
        datamodule = self.trainer.datamodule
        self.head.build(self.model, datamodule.classnames, datamodule.templates)

    def on_validation_epoch_start(self) -> None:
        self._start()

    def on_test_epoch_start(self) -> None:
        self._start()

    def _step(self, batch: dict) -> None:
        self.head.accuracy.update(self.head(self.model.encode_image(batch["image"])), batch["label"], batch["index"])

    def _log(self, stage: str) -> None:
        accuracy = self.head.accuracy.compute()
        self.log(f"{stage}/top1", accuracy["top1"])
        self.log(f"{stage}/top5", accuracy["top5"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch)

    def on_validation_epoch_end(self) -> None:
        self._log("val")

    def on_test_epoch_end(self) -> None:
        self._log("test")

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Class probabilities ``[batch, classes]``."""
        if self.head.classifier is None:
            self._start()
        return self.head(self.model.encode_image(batch["image"])).softmax(dim=-1)
