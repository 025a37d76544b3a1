"""``lit-clip predict`` writes what the method predicts into the run directory.

A method's ``predict_step`` returns a dict of per-sample values: tensors whose first dimension is
the batch, or lists (paths, class names, captions). This callback joins them over all batches
and loaders and writes:

- ``predictions.pt``: every key, tensors concatenated (``torch.load`` it);
- ``predictions.csv``: one row per sample with the keys that hold one value per sample
  (paths, predicted class, its probability, ...), for a quick look; keys with fewer rows than
  the longest (texts beside images) go to ``predictions_<key>.csv`` tables of their own length;
- ``ranking.csv``, when texts were embedded beside images or videos: retrieval with each text as the
  query, its ``top_k`` best images / videos by cosine similarity (query, rank, path, similarity).

Under DDP each process writes its own share as ``predictions.rank<N>.pt`` / ``.csv``.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from lit_clip import drawing

log = logging.getLogger(__name__)


class PredictionWriter(BasePredictionWriter):
    def __init__(self, output_dir: str | None = None, top_k: int = 10):
        """
        Args:
            output_dir: where the files go; by default the run directory (``trainer.log_dir``).
            top_k: the images or videos ``ranking.csv`` lists per text query.
        """
        super().__init__(write_interval="epoch")
        self.output_dir, self.top_k = output_dir, top_k

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions, batch_indices) -> None:
        # One list of batch outputs per loader, or a flat list for one loader.
        batches = [out for loader in predictions for out in loader] if predictions and isinstance(predictions[0], list) else predictions
        joined = join_predictions(batches)
        if not joined:
            return
        folder = Path(self.output_dir or trainer.log_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = f".rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        torch.save(joined, folder / f"predictions{suffix}.pt")
        for name, columns in per_sample_tables(joined).items():
            with open(folder / f"{name}{suffix}.csv", "w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(columns)
                writer.writerows(zip(*(_cells(joined[key]) for key in columns)))
        ranking = retrieval_ranking(joined, self.top_k)
        if ranking:
            with open(folder / f"ranking{suffix}.csv", "w", newline="") as file:
                csv.writer(file).writerows([("query", "rank", "path", "similarity"), *ranking])
        log.info("wrote the predictions of %d batches to %s", len(batches), folder / f"predictions{suffix}.pt")
        print(f"predictions written to {folder / f'predictions{suffix}.pt'}")


def join_predictions(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """The batches' dicts joined key by key: tensors concatenated on dim 0, lists chained."""
    joined: dict[str, list] = {}
    for batch in batches:
        for key, value in batch.items():
            joined.setdefault(key, []).append(value)
    return {
        key: torch.cat([v.cpu() for v in values]) if isinstance(values[0], torch.Tensor) else [x for v in values for x in v]
        for key, values in joined.items()
    }


def retrieval_ranking(joined: dict[str, Any], top_k: int) -> list[tuple[str, int, str, float]]:
    """(query, rank, path, similarity) rows: for each embedded text, the ``top_k`` images or videos nearest to it
    (cosine similarity of the normalised embeddings); none when the predictions hold no texts beside media."""
    media = next((key for key in ("video_embedding", "image_embedding") if key in joined), None)
    if media is None or "text_embedding" not in joined or "caption" not in joined:
        return []
    names = joined.get("path") or [str(i) for i in _cells(joined["index"])]
    similarity = joined["text_embedding"].float() @ joined[media].float().T
    best = similarity.topk(min(top_k, similarity.shape[1]), dim=1)
    return [
        (query, rank + 1, names[item], round(score, 4))
        for query, scores, items in zip(joined["caption"], best.values.tolist(), best.indices.tolist())
        for rank, (score, item) in enumerate(zip(scores, items))
    ]


def per_sample_tables(joined: dict[str, Any]) -> dict[str, list[str]]:
    """CSV tables of the keys with one plain value per sample, grouped by their number of rows."""
    scalar_keys = [k for k, v in joined.items() if not isinstance(v, torch.Tensor) or v.ndim == 1]
    by_length: dict[int, list[str]] = {}
    for key in scalar_keys:
        by_length.setdefault(len(joined[key]), []).append(key)
    if not by_length:
        return {}
    longest = max(by_length)
    return {("predictions" if length == longest else f"predictions_{keys[0]}"): keys for length, keys in by_length.items()}


def _cells(values) -> list:
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)


class DetectionDrawings(L.Callback):
    """``lit-clip predict`` with a detector: each predicted image drawn with its boxes scored above
    ``score_threshold`` (the ``max_boxes`` best), each named by the phrase it grounds and its score, into
    ``<run>/drawings/<image name>.png``. Reads a ``predict_step``'s rows of ``path``, ``phrase``, ``score`` and
    ``box`` (:meth:`lit_clip.methods.GLIP.predict_step`)."""

    def __init__(self, score_threshold: float = 0.3, max_boxes: int = 20, output_dir: str | None = None):
        self.score_threshold, self.max_boxes, self.output_dir = score_threshold, max_boxes, output_dir

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        folder = Path(self.output_dir or trainer.log_dir or ".") / "drawings"
        folder.mkdir(parents=True, exist_ok=True)
        images = drawing.to_uint8_image(batch["image"])
        sources = batch.get("path") or [str(i) for i in batch["index"].tolist()]
        for image, (height, width), source in zip(images, batch["image_size"].tolist(), sources):
            mine = [i for i, path in enumerate(outputs["path"]) if path == source]
            mine = sorted(mine, key=lambda i: -float(outputs["score"][i]))[: self.max_boxes]
            mine = [i for i in mine if outputs["score"][i] > self.score_threshold][::-1]  # the best drawn last
            names = sorted({outputs["phrase"][i] for i in mine})
            picture = drawing.boxes_with_names(
                image[:height, :width], outputs["box"][mine], [names.index(outputs["phrase"][i]) for i in mine],
                names, outputs["score"][mine],
            )  # fmt: skip
            Image.fromarray(picture).save(folder / f"{Path(source).stem}.png")
