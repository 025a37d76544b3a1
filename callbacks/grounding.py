"""Pictures of a grounding model's evaluation (GLIP): each caption's phrases with their best boxes, and the
token-region alignment maps of every word (drawn by :mod:`lit_clip.drawing`; this callback only asks the method and
logs)."""
from __future__ import annotations

import numpy as np

from lit_clip import drawing
from lit_clip.batches import EvaluationSet
from lit_clip.callbacks.evaluation_pictures import EvaluationPictures


class GroundingSamples(EvaluationPictures):
    """After each validation and test epoch, logs for the first ``num_images`` images of each phrase-grounding set's
    first batch a row: the image with each phrase's best box named "phrase 0.87", and the alignment map of each
    token of the phrases (which words light up where). Tags ``val/<set>_grounding``, ``test/<set>_grounding``.
    Works with a method whose ``explain(batch, b)`` gives ``phrases``, ``boxes``, ``scores``, ``tokens`` and ``token_maps``
    (:meth:`lit_clip.methods.GLIP.explain`) and :class:`~lit_clip.batches.GroundingBatch` batches."""

    kind, batch_key = "grounding", "targets"

    def __init__(self, num_images: int = 2):
        super().__init__()
        self.num_images = num_images

    def draws(self, evaluation_set: EvaluationSet) -> bool:
        return evaluation_set.phrase_grounding

    def picture(self, pl_module, batch: dict, evaluation_set: EvaluationSet) -> np.ndarray:
        images = drawing.to_uint8_image(batch["image"][: self.num_images])
        rows = []
        for b, image in enumerate(images):
            height, width = batch["image_size"][b].tolist()
            seen = pl_module.explain(batch, b)
            rows.append(drawing.grounding_picture(image[:height, :width], seen["boxes"], seen["phrases"],
                                                  seen["scores"], seen["token_maps"], seen["tokens"]))  # fmt: skip
        width = max(row.shape[1] for row in rows)
        return np.concatenate([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255)
                               for row in rows])  # fmt: skip
