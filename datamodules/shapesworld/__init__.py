"""ShapesWorld, the embedded default data: the generated world and one data module per task view of it."""
from lit_clip.datamodules.shapesworld.audio import ShapesWorldAudio
from lit_clip.datamodules.shapesworld.captions import ShapesWorldCaptions
from lit_clip.datamodules.shapesworld.classification import SHAPES_TEMPLATES, ShapesWorldClassification
from lit_clip.datamodules.shapesworld.detection import ShapesWorldDetection
from lit_clip.datamodules.shapesworld.fewshot import ShapesWorldFewShot
from lit_clip.datamodules.shapesworld.grounding import ShapesWorldGrounding
from lit_clip.datamodules.shapesworld.segmentation import ShapesWorldSegmentation
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names

__all__ = [
    "SHAPES_TEMPLATES",
    "ShapesWorld",
    "ShapesWorldAudio",
    "ShapesWorldCaptions",
    "ShapesWorldClassification",
    "ShapesWorldDetection",
    "ShapesWorldFewShot",
    "ShapesWorldGrounding",
    "ShapesWorldSegmentation",
    "class_names",
]
