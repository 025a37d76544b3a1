"""AudioCLIP's audio tower, ESResNeXt-fbsp: framing, window, filter bank, state-dict layout, loading, input checks.

The tower computes as the official code (``AndreyGuzhov/AudioCLIP``): checked once offline with the same weights
(random, with non-trivial filter bank parameters and batch-norm statistics), spectrogram and embedding bitwise equal.
These tests pin what that check rests on without the official code: its framing, its window, its filter formula,
its parameter names and shapes. Every tower here is the tiny one, or the full one on the meta device.
"""
import copy
import io
import math

import numpy as np
import pytest
import torch

from lit_clip.models.esresnext import (
    AUDIO_ARCHITECTURES,
    AudioConfig,
    ESResNeXtFBSP,
    LinearFBSP,
    audio_config,
    blackman_harris,
    frame_signal,
    load_audioset_weights,
)

TINY = audio_config("ESResNeXt-Tiny")
FULL = audio_config("ESResNeXt-fbsp")
# The official front end (44.1 kHz, 2048 / 561 / 1654) on the tiny body: the front end at full size, cheaply.
FULL_FRONT_END = AudioConfig(**{**TINY.to_dict(), "sample_rate": 44100, "n_fft": 2048, "hop_length": 561,
                                "win_length": 1654})  # fmt: skip


def tone(frequency: float, sample_rate: int, seconds: float = 1.0, amplitude: float = 0.5) -> torch.Tensor:
    """A sine ``[1, 1, samples]`` in [-1, 1]."""
    t = torch.arange(int(sample_rate * seconds), dtype=torch.float64) / sample_rate
    return (amplitude * torch.sin(2 * math.pi * frequency * t)).float().view(1, 1, -1)


def randomise_(tower: ESResNeXtFBSP, seed: int = 0) -> ESResNeXtFBSP:
    """Non-trivial filter bank parameters and batch-norm statistics, so that misplaced tensors show; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*tower.named_parameters(), *tower.named_buffers()]:
            if name.startswith("fbsp") or name == "window" or not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif t.ndim == 1:
                t.add_(0.2 * torch.rand(t.shape, generator=g) - 0.1)
        bins = tower.fbsp.m.numel()
        tower.fbsp.m.copy_(0.5 + 1.5 * torch.rand(bins, generator=g))
        tower.fbsp.fb.copy_(0.5 + 1.5 * torch.rand(bins, generator=g))
        tower.fbsp.fc.add_(torch.rand(bins, generator=g) - 0.5)
    return tower.eval()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomise_(ESResNeXtFBSP(TINY, output_dim=32))


def test_frame_counts_and_padding():
    # 5 s at 44.1 kHz (ESC-50): 392 frames; the 505 zeros that make whole frames are split 252 left, 253 right.
    signal = torch.arange(1, 220501, dtype=torch.float32).view(1, -1)
    frames = frame_signal(signal, 1654, 561)
    assert frames.shape == (1, 392, 1654)
    assert (frames[0, 0, :252] == 0).all() and frames[0, 0, 252] == 1
    assert frames[0, -1, -254] == 220500 and (frames[0, -1, -253:] == 0).all()
    assert torch.equal(frames[0, 1], signal[0, 561 - 252 : 561 - 252 + 1654])  # frame f starts at f * hop - 252
    assert frame_signal(torch.zeros(2, 176400), 1654, 561).shape == (2, 313, 1654)  # 4 s (US8K)
    # A short clip is one frame, centred: (1654 - 1000) // 2 zeros on the left.
    short = frame_signal(torch.ones(3, 1000), 1654, 561)
    assert short.shape == (3, 1, 1654)
    assert short[0, 0].nonzero()[[0, -1], 0].tolist() == [327, 1326]
    # Exactly whole frames: no padding.
    assert torch.equal(frame_signal(signal[:, : 1654 + 561], 1654, 561)[0, 1], signal[0, 561: 561 + 1654])


def test_window_is_periodic_blackman_harris():
    for length in (1654, 200):
        n = np.arange(length, dtype=np.float64)
        x = 2 * np.pi * n / length
        reference = 0.35875 - 0.48829 * np.cos(x) + 0.14128 * np.cos(2 * x) - 0.01168 * np.cos(3 * x)
        window = blackman_harris(length)
        assert window.dtype == torch.float32 and window.shape == (length,)
        # float32 rounding of the float64 formula: within one float32 step of it
        assert (np.abs(window.numpy().astype(np.float64) - reference) <= np.spacing(reference.astype(np.float32))).all()
    torch.testing.assert_close(blackman_harris(1654)[:3], torch.tensor([6.0000e-05, 6.0204e-05, 6.0817e-05]),
                               rtol=0, atol=5e-10)  # fmt: skip
    tower = ESResNeXtFBSP(TINY, 8)
    assert torch.equal(tower.window, blackman_harris(200)) and "window" in tower.state_dict()


def test_filter_bank_formula():
    """Each filter is sqrt(fb) sinc(fb t / m) ** m exp(-i fc t) / sqrt(n), the power on the principal branch (a
    negative lobe of the sinc gets the phase m pi): checked against numpy's complex arithmetic in float64."""
    fbsp = LinearFBSP(256)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        fbsp.m.copy_(0.5 + 1.5 * torch.rand(129, generator=g))
        fbsp.fb.copy_(0.5 + 1.5 * torch.rand(129, generator=g))
        fbsp.fc.add_(torch.rand(129, generator=g) - 0.5)
        real, imag = fbsp.weights(256, torch.float32, torch.device("cpu"))
    m, fb, fc = (p.detach().double().numpy()[:, None] for p in (fbsp.m, fbsp.fb, fbsp.fc))
    t = np.pi * np.linspace(-1, 1, 256)[None] + 1e-8
    x = fb * t / (m + 1e-8)
    reference = np.sqrt(fb) * np.power((np.sin(x) / x).astype(complex), m) * np.exp(-1j * fc * t) / 16
    assert (np.sin(x) / x < 0).any()  # negative lobes, where the window is complex
    np.testing.assert_allclose(real.numpy() + 1j * imag.numpy(), reference, rtol=0, atol=2e-6)


