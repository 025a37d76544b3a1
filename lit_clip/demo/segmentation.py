"""The segmentation tab: every pixel of an image labelled with one of the names the user types, by MaskCLIP's dense
zero-shot CLIP features (the page's CLIP, no training), an LSeg checkpoint, or a GroupViT whose groups are named by
text (a GroupViTPretraining checkpoint, segmented by GroupViTSegmentation): the labels painted over the image with a
legend, each label's share of the pixels, the label map itself, and for GroupViT the groups of both its stages."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lit_clip import drawing
from lit_clip.datamodules.shapesworld import ShapesWorld
from lit_clip.datamodules.shapesworld.segmentation import BACKGROUND, SEGMENTATION_TEMPLATES
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_batch, image_size, open_image
from lit_clip.demo.weights import Checkpoint, Weights, predict
from lit_clip.methods import GroupViTSegmentation, ZeroShotSegmentation
from lit_clip.methods.segmentation.segmenter import CLIPSegmenter
from lit_clip.templates import resolve_templates

FAMILY = "segmentation"
ZERO_SHOT = "MaskCLIP: zero-shot, with the page's CLIP"
CHECKPOINT = "the checkpoint below: LSeg or GroupViT"
# The threshold of GroupViT's paper (configs/groupvit/shapes_segmentation.yaml's "paper").
DEFAULT_THRESHOLD = 0.9
EXAMPLE_SCENES = 3


@dataclass
class Segmenter:
    """A segmentation method ready to answer, with what its data module would give it."""

    method: CLIPSegmenter
    templates: list[str]  # the prompt templates its labels are embedded in
    image_size: int  # the side of the images it segments


class Segmenters:
    """The tab's methods, each built or loaded once, on first use: MaskCLIP on the page's CLIP, GroupViTSegmentation
    on a GroupViTPretraining checkpoint, the segmentation checkpoints themselves (LSeg)."""

    def __init__(self, weights: Weights):
        self.weights = weights
        self._ready: dict[str | Path, Segmenter] = {}

    def get(self, method: str, choice: str | None) -> Segmenter:
        """The segmenter of the method radio's ``method`` (:data:`ZERO_SHOT` or :data:`CHECKPOINT`, then the
        drop-down's ``choice``)."""
        if method == ZERO_SHOT:
            if ZERO_SHOT not in self._ready:
                self._ready[ZERO_SHOT] = self._zero_shot()
            return self._ready[ZERO_SHOT]
        if method != CHECKPOINT:
            raise DemoInputError(f"unknown method {method!r}; expected {ZERO_SHOT!r} or {CHECKPOINT!r}")
        checkpoint = self.weights.checkpoint(choice, FAMILY)
        if checkpoint.path not in self._ready:
            self._ready[checkpoint.path] = self._of_checkpoint(checkpoint)
        return self._ready[checkpoint.path]

    def _zero_shot(self) -> Segmenter:
        if self.weights.pretrained is None:
            raise DemoInputError("MaskCLIP segments with the page's CLIP: start the page with `lit-clip demo "
                                 "--pretrained <checkpoint file, model folder or hub id>`, or choose a "
                                 "checkpoint")  # fmt: skip
        method = ZeroShotSegmentation(self.weights.pretrained).eval().to(self.weights.device)
        return Segmenter(method, list(SEGMENTATION_TEMPLATES), image_size(method.model))

    def _of_checkpoint(self, checkpoint: Checkpoint) -> Segmenter:
        if checkpoint.method == "GroupViTPretraining":  # segmented as configs/groupvit/shapes_segmentation.yaml does
            method = GroupViTSegmentation(str(checkpoint.path)).eval().to(self.weights.device)
            return Segmenter(method, list(SEGMENTATION_TEMPLATES), image_size(method.model))
        # A segmenter's own checkpoint: the templates and image size of the data module it was trained with.
        method, recorded = self.weights.method(checkpoint), checkpoint.datamodule_hyper_parameters
        size = recorded.get("image_size")
        templates = resolve_templates(recorded.get("templates", SEGMENTATION_TEMPLATES))
        return Segmenter(method, templates, size if isinstance(size, int) else image_size(method.model))


def label_set(names: str, background: str | None) -> list[str]:
    """The typed labels, ``background`` first unless typed or None; at least one label is not ``background``."""
    labels = class_names(names)
    if background is not None and background not in labels:
        labels = [background, *labels]
    if all(label == background for label in labels):
        raise DemoInputError(f"type at least one label besides {background!r}")
    return labels


def use_background_threshold(method: CLIPSegmenter, threshold: float) -> None:
    """The background rule of the methods that have one: below ``threshold`` a pixel is background. GroupViT never
    reads the text "background"; MaskCLIP with 0 lets it compete by its text (its default); LSeg learnt its
    background label as text and has no threshold."""
    if isinstance(method, GroupViTSegmentation):
        method.background_threshold = threshold
    elif isinstance(method, ZeroShotSegmentation):
        method.background_threshold = threshold or None


