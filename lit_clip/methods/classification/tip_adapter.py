"""Tip-Adapter and Tip-Adapter-F (Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP", ECCV 2022).

**Tip-Adapter** adds a key-value cache of the few-shot training set to zero-shot CLIP, with
no training at all:

- keys ``F`` (NK x d): each training image's feature, averaged over ``augment_epochs`` (10)
  passes of the data module's training augmentation, then L2-normalised (the official code:
  RandomResizedCrop(0.5-1) + flip; set ``train_crop_scale`` to match);
- values ``L`` (NK x N): the one-hot labels of those images;
- for a test image's normalised feature ``f``, with the zero-shot classifier ``W``:

      logits = 100 f W  +  alpha * exp(-beta * (1 - f F^T)) L

  ``beta`` sharpens the affinities, ``alpha`` weighs the cache against CLIP's knowledge.
  Both are searched over a grid (beta in 0.1 .. scale_beta, alpha in 0.1 .. scale_alpha) on the
  data set's whole validation split, as the official code does (``search_split="full_val"``;
  ``"val"`` searches on the few-shot cut of ``min(K, 4)`` images per class instead), never on
  test images (the official ImageNet script searches on test; here ImageNet's validation images
  are 50 per class drawn from its training images). The official start values and grids differ
  per data set: ``configs/tip_adapter/<data set>.yaml`` carry them.

**Tip-Adapter-F** makes the keys a trainable ``Linear(d, NK)`` initialised from ``F``, trains
it with the cross-entropy of those logits (alpha and beta fixed at their initial values;
AdamW lr 1e-3, eps 1e-4, cosine over the steps, batch 256, 20 epochs), then searches alpha
and beta again on the validation split. Here the search runs before each validation, so
the validation accuracy and the checkpoints carry the values found for the current keys.
The official code keeps the epoch with the best *test* accuracy; here the last epoch counts.

Run Tip-Adapter with ``lit-clip test`` (the cache is built and the search done first) and
Tip-Adapter-F with ``lit-clip fit`` then ``test``. The cache knows the classes it was built
from: classes without cache entries (the new half in base-to-new) get no cache term, i.e.
zero-shot CLIP's logits.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from lit_clip.methods.classification.frozen_classifier import FrozenCLIPClassifier
from lit_clip.optim import warmup_cosine_schedule
from lit_clip.zeroshot import scaled_cosine_logits

# Where alpha and beta are searched: the data module's loader of each choice.
SEARCH_SPLITS = {"full_val": "full_val_dataloader", "val": "val_dataloader"}


def cache_logits(features: Tensor, keys: Tensor, values: Tensor, beta: float | Tensor) -> Tensor:
    """``exp(-beta (1 - f F^T)) L``: each cached image's label, weighted by its sharpened affinity to ``f``."""
    affinity = features @ keys.T
    return torch.exp(-beta * (1 - affinity)) @ values


def search_grid(scale: float, steps: int) -> list[float]:
    """The official grid: ``steps`` values from 0.1 towards ``scale`` (``scale`` itself excluded)."""
    return [i * (scale - 0.1) / steps + 0.1 for i in range(steps)]


