"""The towers, the CLIP model that joins them (OpenAI / open_clip parameter names), and the family registry."""
from lit_clip.models.clip import ARCHITECTURES, CLIP, CLIPConfig, TextConfig, VisionConfig
from lit_clip.models.registry import ModelFamily, architecture_names, create_model, family_of, register_family

__all__ = [
    "ARCHITECTURES",
    "CLIP",
    "CLIPConfig",
    "ModelFamily",
    "TextConfig",
    "VisionConfig",
    "architecture_names",
    "create_model",
    "family_of",
    "register_family",
]
