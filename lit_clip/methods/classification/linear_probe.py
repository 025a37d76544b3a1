"""Linear probe (Radford et al., 2021, section 3.2): how linearly separable are the frozen image features?

The CLIP paper's protocol: extract features of the training, validation and test
images with the frozen image tower; fit an L2-regularised logistic regression on
the training features for each regularisation strength of a log-spaced sweep;
refine the best strength by CoOp's binary search in log space (its ``lpclip``
script: between a tenth and ten times the sweep's best, halving the interval
towards the better end ``refine_steps`` times); refit on training + validation
features with the strength found; report test accuracy.

The regression is solved with full-batch L-BFGS in torch (on the GPU when there is
one) instead of scikit-learn, whose solver the paper used: the objective is the
same, ``C * sum(cross_entropy) + ||W||^2 / 2`` (scikit-learn's ``C``), written as a
mean over samples. Features are the image embeddings of ``encode_image``, as in
the CLIP repository's linear-probe example.

Run with ``lit-clip test``: the fitting happens at the start of the test epoch, the
test loop then scores the held-out images.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lit_clip.batches import ClassificationBatch, EvaluationSet
from lit_clip.methods.frozen_clip import FrozenCLIPMethod
from lit_clip.metrics import TopKAccuracy

# scikit-learn's C from 1e-6 to 1e6, every half decade (the paper swept the same range).
DEFAULT_C_GRID = tuple(10.0 ** (k / 2) for k in range(-12, 13))


def refine_C(val_accuracy: Callable[[float], float], peak: float, steps: int) -> tuple[float, float]:
    """CoOp lpclip's binary search for C around ``peak``; returns ``(C, its validation accuracy)``.

    The interval starts at ``[peak / 10, peak * 10]`` in log10 space. Each step scores both ends,
    keeps the better (the left one on a tie) as the current choice and halves the interval
    towards it; the choice after the last step is the answer, as in lpclip.
    """
    left, right = math.log10(peak) - 1, math.log10(peak) + 1
    choice = (peak, float("nan"))
    for _ in range(steps):
        left_accuracy, right_accuracy = val_accuracy(10**left), val_accuracy(10**right)
        middle = (left + right) / 2
        if left_accuracy < right_accuracy:
            choice, left = (10**right, right_accuracy), middle
        else:
            choice, right = (10**left, left_accuracy), middle
    return choice


def fit_logistic_regression(features: Tensor, labels: Tensor, num_classes: int, C: float, max_iter: int = 1000) -> nn.Linear:
    """Multinomial logistic regression minimising ``mean CE + ||W||^2 / (2 C N)`` (bias not penalised)."""
    linear = nn.Linear(features.shape[1], num_classes).to(features.device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    l2 = 1.0 / (C * features.shape[0])
    optimizer = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(features), labels) + 0.5 * l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return linear.requires_grad_(False)


class LinearProbe(FrozenCLIPMethod):
    def __init__(
        self,
        pretrained: str,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
        C_grid: Sequence[float] = DEFAULT_C_GRID,
        refine_steps: int = 8,
        max_iter: int = 1000,
    ):
        """
        Args:
            pretrained: CLIP weights (see ``lit_clip.load_clip``).
            architecture: the architecture name, when it cannot be inferred from the weights.
            quick_gelu: force the activation; by default it is read from the checkpoint's format.
            C_grid: inverse L2 strengths to sweep on the validation split (scikit-learn's ``C``).
            refine_steps: steps of the binary search around the sweep's best C (lpclip's 8; 0: the sweep's best).
            max_iter: L-BFGS iterations per fit.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        self.classifier: nn.Linear | None = None

    @torch.no_grad()
    def extract_features(self, loader: DataLoader) -> tuple[Tensor, Tensor]:
        features, labels = [], []
        for batch in loader:
            features.append(self.model.encode_image(self.batch_input(batch).to(self.device)).float())
            labels.append(batch["label"].to(self.device))
        return torch.cat(features), torch.cat(labels)

    @torch.inference_mode(False)  # Lightning tests in inference mode, where nothing can be fitted
    def on_test_epoch_start(self) -> None:
        datamodule = self.trainer.datamodule
        num_classes = len(datamodule.classnames)
        train = self.extract_features(datamodule.train_dataloader())
        val = self.extract_features(datamodule.val_dataloader())
        def val_accuracy(C: float) -> float:
            classifier = fit_logistic_regression(*train, num_classes, C, self.hparams.max_iter)
            return (classifier(val[0]).argmax(dim=-1) == val[1]).float().mean().item()

        accuracies = [val_accuracy(C) for C in self.hparams.C_grid]
        best = max(range(len(accuracies)), key=accuracies.__getitem__)
        best_C, best_accuracy = self.hparams.C_grid[best], accuracies[best]
        rank_zero_info(
            "linear probe sweep (C: val top-1): "
            + ", ".join(f"{C:.0e}: {acc:.3f}" for C, acc in zip(self.hparams.C_grid, accuracies))
        )
        if self.hparams.refine_steps:
            best_C, best_accuracy = refine_C(val_accuracy, best_C, self.hparams.refine_steps)
        rank_zero_info(f"refitting on train + val with C={best_C:.3g} (val top-1 {best_accuracy:.3f})")
        features, labels = torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]])
        self.classifier = fit_logistic_regression(features, labels, num_classes, best_C, self.hparams.max_iter)
        self.log("test/best_C", best_C)
        self.log("test/val_top1_at_best_C", best_accuracy)
        super().on_test_epoch_start()

    def set_classes(self, classnames: Sequence[str]) -> None:
        # The regression's outputs are the classes it was fitted on: nothing to rebuild, and no other set to score.
        fitted = tuple(self.trainer.datamodule.classnames)
        if tuple(classnames) != fitted:
            raise ValueError(
                f"a linear probe scores the {len(fitted)} classes it was fitted on, not {len(classnames)} others"
            )

    def evaluation_metric(self, evaluation_set: EvaluationSet) -> TopKAccuracy:
        return TopKAccuracy()

    def evaluate_batch(self, batch: ClassificationBatch, metric: TopKAccuracy) -> None:
        features = self.model.encode_image(self.batch_input(batch)).float()
        metric.update(self.classifier(features), batch["label"], batch["index"])
