"""The demo page's 3D tab through Gradio's client: PointCLIP's class probabilities and views (zero-shot, V2 and V1,
and a few-shot checkpoint written by ``lit-clip fit``) and DepthCLIP's depth maps (zero-shot on the whole frame, and
a learned projection written by ``lit-clip fit`` on its data module's crop) equal the methods' in Python; bad clouds,
names and depth files are messages on the page."""
import shutil

import numpy as np
import pytest
import torch
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from lit_clip import create_model, drawing
from lit_clip.datamodules.images import load_rgb
from lit_clip.datamodules.point_clouds import normalize_to_unit_sphere
from lit_clip.demo import three_d
from lit_clip.demo.errors import DemoInputError
from lit_clip.demo.weights import Weights, find_checkpoints
from lit_clip.methods.three_d.depthclip import DepthCLIP
from lit_clip.methods.three_d.pointclip import PointCLIP
from lit_clip.transforms import clip_eval_transform, to_normalized_tensor

THREE_D = [("3D and depth", three_d)]
V2, V1 = three_d.PROJECTIONS  # the drop-down's labels
NAMES = ["sphere", "cube", "torus", "cone"]


@torch.no_grad()
def pointclip_answer(method: PointCLIP, points: np.ndarray, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The method's class probabilities and projected views of one cloud, by its forward alone (no Trainer: the
    classifier from PointCLIP's default template)."""
    method.eval().use_classes(names)
    batch = {"points": torch.from_numpy(points)[None]}
    return method(method.batch_input(batch)).softmax(dim=-1)[0], method.projected_views(batch["points"])


def on_page(label: dict) -> torch.Tensor:
    confidences = {entry["label"]: entry["confidence"] for entry in label["confidences"]}
    assert set(confidences) == set(NAMES)
    return torch.tensor([confidences[name] for name in NAMES])


def picture(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def tall_scene(tmp_path) -> tuple[str, str]:
    """An example depth scene and its truth cut to 128 x 96 (height x width): not square, as most photos."""
    scene, truth = three_d.example_depth_scenes(tmp_path)[0]
    load_rgb(scene).crop((16, 0, 112, 128)).save(tmp_path / "tall.png")
    np.save(tmp_path / "tall.npy", np.load(truth)[:, 16:112])
    return str(tmp_path / "tall.png"), str(tmp_path / "tall.npy")


def test_zero_shot_point_clouds_equal_pointclip_in_python(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint)), THREE_D)
    (sphere, _), *_, (cone, _) = three_d.example_clouds(tmp_path)  # a .npy cloud and a text one
    shouting = shutil.copyfile(sphere, tmp_path / "SPHERE.NPY")  # read as a .npy, not as text rows

    # V2, the ShapesWorld look, the cloud normalised into the unit sphere by the page.
    label, views = client.predict(handle_file(str(shouting)), ", ".join(NAMES), three_d.ZERO_SHOT_POINTCLIP, V2, True,
                                  True, "sphere", api_name="/classify_point_cloud")  # fmt: skip
    method = PointCLIP(str(lit_clip_checkpoint), projection="v2", invert=False, normalize_views=True)
    expected, expected_views = pointclip_answer(method, normalize_to_unit_sphere(np.load(sphere)), NAMES)
    v2_answer = on_page(label)
    torch.testing.assert_close(v2_answer, expected, atol=1e-5, rtol=1e-4)
    predicted = NAMES[int(expected.argmax())]
    assert label["label"] == predicted
    assert np.array_equal(picture(views), drawing.point_cloud_views(expected_views, ["sphere"], [predicted], px=96))

    # V1 as the official code draws it (unnormalised views) at the 32 px CLIP's side, from text rows as they are.
    label, views = client.predict(handle_file(str(cone)), "\n".join(NAMES), three_d.ZERO_SHOT_POINTCLIP, V1, False,
                                  False, "", api_name="/classify_point_cloud")  # fmt: skip
    method = PointCLIP(str(lit_clip_checkpoint), projection="v1", resolution=32, normalize_views=False)
    expected, expected_views = pointclip_answer(method, np.loadtxt(cone, dtype=np.float32), NAMES)
    torch.testing.assert_close(on_page(label), expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(on_page(label), v2_answer, atol=1e-4)  # another cloud and projection: another answer
    predicted = NAMES[int(expected.argmax())]
    assert np.array_equal(picture(views), drawing.point_cloud_views(expected_views, ["not given"], [predicted], px=96))
    assert picture(views).shape[1] > 6 * 96  # six views side by side


def test_few_shot_checkpoint_equals_its_method(lit_clip_checkpoint, demo_page, tmp_path):
    checkpoint = fit_checkpoint("pointclip/shapes_fewshot.yaml", tmp_path, lit_clip_checkpoint)
    weights = Weights(str(lit_clip_checkpoint), find_checkpoints([checkpoint]))
    (choice,) = weights.choices("3d")
    client = demo_page(weights, THREE_D)
    (sphere, _), *_ = three_d.example_clouds(tmp_path)
    # The projection options are zero-shot's: the checkpoint's own (10 views, V1 at 64 px) are used.
    label, views = client.predict(handle_file(str(sphere)), ", ".join(NAMES), choice, V2, True, False, "sphere",
                                  api_name="/classify_point_cloud")  # fmt: skip
    method = PointCLIP.load_from_checkpoint(checkpoint, map_location="cpu")
    assert method.adapter is not None
    expected, expected_views = pointclip_answer(method, np.load(sphere), NAMES)
    torch.testing.assert_close(on_page(label), expected, atol=1e-5, rtol=1e-4)
    assert expected_views.shape[1] == 10
    assert np.array_equal(picture(views), drawing.point_cloud_views(expected_views, ["sphere"],
                                                                    [NAMES[int(expected.argmax())]], px=96))
    # A PointCLIP checkpoint is not DepthCLIP's.
    scene, _ = three_d.example_depth_scenes(tmp_path)[0]
    with pytest.raises(AppError, match="is a PointCLIP checkpoint, not one of DepthCLIP"):
        client.predict(handle_file(str(scene)), None, str(checkpoint), api_name="/estimate_depth")


def test_zero_shot_depth_of_the_whole_frame_equals_depthclip_in_python(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint)), THREE_D)
    scene, truth = tall_scene(tmp_path)
    method = DepthCLIP(str(lit_clip_checkpoint)).eval()
    with torch.no_grad():  # as the depth data modules read an image by default: the whole frame at its own size
        pixels = to_normalized_tensor(load_rgb(scene))[None]
        at_truth_size, at_input_size = method.predict_depth(pixels, size=(128, 96))[0], method.predict_depth(pixels)[0]

    drawn, summary, depth_file = client.predict(handle_file(scene), handle_file(truth), three_d.ZERO_SHOT_DEPTHCLIP,
                                                api_name="/estimate_depth")  # fmt: skip
    depth = np.load(depth_file)
    assert depth.shape == (128, 96)
    np.testing.assert_allclose(depth, at_truth_size.numpy(), atol=1e-5)
    assert summary["min_m"] == pytest.approx(float(at_truth_size.min()), abs=1e-5)
    assert summary["max_m"] == pytest.approx(float(at_truth_size.max()), abs=1e-5)
    assert 1.0 <= summary["min_m"] <= summary["max_m"] <= 3.0  # expected values of the bins, 1 to 3 m
    comparison = drawing.depth_comparison(drawing.to_uint8_image(pixels), [np.load(truth)], [at_truth_size], px=192)
    assert np.array_equal(picture(drawn), comparison)

    _, summary, depth_file = client.predict(handle_file(scene), None, three_d.ZERO_SHOT_DEPTHCLIP,
                                            api_name="/estimate_depth")  # fmt: skip
    np.testing.assert_allclose(np.load(depth_file), at_input_size.numpy(), atol=1e-5)
    assert (summary["height"], summary["width"]) == (128, 96)  # the whole frame, no centre square


