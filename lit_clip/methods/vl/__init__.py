"""Vision-language tasks on CLIP's image tower (CLIP-ViL): visual question answering (MCAN)."""
