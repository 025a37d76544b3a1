"""The demo page (``lit-clip demo``): its zero-shot tab through Gradio's client equals CLIP in Python; its errors are
messages on the page; checkpoints are found and offered in their family's tab."""
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import lit_clip
from lit_clip.datamodules.images import load_rgb
from lit_clip.datamodules.shapesworld.segmentation import SEGMENTATION_TEMPLATES
from lit_clip.cli import main
from lit_clip.demo import examples, zero_shot
from lit_clip.demo.page import TABS
from lit_clip.demo.weights import Checkpoint, Weights, find_checkpoints, read_checkpoint
from lit_clip.demo.errors import DemoInputError
from lit_clip.transforms import clip_eval_transform

ZERO_SHOT = [("Zero-shot", zero_shot)]


def clip_probabilities(model, image: Image.Image, names: list[str], template: str) -> torch.Tensor:
    """Zero-shot CLIP written out: the prompts' text embeddings, the image's, softmax of 100 x their cosines."""
    with torch.no_grad():
        text = F.normalize(model.encode_text(lit_clip.tokenize([template.format(n) for n in names],
                                                               context_length=model.context_length)), dim=-1)
        pixels = clip_eval_transform(model.config.vision.image_size)(image)[None]
        picture = F.normalize(model.encode_image(pixels), dim=-1)
    return (100 * picture @ text.T).softmax(dim=-1)[0]


def test_classify_through_the_page_equals_clip_in_python(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint)), ZERO_SHOT)
    image = examples.single_object_images(tmp_path / "examples")[1]
    names = ["red circle", "blue square", "green triangle"]
    answer = client.predict(handle_file(str(image)), ", ".join(names), "a photo of a {}.", api_name="/classify")
    on_page = {entry["label"]: entry["confidence"] for entry in answer["confidences"]}
    expected = clip_probabilities(lit_clip.load_clip(str(lit_clip_checkpoint)).eval(), load_rgb(image), names,
                                  "a photo of a {}.")  # fmt: skip
    assert set(on_page) == set(names)
    torch.testing.assert_close(torch.tensor([on_page[n] for n in names]), expected, atol=1e-5, rtol=1e-4)


def test_retrieval_ranks_by_the_similarity_it_draws(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint)), ZERO_SHOT)
    scenes = examples.scene_images(tmp_path / "examples")
    queries = [scene.caption for scene in scenes]
    figure, ranking = client.predict([handle_file(str(scene.path)) for scene in scenes], "\n".join(queries),
                                     api_name="/retrieve")  # fmt: skip
    model = lit_clip.load_clip(str(lit_clip_checkpoint)).eval()
    transform = clip_eval_transform(model.config.vision.image_size)
    with torch.no_grad():
        pixels = torch.stack([transform(load_rgb(scene.path)) for scene in scenes])
        pictures = F.normalize(model.encode_image(pixels), dim=-1)
        texts = F.normalize(model.encode_text(lit_clip.tokenize(queries, context_length=model.context_length)), dim=-1)
    similarity = (pictures @ texts.T).T  # [query, image]
    rows = ranking["data"]
    assert len(rows) == len(queries) * len(scenes)
    for query_index, query in enumerate(queries):
        mine = [row for row in rows if row[0] == query]
        assert [row[1] for row in mine] == [1, 2, 3]
        expected_order = similarity[query_index].argsort(descending=True) + 1
        assert [row[2] for row in mine] == expected_order.tolist()
        assert [row[3] for row in mine] == pytest.approx(similarity[query_index].sort(descending=True).values.tolist(),
                                                         abs=1e-4)  # fmt: skip
    assert np.asarray(Image.open(figure)).shape[-1] == 3


def test_bad_input_is_a_message_on_the_page(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint)), ZERO_SHOT)
    image = examples.single_object_images(tmp_path / "examples")[0]
    with pytest.raises(AppError, match="at least 2 class names"):
        client.predict(handle_file(str(image)), "red circle", "a photo of a {}.", api_name="/classify")
    with pytest.raises(AppError, match="more than once"):
        client.predict(handle_file(str(image)), "red circle, red circle", "a photo of a {}.", api_name="/classify")
    broken = tmp_path / "broken.png"
    broken.write_bytes(image.read_bytes()[:100])
    with pytest.raises(AppError, match="broken.png.*cannot decode"):
        client.predict([handle_file(str(broken))], "a red circle", api_name="/retrieve")


