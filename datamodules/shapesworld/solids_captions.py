"""3D ShapesWorld as image-caption pairs: what the ShapesWorld CLIP of the 3D methods is pretrained on.

Why it exists: PointCLIP classifies a point cloud from its projected depth maps and DepthCLIP reads depth from
distance words, both zero-shot with a CLIP that has seen depth maps and distance words in its pretraining (the
released CLIPs have, on the web). The 2D ShapesWorld CLIP (``configs/clip/shapes.yaml``) never did, so on
ShapesWorld the 3D methods use a CLIP pretrained on this mix (``configs/clip/shapes_3d.yaml``):

- with probability ``depth_map_fraction``, a dense depth map of one solid (``rendering.py``'s z-buffer, a random
  view of a randomly proportioned and posed solid, near white, far dim grey, background black, grey in all three
  channels) captioned "a depth map of a cone.", "point cloud depth map of a cone." (PointCLIP's prompt) and the
  like;
- otherwise an RGB depth scene (``depth.py``: solids on a floor before a wall, 0.8 to 4 m away) captioned with
  every solid's colour and distance, DepthCLIP's distance words in its own template among the phrasings
  ("this sphere is close").

Renders of meshes are dense; PointCLIP V1's projections of sparse points are not, a domain gap that V2's
realistic projection (densified, smoothed) is meant to close, as its paper finds on real CLIPs.

Validation and test have two loaders, as ``ShapesWorldCaptions``' (whose datasets this module reuses): caption
pairs of the mix (retrieval recall) and depth maps of single solids over the eight ``SOLIDS`` classes with
PointCLIP's prompt (``val/zeroshot_top1``), the task PointCLIP will put the CLIP to.
"""
from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.predict import prediction_loaders
from lit_clip.datamodules.shapesworld.captions import ShapesCaptionDataset
from lit_clip.datamodules.shapesworld.classification import ShapesClassificationDataset
from lit_clip.datamodules.shapesworld.depth import ShapesWorldDepthScenes, posed_solid
from lit_clip.datamodules.shapesworld.rendering import Camera, Mesh, depth_map_image, render
from lit_clip.datamodules.shapesworld.solids import SOLIDS, solid_mesh
from lit_clip.templates import POINTCLIP_TEMPLATES
from PIL import Image
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

# Depth maps' captions; {a} is the solid's article. PointCLIP's prompt is kept word for word ("a octahedron"),
# so that the zero-shot prompt is a sentence the CLIP was trained on.
_DEPTH_MAP_TEMPLATES = (
    "a depth map of {a} {s}.",
    "point cloud depth map of a {s}.",
    "{a} {s}.",
    "a depth image of {a} {s}.",
    "a rendered depth map of {a} {s}.",
    "the depth map of {a} {s} on a black background.",
    "{a} {s} seen as a depth map.",
)
# Depth-map views: a camera this far (in units of the solid's bounding sphere) from the solid's centre, in a
# direction drawn uniformly over the sphere (from the top and the bottom too, as PointCLIP's six views), aimed
# within _AIM of the centre; the solid then fills most of the image.
_VIEW_DISTANCE = (2.6, 3.4)
_VIEW_FIELD = 45.0
_AIM = 0.1
# Depth ranges below this (units of the bounding sphere) are not stretched to the whole grey range.
_FLAT = 0.05
_TILT = 10.0  # degrees, the largest tilt of a solid away from upright (as ShapesWorldSolids' clouds)
# Tags of the random streams of a sample, beside (seed, split, index); never 0 (numpy's SeedSequence ignores
# trailing zeros, so a 0 tag would repeat the depth scenes' stream).
_MIX_STREAM, _DEPTH_MAP_STREAM, _ZEROSHOT_STREAM = 1, 2, 3


@dataclass
class CaptionedImage:
    image: Image.Image  # RGB
    caption: str
    kind: str  # "depth_map" or "scene"


