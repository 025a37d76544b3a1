"""The 3D and depth tab: PointCLIP's classification of a point cloud over class names the user types, with the views
it projects the cloud to, and DepthCLIP's depth map of an image, from distance words, with no training.

Both run zero-shot on the ``--pretrained`` CLIP (each method built once per setting and kept), or from a method
checkpoint of the 3D family: PointCLIP's few-shot inter-view adapter, DepthCLIP's learned projection.
"""
from __future__ import annotations

import tempfile
import weakref
from pathlib import Path
from typing import Callable

import gradio as gr
import lightning as L
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from lit_clip import drawing
from lit_clip.datamodules.point_clouds import CLOUD_EXTENSIONS, normalize_to_unit_sphere, read_cloud_file
from lit_clip.datamodules.shapesworld.depth import ShapesWorldDepthScenes
from lit_clip.datamodules.shapesworld.solids import SOLIDS, ShapesWorldSolids
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_batch, image_size, open_image
from lit_clip.demo.weights import Checkpoint, Weights, predict
from lit_clip.methods.three_d.depthclip import DepthCLIP
from lit_clip.methods.three_d.pointclip import PointCLIP
from lit_clip.methods.three_d.projection import V1_ZERO_SHOT_SIZE
from lit_clip.templates import resolve_templates

FAMILY = "3d"
ZERO_SHOT_POINTCLIP = "zero-shot PointCLIP on the --pretrained CLIP"
ZERO_SHOT_DEPTHCLIP = "zero-shot DepthCLIP on the --pretrained CLIP"
PROJECTIONS = {"V2: realistic projection, 10 views": "v2", "V1: points splatted, 6 views": "v1"}
NOT_GIVEN = "not given"  # the true class in the views picture when the user names none

# Example clouds: one test cloud of each of these solids from ShapesWorldPoints' world; the last as text rows.
EXAMPLE_SOLIDS = ("sphere", "cube", "torus", "cone")
DEPTH_SCENES = 2

# The zero-shot methods built on each page's CLIP, by setting; forgotten with the page's Weights.
_zero_shot_methods: weakref.WeakKeyDictionary[Weights, dict[tuple, L.LightningModule]] = weakref.WeakKeyDictionary()


# --- the methods ----------------------------------------------------------------------------------------------
def zero_shot_method(weights: Weights, key: tuple, build: Callable[[], L.LightningModule]) -> L.LightningModule:
    """``build()``'s method on the page's CLIP, built once per ``key`` and kept."""
    methods = _zero_shot_methods.setdefault(weights, {})
    if key not in methods:
        clip = weights.clip()  # first: without --pretrained, the page says how to give one
        method = build()
        method.model = clip  # the page's one copy of the CLIP, the same weights as the one the method loaded
        methods[key] = method.to(weights.device).eval()
    return methods[key]


def method_checkpoint(weights: Weights, choice: str | None, method_name: str) -> tuple[L.LightningModule, Checkpoint]:
    """The ``method_name`` checkpoint that ``choice`` names (a drop-down label or a typed path): its method, loaded,
    and the checkpoint."""
    checkpoint = weights.checkpoint(choice, FAMILY)
    if checkpoint.method != method_name:
        raise DemoInputError(f"{checkpoint.path} is a {checkpoint.method} checkpoint; this section runs "
                             f"{method_name} checkpoints")  # fmt: skip
    return weights.method(checkpoint), checkpoint


def pointclip(weights: Weights, choice: str | None, projection: str, shapes_look: bool) -> tuple[PointCLIP, dict]:
    """The PointCLIP ``choice`` names, and the data module attributes it predicts with (its templates).

    Zero-shot: ``projection`` (a :data:`PROJECTIONS` key) drawn as the official code draws it, or with
    ``shapes_look`` as configs/pointclip/shapes*.yaml do for a CLIP trained on normalised depth renders (views
    normalised like CLIP's images, V2's not inverted). V1 projects at the official 128 px, or at the CLIP's side
    when that is smaller (the method's advice: single-pixel points fade when shrunk)."""
    if choice != ZERO_SHOT_POINTCLIP:
        method, checkpoint = method_checkpoint(weights, choice, "PointCLIP")
        if method.searches and not method.searched:
            raise DemoInputError(f"{checkpoint.path}: this PointCLIP searches its view weights or prompts on a "
                                 "validation split before it predicts, which the page has not; evaluate it with "
                                 "`lit-clip test`")  # fmt: skip
        templates = checkpoint.datamodule_hyper_parameters.get("templates")
        return method, {"templates": resolve_templates(templates)} if templates else {}
    if projection not in PROJECTIONS:
        raise DemoInputError(f"unknown projection {projection!r}; expected one of {list(PROJECTIONS)}")
    version = PROJECTIONS[projection]

    def build() -> PointCLIP:
        if version == "v2":
            return PointCLIP(weights.pretrained, projection="v2", invert=not shapes_look, normalize_views=shapes_look)
        resolution = min(V1_ZERO_SHOT_SIZE, image_size(weights.clip()))
        return PointCLIP(weights.pretrained, projection="v1", resolution=resolution, normalize_views=shapes_look)

    return zero_shot_method(weights, ("PointCLIP", version, shapes_look), build), {}


