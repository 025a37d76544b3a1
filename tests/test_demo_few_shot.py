"""The demo page's few-shot tab through Gradio's client answers as the checkpoint's method does in Python: CoOp over
its data module's classes and over typed names, Tip-Adapter-F as `lit-clip predict` runs it with its data module (which
searches its alpha and beta first), and, its data files gone, over its cache's classes with the prompt template its
data module would use; a method tied to its classes refuses typed names; bad input is a message."""
import lightning as L
import numpy as np
import pytest
import torch
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from lit_clip.datamodules import ShapesWorldFewShot
from lit_clip.datamodules.images import load_rgb
from lit_clip.datamodules.shapesworld import class_names
from lit_clip.demo import examples, few_shot
from lit_clip.demo.weights import Weights, find_checkpoints
from lit_clip.methods import CoOp, TipAdapterF
from lit_clip.templates import COOP_TEMPLATES
from lit_clip.transforms import clip_eval_transform

FEW_SHOT = [("Few-shot", few_shot)]
# ShapesWorld's 64 classes at the stand-in CLIP's 32 px, one shot and two validation images a class.
SMALL_DATA = ("--data.init_args.image_size=32", "--data.init_args.shots=1", "--data.init_args.pool_per_class=2",
              "--data.init_args.test_per_class=1")  # fmt: skip


@pytest.fixture(scope="module")
def coop_checkpoint(tmp_path_factory, lit_clip_checkpoint):
    return fit_checkpoint("coop/shapes.yaml", tmp_path_factory.mktemp("coop"), lit_clip_checkpoint, *SMALL_DATA)


@pytest.fixture(scope="module")
def tip_adapter_f_checkpoint(tmp_path_factory, lit_clip_checkpoint):
    """Fitted one step without validation: its alpha and beta are still to be searched."""
    return fit_checkpoint("tip_adapter_f/shapes.yaml", tmp_path_factory.mktemp("tip"), lit_clip_checkpoint, *SMALL_DATA)


def page_of(demo_page, *checkpoints, folders=()):
    """The client of a page with the few-shot tab over ``checkpoints`` (and the checkpoints typed from ``folders``),
    and their drop-down labels."""
    weights = Weights(None, find_checkpoints(checkpoints), folders=folders)
    return demo_page(weights, FEW_SHOT), weights.choices(few_shot.FAMILY)


def assert_top_classes(answer: dict, expected: torch.Tensor, names: list[str]) -> None:
    """The Label's classes are the most probable ones, each with the probability of ``expected``."""
    shown = {entry["label"]: entry["confidence"] for entry in answer["confidences"]}
    assert len(shown) == min(few_shot.SHOWN_CLASSES, len(names))
    probability = dict(zip(names, expected.tolist()))
    assert list(shown.values()) == pytest.approx([probability[name] for name in shown], abs=1e-5)
    left_out = sorted(p for name, p in probability.items() if name not in shown)
    assert not left_out or left_out[-1] <= min(shown.values()) + 1e-5
    assert answer["label"] == names[int(expected.argmax())]


def test_coop_answers_as_coop_in_python_over_its_classes_and_typed_ones(coop_checkpoint, demo_page, tmp_path):
    client, (choice,) = page_of(demo_page, coop_checkpoint)
    image = examples.single_object_images(tmp_path / "examples")[1]
    coop = CoOp.load_from_checkpoint(coop_checkpoint).eval()
    pixels = clip_eval_transform(32)(load_rgb(image))[None]
    typed = ["red circle", "blue square", "green star"]
    for text, names in [("", class_names("color_shape")), ("\n".join(typed), typed)]:
        answer, picture, about = client.predict(choice, handle_file(str(image)), text, api_name="/few_shot")
        coop.set_classes(names)
        with torch.no_grad():
            expected = coop(pixels).softmax(dim=-1)[0]
        assert_top_classes(answer, expected, names)
        assert np.asarray(Image.open(picture)).shape[-1] == 3
    assert "the 3 class names typed" in about
    assert "64 classes of its data module ShapesWorldFewShot" in client.predict(
        choice, handle_file(str(image)), "", api_name="/few_shot")[2]  # fmt: skip


