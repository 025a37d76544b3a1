"""What every classifier on a frozen CLIP shares: zero-shot evaluation, prompt learning, adapters.

- The frozen CLIP, lean checkpoints and the class-name life cycle come from
  :class:`~lit_clip.methods.frozen_clip.FrozenCLIPMethod`.
- The class names come from the data module: the training classes for fit and validation, and,
  for testing, each of its evaluation sets in turn (all classes; or base and new classes in the
  base-to-new protocol). A subclass rebuilds what depends on class names in :meth:`set_classes`.
- Metrics: ``{stage}/top1`` and ``top5`` (micro, every sample counted once under DDP), with the
  evaluation set's name in front when there are several (``test/base_top1``, ``test/new_top1``)
  and their harmonic mean ``test/hm``, as CoCoOp reports.
- Training minimises the cross-entropy of :meth:`forward`'s logits; optimisers and schedules are
  the subclass's, named in its signature with the paper's values.
"""
from __future__ import annotations

import lightning as L
import torch.nn.functional as F
from torch import Tensor

from lit_clip.batches import ClassificationBatch, EvaluationSet
from lit_clip.methods.frozen_clip import FrozenCLIPMethod
from lit_clip.metrics import TopKAccuracy


def evaluation_sets(datamodule: L.LightningDataModule, stage: str) -> list[EvaluationSet]:
    """The class sets of the data module's ``stage`` loaders, in loader order.

    A data module that evaluates on several class sets (base-to-new) names them with
    ``evaluation_sets(stage)``; any other has one set: its ``classnames``.
    """
    if hasattr(datamodule, "evaluation_sets"):
        return datamodule.evaluation_sets(stage)
    return [EvaluationSet("", tuple(datamodule.classnames))]


def harmonic_mean(a: Tensor, b: Tensor) -> Tensor:
    return 2 * a * b / (a + b) if a + b > 0 else a * 0


class FrozenCLIPClassifier(FrozenCLIPMethod):
    """Base class: a frozen CLIP, class names from the data module, accuracy per evaluation set.

    Subclasses implement :meth:`set_classes` and :meth:`forward` and, if they train,
    ``configure_optimizers``. ``trains = False`` marks methods used with ``test`` / ``validate`` only.
    """

    trains = True

    def __init__(self, pretrained: str, architecture: str | None = None, quick_gelu: bool | None = None):
        super().__init__(pretrained, architecture, quick_gelu)
        self._sets: list[EvaluationSet] = []
        self._accuracies: list[TopKAccuracy] = []
        self._current_set: int | None = None

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[batch, classes]`` over the classes of the last :meth:`set_classes`."""
        raise NotImplementedError

    # --- training --------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # Built here, on the model's device; validation may have switched to other classes since.
        self.use_classes(self.trainer.datamodule.classnames)

    def training_step(self, batch: ClassificationBatch, batch_idx: int) -> Tensor:
        logits = self(self.batch_input(batch))
        loss = F.cross_entropy(logits.float(), batch["label"])
        batch_size = batch["label"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/top1", (logits.argmax(dim=-1) == batch["label"]).float().mean(), batch_size=batch_size)
        return loss

    # --- evaluation ------------------------------------------------------------------------------
    def _start_evaluation(self, stage: str) -> None:
        self._sets = evaluation_sets(self.trainer.datamodule, stage)
        self._accuracies = [TopKAccuracy() for _ in self._sets]
        self._current_set = None

    def _evaluation_step(self, batch: ClassificationBatch, dataloader_idx: int) -> None:
        if dataloader_idx != self._current_set:  # Lightning runs the loaders one after another
            self.use_classes(self._sets[dataloader_idx].classnames)
            self._current_set = dataloader_idx
        logits = self(self.batch_input(batch))
        self._accuracies[dataloader_idx].update(logits, batch["label"], batch["index"])

    def _log_evaluation(self, stage: str) -> None:
        top1 = {}
        for evaluation_set, accuracy in zip(self._sets, self._accuracies):
            if not accuracy.has_updates:
                continue
            prefix = f"{stage}/{evaluation_set.name}_" if evaluation_set.name else f"{stage}/"
            result = accuracy.compute()
            self.log(prefix + "top1", result["top1"], add_dataloader_idx=False)
            self.log(prefix + "top5", result["top5"], add_dataloader_idx=False)
            top1[evaluation_set.name] = result["top1"]
        if "base" in top1 and "new" in top1:
            self.log(f"{stage}/hm", harmonic_mean(top1["base"], top1["new"]), add_dataloader_idx=False)

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation("validate")

    def on_test_epoch_start(self) -> None:
        self._start_evaluation("test")

    def validation_step(self, batch: ClassificationBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, dataloader_idx)

    def test_step(self, batch: ClassificationBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Class probabilities ``[batch, classes]`` over the data module's classes, the most probable
        class with its name and probability, and the images' paths (or data set indices and labels)."""
        self.use_classes(self.trainer.datamodule.classnames)
        probabilities = self(self.batch_input(batch)).float().softmax(dim=-1)
        best = probabilities.max(dim=-1)
        return {
            **{key: batch[key] for key in ("path", "index", "label") if key in batch},
            "predicted_class": [self.classnames[i] for i in best.indices.tolist()],
            "probability": best.values,
            "predicted": best.indices,
            "probabilities": probabilities,
        }
