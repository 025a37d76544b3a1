"""The towers, the CLIP model that joins them (OpenAI / open_clip parameter names), and the family registry.

Importing timm_tower registers the "timm" family (open_clip's CLIPs with a timm image tower)."""
from lit_clip.models.clip import ARCHITECTURES, CLIP, CLIPConfig, TextConfig, VisionConfig
from lit_clip.models.registry import ModelFamily, architecture_names, create_model, family_of, register_family
from lit_clip.models.timm_tower import TIMM_ARCHITECTURES, TimmArchitecture, TimmImageTower

__all__ = [
    "ARCHITECTURES",
    "CLIP",
    "CLIPConfig",
    "ModelFamily",
    "TIMM_ARCHITECTURES",
    "TextConfig",
    "TimmArchitecture",
    "TimmImageTower",
    "VisionConfig",
    "architecture_names",
    "create_model",
    "family_of",
    "register_family",
]
