"""One LightningDataModule per data set family."""
from lit_clip.datamodules.classification import CoOpClassification, ImageFolderClassification
from lit_clip.datamodules.fewshot import CoOpFewShot, ShapesWorldFewShot
from lit_clip.datamodules.pairs import CocoCaptions, CsvPairs, Flickr30k
from lit_clip.datamodules.shapes import ShapesWorldCaptions, ShapesWorldClassification
from lit_clip.datamodules.webdataset import WebDatasetPairs

__all__ = [
    "ShapesWorldCaptions",
    "ShapesWorldClassification",
    "ImageFolderClassification",
    "CoOpClassification",
    "ShapesWorldFewShot",
    "CoOpFewShot",
    "CocoCaptions",
    "Flickr30k",
    "CsvPairs",
    "WebDatasetPairs",
]
