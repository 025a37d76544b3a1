"""The demo page's segmentation tab through Gradio's client: its label map, label shares and pictures equal what each
method gives in Python (MaskCLIP on the page's CLIP, an LSeg checkpoint on its data module's images, a GroupViT's
groups named by text); the background threshold starts at each method's own; bad input is a message on the page."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from lit_clip import drawing
from lit_clip.datamodules.images import load_rgb
from lit_clip.datamodules.shapesworld.segmentation import SEGMENTATION_TEMPLATES
from lit_clip.demo import examples, segmentation
from lit_clip.demo.weights import Weights, read_checkpoint
from lit_clip.methods import GroupViTSegmentation, LSeg, ZeroShotSegmentation
from lit_clip.transforms import clip_eval_transform, to_normalized_tensor

SEGMENTATION = [("Segmentation", segmentation)]
LSEG_IMAGE_SIZE = 64  # configs/lseg/shapes.yaml's scenes


def in_python(method, images: torch.Tensor, labels: list[str], templates=SEGMENTATION_TEMPLATES) -> torch.Tensor:
    """The method's own ``predict_masks`` of the prepared ``images`` ``[1, 3, H, W]``, its labels embedded in
    ``templates`` (its data module's)."""
    method.trainer = SimpleNamespace(datamodule=SimpleNamespace(templates=list(templates)), validating=False,
                                     sanity_checking=False)  # fmt: skip
    try:
        method.use_classes(labels)
        with torch.no_grad():
            return method.predict_masks(images)[0]
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
    weights = Weights(str(lit_clip_checkpoint))
    client = demo_page(weights, SEGMENTATION)
    # The slider starts at ZeroShotSegmentation's own default (None, as configs/zeroshot_segmentation/shapes.yaml).
    assert client.predict(segmentation.ZERO_SHOT, None, 0.7, api_name="/background_threshold") == 0
    path, _, names = examples.scene_images(tmp_path / "examples")[0]
    labels = ["background", *names]
    # 0: "background" competes by its text (the method's default); 0.5: background below that confidence.
    for threshold, python_threshold in ((0.0, None), (0.5, 0.5)):
        answer = client.predict(handle_file(str(path)), ", ".join(names), segmentation.ZERO_SHOT, None, True,
                                threshold, api_name="/segment")  # fmt: skip
        method = ZeroShotSegmentation(str(lit_clip_checkpoint), background_threshold=python_threshold).eval()
        images = clip_eval_transform(method.model.config.vision.image_size)(load_rgb(path))[None]
        mask = in_python(method, images, labels)
        assert len(mask.unique()) > 1  # a picture of several labels: the comparison says something
        check_answer(answer, labels, images, mask)
        assert answer[2] is None  # no groups: MaskCLIP is no GroupViT
    # The slider's value is the method's for one answer only: the kept method has its own again.
    segmenter = segmentation.Segmenters(weights).get(segmentation.ZERO_SHOT, None)
    segmentation.segment(segmenter, load_rgb(path), ", ".join(names), True, 0.5)
    assert segmenter.method.background_threshold is None


def test_an_lseg_checkpoint_segments_its_data_modules_images_as_lseg(lit_clip_checkpoint, demo_page, tmp_path):
    checkpoint = fit_checkpoint("lseg/shapes.yaml", tmp_path, lit_clip_checkpoint)
    # The same LSeg as if trained on a real data set, ADE20K, whose files are not here (the page reads the arguments
    # its module recorded): that module records no image size, evaluates at full resolution, prompts the bare label.
    ade20k = tmp_path / "ade20k" / "last.ckpt"
    content = torch.load(checkpoint, map_location="cpu", weights_only=False)
    content["datamodule_hyper_parameters"] = {"_class_path": "lit_clip.datamodules.ADE20KSegmentation",
                                              "root": str(tmp_path / "data"), "templates": ["{}"]}  # fmt: skip
    ade20k.parent.mkdir()
    torch.save(content, ade20k)
    weights = Weights(str(lit_clip_checkpoint), [read_checkpoint(checkpoint), read_checkpoint(ade20k)])
    assert weights.choices("segmentation") == [f"LSeg: {checkpoint}", f"LSeg: {ade20k}"]
    client = demo_page(weights, SEGMENTATION)
    # LSeg has no threshold: the slider stays where it is.
    assert client.predict(segmentation.CHECKPOINT, str(ade20k), 0.35, api_name="/background_threshold") == 0.35
    method = LSeg.load_from_checkpoint(checkpoint).eval()
    path, _, names = examples.scene_images(tmp_path / "examples")[1]
    shapes_images = clip_eval_transform(LSEG_IMAGE_SIZE)(load_rgb(path))[None]
    for background, labels in ((True, ["background", *names]), (False, names)):
        answer = client.predict(handle_file(str(path)), "\n".join(names), segmentation.CHECKPOINT,
                                weights.choices("segmentation")[0], background, 0.9, api_name="/segment")  # fmt: skip
        check_answer(answer, labels, shapes_images, in_python(method, shapes_images, labels))
    # A wide image: ShapesWorld's module crops its centre square; ADE20K's keeps the whole image, and the mask too.
    wide = tmp_path / "wide.png"
    load_rgb(path).crop((0, 16, 128, 112)).save(wide)
    labels = ["background", *names]
    for choice, images, templates in ((checkpoint, clip_eval_transform(LSEG_IMAGE_SIZE)(load_rgb(wide))[None],
                                       SEGMENTATION_TEMPLATES),
                                      (ade20k, to_normalized_tensor(load_rgb(wide))[None], ["{}"])):  # fmt: skip
        answer = client.predict(handle_file(str(wide)), ", ".join(names), segmentation.CHECKPOINT, str(choice), True,
                                0.9, api_name="/segment")  # fmt: skip
        mask = in_python(LSeg.load_from_checkpoint(choice).eval(), images, labels, templates)
        check_answer(answer, labels, images, mask)
    assert mask.shape == (96, 128)  # ADE20K's: the image's own size
    # Each with its data module's prompts: ShapesWorld's module rebuilt, ADE20K's recorded arguments.
    segmenters = segmentation.Segmenters(weights)
    assert segmenters.get(segmentation.CHECKPOINT, str(checkpoint)).templates == list(SEGMENTATION_TEMPLATES)
    assert segmenters.get(segmentation.CHECKPOINT, str(ade20k)).templates == ["{}"]


def test_a_groupvit_segments_as_groupvit_segmentation_with_its_groups(lit_clip_checkpoint, demo_page, tmp_path):
    checkpoint = fit_checkpoint("groupvit/shapes.yaml", tmp_path, lit_clip_checkpoint)
    # Not listed: its path, typed, is read because it lies in a --checkpoints folder.
    weights = Weights(None, folders=[tmp_path / "runs"])
    client = demo_page(weights, SEGMENTATION)
    # The slider starts at the paper's threshold, as configs/groupvit/shapes_segmentation.yaml.
    assert client.predict(segmentation.CHECKPOINT, str(checkpoint), 0.0, api_name="/background_threshold") == 0.9
    path, _, names = examples.scene_images(tmp_path / "examples")[2]
    labels = ["background", *names]
    answer = client.predict(handle_file(str(path)), ", ".join(names), segmentation.CHECKPOINT, str(checkpoint), True,
                            0.9, api_name="/segment")  # fmt: skip
    method = GroupViTSegmentation(str(checkpoint), background_threshold=0.9).eval()
    images = clip_eval_transform(method.model.config.vision.image_size)(load_rgb(path))[None]
    check_answer(answer, labels, images, in_python(method, images, labels))
    with torch.no_grad():
        stages = method.model.encode_groups(images).maps(size=images.shape[-2:])
    assert len(stages) == 2
    expected = drawing.group_stages(drawing.to_uint8_image(images), stages)
    np.testing.assert_array_equal(np.asarray(Image.open(answer[2]).convert("RGB")), expected)
    # Another threshold is the method's for one answer only.
    segmenter = segmentation.Segmenters(weights).get(segmentation.CHECKPOINT, str(checkpoint))
    segmentation.segment(segmenter, load_rgb(path), ", ".join(names), True, 0.3)
    assert segmenter.method.background_threshold == 0.9


def test_bad_input_is_a_message_on_the_page(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint), folders=[lit_clip_checkpoint.parent]), SEGMENTATION)
    path, _, names = examples.scene_images(tmp_path / "examples")[0]

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
    with pytest.raises(AppError, match="reads typed checkpoint paths only inside its --checkpoints folders"):
        segment(method=segmentation.CHECKPOINT, choice=str(tmp_path / "elsewhere.ckpt"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(AppError, match="broken.png.*cannot decode"):
        segment(image=handle_file(str(broken)))
    client = demo_page(Weights(None), SEGMENTATION)
    with pytest.raises(AppError, match="MaskCLIP segments with the page's CLIP.*--pretrained"):
        segment()
