"""Evaluation metrics, each counting every sample once under DDP."""
from lit_clip.metrics.classification import TopKAccuracy
from lit_clip.metrics.depth import DEPTH_METRICS, DepthMetrics
from lit_clip.metrics.detection import DetectionMetrics, DetectionPrediction
from lit_clip.metrics.retrieval import retrieval_ranks, retrieval_recall
from lit_clip.metrics.segmentation import EpisodicSegmentationMetrics, SegmentationMetrics

__all__ = [
    "DEPTH_METRICS",
    "DepthMetrics",
    "DetectionMetrics",
    "DetectionPrediction",
    "EpisodicSegmentationMetrics",
    "SegmentationMetrics",
    "TopKAccuracy",
    "retrieval_ranks",
    "retrieval_recall",
]