def test_tip_adapter_f_answers_as_lit_clip_predict_even_with_its_data_gone(tip_adapter_f_checkpoint, demo_page,
                                                                           tmp_path):  # fmt: skip
    client, (choice,) = page_of(demo_page, tip_adapter_f_checkpoint, folders=[tmp_path])
    image = examples.single_object_images(tmp_path / "examples")[2]
    answer, _, about = client.predict(choice, handle_file(str(image)), "", api_name="/few_shot")

    # `lit-clip predict --ckpt_path ... --data.init_args.predict_images <image>`: the data module the fit recorded.
    content = torch.load(tip_adapter_f_checkpoint, weights_only=False)
    arguments = {key: value for key, value in content["datamodule_hyper_parameters"].items() if key[0] != "_"}
    data = ShapesWorldFewShot(**arguments | {"predict_images": str(image)})
    method = TipAdapterF.load_from_checkpoint(tip_adapter_f_checkpoint)
    assert not method.searched
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (output,) = trainer.predict(method, datamodule=data)
    assert method.searched  # the page ran the same search before its answer
    assert_top_classes(answer, output["probabilities"][0], data.classnames)
    assert "prompt templates: `a photo of a {}.`" in about

    with pytest.raises(AppError, match="TipAdapterF's cached .* belong to its 64 trained classes: it cannot classify"):
        client.predict(choice, handle_file(str(image)), "red circle, blue square", api_name="/few_shot")

    # Its data module's files gone (a CoOpFewShot of OxfordPets whose root is not here): unsearched, it cannot be
    # answered as `lit-clip predict` would; searched (as after a fit that validated), the page answers over its cache's
    # classes with OxfordPets' template, as the data module would.
    content["datamodule_hyper_parameters"] = {"_class_path": "lit_clip.datamodules.CoOpFewShot", "image_size": 32,
                                              "root": str(tmp_path / "gone"), "dataset": "OxfordPets"}  # fmt: skip
    torch.save(content, tmp_path / "unsearched.ckpt")
    with pytest.raises(AppError, match="still needs alpha and beta searched on its data module's images"):
        client.predict(str(tmp_path / "unsearched.ckpt"), handle_file(str(image)), "", api_name="/few_shot")
    content["state_dict"]["searched"] = torch.tensor(True)
    moved = tmp_path / "moved.ckpt"
    torch.save(content, moved)
    answer, _, about = client.predict(str(moved), handle_file(str(image)), "", api_name="/few_shot")
    pet_template = COOP_TEMPLATES["OxfordPets"]
    assert f"over the 64 classes of its cache · prompt templates: `{pet_template}`" in about
    probabilities = {}
    for templates in ([pet_template], ["a photo of a {}."]):  # a fresh method each: it keeps a classifier per names
        data = ShapesWorldFewShot(**arguments | {"templates": templates, "predict_images": str(image)})
        (output,) = trainer.predict(TipAdapterF.load_from_checkpoint(moved), datamodule=data)
        probabilities[templates[0]] = output["probabilities"][0]
    assert_top_classes(answer, probabilities[pet_template], data.classnames)
    assert not torch.allclose(probabilities[pet_template], probabilities["a photo of a {}."], atol=1e-4)


def test_bad_input_is_a_message_and_lost_data_asks_for_names(coop_checkpoint, demo_page, tmp_path):
    client, (choice,) = page_of(demo_page, coop_checkpoint, folders=[tmp_path])
    image = examples.single_object_images(tmp_path / "examples")[0]
    with pytest.raises(AppError, match="choose a checkpoint"):
        client.predict(None, handle_file(str(image)), "", api_name="/few_shot")
    with pytest.raises(AppError, match="give an image"):
        client.predict(choice, None, "", api_name="/few_shot")
    with pytest.raises(AppError, match="at least 2 class names"):
        client.predict(choice, handle_file(str(image)), "red circle", api_name="/few_shot")
    broken = tmp_path / "broken.png"
    broken.write_bytes(image.read_bytes()[:100])
    with pytest.raises(AppError, match="broken.png.*cannot decode"):
        client.predict(choice, handle_file(str(broken)), "", api_name="/few_shot")

    content = torch.load(coop_checkpoint, weights_only=False)
    probe = tmp_path / "probe.ckpt"
    torch.save({**content, "hyper_parameters": {"_class_path": "lit_clip.methods.LinearProbe"}}, probe)
    with pytest.raises(AppError, match="probe.ckpt is a LinearProbe checkpoint, not one of CoOp, CoCoOp"):
        client.predict(str(probe), handle_file(str(image)), "", api_name="/few_shot")
    per_class = tmp_path / "per-class.ckpt"  # refused from its hyper-parameters, before the contexts are read
    torch.save({**content, "hyper_parameters": {**content["hyper_parameters"], "class_specific_context": True}},
               per_class)  # fmt: skip
    with pytest.raises(AppError, match="CoOp's class-specific contexts belong to its 64 trained classes"):
        client.predict(str(per_class), handle_file(str(image)), "red circle, blue square", api_name="/few_shot")
    clip = tmp_path / "clip.ckpt"
    torch.save({**content, "hyper_parameters": {"_class_path": "lit_clip.methods.CLIPPretraining"}}, clip)
    with pytest.raises(AppError, match="CLIPPretraining checkpoint, not one of CoOp"):
        client.predict(str(clip), handle_file(str(image)), "", api_name="/few_shot")

    # Its data set's files gone: the page asks for the class names, and a shared context classifies the typed ones.
    moved = tmp_path / "moved.ckpt"
    torch.save({**content, "datamodule_hyper_parameters": {"_class_path": "lit_clip.datamodules.CoOpFewShot",
                                                           "root": str(tmp_path / "gone"), "dataset": "OxfordPets"}},
               moved)  # fmt: skip
    with pytest.raises(AppError, match="moved.ckpt are unknown: its data module CoOpFewShot cannot be rebuilt.*type"):
        client.predict(str(moved), handle_file(str(image)), "", api_name="/few_shot")
    answer, _, _ = client.predict(str(moved), handle_file(str(image)), "red circle, blue square", api_name="/few_shot")
    assert {entry["label"] for entry in answer["confidences"]} == {"red circle", "blue square"}
