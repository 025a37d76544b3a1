"""3D and depth methods on a frozen CLIP: PointCLIP (V1, V2) and DepthCLIP."""