@torch.no_grad()
def segment(segmenter: Segmenter, image: Image.Image, names: str, background: bool, threshold: float,
            ) -> tuple[np.ndarray, list[list], np.ndarray | None, dict]:  # fmt: skip
    """The method's labels of the image's pixels through its ``predict_step``: the overlay with a legend, each
    label's pixels and share, GroupViT's groups stage by stage (None for the other methods), and the label map
    (``{"labels", "mask"}``: per pixel of the segmented image, an index into the labels)."""
    method = segmenter.method
    labels = label_set(names, method.hparams.get("background_label", BACKGROUND) if background else None)
    use_background_threshold(method, threshold)
    images = image_batch(method.model, [image], segmenter.image_size)
    mask = predict(method, {"image": images}, classnames=labels, templates=segmenter.templates)["masks"][0].cpu()
    picture = drawing.to_uint8_image(images[0])
    counts = torch.bincount(mask.flatten(), minlength=len(labels))
    shares = [[label, int(count), round(int(count) / mask.numel(), 4)] for label, count in zip(labels, counts)]
    groups = group_picture(method.model, images, picture) if hasattr(method.model, "encode_groups") else None
    label_map = {"labels": labels, "mask": mask.tolist()}
    return drawing.segmentation_overlay(picture, mask, labels), shares, groups, label_map


def group_picture(model: torch.nn.Module, images: Tensor, picture: np.ndarray) -> np.ndarray:
    """GroupViT's groups of every stage over the segmented image, as the GroupMaps callback draws them."""
    return drawing.group_stages([picture], model.encode_groups(images).maps(size=images.shape[-2:]))


def labelled_scenes(folder: Path) -> list[tuple[Path, list[str]]]:
    """``segmentation-scene<k>.png``: ShapesWorld test scenes of 2-3 objects, each with its objects' colour-shape
    names (the labels a ShapesWorld model knows)."""
    world = ShapesWorld(image_size=examples.EXAMPLE_PX, min_objects=2, max_objects=3)
    scenes = []
    for index in range(EXAMPLE_SCENES):
        scene, path = world.scene("test", index), folder / f"segmentation-scene{index}.png"
        if not path.exists():
            scene.image.save(path)
        scenes.append((path, list(dict.fromkeys(obj.name for obj in scene.objects))))
    return scenes


def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    segmenters, choices = Segmenters(weights), weights.choices(FAMILY)
    gr.Markdown(
        "Labels every pixel with one of the labels you type. **MaskCLIP** needs no training: it reads the page's "
        "CLIP densely. An **LSeg** checkpoint comes from `lit-clip fit --config configs/lseg/shapes.yaml`; a "
        "**GroupViT** from `lit-clip fit --config configs/groupvit/shapes.yaml`, its groups named by text as "
        "`configs/groupvit/shapes_segmentation.yaml` does. Start the page with `--checkpoints runs/` to list them."
    )
    with gr.Row():
        with gr.Column():
            image = gr.Image(type="filepath", label="image")
            names = gr.Textbox(label="labels (one per line, or comma-separated)", lines=3)
            method = gr.Radio([ZERO_SHOT, CHECKPOINT], value=CHECKPOINT if choices else ZERO_SHOT, label="method")
            checkpoint = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True,
                                     label="checkpoint (LSeg, GroupViT)")  # fmt: skip
            background = gr.Checkbox(True, label=f'add the label "{BACKGROUND}"')
            threshold = gr.Slider(0, 1, DEFAULT_THRESHOLD, step=0.05, label="background threshold",
                                  info="MaskCLIP and GroupViT: a pixel whose best label is less probable is "
                                  'background (MaskCLIP at 0: "background" competes by its text). LSeg learnt its '
                                  "own.")  # fmt: skip
            run = gr.Button("Segment", variant="primary")
        with gr.Column():
            overlay = gr.Image(type="numpy", format="png", label="labels")
            shares = gr.Dataframe(headers=["label", "pixels", "share"], label="each label's share of the pixels")
            groups = gr.Image(type="numpy", format="png", label="GroupViT's groups, stage by stage")
            with gr.Accordion("label map", open=False):
                label_map = gr.JSON(label="labels, and each pixel's label index")
    gr.Examples([[str(path), ", ".join(labels)] for path, labels in labelled_scenes(folder)], inputs=[image, names])

    def answer(path, text, chosen_method, choice, with_background, background_threshold, progress=gr.Progress()):
        picture = open_image(path)
        progress(0.1, desc="loading the method (on first use)")
        segmenter = segmenters.get(chosen_method, choice)
        progress(0.5, desc="segmenting")
        return segment(segmenter, picture, text, with_background, background_threshold)

    run.click(shown(answer), [image, names, method, checkpoint, background, threshold],
              [overlay, shares, groups, label_map], api_name="segment")  # fmt: skip
