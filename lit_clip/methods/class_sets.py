"""What every method evaluated on a data module's class sets shares (the frozen-CLIP methods, GLIP): the class-name
life cycle and evaluation per class set.

- Class names (labels, segmentation label sets, detection vocabularies, depth bins, action names)
  have one life cycle: :meth:`~EvaluatesPerClassSet.use_classes` calls the method's ``set_classes``
  when they, or the device, change.
- Evaluation runs per class set: each validation / test loader of the data module is labelled over
  one :class:`~lit_clip.batches.EvaluationSet` (all classes; or base and new, seen and unseen), the
  method switches to its classes, feeds the set's metric (``evaluation_metric``, ``evaluate_batch``)
  and logs its numbers prefixed with the set's name (``test/new_top1``, ``test/unseen_mIoU``), and the
  harmonic mean of the headline number over a base / new pair.
"""
from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch
from torch import Tensor

from lit_clip.batches import EvaluationSet


def evaluation_sets(datamodule: L.LightningDataModule, stage: str) -> list[EvaluationSet]:
    """The class sets of the data module's ``stage`` loaders, in loader order.

    A data module that evaluates on several class sets (base-to-new, seen / unseen) names them with
    ``evaluation_sets(stage)``; any other has one set: its ``classnames`` (none for a depth data module).
    """
    if hasattr(datamodule, "evaluation_sets"):
        return datamodule.evaluation_sets(stage)
    return [EvaluationSet("", tuple(getattr(datamodule, "classnames", ())))]


def evaluation_prefix(datamodule: L.LightningDataModule | None, stage: str, dataloader_idx: int) -> str:
    """The metric prefix of an evaluation loader: its set's name in the data module's ``evaluation_sets``
    ("heldout_"), or without them "" for the first loader and "set<k>_" for the others."""
    sets = getattr(datamodule, "evaluation_sets", None)
    if sets is not None:
        name = sets(stage)[dataloader_idx].name
        return f"{name}_" if name else ""
    return f"set{dataloader_idx}_" if dataloader_idx else ""


def harmonic_mean(a: Tensor, b: Tensor) -> Tensor:
    return 2 * a * b / (a + b) if a + b > 0 else a * 0


class EvaluatesPerClassSet(L.LightningModule):
    """Base class of the methods evaluated per class set (see the module's docstring).

    ``harmonic_pair``: the names of two evaluation sets, and ``headline`` the number of theirs whose harmonic
    mean is logged as ``{stage}/{harmonic_name}`` (CoCoOp's base / new H, the zero-shot segmentation hIoU).
    ``trains = False`` marks methods used with ``test`` / ``validate`` only.
    """

    trains = True
    harmonic_pair: tuple[str, str] = ("base", "new")
    headline: str = "top1"
    harmonic_name: str = "hm"

    def __init__(self):
        super().__init__()
        self.classnames: tuple[str, ...] = ()
        self._classes_built_on: torch.device | None = None
        self._sets: list[EvaluationSet] = []
        self._metrics: list[Any] = []
        self._current_set: int | None = None

    # --- what a method may define ----------------------------------------------------------------
    def set_classes(self, classnames: Sequence[str]) -> None:
        """Rebuild whatever depends on the class names (text features, prompt buffers, cache values)."""
        raise NotImplementedError(f"{type(self).__name__} does not use class names")


    def evaluation_metric(self, evaluation_set: EvaluationSet) -> Any:
        """A fresh metric (``update``, ``has_updates``, ``compute() -> dict``) for one evaluation set."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    def evaluate_batch(self, batch: dict, metric: Any) -> None:
        """Feed ``metric`` one batch of the current evaluation set (its classes are set)."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")
    # --- class names -----------------------------------------------------------------------------
    def use_classes(self, classnames: Sequence[str]) -> None:
        """:meth:`set_classes` when the class names (or the model's device) differ from the current ones."""
        classnames = tuple(classnames)
        if (classnames, self.device) != (self.classnames, self._classes_built_on):
            # Not as inference tensors, even when built for a test: a later fit of this module reuses them.
            with torch.inference_mode(False):
                self.set_classes(classnames)
            self.classnames, self._classes_built_on = classnames, self.device


    # --- evaluation, per class set ---------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._start_evaluation("validate")

    def on_test_epoch_start(self) -> None:
        self._start_evaluation("test")

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")

    def _start_evaluation(self, stage: str) -> None:
        self._sets = evaluation_sets(self.trainer.datamodule, stage)
        self._metrics = [self.evaluation_metric(evaluation_set) for evaluation_set in self._sets]
        self._current_set = None

    def _evaluation_step(self, batch: dict, dataloader_idx: int) -> None:
        if dataloader_idx != self._current_set:  # Lightning runs the loaders one after another
            self.use_classes(self._sets[dataloader_idx].classnames)
            self._current_set = dataloader_idx
        self.evaluate_batch(batch, self._metrics[dataloader_idx])

    def _log_evaluation(self, stage: str) -> None:
        headlines = {}
        for evaluation_set, metric in zip(self._sets, self._metrics):
            if not metric.has_updates:
                continue
            prefix = f"{stage}/{evaluation_set.name}_" if evaluation_set.name else f"{stage}/"
            result = metric.compute()
            self.log_result(prefix, result, evaluation_set)
            if self.headline in result:  # a method's other kinds of set (GLIP's phrase grounding) have their own
                headlines[evaluation_set.name] = result[self.headline]
        if all(name in headlines for name in self.harmonic_pair):
            first, second = (headlines[name] for name in self.harmonic_pair)
            self.log(f"{stage}/{self.harmonic_name}", harmonic_mean(first, second), add_dataloader_idx=False)

    def log_result(self, prefix: str, result: dict[str, Tensor], evaluation_set: EvaluationSet) -> None:
        """Log an evaluation set's numbers: every scalar of ``result``, prefixed."""
        for name, value in result.items():
            if torch.as_tensor(value).ndim == 0:
                self.log(prefix + name, value, add_dataloader_idx=False)
