"""The demo page's detection tab: through Gradio's client, ViLD's boxes of typed names and GLIP's of names and of a
sentence are the methods' own predictions in Python (tiny checkpoints written by `lit-clip fit`); bad input is a
message on the page."""
import numpy as np
import pytest
import torch
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from lit_clip.datamodules import ShapesWorldDetection
from lit_clip.datamodules.predict import DetectionImagesDataset, detection_images_collate
from lit_clip.demo import detection
from lit_clip.demo.weights import Weights, find_checkpoints
from lit_clip.methods import GLIP, ViLD
from lit_clip.templates import resolve_templates

TAB = [("Detection", detection)]


@pytest.fixture(scope="module")
def vild_checkpoint(tmp_path_factory, lit_clip_checkpoint):
    """ViLD-text after one step (the stand-ins of test_cli: a micro detector, no region cache)."""
    return fit_checkpoint("vild/shapes.yaml", tmp_path_factory.mktemp("vild"), lit_clip_checkpoint)


@pytest.fixture(scope="module")
def glip_checkpoint(tmp_path_factory, lit_clip_checkpoint):
    """A micro GLIP after one step."""
    return fit_checkpoint("glip/shapes.yaml", tmp_path_factory.mktemp("glip"), lit_clip_checkpoint)


def scene_with_names(tmp_path):
    """The first example scene, its objects' names and its caption, as the tab's examples give them."""
    (image, names, _), (_, caption, _) = detection.scene_examples(tmp_path / "examples")[:2]
    return image, names.split(", "), caption


def one_image_batch(image) -> dict:
    return detection_images_collate([DetectionImagesDataset([image])[0]])


def expected_rows(phrases, scores, boxes, threshold) -> list[list]:
    """The method's detections above the threshold, in its own order (best first)."""
    return [[phrase, score, *box] for phrase, score, box in zip(phrases, scores.tolist(), boxes.tolist())
            if score > threshold]  # fmt: skip


def assert_same_rows(table: dict, expected: list[list]) -> None:
    on_page = table["data"]
    assert [row[0] for row in on_page] == [row[0] for row in expected]
    assert [row[1] for row in on_page] == pytest.approx([row[1] for row in expected], abs=1e-4)
    assert [row[2:] for row in on_page] == [pytest.approx(row[2:], abs=0.01) for row in expected]


def assert_boxes_drawn(picture_path, image) -> None:
    """The picture is the image enlarged twice (128 to 256 pixels a side) with something drawn over it."""
    picture = np.asarray(Image.open(picture_path).convert("RGB"))
    enlarged = np.asarray(Image.open(image).convert("RGB")).repeat(2, axis=0).repeat(2, axis=1)
    assert picture.shape == enlarged.shape
    assert (picture != enlarged).any()


def vild_found(vild: ViLD, image, names: list[str], templates: list[str]) -> dict:
    """ViLD's detections of ``names``, its text classifier built from ``templates``."""
    with torch.no_grad():
        vild.set_classes(names, templates)
        (found,) = vild(one_image_batch(image))
    return found


def test_vild_boxes_on_the_page_are_vild_s_own(vild_checkpoint, demo_page, tmp_path):
    weights = Weights(None, find_checkpoints([vild_checkpoint]))
    client = demo_page(weights, TAB)
    image, names, _ = scene_with_names(tmp_path)
    vild = ViLD.load_from_checkpoint(vild_checkpoint).eval()
    # The templates ViLD was trained with: its data module's, rebuilt here from the arguments the checkpoint records
    recorded = torch.load(vild_checkpoint, weights_only=False)["datamodule_hyper_parameters"]
    assert recorded["_class_path"].endswith(".ShapesWorldDetection")
    trained_with = ShapesWorldDetection(**{k: v for k, v in recorded.items() if not k.startswith("_")}).templates
    found = vild_found(vild, image, names, trained_with)
    threshold = round(float(found["scores"].median()), 2)  # some boxes kept, some not
    expected = expected_rows([names[k] for k in found["labels"]], found["scores"], found["boxes"], threshold)
    assert 0 < len(expected) < len(found["scores"])
    # ViLD's own templates score otherwise: a page that took those would fail
    assert not torch.equal(vild_found(vild, image, names, resolve_templates("vild"))["scores"], found["scores"])

    picture, table, word_maps = client.predict(weights.choices("detection")[0], handle_file(image), ", ".join(names),
                                               detection.NAMES, threshold, api_name="/detect")  # fmt: skip
    assert_same_rows(table, expected)
    assert_boxes_drawn(picture, image)
    assert word_maps is None  # ViLD grounds no sentence


def test_glip_grounds_names_and_a_sentence_as_its_predict_step(glip_checkpoint, demo_page, tmp_path):
    weights = Weights(None, find_checkpoints([glip_checkpoint]))
    client = demo_page(weights, TAB)
    image, names, caption = scene_with_names(tmp_path)
    for prompt, mode in ((names, detection.NAMES), (caption, detection.SENTENCE)):
        glip = GLIP.load_from_checkpoint(glip_checkpoint, prompt=prompt).eval()
        with torch.no_grad():
            rows = glip.predict_step(one_image_batch(image), 0)
        threshold = round(float(rows["score"].median()), 2)
        expected = expected_rows(rows["phrase"], rows["score"], rows["box"], threshold)
        assert 0 < len(expected) < len(rows["score"])

        text = caption if mode == detection.SENTENCE else "\n".join(names)
        picture, table, word_maps = client.predict(weights.choices("detection")[0], handle_file(image), text, mode,
                                                   threshold, api_name="/detect")  # fmt: skip
        assert_same_rows(table, expected)
        assert_boxes_drawn(picture, image)
        if mode == detection.SENTENCE:  # the phrases' boxes, then a map per word: wider than one picture
            assert np.asarray(Image.open(word_maps)).shape[1] > 2 * 192
        else:
            assert word_maps is None


def test_bad_input_is_a_message_on_the_page(vild_checkpoint, glip_checkpoint, demo_page, tmp_path):
    weights = Weights(None, find_checkpoints([vild_checkpoint, glip_checkpoint]), folders=[vild_checkpoint.parent])
    client = demo_page(weights, TAB)
    image, _, caption = scene_with_names(tmp_path)
    vild, glip = (next(label for label in weights.choices("detection") if label.startswith(f"{method}:"))
                  for method in ("ViLD", "GLIP"))  # fmt: skip

    def detect(choice, text, mode=detection.NAMES, picture=image):
        return client.predict(choice, handle_file(str(picture)), text, mode, 0.3, api_name="/detect")

    with pytest.raises(AppError, match="choose a checkpoint"):
        detect(None, "red circle")
    with pytest.raises(AppError, match="missing.ckpt not found"):
        detect(str(vild_checkpoint.parent / "missing.ckpt"), "red circle")
    with pytest.raises(AppError, match="elsewhere.ckpt: the page reads typed checkpoint paths only inside its"):
        detect(str(tmp_path / "elsewhere.ckpt"), "red circle")
    with pytest.raises(AppError, match="ViLD detects class names, it grounds no sentence"):
        detect(vild, caption, detection.SENTENCE)
    with pytest.raises(AppError, match="type at least 1 class name"):
        detect(glip, " , ")
    with pytest.raises(AppError, match="no noun phrase found in the prompt 'above and below'"):
        detect(glip, "above and below", detection.SENTENCE)
    broken = tmp_path / "broken.png"
    broken.write_bytes(open(image, "rb").read()[:100])
    with pytest.raises(AppError, match="broken.png.*cannot decode"):
        detect(glip, "red circle", picture=broken)
