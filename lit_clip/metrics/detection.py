"""COCO-style box and mask AP (pycocotools' COCOeval, or the lvis package's LVISEval), each image counted once."""
from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from lit_clip.batches import DetectionTarget
from lit_clip.distributed import evaluate_on_first_rank

log = logging.getLogger(__name__)

# The summary numbers, as COCOeval.summarize reports them (at the largest maxDets), and LVIS's frequency groups.
SUMMARIES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
LVIS_FREQUENCIES = {"APr": "r", "APc": "c", "APf": "f"}
IOU_TYPE_PREFIX = {"bbox": "", "segm": "mask_"}

# What update keeps of an image: its detections, and its true objects unless an annotation file holds them.
Record = dict[str, Any]
Images = dict[int, tuple[Record, Record | None]]


class DetectionPrediction(TypedDict, total=False):
    """One image's detections: ``boxes`` float ``[N, 4]`` as (x1, y1, x2, y2) in pixels of the ground truth's
    image, ``scores`` ``[N]``, ``labels`` long ``[N]`` (indices into ``classnames``), and for mask AP ``masks``
    ``[N, H, W]``, bool or probabilities (thresholded at 0.5)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    masks: Tensor


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """Corners (x1, y1, x2, y2) -> COCO's (x, y, width, height)."""
    return torch.cat([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], dim=-1)


def encode_masks(masks: Tensor) -> list[dict[str, Any]]:
    """COCO's compressed run-length encoding of each of the bool masks ``[N, H, W]``."""
    return mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8)))


