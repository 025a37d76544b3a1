"""The vision-language tab: a captioning checkpoint's caption of an image (CLIP-ViL's transformer or ClipCap, through
its ``predict_step``), and a VQA checkpoint's answers to a question about an image (MCAN, through its ``forward``).

Both read the image as ``lit-clip predict`` does for the checkpoint: CLIP's evaluation preprocessing at its data
module's ``image_size``. A question is read as the checkpoint's data module reads its questions (MCAN's tokens, cut
at its ``max_tokens``, words outside the checkpoint's vocabulary as ``<unk>``). The data module is the one the
checkpoint records, rebuilt (its defaults included); where it cannot be rebuilt here, its recorded arguments.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lit_clip import drawing
from lit_clip.datamodules.questions import UNKNOWN, encode_question, question_words
from lit_clip.datamodules.shapesworld.questions import ShapesWorldQuestions, scene_and_question
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import image_batch, image_input, image_size, open_image
from lit_clip.demo.weights import Checkpoint, Weights, predict

if TYPE_CHECKING:
    from lit_clip.methods import MCANVQA

FAMILY = "vl"
CAPTIONERS = ("TransformerCaptioning", "ClipCap")
ANSWERERS = ("MCANVQA",)
MCAN_MAX_TOKENS = 14  # MCAN's cut, the VQA data modules' default, for a checkpoint whose data module says nothing
TOP_ANSWERS = 5
PICTURE_PX = 256


# --- examples -------------------------------------------------------------------------------------------------------
def question_scenes(folder: Path, count: int = 5) -> list[tuple[Path, str, str]]:
    """``question<k>.png``: test sample ``k`` of the default ShapesWorldQuestions (world seed 0), with its question
    and true answer; samples take the question types in turn, so 5 give one of each."""
    world = ShapesWorldQuestions(image_size=examples.EXAMPLE_PX).world
    scenes = []
    for index in range(count):
        scene, question = scene_and_question(world, "test", index)
        path = folder / f"question{index}.png"
        if not path.exists():
            scene.image.save(path)
        scenes.append((path, question.text, question.answer))
    return scenes


# --- checkpoints ----------------------------------------------------------------------------------------------------
def data_setting(weights: Weights, checkpoint: Checkpoint, name: str) -> Any:
    """The checkpoint's data module's setting ``name``: the rebuilt module's (what ``lit-clip predict`` would use,
    defaults included), or the argument the checkpoint records where it cannot be rebuilt here; None if neither."""
    data = weights.data_module(checkpoint)
    return (data.hparams if data is not None else checkpoint.datamodule_hyper_parameters).get(name)


def prepared(weights: Weights, checkpoint: Checkpoint, method: L.LightningModule, image: Image.Image) -> Tensor:
    """``[1, 3, H, W]`` on the method's device: ``image`` as ``lit-clip predict`` prepares it for this checkpoint
    (CLIP's evaluation transform), at its data module's ``image_size`` (a side, or ``[height, width]``; the CLIP's
    own where the data module has none)."""
    size = data_setting(weights, checkpoint, "image_size") or image_size(method.model)
    return image_batch(method.model, [image], size if isinstance(size, int) else tuple(size))


# --- captioning -----------------------------------------------------------------------------------------------------
@contextmanager
def decoding_with(method: L.LightningModule, beams: int):
    """Inside the block the captioner decodes with ``beams`` beams (its ``beam_size``, as ``--model.init_args.
    beam_size`` sets it for ``lit-clip predict``); after it, with its own again, whatever happened. The page runs one
    event at a time (``errors.ONE_AT_A_TIME``), so no other caption sees the borrowed beams."""
    own = method.hparams.beam_size
    method.hparams.beam_size = beams
    try:
        yield
    finally:
        method.hparams.beam_size = own


@torch.no_grad()
def caption(weights: Weights, checkpoint: Checkpoint, method: L.LightningModule, image: Image.Image, beams: int = 0
            ) -> tuple[str, np.ndarray]:  # fmt: skip
    """The captioner's caption of ``image`` (its ``predict_step``) with ``beams`` beams (1: greedy; 0: the
    checkpoint's own ``beam_size``), and the image as the captioner saw it with the caption beneath."""
    if beams is None or beams < 0 or int(beams) != beams:
        raise DemoInputError(f"beams must be a whole number, 0 (the checkpoint's own) or more; got {beams}")
    batch = {"image": prepared(weights, checkpoint, method, image)}
    with decoding_with(method, int(beams) or method.hparams.beam_size):
        # The data module lends the captioner its words, as in `lit-clip predict`: the checkpoint's own.
        (text,) = predict(method, batch, words=method.words)["caption"]
    picture = drawing.caption_grid(drawing.to_uint8_image(batch["image"]), [text or "(an empty caption)"],
                                   px=PICTURE_PX)  # fmt: skip
    return text, picture


# --- VQA ------------------------------------------------------------------------------------------------------------
def read_question(weights: Weights, checkpoint: Checkpoint, method: MCANVQA, question: str | None
                  ) -> tuple[Tensor, list[str]]:  # fmt: skip
    """``[1, max_tokens]`` word ids of the question as the checkpoint's data module encodes it, and the words as the
    model reads them (an unknown word as ``<unk>``)."""
    if not (question or "").strip():
        raise DemoInputError('type a question about the image, e.g. "what color is the star?"')
    if not question_words(question):
        raise DemoInputError(f"the question {question!r} has no words once its punctuation is dropped; type a "
                             "question in words")  # fmt: skip
    vocabulary = method.vocabulary["words"]
    max_tokens = data_setting(weights, checkpoint, "max_tokens") or MCAN_MAX_TOKENS
    ids = encode_question(question, {word: k for k, word in enumerate(vocabulary)}, max_tokens)
    read = [vocabulary[k] for k in ids.tolist() if k != 0]  # 0 pads
    if all(word == UNKNOWN for word in read):
        known = ", ".join(vocabulary[2:8])
        raise DemoInputError(f"none of the words of {question!r} is in the checkpoint's question vocabulary "
                             f"({len(vocabulary) - 2} words: {known}, ...); ask as its training questions ask")
    return ids[None].to(method.device), read


@torch.no_grad()
def answer(weights: Weights, checkpoint: Checkpoint, method: MCANVQA, image: Image.Image, question: str | None
           ) -> tuple[dict[str, float], str, np.ndarray]:  # fmt: skip
    """The :data:`TOP_ANSWERS` best answers with their scores, the sigmoid of MCAN's logits (its binary cross-entropy
    scores each answer on its own: they need not sum to 1); the question as the model read it; and the image as the
    model saw it with the question and the best answer beneath."""
    tokens, read = read_question(weights, checkpoint, method, question)
    pixels = prepared(weights, checkpoint, method, image)
    scores = method(pixels, tokens).float().sigmoid()[0]
    best = scores.topk(min(TOP_ANSWERS, len(scores)))
    answers = {method.vocabulary["answers"][k]: score for k, score in zip(best.indices.tolist(), best.values.tolist())}
    top, score = next(iter(answers.items()))
    picture = drawing.caption_grid(drawing.to_uint8_image(pixels), [f"Q: {question.strip()} A: {top} ({score:.2f})"],
                                   px=PICTURE_PX)  # fmt: skip
    return answers, " ".join(read), picture


# --- the tab --------------------------------------------------------------------------------------------------------
def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    gr.Markdown(
        "**Captioning**: a `TransformerCaptioning` (CLIP-ViL) or `ClipCap` checkpoint writes a caption of the image "
        "through its own `predict_step`, as `lit-clip predict` does. Train one with `lit-clip fit --config "
        "configs/captioning/shapes.yaml` (or `shapes_clipcap.yaml`).\n\n"
        "**VQA**: an `MCANVQA` checkpoint answers a question about the image: its best answers, each scored by the "
        "sigmoid of its logit (MCAN's binary cross-entropy scores every answer on its own, so the scores need not "
        "sum to 1). Train one with `lit-clip fit --config configs/vqa/shapes.yaml`."
    )  # fmt: skip
    captioners, answerers = weights.choices(FAMILY, methods=CAPTIONERS), weights.choices(FAMILY, methods=ANSWERERS)

    gr.Markdown("### Captioning")
    with gr.Row():
        with gr.Column():
            caption_image = image_input("image")
            captioner = gr.Dropdown(captioners, value=captioners[0] if captioners else None, allow_custom_value=True,
                                    label="captioning checkpoint (TransformerCaptioning or ClipCap)")  # fmt: skip
            beams = gr.Slider(0, 10, value=0, step=1, precision=0,
                              label="beams: 0 the checkpoint's own beam_size, 1 greedy, more: beam search")  # fmt: skip
            true_caption = gr.Textbox(label="a true caption (of an example)", interactive=False)
            write = gr.Button("Caption", variant="primary")
        with gr.Column():
            written = gr.Textbox(label="caption")
            caption_picture = gr.Image(type="numpy", format="png", label="the image as the captioner saw it")
    scenes = examples.scene_images(folder)
    gr.Examples([[str(scene.path), scene.caption] for scene in scenes], inputs=[caption_image, true_caption])

    def write_caption(path, choice, beam_count, progress=gr.Progress()):
        image = open_image(path)
        progress(0.1, desc="loading the checkpoint")
        checkpoint, method = weights.load(choice, FAMILY, methods=CAPTIONERS)
        progress(0.5, desc="writing the caption")
        return caption(weights, checkpoint, method, image, beam_count)

    write.click(shown(write_caption), [caption_image, captioner, beams], [written, caption_picture],
                api_name="caption")  # fmt: skip

    gr.Markdown("### Visual question answering")
    with gr.Row():
        with gr.Column():
            question_image = image_input("image")
            answerer = gr.Dropdown(answerers, value=answerers[0] if answerers else None, allow_custom_value=True,
                                   label="VQA checkpoint (MCANVQA)")  # fmt: skip
            question = gr.Textbox(label="question", placeholder="what color is the star?")
            true_answer = gr.Textbox(label="the true answer (of an example)", interactive=False)
            ask = gr.Button("Answer", variant="primary")
        with gr.Column():
            answers = gr.Label(label="best answers (sigmoid scores)", num_top_classes=TOP_ANSWERS)
            read = gr.Textbox(label="the question as the model read it (<unk>: a word it does not know)")
            answer_picture = gr.Image(type="numpy", format="png", label="the image as the model saw it")
    gr.Examples([[str(path), text, truth] for path, text, truth in question_scenes(folder)],
                inputs=[question_image, question, true_answer])  # fmt: skip

    def answer_question(path, choice, text, progress=gr.Progress()):
        image = open_image(path)
        progress(0.1, desc="loading the checkpoint")
        checkpoint, method = weights.load(choice, FAMILY, methods=ANSWERERS)
        progress(0.5, desc="answering")
        return answer(weights, checkpoint, method, image, text)

    ask.click(shown(answer_question), [question_image, answerer, question], [answers, read, answer_picture],
              api_name="answer")  # fmt: skip
