"""The towers and the CLIP model that joins them (OpenAI / open_clip parameter names)."""
from lit_clip.models.clip import ARCHITECTURES, CLIP, architecture_names, create_model

__all__ = ["ARCHITECTURES", "CLIP", "architecture_names", "create_model"]
