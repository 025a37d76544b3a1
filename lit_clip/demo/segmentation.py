"""The segmentation tab: every pixel of an image labelled with one of the names the user types, by MaskCLIP's dense
zero-shot CLIP features (the page's CLIP, no training), an LSeg checkpoint, or a GroupViT whose groups are named by
text (a GroupViTPretraining checkpoint, segmented by GroupViTSegmentation): the labels painted over the image with a
legend, each label's share of the pixels, the label map itself, and for GroupViT the groups of both its stages."""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import gradio as gr
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lit_clip import drawing
from lit_clip.datamodules.shapesworld.segmentation import BACKGROUND, SEGMENTATION_TEMPLATES
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_input, image_size, open_image
from lit_clip.demo.weights import Checkpoint, Weights, predict
from lit_clip.methods import GroupViTSegmentation, ZeroShotSegmentation
from lit_clip.methods.segmentation.groupvit_segmentation import BACKGROUND_THRESHOLDS
from lit_clip.methods.segmentation.segmenter import CLIPSegmenter
from lit_clip.transforms import clip_eval_transform, to_normalized_tensor

FAMILY = "segmentation"
ZERO_SHOT = "MaskCLIP: zero-shot, with the page's CLIP"
CHECKPOINT = "the checkpoint below: LSeg or GroupViT"
# A GroupViTPretraining checkpoint segments as configs/groupvit/shapes_segmentation.yaml has it: the paper's 0.9.
GROUPVIT_THRESHOLD = "paper"
THRESHOLDED = (GroupViTSegmentation, ZeroShotSegmentation)  # the methods with a background threshold


@dataclass
class Segmenter:
    """A segmentation method ready to answer, with what its data module would give it."""

    method: CLIPSegmenter
    templates: list[str]  # the prompt templates its labels are embedded in
    prepare: Callable[[Image.Image], Tensor]  # an image as its data module's evaluation (and predict) gives it


class Segmenters:
    """The tab's methods: MaskCLIP on the page's CLIP and GroupViTSegmentation on a GroupViTPretraining checkpoint,
    each built once, on first use; the segmentation checkpoints themselves (LSeg) as the page's weights load them."""

    def __init__(self, weights: Weights):
        self.weights = weights
        self._built: dict[object, Segmenter] = {}

    def get(self, method: str, choice: str | None) -> Segmenter:
        """The segmenter of the method radio's ``method`` (:data:`ZERO_SHOT` or :data:`CHECKPOINT`, then the
        drop-down's ``choice``)."""
        if method == ZERO_SHOT:
            if ZERO_SHOT not in self._built:
                self._built[ZERO_SHOT] = self._zero_shot()
            return self._built[ZERO_SHOT]
        if method != CHECKPOINT:
            raise DemoInputError(f"unknown method {method!r}; expected {ZERO_SHOT!r} or {CHECKPOINT!r}")
        checkpoint = self.weights.checkpoint(choice, FAMILY)
        if checkpoint.method != "GroupViTPretraining":
            return self._of_checkpoint(checkpoint)
        path = checkpoint.path.resolve()
        version = (path, path.stat().st_mtime_ns)  # built again when the file changes (a run still training)
        if version not in self._built:
            self._built[version] = self._groupvit(checkpoint)
        return self._built[version]

    def _zero_shot(self) -> Segmenter:
        """As configs/zeroshot_segmentation/shapes.yaml: its ShapesWorld scenes at the CLIP's size, which ``lit-clip
        predict`` gives CLIP's evaluation preprocessing (a centre square)."""
        if self.weights.pretrained is None:
            raise DemoInputError("MaskCLIP segments with the page's CLIP: start the page with `lit-clip demo "
                                 "--pretrained <checkpoint file, model folder or hub id>`, or choose a "
                                 "checkpoint")  # fmt: skip
        with self.weights.clip_shared():
            method = ZeroShotSegmentation(self.weights.pretrained).eval().to(self.weights.device)
        return Segmenter(method, list(SEGMENTATION_TEMPLATES), clip_eval_transform(image_size(method.model)))

    def _groupvit(self, checkpoint: Checkpoint) -> Segmenter:
        """As configs/groupvit/shapes_segmentation.yaml: ShapesWorld scenes at the GroupViT's size."""
        try:
            method = GroupViTSegmentation(str(checkpoint.path), background_threshold=GROUPVIT_THRESHOLD)
        except Exception as error:  # the header read, the weights did not: say which file and why
            raise DemoInputError(f"{checkpoint.path} (GroupViTPretraining) could not be loaded as a GroupViT: "
                                 f"{type(error).__name__}: {error}") from error  # fmt: skip
        method = method.eval().to(self.weights.device)
        return Segmenter(method, list(SEGMENTATION_TEMPLATES), clip_eval_transform(image_size(method.model)))

    def _of_checkpoint(self, checkpoint: Checkpoint) -> Segmenter:
        """A segmenter's own checkpoint with the templates and images of the data module it was trained with: the
        module rebuilt, or, where its data set is not here to rebuild it, the arguments it recorded."""
        method, data_module = self.weights.method(checkpoint), self.weights.data_module(checkpoint)
        recorded = data_module.hparams if data_module is not None else checkpoint.datamodule_hyper_parameters
        templates = self.weights.templates(checkpoint, SEGMENTATION_TEMPLATES)
        return Segmenter(method, templates, evaluation_transform(recorded.get("image_size")))


