"""The demo page's vision-language tab through Gradio's client: its captions equal the captioners' ``predict_step``
and its answer scores MCAN's ``forward`` in Python, on ShapesWorld scenes and micro checkpoints written by `lit-clip
fit`; bad input is a message on the page."""
import shutil

import lightning as L
import pytest
import torch
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from lit_clip.datamodules.images import load_rgb
from lit_clip.datamodules.questions import encode_question, question_words
from lit_clip.datamodules.shapesworld.questions import ShapesWorldQuestions
from lit_clip.demo import examples, vl
from lit_clip.demo.weights import Checkpoint, Weights, find_checkpoints
from lit_clip.transforms import clip_eval_transform

VL = [("Vision-language", vl)]
CONFIGS = {"TransformerCaptioning": "captioning/shapes.yaml", "ClipCap": "captioning/shapes_clipcap.yaml",
           "MCANVQA": "vqa/shapes.yaml"}  # fmt: skip
IMAGE_SIZE = 32  # the data's image_size among test_cli's stand-ins


@pytest.fixture(scope="module")
def vl_checkpoints(tmp_path_factory, lit_clip_checkpoint):
    """Each method's ``last.ckpt`` of a one-step `lit-clip fit` of its ShapesWorld config (micro stand-ins)."""
    return {method: fit_checkpoint(config, tmp_path_factory.mktemp(method), lit_clip_checkpoint)
            for method, config in CONFIGS.items()}  # fmt: skip


def loaded(path):
    method = L.LightningModule.load_from_checkpoint(path, map_location="cpu").eval()
    assert torch.load(path, weights_only=False)["datamodule_hyper_parameters"]["image_size"] == IMAGE_SIZE
    return method


def pixels(path, size=IMAGE_SIZE):
    """The picture as `lit-clip predict` prepares it: CLIP's evaluation preprocessing at the data's image_size."""
    return clip_eval_transform(size)(load_rgb(path))[None]


def test_captions_on_the_page_equal_predict_step(vl_checkpoints, demo_page, tmp_path, monkeypatch):
    weights = Weights(None, find_checkpoints([vl_checkpoints[m] for m in vl.CAPTIONERS]))
    client = demo_page(weights, VL)
    scenes = examples.scene_images(tmp_path / "examples", count=2)
    for name in vl.CAPTIONERS:
        label, method = f"{name}: {vl_checkpoints[name]}", loaded(vl_checkpoints[name])
        _, on_page = weights.load(label, "vl")  # the very captioner the page decodes with (the page caches it)
        own_beams = on_page.hparams.beam_size  # TransformerCaptioning: 1 (greedy), the ClipCap stand-in: 2
        decoded_with = []  # the page captioner's beam_size at each of its predict_step calls
        page_step = on_page.predict_step
        monkeypatch.setattr(on_page, "predict_step", lambda *args: decoded_with.append(on_page.hparams.beam_size)
                            or page_step(*args))  # fmt: skip
        # 3 beams first: a beam_size the page failed to restore would then decode the checkpoint's own (0) too.
        for beams in (3, 0, 1):
            method.hparams.beam_size = beams or own_beams
            for scene in scenes:
                written, picture = client.predict(handle_file(str(scene.path)), label, beams, api_name="/caption")
                with torch.no_grad():
                    (expected,) = method.predict_step({"image": pixels(scene.path)}, 0)["caption"]
                assert written == expected, (name, beams, scene.path.name)
                assert picture.endswith(".png")
        assert decoded_with == [beams or own_beams for beams in (3, 0, 1) for _ in scenes], name
        assert on_page.hparams.beam_size == own_beams, name


def assert_answers_are(answers, method, scores):
    best = scores.topk(vl.TOP_ANSWERS)
    on_page = {entry["label"]: entry["confidence"] for entry in answers["confidences"]}
    assert answers["label"] == method.vocabulary["answers"][best.indices[0]]
    assert list(on_page) == [method.vocabulary["answers"][k] for k in best.indices]
    torch.testing.assert_close(torch.tensor(list(on_page.values())), best.values, atol=1e-6, rtol=1e-5)


