"""Language-driven semantic segmentation on a frozen CLIP text tower: zero-shot dense CLIP, LSeg."""
