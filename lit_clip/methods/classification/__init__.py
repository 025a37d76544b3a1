"""Classifiers on a frozen CLIP: zero-shot, linear probe, prompt learning, adapters."""