class SolidsCaptionWorld:
    """Deterministic generator of the mix (see the module's docstring): ``scene(split, index)`` a captioned image,
    ``classification_sample(split, index)`` a depth map of one solid labelled by its index into ``SOLIDS``.

    Args:
        image_size: side of the square images in pixels (at least 16).
        min_objects, max_objects: solids per RGB scene.
        depth_map_fraction: probability that a sample is a depth map rather than a scene.
        seed: selects the world; sample ``(seed, split, index)`` is always the same.
    """

    SPLITS = ShapesWorldDepthScenes.SPLITS

    def __init__(self, image_size: int = 64, min_objects: int = 1, max_objects: int = 2,
                 depth_map_fraction: float = 0.5, seed: int = 0):
        if not 0 <= depth_map_fraction <= 1:
            raise ValueError(f"depth_map_fraction must be a probability in [0, 1], got {depth_map_fraction}")
        self.scenes = ShapesWorldDepthScenes(image_size, min_objects, max_objects, seed=seed)
        self.image_size, self.depth_map_fraction, self.seed = image_size, depth_map_fraction, seed

    def scene(self, split: str, index: int) -> CaptionedImage:
        """Sample ``index`` of ``split``: a depth map or a scene, and its caption."""
        split_id = self._split_id(split)
        mix = np.random.default_rng([self.seed, split_id, index, _MIX_STREAM])
        if mix.random() >= self.depth_map_fraction:
            scene = self.scenes.scene(split, index)
            return CaptionedImage(scene.image, scene.caption, "scene")
        rng = np.random.default_rng([self.seed, split_id, index, _DEPTH_MAP_STREAM])
        solid = SOLIDS[int(rng.integers(len(SOLIDS)))]
        template = _DEPTH_MAP_TEMPLATES[int(rng.integers(len(_DEPTH_MAP_TEMPLATES)))]
        caption = template.format(a="an" if solid[0] in "aeiou" else "a", s=solid)
        return CaptionedImage(self.depth_map(solid, rng), caption, "depth_map")

    def classification_sample(self, split: str, index: int, vocabulary: str = "solid") -> tuple[Image.Image, int]:
        """(a depth map of one solid, its index into ``SOLIDS``), labels balanced: class = index modulo 8."""
        if vocabulary != "solid":
            raise ValueError(f"SolidsCaptionWorld classifies solids only: vocabulary must be 'solid', "
                             f"got {vocabulary!r}")
        label = index % len(SOLIDS)
        rng = np.random.default_rng([self.seed, self._split_id(split), index, _ZEROSHOT_STREAM])
        return self.depth_map(SOLIDS[label], rng), label

    def depth_map(self, solid: str, rng: np.random.Generator) -> Image.Image:
        """A dense depth map of ``solid`` from a random view, as a grey RGB image."""
        shape = posed_solid(solid, rng, _TILT)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        position = direction * rng.uniform(*_VIEW_DISTANCE)
        camera = Camera.looking_at(position, rng.uniform(-_AIM, _AIM, size=3), _VIEW_FIELD, self.image_size)
        depth = render([Mesh(shape, solid_mesh(solid)[1], (255, 255, 255))], camera).depth
        seen = depth[depth > 0]  # never empty: the camera looks at the solid's middle from outside it
        # Near and far from the solid's own depths: the whole grey range for its shape, whatever the view; a face
        # seen square on (one depth) is all white.
        near = float(seen.min())
        grey = depth_map_image(depth, near, max(float(seen.max()), near + _FLAT))
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), "RGB")

    def _split_id(self, split: str) -> int:
        if split not in self.SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(self.SPLITS)}")
        return self.SPLITS.index(split)


class ShapesWorldSolidsCaptions(L.LightningDataModule):
    """Image-caption pairs of 3D ShapesWorld (depth maps of solids and RGB scenes with distances) for contrastive
    pretraining, evaluated by retrieval and zero-shot classification of depth maps over ``SOLIDS``.

    Batches are ``ShapesWorldCaptions``': training ``{"image", "text", "caption", "index"}``; validation and test
    a loader of caption pairs, then one of ``{"image", "label", "index"}`` labelled over ``classnames``.
    """

    def __init__(
        self,
        image_size: int = 64,
        min_objects: int = 1,
        max_objects: int = 2,
        depth_map_fraction: float = 0.5,
        seed: int = 0,
        train_samples: int = 28_800,
        val_samples: int = 512,
        zeroshot_samples_per_class: int = 16,
        context_length: int = 32,
        batch_size: int = 64,
        num_workers: int = 0,
        predict_images: str | None = None,
        predict_texts: str | None = None,
    ):
        """
        Args:
            image_size: side of the square images in pixels.
            min_objects, max_objects: solids per RGB scene.
            depth_map_fraction: share of depth maps of single solids among the samples; the rest are RGB scenes.
            seed: the world's seed; sample ``i`` of a split is the same for a given seed.
            train_samples: samples per training epoch.
            val_samples: caption pairs for retrieval in validation and test.
            zeroshot_samples_per_class: depth maps per solid for zero-shot evaluation.
            context_length: token length of the captions; at most the model's context length.
            batch_size: per process.
            num_workers: DataLoader worker processes.
            predict_images: ``lit-clip predict``'s images: a folder, a file listing image paths, or an
                image; by default predict reads the test pairs (see ``lit_clip.datamodules.predict``).
            predict_texts: ``lit-clip predict``'s texts: a file with one text per line.
        """
        super().__init__()
        self.save_hyperparameters()
        self.world = SolidsCaptionWorld(image_size, min_objects, max_objects, depth_map_fraction, seed)
        self.classnames = list(SOLIDS)
        self.templates = POINTCLIP_TEMPLATES

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> StatefulDataLoader:
        h = self.hparams
        return stateful_loader(dataset, h.batch_size, h.num_workers, shuffle)

    def _evaluation_loaders(self, split: str) -> list[StatefulDataLoader]:
        h = self.hparams
        pairs = ShapesCaptionDataset(self.world, split, h.val_samples, h.context_length)
        zeroshot = ShapesClassificationDataset(
            self.world, split, h.zeroshot_samples_per_class * len(self.classnames), vocabulary="solid"
        )
        return [self._loader(pairs), self._loader(zeroshot)]

    def train_dataloader(self) -> StatefulDataLoader:
        h = self.hparams
        require_one_batch(h.train_samples, h.batch_size, self.trainer, "training samples (train_samples)")
        return self._loader(ShapesCaptionDataset(self.world, "train", h.train_samples, h.context_length), shuffle=True)

    def val_dataloader(self) -> list[StatefulDataLoader]:
        return self._evaluation_loaders("val")

    def test_dataloader(self) -> list[StatefulDataLoader]:
        return self._evaluation_loaders("test")

    def predict_dataloader(self):
        return prediction_loaders(self.hparams, default=lambda: self._evaluation_loaders("test")[0])