def depthclip(weights: Weights, choice: str | None) -> DepthCLIP:
    """The DepthCLIP ``choice`` names: the paper's, training-free, on the page's CLIP, or a checkpoint's."""
    if choice != ZERO_SHOT_DEPTHCLIP:
        return method_checkpoint(weights, choice, "DepthCLIP")[0]
    return zero_shot_method(weights, ("DepthCLIP",), lambda: DepthCLIP(weights.pretrained))


# --- reading the user's files ---------------------------------------------------------------------------------
def read_cloud(source: str | Path | None) -> np.ndarray:
    """float32 ``[N, 3]``: a cloud file as ``lit-clip predict`` reads one (``.npy`` ``[N, >=3]``, or text rows
    ``x y z`` / ``x,y,z``, further columns ignored), all its points."""
    if source is None:
        raise DemoInputError("give a point cloud: upload a file, or pick an example below")
    path = Path(source)
    if path.suffix.lower() not in CLOUD_EXTENSIONS:
        raise DemoInputError(f"{path.name} is not a point cloud file; expected one of {', '.join(CLOUD_EXTENSIONS)}")
    try:
        return read_cloud_file(path, None)
    except (ValueError, EOFError, OSError) as error:
        raise DemoInputError(f"{error}; expected a point cloud: a .npy array [N, 3] (x, y, z per point), or a text "
                             "file of rows 'x y z'") from error  # fmt: skip


def read_depth_map(source: str | Path | None, image: Image.Image) -> np.ndarray | None:
    """The ground truth ``[H, W]`` in metres (0: not measured) of ``image``, from a ``.npy`` file; None if none."""
    if source is None:
        return None
    path = Path(source)
    try:
        depth = np.load(path)
    except (ValueError, EOFError, OSError) as error:
        raise DemoInputError(f"{path.name} is not readable as a .npy array ({error}); expected the image's ground "
                             "truth depth, [height, width] in metres") from error  # fmt: skip
    if depth.ndim != 2 or depth.shape != (image.height, image.width) or not np.issubdtype(depth.dtype, np.number):
        raise DemoInputError(f"{path.name} holds a {depth.dtype} array of shape {list(depth.shape)}; expected the "
                             f"image's depth in metres, [height, width] = {[image.height, image.width]}")
    return depth.astype(np.float32)


# --- the answers ----------------------------------------------------------------------------------------------
@torch.no_grad()
def classify_cloud(weights: Weights, points: np.ndarray, names: str, choice: str | None, projection: str,
                   shapes_look: bool, normalize: bool, true_class: str = "") -> tuple[dict[str, float], np.ndarray]:
    """Each class's probability for the cloud ``points`` ``[N, 3]`` (normalised into the unit sphere first if
    ``normalize``), from PointCLIP's ``predict_step``, and the picture of the views it projected the cloud to with
    the true (if given) and predicted class."""
    classnames = class_names(names, at_least=2)
    method, attributes = pointclip(weights, choice, projection, shapes_look)
    cloud = torch.from_numpy(normalize_to_unit_sphere(points) if normalize else points).float()[None]
    answer = predict(method, {"points": cloud}, classnames=classnames, **attributes)
    views = method.projected_views(cloud.to(method.device)).float().cpu()
    true_names = [(true_class or "").strip() or NOT_GIVEN]
    picture = drawing.point_cloud_views(views, true_names, answer["predicted_class"], px=96)
    return dict(zip(classnames, answer["probabilities"][0].tolist())), picture


