"""Pictures of an open-vocabulary detector's evaluation: ground-truth boxes beside predicted ones, base and novel
classes in their two colours (drawn by :mod:`lit_clip.drawing`; this callback only gathers the images, boxes and
detections and logs)."""
from __future__ import annotations

import numpy as np

from lit_clip import drawing
from lit_clip.batches import EvaluationSet
from lit_clip.callbacks.evaluation_pictures import EvaluationPictures


class DetectionSamples(EvaluationPictures):
    """After each validation and test epoch, logs the first ``num_images`` images of each evaluation set's first
    batch with their ground-truth boxes and names beside the detections scored above ``score_threshold`` (the
    ``max_boxes`` best per image, named "name 0.87"), boxes of base classes in one colour and of novel ones in
    another (:func:`lit_clip.drawing.detection_comparison`).

    Tags: ``val/detections`` and ``test/detections``, or, for a data module with named evaluation sets,
    ``test/<set>_detections``. Works with a detector (:class:`~lit_clip.methods.ViLD`,
    :class:`~lit_clip.methods.GLIP`: called on a batch it gives each image's ``boxes``, ``scores`` and ``labels``
    over its current ``classnames``; a class is novel when not among its ``base_classnames``) and
    :class:`~lit_clip.batches.DetectionBatch` batches; phrase-grounding sets are left to ``GroundingSamples``. The
    detections are made when the batch ends, while the method holds the evaluation set's classes; on the first
    process only, and not in the sanity check.
    """

    kind, batch_key = "detections", "targets"

    def __init__(self, num_images: int = 4, score_threshold: float = 0.3, max_boxes: int = 10):
        super().__init__()
        self.num_images, self.score_threshold, self.max_boxes = num_images, score_threshold, max_boxes

    def draws(self, evaluation_set: EvaluationSet) -> bool:
        return not evaluation_set.phrase_grounding

    def picture(self, pl_module, batch: dict, evaluation_set: EvaluationSet) -> np.ndarray:
        n = self.num_images
        first = {"image": batch["image"][:n], "image_size": batch["image_size"][:n]}  # a batch of the first images
        detections = [{key: found[key].cpu() for key in ("boxes", "scores", "labels")} for found in pl_module(first)]
        truths = [{key: target[key].cpu() for key in ("boxes", "labels")} for target in batch["targets"][:n]]
        # The ground truth's labels index the evaluation set's names, and so do the detections' (the method's
        # current classes, set for this set's batches).
        classnames = evaluation_set.classnames
        novel_names = {name for name in classnames if name not in pl_module.base_classnames}
        return drawing.detection_comparison(
            drawing.to_uint8_image(first["image"]), truths, detections, classnames, novel_names, self.score_threshold,
            self.max_boxes,
        )  # fmt: skip