class TipAdapter(FrozenCLIPClassifier):
    trains = False

    def __init__(
        self,
        pretrained: str,
        augment_epochs: int = 10,
        alpha: float = 1.0,
        beta: float = 1.0,
        search: bool = True,
        search_scale: Sequence[float] = (7.0, 3.0),
        search_steps: Sequence[int] = (200, 20),
        search_split: str = "full_val",
        architecture: str | None = None,
        quick_gelu: bool | None = None,
    ):
        """
        Args:
            pretrained: the frozen CLIP's weights (see ``lit_clip.load_clip``).
            augment_epochs: augmented passes over the training images whose features are averaged into the keys.
            alpha, beta: the residual ratio and the sharpness before (or without) the search (official: 1.17 and 1
                for ImageNet; 1 and 1 here).
            search: search alpha and beta on the validation split.
            search_scale, search_steps: the grids of beta and alpha, in that order (official ImageNet: (7, 3) and
                (200, 20); its configs per data set range up to (50, 50)).
            search_split: "full_val", the data set's whole validation split (official), or "val", the few-shot
                validation cut the data module's ``val_dataloader`` gives.
            architecture, quick_gelu: see ``lit_clip.load_clip``.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        if search_split not in SEARCH_SPLITS:
            raise ValueError(f"search_split must be one of {list(SEARCH_SPLITS)}, got {search_split!r}")
        dim = self.model.text_projection.shape[1]
        self.cache_keys = self.make_keys(torch.zeros(0, dim))
        self.register_buffer("cache_labels", torch.zeros(0, dtype=torch.long))
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.register_buffer("beta", torch.tensor(float(beta)))
        self.register_buffer("searched", torch.tensor(False))  # alpha and beta were searched for the current keys
        self.cache_classnames: list[str] = []

    def make_keys(self, keys: Tensor) -> Tensor | nn.Parameter:
        """The cache keys as this method holds them: a buffer (Tip-Adapter-F: a trainable parameter)."""
        self.register_buffer("cache_keys", keys)
        return self.cache_keys

    # --- the cache -------------------------------------------------------------------------------
    @property
    def has_cache(self) -> bool:
        return self.cache_labels.numel() > 0

    @torch.inference_mode(False)
    @torch.no_grad()
    def build_cache(self) -> None:
        """Keys from ``augment_epochs`` augmented passes over the training images; values from their labels."""
        datamodule = self.trainer.datamodule
        loader = datamodule.augmented_train_dataloader()
        passes = []
        for epoch in range(self.hparams.augment_epochs):
            rank_zero_info(f"Tip-Adapter cache: augmented pass {epoch + 1}/{self.hparams.augment_epochs} over the training images")
            features, labels = [], []
            for batch in loader:
                # In the trainer's precision, as the test images will be encoded.
                with self.trainer.precision_plugin.forward_context():
                    features.append(self.model.encode_image(self.batch_input(batch).to(self.device)).float())
                labels.append(batch["label"].to(self.device))
            passes.append(torch.cat(features))
        keys = F.normalize(torch.stack(passes).mean(dim=0), dim=-1)
        # Ranks augment with their own random streams: all keep rank 0's cache, as DDP keeps its weights.
        keys = self.trainer.strategy.broadcast(keys, src=0).to(self.device)
        self.cache_keys = self.make_keys(keys)
        self.cache_labels = torch.cat(labels)
        self.cache_classnames = list(datamodule.classnames)
        self.searched.fill_(False)
        self.classnames = ()  # the values depend on the cache: rebuild them on next use

    def set_classes(self, classnames: Sequence[str]) -> None:
        self.build_text_classifier(classnames)
        # One-hot values over these classes; cached images of classes not among them have none.
        column = {name: j for j, name in enumerate(classnames)}
        label_columns = torch.tensor([column.get(name, -1) for name in self.cache_classnames], dtype=torch.long)
        columns = label_columns.to(self.device)[self.cache_labels]
        values = torch.zeros(len(columns), len(classnames), device=self.device)
        known = columns >= 0
        values[known.nonzero().squeeze(1), columns[known]] = 1.0
        self.register_buffer("cache_values", values, persistent=False)

    # --- classification --------------------------------------------------------------------------
    def logits(self, features: Tensor, alpha: float | Tensor, beta: float | Tensor) -> Tensor:
        # In fp32 even under bf16 autocast: exp(-beta (1 - affinity)) needs the affinities' digits near 1,
        # and alpha and beta are searched in fp32.
        with torch.autocast(features.device.type, enabled=False):
            clip_logits = scaled_cosine_logits(100.0, features, self.text_classifier)
            return clip_logits + alpha * cache_logits(features, self.cache_keys.float(), self.cache_values, beta)

    def forward(self, images: Tensor) -> Tensor:
        return self.logits(self.image_features(images), self.alpha, self.beta)

    # --- alpha and beta, searched on the validation split ----------------------------------------
    @torch.inference_mode(False)
    @torch.no_grad()
    def search_alpha_beta(self) -> None:
        datamodule = self.trainer.datamodule
        self.use_classes(datamodule.classnames)
        features, labels = [], []
        for batch in getattr(datamodule, SEARCH_SPLITS[self.hparams.search_split])():
            with self.trainer.precision_plugin.forward_context():
                features.append(self.image_features(self.batch_input(batch).to(self.device)))
            labels.append(batch["label"].to(self.device))
        features, labels = torch.cat(features), torch.cat(labels)
        clip_logits = scaled_cosine_logits(100.0, features, self.text_classifier)
        (beta_scale, alpha_scale), (beta_steps, alpha_steps) = self.hparams.search_scale, self.hparams.search_steps
        alphas = torch.tensor(search_grid(alpha_scale, alpha_steps), device=self.device)
        best = (-1.0, float(self.alpha), float(self.beta))
        for beta in search_grid(beta_scale, beta_steps):  # the official order; the first best pair wins
            cache = cache_logits(features, self.cache_keys, self.cache_values, beta)
            logits = clip_logits[None] + alphas[:, None, None] * cache[None]
            accuracy = (logits.argmax(dim=-1) == labels).float().mean(dim=1)
            index = int(accuracy.argmax())
            if accuracy[index] > best[0]:
                best = (float(accuracy[index]), float(alphas[index]), beta)
        best = self.trainer.strategy.broadcast(best, src=0)  # every rank tests with rank 0's choice
        self.alpha.fill_(best[1])
        self.beta.fill_(best[2])
        self.searched.fill_(True)
        rank_zero_info(
            f"Tip-Adapter search on {len(labels)} validation images ({self.hparams.search_split}): "
            f"alpha={best[1]:.3f} beta={best[2]:.3f} (val top-1 {best[0]:.4f})"
        )

    def prepare(self) -> None:
        """Before an evaluation: the cache (built once) and alpha and beta searched for it (once per set of keys)."""
        if not self.has_cache:
            self.build_cache()
        if self.hparams.search and not self.searched:
            self.search_alpha_beta()

    def on_validation_epoch_start(self) -> None:
        self.prepare()
        super().on_validation_epoch_start()

    def on_test_epoch_start(self) -> None:
        self.prepare()
        super().on_test_epoch_start()

    def on_predict_epoch_start(self) -> None:
        self.prepare()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log_dict({"val/alpha": self.alpha, "val/beta": self.beta})

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log_dict({"test/alpha": self.alpha, "test/beta": self.beta})

    # --- checkpoints: the cache and the classes it knows -----------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["cache_classnames"] = self.cache_classnames

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.cache_classnames = list(checkpoint.get("cache_classnames", []))
        state = checkpoint["state_dict"]
        self.cache_keys = self.make_keys(torch.empty_like(state["cache_keys"], device=self.device))
        self.cache_labels = torch.empty_like(state["cache_labels"], device=self.device)
        self.classnames = ()  # a new cache: rebuild the values on next use


class TipAdapterF(TipAdapter):
    trains = True

    def __init__(
        self,
        pretrained: str,
        augment_epochs: int = 10,
        alpha: float = 1.0,
        beta: float = 1.0,
        search: bool = True,
        search_scale: Sequence[float] = (7.0, 3.0),
        search_steps: Sequence[int] = (200, 20),
        search_split: str = "full_val",
        lr: float = 0.001,
        eps: float = 1e-4,
        weight_decay: float = 0.01,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
    ):
        """
        Args:
            pretrained, augment_epochs, alpha, beta, search, search_scale, search_steps, search_split: as
                ``TipAdapter``; alpha and beta stay at these values while the keys train.
            lr, eps, weight_decay: AdamW (official: 1e-3, 1e-4 and torch's default 0.01), cosine over all steps.
            architecture, quick_gelu: see ``lit_clip.load_clip``.
        """
        super().__init__(
            pretrained, augment_epochs, alpha, beta, search, search_scale, search_steps, search_split, architecture,
            quick_gelu,
        )
        self.save_hyperparameters()

    def make_keys(self, keys: Tensor) -> nn.Parameter:
        if isinstance(getattr(self, "cache_keys", None), nn.Parameter) and self.cache_keys.shape == keys.shape:
            self.cache_keys.data.copy_(keys)  # the optimizer already holds this parameter
            return self.cache_keys
        self.cache_keys = nn.Parameter(keys)
        return self.cache_keys

    def setup(self, stage: str) -> None:
        if stage == "fit" and not self.has_cache:
            # The keys are trained, so the parameter must exist, shaped, before the optimizer; filled in on_fit_start.
            samples = len(self.trainer.datamodule.samples("train"))
            self.cache_keys = self.make_keys(torch.zeros(samples, self.cache_keys.shape[1]))

    def on_fit_start(self) -> None:
        if not self.has_cache:
            self.build_cache()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.searched.fill_(False)  # the keys are about to change

    def forward(self, images: Tensor) -> Tensor:
        if self.training:  # the keys train with alpha and beta at their initial values
            return self.logits(self.image_features(images), self.hparams.alpha, self.hparams.beta)
        return super().forward(images)

    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.AdamW([self.cache_keys], lr=h.lr, eps=h.eps, weight_decay=h.weight_decay)
        schedule = warmup_cosine_schedule(optimizer, 0, self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
