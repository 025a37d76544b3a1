"""The demo page's generation tab (lit_clip/demo/generation.py) through Gradio's client: its runs yield the picture as
it forms and end on the pictures `lit-clip fit`'s Trainer draws with the same settings and seed; bad input is a
message on the page."""
import inspect
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import yaml
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from lit_clip import checkpoints
from lit_clip.datamodules import GenerationTargets
from lit_clip.demo import examples, generation
from lit_clip.demo.errors import DemoInputError
from lit_clip.demo.weights import Weights, read_checkpoint
from lit_clip.drawing import MARGIN
from lit_clip.methods import VQGANCLIP, CLIPasso, CLIPDraw

GENERATION = [("Generation", generation)]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def fitted_pictures(method, targets: GenerationTargets, root: Path) -> dict[str, Path]:
    """The picture files `lit-clip fit` writes for ``method`` on ``targets`` (its Trainer, its hooks), by name."""
    trainer = L.Trainer(max_epochs=1, logger=False, default_root_dir=root, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    trainer.fit(method, targets)
    return {path.name: path for path in sorted((root / "pictures").iterdir())}


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def cell(grid: np.ndarray, index: int, side: int) -> np.ndarray:
    """The ``index``-th picture of a caption grid of ``side`` px pictures."""
    left = MARGIN + index * (side + MARGIN)
    return grid[MARGIN : MARGIN + side, left : left + side]


def run(client, api_name: str, *inputs) -> list[tuple]:
    """Every update the page's run yields (picture file, progress line, picture files)."""
    job = client.submit(*inputs, api_name=api_name)
    job.result()
    return job.outputs()


def assert_same_files(on_page: list, fitted: dict[str, Path]) -> None:
    """The page's picture files are the Trainer's: the same names, the same pixels (PNG), the same strokes (SVG)."""
    assert sorted(Path(path).name for path in on_page) == sorted(fitted)
    for path in on_page:
        expected = fitted[Path(path).name]
        if expected.suffix == ".png":
            np.testing.assert_array_equal(pixels(path), pixels(expected))
        else:
            assert Path(path).read_text() == expected.read_text()


def test_clipdraw_grows_on_the_page_into_what_lit_clip_fit_draws(lit_clip_checkpoint, demo_page, tmp_path,
                                                                  monkeypatch):  # fmt: skip
    clip_reads, read = [], checkpoints._read

    def counted_read(source):
        clip_reads.append(source)
        return read(source)

    monkeypatch.setattr(checkpoints, "_read", counted_read)
    client = demo_page(Weights(str(lit_clip_checkpoint)), GENERATION)
    prompts = ["a red circle", "a blue square"]
    updates = run(client, "/clipdraw", "\n".join(prompts), 3, 4, 32, True, 7, 1)
    again = run(client, "/clipdraw", "\n".join(prompts), 3, 4, 32, True, 7, 3)
    # The page read its CLIP once, for both runs, and a run left it as it was: the same drawing again.
    assert clip_reads == [str(lit_clip_checkpoint)]
    np.testing.assert_array_equal(pixels(again[-1][0]), pixels(updates[-1][0]))
    assert [status.split(" · ")[0] for _, status, _ in updates] == [f"step {k} / 3" for k in range(4)]
    assert "train/prompt_cosine" in updates[-1][1] and updates[-1][1].endswith("done")
    assert all(files is None for _, _, files in updates[:-1])
    first, last = pixels(updates[0][0]), pixels(updates[-1][0])
    assert not np.array_equal(cell(first, 0, 32), cell(last, 0, 32))  # the strokes moved

    method = CLIPDraw(str(lit_clip_checkpoint), num_paths=4, canvas_size=32, normalize=True, seed=7)
    fitted = fitted_pictures(method, GenerationTargets(prompts=prompts, steps=3), tmp_path / "fit")
    assert sorted(fitted) == ["00_a_red_circle.png", "00_a_red_circle.svg", "01_a_blue_square.png",
                              "01_a_blue_square.svg"]  # fmt: skip
    for index, name in enumerate(["00_a_red_circle.png", "01_a_blue_square.png"]):
        np.testing.assert_array_equal(cell(last, index, 32), pixels(fitted[name]))
    assert_same_files(updates[-1][2], fitted)


def test_clipasso_sketches_on_the_page_what_lit_clip_fit_sketches(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint)), GENERATION)
    picture = examples.single_object_images(tmp_path / "examples")[0]
    # A ViT CLIP: the semantic loss alone (the geometric one reads a ResNet's stages).
    updates = run(client, "/clipasso", handle_file(str(picture)), 3, 4, 32, "0, 1", False, 2)
    assert [status.split(" · ")[0] for _, status, _ in updates] == ["step 0 / 3", "step 2 / 3", "step 3 / 3"]

    method = CLIPasso(str(lit_clip_checkpoint), num_strokes=4, seeds=(0, 1), conv_layer_weights=(0.0,) * 5)
    targets = GenerationTargets(images=[str(picture)], image_size=32, steps=3)
    fitted = fitted_pictures(method, targets, tmp_path / "fit")
    last = pixels(updates[-1][0])
    photo = (targets.target_images()[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(cell(last, 0, 32), photo)
    np.testing.assert_array_equal(cell(last, 1, 32), pixels(fitted["00_red_circle.png"]))
    assert_same_files(updates[-1][2], fitted)


def test_vqgan_clip_takes_its_vqgan_from_a_checkpoint(lit_clip_checkpoint, demo_page, tmp_path):
    checkpoint = fit_checkpoint("vqgan_clip/shapes.yaml", tmp_path / "cli", lit_clip_checkpoint)
    weights = Weights(str(lit_clip_checkpoint), [read_checkpoint(checkpoint)])
    client = demo_page(weights, GENERATION)
    (choice,) = weights.choices("generation", methods=generation.VQGAN_CLIP_METHODS)
    updates = run(client, "/vqgan_clip", choice, "a red circle:1 | a blue square:-0.5", 2, 5, 1)
    assert len(updates) == 3 and updates[-1][1].endswith("done")

    # fit_checkpoint's stand-ins: a tiny random VQGAN, 32 px pictures, 2 cutouts
    method = VQGANCLIP(str(lit_clip_checkpoint), vqgan=str(tmp_path / "cli" / "vqgan.ckpt"),
                       vqgan_config=str(tmp_path / "cli" / "model.yaml"), image_size=32, cutouts=2, seed=5)  # fmt: skip
    targets = GenerationTargets(prompts=["a red circle:1 | a blue square:-0.5"], steps=2)
    fitted = fitted_pictures(method, targets, tmp_path / "fit")
    (name,) = [name for name in fitted if name.endswith(".png")]
    np.testing.assert_array_equal(cell(pixels(updates[-1][0]), 0, 32), pixels(fitted[name]))
    assert_same_files(updates[-1][2], fitted)


def test_bad_input_is_a_message_on_the_page(lit_clip_checkpoint, demo_page, tmp_path):
    client = demo_page(Weights(str(lit_clip_checkpoint)), GENERATION)
    with pytest.raises(AppError, match="type the prompts to draw"):
        client.predict(" \n", 3, 4, 32, True, 0, 1, api_name="/clipdraw")
    with pytest.raises(AppError, match="steps: expected a whole number from 1 to 10000, got 0"):
        client.predict("a red circle", 0, 4, 32, True, 0, 1, api_name="/clipdraw")
    picture = examples.single_object_images(tmp_path / "examples")[0]
    with pytest.raises(AppError, match="geometric loss reads a ResNet CLIP's stages"):
        client.predict(handle_file(str(picture)), 3, 4, 32, "0", True, 1, api_name="/clipasso")
    with pytest.raises(AppError, match="seeds: expected whole numbers"):  # "²": a digit to str.isdigit, not to int
        client.predict(handle_file(str(picture)), 3, 4, 32, "0, ²", False, 1, api_name="/clipasso")
    with pytest.raises(AppError, match="give an image to sketch"):
        client.predict(None, 3, 4, 32, "0", False, 1, api_name="/clipasso")
    with pytest.raises(AppError, match="choose a checkpoint"):
        client.predict(None, "a red circle", 3, 0, 1, api_name="/vqgan_clip")
    with pytest.raises(DemoInputError, match="--pretrained"):  # a page started without a CLIP
        next(generation.clipdraw(Weights(None), "a red circle", 3, 4, 32, True, 0, 1))


@pytest.mark.parametrize("config, method_class, tab_defaults", [
    ("clipdraw/shapes.yaml", CLIPDraw, {**generation.CLIPDRAW_DEFAULTS, "prompts": generation.SHAPES_PROMPTS}),
    ("clipasso/shapes.yaml", CLIPasso, generation.CLIPASSO_DEFAULTS),
    # VQGAN-CLIP's other settings are its checkpoint's
    ("vqgan_clip/shapes.yaml", None, {"steps": generation.VQGAN_CLIP_STEPS, "prompts": generation.SHAPES_PROMPTS}),
])  # fmt: skip
def test_the_tabs_defaults_are_the_shapesworld_configs(config, method_class, tab_defaults):
    """What the tab sets is the config's; what it leaves to the method, the config leaves at the method's default."""
    parsed = yaml.safe_load((CONFIGS / config).read_text())
    settings = {**parsed["model"]["init_args"], **parsed["data"]["init_args"]}
    parameters = inspect.signature(method_class).parameters.values() if method_class else []
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    expected = json.loads(json.dumps({**defaults, **tab_defaults}))  # tuples as YAML's lists
    left_to_the_tab = set(expected) & set(settings) - {"pretrained"}
    assert set(tab_defaults) <= left_to_the_tab
    if method_class is not None:  # and nothing else is set
        assert left_to_the_tab == set(settings) - {"pretrained", "shapesworld_scenes", "shapesworld_objects"}
    for name in left_to_the_tab:
        assert settings[name] == expected[name], name
