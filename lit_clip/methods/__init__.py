"""One LightningModule per method, each in its own file."""
from lit_clip.methods.clip_adapter import CLIPAdapter
from lit_clip.methods.clip_pretraining import CLIPPretraining
from lit_clip.methods.cocoop import CoCoOp
from lit_clip.methods.coop import CoOp
from lit_clip.methods.linear_probe import LinearProbe
from lit_clip.methods.maple import MaPLe
from lit_clip.methods.tip_adapter import TipAdapter, TipAdapterF
from lit_clip.methods.zeroshot_classifier import ZeroShotClassifier

__all__ = [
    "CLIPPretraining",
    "ZeroShotClassifier",
    "LinearProbe",
    "CoOp",
    "CoCoOp",
    "MaPLe",
    "CLIPAdapter",
    "TipAdapter",
    "TipAdapterF",
]