def test_a_page_without_a_clip_says_how_to_give_one(demo_page, tmp_path):
    client = demo_page(Weights(None), ZERO_SHOT)
    image = examples.single_object_images(tmp_path / "examples")[0]
    with pytest.raises(AppError, match="--pretrained"):
        client.predict(handle_file(str(image)), "red circle, blue square", "a photo of a {}.", api_name="/classify")


def test_checkpoints_are_found_and_sorted_into_tabs(cli_clip_checkpoint, lit_clip_checkpoint, tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    # A file that names no method class (written by a plain Trainer) and one that is no checkpoint are skipped.
    found = find_checkpoints([cli_clip_checkpoint.parent, lit_clip_checkpoint, tmp_path])
    assert [c.path for c in found] == [cli_clip_checkpoint]
    assert (found[0].method, found[0].family) == ("CLIPPretraining", "clip")
    weights = Weights(None, found)
    assert weights.choices("clip") == [found[0].label] and weights.choices("few-shot") == []
    with pytest.raises(DemoInputError, match="CLIPPretraining checkpoint, not one of LinearProbe, CoOp"):
        weights.checkpoint(found[0].label, "few-shot")
    assert weights.checkpoint(str(cli_clip_checkpoint), "clip").path == cli_clip_checkpoint  # its path, typed
    with pytest.raises(DemoInputError, match="not found"):
        read_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(DemoInputError, match="does not name its method"):
        read_checkpoint(lit_clip_checkpoint)
    with pytest.raises(DemoInputError, match="notes.ckpt is not a readable checkpoint"):
        read_checkpoint(tmp_path / "notes.ckpt")
    with pytest.raises(DemoInputError, match="--checkpoints: .* not found"):
        find_checkpoints([tmp_path / "nowhere"])


def test_a_typed_path_is_read_only_inside_the_checkpoint_folders(cli_clip_checkpoint, tmp_path):
    """A checkpoint is a pickle: reading one runs code, so a path typed on the page (an upload's, say) is opened
    only inside the --checkpoints folders."""
    outside = tmp_path / "uploaded.ckpt"
    outside.write_bytes(cli_clip_checkpoint.read_bytes())
    with pytest.raises(DemoInputError, match="only inside its --checkpoints folders \\(none"):
        Weights(None).checkpoint(str(outside), "clip")
    with pytest.raises(DemoInputError, match="only inside its --checkpoints folders"):
        Weights(None, folders=[cli_clip_checkpoint.parent]).checkpoint(str(outside), "clip")
    inside = Weights(None, folders=[tmp_path]).checkpoint(str(outside), "clip")
    assert inside.method == "CLIPPretraining"


def test_the_whole_page_has_every_tab_and_each_answer_once(demo_page, cli_clip_checkpoint):
    client = demo_page(Weights(str(cli_clip_checkpoint)))
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    expected = {"/classify", "/retrieve", "/few_shot", "/segment", "/detect", "/classify_sound", "/score_video",
                "/classify_point_cloud", "/estimate_depth", "/clipdraw", "/clipasso", "/vqgan_clip", "/caption",
                "/answer"}  # fmt: skip
    assert expected <= set(endpoints)
    assert not [name for name in endpoints if re.search(r"_\d+$", name)]  # Gradio renames an api_name given twice
    served_tabs = [c["props"]["label"] for c in client.config["components"] if c["type"] == "tabitem"]
    positions = [served_tabs.index(title) for title, _ in TABS]  # (tabs nest: generation has one per method)
    assert positions == sorted(positions) and len(set(served_tabs)) == len(served_tabs)


def test_the_command_line_names_a_missing_checkpoint_folder(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--checkpoints: .*nowhere not found"):
        main(["demo", "--checkpoints", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0 and "--pretrained" in capsys.readouterr().out


def test_a_config_names_its_clip_and_its_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from lit_clip.demo import config_weights

    coop = Path(__file__).resolve().parents[1] / "configs" / "coop" / "shapes.yaml"
    assert config_weights(coop) == ("runs/clip-shapes-vit/version_0/checkpoints/last.ckpt", Path("runs/coop-shapes"))
    clip = coop.parents[1] / "clip" / "shapes.yaml"
    assert config_weights(clip) == (None, Path("runs/clip-shapes"))  # no run yet
    for age, version in enumerate(("version_1", "version_0")):  # version_1 the newer, though listed second
        last = tmp_path / "runs" / "clip-shapes" / version / "checkpoints" / "last.ckpt"
        last.parent.mkdir(parents=True)
        last.write_bytes(b"")
        os.utime(last, (1e9 - age * 100, 1e9 - age * 100))
    assert config_weights(clip)[0] == str(Path("runs/clip-shapes/version_1/checkpoints/last.ckpt"))
    with pytest.raises(DemoInputError, match="--config: .*missing.yaml not found"):
        config_weights(tmp_path / "missing.yaml")


def test_an_upload_is_read_as_lit_clip_predict_reads_it(lit_clip_checkpoint, demo_page, tmp_path):
    """A transparent PNG: its transparent pixels (black here) are composited on white, as load_rgb does; Gradio's
    default RGB conversion of an image upload would have kept them black. DepthCLIP's depths (continuous, unlike
    saturated probabilities) tell the two readings apart."""
    from lit_clip.demo import three_d
    from lit_clip.methods import DepthCLIP
    from lit_clip.transforms import to_normalized_tensor

    client = demo_page(Weights(str(lit_clip_checkpoint)), [("3D and depth", three_d)])
    scene = np.asarray(load_rgb(examples.single_object_images(tmp_path / "examples")[2]))
    alpha = np.zeros(scene.shape[:2], np.uint8)
    alpha[: scene.shape[0] // 2, : scene.shape[1] // 2] = 255  # a quarter visible, the rest transparent black
    rgba = np.dstack([np.where(alpha[..., None] > 0, scene, 0), alpha]).astype(np.uint8)
    upload = tmp_path / "transparent.png"
    Image.fromarray(rgba, "RGBA").save(upload)
    _, _, depth_file = client.predict(handle_file(str(upload)), None, three_d.ZERO_SHOT_DEPTHCLIP,
                                      api_name="/estimate_depth")  # fmt: skip

    method = DepthCLIP(str(lit_clip_checkpoint)).eval()
    with torch.no_grad():  # the whole frame at its own size, as the zero-shot depth tab reads it
        as_predict = method.predict_depth(to_normalized_tensor(load_rgb(upload))[None])[0].numpy()
        alpha_dropped = method.predict_depth(to_normalized_tensor(Image.fromarray(rgba[..., :3]))[None])[0].numpy()
    np.testing.assert_allclose(np.load(depth_file), as_predict, atol=1e-5)
    assert np.abs(as_predict - alpha_dropped).max() > 1e-3


def test_methods_built_on_the_page_share_its_clip(lit_clip_checkpoint):
    from lit_clip.methods import ZeroShotSegmentation

    weights = Weights(str(lit_clip_checkpoint))
    with weights.clip_shared():
        shared = ZeroShotSegmentation(str(lit_clip_checkpoint))
    assert shared.model is weights.clip()
    own = ZeroShotSegmentation(str(lit_clip_checkpoint))  # outside the context: read from the file again
    assert own.model is not weights.clip()
    for (name, mine), (_, theirs) in zip(own.model.state_dict().items(), shared.model.state_dict().items()):
        torch.testing.assert_close(mine, theirs, msg=name)
    with pytest.raises(DemoInputError, match="--pretrained"):
        Weights(None).clip_shared()


def test_templates_are_the_data_modules_else_those_recorded_else_the_default(tmp_path, caplog):
    """What every tab writes class names into: the rebuilt data module's templates; where it cannot be rebuilt
    (its data files are absent, say), the ``templates`` argument it recorded; else the tab's default."""

    def checkpoint(name: str, datamodule: dict) -> Checkpoint:
        return Checkpoint(tmp_path / name, {"_class_path": "lit_clip.methods.LSeg"}, datamodule)

    weights = Weights(None)
    rebuilt = checkpoint("rebuilt.ckpt", {"_class_path": "lit_clip.datamodules.ShapesWorldSegmentation",
                                          "image_size": 32})  # no templates recorded: the module's own
    assert weights.templates(rebuilt, default="vild") == list(SEGMENTATION_TEMPLATES)
    absent = {"_class_path": "lit_clip.datamodules.NoSuchDataSet"}  # cannot be rebuilt here
    recorded = checkpoint("recorded.ckpt", absent | {"templates": "simple"})
    assert weights.templates(recorded, default="vild") == lit_clip.templates.resolve_templates("simple")
    assert weights.templates(checkpoint("default.ckpt", absent), default="vild") == \
        lit_clip.templates.resolve_templates("vild")
    assert weights.templates(checkpoint("none.ckpt", absent), default=None) is None
    assert "NoSuchDataSet could not be rebuilt" in caplog.text
    with pytest.raises(ValueError, match="template"):  # a recorded template without a slot is no prompt
        weights.templates(checkpoint("bad.ckpt", absent | {"templates": ["a photo."]}), default=None)
