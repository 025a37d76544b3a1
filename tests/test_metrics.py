"""Segmentation and detection metrics: against hand computations and pycocotools / lvis run directly, and
counting every sample once, also across two processes (gloo)."""
import contextlib
import io
import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lit_clip.metrics import (
    DEPTH_METRICS,
    DepthMetrics,
    DetectionMetrics,
    EpisodicSegmentationMetrics,
    SegmentationMetrics,
)
from lit_clip.metrics.detection import xyxy_to_xywh

# ---------------------------------------------------------------- segmentation

# Two 2x4 images, 5 classes. Class 3 is predicted only on ignored pixels (union 0: NaN, left out of mIoU);
# class 4 only predicted (IoU 0, counted).
MASKS = torch.tensor([
    [[0, 0, 1, 255], [1, 1, 2, 255]],
    [[2, 2, 2, 2], [0, 255, 255, 0]],
])  # fmt: skip
PREDICTIONS = torch.tensor([
    [[0, 1, 1, 2], [1, 0, 2, 3]],
    [[2, 2, 1, 2], [0, 3, 3, 4]],
])  # fmt: skip
# By hand over the 12 labelled pixels. class 0: label 4, predicted 3, both 2 -> 2/5; class 1: 3, 4, 2 -> 2/5;
# class 2: 5, 4, 4 -> 4/5; class 3: nothing -> NaN; class 4: 0, 1, 0 -> 0. Right: 8 of 12.
EXPECTED_IOU = [0.4, 0.4, 0.8, math.nan, 0.0]


def test_segmentation_metrics_equal_a_hand_computation():
    metric = SegmentationMetrics(num_classes=5)
    metric.update(PREDICTIONS, MASKS, torch.tensor([0, 1]))
    assert metric.has_updates
    result = metric.compute()
    torch.testing.assert_close(result["IoU_per_class"], torch.tensor(EXPECTED_IOU), equal_nan=True)
    assert result["mIoU"].item() == pytest.approx(1.6 / 4)
    assert result["pixel_accuracy"].item() == pytest.approx(8 / 12)
    assert not metric.has_updates  # reset by compute


def test_segmentation_metrics_equal_a_confusion_matrix():
    generator = torch.Generator().manual_seed(0)
    classes = 6
    masks = torch.randint(0, classes, (4, 9, 7), generator=generator)
    masks[torch.rand(masks.shape, generator=generator) < 0.2] = 255
    predictions = torch.randint(0, classes, masks.shape, generator=generator)
    metric = SegmentationMetrics(classes)
    metric.update(predictions[:3], masks[:3], torch.arange(3))
    metric.update(predictions[3:], masks[3:], torch.tensor([3]))
    result = metric.compute()
    valid = masks != 255
    confusion = torch.bincount(masks[valid] * classes + predictions[valid], minlength=classes**2).view(classes, classes)
    iou = confusion.diag() / (confusion.sum(0) + confusion.sum(1) - confusion.diag())
    torch.testing.assert_close(result["IoU_per_class"], iou.float())
    assert result["mIoU"].item() == pytest.approx(iou.mean().item())
    assert result["pixel_accuracy"].item() == pytest.approx((confusion.diag().sum() / valid.sum()).item())


def test_segmentation_metrics_count_a_repeated_index_once():
    """What a DistributedSampler's padding repeat looks like to one rank: the same sample updated twice."""
    metric = SegmentationMetrics(num_classes=5)
    metric.update(PREDICTIONS, MASKS, torch.tensor([0, 1]))
    metric.update(PREDICTIONS[1:], MASKS[1:], torch.tensor([1]))
    torch.testing.assert_close(metric.compute()["IoU_per_class"], torch.tensor(EXPECTED_IOU), equal_nan=True)


# Few-shot episodes over the label set (others, cat, dog, bird): two cat episodes, one dog, no bird.
EPISODE_MASKS = torch.tensor([
    [[1, 1, 0, 255], [0, 0, 0, 0]],
    [[1, 1, 1, 1], [1, 1, 1, 1]],
    [[0, 0, 0, 0], [0, 0, 1, 1]],
])  # fmt: skip
EPISODE_PREDICTIONS = torch.tensor([
    [[1, 0, 0, 1], [0, 1, 0, 0]],
    [[1, 1, 1, 1], [1, 1, 0, 0]],
    [[0, 0, 0, 0], [0, 0, 0, 0]],
])  # fmt: skip
EPISODE_CLASSES = torch.tensor([1, 1, 2])


