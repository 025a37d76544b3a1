"""Pictures of the 3D and depth methods' evaluation: predicted beside true depth maps with the error (DepthCLIP), and
the views a point cloud is projected to with its true and predicted class (PointCLIP). Drawn by
:mod:`lit_clip.drawing`; these callbacks only gather the batches and the method's predictions, and log."""
from __future__ import annotations

import numpy as np

from lit_clip import drawing
from lit_clip.batches import EvaluationSet
from lit_clip.callbacks.evaluation_pictures import EvaluationPictures


class DepthSamples(EvaluationPictures):
    """After each validation and test epoch, logs the first ``num_samples`` images of each evaluation loader's first
    batch in rows: the image, the predicted depth, the true depth (one colour scale and range; unmeasured pixels
    grey) and the absolute error where the truth was measured and is scored (:func:`lit_clip.drawing.depth_comparison`).

    Tags: ``val/depth`` and ``test/depth`` (``test/{set}_depth`` for a data module with named evaluation sets). Works
    with any method with ``predict_depth(images, size) -> [B, H, W]`` metres (DepthCLIP) on
    :class:`~lit_clip.batches.DepthBatch` es; on the first process only, and not in the sanity check.
    """

    kind, batch_key = "depth", "depth"

    def __init__(self, num_samples: int = 4, px: int = 160):
        super().__init__()
        self.num_samples, self.px = num_samples, px

    def picture(self, pl_module, batch: dict, evaluation_set: EvaluationSet) -> np.ndarray:
        count = self.num_samples
        truths = batch["depth"][:count]
        images = pl_module.batch_input(batch)[:count]
        predictions = pl_module.predict_depth(images, size=truths.shape[-2:])
        masks = batch["evaluation_mask"][:count].cpu() if "evaluation_mask" in batch else None
        return drawing.depth_comparison(
            drawing.to_uint8_image(batch["image"][:count]), truths.cpu(), predictions.float().cpu(), masks, self.px
        )


class PointCloudViews(EvaluationPictures):
    """After each validation and test epoch, logs the first ``num_samples`` point clouds of each evaluation loader's
    first batch as rows of the views the method projects them to, each with its true and predicted class names
    (:func:`lit_clip.drawing.point_cloud_views`): whether the CLIP is shown something it can recognise.

    Tags: ``val/point_cloud_views`` and ``test/point_cloud_views`` (``test/{set}_point_cloud_views`` for named
    evaluation sets). Works with any classifier of point clouds on a frozen CLIP with ``projected_views(points) ->
    [B, V, H, W]`` in [0, 1] (PointCLIP, PointCLIP V2), logits ``pl_module(pl_module.batch_input(batch))`` and
    ``classnames``, on :class:`~lit_clip.batches.PointCloudBatch` es; the prediction is made while the method
    holds the set's classes, on the first process only, and not in the sanity check.
    """

    kind, batch_key = "point_cloud_views", "points"

    def __init__(self, num_samples: int = 4, px: int = 96):
        super().__init__()
        self.num_samples, self.px = num_samples, px

    def picture(self, pl_module, batch: dict, evaluation_set: EvaluationSet) -> np.ndarray:
        count = self.num_samples
        first = {key: value[:count] for key, value in batch.items() if hasattr(value, "shape") and value.ndim}
        views = pl_module.projected_views(first["points"])
        predicted = pl_module(pl_module.batch_input(first)).argmax(dim=-1).tolist()
        names = pl_module.classnames
        return drawing.point_cloud_views(
            views.float().cpu(), [names[k] for k in first["label"].tolist()], [names[k] for k in predicted], self.px
        )