def test_answers_on_the_page_equal_mcan_in_python(vl_checkpoints, demo_page, tmp_path):
    path = vl_checkpoints["MCANVQA"]
    (mcan,) = find_checkpoints([path])
    # Copies of it that record other data-module arguments: a data module rebuilt from its class (ShapesWorldQuestions'
    # default image_size, 64, where none is recorded) or, without its class, the recorded arguments as they are.
    data_class = mcan.datamodule_hyper_parameters["_class_path"]
    variants = {"rebuilt": ({"_class_path": data_class, "max_tokens": 3}, 64, 3),
                "recorded": ({"image_size": 48, "max_tokens": 4}, 48, 4)}  # fmt: skip
    copies = {}
    for name, (arguments, _, _) in variants.items():
        shutil.copy(path, tmp_path / f"{name}.ckpt")
        copies[name] = Checkpoint(tmp_path / f"{name}.ckpt", mcan.hyper_parameters, arguments)
    client = demo_page(Weights(None, [mcan, *copies.values()]), VL)
    method = loaded(path)
    words = {word: k for k, word in enumerate(method.vocabulary["words"])}
    scenes = vl.question_scenes(tmp_path / "examples")
    # The examples are the data module's own test questions, one of each type.
    data = ShapesWorldQuestions(image_size=examples.EXAMPLE_PX)._dataset("test", len(scenes))
    assert [(text, truth) for _, text, truth in scenes] == [(data[k]["question_text"], data[k]["answers_text"])
                                                            for k in range(len(scenes))]  # fmt: skip
    asked = [(image, text) for image, text, _ in scenes] + [(scenes[0][0], "What COLOUR is the hexagon?!")]
    for image, question in asked:
        answers, read, picture = client.predict(handle_file(str(image)), mcan.label, question, api_name="/answer")
        with torch.no_grad():
            scores = method(pixels(image), encode_question(question, words, 14)[None]).sigmoid()[0]
        assert_answers_are(answers, method, scores)
        assert picture.endswith(".png")
    assert read == "what <unk> is the hexagon"  # "colour" is not a ShapesWorld question's word

    image, question, _ = scenes[0]
    for name, (_, size, max_tokens) in variants.items():
        answers, read, _ = client.predict(handle_file(str(image)), copies[name].label, question, api_name="/answer")
        with torch.no_grad():
            scores = method(pixels(image, size), encode_question(question, words, max_tokens)[None]).sigmoid()[0]
        assert_answers_are(answers, method, scores)
        assert read == " ".join(question_words(question)[:max_tokens]), name


def test_bad_input_is_a_message_on_the_page(vl_checkpoints, cli_clip_checkpoint, demo_page, tmp_path):
    weights = Weights(None, find_checkpoints(list(vl_checkpoints.values())), folders=[cli_clip_checkpoint.parent])
    client = demo_page(weights, VL)
    (image, question, _), *_ = vl.question_scenes(tmp_path / "examples")
    mcan, clipcap = f"MCANVQA: {vl_checkpoints['MCANVQA']}", f"ClipCap: {vl_checkpoints['ClipCap']}"
    for text, message in [("", "type a question"), ("?! ...", "no words once its punctuation is dropped"),
                          ("zebra giraffe", "none of the words of 'zebra giraffe' is in the checkpoint's")]:
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(image)), mcan, text, api_name="/answer")
    with pytest.raises(AppError, match="is a CLIPPretraining checkpoint, not one of MCANVQA$"):
        client.predict(handle_file(str(image)), str(cli_clip_checkpoint), question, api_name="/answer")
    with pytest.raises(AppError, match="is a ClipCap checkpoint, not one of MCANVQA$"):
        client.predict(handle_file(str(image)), clipcap, question, api_name="/answer")
    with pytest.raises(AppError, match="is a MCANVQA checkpoint, not one of TransformerCaptioning, ClipCap$"):
        client.predict(handle_file(str(image)), mcan, 0, api_name="/caption")
    with pytest.raises(AppError, match="choose a checkpoint"):
        client.predict(handle_file(str(image)), None, 0, api_name="/caption")
    broken = tmp_path / "broken.png"
    broken.write_bytes(image.read_bytes()[:100])
    with pytest.raises(AppError, match="broken.png.*cannot decode"):
        client.predict(handle_file(str(broken)), clipcap, 0, api_name="/caption")