@torch.no_grad()
def estimate_depth(weights: Weights, image: Image.Image, choice: str | None, truth: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, dict, np.ndarray]:  # fmt: skip
    """DepthCLIP's depth in metres ``[H, W]`` of the image's centre square as its CLIP sees it (CLIP's evaluation
    preprocessing at the tower's size), from its ``predict_step``: at that size, or at the ground truth's (cropped
    alike) when given. Returns the picture (image and depth; with ``truth``, DepthSamples' comparison), a summary
    of the depths, and the depth map."""
    method = depthclip(weights, choice)
    side = min(image.size)
    batch = {"image": image_batch(method.model, [image])}
    if truth is not None:
        truth = TF.center_crop(torch.from_numpy(truth)[None], [side, side])[0]
        batch["depth"] = truth[None]
    depth = predict(method, batch)["depth"][0].float().cpu().numpy()
    shown_image = np.asarray(TF.center_crop(image, [side, side]))
    low, high = float(depth.min()), float(depth.max())
    if truth is None:
        picture = drawing.caption_grid([shown_image, drawing.depth_colours(depth, low, high)],
                                       ["image", f"depth: {low:.2f} m (yellow) to {high:.2f} m (blue)"], px=192)
    else:
        picture = drawing.depth_comparison([shown_image], [truth], [depth], px=192)
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
    checkpoints = {method: [c.label for c in weights.checkpoints if c.method == method]
                   for method in ("PointCLIP", "DepthCLIP")}  # fmt: skip

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
            pointclip_choice = gr.Dropdown([ZERO_SHOT_POINTCLIP, *checkpoints["PointCLIP"]], value=ZERO_SHOT_POINTCLIP,
                                           allow_custom_value=True, label="PointCLIP")  # fmt: skip
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
        return classify_cloud(weights, read_cloud(path), names, choice, projection, shapes_look, normalize,
                              true_class)  # fmt: skip

    classify.click(shown(on_classify), [cloud, names, pointclip_choice, projection, shapes_look, normalize, true_class],
                   [probabilities, views], api_name="classify_point_cloud")  # fmt: skip

    gr.Markdown("### Depth: DepthCLIP\nEvery location of the image is compared with \"This object is {word}\" for "
                "seven distance words (giant ... unseen) standing for 1 to 3 m; its depth is the expected distance. "
                "Training-free on the `--pretrained` CLIP (`lit-clip test --config configs/depthclip/shapes.yaml` "
                "measures it), or a checkpoint of its learned projection (`lit-clip fit --config "
                "configs/depthclip/shapes.yaml --model.init_args.reduction=learned`, a ResNet CLIP). The image is "
                "seen as the CLIP sees images: its centre square at the tower's size.")  # fmt: skip
    with gr.Row():
        with gr.Column():
            image = gr.Image(type="filepath", label="image")
            truth = gr.File(file_types=[".npy"], type="filepath",
                            label="ground truth depth, optional (.npy [height, width] in metres, 0: not measured)")
            depthclip_choice = gr.Dropdown([ZERO_SHOT_DEPTHCLIP, *checkpoints["DepthCLIP"]], value=ZERO_SHOT_DEPTHCLIP,
                                           allow_custom_value=True, label="DepthCLIP")  # fmt: skip
            estimate = gr.Button("Estimate depth", variant="primary")
        with gr.Column():
            depth_picture = gr.Image(type="numpy", format="png", label="depth")
            summary = gr.JSON(label="depth range and summary (metres)")
            depth_file = gr.File(label="the depth map (.npy, metres)")
    gr.Examples([[str(scene), str(depth)] for scene, depth in example_depth_scenes(folder)], inputs=[image, truth])

    def on_estimate(path, truth_path, choice, progress=gr.Progress()):
        progress(0.1, desc="estimating depth")
        picture = open_image(path)
        drawn, numbers, depth = estimate_depth(weights, picture, choice, read_depth_map(truth_path, picture))
        written = Path(tempfile.mkdtemp(prefix="lit-clip-depth-")) / f"{Path(path).stem}_depth.npy"
        np.save(written, depth)
        return drawn, numbers, str(written)

    estimate.click(shown(on_estimate), [image, truth, depthclip_choice], [depth_picture, summary, depth_file],
                   api_name="estimate_depth")  # fmt: skip
