"""ShapesWorld, the embedded default data: the generated world and one data module per task view of it."""
from lit_clip.datamodules.shapesworld.audio import ShapesWorldAudio
from lit_clip.datamodules.shapesworld.captioning import ShapesWorldCaptioning
from lit_clip.datamodules.shapesworld.captions import ShapesWorldCaptions
from lit_clip.datamodules.shapesworld.clips import MOTIONS, ShapesWorldClips
from lit_clip.datamodules.shapesworld.classification import SHAPES_TEMPLATES, ShapesWorldClassification
from lit_clip.datamodules.shapesworld.depth import ShapesWorldDepth, ShapesWorldDepthScenes
from lit_clip.datamodules.shapesworld.detection import ShapesWorldDetection
from lit_clip.datamodules.shapesworld.fewshot import ShapesWorldFewShot
from lit_clip.datamodules.shapesworld.grounding import ShapesWorldGrounding
from lit_clip.datamodules.shapesworld.points import ShapesWorldPoints
from lit_clip.datamodules.shapesworld.questions import ShapesWorldQuestions
from lit_clip.datamodules.shapesworld.segmentation import ShapesWorldSegmentation
from lit_clip.datamodules.shapesworld.solids import SOLIDS, ShapesWorldSolids
from lit_clip.datamodules.shapesworld.solids_captions import ShapesWorldSolidsCaptions
from lit_clip.datamodules.shapesworld.video import ShapesWorldVideo
from lit_clip.datamodules.shapesworld.world import ShapesWorld, class_names

__all__ = [
    "MOTIONS",
    "SHAPES_TEMPLATES",
    "SOLIDS",
    "ShapesWorld",
    "ShapesWorldAudio",
    "ShapesWorldCaptioning",
    "ShapesWorldCaptions",
    "ShapesWorldClassification",
    "ShapesWorldClips",
    "ShapesWorldDepth",
    "ShapesWorldDepthScenes",
    "ShapesWorldDetection",
    "ShapesWorldFewShot",
    "ShapesWorldGrounding",
    "ShapesWorldPoints",
    "ShapesWorldQuestions",
    "ShapesWorldSegmentation",
    "ShapesWorldSolids",
    "ShapesWorldSolidsCaptions",
    "ShapesWorldVideo",
    "class_names",
]
