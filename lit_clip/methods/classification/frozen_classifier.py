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

import torch.nn.functional as F
from torch import Tensor

from lit_clip.batches import ClassificationBatch, EvaluationSet
from lit_clip.methods.frozen_clip import FrozenCLIPMethod
from lit_clip.metrics import TopKAccuracy


class FrozenCLIPClassifier(FrozenCLIPMethod):
    """Base class: a frozen CLIP, class names from the data module, accuracy per evaluation set.

    Subclasses implement :meth:`set_classes` and :meth:`forward` and, if they train,
    ``configure_optimizers``.
    """

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
    def evaluation_metric(self, evaluation_set: EvaluationSet) -> TopKAccuracy:
        return TopKAccuracy()

    def evaluate_batch(self, batch: ClassificationBatch, metric: TopKAccuracy) -> None:
        metric.update(self(self.batch_input(batch)), batch["label"], batch["index"])

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