def test_episodic_metrics_equal_a_hand_computation():
    """By hand (the ignored pixel left out). Episode 0: foreground intersection 1, union 3; background 4, 6.
    Episode 1: foreground 6, 8; background 0, 2. Episode 2: foreground 0, 2; background 6, 8. Per class, cat
    (7 / 11), dog (0 / 2), and bird without episodes at 0, as the official clamped union; FB-IoU pools every class."""
    metric = EpisodicSegmentationMetrics(num_labels=4)
    metric.update(EPISODE_PREDICTIONS[:2], EPISODE_MASKS[:2], EPISODE_CLASSES[:2], torch.tensor([0, 1]))
    metric.update(EPISODE_PREDICTIONS[2:], EPISODE_MASKS[2:], EPISODE_CLASSES[2:], torch.tensor([2]))
    metric.update(EPISODE_PREDICTIONS[:1], EPISODE_MASKS[:1], EPISODE_CLASSES[:1], torch.tensor([0]))  # a repeat
    result = metric.compute()
    torch.testing.assert_close(result["IoU_per_class"], torch.tensor([math.nan, 7 / 11, 0, 0]), equal_nan=True)
    assert result["mIoU"].item() == pytest.approx(7 / 11 / 3)
    assert result["FB_IoU"].item() == pytest.approx((10 / 16 + 7 / 13) / 2)
    assert not metric.has_updates


# ------------------------------------------------------------------- detection

# Three images (ids 11, 12, 13), three classes whose annotation-file category ids are 1, 3, 7 (label 0, 1, 2).
# Boxes are written as COCO's xywh; the metric gets them as xyxy, converted by hand below.
CATEGORY_IDS = [1, 3, 7]
TRUTH = [  # image id, label, xywh
    (11, 0, [10, 10, 40, 50]),
    (11, 1, [60, 20, 30, 70]),
    (12, 2, [5, 5, 20, 25]),
    (12, 0, [30, 40, 50, 60]),
    (13, 1, [0, 0, 40, 40]),
]
PERFECT = [(image, label, box, 0.9 - 0.1 * i) for i, (image, label, box) in enumerate(TRUTH)]
# One box displaced (IoU 0.57 with its object: a hit at the IoU thresholds 0.5 and 0.55 only) and one false
# positive, scored above everything (class 2's AP50 is 0.5).
IMPERFECT = PERFECT[:3] + [(12, 0, [38, 48, 50, 60], 0.6), PERFECT[4], (13, 2, [50, 50, 20, 20], 0.95)]
HEIGHT, WIDTH = 110, 100


def box_mask(xywh, shrink=0):
    """The bool [HEIGHT, WIDTH] mask filling the box (less ``shrink`` pixels at the right and bottom)."""
    x, y, w, h = xywh
    mask = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    mask[y : y + h - shrink, x : x + w - shrink] = True
    return mask


def as_xyxy(xywh):
    x, y, w, h = xywh
    return [x, y, x + w, y + h]


def batch(objects, scored, masks=False, shrink=0):
    """``(predictions, targets)`` for the metric, one entry per image 11..13, from rows of TRUTH / PERFECT."""
    entries = []
    for image in (11, 12, 13):
        rows = [row for row in objects if row[0] == image]
        entry = {
            "boxes": torch.tensor([as_xyxy(row[2]) for row in rows], dtype=torch.float).reshape(-1, 4),
            "labels": torch.tensor([row[1] for row in rows], dtype=torch.long),
        }
        if scored:
            entry["scores"] = torch.tensor([row[3] for row in rows])
        else:
            entry["image_id"] = image
        if masks:
            entry["masks"] = torch.stack([box_mask(row[2], shrink) for row in rows]).reshape(-1, HEIGHT, WIDTH)
        entries.append(entry)
    return entries


