"""The 3D and depth tab: PointCLIP's classification of a point cloud over class names the user types, with the views
it projects the cloud to, and DepthCLIP's depth map of an image, from distance words, with no training.

Both run zero-shot on the ``--pretrained`` CLIP (each method built once per setting and kept with the tab), or from a
method checkpoint of the 3D family: PointCLIP's few-shot inter-view adapter, DepthCLIP's learned projection.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import gradio as gr
import lightning as L
import numpy as np
import torch
from PIL import Image

from lit_clip import drawing
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.point_clouds import CLOUD_EXTENSIONS, normalize_to_unit_sphere, read_cloud_file
from lit_clip.datamodules.shapesworld.depth import ShapesWorldDepthScenes
from lit_clip.datamodules.shapesworld.solids import SOLIDS, ShapesWorldSolids
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_input, image_size, open_image
from lit_clip.demo.weights import Weights, predict
from lit_clip.methods.three_d.depthclip import DepthCLIP
from lit_clip.methods.three_d.pointclip import PointCLIP
from lit_clip.methods.three_d.projection import V1_ZERO_SHOT_SIZE
from lit_clip.transforms import to_normalized_tensor

FAMILY = "3d"
ZERO_SHOT_POINTCLIP = "zero-shot PointCLIP on the --pretrained CLIP"
ZERO_SHOT_DEPTHCLIP = "zero-shot DepthCLIP on the --pretrained CLIP"
PROJECTIONS = {"V2: realistic projection, 10 views": "v2", "V1: points splatted, 6 views": "v1"}
NOT_GIVEN = "not given"  # the true class in the views picture when the user names none

# Example clouds: one test cloud of each of these solids from ShapesWorldPoints' world; the last as text rows.
EXAMPLE_SOLIDS = ("sphere", "cube", "torus", "cone")
DEPTH_SCENES = 2


# --- the methods ----------------------------------------------------------------------------------------------
class Methods:
    """The tab's methods: checkpoints through the page's :class:`Weights`, zero-shot ones on its ``--pretrained``
    CLIP (all sharing the page's one copy), one per setting, built on first use and kept."""

    def __init__(self, weights: Weights):
        self.weights = weights
        self._zero_shot: dict[tuple, L.LightningModule] = {}

    def zero_shot(self, setting: tuple, build: Callable[[], L.LightningModule]) -> L.LightningModule:
        """``build()``'s method for ``setting``, built on the first request of that setting."""
        if setting not in self._zero_shot:
            with self.weights.clip_shared():  # without --pretrained, a message saying how to give one
                self._zero_shot[setting] = build().to(self.weights.device).eval()
        return self._zero_shot[setting]

    def pointclip(self, choice: str | None, projection: str, shapes_look: bool) -> tuple[PointCLIP, dict]:
        """The PointCLIP ``choice`` names, and the data module attributes it predicts with (its templates).

        A checkpoint predicts with its data module's templates (those its recorded arguments give, where the data
        module cannot be rebuilt). Zero-shot: ``projection`` (a :data:`PROJECTIONS` key) drawn as the official code
        draws it, or with ``shapes_look`` as configs/pointclip/shapes*.yaml do for a CLIP trained on normalised depth
        renders (views normalised like CLIP's images, V2's not inverted). V1 projects at the official 128 px, or at
        the CLIP's side when that is smaller (the method's advice: single-pixel points fade when shrunk)."""
        if choice != ZERO_SHOT_POINTCLIP:
            checkpoint, method = self.weights.load(choice, FAMILY, methods=("PointCLIP",))
            if method.searches and not method.searched:
                raise DemoInputError(f"{checkpoint.path}: this PointCLIP searches its view weights or prompts on a "
                                     "validation split before it predicts, which the page has not; evaluate it with "
                                     "`lit-clip test`")  # fmt: skip
            templates = self.weights.templates(checkpoint, default=None)
            return method, {"templates": templates} if templates else {}
        if projection not in PROJECTIONS:
            raise DemoInputError(f"unknown projection {projection!r}; expected one of {list(PROJECTIONS)}")
        version, pretrained = PROJECTIONS[projection], self.weights.pretrained

        def build() -> PointCLIP:
            if version == "v2":
                return PointCLIP(pretrained, projection="v2", invert=not shapes_look, normalize_views=shapes_look)
            resolution = min(V1_ZERO_SHOT_SIZE, image_size(self.weights.clip()))
            return PointCLIP(pretrained, projection="v1", resolution=resolution, normalize_views=shapes_look)

        return self.zero_shot(("PointCLIP", version, shapes_look), build), {}

    def depthclip(self, choice: str | None) -> tuple[DepthCLIP, L.LightningDataModule | None]:
        """The DepthCLIP ``choice`` names (the paper's, training-free, on the page's CLIP, or a checkpoint's), and
        the data module that prepares its images: the checkpoint's (None zero-shot, or where it cannot be rebuilt)."""
        if choice == ZERO_SHOT_DEPTHCLIP:
            return self.zero_shot(("DepthCLIP",), lambda: DepthCLIP(self.weights.pretrained)), None
        checkpoint, method = self.weights.load(choice, FAMILY, methods=("DepthCLIP",))
        return method, self.weights.data_module(checkpoint)


# --- reading the user's files ---------------------------------------------------------------------------------
def read_cloud(source: str | Path | None) -> np.ndarray:
    """float32 ``[N, 3]``: a cloud file as ``lit-clip predict`` reads one (``.npy`` ``[N, >=3]``, or text rows
    ``x y z`` / ``x,y,z``, further columns ignored), all its points."""
    if source is None:
        raise DemoInputError("give a point cloud: upload a file, or pick an example below")
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in CLOUD_EXTENSIONS:
        raise DemoInputError(f"{path.name} is not a point cloud file; expected one of {', '.join(CLOUD_EXTENSIONS)}")
    with tempfile.TemporaryDirectory(prefix="lit-clip-cloud-") as folder:
        if path.suffix != suffix:  # read_cloud_file knows a .npy by its lower-case suffix: "CLOUD.NPY" read as one
            path = Path(shutil.copyfile(path, Path(folder) / f"{path.stem}{suffix}"))
        try:
            return read_cloud_file(path, None)
        except (ValueError, EOFError, OSError) as error:
            raise DemoInputError(f"{error}; expected a point cloud: a .npy array [N, 3] (x, y, z per point), or a "
                                 "text file of rows 'x y z'") from error  # fmt: skip


def read_depth_map(source: str | Path | None, image: Image.Image) -> np.ndarray | None:
    """The ground truth ``[H, W]`` in metres (0: not measured) of ``image``, from a ``.npy`` file; None if none."""
    if source is None:
        return None
    path = Path(source)
    expected = "expected the image's ground truth depth, a .npy array [height, width] in metres"
    try:
        depth = np.load(path)
    except (ValueError, EOFError, OSError) as error:
        raise DemoInputError(f"{path.name} is not readable as a .npy array ({error}); {expected}") from error
    if not isinstance(depth, np.ndarray):  # numpy reads a .npz archive whatever the file's name
        depth.close()
        raise DemoInputError(f"{path.name} is a .npz archive, not one array; {expected}")
    if depth.ndim != 2 or depth.shape != (image.height, image.width) or not np.issubdtype(depth.dtype, np.number):
        raise DemoInputError(f"{path.name} holds a {depth.dtype} array of shape {list(depth.shape)}; expected the "
                             f"image's depth in metres, [height, width] = {[image.height, image.width]}")
    return depth.astype(np.float32)


def depth_input(path: str | Path, datamodule: L.LightningDataModule | None) -> torch.Tensor:
    """``[3, h, w]``: the image file as ``lit-clip predict`` prepares it for DepthCLIP: as ``datamodule``'s predict
    loader reads ``predict_images`` (ShapesWorldDepth: CLIP's resize and centre crop to its ``image_size``; NYU and
    KITTI: resized to their ``image_size`` only where given); without one, as the depth data modules do by default
    (configs/depthclip/nyu.yaml): the whole frame at its own size, CLIP-normalised."""
    if datamodule is None or "predict_images" not in datamodule.hparams:  # the latter would predict its test split
        return to_normalized_tensor(open_image(path))
    recorded = datamodule.hparams.get("predict_images")
    datamodule.hparams.predict_images = str(path)  # events run one at a time: the cached data module is ours now
    try:
        return datamodule.predict_dataloader().dataset[0]["image"]
    except (BadSampleError, OSError, ValueError) as error:
        raise DemoInputError(f"{type(datamodule).__name__} cannot read {Path(path).name}: {error}; expected an "
                             "image file (PNG, JPEG, ...)") from error  # fmt: skip
    finally:
        datamodule.hparams.predict_images = recorded


# --- the answers ----------------------------------------------------------------------------------------------
@torch.no_grad()
def classify_cloud(methods: Methods, points: np.ndarray, names: str, choice: str | None, projection: str,
                   shapes_look: bool, normalize: bool, true_class: str = "") -> tuple[dict[str, float], np.ndarray]:
    """Each class's probability for the cloud ``points`` ``[N, 3]`` (normalised into the unit sphere first if
    ``normalize``), from PointCLIP's ``predict_step``, and the picture of the views it projected the cloud to with
    the true (if given) and predicted class."""
    classnames = class_names(names, at_least=2)
    method, attributes = methods.pointclip(choice, projection, shapes_look)
    cloud = torch.from_numpy(normalize_to_unit_sphere(points) if normalize else points).float()[None]
    answer = predict(method, {"points": cloud}, classnames=classnames, **attributes)
    views = method.projected_views(cloud.to(method.device)).float().cpu()
    true_names = [(true_class or "").strip() or NOT_GIVEN]
    picture = drawing.point_cloud_views(views, true_names, answer["predicted_class"], px=96)
    return dict(zip(classnames, answer["probabilities"][0].tolist())), picture


@torch.no_grad()
def estimate_depth(methods: Methods, path: str | Path | None, choice: str | None, truth_path: str | Path | None = None,
                   ) -> tuple[np.ndarray, dict, np.ndarray]:  # fmt: skip
    """DepthCLIP's depth in metres ``[H, W]`` of the image file, from its ``predict_step`` on the image as
    :func:`depth_input` prepares it: at that size, or, with a ground truth file (:func:`read_depth_map`, the whole
    frame's), at the truth's size. Returns the picture (the image as the method saw it and the depth; with the truth,
    DepthSamples' comparison), a summary of the depths, and the depth map."""
    image = open_image(path)
    truth = read_depth_map(truth_path, image)
    method, datamodule = methods.depthclip(choice)
    pixels = depth_input(path, datamodule)
    batch = {"image": pixels[None]}
    if truth is not None:
        batch["depth"] = torch.from_numpy(truth)[None]
    depth = predict(method, batch)["depth"][0].float().cpu().numpy()
    seen = drawing.to_uint8_image(pixels[None])[0]
    low, high = float(depth.min()), float(depth.max())
    if truth is None:
        picture = drawing.caption_grid([seen, drawing.depth_colours(depth, low, high)],
                                       ["image", f"depth: {low:.2f} m (yellow) to {high:.2f} m (blue)"], px=192)
    else:
        picture = drawing.depth_comparison([seen], [truth], [depth], px=192)
    summary = {"min_m": low, "max_m": high, "mean_m": float(depth.mean()), "median_m": float(np.median(depth)),
               "height": depth.shape[0], "width": depth.shape[1], "bins_m": method.depth_bins.tolist()}  # fmt: skip
    return picture, summary, depth


# --- the examples ---------------------------------------------------------------------------------------------
def example_clouds(folder: Path) -> list[tuple[Path, str]]:
    """``<solid>.npy`` (the last of :data:`EXAMPLE_SOLIDS` as ``<solid>.txt``, rows ``x y z``): for each, the first
    test cloud of that solid in ShapesWorldPoints' default world (seed 0, 1024 points), with its class."""
    solids, clouds = ShapesWorldSolids(seed=0, num_points=1024), []
    for name in EXAMPLE_SOLIDS:
        index = next(i for i in range(len(SOLIDS)) if solids.label("test", i) == SOLIDS.index(name))
        as_text = name == EXAMPLE_SOLIDS[-1]
        path = folder / f"{name}.{'txt' if as_text else 'npy'}"
        if not path.exists():
            points = solids.cloud("test", index).points
            if as_text:
                np.savetxt(path, points, fmt="%.6f")
            else:
                np.save(path, points)
        clouds.append((path, name))
    return clouds


def example_depth_scenes(folder: Path) -> list[tuple[Path, Path]]:
    """``depth_scene<k>.png`` and its ground truth ``depth_scene<k>.npy`` (metres): test scenes of
    ShapesWorldDepth's world (seed 0, 1-3 solids), at the examples' size."""
    scenes, pairs = ShapesWorldDepthScenes(image_size=examples.EXAMPLE_PX), []
    for index in range(DEPTH_SCENES):
        image, depth = folder / f"depth_scene{index}.png", folder / f"depth_scene{index}.npy"
        if not (image.exists() and depth.exists()):
            scene = scenes.scene("test", index)
            scene.image.save(image)
            np.save(depth, scene.depth)
        pairs.append((image, depth))
    return pairs


# --- the tab --------------------------------------------------------------------------------------------------
def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    methods = Methods(weights)
    # The depth maps offered for download: one folder for the page, removed with it (Gradio serves a copy).
    depth_files = tempfile.TemporaryDirectory(prefix="lit-clip-depth-")

    gr.Markdown("### Point clouds: PointCLIP\nThe cloud is projected to depth images from several views, which the "
                "CLIP's image tower compares with \"point cloud depth map of a {class}.\" for each class name. "
                "Zero-shot on the `--pretrained` CLIP (for the ShapesWorld examples, the 3D ShapesWorld CLIP of "
                "`lit-clip fit --config configs/clip/shapes_3d.yaml`), or a few-shot inter-view adapter trained by "
                "`lit-clip fit --config configs/pointclip/shapes_fewshot.yaml`.")  # fmt: skip
    with gr.Row():
        with gr.Column():
            cloud = gr.File(file_types=list(CLOUD_EXTENSIONS), type="filepath",
                            label="point cloud (.npy [N, 3], or text rows 'x y z')")  # fmt: skip
            names = gr.Textbox(label="class names (one per line, or comma-separated)", lines=2)
            true_class = gr.Textbox(label="the cloud's true class, if known (for the picture)")
            pointclip_choice = gr.Dropdown([ZERO_SHOT_POINTCLIP, *weights.choices(FAMILY, methods=("PointCLIP",))],
                                           value=ZERO_SHOT_POINTCLIP, allow_custom_value=True,
                                           label="PointCLIP")  # fmt: skip
            projection = gr.Radio(list(PROJECTIONS), value=next(iter(PROJECTIONS)), label="zero-shot projection")
            shapes_look = gr.Checkbox(True, label="zero-shot views as the ShapesWorld configs draw them (normalised "
                                                  "like CLIP's images); off: the official look")  # fmt: skip
            normalize = gr.Checkbox(True, label="centre the cloud and scale it into the unit sphere")
            classify = gr.Button("Classify", variant="primary")
        with gr.Column():
            probabilities = gr.Label(label="probabilities", num_top_classes=10)
            views = gr.Image(type="numpy", format="png", label="the views the CLIP sees")
    gr.Examples([[str(path), ", ".join(SOLIDS), name] for path, name in example_clouds(folder)],
                inputs=[cloud, names, true_class])  # fmt: skip

    def on_classify(path, names, choice, projection, shapes_look, normalize, true_class, progress=gr.Progress()):
        progress(0.1, desc="projecting the cloud and classifying its views")
        return classify_cloud(methods, read_cloud(path), names, choice, projection, shapes_look, normalize,
                              true_class)  # fmt: skip

    classify.click(shown(on_classify), [cloud, names, pointclip_choice, projection, shapes_look, normalize, true_class],
                   [probabilities, views], api_name="classify_point_cloud")  # fmt: skip

    gr.Markdown("### Depth: DepthCLIP\nEvery location of the image is compared with \"This object is {word}\" for "
                "seven distance words (giant ... unseen) standing for 1 to 3 m; its depth is the expected distance. "
                "Training-free on the `--pretrained` CLIP (`lit-clip test --config configs/depthclip/shapes.yaml` "
                "measures it), or a checkpoint of its learned projection (`lit-clip fit --config "
                "configs/depthclip/shapes.yaml --model.init_args.reduction=learned`, a ResNet CLIP). The image is "
                "seen as `lit-clip predict` prepares it: zero-shot the whole frame at its own size, a checkpoint's "
                "as its data module does; the depth is compared with a ground truth at the truth's size.")  # fmt: skip
    with gr.Row():
        with gr.Column():
            image = image_input("image")
            truth = gr.File(file_types=[".npy"], type="filepath",
                            label="ground truth depth, optional (.npy [height, width] in metres, 0: not measured)")
            depthclip_choice = gr.Dropdown([ZERO_SHOT_DEPTHCLIP, *weights.choices(FAMILY, methods=("DepthCLIP",))],
                                           value=ZERO_SHOT_DEPTHCLIP, allow_custom_value=True,
                                           label="DepthCLIP")  # fmt: skip
            estimate = gr.Button("Estimate depth", variant="primary")
        with gr.Column():
            depth_picture = gr.Image(type="numpy", format="png", label="depth")
            summary = gr.JSON(label="depth range and summary (metres)")
            depth_file = gr.File(label="the depth map (.npy, metres)")
    gr.Examples([[str(scene), str(depth)] for scene, depth in example_depth_scenes(folder)], inputs=[image, truth])

    def on_estimate(path, truth_path, choice, progress=gr.Progress()):
        progress(0.1, desc="estimating depth")
        drawn, numbers, depth = estimate_depth(methods, path, choice, truth_path)
        written = Path(depth_files.name) / f"{Path(path).stem}_depth.npy"  # a name used before is overwritten
        np.save(written, depth)
        return drawn, numbers, str(written)

    estimate.click(shown(on_estimate), [image, truth, depthclip_choice], [depth_picture, summary, depth_file],
                   api_name="estimate_depth")  # fmt: skip
