"""Evaluation metrics, each counting every sample once under DDP."""
from lit_clip.metrics.captioning import CIDErD, caption_scores, tokenize_caption
from lit_clip.metrics.classification import TopKAccuracy
from lit_clip.metrics.depth import DEPTH_METRICS, DepthMetrics
from lit_clip.metrics.detection import DetectionMetrics, DetectionPrediction
from lit_clip.metrics.retrieval import retrieval_ranks, retrieval_recall
from lit_clip.metrics.segmentation import EpisodicSegmentationMetrics, SegmentationMetrics
from lit_clip.metrics.vqa import VQAAccuracy, answer_scores, normalize_answer, vqa_accuracy

__all__ = [
    "CIDErD",
    "DEPTH_METRICS",
    "DepthMetrics",
    "DetectionMetrics",
    "DetectionPrediction",
    "EpisodicSegmentationMetrics",
    "SegmentationMetrics",
    "TopKAccuracy",
    "VQAAccuracy",
    "answer_scores",
    "caption_scores",
    "normalize_answer",
    "retrieval_ranks",
    "retrieval_recall",
    "tokenize_caption",
    "vqa_accuracy",
]