def annotation_file(tmp_path, masks=False):
    """TRUTH as a COCO annotation file (the category ids 1, 3, 7; masks as RLE with their own areas)."""
    annotations = []
    for i, (image, label, box) in enumerate(TRUTH):
        annotation = {"id": i + 1, "image_id": image, "category_id": CATEGORY_IDS[label], "bbox": box,
                      "area": box[2] * box[3], "iscrowd": 0}  # fmt: skip
        if masks:
            rle = mask_utils.encode(np.asfortranarray(box_mask(box).numpy().astype(np.uint8)))
            annotation.update(segmentation={"size": rle["size"], "counts": rle["counts"].decode()},
                              area=int(mask_utils.area(rle)))  # fmt: skip
        annotations.append(annotation)
    dataset = {
        "images": [{"id": image, "height": HEIGHT, "width": WIDTH} for image in (11, 12, 13)],
        "categories": [{"id": c, "name": f"class {c}"} for c in CATEGORY_IDS],
        "annotations": annotations,
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(dataset))
    return path


def cocoeval_stats(path, detections, iou_type="bbox", category_ids=None, shrink=0):
    """pycocotools run directly: COCOeval.summarize's first six numbers (AP, AP50, AP75, APs, APm, APl)."""
    results = []
    for image, label, box, score in detections:
        result = {"image_id": image, "category_id": CATEGORY_IDS[label], "score": score}
        if iou_type == "bbox":
            result["bbox"] = box
        else:
            mask = box_mask(box, shrink).numpy().astype(np.uint8)
            result["segmentation"] = mask_utils.encode(np.asfortranarray(mask))
        results.append(result)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(path))
        evaluation = COCOeval(truth, truth.loadRes(results), iou_type)
        if category_ids is not None:
            evaluation.params.catIds = category_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), evaluation.stats[:6].tolist()))


def evaluate(metric, detections, masks=False, shrink=0):
    metric.update(batch(detections, scored=True, masks=masks, shrink=shrink), batch(TRUTH, scored=False, masks=masks))
    return metric.compute()


def test_xyxy_to_xywh():
    assert xyxy_to_xywh(torch.tensor([[10.0, 20.0, 50.0, 80.0]])).tolist() == [[10.0, 20.0, 40.0, 60.0]]


def test_perfect_detections_score_one():
    result = evaluate(DetectionMetrics(), PERFECT)
    assert result["AP"] == result["AP50"] == result["AP75"] == pytest.approx(1.0)
    assert result["APl"] == -1  # no large object, as pycocotools reports it


