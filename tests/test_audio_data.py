"""Audio data for AudioCLIP: reading and resampling sound files, AudioCLIP's augmentations, and the ESC-50,
UrbanSound8K and clip-list data modules, run on ShapesWorld's sounds exported in the real layouts.

Clips are 0.5 s at 8 kHz (4000 samples), so the whole file runs in seconds.
"""
import io
import math
import re

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from lit_clip.datamodules import ESC50, AudioClips, AudioWebDataset, UrbanSound8K
from lit_clip.datamodules.audio import (
    RandomChannelFlip,
    RandomCrop,
    RandomNoise,
    RandomPadding,
    RandomScale,
    audio_eval_transform,
    audio_train_transform,
    min_max_scale,
    read_audio,
    time_stretch,
)
from lit_clip.datamodules.export import (
    export_audio_clips_csv,
    export_audio_webdataset,
    export_esc50,
    export_urbansound8k,
    sound_classes,
)
from lit_clip.datamodules.images import BadSampleError
from scipy.signal import resample_poly

from lit_clip.tokenizer import default_tokenizer, tokenize

RATE, SECONDS, LENGTH, CONTEXT = 8000, 0.5, 4000, 16
SMALL = dict(sample_rate=RATE, duration=SECONDS, context_length=CONTEXT, batch_size=8, num_workers=0)


def decode(text: torch.Tensor) -> str:
    """The text between SOT and EOT of a row of token ids."""
    tokenizer = default_tokenizer()
    ids = text.tolist()
    return tokenizer.decode(ids[1 : ids.index(tokenizer.eot_token_id)]).strip()


def tone(frequency: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(round(rate * seconds)) / rate)).astype(np.float32)


@pytest.fixture(scope="module")
def esc50(tmp_path_factory):
    root = tmp_path_factory.mktemp("esc50")
    return root, export_esc50(root, clips_per_class=5, classes=8, sample_rate=RATE, duration=SECONDS)


@pytest.fixture(scope="module")
def us8k(tmp_path_factory):
    root = tmp_path_factory.mktemp("us8k")
    return root, export_urbansound8k(root, clips_per_class=10, classes=4, sample_rates=(22050, 48000), duration=SECONDS)


# -- reading ------------------------------------------------------------------------------------


def test_read_audio_resamples_with_resample_poly_and_keeps_the_pitch(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(1000.0, 22050, 0.5), 22050, subtype="PCM_16")  # 11025 samples
    stored, _ = sf.read(path, dtype="float32", always_2d=True)

    wave = read_audio(path, 8000)
    assert wave.dtype == np.float32 and wave.shape == (1, math.ceil(11025 * 160 / 441))  # 22050:8000 = 441:160
    np.testing.assert_allclose(wave, resample_poly(stored.T, 160, 441, axis=-1), atol=1e-6)
    spectrum = np.abs(np.fft.rfft(wave[0]))
    peak = np.fft.rfftfreq(wave.shape[1], 1 / 8000)[spectrum.argmax()]
    assert abs(peak - 1000.0) <= 2.0  # 2 Hz bins
    assert abs(np.abs(wave[0, 100:-100]).max() - 0.5) < 0.01
    # At the file's rate: the file's values, unchanged.
    np.testing.assert_array_equal(read_audio(path, 22050), stored.T)
    upsampled = read_audio(path, 44100)
    assert upsampled.shape == (1, 22050)


def test_read_audio_channels(tmp_path):
    left, right = tone(440.0, RATE, 0.1), tone(660.0, RATE, 0.1, amplitude=0.25)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), RATE, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", left, RATE, subtype="FLOAT")
    sf.write(tmp_path / "three.wav", np.stack([left, right, left], axis=1), RATE, subtype="FLOAT")

    np.testing.assert_allclose(read_audio(tmp_path / "stereo.wav", RATE, 1), [(left + right) / 2], atol=1e-7)
    np.testing.assert_array_equal(read_audio(tmp_path / "stereo.wav", RATE, 2), [left, right])  # stereo kept
    np.testing.assert_array_equal(read_audio(tmp_path / "stereo.wav", RATE, None), [left, right])
    np.testing.assert_array_equal(read_audio(tmp_path / "mono.wav", RATE, 2), [left, left])  # mono duplicated
    np.testing.assert_array_equal(read_audio(tmp_path / "mono.wav", RATE, None), [left])
    mix = (2 * left + right) / 3
    np.testing.assert_allclose(read_audio(tmp_path / "three.wav", RATE, 2), [mix, mix], atol=1e-7)
    # Bytes read as the file does.
    data = (tmp_path / "stereo.wav").read_bytes()
    np.testing.assert_array_equal(read_audio(data, RATE, 2), read_audio(tmp_path / "stereo.wav", RATE, 2))


