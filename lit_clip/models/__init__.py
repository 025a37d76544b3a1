"""The towers, the CLIP model that joins them (OpenAI / open_clip parameter names), and the family registry.

Importing timm_tower registers the "timm" family (open_clip's CLIPs with a timm image tower), importing groupvit the
"groupvit" family (GroupViT: a grouping image tower, for zero-shot segmentation from text supervision)."""
from lit_clip.models.clip import ARCHITECTURES, CLIP, CLIPConfig, TextConfig, VisionConfig
from lit_clip.models.groupvit import GROUPVIT_ARCHITECTURES, GroupViT, GroupViTConfig, Groups, group_maps
from lit_clip.models.registry import ModelFamily, architecture_names, create_model, family_of, register_family
from lit_clip.models.timm_tower import TIMM_ARCHITECTURES, TimmArchitecture, TimmImageTower

__all__ = [
    "ARCHITECTURES",
    "CLIP",
    "CLIPConfig",
    "GROUPVIT_ARCHITECTURES",
    "GroupViT",
    "GroupViTConfig",
    "Groups",
    "ModelFamily",
    "TIMM_ARCHITECTURES",
    "TextConfig",
    "TimmArchitecture",
    "TimmImageTower",
    "VisionConfig",
    "architecture_names",
    "create_model",
    "family_of",
    "group_maps",
    "register_family",
]
