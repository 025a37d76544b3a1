"""lit-clip: CLIP and its follow-up methods as PyTorch Lightning modules.

The plain-torch layer (towers, tokenizer, losses, zero-shot head) imports
without Lightning; methods live in ``lit_clip.methods``, data in
``lit_clip.datamodules``, dashboard pictures in ``lit_clip.callbacks``.
"""
from lit_clip.checkpoints import load_clip, save_huggingface, save_open_clip
from lit_clip.losses import ClipLoss, SigLipLoss
from lit_clip.models import ARCHITECTURES, CLIP, GroupViT, architecture_names, create_model
from lit_clip.tokenizer import Tokenizer, tokenize
from lit_clip.zeroshot import build_zeroshot_classifier

__all__ = [
    "ARCHITECTURES",
    "CLIP",
    "ClipLoss",
    "GroupViT",
    "SigLipLoss",
    "Tokenizer",
    "architecture_names",
    "build_zeroshot_classifier",
    "create_model",
    "load_clip",
    "save_huggingface",
    "save_open_clip",
    "tokenize",
]