def test_initial_filters_are_a_unit_dft():
    fbsp = LinearFBSP(2048)
    real, imag = fbsp.weights(2048, torch.float32, torch.device("cpu"))
    norms = torch.linalg.vector_norm(torch.stack((real, imag), -1), dim=(-1, -2))
    torch.testing.assert_close(norms, torch.ones(1025), rtol=0, atol=1e-5)
    assert fbsp.filter_norm_loss().item() < 1e-10
    # on the grid of linspace(-1, 1, n): 2 pi / (n - 1), the phase referred to the frame's centre
    n = torch.arange(2048, dtype=torch.float64)
    t = math.pi * (-1 + 2 * n / 2047)
    torch.testing.assert_close(real[46].double(), torch.cos(46 * t) / 2048**0.5, rtol=0, atol=1e-6)
    torch.testing.assert_close(imag[46].double(), -torch.sin(46 * t) / 2048**0.5, rtol=0, atol=1e-6)


def test_a_tone_peaks_at_its_bin():
    # 1 kHz at 44.1 kHz: bin round(1000 * 2047 / 44100) = round(46.42) = 46, in the first band.
    tower = ESResNeXtFBSP(FULL_FRONT_END, 8)
    spec = tower.spectrogram(tone(1000, 44100))
    assert spec.shape == (1, 1, 3, 341, 77) and spec.dtype == torch.float32
    mean = spec[0, 0].mean(-1)
    assert round(1000 * 2047 / 44100) == 46 and mean[0].argmax().item() == 46
    assert mean[0].max() > mean[1:].max() + 60  # dB
    # The tiny front end: 129 bins of 8000 / 255 Hz in 3 bands of 43; bin 60 is the second band's 18th.
    tower = ESResNeXtFBSP(TINY, 8)
    spec = tower.spectrogram(tone(60 * 8000 / 255, 8000).expand(2, 3, -1))
    assert spec.shape == (2, 3, 3, 43, 123)  # 1 + ceil((8000 - 200) / 64) frames
    peak = spec[1, 2].mean(-1).flatten().argmax().item()
    assert divmod(peak, 43) == (1, 17)


def test_gradient_hooks_give_unit_inf_norms():
    fbsp = LinearFBSP(256)
    with torch.no_grad():
        fbsp.m.fill_(1.5)
    frames = torch.randn(2, 5, 256)
    saved = io.BytesIO()
    torch.save(fbsp, saved)
    saved.seek(0)
    # new parameter objects (copied, unpickled) get hooks too: tensors' hooks are neither copied nor pickled
    for module in (fbsp, copy.deepcopy(fbsp), torch.load(saved, weights_only=False)):
        real, imag = module(frames)
        (real.pow(2).sum() + imag.pow(2).sum() + module.filter_norm_loss()).backward()
        for param in (module.m, module.fb, module.fc):
            assert param.grad.abs().max().item() == pytest.approx(1.0, abs=1e-6)
    assert fbsp.bias.shape == (0,) and not fbsp.bias.requires_grad and fbsp.bias.grad is None


