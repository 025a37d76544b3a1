"""Evaluation and visualisation callbacks any method can attach."""
from lit_clip.callbacks.image_text import ImageTextSamples

__all__ = ["ImageTextSamples"]
