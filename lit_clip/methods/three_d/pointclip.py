"""PointCLIP (Zhang et al., "PointCLIP: Point Cloud Understanding by CLIP", CVPR 2022) and PointCLIP V2 (Zhu et al.,
"PointCLIP V2: Prompting CLIP and GPT for Powerful 3D Open-world Learning", ICCV 2023): a frozen CLIP classifies a
point cloud from depth images of it seen from several views.

What the official code does (ZrrSkywalker/PointCLIP ``trainers/zeroshot.py``, ``fewshot.py``,
``search_weights.py``, ``configs/``; yangyangyang127/PointCLIP_V2 ``zeroshot_cls/trainers/zeroshot.py``,
``post_search.py``), and so this module by default:

1. **Views**: the cloud projected from V views (:mod:`~lit_clip.methods.three_d.projection`): V1's perspective
   splatting from 6 views (zero-shot; camera 1.6 away, 128 px) or 10 (few-shot; 1.4, 224 px), or V2's realistic
   projection from its 10 tilted views (112 x 112 x 8 grid, 110 px images); each image repeated into 3 channels,
   resized to the CLIP's input (bilinear, corners aligned) and fed to the frozen image tower as it is: no CLIP
   mean / std normalisation (``normalize_views=True`` adds it, for a CLIP trained on normalised depth renders).
2. **Logits**: the text classifier ``t_c`` of the prompt "point cloud depth map of a {}." (the data module's
   ``templates``; several are averaged as zero-shot CLIP does), and per view ``v`` the L2-normalised image feature
   ``f_v``, combined with view weights ``w_v``:

       logits_c = scale / sqrt(V) * sum_v w_v f_v . t_c

   which is the official's ``scale * concat_v(w_v f_v) . concat_v(t_c) / |concat_v(t_c)|`` (the text feature
   repeated V times, then normalised). ``scale`` is CLIP's ``exp(logit_scale)`` (V1; V2's zero-shot uses a fixed
   100: the same classes win). V1's zero-shot weights are all 1; V2's official weights were searched on the test set
   per data set and backbone (:data:`V2_OFFICIAL_TEST_SEARCHED_WEIGHTS`), so the default here is all 1 too.
3. **Few-shot** (``adapter=True``, V1's ``fewshot.py``): the inter-view adapter on the CLIP's raw view features
   ``x_v`` (:class:`InterViewAdapter`): a global branch ``BN (per view feature) - Dropout - Flatten -
   Linear(V * D -> D) - BN - ReLU - Dropout`` on the views weighted by learnable view weights (one per view, start
   0.5), a view branch ``Linear(D -> D) - ReLU - Linear(D -> V * D) - ReLU`` back to every view, and the residual
   ``0.6 * adapted + 0.4 * x``; the adapted features are L2-normalised *together* (over the concatenation of the
   views) and classified as above. Dropout 0.075. Training: DGCNN's label-smoothing cross-entropy
   (:func:`smoothed_cross_entropy`, 0.2), SGD lr 0.01, momentum 0.9, weight decay 5e-4, one warm-up epoch at a
   constant 1e-5 then a per-epoch cosine over ``max_epochs`` (official: 250, batch 32, 16 shots). Only the adapter
   trains; checkpoints hold the adapter and the view weights alone.
4. **Post-search** (``search_view_weights``): every combination of the weights in ``search_grid`` (official:
   0.25, 0.5, 0.75, 1.0; V1 searches all views, V2 keeps its first three at 0.75: ``searched_views``) is tried and
   the most accurate kept. V2 also searches prompts (``search_prompts``): per class, in two passes over the classes,
   the one sentence of its GPT-3 prompt file (``prompts_file``) whose text feature, put in the class's place, makes
   the classifier most accurate, kept when it beats the accuracy so far.

Deliberate differences:

- **Searches run on the data module's validation split, never on test.** The official scripts search view weights
  and prompts on the test set and report the searched accuracy (PointCLIP_V2 issues #4 and #25; V1's
  ``--post-search`` runs on the saved test features, and its few-shot "best_val" checkpoint is picked on test,
  ``val=test`` in ``datasets/modelnet40.py``). Here the search runs before testing (or predicting, or a
  ``validate`` run), once for the current adapter, and is logged; ties keep the weights already in use, then the
  grid's first combination (the official V1 loop keeps the grid's first best, V2's the current weights).
- A prompt file is used as zero-shot CLIP uses templates: each class's text feature is the renormalised mean of its
  sentences' normalised features. The official picks one sentence per class (by its test search, from a list
  written into its code); ``search_prompts`` picks per class as the official search does, starting from the means.
- The few-shot template is the data module's, like zero-shot's; the official few-shot code prompts
  "point cloud of a big {}.": set the data module's ``templates`` for it.
- ``view_weights`` default to all 1 for V2 as for V1 (see 2.).
- A training batch of one cloud is refused with a clear error (the adapter's BatchNorm needs two).

Use: ``lit-clip test`` zero-shot (``trains`` is False), ``lit-clip fit`` then ``test`` with ``adapter: true``, on a
data module of :class:`~lit_clip.batches.PointCloudBatch` es with ``classnames`` (and ``templates``); metrics
``{stage}/top1`` and ``top5``, and ``test/view_weight_{v}`` when searched. :meth:`PointCLIP.projected_views` gives
the views as drawn, for pictures.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from lit_clip.methods.classification.coop import coop_optimization
from lit_clip.methods.classification.frozen_classifier import FrozenCLIPClassifier
from lit_clip.methods.three_d.projection import (
    V1_FEW_SHOT_DISTANCE,
    V1_FEW_SHOT_SIZE,
    V1_ZERO_SHOT_DISTANCE,
    V1_ZERO_SHOT_SIZE,
    V2_GRID_SIZE,
    VIEW_SETS,
    View,
    project_v1,
    project_v2,
    view_rotations,
    views_to_clip_input,
)
from lit_clip.templates import POINTCLIP_TEMPLATES
from lit_clip.tokenizer import tokenize
from lit_clip.zeroshot import build_zeroshot_classifier, scaled_cosine_logits

# The official post-search grid (configs/trainers/*: SEARCH.TIME 4, RANGE 1: (i + 1) / 4).
SEARCH_GRID: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
# PointCLIP V2's zero-shot view weights (zeroshot_cls/trainers/best_param.py), searched on each test set: for
# reproducing its published numbers, not for other data.
V2_OFFICIAL_TEST_SEARCHED_WEIGHTS: dict[str, tuple[float, ...]] = {
    "modelnet40/RN50": (0.75, 0.75, 0.75, 0.75, 0.25, 0.5, 1.0, 1.0, 0.25, 0.25),
    "modelnet40/RN101": (0.75, 0.75, 0.75, 0.25, 0.5, 1.0, 0.75, 0.25, 0.25, 0.25),
    "modelnet40/ViT-B-16": (0.75, 0.75, 0.75, 0.25, 0.75, 1.0, 0.25, 1.0, 0.75, 0.25),
    "modelnet40/ViT-B-32": (0.75, 0.75, 0.75, 0.75, 0.25, 0.5, 0.5, 0.75, 0.5, 0.5),
    "scanobjectnn/RN50": (0.75, 0.75, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 0.25, 0.25),
    "scanobjectnn/RN101": (0.50, 0.50, 0.50, 0.75, 0.50, 1.00, 1.00, 0.75, 0.25, 0.25),
    "scanobjectnn/ViT-B-16": (0.75, 0.75, 0.75, 0.5, 0.5, 1.0, 0.75, 1.0, 0.25, 0.25),
    "scanobjectnn/ViT-B-32": (0.75, 0.75, 0.75, 0.5, 0.75, 0.75, 0.5, 1.0, 0.5, 0.75),
}


# --- the pieces, by their formulas -----------------------------------------------------------------------------
def combine_views(features: Tensor, classifier: Tensor, weights: Tensor, scale: float | Tensor) -> Tensor:
    """``scale / sqrt(V) * sum_v w_v features[:, v] @ classifier``: logits ``[B, C]`` from view features
    ``[B, V, D]``, a text classifier ``[D, C]`` and view weights ``[V]``, in fp32 even under autocast."""
    with torch.autocast(features.device.type, enabled=False):
        pooled = torch.einsum("bvd,v->bd", features.float(), weights.float()) / math.sqrt(features.shape[1])
        return scaled_cosine_logits(scale, pooled, classifier)


def smoothed_cross_entropy(logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:
    """DGCNN's label smoothing, as PointCLIP's ``smooth_loss``: the target is ``1 - smoothing`` on the true class
    and ``smoothing / (C - 1)`` on each other (torch's ``label_smoothing`` spreads over all C classes instead)."""
    classes = logits.shape[1]
    if classes == 1 or smoothing == 0:
        return F.cross_entropy(logits, labels)
    target = torch.full_like(logits, smoothing / (classes - 1)).scatter_(1, labels[:, None], 1 - smoothing)
    return -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()


class InterViewAdapter(nn.Module):
    """PointCLIP's inter-view adapter (``fewshot.py``: ``Adapter``) on raw view features ``[B, V, D]``.

    A global feature from all views (weighted by the learnable ``fusion_weights``, the official ``fusion_ratio``),
    spread back to every view by the view branch, and mixed with the input: ``ratio * adapted + (1 - ratio) * x``.
    """

    def __init__(self, dim: int, num_views: int, ratio: float = 0.6, dropout: float = 0.075, fusion_init: float = 0.5):
        super().__init__()
        self.ratio = ratio
        self.fusion_weights = nn.Parameter(torch.full((num_views,), float(fusion_init)))
        self.view_norm = nn.BatchNorm1d(dim)  # the official BatchNormPoint: one BatchNorm over every view's feature
        self.global_branch = nn.Sequential(
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(num_views * dim, dim),
            nn.BatchNorm1d(dim),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.view_branch = nn.Sequential(
            nn.Linear(dim, dim),
            nn.ReLU(),
            nn.Linear(dim, num_views * dim),
            nn.ReLU(),
        )

    def forward(self, features: Tensor) -> Tensor:
        weighted = features * self.fusion_weights[:, None].to(features.dtype)
        normed = self.view_norm(weighted.flatten(0, 1)).view_as(weighted)
        adapted = self.view_branch(self.global_branch(normed)).view_as(features)
        return self.ratio * adapted + (1 - self.ratio) * features


def best_view_weights(
    scores: Tensor,
    labels: Tensor,
    grid: Sequence[float],
    start: Tensor,
    searched_views: Sequence[int] | None = None,
    chunk_elements: int = 1 << 24,
) -> tuple[Tensor, float]:
    """The view weights of the grid that classify ``scores`` ``[N, V, C]`` (per view ``f_v . t_c``) best, and their
    accuracy.

    Every combination of ``grid`` values over ``searched_views`` (all views by default; the others keep their
    ``start`` weight) is tried in the official loops' order, the first view's weight varying slowest; a combination
    replaces the best so far only when strictly more accurate, starting from ``start`` itself.
    """
    num_samples, num_views, num_classes = scores.shape
    searched = list(range(num_views)) if searched_views is None else [int(v) for v in searched_views]
    if not searched or any(not 0 <= v < num_views for v in searched) or len(set(searched)) != len(searched):
        raise ValueError(f"searched_views must be distinct view indices in [0, {num_views}), got {searched_views}")
    if len(grid) == 0:
        raise ValueError("the view-weight search grid is empty")
    scores, start = scores.float(), start.float().to(scores.device)
    values = torch.tensor([float(value) for value in grid], device=scores.device)

    def accuracies(weights: Tensor) -> Tensor:
        return (torch.einsum("kv,nvc->knc", weights, scores).argmax(dim=-1) == labels).float().mean(dim=1)

    best_weights, best_accuracy = start.clone(), float(accuracies(start[None])[0])
    total = len(grid) ** len(searched)
    per_chunk = max(1, chunk_elements // max(1, num_samples * num_classes))
    places = len(grid) ** torch.arange(len(searched) - 1, -1, -1, device=scores.device)
    for first in range(0, total, per_chunk):
        combination = torch.arange(first, min(first + per_chunk, total), device=scores.device)
        weights = start.repeat(len(combination), 1)
        weights[:, searched] = values[(combination[:, None] // places) % len(grid)]
        accuracy = accuracies(weights)
        index = int(accuracy.argmax())  # the first best of the chunk
        if float(accuracy[index]) > best_accuracy:
            best_weights, best_accuracy = weights[index].clone(), float(accuracy[index])
    return best_weights, best_accuracy


def best_class_prompts(
    features: Tensor, labels: Tensor, classifier: Tensor, sentences: Sequence[Tensor], passes: int = 2
) -> tuple[list[int | None], float]:
    """V2's prompt search: per class, the sentence (``sentences[c]``: normalised features ``[n_c, D]``) that,
    replacing the class's column of ``classifier`` ``[D, C]``, classifies ``features`` ``[N, D]`` best, kept when
    strictly better than the accuracy so far; classes in order, ``passes`` times (official: 2). Returns the chosen
    sentence index per class (None: the column was kept) and the accuracy."""
    scores = features.float() @ classifier.float()
    best_accuracy = float((scores.argmax(dim=1) == labels).float().mean())
    choices: list[int | None] = [None] * scores.shape[1]
    for _ in range(passes):
        for c, candidates in enumerate(sentences):
            candidate_scores = features.float() @ candidates.float().T  # [N, n_c]
            others = scores.clone()
            others[:, c] = -torch.inf
            other_best, other_class = others.max(dim=1)
            # Class c wins where its score beats the others, or ties the best of them and comes first (argmax's rule).
            wins = (candidate_scores > other_best[:, None]) | (
                (candidate_scores == other_best[:, None]) & (c < other_class)[:, None]
            )
            correct = torch.where(wins, (labels == c)[:, None], (labels == other_class)[:, None])
            accuracy = correct.float().mean(dim=0)
            index = int(accuracy.argmax())
            if float(accuracy[index]) > best_accuracy:
                choices[c], best_accuracy = index, float(accuracy[index])
                scores[:, c] = candidate_scores[:, index]
    return choices, best_accuracy


def read_class_prompts(path: str | Path) -> dict[str, list[str]]:
    """A PointCLIP V2 prompt file: a JSON object ``{class name: [sentence, ...]}`` (its ``prompts/*_1000.json``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no prompt file at {str(path)!r} (expected JSON: {{class name: [sentences]}})")
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(prompts, dict) or not prompts:
        raise ValueError(
            f"{path} must hold a non-empty JSON object {{class name: [sentences]}}, got {type(prompts).__name__}"
        )
    for name, sentences in prompts.items():
        texts = isinstance(sentences, list) and all(isinstance(s, str) and s.strip() for s in sentences)
        if not texts or not sentences:
            raise ValueError(
                f"{path}: the prompts of {name!r} must be a non-empty list of non-empty strings, got {sentences!r:.200}"
            )
    return prompts


def prompts_of_class(prompts: dict[str, list[str]], name: str, path: str) -> list[str]:
    """The sentences of class ``name``, found under its name or with spaces and underscores swapped ("flower pot"
    is ModelNet40's "flower_pot" in the official files)."""
    for key in (name, name.replace(" ", "_"), name.replace("_", " ")):
        if key in prompts:
            return prompts[key]
    known = ", ".join(repr(key) for key in list(prompts)[:10]) + (", ..." if len(prompts) > 10 else "")
    raise ValueError(f"{path} has no prompts for class {name!r} (its classes: {known})")


@torch.no_grad()
def encode_sentences(model, sentences: Sequence[str], batch_size: int = 256) -> Tensor:
    """``[n, D]`` L2-normalised text features of ``sentences`` (too long ones are cut at the context length)."""
    device = next(model.parameters()).device
    features = []
    for start in range(0, len(sentences), batch_size):
        tokens = tokenize(list(sentences[start : start + batch_size]), context_length=model.context_length).to(device)
        features.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    return torch.cat(features)


def resolve_views(views: str | Sequence | None, default: str) -> tuple[View, ...]:
    """A view set's name (``VIEW_SETS``), or views written as Euler angle triples: ``[a, b, c]`` per view, or a list
    of such triples per view (applied in order)."""
    views = default if views is None else views
    if isinstance(views, str):
        if views not in VIEW_SETS:
            raise ValueError(f"unknown view set {views!r}; known: {sorted(VIEW_SETS)} (or a list of Euler angles)")
        return VIEW_SETS[views]
    resolved = []
    for position, view in enumerate(views):
        if not isinstance(view, (list, tuple)):
            raise ValueError(f"view {position} must be Euler angles [a, b, c] or a list of them, got {view!r}")
        view = list(view)
        single = view and all(isinstance(angle, (int, float)) for angle in view)  # one triple, not a list of them
        resolved.append((tuple(view),) if single else tuple(map(tuple, view)))
    return tuple(resolved)


class PointCLIP(FrozenCLIPClassifier):
    """PointCLIP V1 / V2 zero-shot (``lit-clip test``) or with the few-shot adapter (``adapter=True``, ``lit-clip
    fit``). See the module docstring."""

    def __init__(
        self,
        pretrained: str,
        projection: Literal["v1", "v2"] = "v1",
        views: str | list[list[float] | list[list[float]]] | None = None,
        view_weights: Sequence[float] | None = None,
        prompts_file: str | None = None,
        adapter: bool = False,
        adapter_ratio: float = 0.6,
        adapter_dropout: float = 0.075,
        fusion_init: float = 0.5,
        label_smoothing: float = 0.2,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
        search_view_weights: bool = False,
        search_grid: Sequence[float] = SEARCH_GRID,
        searched_views: Sequence[int] | None = None,
        search_prompts: bool = False,
        resolution: int | None = None,
        distance: float | None = None,
        invert: bool | None = None,
        normalize_views: bool = False,
        architecture: str | None = None,
        quick_gelu: bool | None = None,
    ):
        """
        Args:
            pretrained: the frozen CLIP's weights (see ``lit_clip.load_clip``; official: RN101 for V1, ViT-B/16
                for V2's best numbers).
            projection: "v1" (perspective splatting) or "v2" (realistic projection).
            views: a view set's name ("v1_zero_shot", "v1_few_shot", "v2") or Euler angles per view (see
                ``lit_clip.methods.three_d.projection``); default: V1's 6 zero-shot or 10 few-shot views (by
                ``adapter``), V2's 10.
            view_weights: the weight of each view's similarities (default all 1; see the module docstring).
            prompts_file: a V2 prompt JSON ``{class name: [sentences]}``, instead of the data module's ``templates``.
            adapter: train PointCLIP's inter-view adapter (few-shot).
            adapter_ratio, adapter_dropout, fusion_init: the adapter's residual ratio (0.6), dropout (0.075) and
                its learnable view weights' start (0.5).
            label_smoothing: of the training loss (0.2, DGCNN's form).
            lr, momentum, weight_decay, warmup_epochs, warmup_lr: SGD with a constant warm-up then per-epoch cosine
                over ``trainer.max_epochs`` (official: 0.01, 0.9, 5e-4, 1 epoch at 1e-5; 250 epochs).
            search_view_weights: search the view weights on the validation split before testing.
            search_grid: the weights tried for each searched view (official: 0.25, 0.5, 0.75, 1.0).
            searched_views: the views whose weights are searched (default all; V2's official search: 3 to 9).
            search_prompts: V2's per-class sentence search on the validation split (needs ``prompts_file``).
            resolution: V1's image side (official 128 zero-shot, 224 few-shot), V2's grid side (112). The views
                are then resized to the CLIP's input size; for a CLIP smaller than the official 224 px, V1's single-
                pixel points fade when shrunk (averaged with the empty pixels around them): project at about the
                CLIP's size instead (64 for a 64-px CLIP).
            distance: V1's camera distance (official 1.6 zero-shot, 1.4 few-shot).
            invert: V2's ``1 - image`` (official: True).
            normalize_views: CLIP's mean / std normalisation of the views (official: none; V1's views then are the
                depths divided by ``distance + 1``, in [0, 1] for clouds in the unit sphere).
            architecture, quick_gelu: see ``lit_clip.load_clip``.
        """
        super().__init__(pretrained, architecture, quick_gelu)
        self.save_hyperparameters()
        if projection not in ("v1", "v2"):
            raise ValueError(f"projection must be 'v1' or 'v2', got {projection!r}")
        if projection == "v2" and distance is not None:
            raise ValueError("distance is V1's camera distance; V2's projection is orthographic (leave it unset)")
        if projection == "v1" and invert is not None:
            raise ValueError("invert is V2's; V1's pixels are depths (leave it unset)")
        if search_prompts and prompts_file is None:
            raise ValueError("search_prompts picks sentences from a prompts_file: set prompts_file")
        self.trains = adapter
        default_views = "v2" if projection == "v2" else ("v1_few_shot" if adapter else "v1_zero_shot")
        self.views = resolve_views(views, default_views)
        self.register_buffer("rotations", view_rotations(self.views), persistent=False)
        num_views = len(self.views)
        if view_weights is not None and len(view_weights) != num_views:
            raise ValueError(f"view_weights has {len(view_weights)} values for {num_views} views: {list(view_weights)}")
        if resolution is None:
            resolution = V2_GRID_SIZE if projection == "v2" else (V1_FEW_SHOT_SIZE if adapter else V1_ZERO_SHOT_SIZE)
        self.resolution = resolution
        if distance is None:
            distance = V1_FEW_SHOT_DISTANCE if adapter else V1_ZERO_SHOT_DISTANCE
        self.distance = distance
        self.invert = True if invert is None else invert
        self.class_prompts = None if prompts_file is None else read_class_prompts(prompts_file)
        self.chosen_prompts: dict[str, str] = {}  # V2's prompt search: class name -> its sentence
        weights = torch.ones(num_views) if view_weights is None else torch.tensor([float(w) for w in view_weights])
        self.register_buffer("view_weights", weights)
        self.register_buffer("searched", torch.tensor(False))  # searched for the current adapter
        dim = self.model.text_projection.shape[1]
        self.adapter = None
        if adapter:
            self.adapter = InterViewAdapter(dim, num_views, adapter_ratio, adapter_dropout, fusion_init)

    # --- the views -------------------------------------------------------------------------------
    @property
    def num_views(self) -> int:
        return len(self.views)

    def project(self, points: Tensor) -> Tensor:
        """``[B, V, H, W]``: the official pixel values (V1 depths, 0 where no point; V2 in [0, 1])."""
        if self.hparams.projection == "v2":
            return project_v2(points, self.rotations, grid_size=self.resolution, invert=self.invert)
        return project_v1(points, self.rotations, image_size=self.resolution, distance=self.distance)

    def projected_views(self, points: Tensor) -> Tensor:
        """``[B, V, H, W]`` in [0, 1]: the views as drawn (V1's depths divided by ``distance + 1``, the far side of
        the unit sphere), before resizing and normalisation: for pictures."""
        views = self.project(points)
        return views if self.hparams.projection == "v2" else (views / (self.distance + 1)).clamp(0, 1)

    def batch_input(self, batch: dict) -> Tensor:
        """``[B, V, 3, S, S]``: the views of ``batch["points"]`` as the CLIP takes them (S: its image size)."""
        if self.hparams.normalize_views:
            views = self.projected_views(batch["points"])
        else:
            views = self.project(batch["points"])
        return views_to_clip_input(views, self.model.visual.image_size, normalize=self.hparams.normalize_views)

    # --- classification --------------------------------------------------------------------------
    def set_classes(self, classnames: Sequence[str]) -> None:
        if self.class_prompts is None:
            datamodule = self._trainer.datamodule if self._trainer is not None else None
            templates = getattr(datamodule, "templates", None) or list(POINTCLIP_TEMPLATES)
            classifier = build_zeroshot_classifier(self.model, classnames, templates)
        else:
            self.sentence_features = []
            columns = []
            for name in classnames:
                sentences = prompts_of_class(self.class_prompts, name, self.hparams.prompts_file)
                features = encode_sentences(self.model, sentences)
                self.sentence_features.append(features)
                chosen = self.chosen_prompts.get(name)
                columns.append(features[sentences.index(chosen)] if chosen in sentences else features.mean(dim=0))
            classifier = F.normalize(torch.stack(columns), dim=-1).T
        self.register_buffer("text_classifier", classifier, persistent=False)

    def view_features(self, images: Tensor) -> Tensor:
        """``[B, V, D]`` from the CLIP input ``[B, V, 3, S, S]``: normalised per view, or with the adapter its
        output normalised over all views together (as the official)."""
        batch, num_views = images.shape[:2]
        features = self.model.encode_image(images.flatten(0, 1)).float().view(batch, num_views, -1)
        if self.adapter is None:
            return F.normalize(features, dim=-1)
        adapted = self.adapter(features).float()
        return F.normalize(adapted.flatten(1), dim=-1).view_as(adapted)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[B, classes]`` of the CLIP input ``[B, V, 3, S, S]`` (see :meth:`batch_input`)."""
        scale = self.model.logit_scale.exp()
        return combine_views(self.view_features(images), self.text_classifier, self.view_weights, scale)

    # --- training (the adapter) ------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        batch_size = batch["label"].shape[0]
        if batch_size < 2:
            raise ValueError(
                "PointCLIP's adapter trains with BatchNorm, which needs at least 2 clouds per batch; got a batch of "
                f"{batch_size}: raise the data module's batch_size or use a training set that splits into full batches"
            )
        logits = self(self.batch_input(batch))
        loss = smoothed_cross_entropy(logits.float(), batch["label"], self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/top1", (logits.argmax(dim=-1) == batch["label"]).float().mean(), batch_size=batch_size)
        return loss

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.searched.fill_(False)  # the adapter is about to change

    def configure_optimizers(self):
        if self.adapter is None:
            raise ValueError(
                "PointCLIP without its adapter (adapter: false) has nothing to train: run `lit-clip test` for "
                "zero-shot, or set adapter: true for the few-shot inter-view adapter"
            )
        return coop_optimization(self, self.adapter.parameters())

    # --- view weights and prompts, searched on the validation split ------------------------------
    @property
    def searches(self) -> bool:
        return self.hparams.search_view_weights or self.hparams.search_prompts

    @torch.inference_mode(False)
    @torch.no_grad()
    def search_on_validation(self) -> None:
        """The view weights, then (V2) the prompts, that classify the data module's validation clouds best."""
        datamodule = self.trainer.datamodule
        self.use_classes(datamodule.classnames)
        features, labels = [], []
        for batch in datamodule.val_dataloader():
            batch = {key: value.to(self.device) if isinstance(value, Tensor) else value for key, value in batch.items()}
            with self.trainer.precision_plugin.forward_context():
                features.append(self.view_features(self.batch_input(batch)).float())
            labels.append(batch["label"])
        features, labels = torch.cat(features), torch.cat(labels)
        report = []
        if self.hparams.search_view_weights:
            scores = torch.einsum("nvd,dc->nvc", features, self.text_classifier.float())
            weights, accuracy = best_view_weights(
                scores, labels, self.hparams.search_grid, self.view_weights, self.hparams.searched_views
            )
            weights = self.trainer.strategy.broadcast(weights.cpu(), src=0)  # every rank tests with rank 0's choice
            self.view_weights.copy_(weights)
            report.append(f"view weights {[round(float(w), 4) for w in weights]} (val top-1 {accuracy:.4f})")
        if self.hparams.search_prompts:
            pooled = torch.einsum("nvd,v->nd", features, self.view_weights.float())
            choices, accuracy = best_class_prompts(pooled, labels, self.text_classifier, self.sentence_features)
            choices = self.trainer.strategy.broadcast(choices, src=0)
            for name, choice in zip(self.classnames, choices):
                if choice is not None:
                    sentences = prompts_of_class(self.class_prompts, name, self.hparams.prompts_file)
                    self.chosen_prompts[name] = sentences[choice]
            self.set_classes(self.classnames)  # the classifier with the chosen sentences
            chosen = sum(choice is not None for choice in choices)
            report.append(f"a sentence chosen for {chosen} of {len(choices)} classes (val top-1 {accuracy:.4f})")
            for name in self.classnames:
                if name in self.chosen_prompts:
                    rank_zero_info(f"PointCLIP prompt of {name!r}: {self.chosen_prompts[name]!r}")
        self.searched.fill_(True)
        rank_zero_info(f"PointCLIP search on {len(labels)} validation clouds: " + "; ".join(report))

    def prepare(self) -> None:
        """Before an evaluation outside ``fit``: the search, once for the current adapter."""
        if self.searches and not self.searched:
            self.search_on_validation()

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn != "fit":  # during fit the adapter changes every epoch: searched before testing
            self.prepare()
        super().on_validation_epoch_start()

    def on_test_epoch_start(self) -> None:
        self.prepare()
        super().on_test_epoch_start()

    def on_predict_epoch_start(self) -> None:
        self.prepare()

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        if self.hparams.search_view_weights:
            self.log_dict({f"test/view_weight_{v}": weight for v, weight in enumerate(self.view_weights)})

    # --- checkpoints: the adapter, the view weights and the chosen sentences ---------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["chosen_prompts"] = dict(self.chosen_prompts)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.chosen_prompts = dict(checkpoint.get("chosen_prompts", {}))
        self.classnames = ()  # rebuild the classifier with them on next use
