"""The zero-shot tab: CLIP's classification of an image over class names the user types, and retrieval between
images and typed queries (the CLIP paper's similarity figure)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lit_clip import drawing
from lit_clip.datamodules.shapesworld import SHAPES_TEMPLATES
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_batch, image_input, lines, open_image
from lit_clip.demo.weights import Weights
from lit_clip.templates import OPENAI_IMAGENET_TEMPLATES
from lit_clip.tokenizer import tokenize
from lit_clip.zeroshot import build_zeroshot_classifier, scaled_cosine_logits

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "a photo of a {}.": ("a photo of a {}.",),
    "ShapesWorld's 5 templates": SHAPES_TEMPLATES,
    "OpenAI's 80 ImageNet templates": OPENAI_IMAGENET_TEMPLATES,
    "the bare name": ("{}",),
}


@torch.no_grad()
def classify(weights: Weights, image: Image.Image, names: str, templates: str) -> dict[str, float]:
    """Each class's probability: ``softmax(100 * image . class)`` against zero-shot CLIP's classifier of the class
    names (one per line, or comma-separated) in the templates of ``templates`` (a :data:`TEMPLATE_SETS` key)."""
    clip, classnames = weights.clip(), class_names(names, at_least=2)
    if templates not in TEMPLATE_SETS:
        raise DemoInputError(f"unknown template set {templates!r}; expected one of {list(TEMPLATE_SETS)}")
    classifier = build_zeroshot_classifier(clip, classnames, TEMPLATE_SETS[templates])
    features = F.normalize(clip.encode_image(image_batch(clip, [image])).float(), dim=-1)
    probabilities = scaled_cosine_logits(100.0, features, classifier).softmax(dim=-1)[0]
    return dict(zip(classnames, probabilities.tolist()))


@torch.no_grad()
def retrieve(weights: Weights, images: Sequence[Image.Image], queries: str) -> tuple[np.ndarray, list[list]]:
    """The cosine similarity of every image and query (one per line) as the CLIP paper draws it, and each query's
    images ranked best first (query, rank, image number from 1, similarity)."""
    clip, texts = weights.clip(), lines(queries, "queries")
    if not images:
        raise DemoInputError("give at least one image to search")
    image_features = F.normalize(clip.encode_image(image_batch(clip, images)).float(), dim=-1)
    tokens = tokenize(texts, context_length=clip.context_length).to(image_features.device)
    text_features = F.normalize(clip.encode_text(tokens).float(), dim=-1)
    similarity = image_features @ text_features.T
    pictures = [np.asarray(image.convert("RGB")) for image in images]
    figure = drawing.similarity_figure(pictures, texts, similarity.cpu().numpy())
    ranking = [
        [query, rank + 1, index + 1, round(score, 4)]
        for query, column in zip(texts, similarity.T.tolist())
        for rank, (index, score) in enumerate(sorted(enumerate(column), key=lambda pair: -pair[1]))
    ]
    return figure, ranking


def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    singles, scenes = examples.single_object_images(folder), examples.scene_images(folder)
    with gr.Row():
        with gr.Column():
            image = image_input("image")
            names = gr.Textbox(label="class names (one per line, or comma-separated)", lines=3)
            templates = gr.Dropdown(list(TEMPLATE_SETS), value="ShapesWorld's 5 templates", label="prompt templates")
            run = gr.Button("Classify", variant="primary")
        probabilities = gr.Label(label="probabilities", num_top_classes=10)
    shapes = ", ".join(examples.SINGLE_OBJECTS)
    gr.Examples([[str(path), shapes] for path in singles], inputs=[image, names])
    def classify_upload(path, names_text, template_set):
        return classify(weights, open_image(path), names_text, template_set)

    run.click(shown(classify_upload), [image, names, templates], probabilities, api_name="classify")

    gr.Markdown("### Retrieval: images against text queries")
    with gr.Row():
        with gr.Column():
            gallery = gr.File(file_count="multiple", file_types=["image"], label="images")
            queries = gr.Textbox(label="queries (one per line)", lines=3)
            search = gr.Button("Compare", variant="primary")
        with gr.Column():
            figure = gr.Image(label="cosine similarity", type="numpy", format="png")
            ranking = gr.Dataframe(headers=["query", "rank", "image", "similarity"], label="ranking")
    gr.Examples([[[str(scene.path) for scene in scenes], "\n".join(scene.caption for scene in scenes)]],
                inputs=[gallery, queries])  # fmt: skip

    def compare(files, queries_text):
        return retrieve(weights, [open_image(file) for file in files or []], queries_text)

    search.click(shown(compare), [gallery, queries], [figure, ranking], api_name="retrieve")
