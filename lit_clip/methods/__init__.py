"""One LightningModule per method, each in its own file, grouped by task (``pretraining/``, ``classification/``,
``segmentation/``, ``detection/``, ``video/``, ``three_d/``, ``generation/``, ``vl/``)."""
from lit_clip.methods.classification.clip_adapter import CLIPAdapter
from lit_clip.methods.classification.cocoop import CoCoOp
from lit_clip.methods.classification.coop import CoOp
from lit_clip.methods.classification.linear_probe import LinearProbe
from lit_clip.methods.classification.maple import MaPLe
from lit_clip.methods.classification.tip_adapter import TipAdapter, TipAdapterF
from lit_clip.methods.classification.zeroshot_classifier import ZeroShotClassifier
from lit_clip.methods.detection.glip import GLIP
from lit_clip.methods.detection.vild import ViLD
from lit_clip.methods.generation.clipasso import CLIPasso
from lit_clip.methods.generation.clipdraw import CLIPDraw
from lit_clip.methods.generation.vqgan_clip import VQGANCLIP
from lit_clip.methods.generation.vqgan_training import VQGANTraining
from lit_clip.methods.pretraining.audioclip import AudioCLIPPretraining
from lit_clip.methods.pretraining.clip_pretraining import CLIPPretraining
from lit_clip.methods.pretraining.groupvit import GroupViTPretraining
from lit_clip.methods.pretraining.slip import SLIPPretraining
from lit_clip.methods.segmentation.groupvit_segmentation import GroupViTSegmentation
from lit_clip.methods.segmentation.lseg import LSeg
from lit_clip.methods.segmentation.zeroshot_segmentation import ZeroShotSegmentation
from lit_clip.methods.three_d.depthclip import DepthCLIP
from lit_clip.methods.three_d.pointclip import PointCLIP
from lit_clip.methods.video.actionclip import ActionCLIP
from lit_clip.methods.video.clip4clip import CLIP4Clip
from lit_clip.methods.video.videoclip import VideoCLIP
from lit_clip.methods.vl.clipcap import ClipCap
from lit_clip.methods.vl.mcan_vqa import MCANVQA
from lit_clip.methods.vl.transformer_captioner import TransformerCaptioning

__all__ = [
    "CLIPPretraining",
    "GroupViTPretraining",
    "SLIPPretraining",
    "AudioCLIPPretraining",
    "ZeroShotClassifier",
    "LinearProbe",
    "CoOp",
    "CoCoOp",
    "MaPLe",
    "CLIPAdapter",
    "TipAdapter",
    "TipAdapterF",
    "LSeg",
    "ZeroShotSegmentation",
    "GroupViTSegmentation",
    "ViLD",
    "GLIP",
    "CLIP4Clip",
    "ActionCLIP",
    "VideoCLIP",
    "PointCLIP",
    "DepthCLIP",
    "CLIPDraw",
    "CLIPasso",
    "VQGANCLIP",
    "VQGANTraining",
    "MCANVQA",
    "TransformerCaptioning",
    "ClipCap",
]
