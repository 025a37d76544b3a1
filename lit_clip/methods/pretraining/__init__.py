"""Methods that train CLIP itself."""
