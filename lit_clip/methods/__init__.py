"""One LightningModule per method, each in its own file."""
from lit_clip.methods.clip_pretraining import CLIPPretraining

__all__ = ["CLIPPretraining"]
