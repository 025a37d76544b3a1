"""Evaluation metrics, each counting every sample once under DDP."""
from lit_clip.metrics.classification import TopKAccuracy
from lit_clip.metrics.retrieval import retrieval_recall

__all__ = ["TopKAccuracy", "retrieval_recall"]
