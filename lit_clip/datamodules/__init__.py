"""One LightningDataModule per data set family."""
from lit_clip.datamodules.classification import CoOpClassification, ImageFolderClassification
from lit_clip.datamodules.shapes import ShapesWorldCaptions, ShapesWorldClassification

__all__ = ["ShapesWorldCaptions", "ShapesWorldClassification", "ImageFolderClassification", "CoOpClassification"]
