"""load_rgb on odd and broken files; RobustSamples' skip / raise policies and their collation."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from lit_clip.datamodules.images import BadSampleError, RobustSamples, check_caption, load_rgb, without_bad_samples
from PIL import Image


def _jpeg_bytes(size=(32, 24)) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


# -- odd but valid images ------------------------------------------------------------------------


def test_cmyk_jpeg(tmp_path):
    path = _save(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), tmp_path / "cmyk.jpg")
    assert Image.open(path).mode == "CMYK"
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (20, 10)
    red, green, blue = image.getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    gradient = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (4, 1))
    path = _save(Image.fromarray(gradient), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I;16")
    image = load_rgb(path)
    assert image.mode == "RGB" and image.size == (64, 4)
    row = np.asarray(image)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0) and len(np.unique(row)) > 50  # Pillow's convert clips: mostly 255
    assert np.all(np.asarray(image)[..., 0] == np.asarray(image)[..., 2])


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_is_composited_on_white(tmp_path, mode):
    image = Image.new(mode, (8, 8), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    image.putpixel((0, 0), (0, 0, 0, 255) if mode == "RGBA" else (0, 255))
    rgb = load_rgb(_save(image, tmp_path / f"{mode}.png"))
    assert rgb.mode == "RGB" and rgb.size == (8, 8)
    assert rgb.getpixel((0, 0)) == (0, 0, 0) and rgb.getpixel((4, 4)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (6, 6), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 1), 1)
    rgb = load_rgb(_save(image, tmp_path / "palette.png", transparency=0))
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((1, 1)) == (0, 0, 255)


def test_palette_gif(tmp_path):
    rgb = load_rgb(_save(Image.new("RGB", (5, 7), (0, 128, 0)).convert("P"), tmp_path / "p.gif"))
    assert rgb.mode == "RGB" and rgb.size == (5, 7)


@pytest.mark.parametrize("mode, value", [("L", 128), ("1", 1), ("F", 100.0), ("I", 65535)])
def test_grayscale_modes(tmp_path, mode, value):
    image = Image.new(mode, (9, 3), value)
    source = _save(image, tmp_path / "gray.tif") if mode in ("F", "I") else _save(image, tmp_path / "gray.png")
    rgb = load_rgb(source)
    assert rgb.mode == "RGB" and rgb.size == (9, 3)
    expected = {"L": 128, "1": 255, "F": 100, "I": 255}[mode]
    assert rgb.getpixel((0, 0)) == (expected,) * 3


def test_bytes_source():
    image = load_rgb(_jpeg_bytes(), name="shard-000000.tar:000001.jpg")
    assert image.mode == "RGB" and image.size == (32, 24)


# -- broken files ---------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(BadSampleError, match=r"nowhere\.jpg.*not found"):
        load_rgb(tmp_path / "nowhere.jpg")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadSampleError, match=r"empty\.jpg.*empty"):
        load_rgb(path)


def test_truncated_jpeg(tmp_path):
    data = _jpeg_bytes((64, 64))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadSampleError, match=r"cut\.jpg.*truncated"):
        load_rgb(path)


def test_truncated_png(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    data = buffer.getvalue()
    with pytest.raises(BadSampleError, match=r"cut\.png: cannot decode"):
        load_rgb(data[: len(data) // 2], name="cut.png")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    with pytest.raises(BadSampleError, match=r"notes\.jpg: cannot decode"):
        load_rgb(path)
    with pytest.raises(BadSampleError, match="key7: cannot decode"):
        load_rgb(b"\x00\x01garbage", name="key7")


def test_check_caption():
    assert check_caption("  a red circle \n", "k") == "a red circle"
    with pytest.raises(BadSampleError, match="k3.txt: empty caption"):
        check_caption(" \t\n", "k3.txt")


# -- RobustSamples --------------------------------------------------------------------------------


class _Files(torch.utils.data.Dataset):
    """Sample i is bad when i is in ``bad``."""

    def __init__(self, length: int, bad: set[int]):
        self.length, self.bad = length, bad

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if index in self.bad:
            raise BadSampleError(f"img{index}.jpg: cannot decode image")
        return {"index": index}


def test_bad_samples_are_left_out_once_each_and_no_good_one_repeats():
    """Adjacent bad files: each counted once, where it is, and the good ones each read once."""
    samples = RobustSamples(_Files(6, bad={1, 2, 3}))
    assert len(samples) == 6
    assert samples[0] == {"index": 0} and samples[2] == {"skipped_index": 2}
    loader = torch.utils.data.DataLoader(samples, batch_size=3, collate_fn=without_bad_samples())
    first, second = list(loader)
    assert first["index"].tolist() == [0] and first["skipped_index"].tolist() == [1, 2]
    assert second["index"].tolist() == [4, 5] and second["skipped_index"].tolist() == [3]


def test_a_batch_of_bad_samples_only():
    samples = RobustSamples(_Files(4, bad={0, 1}))
    # Evaluation: the batch is its count alone (a last batch may be one bad file).
    evaluation = torch.utils.data.DataLoader(samples, batch_size=2, collate_fn=without_bad_samples(training=False))
    assert [batch["skipped_index"].tolist() for batch in evaluation] == [[0, 1], []]
    assert "index" not in next(iter(evaluation))
    # Training: a whole batch of bad files is a broken data set.
    training = torch.utils.data.DataLoader(samples, batch_size=2, collate_fn=without_bad_samples(training=True))
    with pytest.raises(BadSampleError, match=r"every sample of a batch of 2 is bad \(indices 0, 1;"):
        next(iter(training))


def test_robust_samples_raise_names_file():
    samples = RobustSamples(_Files(4, bad={2}), policy="raise")
    assert samples[1] == {"index": 1}
    with pytest.raises(BadSampleError, match=r"img2\.jpg"):
        samples[2]


def test_robust_samples_rejects_unknown_policy():
    with pytest.raises(ValueError, match="policy"):
        RobustSamples(_Files(1, set()), policy="ignore")