def evaluation_transform(size: int | list[int] | None) -> Callable[[Image.Image], Tensor]:
    """An image as a data module of ``image_size`` ``size`` gives it to ``lit-clip predict``: CLIP's evaluation
    preprocessing (a side: the short side resized and a centre square; ``[h, w]``: resized to exactly that), or,
    with no size (the real data sets' SegmentationDataModule), at the image's own resolution and aspect (LSeg and
    GroupViT slide windows over large images)."""
    if size is None:
        return to_normalized_tensor
    return clip_eval_transform(size if isinstance(size, int) else tuple(size))


def label_set(names: str, background: str | None) -> list[str]:
    """The typed labels, ``background`` first unless typed or None; at least one label is not ``background``."""
    labels = class_names(names)
    if background is not None and background not in labels:
        labels = [background, *labels]
    if all(label == background for label in labels):
        raise DemoInputError(f"type at least one label besides {background!r}")
    return labels


def slider_threshold(threshold: float | str | None) -> float:
    """A method's background threshold on the slider: GroupViT's named ones as numbers, None (no threshold) as 0."""
    return float(BACKGROUND_THRESHOLDS.get(threshold, threshold) if isinstance(threshold, str) else threshold or 0)


def default_threshold(weights: Weights, method: str, choice: str | None, current: float) -> float:
    """The background threshold the chosen method segments with by default, for the slider: MaskCLIP's default,
    a checkpoint's own, GroupViT's paper's for a GroupViTPretraining checkpoint; ``current`` for a method without
    one (LSeg) or a checkpoint that cannot be read (the Segment button says why)."""
    if method == ZERO_SHOT:
        return slider_threshold(inspect.signature(ZeroShotSegmentation).parameters["background_threshold"].default)
    try:
        checkpoint = weights.checkpoint(choice, FAMILY)
    except DemoInputError:
        return current
    if checkpoint.method == "GroupViTPretraining":
        return slider_threshold(GROUPVIT_THRESHOLD)
    if "background_threshold" not in checkpoint.hyper_parameters:
        return current
    return slider_threshold(checkpoint.hyper_parameters["background_threshold"])


@contextlib.contextmanager
def using_threshold(method: CLIPSegmenter, threshold: float) -> Iterator[None]:
    """The background rule of the methods that have one, for one answer: below ``threshold`` a pixel is background
    (MaskCLIP at 0: "background" competes by its text); then the method's own threshold again, since the method
    is kept for the next answer. LSeg learnt its background label as text and has no threshold."""
    if not isinstance(method, THRESHOLDED):
        yield
        return
    own = method.background_threshold
    method.background_threshold = threshold if isinstance(method, GroupViTSegmentation) else threshold or None
    try:
        yield
    finally:
        method.background_threshold = own