def expected_official_keys(output_dim: int = 1024) -> list[tuple[str, tuple[int, ...]]]:
    """The official tower's state dict, from its structure: torchvision's ResNeXt-50 32x4d without its classifier,
    the window first, att1-att4 after their stages, att5, fc and the filter bank last."""
    import torchvision

    with torch.device("meta"):
        body = torchvision.models.resnext50_32x4d().state_dict()
    attention = {  # in, out, kernel
        1: (64, 256, (3, 1)), 2: (256, 512, (1, 5)), 3: (512, 1024, (3, 1)), 4: (1024, 2048, (1, 5)),
        5: (2048, 2048, (3, 5)),
    }  # fmt: skip

    def gate(i):
        c_in, c_out, kernel = attention[i]
        keys = [("conv_depth.weight", (c_in, 1, *kernel)), ("conv_depth.bias", (c_in,)),
                ("conv_point.weight", (c_out, c_in, 1, 1)), ("conv_point.bias", (c_out,))]  # fmt: skip
        keys += [(f"bn.{k}", (c_out,)) for k in ("weight", "bias", "running_mean", "running_var")]
        return [(f"att{i}.{k}", shape) for k, shape in keys + [("bn.num_batches_tracked", ())]]

    keys = [("window", (1654,))]
    names = [k for k in body if not k.startswith("fc.")]
    for j, name in enumerate(names):
        keys.append((name, tuple(body[name].shape)))
        stage = name.split(".")[0]
        if stage.startswith("layer") and (j + 1 == len(names) or not names[j + 1].startswith(stage + ".")):
            keys += gate(int(stage[-1]))
    keys += gate(5) + [("fc.weight", (output_dim, 2048)), ("fc.bias", (output_dim,))]
    return keys + [("fbsp.m", (1025,)), ("fbsp.fb", (1025,)), ("fbsp.fc", (1025,)), ("fbsp.bias", (0,))]


def test_full_tower_has_the_official_state_dict():
    with torch.device("meta"):
        tower = ESResNeXtFBSP(FULL, 1024)
    ours = [(k, tuple(v.shape)) for k, v in tower.state_dict().items()]
    expected = expected_official_keys()
    assert len(expected) == 370 and ours == expected  # names, shapes and order
    assert sum(p.numel() for p in tower.parameters()) == 32_104_771
    assert tower.conv1.in_channels == 3 and tower.layer1[0].conv2.groups == 32


def test_load_audioset_weights(tiny):
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(527, TINY.width), torch.randn(527)  # AudioSet's classes
    tower = ESResNeXtFBSP(TINY, 32)
    fc = {k: v.clone() for k, v in tower.state_dict().items() if k.startswith("fc.")}
    load_audioset_weights(tower, state)
    loaded = tower.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert all(torch.equal(loaded[k], v) for k, v in fc.items())

    fresh = ESResNeXtFBSP(TINY, 32)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError, match=r"missing keys \['att3.bn.running_var'\]"):
        load_audioset_weights(fresh, {k: v for k, v in state.items() if k != "att3.bn.running_var"})
    with pytest.raises(ValueError, match=r"wrong shapes \['fbsp.m: \(5,\) in the state dict, \(129,\) in the tower'\]"):
        load_audioset_weights(fresh, {**state, "fbsp.m": torch.zeros(5)})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        load_audioset_weights(fresh, {**state, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match="an AudioCLIP state dict"):
        load_audioset_weights(fresh, {f"audio.{k}": v for k, v in state.items()})
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in before.items())  # nothing half-loaded


def test_bad_input_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match=r"float waveforms \[batch, audio channels, samples\].*shape \(2, 8000\)"):
        tiny(torch.zeros(2, 8000))
    with pytest.raises(ValueError, match=r"got a torch.int16 tensor"):
        tiny(torch.zeros(2, 1, 8000, dtype=torch.int16))
    message = "a clip of 120 samples is shorter than the front end's window of 200 samples (25 ms at 8000 Hz)"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny(torch.zeros(1, 1, 120))
    tiny(torch.zeros(1, 1, 200))  # one window is enough


def test_audio_channels_are_summed(tiny):
    audio = 0.3 * torch.randn(2, 2, 4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        both = tiny.forward_features(audio)
        each = tiny.forward_features(audio[:, :1]) + tiny.forward_features(audio[:, 1:])
        torch.testing.assert_close(both, each, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(tiny(audio), tiny.fc(each), rtol=1e-6, atol=1e-6)
        assert tiny(audio).shape == (2, 32)


def test_front_end_stays_fp32_under_autocast(tiny):
    audio = 0.3 * torch.randn(2, 1, 4000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = tiny.spectrogram(audio)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            spec = tiny.spectrogram(audio)
            embedding = tiny(audio)
            loss = tiny.filter_norm_loss()
    assert spec.dtype == torch.float32 and torch.equal(spec, reference)
    assert loss.dtype == torch.float32
    assert torch.isfinite(embedding).all()
    torch.testing.assert_close(embedding.float(), tiny(audio).detach(), rtol=0, atol=0.02)  # bf16 body


def test_configs():
    assert AUDIO_ARCHITECTURES["ESResNeXt-fbsp"] == AudioConfig()
    assert (FULL.bins, FULL.band_height, FULL.width) == (1025, 341, 2048)
    values = TINY.to_dict()
    assert values["layers"] == [1, 1, 1, 1] and AudioConfig.from_dict(values) == TINY
    with pytest.raises(ValueError, match=r"unknown AudioConfig keys \['hop', 'window'\]"):
        AudioConfig.from_dict({**values, "hop": 1, "window": "hann"})
    with pytest.raises(ValueError, match="unknown audio tower 'ESResNeXt'; known: ESResNeXt-Tiny, ESResNeXt-fbsp"):
        audio_config("ESResNeXt")
    with pytest.raises(ValueError, match="even n_fft of at least win_length"):
        AudioConfig(n_fft=1024)
