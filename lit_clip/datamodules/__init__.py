"""One LightningDataModule per data set family."""
from lit_clip.datamodules.shapes import ShapesWorldCaptions

__all__ = ["ShapesWorldCaptions"]