def test_depth_checkpoint_sees_its_data_modules_crop(demo_page, tmp_path):
    rn_tiny = tmp_path / "rn-tiny.pt"  # DepthCLIP learns a projection of a ResNet's layer4
    torch.save(create_model("RN-Tiny").state_dict(), rn_tiny)
    # A random CLIP's cosines are far apart: at the official temperature every pixel would be the farthest bin.
    checkpoint = fit_checkpoint("depthclip/shapes.yaml", tmp_path, rn_tiny, "--model.init_args.reduction=learned",
                                "--model.init_args.architecture=RN-Tiny", "--model.init_args.temperature=10",
                                "--data.init_args.image_size=96", "--data.init_args.batch_size=2")  # fmt: skip
    weights = Weights(str(rn_tiny), find_checkpoints([checkpoint]))
    (choice,) = weights.choices("3d")
    client = demo_page(weights, THREE_D)
    scene, truth = tall_scene(tmp_path)
    method = DepthCLIP.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    assert method.trains
    with torch.no_grad():  # `lit-clip predict`'s ShapesWorldDepth (image_size 96): CLIP's resize and centre crop
        pixels = clip_eval_transform(96)(load_rgb(scene))[None]
        expected = method.predict_depth(pixels, size=(128, 96))[0]
    assert expected.std() > 1e-3  # a 3 x 3 layer4 map: the depth varies over the image
    drawn, _, depth_file = client.predict(handle_file(scene), handle_file(truth), choice, api_name="/estimate_depth")
    np.testing.assert_allclose(np.load(depth_file), expected.numpy(), atol=1e-5)
    comparison = drawing.depth_comparison(drawing.to_uint8_image(pixels), [np.load(truth)], [expected], px=192)
    assert np.array_equal(picture(drawn), comparison)
    _, summary, _ = client.predict(handle_file(scene), None, choice, api_name="/estimate_depth")
    assert (summary["height"], summary["width"]) == (96, 96)