class DetectionMetrics:
    """COCO-style AP of boxes (``iou_types`` "bbox") and masks ("segm"), over a split, each image counted once.

    ``update(predictions, targets)`` keeps each image's detections on the CPU (boxes as COCO's xywh, masks
    run-length encoded), keyed by the target's ``image_id``. ``compute()`` gathers the images of all ranks, keeps
    each ``image_id`` once, and evaluates them on rank 0 alone: COCO / LVIS evaluation takes minutes and GBs of
    memory, which every rank of a node repeating would multiply. The numbers are broadcast, so every rank returns
    the same dict: ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl`` (with ``APr``, ``APc``, ``APf`` for LVIS),
    ``mask_``-prefixed for masks, and again prefixed ``{name}_`` for each of ``category_subsets`` (ViLD's
    ``novel_AP50``). A number without ground truth to score (say APl when no object is large) is -1, as
    pycocotools reports it; with no detection at all every number is 0.

    Ground truth: the targets' ``boxes``, ``labels`` (and ``masks``), or, as the official COCO and LVIS evaluation,
    ``annotations``: an annotation file or its loaded ``pycocotools.coco.COCO`` (``lvis.LVIS``) object, read on
    first use (on rank 0 alone); then only the targets' ``image_id`` is read, and the images evaluated are those
    seen. Predicted boxes must then be in the file's pixels (the original image size).

    Labels are indices into ``classnames``; ``category_ids[label]`` is the annotation file's category id (default:
    the file's ids sorted, the usual contiguous mapping; without a file the label itself). ``category_subsets``
    name sets of labels (``{"novel": [...], "base": [...]}``); their numbers equal a COCOeval whose
    ``params.catIds`` is restricted to the subset, taken from the one evaluation of all categories (categories
    are evaluated independently).

    ``backend="lvis"`` evaluates with LVIS's federated protocol (needs ``pip install lvis`` and ``annotations``).
    pycocotools' printing goes to this module's logger at DEBUG level.
    """

    def __init__(
        self,
        annotations: str | Path | Any | None = None,
        iou_types: Sequence[Literal["bbox", "segm"]] = ("bbox",),
        category_ids: Sequence[int] | None = None,
        category_subsets: Mapping[str, Sequence[int]] | None = None,
        backend: Literal["coco", "lvis"] = "coco",
    ):
        if backend not in ("coco", "lvis"):
            raise ValueError(f"backend must be 'coco' or 'lvis', not {backend!r}")
        if unknown := set(iou_types) - set(IOU_TYPE_PREFIX):
            raise ValueError(f"iou_types are 'bbox' and 'segm', not {sorted(unknown)}")
        if backend == "lvis":
            if annotations is None:
                raise ValueError("backend='lvis' evaluates against an LVIS annotation file: pass annotations=")
            try:
                import lvis  # noqa: F401
            except ImportError as error:
                raise ImportError("backend='lvis' needs the lvis package: pip install lvis") from error
        self.annotations = annotations
        self.iou_types = tuple(iou_types)
        self.category_ids = category_ids
        self.category_subsets = dict(category_subsets or {})
        self.backend = backend
        self._images: Images = {}

    def update(self, predictions: Sequence[DetectionPrediction], targets: Sequence[DetectionTarget]) -> None:
        """``predictions[i]`` are the detections on ``targets[i]``'s image; an image already kept (a DDP padding
        repeat) is skipped."""
        with_masks = "segm" in self.iou_types
        for prediction, target in zip(predictions, targets, strict=True):
            image_id = int(target["image_id"])
            if image_id not in self._images:
                truth = None if self.annotations is not None else _record(target, with_masks)
                self._images[image_id] = (_record(prediction, with_masks), truth)

    @property
    def has_updates(self) -> bool:
        return bool(self._images)

    def compute(self) -> dict[str, float]:
        """The numbers over every image seen by any rank since the last call (see the class docstring)."""
        images, self._images = self._images, {}
        return evaluate_on_first_rank(images, self._evaluate)

    def _evaluate(self, ranks: list[Images]) -> dict[str, float]:
        images: Images = {}
        for part in ranks:
            for image_id, record in part.items():
                images.setdefault(image_id, record)
        ground_truth = self._annotations()
        ids = self.category_ids if self.category_ids is not None or ground_truth is None else sorted(ground_truth.cats)

        def category(labels: np.ndarray) -> np.ndarray:
            return labels if ids is None else np.asarray(ids)[labels]

        if ground_truth is None:
            ground_truth = _coco_from_targets(images, category)
        subsets = {f"{name}_": category(np.asarray(labels)) for name, labels in self.category_subsets.items()}
        metrics = {}
        for iou_type in self.iou_types:
            results = _results(images, iou_type, category)
            if results:
                accumulate = _accumulate_lvis if self.backend == "lvis" else _accumulate_coco
                precision, thresholds, categories, groups = accumulate(ground_truth, results, iou_type, sorted(images))
                selections = {"": np.ones(len(categories), dtype=bool)}
                selections.update({subset: np.isin(categories, members) for subset, members in subsets.items()})
                summaries = {subset: _summarize(precision, thresholds, selected, groups)
                             for subset, selected in selections.items()}  # fmt: skip
            else:  # pycocotools and lvis cannot load an empty result list; every AP is 0
                names = SUMMARIES + (tuple(LVIS_FREQUENCIES) if self.backend == "lvis" else ())
                summaries = {subset: dict.fromkeys(names, 0.0) for subset in ("", *subsets)}
            for subset, summary in summaries.items():
                metrics.update({f"{subset}{IOU_TYPE_PREFIX[iou_type]}{name}": value for name, value in summary.items()})
        return metrics

    def _annotations(self) -> Any:
        """The annotation file's COCO (LVIS) object, read on first use; None when the targets are the ground truth."""
        if isinstance(self.annotations, (str, Path)):
            if self.backend == "lvis":
                from lvis import LVIS

                self.annotations = LVIS(str(self.annotations))
            else:
                with _stdout_to_log():
                    self.annotations = COCO(str(self.annotations))
        return self.annotations


Accumulated = tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]


def _accumulate_coco(
    ground_truth: COCO, results: list[dict[str, Any]], iou_type: str, image_ids: list[int]
) -> Accumulated:
    """COCOeval's precision [IoU thresholds, recall thresholds, categories, areas] at maxDets 100 (the summaries'),
    its IoU thresholds and category ids, and no category groups."""
    with _stdout_to_log():
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), iou_type)
        evaluation.params.imgIds = image_ids
        evaluation.evaluate()
        evaluation.accumulate()
    params = evaluation.params
    return evaluation.eval["precision"][..., -1], params.iouThrs, np.asarray(params.catIds), {}


def _accumulate_lvis(
    ground_truth: Any, results: list[dict[str, Any]], iou_type: str, image_ids: list[int]
) -> Accumulated:
    """As :func:`_accumulate_coco`, by LVISEval (at most 300 detections per image), and the frequency groups."""
    from lvis import LVISEval

    evaluation = LVISEval(ground_truth, results, iou_type)
    evaluation.params.img_ids = image_ids
    with _numpy_float_alias():
        evaluation.evaluate()
        evaluation.accumulate()
    categories = np.asarray(evaluation.params.cat_ids)
    frequency = np.array([ground_truth.cats[c]["frequency"] for c in categories])
    groups = {name: frequency == group for name, group in LVIS_FREQUENCIES.items()}
    return evaluation.eval["precision"], evaluation.params.iou_thrs, categories, groups


