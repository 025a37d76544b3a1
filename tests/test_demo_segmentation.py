"""The demo page's segmentation tab through Gradio's client: its label map, label shares and pictures equal what each
method gives in Python (MaskCLIP on the page's CLIP, an LSeg checkpoint, a GroupViT's groups named by text); bad
input is a message on the page."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from lit_clip import drawing
from lit_clip.datamodules import ShapesWorldSegmentation
from lit_clip.datamodules.images import load_rgb
from lit_clip.demo import segmentation
from lit_clip.demo.weights import Weights, read_checkpoint
from lit_clip.methods import GroupViTSegmentation, LSeg, ZeroShotSegmentation
from lit_clip.transforms import clip_eval_transform

SEGMENTATION = [("Segmentation", segmentation)]
LSEG_IMAGE_SIZE = 64  # configs/lseg/shapes.yaml's scenes


def in_python(method, image_path, size: int, labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The image as the method takes it (CLIP's evaluation preprocessing at ``size``) and the method's own
    ``predict_masks`` of it, its labels embedded as its ShapesWorld data module has them (its templates)."""
    images = clip_eval_transform(size)(load_rgb(image_path))[None]
    method.trainer = SimpleNamespace(datamodule=ShapesWorldSegmentation(), validating=False, sanity_checking=False)
    try:
        method.use_classes(labels)
        with torch.no_grad():
            return images, method.predict_masks(images)[0]
    finally:
        method.trainer = None


def check_answer(answer, labels: list[str], images: torch.Tensor, mask: torch.Tensor) -> None:
    """The page's label map is ``mask`` over ``labels``; its shares count it; its overlay is drawn from it."""
    overlay, shares, _, label_map = answer
    assert label_map["labels"] == labels
    assert torch.equal(torch.tensor(label_map["mask"]), mask)
    counts = torch.bincount(mask.flatten(), minlength=len(labels)).tolist()
    assert shares["data"] == [[label, n, pytest.approx(n / mask.numel(), abs=1e-4)] for label, n in zip(labels, counts)]
    expected = drawing.segmentation_overlay(drawing.to_uint8_image(images[0]), mask, labels)
    np.testing.assert_array_equal(np.asarray(Image.open(overlay).convert("RGB")), expected)


def test_maskclip_equals_zero_shot_segmentation_in_python(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint)), SEGMENTATION)
    path, names = segmentation.labelled_scenes(tmp_path / "examples")[0]
    labels = ["background", *names]
    # 0: "background" competes by its text (the method's default); 0.5: background below that confidence.
    for threshold, python_threshold in ((0.0, None), (0.5, 0.5)):
        answer = client.predict(handle_file(str(path)), ", ".join(names), segmentation.ZERO_SHOT, None, True,
                                threshold, api_name="/segment")  # fmt: skip
        method = ZeroShotSegmentation(str(lit_clip_checkpoint), background_threshold=python_threshold).eval()
        images, mask = in_python(method, path, method.model.config.vision.image_size, labels)
        assert len(mask.unique()) > 1  # a picture of several labels: the comparison says something
        check_answer(answer, labels, images, mask)
        assert answer[2] is None  # no groups: MaskCLIP is no GroupViT


def test_an_lseg_checkpoint_equals_lseg_in_python(lit_clip_checkpoint, demo_page, tmp_path):
    checkpoint = fit_checkpoint("lseg/shapes.yaml", tmp_path, lit_clip_checkpoint)
    weights = Weights(str(lit_clip_checkpoint), [read_checkpoint(checkpoint)])
    assert weights.choices("segmentation") == [f"LSeg: {checkpoint}"]
    client = demo_page(weights, SEGMENTATION)
    method = LSeg.load_from_checkpoint(checkpoint).eval()
    path, names = segmentation.labelled_scenes(tmp_path / "examples")[1]
    for background, labels in ((True, ["background", *names]), (False, names)):
        answer = client.predict(handle_file(str(path)), "\n".join(names), segmentation.CHECKPOINT,
                                weights.choices("segmentation")[0], background, 0.9, api_name="/segment")  # fmt: skip
        check_answer(answer, labels, *in_python(method, path, LSEG_IMAGE_SIZE, labels))


def test_a_groupvit_segments_as_groupvit_segmentation_with_its_groups(lit_clip_checkpoint, demo_page, tmp_path):
    checkpoint = fit_checkpoint("groupvit/shapes.yaml", tmp_path, lit_clip_checkpoint)
    client = demo_page(Weights(None, [read_checkpoint(checkpoint)]), SEGMENTATION)
    path, names = segmentation.labelled_scenes(tmp_path / "examples")[2]
    labels = ["background", *names]
    # A typed path is as good as the drop-down's label.
    answer = client.predict(handle_file(str(path)), ", ".join(names), segmentation.CHECKPOINT, str(checkpoint), True,
                            0.9, api_name="/segment")  # fmt: skip
    method = GroupViTSegmentation(str(checkpoint), background_threshold=0.9).eval()
    images, mask = in_python(method, path, method.model.config.vision.image_size, labels)
    check_answer(answer, labels, images, mask)
    with torch.no_grad():
        stages = method.model.encode_groups(images).maps(size=images.shape[-2:])
    assert len(stages) == 2
    expected = drawing.group_stages(drawing.to_uint8_image(images), stages)
    np.testing.assert_array_equal(np.asarray(Image.open(answer[2]).convert("RGB")), expected)


def test_bad_input_is_a_message_on_the_page(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint)), SEGMENTATION)
    path, names = segmentation.labelled_scenes(tmp_path / "examples")[0]

    def segment(image=handle_file(str(path)), text=", ".join(names), method=segmentation.ZERO_SHOT, choice=None):
        return client.predict(image, text, method, choice, True, 0.5, api_name="/segment")

    with pytest.raises(AppError, match="type at least 1 class name"):
        segment(text=" , ")
    with pytest.raises(AppError, match="at least one label besides 'background'"):
        segment(text="background")
    with pytest.raises(AppError, match="choose a checkpoint"):
        segment(method=segmentation.CHECKPOINT)
    with pytest.raises(AppError, match="does not name its method"):
        segment(method=segmentation.CHECKPOINT, choice=str(lit_clip_checkpoint))
    broken = tmp_path / "broken.png"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(AppError, match="broken.png.*cannot decode"):
        segment(image=handle_file(str(broken)))
    client = demo_page(Weights(None), SEGMENTATION)
    with pytest.raises(AppError, match="MaskCLIP segments with the page's CLIP.*--pretrained"):
        segment()