def test_read_audio_errors_name_the_file(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(440.0, RATE, 0.1), RATE, subtype="PCM_16")
    (tmp_path / "truncated.wav").write_bytes(good.read_bytes()[:30])  # cut inside the header
    (tmp_path / "garbage.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "silent.wav", np.zeros((0, 1), np.float32), RATE)  # a valid header, no frames

    with pytest.raises(BadSampleError, match=r"missing\.wav: file not found"):
        read_audio(tmp_path / "missing.wav", RATE)
    with pytest.raises(BadSampleError, match=r"truncated\.wav: cannot decode audio \(LibsndfileError: .*data"):
        read_audio(tmp_path / "truncated.wav", RATE)
    with pytest.raises(BadSampleError, match=r"garbage\.wav: cannot decode audio .*Format not recognised"):
        read_audio(tmp_path / "garbage.wav", RATE)
    with pytest.raises(BadSampleError, match=r"empty\.wav: empty file \(0 bytes\)"):
        read_audio(tmp_path / "empty.wav", RATE)
    with pytest.raises(BadSampleError, match=r"silent\.wav: no audio samples \(0 frames\)"):
        read_audio(tmp_path / "silent.wav", RATE)
    with pytest.raises(BadSampleError, match=r"shard-0\.tar:0001\.flac: cannot decode audio"):
        read_audio(b"not a sound", RATE, name="shard-0.tar:0001.flac")


# -- AudioCLIP's augmentations ------------------------------------------------------------------


def test_time_stretch_is_the_official_linear_interpolation():
    ramp = torch.arange(100, dtype=torch.float32)[None]
    longer = time_stretch(ramp, 1.25)
    assert longer.shape == (1, 125)  # int(100 * 1.25)
    # Sample j is read at j / 1.25; past the last sample the official clamps to it.
    torch.testing.assert_close(longer[0], torch.clamp(torch.arange(125) / 1.25, max=99.0))
    shorter = time_stretch(ramp, 0.8)
    assert shorter.shape == (1, 80)
    torch.testing.assert_close(shorter[0], torch.arange(80) / 0.8)

    wave = torch.randn(2, 1000)
    for seed in range(5):
        scaling = 1.5 ** (torch.rand((), dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 2 - 1)
        stretched = RandomScale(1.5, torch.Generator().manual_seed(seed))(wave)
        assert stretched.shape == (2, int(1000 * float(scaling)))
        torch.testing.assert_close(stretched, time_stretch(wave, float(scaling)))
    lengths = {RandomScale(1.5)(wave).shape[1] for _ in range(200)}
    assert min(lengths) >= int(1000 / 1.5) and max(lengths) <= 1500 and len(lengths) > 100


def test_random_padding_pads_with_the_edge_means():
    wave = torch.linspace(-1, 1, 10).repeat(2, 1)
    wave[:, 0] = torch.tensor([1.0, 3.0])  # left edge mean 2
    wave[:, -1] = torch.tensor([-1.0, -3.0])  # right edge mean -2
    lefts = set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        padded = RandomPadding(16, train=True, generator=generator)(wave)
        assert padded.shape == (2, 16)
        left = int((padded[0] == 2.0).sum())  # the clip's own samples are never 2 in channel 0
        lefts.add(left)
        assert torch.equal(padded[:, left : left + 10], wave)
        assert (padded[:, left + 10 :] == -2.0).all()
    assert lefts == set(range(6))  # drawn from [0, 16 - 10), as np.random.randint
    centred = RandomPadding(16, train=False)(wave)
    assert torch.equal(centred[:, 3:13], wave) and (centred[:, :3] == 2.0).all() and (centred[:, 13:] == -2.0).all()
    assert torch.equal(RandomPadding(15, train=False)(wave)[:, 2:12], wave)  # round(2.5) = 2, as Python rounds
    assert RandomPadding(8)(wave) is wave  # longer clips pass


def test_random_crop_centres_at_test_time_with_the_official_std_fallbacks():
    wave = torch.randn(2, 100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(RandomCrop(60, train=False)(wave), wave[:, 20:80])
    assert torch.equal(RandomCrop(59, train=False)(wave), wave[:, 20:79])  # round(20.5) = 20
    generator = torch.Generator().manual_seed(0)
    lefts = set()
    for _ in range(100):
        crop = RandomCrop(60, train=True, generator=generator)(wave)
        assert crop.shape == (2, 60)
        left = next(i for i in range(41) if torch.equal(wave[:, i : i + 60], crop))
        lefts.add(left)
    assert lefts <= set(range(40)) and len(lefts) > 25  # drawn from [0, 100 - 60)
    # The centre is silent (std below half the clip's): the first samples instead.
    loud_first = torch.cat([torch.randn(1, 30), torch.zeros(1, 170)], dim=1)
    assert torch.equal(RandomCrop(30, train=False)(loud_first), loud_first[:, :30])
    # Centre silent and the first samples quieter than half the clip's std: the last samples.
    quiet_first = torch.cat([0.01 * torch.randn(1, 30), torch.zeros(1, 140), torch.randn(1, 30)], dim=1)
    assert torch.equal(RandomCrop(30, train=False)(quiet_first), quiet_first[:, -30:])


def test_random_noise_draws_its_snr_from_10_to_121_db():
    wave = torch.from_numpy(tone(440.0, RATE, 1.0))[None]
    power = wave.double().pow(2).mean()
    generator = torch.Generator().manual_seed(0)
    snrs = []
    for _ in range(200):
        noise = RandomNoise(p=1.0, generator=generator)(wave) - wave
        snrs.append(10 * math.log10(power / noise.double().pow(2).mean()))
    assert 10 - 0.3 < min(snrs) and max(snrs) < 121 + 0.3
    assert min(snrs) < 15 and max(snrs) > 115 and abs(np.mean(snrs) - 65.5) < 8  # U[10, 121): mean 65.5, std 32
    noisy = [not torch.equal(RandomNoise(generator=generator)(wave), wave) for _ in range(400)]
    assert abs(np.mean(noisy) - 0.25) < 0.06  # p = 0.25
    silent = torch.zeros(1, 100)
    assert torch.equal(RandomNoise(p=1.0)(silent), silent)


def test_random_channel_flip_swaps_stereo_and_leaves_mono_undrawn():
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    mono = torch.randn(1, 50)
    assert torch.equal(RandomChannelFlip(generator=generator)(mono), mono)
    assert torch.equal(generator.get_state(), state)
    stereo = torch.stack([torch.zeros(50), torch.ones(50)])
    flipped = [bool(RandomChannelFlip(generator=generator)(stereo)[0, 0] == 1) for _ in range(200)]
    assert 0.4 < np.mean(flipped) < 0.6


def test_min_max_scale_is_the_official_int16_scaling_over_32768():
    wave = np.array([[-0.2, 0.1, 0.6], [0.0, 0.2, -0.1]], dtype=np.float32)
    low, high = wave.min(), wave.max()
    # AudioCLIP's utils.transforms.scale(wav, wav.min(), wav.max(), -32768.0, 32767.0)
    official = (wave.astype(np.float64) - low) * (32767.0 - -32768.0) / (high - low) + -32768.0
    scaled = min_max_scale(wave)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, official / 32768.0, rtol=0, atol=1e-7)
    assert scaled.min() == -1.0 and scaled.max() == np.float32(32767 / 32768)
    assert min_max_scale(np.array([[low, (low + high) / 2, high]]))[0, 1] == pytest.approx(-1 / 65536, abs=1e-7)
    assert (min_max_scale(np.full((2, 5), 0.3)) == 0).all()  # officially NaN
    as_tensor = min_max_scale(torch.from_numpy(wave))
    assert isinstance(as_tensor, torch.Tensor) and torch.equal(as_tensor, torch.from_numpy(scaled))


def test_train_and_eval_transforms_give_out_len_samples_and_eval_is_the_identity_at_out_len():
    torch.manual_seed(0)
    for length in (300, 1000, 1700):
        wave = torch.randn(2, length)
        assert audio_train_transform(1000)(wave).shape == (2, 1000)
        assert audio_eval_transform(1000)(wave).shape == (2, 1000)
    exact = np.random.default_rng(0).normal(size=(1, 1000)).astype(np.float32)
    assert torch.equal(audio_eval_transform(1000)(exact), torch.from_numpy(exact))
    torch.manual_seed(1)
    first = audio_train_transform(1000)(exact)
    torch.manual_seed(1)
    assert torch.equal(audio_train_transform(1000)(exact), first)


# -- ESC-50 -------------------------------------------------------------------------------------


def test_esc50_reads_the_exported_layout(esc50):
    root, exported = esc50
    data = ESC50(str(root), test_fold=1, **SMALL)
    assert data.classnames == [name for name, _ in sound_classes(8)] and data.classnames[0] == "red circle"
    assert data.templates == ["{}"]
    train = [(clip.path, clip.label) for clip in data.clips("train")]
    assert train == [clip for fold in (2, 3, 4, 5) for clip in exported[fold]] and len(train) == 32
    assert [(clip.path, clip.label) for clip in data.clips("test")] == exported[1]
    assert data.clips("val") == data.clips("test")
    data.setup("fit")

    batch = next(iter(data.train_dataloader()))
    assert batch["audio"].dtype == torch.float32 and batch["audio"].shape == (8, 1, LENGTH)
    assert batch["sample_rate"] == RATE and type(batch["sample_rate"]) is int
    assert batch["skipped_index"].tolist() == []
    for index, label, text in zip(batch["index"].tolist(), batch["label"].tolist(), batch["text"]):
        assert label == train[index][1]
        assert decode(text) == data.classnames[label]  # the bare class name, AudioCLIP's text
        assert torch.equal(text, tokenize(data.classnames[label], CONTEXT)[0])

    (val,) = list(data.val_dataloader())  # the 8 clips of fold 1
    assert set(val) == {"audio", "label", "index", "skipped_index", "sample_rate"}
    assert val["index"].tolist() == list(range(8)) and val["label"].tolist() == [label for _, label in exported[1]]
    for wave, (path, _) in zip(val["audio"], exported[1]):  # 0.5 s clips at 8 kHz: evaluation is the identity
        stored, _ = sf.read(path, dtype="float32", always_2d=True)
        assert torch.equal(wave, torch.from_numpy(stored.T))

    other = ESC50(str(root), test_fold=3, templates=["a sound of a {}."], **SMALL)
    assert [(clip.path, clip.label) for clip in other.clips("test")] == exported[3]
    assert {clip.path for clip in other.clips("train")} == {p for f in (1, 2, 4, 5) for p, _ in exported[f]}
    text = other._loader("train").dataset.dataset[0]["text"]
    assert decode(text) == f"a sound of a {other.classnames[other.clips('train')[0].label]} ."


def test_esc50_errors_name_the_fold_file_or_folder(esc50, tmp_path):
    root, _ = esc50
    for fold in (0, 6):
        with pytest.raises(ValueError, match=rf"test_fold must be one of ESC-50's folds 1\.\.5, got {fold}"):
            ESC50(str(root), test_fold=fold, **SMALL)
    with pytest.raises(FileNotFoundError, match=r"meta/esc50\.csv not found; expected ESC-50's layout"):
        ESC50(str(tmp_path), **SMALL)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text((root / "meta" / "esc50.csv").read_text())
    with pytest.raises(FileNotFoundError, match=rf"audio folder {re.escape(str(tmp_path / 'audio'))} not found"):
        ESC50(str(tmp_path), **SMALL)
    (tmp_path / "audio").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("filename,fold,category\n")
    with pytest.raises(ValueError, match=r"esc50\.csv has no column 'target'"):
        ESC50(str(tmp_path), **SMALL)


def test_exporters_are_deterministic(esc50, tmp_path):
    root, exported = esc50
    again = export_esc50(tmp_path, clips_per_class=5, classes=8, sample_rate=RATE, duration=SECONDS)
    assert {f: [(p.name, t) for p, t in clips] for f, clips in again.items()} == {
        f: [(p.name, t) for p, t in clips] for f, clips in exported.items()
    }
    assert all((root / "audio" / p.name).read_bytes() == p.read_bytes() for clips in again.values() for p, _ in clips)
    assert (tmp_path / "meta" / "esc50.csv").read_text() == (root / "meta" / "esc50.csv").read_text()


# -- UrbanSound8K -------------------------------------------------------------------------------


def test_urbansound8k_resamples_duplicates_and_min_max_scales(us8k):
    root, exported = us8k
    files = [path for clips in exported.values() for path, _ in clips]
    formats = {(sf.info(path).samplerate, sf.info(path).channels) for path in files}
    assert formats == {(22050, 1), (22050, 2), (48000, 1), (48000, 2)}

    data = UrbanSound8K(str(root), test_fold=2, **SMALL)
    assert data.classnames == [name for name, _ in sound_classes(4)]
    assert [(clip.path, clip.label) for clip in data.clips("test")] == exported[2]
    assert len(data.clips("train")) == 36
    data.setup("test")
    (batch,) = list(data.test_dataloader())
    assert batch["audio"].shape == (4, 2, LENGTH) and batch["sample_rate"] == RATE
    for wave, (path, _) in zip(batch["audio"], exported[2]):
        info = sf.info(path)
        length = math.ceil(info.frames * RATE / info.samplerate)  # resample_poly's length
        left = round(0.5 * (LENGTH - length))
        clip = wave[:, left : left + length]
        assert clip.min() == -1.0 and clip.max() == np.float32(32767 / 32768)  # min-max over both channels
        assert (wave[:, :left] == clip[:, 0].mean()).all() and (wave[:, left + length :] == clip[:, -1].mean()).all()
        assert torch.equal(clip[0], clip[1]) == (info.channels == 1)  # mono duplicated, stereo kept
        # The same as reading at 8 kHz in 2 channels and scaling.
        expected = min_max_scale(read_audio(path, RATE, channels=2)[:, :LENGTH])
        assert torch.equal(clip, torch.from_numpy(expected))

    mono = UrbanSound8K(str(root), channels=1, min_max=False, augment=False, **SMALL)
    batch = next(iter(mono.train_dataloader()))
    assert batch["audio"].shape == (8, 1, LENGTH) and batch["audio"].abs().max() < 0.9
    with pytest.raises(ValueError, match=r"folds 1\.\.10, got 11"):
        UrbanSound8K(str(root), test_fold=11, **SMALL)
    with pytest.raises(FileNotFoundError, match=r"metadata/UrbanSound8K\.csv not found"):
        UrbanSound8K(str(root / "audio"), **SMALL)


# -- bad samples --------------------------------------------------------------------------------


def test_bad_files_are_skipped_and_counted_or_raised_naming_the_file(tmp_path):
    exported = export_esc50(tmp_path, clips_per_class=5, classes=2, sample_rate=RATE, duration=SECONDS)
    data = ESC50(str(tmp_path), augment=False, **SMALL)
    train = [clip.path for clip in data.clips("train")]  # folds 2-5: 8 clips
    good = train[0].read_bytes()
    train[1].write_bytes(good[:30])  # truncated inside the header
    sf.write(train[3], np.zeros((0, 1), np.float32), RATE)  # no frames
    train[4].write_bytes(b"")  # 0 bytes
    train[6].unlink()  # missing
    bad = [1, 3, 4, 6]

    data.setup("fit")  # half the probed files are fine: the run starts
    (batch,) = list(data.train_dataloader())
    assert sorted(batch["skipped_index"].tolist()) == bad
    assert batch["audio"].shape == (4, 1, LENGTH) and sorted(batch["index"].tolist()) == [0, 2, 5, 7]
    assert batch["sample_rate"] == RATE

    names = "|".join(train[i].name for i in bad)
    strict = ESC50(str(tmp_path), bad_samples="raise", **SMALL)
    with pytest.raises(BadSampleError, match=rf"{train[1].name}: cannot decode audio"):
        strict.setup("fit")  # the probe finds the first bad file
    with pytest.raises(BadSampleError, match=rf"({names}): (cannot decode|no audio|empty file|file not found)"):
        next(iter(strict.train_dataloader()))

    for path, _ in exported[1]:  # the whole test fold unreadable
        path.write_bytes(b"")
    (batch,) = list(data.val_dataloader())
    assert set(batch) == {"skipped_index", "sample_rate"} and batch["skipped_index"].tolist() == [0, 1]
    with pytest.raises(BadSampleError, match=r"none of 2 sound files probed across the val split can be read"):
        data.setup("validate")


# -- AudioSet-style clip lists ------------------------------------------------------------------


def test_audio_clips_pair_each_clip_with_its_labels(tmp_path):
    exported = export_audio_clips_csv(tmp_path, {"train": 8, "val": 4}, sample_rate=RATE, duration=SECONDS)
    data = AudioClips(str(tmp_path / "train.csv"), str(tmp_path / "val.csv"), **SMALL)
    all_labels = {label for clips in exported.values() for _, labels in clips for label in labels}
    assert data.classnames == sorted(all_labels)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["audio"].shape == (8, 1, LENGTH) and batch["labels"].shape == (8, len(data.classnames))
    for index, text, caption, hot in zip(batch["index"].tolist(), batch["text"], batch["caption"], batch["labels"]):
        path, labels = exported["train"][index]
        assert caption == ", ".join(labels) and torch.equal(text, tokenize(caption, CONTEXT)[0])
        assert [data.classnames[i] for i in hot.nonzero().flatten().tolist()] == labels
    (val,) = list(data.val_dataloader())
    assert val["index"].tolist() == [0, 1, 2, 3] and val["caption"] == [", ".join(x) for _, x in exported["val"]]
    assert val["sample_rate"] == RATE
    with pytest.raises(ValueError, match="AudioClips has no test split: give test_csv"):
        data.test_dataloader()
    with pytest.raises(FileNotFoundError, match=r"missing\.csv not found"):
        AudioClips(str(tmp_path / "missing.csv"), **SMALL)

    rows = ["path,labels", "audio/train/000000.flac,red circle", "audio/train/000001.flac,"]
    (tmp_path / "unlabelled.csv").write_text("\n".join(rows) + "\n")
    assert len(AudioClips(str(tmp_path / "unlabelled.csv"), **SMALL).clips("train")) == 1  # left out, with a warning
    with pytest.raises(BadSampleError, match=r"unlabelled\.csv, line 3: 'audio/train/000001\.flac' has no labels"):
        AudioClips(str(tmp_path / "unlabelled.csv"), bad_samples="raise", **SMALL)


def test_audio_webdataset_streams_exact_batches_of_clips_and_texts(tmp_path):
    shards = export_audio_webdataset(tmp_path, samples=8, shard_size=4, sample_rate=RATE, duration=SECONDS)
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000001.tar"]
    spec = str(tmp_path / "shard-{000000..000001}.tar")
    data = AudioWebDataset(spec, 8, val_shards=spec, sample_rate=RATE, duration=SECONDS, context_length=CONTEXT,
                           batch_size=4, num_workers=0)  # fmt: skip
    data.setup("fit")
    loader = data.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 2
    indices = sorted(i for b in batches for i in b["index"].tolist())
    assert indices == [0, 1, 2, 3, 2**32, 2**32 + 1, 2**32 + 2, 2**32 + 3]  # shard number * 2**32 + position
    for batch in batches:
        assert batch["audio"].shape == (4, 1, LENGTH) and batch["sample_rate"] == RATE
        assert torch.equal(batch["text"], tokenize(batch["caption"], CONTEXT))
    val = list(data.val_dataloader())
    assert [k for b in val for k in b["key"]] == [f"{i:06d}" for i in range(8)]

    import webdataset as wds

    sound = io.BytesIO()
    sf.write(sound, tone(440.0, RATE, 0.1), RATE, format="FLAC")
    with wds.TarWriter(str(tmp_path / "bad.tar")) as writer:
        writer.write({"__key__": "a", "flac": b"not a sound", "txt": "red circle"})
        writer.write({"__key__": "b", "txt": "red circle"})  # no sound
        writer.write({"__key__": "c", "flac": sound.getvalue(), "txt": " "})  # no text
        writer.write({"__key__": "d", "flac": b"", "txt": "red circle"})  # empty sound
    options = dict(val_shards=str(tmp_path / "bad.tar"), sample_rate=RATE, duration=SECONDS, batch_size=4)
    options["num_workers"] = 0
    (batch,) = list(AudioWebDataset(str(shards[0]), 4, **options).val_dataloader())
    assert set(batch) == {"skipped_index", "sample_rate"} and batch["skipped_index"].tolist() == [0, 1, 2, 3]
    strict = AudioWebDataset(str(shards[0]), 4, bad_samples="raise", **options)
    with pytest.raises(BadSampleError, match=r"bad\.tar:a\.flac: cannot decode audio"):
        next(iter(strict.val_dataloader()))


# -- determinism --------------------------------------------------------------------------------


def test_training_batches_are_deterministic_under_a_seed(esc50):
    root, _ = esc50
    data = ESC50(str(root), **SMALL)

    def first_batch(seed):
        L.seed_everything(seed, verbose=False)
        return next(iter(data.train_dataloader()))

    first, again, other = first_batch(0), first_batch(0), first_batch(1)
    assert torch.equal(first["audio"], again["audio"]) and torch.equal(first["index"], again["index"])
    assert not torch.equal(first["index"], other["index"])
    # Augmented: not the file's samples (time stretch, shift), yet 8000 Hz clips of LENGTH samples.
    plain = ESC50(str(root), augment=False, **SMALL)._loader("train").dataset.dataset[int(first["index"][0])]
    assert not torch.equal(first["audio"][0], plain["audio"])
