"""One LightningDataModule per data set family; ShapesWorld, the embedded default, in ``shapesworld/``.

Installed as ``lit_clip.datamodules`` from the repository's top-level ``datamodules/``. Data
never imports a method: batch formats are in :mod:`lit_clip.batches`.
"""
from lit_clip.datamodules.audio import ESC50, AudioClips, AudioWebDataset, UrbanSound8K
from lit_clip.datamodules.captioning import KarpathyCaptions
from lit_clip.datamodules.classification import CoOpClassification, ImageFolderClassification
from lit_clip.datamodules.depth import KITTIDepth, NYUDepthV2
from lit_clip.datamodules.detection import COCODetection, LVISDetection, Objects365Detection, ODinWDetection
from lit_clip.datamodules.fewshot import CoOpFewShot
from lit_clip.datamodules.generation import GenerationTargets
from lit_clip.datamodules.fewshot_segmentation import (
    COCO20iSegmentation,
    FSS1000Segmentation,
    Pascal5iSegmentation,
)
from lit_clip.datamodules.grounding import DetectionAsGrounding, GroundingMixture, MDETRGrounding
from lit_clip.datamodules.pairs import CocoCaptions, CsvPairs, Flickr30k
from lit_clip.datamodules.point_clouds import ModelNet10, ModelNet40, ScanObjectNN
from lit_clip.datamodules.segmentation import (
    ADE20KSegmentation,
    COCOObjectSegmentation,
    COCOStuffSegmentation,
    PascalContext60Segmentation,
    PascalContextSegmentation,
    PascalVOCSegmentation,
)
from lit_clip.datamodules.shapesworld import (
    ShapesWorldAudio,
    ShapesWorldCaptioning,
    ShapesWorldCaptions,
    ShapesWorldClassification,
    ShapesWorldDepth,
    ShapesWorldDetection,
    ShapesWorldFewShot,
    ShapesWorldGrounding,
    ShapesWorldPoints,
    ShapesWorldQuestions,
    ShapesWorldSegmentation,
    ShapesWorldSolidsCaptions,
    ShapesWorldVideo,
)
from lit_clip.datamodules.timed_captions import ShapesWorldTimedCaptions, TimedCaptions
from lit_clip.datamodules.video_retrieval import MSRVTT, MSVD, DiDeMo, VideoFolder
from lit_clip.datamodules.video_recognition import HMDB51, UCF101, Kinetics400, VideoListRecognition
from lit_clip.datamodules.vqa import VQAv2
from lit_clip.datamodules.webdataset import WebDatasetPairs

__all__ = [
    "GenerationTargets",
    "ShapesWorldCaptions",
    "ShapesWorldCaptioning",
    "KarpathyCaptions",
    "ShapesWorldClassification",
    "ImageFolderClassification",
    "CoOpClassification",
    "ShapesWorldFewShot",
    "CoOpFewShot",
    "CocoCaptions",
    "Flickr30k",
    "CsvPairs",
    "WebDatasetPairs",
    "ShapesWorldSegmentation",
    "PascalVOCSegmentation",
    "ADE20KSegmentation",
    "PascalContextSegmentation",
    "PascalContext60Segmentation",
    "COCOStuffSegmentation",
    "COCOObjectSegmentation",
    "Pascal5iSegmentation",
    "COCO20iSegmentation",
    "FSS1000Segmentation",
    "ShapesWorldDetection",
    "ShapesWorldGrounding",
    "COCODetection",
    "LVISDetection",
    "ODinWDetection",
    "Objects365Detection",
    "MDETRGrounding",
    "DetectionAsGrounding",
    "GroundingMixture",
    "ShapesWorldAudio",
    "ESC50",
    "UrbanSound8K",
    "AudioClips",
    "AudioWebDataset",
    "ShapesWorldVideo",
    "Kinetics400",
    "UCF101",
    "HMDB51",
    "VideoListRecognition",
    "VQAv2",
    "ShapesWorldTimedCaptions",
    "TimedCaptions",
    "MSRVTT",
    "MSVD",
    "DiDeMo",
    "VideoFolder",
    "ShapesWorldSolidsCaptions",
    "ShapesWorldPoints",
    "ShapesWorldQuestions",
    "ModelNet40",
    "ModelNet10",
    "ScanObjectNN",
    "ShapesWorldDepth",
    "NYUDepthV2",
    "KITTIDepth",
]
