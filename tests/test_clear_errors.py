"""Bad input gives an error that names the thing and what was expected; offline, on micro models."""
import os
import re

import huggingface_hub
import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors.torch import save_file

import lit_clip


# --- load_clip ---------------------------------------------------------------------------------------
@pytest.fixture
def hf_directory(tmp_path):
    """A Hugging Face model directory (config.json + model.safetensors) of the smallest CLIP."""
    directory = tmp_path / "hf"
    lit_clip.save_huggingface(lit_clip.create_model("ViT-Micro-8"), directory)
    return directory


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_hf_config_that_is_not_json_names_the_file(hf_directory):
    config = hf_directory / "config.json"
    config.write_text('{"model_type": "clip",')  # cut off mid-write
    expected = "expected a Hugging Face CLIP config"
    with pytest.raises(ValueError, match=rf"{re.escape(str(config))} is not valid JSON.*{expected}"):
        lit_clip.load_clip(hf_directory)
    config.write_text('["clip"]')
    with pytest.raises(ValueError, match=rf"{re.escape(str(config))} holds a JSON list; {expected}"):
        lit_clip.load_clip(hf_directory)


def test_truncated_safetensors_file_names_the_file(tmp_path, hf_directory):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in lit_clip.create_model("ViT-Micro-8").state_dict().items()}, path)
    truncate(path)
    unreadable = r" is not a readable safetensors file \(truncated or corrupt\?\)"
    with pytest.raises(ValueError, match=re.escape(str(path)) + unreadable):
        lit_clip.load_clip(path)
    weights = hf_directory / "model.safetensors"
    truncate(weights)
    with pytest.raises(ValueError, match=re.escape(str(weights)) + unreadable):
        lit_clip.load_clip(hf_directory)


class NotATensor:
    pass


class RunsCode:
    """Unpickling this would create a directory: it must never happen."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_hf_pytorch_model_bin_with_pickled_code_is_refused_with_its_path(hf_directory):
    (hf_directory / "model.safetensors").unlink()
    weights, marker = hf_directory / "pytorch_model.bin", hf_directory / "code-ran"
    for content, pickled in [(NotATensor(), "NotATensor"), (RunsCode(marker), "os.makedirs")]:
        torch.save({"x": content}, weights)
        refused = rf" .*\(it pickles \S*{pickled}\): .*weights_only=True, which refuses to unpickle non-tensor"
        with pytest.raises(ValueError, match=re.escape(str(weights)) + refused):
            lit_clip.load_clip(hf_directory)
    assert not marker.exists()


def test_missing_path_under_a_local_directory_is_not_a_hub_id(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a local path must not be downloaded")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "last.ckpt").touch()
    with pytest.raises(FileNotFoundError, match=r"'runs/last' \(a local path, not a .* did you mean runs/last\.ckpt"):
        lit_clip.load_clip("runs/last")


def test_failed_hub_download_says_there_is_no_local_path_either(tmp_path, monkeypatch):
    def failing_download(repo_id, allow_patterns):
        raise RuntimeError("404: repository not found")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing_download)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        lit_clip.load_clip("someone/missing")
    message = str(error.value)
    assert "no local file or directory named 'someone/missing'" in message
    assert "download of hub id 'someone/missing'" in message
    assert "failed (RuntimeError: 404: repository not found)" in message

    def offline(repo_id, allow_patterns):
        raise LocalEntryNotFoundError("offline and not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ConnectionError, match="no local file or directory named 'someone/missing'"):
        lit_clip.load_clip("someone/missing")


# --- images ------------------------------------------------------------------------------------------
def test_resnet_tower_names_the_image_size_it_was_built_for():
    model = lit_clip.create_model("RN-Tiny")  # 64 px
    for call in (model.encode_image, model.visual.forward_dense):
        with pytest.raises(ValueError, match=r"built for 64 x 64 images, got 32 x 48"):
            call(torch.randn(2, 3, 32, 48))


def test_vit_tower_resizes_positions_but_names_images_smaller_than_a_patch():
    model = lit_clip.create_model("ViT-Micro-8").eval()  # 32 px, patch 8
    assert model.encode_image(torch.randn(1, 3, 48, 40)).shape == (1, 32)  # positions interpolated
    assert model.visual.forward_dense(torch.randn(1, 3, 48, 40)).shape == (1, 32, 6, 5)
    with pytest.raises(ValueError, match=r"patch size 8 needs images of at least 8 x 8 pixels, got 4 x 16"):
        model.encode_image(torch.randn(1, 3, 4, 16))


@pytest.mark.parametrize("name, size", [("ViT-Micro-8", 32), ("RN-Tiny", 64)])
def test_unbatched_or_channels_last_images_say_what_shape_is_expected(name, size):
    model = lit_clip.create_model(name)
    with pytest.raises(ValueError, match=rf"\[B, 3, H, W\].*got shape \(3, {size}, {size}\).*unsqueeze\(0\)"):
        model.encode_image(torch.randn(3, size, size))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\].*got shape .*permute\(0, 3, 1, 2\)"):
        model.encode_image(torch.randn(2, size, size, 3))


@pytest.mark.parametrize("name, size", [("ViT-Micro-8", 32), ("RN-Tiny", 64)])
def test_uint8_images_must_be_normalised_floats(name, size):
    model = lit_clip.create_model(name)
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r"float.*CLIP's mean and std, got torch\.uint8.*lit_clip\.transforms"):
        model.encode_image(images)
    with torch.autocast("cpu", torch.bfloat16), pytest.raises(TypeError, match=r"torch\.uint8"):
        model.encode_image(images)


@pytest.mark.parametrize("name, size", [("ViT-Micro-8", 32), ("RN-Tiny", 64)])
def test_half_precision_images_run_in_the_model_dtype_and_under_autocast(name, size):
    model = lit_clip.create_model(name).eval()
    images = torch.randn(2, 3, size, size).half()
    expected = model.encode_image(images.float())
    torch.testing.assert_close(model.encode_image(images), expected)
    with torch.autocast("cpu", torch.bfloat16):  # bf16-mixed: autocast casts, the images are left alone
        assert model.encode_image(images.bfloat16()).dtype == torch.bfloat16


# --- token ids ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_id", [49408, -1])
def test_token_ids_outside_the_vocabulary_name_the_allowed_range(bad_id):
    model = lit_clip.create_model("ViT-Micro-8")
    tokens = lit_clip.tokenize(["a red circle"], context_length=16)
    tokens[0, 2] = bad_id
    low, high = min(bad_id, 0), max(bad_id, 49407)  # tokenize's ids span 0 (padding) to 49407 (EOT)
    with pytest.raises(ValueError, match=rf"token ids must be in \[0, 49408\).*got ids from {low} to {high}$"):
        model.encode_text(tokens)


def test_float_token_ids_are_named():
    model = lit_clip.create_model("ViT-Micro-8")
    with pytest.raises(TypeError, match=r"token ids must be an integer tensor.*torch\.float32"):
        model.encode_text(lit_clip.tokenize(["a"], context_length=16).float())


@pytest.mark.parametrize(
    "texts, message",
    [
        ([None], r"texts\[0\] is of type NoneType, not a string"),
        (["a cat", 2], r"texts\[1\] is of type int, not a string"),
        ([1, 2], r"texts\[0\] is of type int, not a string"),
        (None, r"texts must be a string or a sequence of strings, got NoneType"),
        (b"a cat", r"texts must be a string or a sequence of strings, got bytes"),
    ],
)
def test_tokenize_names_the_element_that_is_not_a_string(texts, message):
    with pytest.raises(TypeError, match=message):
        lit_clip.tokenize(texts)