def test_zero_shot_methods_are_built_once_per_setting(lit_clip_checkpoint):
    methods = three_d.Methods(Weights(str(lit_clip_checkpoint)))
    shapes_v2, _ = methods.pointclip(three_d.ZERO_SHOT_POINTCLIP, V2, True)
    assert methods.pointclip(three_d.ZERO_SHOT_POINTCLIP, V2, True)[0] is shapes_v2
    official_v2, _ = methods.pointclip(three_d.ZERO_SHOT_POINTCLIP, V2, False)
    assert official_v2 is not shapes_v2 and official_v2.invert and not shapes_v2.invert
    assert methods.pointclip(three_d.ZERO_SHOT_POINTCLIP, V1, True)[0].resolution == 32  # the stand-in CLIP's side
    depthclip, datamodule = methods.depthclip(three_d.ZERO_SHOT_DEPTHCLIP)
    assert methods.depthclip(three_d.ZERO_SHOT_DEPTHCLIP) == (depthclip, None)


def test_bad_inputs_are_messages_on_the_page(lit_clip_checkpoint, demo_page, tmp_path):
    # Typed checkpoint paths are read inside the --checkpoints folders only: the CLIP's is one here.
    client = demo_page(Weights(str(lit_clip_checkpoint), folders=[lit_clip_checkpoint.parent]), THREE_D)
    (sphere, _), *_ = three_d.example_clouds(tmp_path)
    flat, words = tmp_path / "flat.npy", tmp_path / "words.txt"
    np.save(flat, np.zeros((16, 2), np.float32))
    words.write_text("a sphere\nmade of points\n")

    def classify(path, names=", ".join(NAMES), choice=three_d.ZERO_SHOT_POINTCLIP):
        client.predict(handle_file(str(path)), names, choice, V2, True, True, "", api_name="/classify_point_cloud")

    with pytest.raises(AppError, match=r"flat.npy: expected rows of at least 3 coordinates .*got shape \(16, 2\)"):
        classify(flat)
    with pytest.raises(AppError, match="words.txt: not a cloud of 'x,y,z,...' rows.*expected a point cloud"):
        classify(words)
    with pytest.raises(AppError, match="at least 2 class names"):
        classify(sphere, names="sphere")
    with pytest.raises(AppError, match="does not name its method"):
        classify(sphere, choice=str(lit_clip_checkpoint))
    scene, truth = three_d.example_depth_scenes(tmp_path)[0]
    wrong, archive = tmp_path / "wrong.npy", tmp_path / "archive.npy"
    np.save(wrong, np.ones((64, 64), np.float32))
    with open(archive, "wb") as file:  # numpy's .npz archive under a .npy name (an .npz is refused by the upload)
        np.savez(file, depth=np.load(truth))

    def estimate(depth_file):
        client.predict(handle_file(str(scene)), handle_file(str(depth_file)), three_d.ZERO_SHOT_DEPTHCLIP,
                       api_name="/estimate_depth")  # fmt: skip

    with pytest.raises(AppError, match=r"wrong.npy holds a float32 array of shape \[64, 64\]; expected the image's "
                                       r"depth in metres, \[height, width\] = \[128, 128\]"):  # fmt: skip
        estimate(wrong)
    with pytest.raises(AppError, match=r"archive.npy is a .npz archive, not one array; expected .* a .npy array"):
        estimate(archive)
    with pytest.raises(DemoInputError, match="--pretrained"):  # the same message, before any method is built
        three_d.estimate_depth(three_d.Methods(Weights(None)), scene, three_d.ZERO_SHOT_DEPTHCLIP)
