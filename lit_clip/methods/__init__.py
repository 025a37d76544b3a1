"""One LightningModule per method, each in its own file."""
from lit_clip.methods.clip_pretraining import CLIPPretraining
from lit_clip.methods.linear_probe import LinearProbe
from lit_clip.methods.zeroshot_classifier import ZeroShotClassifier

__all__ = ["CLIPPretraining", "LinearProbe", "ZeroShotClassifier"]