@torch.no_grad()
def segment(segmenter: Segmenter, image: Image.Image, names: str, background: bool, threshold: float,
            ) -> tuple[np.ndarray, list[list], np.ndarray | None, dict]:  # fmt: skip
    """The method's labels of the image's pixels through its ``predict_step``: the overlay with a legend, each
    label's pixels and share, GroupViT's groups stage by stage (None for the other methods), and the label map
    (``{"labels", "mask"}``: per pixel of the segmented image, an index into the labels)."""
    method = segmenter.method
    labels = label_set(names, method.hparams.get("background_label", BACKGROUND) if background else None)
    images = segmenter.prepare(image)[None].to(method.device)
    with using_threshold(method, threshold):
        prediction = predict(method, {"image": images}, classnames=labels, templates=segmenter.templates)
    mask, picture = prediction["masks"][0].cpu(), drawing.to_uint8_image(images[0])
    counts = torch.bincount(mask.flatten(), minlength=len(labels))
    shares = [[label, int(count), round(int(count) / mask.numel(), 4)] for label, count in zip(labels, counts)]
    groups = group_picture(method.model, images, picture) if hasattr(method.model, "encode_groups") else None
    label_map = {"labels": labels, "mask": mask.tolist()}
    return drawing.segmentation_overlay(picture, mask, labels), shares, groups, label_map


def group_picture(model: torch.nn.Module, images: Tensor, picture: np.ndarray) -> np.ndarray:
    """GroupViT's groups of every stage over the segmented image, as the GroupMaps callback draws them."""
    return drawing.group_stages([picture], model.encode_groups(images).maps(size=images.shape[-2:]))


def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    segmenters, choices = Segmenters(weights), weights.choices(FAMILY)
    gr.Markdown(
        "Labels every pixel with one of the labels you type. **MaskCLIP** needs no training: it reads the page's "
        "CLIP densely. An **LSeg** checkpoint comes from `lit-clip fit --config configs/lseg/shapes.yaml`; a "
        "**GroupViT** from `lit-clip fit --config configs/groupvit/shapes.yaml`, its groups named by text as "
        "`configs/groupvit/shapes_segmentation.yaml` does. Start the page with `--checkpoints runs/` to list them."
    )
    initial_method = CHECKPOINT if choices else ZERO_SHOT
    initial_choice = choices[0] if choices else None
    with gr.Row():
        with gr.Column():
            image = image_input("image")
            names = gr.Textbox(label="labels (one per line, or comma-separated)", lines=3)
            method = gr.Radio([ZERO_SHOT, CHECKPOINT], value=initial_method, label="method")
            checkpoint = gr.Dropdown(choices, value=initial_choice, allow_custom_value=True,
                                     label="checkpoint (LSeg, GroupViT)")  # fmt: skip
            background = gr.Checkbox(True, label=f'add the label "{BACKGROUND}"')
            threshold = gr.Slider(0, 1, default_threshold(weights, initial_method, initial_choice, 0.0), step=0.05,
                                  label="background threshold",
                                  info="MaskCLIP and GroupViT: a pixel whose best label is less probable is "
                                  'background (MaskCLIP at 0: "background" competes by its text); set to the '
                                  "method's own when the method changes. LSeg learnt its own.")  # fmt: skip
            run = gr.Button("Segment", variant="primary")
        with gr.Column():
            overlay = gr.Image(type="numpy", format="png", label="labels")
            shares = gr.Dataframe(headers=["label", "pixels", "share"], label="each label's share of the pixels")
            groups = gr.Image(type="numpy", format="png", label="GroupViT's groups, stage by stage")
            with gr.Accordion("label map", open=False):
                label_map = gr.JSON(label="labels, and each pixel's label index")
    scenes = examples.scene_images(folder)
    gr.Examples([[str(scene.path), ", ".join(scene.names)] for scene in scenes], inputs=[image, names])

    def answer(path, text, chosen_method, choice, with_background, threshold_value, progress=gr.Progress()):
        picture = open_image(path)
        progress(0.1, desc="loading the method (on first use)")
        segmenter = segmenters.get(chosen_method, choice)
        progress(0.5, desc="segmenting")
        return segment(segmenter, picture, text, with_background, threshold_value)

    run.click(shown(answer), [image, names, method, checkpoint, background, threshold],
              [overlay, shares, groups, label_map], api_name="segment")  # fmt: skip

    def method_threshold(chosen_method, choice, current):
        return default_threshold(weights, chosen_method, choice, current)

    gr.on([method.change, checkpoint.change], shown(method_threshold), [method, checkpoint, threshold], threshold,
          api_name="background_threshold", api_visibility="undocumented")  # fmt: skip
