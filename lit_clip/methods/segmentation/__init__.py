"""Semantic segmentation by text: zero-shot dense CLIP, LSeg, GroupViT's zero-shot segmentation."""
