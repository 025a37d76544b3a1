"""The demo page's vision-language tab through Gradio's client: its captions equal the captioners' ``predict_step``
and its answer scores MCAN's ``forward`` in Python, on ShapesWorld scenes and micro checkpoints written by `lit-clip
fit`; bad input is a message on the page."""
import lightning as L
import pytest
import torch
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from lit_clip.datamodules.images import load_rgb
from lit_clip.datamodules.questions import encode_question
from lit_clip.datamodules.shapesworld.questions import ShapesWorldQuestions
from lit_clip.demo import examples, vl
from lit_clip.demo.weights import Weights, find_checkpoints
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


def pixels(path):
    """The picture as `lit-clip predict` prepares it: CLIP's evaluation preprocessing at the data's image_size."""
    return clip_eval_transform(IMAGE_SIZE)(load_rgb(path))[None]


def test_captions_on_the_page_equal_predict_step(vl_checkpoints, demo_page, tmp_path):
    client = demo_page(Weights(None, find_checkpoints([vl_checkpoints[m] for m in vl.CAPTIONERS])), VL)
    scenes = examples.scene_images(tmp_path / "examples", count=2)
    for name in vl.CAPTIONERS:
        method = loaded(vl_checkpoints[name])
        own_beams = method.hparams.beam_size  # TransformerCaptioning: 1 (greedy), the ClipCap stand-in: 2
        for beams in (0, 1, 3):
            method.hparams.beam_size = beams or own_beams
            for path, _ in scenes:
                written, picture = client.predict(handle_file(str(path)), f"{name}: {vl_checkpoints[name]}", beams,
                                                  api_name="/caption")  # fmt: skip
                with torch.no_grad():
                    (expected,) = method.predict_step({"image": pixels(path)}, 0)["caption"]
                assert written == expected, (name, beams, path.name)
                assert picture.endswith(".png")


def test_answers_on_the_page_equal_mcan_in_python(vl_checkpoints, demo_page, tmp_path):
    path = vl_checkpoints["MCANVQA"]
    client = demo_page(Weights(None, find_checkpoints([path])), VL)
    method = loaded(path)
    words = {word: k for k, word in enumerate(method.vocabulary["words"])}
    scenes = vl.question_scenes(tmp_path / "examples")
    # The examples are the data module's own test questions, one of each type.
    data = ShapesWorldQuestions(image_size=examples.EXAMPLE_PX)._dataset("test", len(scenes))
    assert [(text, truth) for _, text, truth in scenes] == [(data[k]["question_text"], data[k]["answers_text"])
                                                            for k in range(len(scenes))]  # fmt: skip
    asked = [(image, text) for image, text, _ in scenes] + [(scenes[0][0], "What COLOUR is the hexagon?!")]
    for image, question in asked:
        answers, read, picture = client.predict(handle_file(str(image)), f"MCANVQA: {path}", question,
                                                api_name="/answer")  # fmt: skip
        with torch.no_grad():
            scores = method(pixels(image), encode_question(question, words, 14)[None]).sigmoid()[0]
        best = scores.topk(vl.TOP_ANSWERS)
        on_page = {entry["label"]: entry["confidence"] for entry in answers["confidences"]}
        assert answers["label"] == method.vocabulary["answers"][best.indices[0]]
        assert list(on_page) == [method.vocabulary["answers"][k] for k in best.indices]
        torch.testing.assert_close(torch.tensor(list(on_page.values())), best.values, atol=1e-6, rtol=1e-5)
        assert picture.endswith(".png")
    assert read == "what <unk> is the hexagon"  # "colour" is not a ShapesWorld question's word


def test_bad_input_is_a_message_on_the_page(vl_checkpoints, cli_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(None, find_checkpoints(list(vl_checkpoints.values()))), VL)
    (image, question, _), *_ = vl.question_scenes(tmp_path / "examples")
    mcan, clipcap = f"MCANVQA: {vl_checkpoints['MCANVQA']}", f"ClipCap: {vl_checkpoints['ClipCap']}"
    for text, message in [("", "type a question"), ("?! ...", "no words once its punctuation is dropped"),
                          ("zebra giraffe", "none of the words of 'zebra giraffe' is in the checkpoint's")]:
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(image)), mcan, text, api_name="/answer")
    with pytest.raises(AppError, match="CLIPPretraining checkpoint, not one of this tab's methods"):
        client.predict(handle_file(str(image)), str(cli_clip_checkpoint), question, api_name="/answer")
    with pytest.raises(AppError, match="ClipCap checkpoint; question answering needs a checkpoint of MCANVQA"):
        client.predict(handle_file(str(image)), clipcap, question, api_name="/answer")
    with pytest.raises(AppError, match="MCANVQA checkpoint; captioning needs a checkpoint of TransformerCaptioning"):
        client.predict(handle_file(str(image)), mcan, 0, api_name="/caption")
    with pytest.raises(AppError, match="choose a checkpoint"):
        client.predict(handle_file(str(image)), None, 0, api_name="/caption")
    broken = tmp_path / "broken.png"
    broken.write_bytes(image.read_bytes()[:100])
    with pytest.raises(AppError, match="broken.png.*cannot decode"):
        client.predict(handle_file(str(broken)), clipcap, 0, api_name="/caption")