def _record(objects: Mapping[str, Any], with_masks: bool) -> Record:
    """An image's predicted or true objects as numpy, boxes as COCO's xywh, masks run-length encoded with their
    image size: small to keep for a whole split and to gather."""
    record = {
        "bbox": xyxy_to_xywh(objects["boxes"].detach().cpu().double()).numpy(),
        "labels": objects["labels"].cpu().numpy(),
    }
    if "scores" in objects:
        record["scores"] = objects["scores"].detach().cpu().float().numpy()
    if with_masks:
        masks = objects["masks"].detach()
        record["masks"] = encode_masks(masks > 0.5 if masks.is_floating_point() else masks.bool())
        record["size"] = tuple(masks.shape[-2:])
    return record


def _coco_from_targets(images: Images, category: Callable[[np.ndarray], np.ndarray]) -> COCO:
    """A COCO ground truth of the targets' objects; its area (for APs / APm / APl) is the mask's when there is
    one, as in COCO's files, else the box's."""
    entries, annotations = [], []
    for image_id, (_, truth) in sorted(images.items()):
        entries.append({"id": image_id, **dict(zip(("height", "width"), truth.get("size", ())))})
        masks = truth.get("masks", [None] * len(truth["labels"]))
        for box, category_id, mask in zip(truth["bbox"].tolist(), category(truth["labels"]).tolist(), masks):
            annotation = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id, "bbox": box,
                          "area": box[2] * box[3], "iscrowd": 0}  # fmt: skip
            if mask is not None:
                annotation.update(segmentation=mask, area=float(mask_utils.area(mask)))
            annotations.append(annotation)
    categories = [{"id": c} for c in sorted({a["category_id"] for a in annotations})]
    ground_truth = COCO()
    ground_truth.dataset = {"images": entries, "annotations": annotations, "categories": categories}
    with _stdout_to_log():
        ground_truth.createIndex()
    return ground_truth


def _results(images: Images, iou_type: str, category: Callable[[np.ndarray], np.ndarray]) -> list[dict[str, Any]]:
    """The detections as COCO's result list. Mask results carry no box: pycocotools would take a box's area as
    the object's area (for APs / APm / APl) where there is one."""
    results = []
    for image_id, (prediction, _) in sorted(images.items()):
        shapes = prediction["bbox"].tolist() if iou_type == "bbox" else prediction["masks"]
        key = "bbox" if iou_type == "bbox" else "segmentation"
        categories, scores = category(prediction["labels"]).tolist(), prediction["scores"].tolist()
        for shape, category_id, score in zip(shapes, categories, scores):
            results.append({"image_id": image_id, "category_id": category_id, key: shape, "score": score})
    return results


def _summarize(
    precision: np.ndarray, thresholds: np.ndarray, selected: np.ndarray, groups: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """COCOeval.summarize's numbers for the ``selected`` categories from the accumulated ``precision`` [IoU thresholds,
    recall thresholds, categories, areas (all, small, medium, large)]: the mean of its entries that are not -1
    (-1: no ground truth to score), or -1; ``groups`` adds the mean over ``selected & group`` for each group."""

    def mean(values: np.ndarray) -> float:
        values = values[values > -1]
        return float(values.mean()) if values.size else -1.0

    chosen = precision[:, :, selected]
    summary = {
        "AP": mean(chosen[..., 0]),
        "AP50": mean(chosen[np.isclose(thresholds, 0.5)][..., 0]),
        "AP75": mean(chosen[np.isclose(thresholds, 0.75)][..., 0]),
        "APs": mean(chosen[..., 1]),
        "APm": mean(chosen[..., 2]),
        "APl": mean(chosen[..., 3]),
    }
    summary.update({name: mean(precision[:, :, selected & members, 0]) for name, members in groups.items()})
    return summary


@contextlib.contextmanager
def _stdout_to_log() -> Iterator[None]:
    """pycocotools prints its progress and timings: send them to this module's logger (DEBUG) instead of stdout."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        yield
    if printed.getvalue().strip():
        log.debug(printed.getvalue().rstrip())


@contextlib.contextmanager
def _numpy_float_alias() -> Iterator[None]:
    """lvis 0.5.3, the latest release, calls ``np.float``, which numpy 1.24 removed: alias it to ``float`` meanwhile."""
    missing = not hasattr(np, "float")
    if missing:
        np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if missing:
            del np.float
