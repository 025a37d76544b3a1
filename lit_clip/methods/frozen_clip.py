"""What every method on a frozen CLIP shares: classifiers, and the coming segmentation, detection and depth methods.

- The CLIP comes from ``pretrained`` (see :func:`lit_clip.load_clip`) as ``self.model`` (the name of
  the CLIP in every method), is frozen and stays in eval mode even while the method trains, so the
  BatchNorm statistics of a ResNet tower stay those it was trained with (and no dropout or patch
  dropout wakes up).
- Checkpoints hold only what the method itself learns or computes (context vectors, adapters,
  caches): the CLIP comes back from ``pretrained``. Buffers that depend on class names are never
  saved, so a checkpoint can be evaluated on other class names.
- Class names (labels, segmentation label sets, detection vocabularies, depth bins, action names)
  have one life cycle: :meth:`use_classes` calls the method's :meth:`set_classes` when they, or the
  device, change; :meth:`build_text_classifier` is zero-shot CLIP's classifier from prompt templates.
- :meth:`batch_input` says what a batch's input to the CLIP is: images by default; region crops,
  depth views or video frames for the methods that override it.
- Evaluation runs per class set: each validation / test loader of the data module is labelled over
  one :class:`~lit_clip.batches.EvaluationSet` (all classes; or base and new, seen and unseen), the
  method switches to its classes, feeds the set's metric (:meth:`evaluation_metric`,
  :meth:`evaluate_batch`) and logs its numbers prefixed with the set's name (``test/new_top1``,
  ``test/unseen_mIoU``), and the harmonic mean of the headline number over a base / new pair.
"""
from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from lit_clip.batches import EvaluationSet
from lit_clip.checkpoints import load_clip
from lit_clip.models.clip import CLIP
from lit_clip.zeroshot import build_zeroshot_classifier

MODEL_PREFIX = "model."


def evaluation_sets(datamodule: L.LightningDataModule, stage: str) -> list[EvaluationSet]:
    """The class sets of the data module's ``stage`` loaders, in loader order.

    A data module that evaluates on several class sets (base-to-new, seen / unseen) names them with
    ``evaluation_sets(stage)``; any other has one set: its ``classnames``.
    """
    if hasattr(datamodule, "evaluation_sets"):
        return datamodule.evaluation_sets(stage)
    return [EvaluationSet("", tuple(datamodule.classnames))]


def harmonic_mean(a: Tensor, b: Tensor) -> Tensor:
    return 2 * a * b / (a + b) if a + b > 0 else a * 0


class FrozenCLIPMethod(L.LightningModule):
    """Base class of the methods on a frozen CLIP: loading, the eval lock, lean checkpoints, class names,
    evaluation per class set.

    ``harmonic_pair``: the names of two evaluation sets, and ``headline`` the number of theirs whose harmonic
    mean is logged as ``{stage}/{harmonic_name}`` (CoCoOp's base / new H, the zero-shot segmentation hIoU).
    ``trains = False`` marks methods used with ``test`` / ``validate`` only.
    """

    trains = True
    harmonic_pair: tuple[str, str] = ("base", "new")
    headline: str = "top1"
    harmonic_name: str = "hm"

    def __init__(self, pretrained: str, architecture: str | None = None, quick_gelu: bool | None = None):
        super().__init__()
        self.model: CLIP = load_clip(pretrained, architecture=architecture, quick_gelu=quick_gelu).requires_grad_(False)
        self.classnames: tuple[str, ...] = ()
        self._classes_built_on: torch.device | None = None
        self._sets: list[EvaluationSet] = []
        self._metrics: list[Any] = []
        self._current_set: int | None = None

    # --- what a method may define ----------------------------------------------------------------
    def set_classes(self, classnames: Sequence[str]) -> None:
        """Rebuild whatever depends on the class names (text features, prompt buffers, cache values)."""
        raise NotImplementedError(f"{type(self).__name__} does not use class names")

    def batch_input(self, batch: dict) -> Tensor:
        """What the CLIP sees of a batch: its images (region crops, depth views, video frames elsewhere)."""
        return batch["image"]

    def evaluation_metric(self, evaluation_set: EvaluationSet) -> Any:
        """A fresh metric (``update``, ``has_updates``, ``compute() -> dict``) for one evaluation set."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    def evaluate_batch(self, batch: dict, metric: Any) -> None:
        """Feed ``metric`` one batch of the current evaluation set (its classes are set)."""
        raise NotImplementedError(f"{type(self).__name__} does not evaluate")

    # --- the frozen CLIP -------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        return self

    def image_features(self, images: Tensor, prompts: Sequence[Tensor | None] | None = None) -> Tensor:
        """L2-normalised image embeddings of the frozen image tower, in fp32."""
        return F.normalize(self.model.encode_image(images, prompts).float(), dim=-1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key in [key for key in state if key.startswith(MODEL_PREFIX)]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # The CLIP is not in our checkpoints: take it from `pretrained`, already loaded, so that loading
        # stays strict about everything the method itself saved.
        clip_state = {MODEL_PREFIX + key: value for key, value in self.model.state_dict().items()}
        checkpoint["state_dict"] = {**clip_state, **checkpoint["state_dict"]}

    # --- class names -----------------------------------------------------------------------------
    def use_classes(self, classnames: Sequence[str]) -> None:
        """:meth:`set_classes` when the class names (or the model's device) differ from the current ones."""
        classnames = tuple(classnames)
        if (classnames, self.device) != (self.classnames, self._classes_built_on):
            # Not as inference tensors, even when built for a test: a later fit of this module reuses them.
            with torch.inference_mode(False):
                self.set_classes(classnames)
            self.classnames, self._classes_built_on = classnames, self.device

    def build_text_classifier(self, classnames: Sequence[str], templates: Sequence[str] | None = None) -> None:
        """``self.text_classifier`` ``[dim, classes]``: zero-shot CLIP's classifier from prompt templates
        (by default the data module's ``templates``)."""
        templates = self.trainer.datamodule.templates if templates is None else templates
        classifier = build_zeroshot_classifier(self.model, classnames, templates)
        self.register_buffer("text_classifier", classifier, persistent=False)

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
            headlines[evaluation_set.name] = result[self.headline]
        if all(name in headlines for name in self.harmonic_pair):
            first, second = (headlines[name] for name in self.harmonic_pair)
            self.log(f"{stage}/{self.harmonic_name}", harmonic_mean(first, second), add_dataloader_idx=False)

    def log_result(self, prefix: str, result: dict[str, Tensor], evaluation_set: EvaluationSet) -> None:
        """Log an evaluation set's numbers: every scalar of ``result``, prefixed."""
        for name, value in result.items():
            if torch.as_tensor(value).ndim == 0:
                self.log(prefix + name, value, add_dataloader_idx=False)