@pytest.mark.parametrize("source", ["targets", "file", "coco"])
def test_detection_ap_equals_cocoeval(tmp_path, source, capsys):
    """Ground truth from the targets, an annotation file or a loaded COCO: the numbers pycocotools gives."""
    path = annotation_file(tmp_path)
    if source == "coco":
        with contextlib.redirect_stdout(io.StringIO()):
            annotations = COCO(str(path))
    else:
        annotations = {"targets": None, "file": path}.get(source)
    result = evaluate(DetectionMetrics(annotations), IMPERFECT)
    expected = cocoeval_stats(path, IMPERFECT)
    assert 0 < expected["AP"] < expected["AP50"] < 1  # the case tells right from wrong
    assert {k: result[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert capsys.readouterr().out == ""  # pycocotools' printing went to the logger


def test_category_subsets_equal_cocoeval_restricted_to_them(tmp_path):
    path = annotation_file(tmp_path)
    result = evaluate(DetectionMetrics(path, category_subsets={"novel": [0], "base": [1, 2]}), IMPERFECT)
    for subset, category_ids in (("novel", [1]), ("base", [3, 7])):
        expected = cocoeval_stats(path, IMPERFECT, category_ids=category_ids)
        assert {k: result[f"{subset}_{k}"] for k in expected} == pytest.approx(expected, abs=1e-12), subset
    assert result["novel_AP50"] == pytest.approx(1.0) and result["novel_AP"] < 1  # the displaced box is class 0's
    assert result["base_AP50"] == pytest.approx((1 + 0.5) / 2)  # the false positive is class 2's


def test_explicit_category_ids_map_labels(tmp_path):
    path = annotation_file(tmp_path)
    shuffled = [2, 0, 1]  # label l is category CATEGORY_IDS[shuffled[l]]
    metric = DetectionMetrics(path, category_ids=[CATEGORY_IDS[i] for i in shuffled])
    relabelled = [(image, shuffled.index(label), box, score) for image, label, box, score in IMPERFECT]
    assert evaluate(metric, relabelled)["AP"] == pytest.approx(cocoeval_stats(path, IMPERFECT)["AP"])


def test_mask_ap_equals_cocoeval(tmp_path):
    """Predicted masks 3 px short of each box: mask AP drops at high IoU thresholds, box AP stays 1."""
    path = annotation_file(tmp_path, masks=True)
    for annotations in (None, path):
        result = evaluate(DetectionMetrics(annotations, iou_types=("bbox", "segm")), PERFECT, masks=True, shrink=3)
        expected = cocoeval_stats(path, PERFECT, "segm", shrink=3)
        assert 0 < expected["AP"] < expected["AP50"] == 1
        assert {k: result[f"mask_{k}"] for k in expected} == pytest.approx(expected, abs=1e-12)
        assert result["AP"] == pytest.approx(1.0)


def test_mask_probabilities_are_thresholded():
    metric = DetectionMetrics(iou_types=("segm",))
    predictions = batch(PERFECT, scored=True, masks=True)
    for prediction in predictions:
        prediction["masks"] = prediction["masks"].float() * 0.8 + 0.1  # 0.9 inside, 0.1 outside
    metric.update(predictions, batch(TRUTH, scored=False, masks=True))
    assert metric.compute()["mask_AP"] == pytest.approx(1.0)


def test_repeated_images_count_once_and_no_detections_score_zero():
    metric = DetectionMetrics()
    predictions, targets = batch(IMPERFECT, scored=True), batch(TRUTH, scored=False)
    metric.update(predictions, targets)
    metric.update(predictions[1:], targets[1:])  # a padding repeat
    assert metric.compute() == evaluate(DetectionMetrics(), IMPERFECT)
    assert not metric.has_updates
    assert set(evaluate(DetectionMetrics(), []).values()) == {0.0}


def test_lvis_needs_its_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "lvis", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install lvis"):
        DetectionMetrics("lvis_val.json", backend="lvis")


def test_lvis_backend_equals_lvis_eval(tmp_path, monkeypatch):
    """The federated LVIS protocol: a detection of a category neither on the image nor in its negative list is
    not counted (image 13's class 2), one in the negative list is (image 11's). Rare / common / frequent groups;
    a subset of the rare classes gives APr."""
    import lvis  # a dev dependency: the reference implementation
    frequencies = ["r", "c", "f"]
    dataset = json.loads(annotation_file(tmp_path).read_text())
    for image in dataset["images"]:
        image.update(neg_category_ids=[7] if image["id"] == 11 else [], not_exhaustive_category_ids=[])
    for category, frequency in zip(dataset["categories"], frequencies):
        category.update(frequency=frequency)
    path = tmp_path / "lvis_val.json"
    path.write_text(json.dumps(dataset))
    detections = IMPERFECT + [(11, 2, [0, 0, 30, 30], 0.99)]  # image 11 is known not to show class 2
    metric = DetectionMetrics(path, backend="lvis", category_subsets={"novel": [0]})
    result = evaluate(metric, detections)
    assert not hasattr(np, "float")  # the metric's alias for lvis is gone again

    monkeypatch.setattr(np, "float", float, raising=False)  # lvis 0.5.3 on numpy >= 1.24
    results = [{"image_id": i, "category_id": CATEGORY_IDS[label], "bbox": box, "score": score}
               for i, label, box, score in detections]  # fmt: skip
    evaluation = lvis.LVISEval(lvis.LVIS(str(path)), results, "bbox")
    evaluation.run()
    expected = dict(evaluation.get_results())
    assert {k: result[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")} == pytest.approx(
        {k: float(expected[k]) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")}, abs=1e-12
    )
    assert result["novel_AP"] == result["APr"]


# --------------------------------------------------------- two processes (gloo)


def segmentation_sample(index):
    generator = torch.Generator().manual_seed(int(index))
    return torch.randint(0, 4, (2, 5, 6), generator=generator).unbind()  # prediction, mask


def episode_sample(index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Binary predictions and masks of episodes ``index``, and their classes (1-3), from the index alone."""
    predictions, masks = (torch.stack(parts) % 2 for parts in zip(*map(segmentation_sample, index)))
    return predictions, masks, index % 3 + 1


def ddp_worker(rank, init_file, results):
    """Ranks see overlapping samples (0-2 and 2-4; images 11, 12 and 12, 13), as a padded DistributedSampler."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        segmentation = SegmentationMetrics(num_classes=4)
        index = torch.arange(3) + 2 * rank
        predictions, masks = zip(*map(segmentation_sample, index))
        segmentation.update(torch.stack(predictions), torch.stack(masks), index)
        episodes = EpisodicSegmentationMetrics(num_labels=4)
        episodes.update(*episode_sample(index), index)
        detection = DetectionMetrics()
        images = slice(0, 2) if rank == 0 else slice(1, 3)
        detection.update(batch(IMPERFECT, scored=True)[images], batch(TRUTH, scored=False)[images])
        failing = DetectionMetrics("no such file.json")
        failing.update(batch(IMPERFECT, scored=True), batch(TRUTH, scored=False))
        try:
            failing.compute()
        except (FileNotFoundError, RuntimeError) as error:  # rank 0: the file's error; rank 1: that rank 0 failed
            failure = type(error).__name__
        else:
            failure = None
        episodic = {f"episodic_{name}": value for name, value in episodes.compute().items()}
        results[rank] = ({**segmentation.compute(), **episodic}, detection.compute(), failure)
    finally:
        dist.destroy_process_group()


def test_two_processes_count_every_sample_once(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(ddp_worker, args=(str(tmp_path / "init"), results), nprocs=2)
        results = dict(results)
    single = SegmentationMetrics(num_classes=4)
    predictions, masks = zip(*map(segmentation_sample, range(5)))
    single.update(torch.stack(predictions), torch.stack(masks), torch.arange(5))
    single_episodes = EpisodicSegmentationMetrics(num_labels=4)
    single_episodes.update(*episode_sample(torch.arange(5)), torch.arange(5))
    episodic = {f"episodic_{name}": value for name, value in single_episodes.compute().items()}
    expected_segmentation = {**single.compute(), **episodic}
    expected_detection = evaluate(DetectionMetrics(), IMPERFECT)
    for rank in (0, 1):
        segmentation, detection, _ = results[rank]
        for name, value in expected_segmentation.items():
            torch.testing.assert_close(segmentation[name], value, equal_nan=True)
        assert detection == expected_detection
    assert (results[0][2], results[1][2]) == ("FileNotFoundError", "RuntimeError")


# --- depth ------------------------------------------------------------------------------------------


def test_depth_metrics_by_hand_per_image_then_averaged():
    # Image 0: truth (1, 2, 4, 0=unmeasured), prediction (1, 3, 2, 5). Image 1: perfect. Image 2: nothing measured.
    truth = torch.tensor([[[1.0, 2.0], [4.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    prediction = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[2.0, 2.0], [2.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]]])
    metrics = DepthMetrics(max_depth=10.0)
    metrics.update(prediction, truth, torch.tensor([0, 1, 2]))
    metrics.update(prediction[:1], truth[:1], torch.tensor([0]))  # a DDP padding repeat: counted once
    result = metrics.compute()
    pred, true = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    first = {  # ratios max(p/t, t/p) = 1, 1.5, 2
        "delta1": 1 / 3, "delta2": 2 / 3, "delta3": 2 / 3,  # 1.25^2 = 1.5625 > 1.5; 1.25^3 = 1.953 < 2
        "abs_rel": (0 + 0.5 + 0.5) / 3, "sq_rel": (0 + 1 / 2 + 4 / 4) / 3, "rmse": math.sqrt((0 + 1 + 4) / 3),
        "rmse_log": (pred.log() - true.log()).pow(2).mean().sqrt().item(),
        "log10": (pred.log10() - true.log10()).abs().mean().item(),
    }  # fmt: skip
    perfect = {"delta1": 1.0, "delta2": 1.0, "delta3": 1.0}
    assert set(result) == set(DEPTH_METRICS)
    for name in DEPTH_METRICS:
        assert result[name].item() == pytest.approx((first[name] + perfect.get(name, 0.0)) / 2, rel=1e-6), name
    assert not metrics.has_updates
