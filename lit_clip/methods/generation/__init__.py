"""CLIP-guided generation: pictures optimised against a frozen CLIP (CLIPDraw, CLIPasso, VQGAN-CLIP), the vector
rasteriser the stroke methods draw with, and the VQGAN training VQGAN-CLIP's ShapesWorld config uses."""
