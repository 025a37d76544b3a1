"""Evaluation, visualisation and checkpoint callbacks any method can attach."""
from lit_clip.callbacks.audio import AudioSamples
from lit_clip.callbacks.detection import DetectionSamples
from lit_clip.callbacks.generation import GenerationProgress, JudgePictures
from lit_clip.callbacks.grounding import GroundingSamples
from lit_clip.callbacks.groupvit import GroupMaps
from lit_clip.callbacks.hp_metric import MonitoredHpMetric
from lit_clip.callbacks.image_text import ImageTextSamples
from lit_clip.callbacks.last_checkpoint import LastCheckpoint
from lit_clip.callbacks.predictions import DetectionDrawings, PredictionWriter
from lit_clip.callbacks.segmentation import SegmentationSamples
from lit_clip.callbacks.three_d import DepthSamples, PointCloudViews
from lit_clip.callbacks.video import VideoSamples

__all__ = [
    "AudioSamples", "DepthSamples", "DetectionDrawings", "DetectionSamples", "GenerationProgress", "GroundingSamples",
    "GroupMaps", "ImageTextSamples", "JudgePictures", "LastCheckpoint", "MonitoredHpMetric", "PointCloudViews",
    "PredictionWriter", "SegmentationSamples", "VideoSamples"]
