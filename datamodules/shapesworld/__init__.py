"""ShapesWorld, the embedded default data: the generated world and one data module per task view of it."""
from lit_clip.datamodules.shapesworld.audio import ShapesWorldAudio
from lit_clip.datamodules.shapesworld.captions import ShapesWorldCaptions
from lit_clip.datamodules.shapesworld.clips import MOTIONS, ShapesWorldClips
from lit_clip.datamodules.shapesworld.classification import SHAPES_TEMPLATES, ShapesWorldClassification
from lit_clip.datamodules.shapesworld.detection import ShapesWorldDetection
from lit_clip.datamodules.shapesworld.fewshot import ShapesWorldFewShot
from lit_clip.datamodules.shapesworld.grounding import ShapesWorldGrounding
from lit_clip.datamodules.shapesworld.segmentation import ShapesWorldSegmentation
from lit_clip.datamodules.shapesworld.video import ShapesWorldVideo
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names

__all__ = [
    "MOTIONS",
    "SHAPES_TEMPLATES",
    "ShapesWorld",
    "ShapesWorldAudio",
    "ShapesWorldCaptions",
    "ShapesWorldClassification",
    "ShapesWorldClips",
    "ShapesWorldDetection",
    "ShapesWorldFewShot",
    "ShapesWorldGrounding",
    "ShapesWorldSegmentation",
    "ShapesWorldVideo",
    "class_names",
]
