"""The detection tab: a ViLD checkpoint finds the class names the user types (open-vocabulary detection); a GLIP
checkpoint grounds class names or the noun phrases of a free sentence (phrase grounding). Each answer is the
method's own: ViLD's inference (its forward over the names' text classifier), GLIP's ``predict_step`` with the
user's prompt, on the image batched as ``lit-clip predict`` batches it for a detector (at its own size)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lit_clip import drawing
from lit_clip.datamodules.predict import DetectionImagesDataset, detection_images_collate
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_input, no_progress, open_image
from lit_clip.demo.weights import Weights, predict
from lit_clip.grounding import sentence_prompt
from lit_clip.methods import GLIP, ViLD

FAMILY = "detection"
NAMES, SENTENCE = "class names", "a sentence (GLIP)"
COLUMNS = ["name", "score", "x1", "y1", "x2", "y2"]


@dataclass
class Detections:
    """What a detector found in one image, best first: the name or phrase each box grounds, its score, its box
    ``[N, 4]`` (x1, y1, x2, y2 in the file's pixels); the image itself, and GLIP's word maps of a sentence."""

    image: np.ndarray
    phrases: list[str]
    scores: Tensor
    boxes: Tensor
    word_maps: np.ndarray | None = None


def detect(weights: Weights, choice: str | None, image_path: str | Path | None, text: str | None, mode: str,
           progress: Callable = no_progress) -> Detections:  # fmt: skip
    """The detections of the chosen checkpoint in the image: of the class names in ``text`` (one per line or
    comma-separated), or, for GLIP with ``mode`` :data:`SENTENCE`, of the noun phrases of the sentence ``text``."""
    if mode not in (NAMES, SENTENCE):
        raise DemoInputError(f"unknown kind of text {mode!r}; expected {NAMES!r} or {SENTENCE!r}")
    prompt = class_names(text) if mode == NAMES else sentence(text)
    image = np.array(open_image(image_path))  # read first: an unreadable file is a message; writable for drawing
    batch = detection_batch(image_path)
    progress(0.1, desc="loading the checkpoint")
    checkpoint, method = weights.load(choice, FAMILY)
    if isinstance(method, ViLD) and mode == SENTENCE:
        raise DemoInputError(f"ViLD detects class names, it grounds no sentence: choose {NAMES!r}, or a GLIP "
                             "checkpoint for a sentence")  # fmt: skip
    progress(0.5, desc="detecting")
    if isinstance(method, ViLD):
        return vild_detections(method, weights.templates(checkpoint, "vild"), batch, prompt, image)
    return glip_detections(method, batch, prompt, image)


def sentence(text: str | None) -> str:
    """The sentence to ground, checked to name something: GLIP grounds its noun phrases."""
    if not (text or "").strip():
        raise DemoInputError("type a sentence to ground, such as 'a red circle left of two blue stars'")
    try:
        sentence_prompt(text)
    except ValueError as error:
        raise DemoInputError(f"{error} (a phrase is adjectives and a noun, such as 'red circle')") from error
    return text.strip()


def detection_batch(image_path: str | Path) -> dict:
    """The image as ``lit-clip predict`` batches it for a detector: normalised at its own size, so that boxes come
    back in the file's pixels."""
    return detection_images_collate([DetectionImagesDataset([Path(image_path)])[0]])


@torch.no_grad()
def vild_detections(method: ViLD, templates: list[str], batch: dict, names: list[str],
                    image: np.ndarray) -> Detections:  # fmt: skip
    """ViLD's inference over ``names``: its text classifier from ``templates``, then its forward."""
    method.set_classes(names, templates)
    on_device = {key: value.to(method.device) if isinstance(value, Tensor) else value for key, value in batch.items()}
    (found,) = method(on_device)
    return ordered(image, [names[k] for k in found["labels"].tolist()], found["scores"], found["boxes"])


def glip_detections(method: GLIP, batch: dict, prompt: list[str] | str, image: np.ndarray) -> Detections:
    """GLIP's ``predict_step`` grounding ``prompt`` (names, or a sentence: then also each word's alignment map)."""
    used = method.hparams.prompt
    method.hparams.prompt = prompt  # what predict_step grounds; the checkpoint's own prompt comes back after
    try:
        rows = predict(method, batch)
    finally:
        method.hparams.prompt = used
    found = ordered(image, rows["phrase"], rows["score"], rows["box"])
    if isinstance(prompt, str):
        found.word_maps = word_maps(method, batch, prompt, image)
    return found


def word_maps(method: GLIP, batch: dict, text: str, image: np.ndarray) -> np.ndarray:
    """GLIP's view of a sentence (:meth:`GLIP.explain`, drawn as the grounding callback draws it): each phrase's
    best box, and which words light up where."""
    grounded = sentence_prompt(text)
    one = {"image": batch["image"].to(method.device), "image_size": batch["image_size"].to(method.device),
           "caption": [grounded.caption], "targets": [{"phrases": grounded.phrases}]}  # fmt: skip
    seen = method.explain(one)
    return drawing.grounding_picture(image, seen["boxes"], seen["phrases"], seen["scores"], seen["token_maps"],
                                     seen["tokens"])  # fmt: skip


def ordered(image: np.ndarray, phrases: list[str], scores: Tensor, boxes: Tensor) -> Detections:
    """Detections sorted best first."""
    order = scores.float().cpu().argsort(descending=True, stable=True)
    return Detections(image, [phrases[i] for i in order.tolist()], scores.float().cpu()[order],
                      boxes.float().cpu().reshape(-1, 4)[order])  # fmt: skip


def shown_above(found: Detections, threshold: float) -> tuple[np.ndarray, pd.DataFrame]:
    """The image with the boxes scored above ``threshold``, each named by what it grounds and its score (the best
    drawn last, on top), and their table (name, score, x1, y1, x2, y2)."""
    if not 0 <= threshold <= 1:
        raise DemoInputError(f"the score threshold must be between 0 and 1, got {threshold}")
    kept = [i for i, score in enumerate(found.scores.tolist()) if score > threshold]
    names = sorted({found.phrases[i] for i in kept})
    drawn = kept[::-1]
    picture = drawing.boxes_with_names(found.image, found.boxes[drawn], [names.index(found.phrases[i]) for i in drawn],
                                       names, found.scores[drawn])  # fmt: skip
    rows = [[found.phrases[i], round(float(found.scores[i]), 4), *(round(c, 2) for c in found.boxes[i].tolist())]
            for i in kept]  # fmt: skip
    return picture, pd.DataFrame(rows, columns=COLUMNS)


def scene_examples(folder: Path) -> list[list[str]]:
    """Each ShapesWorld scene of :func:`examples.scene_images` twice: with its objects' colour-shape names, and
    with its caption to ground."""
    rows = []
    for scene in examples.scene_images(folder):
        rows += [[str(scene.path), ", ".join(scene.names), NAMES], [str(scene.path), scene.caption, SENTENCE]]
    return rows


def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    gr.Markdown(
        "Open-vocabulary detection and phrase grounding. A **ViLD** checkpoint boxes the class names you type, names "
        "it never saw boxed included; a **GLIP** checkpoint grounds class names, or the noun phrases of a sentence "
        "(with a map of where each word lights up). Train one on ShapesWorld with `lit-clip fit --config "
        "configs/glip/shapes.yaml`, or `configs/vild/shapes.yaml` (its header gives the chain: the CLIP, ViLD-text, "
        "the region cache), then start the page with `--checkpoints runs/`."
    )  # fmt: skip
    choices = weights.choices(FAMILY)
    with gr.Row():
        with gr.Column():
            checkpoint = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True,
                                     label="ViLD or GLIP checkpoint (or a checkpoint's path)")  # fmt: skip
            image = image_input("image")
            text = gr.Textbox(label="class names (one per line, or comma-separated), or a sentence", lines=3)
            mode = gr.Radio([NAMES, SENTENCE], value=NAMES, label="the text is")
            threshold = gr.Slider(0, 1, value=0.3, step=0.01, label="score threshold")
            run = gr.Button("Detect", variant="primary")
        with gr.Column():
            picture = gr.Image(type="numpy", format="png", label="detections above the threshold")
            table = gr.Dataframe(headers=COLUMNS, label="boxes (in the image's pixels)")
    # A row of its own: a picture per word of the sentence, wide
    maps = gr.Image(type="numpy", format="png", label="GLIP's grounding of a sentence: each phrase's best box, and "
                    "where each word lights up")  # fmt: skip
    gr.Examples(scene_examples(folder), inputs=[image, text, mode])
    found = gr.State()  # the last detections, redrawn when the threshold moves

    def answer(choice, path, typed, kind, score, progress=gr.Progress()):
        detections = detect(weights, choice, path, typed, kind, progress)
        return *shown_above(detections, score), detections.word_maps, detections

    run.click(shown(answer), [checkpoint, image, text, mode, threshold], [picture, table, maps, found],
              api_name="detect")  # fmt: skip

    def redraw(detections, score):
        return shown_above(detections, score) if detections is not None else (gr.skip(), gr.skip())

    threshold.release(shown(redraw), [found, threshold], [picture, table], api_visibility="private")
