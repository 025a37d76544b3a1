"""AudioCLIP: its loss over the modality pairs present, its scales, partial training, loading (the released layout
and ours), evaluation and the TensorBoard pictures and sounds, on ShapesWorld's sounds at micro sizes.

The audio tower's numerics are tested against its formulas in tests/test_audio_tower.py, the audio data in
tests/test_audio_data.py, every AudioCLIP config in tests/test_cli.py."""
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_clip import load_clip
from lit_clip.callbacks import AudioSamples
from lit_clip.datamodules import ShapesWorldAudio
from lit_clip.datamodules.shapesworld.sounds import FUNDAMENTALS, ShapesWorldSounds
from lit_clip.datamodules.shapesworld.world import ShapesWorld
from lit_clip.losses import AudioCLIPLoss
from lit_clip.methods import AudioCLIPPretraining
from lit_clip.models import create_model
from lit_clip.models.audioclip import AudioCLIP, with_audio_tower


def normalized(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def both_ways(a, b, scale):
    """Cross-entropy of ``scale * a @ b.T`` over rows plus over columns: one pair's term, as the released code."""
    logits, labels = scale * a @ b.T, torch.arange(a.shape[0])
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)


def test_the_loss_of_three_modalities_is_the_mean_of_the_six_directions_and_of_two_the_sum_of_both():
    audio, image, text = normalized(6, 8, seed=0), normalized(6, 8, seed=1), normalized(6, 8, seed=2)
    scales = {("audio", "image"): torch.tensor(30.0), ("audio", "text"): torch.tensor(50.0),
              ("image", "text"): torch.tensor(100.0)}  # fmt: skip
    terms = AudioCLIPLoss()({"audio": audio, "image": image, "text": text}, scales)
    expected = (both_ways(audio, image, 30.0) + both_ways(audio, text, 50.0) + both_ways(image, text, 100.0)) / 6
    torch.testing.assert_close(sum(terms.values()), expected)
    assert set(terms) == {"audio_image_loss", "audio_text_loss", "image_text_loss"}
    audio_text = AudioCLIPLoss()({"audio": audio, "text": text}, scales)  # ESC-50's batches: no images
    assert set(audio_text) == {"audio_text_loss"}
    torch.testing.assert_close(audio_text["audio_text_loss"], both_ways(audio, text, 50.0))
    with pytest.raises(ValueError, match="two modalities"):
        AudioCLIPLoss()({"audio": audio}, scales)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return with_audio_tower(create_model("RN-Tiny"), "ESResNeXt-Tiny").eval()


def test_a_clip_gets_an_audio_tower_and_keeps_its_own_weights_and_scales(model):
    torch.manual_seed(0)
    clip = create_model("RN-Tiny").eval()
    images, tokens = torch.randn(2, 3, 64, 64), torch.randint(1, 400, (2, 12))
    torch.testing.assert_close(model.encode_image(images), clip.encode_image(images))
    torch.testing.assert_close(model.encode_text(tokens), clip.encode_text(tokens))
    assert model.encode_audio(torch.zeros(2, 1, 8000)).shape == (2, clip.config.embed_dim)
    assert model.logit_scale_ai.item() == model.logit_scale_at.item() == pytest.approx(math.log(100))
    with torch.no_grad():
        model.logit_scale_ai.fill_(10.0)  # used clamped to [1, 100], as the released code
        model.logit_scale_at.fill_(-3.0)
    scales = model.logit_scales()
    assert scales[("audio", "image")].item() == 100.0 and scales[("audio", "text")].item() == 1.0


def test_the_released_layout_and_our_checkpoints_load_as_an_audioclip(model, tmp_path):
    """A bare state dict (the released files' form; names and shapes as theirs) and a training checkpoint both come
    back as the same AudioCLIP: every tensor of the file is used and every parameter covered (a strict load)."""
    state = {key: torch.randn_like(value) if value.is_floating_point() and value.numel() else value
             for key, value in model.state_dict().items()}  # fmt: skip
    torch.save(state, tmp_path / "AudioCLIP-Tiny.pt")
    loaded = load_clip(tmp_path / "AudioCLIP-Tiny.pt")
    assert isinstance(loaded, AudioCLIP) and loaded.audio_config == model.audio_config
    assert loaded.config.quick_gelu  # the released AudioCLIP's CLIP is OpenAI's
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)
    del state["audio.att2.bn.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"missing: audio\.att2\.bn\.weight"):
        load_clip(tmp_path / "broken.pt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two steps of partial training and a validation, through a Trainer that logs to TensorBoard."""
    root = tmp_path_factory.mktemp("audioclip")
    data = ShapesWorldAudio(image_size=64, batch_size=8, train_samples=16, val_samples=8, zeroshot_samples_per_class=1,
                            duration=0.5, context_length=16)  # fmt: skip
    torch.manual_seed(0)
    method = AudioCLIPPretraining(architecture="RN-Tiny", optimizer="adamw", lr=1e-3)
    logger = TensorBoardLogger(root, name="run")
    trainer = L.Trainer(max_steps=2, logger=logger, callbacks=[AudioSamples(num_samples=3, image_px=40)],
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                        limit_val_batches=1, num_sanity_val_steps=0)  # fmt: skip
    frozen = {name: p.detach().clone() for name, p in method.model.named_parameters() if not p.requires_grad}
    trainer.fit(method, data)
    logger.experiment.flush()
    return method, trainer, frozen, logger


def test_partial_training_moves_the_audio_tower_only(trained):
    method, trainer, frozen, _ = trained
    trainable = {name for name, p in method.model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in method.model.named_parameters()
                         if name.startswith("audio.") or name in ("logit_scale_ai", "logit_scale_at")}  # fmt: skip
    for name, before in frozen.items():
        torch.testing.assert_close(method.model.get_parameter(name), before, msg=name)
    assert not method.model.visual.training and method.model.audio.training  # the frozen tower's BatchNorm rests


def test_evaluation_logs_zero_shot_audio_classification_and_retrieval_between_every_pair(trained):
    _, trainer, _, _ = trained
    logged = trainer.logged_metrics
    for name in ("val/audio_zeroshot_top1", "val/a2t_R@1", "val/t2a_R@5", "val/a2i_R@1", "val/i2a_R@10", "val/i2t_R@1"):
        assert name in logged and 0.0 <= float(logged[name]) <= 1.0, name
    for term in ("audio_image_loss", "audio_text_loss", "image_text_loss", "filter_norm_loss"):
        assert f"train/{term}" in logged


def test_tensorboard_gets_spectrograms_playable_sounds_and_the_three_similarity_matrices(trained):
    events = EventAccumulator(trained[3].log_dir)
    events.Reload()
    assert {"val/audio_samples", "val/similarity_audio_text", "val/similarity_image_audio",
            "val/similarity_image_text"} <= set(events.Tags()["images"])  # fmt: skip
    assert {"val/audio_0", "val/audio_1", "val/audio_2"} <= set(events.Tags()["audio"])
    (clip,) = events.Audio("val/audio_0")
    assert clip.sample_rate == 8000 and clip.length_frames == 4000


def test_a_lit_clip_checkpoint_records_its_audio_tower(trained, tmp_path):
    method, trainer, _, _ = trained
    trainer.save_checkpoint(tmp_path / "audioclip.ckpt")
    loaded = load_clip(tmp_path / "audioclip.ckpt")
    assert isinstance(loaded, AudioCLIP) and loaded.audio_config == method.model.audio_config
    sound = torch.from_numpy(ShapesWorldSounds(ShapesWorld(), duration=0.5).scene("test", 0)[1])[None, None]
    torch.testing.assert_close(loaded.encode_audio(sound), method.model.eval().encode_audio(sound))


def test_a_sound_at_another_rate_than_the_towers_is_refused_with_the_fix(model):
    method = AudioCLIPPretraining(architecture="RN-Tiny")
    with pytest.raises(ValueError, match="at 16000 Hz but this audio tower takes 8000 Hz"):
        method.loss_terms({"audio": torch.zeros(2, 1, 16000), "text": torch.ones(2, 8, dtype=torch.long),
                           "sample_rate": 16000})  # fmt: skip


def test_shapesworld_sounds_name_their_objects():
    """Each object's sound peaks at its colour's pitch; the same scene always sounds the same; sounds of scenes
    differ."""
    sounds = ShapesWorldSounds(ShapesWorld(), sample_rate=8000, duration=1.0)
    for index in range(4):
        scene, sound = sounds.single_object("val", index, class_index=9 * index)
        spectrum = np.abs(np.fft.rfft(sound))
        peak = np.fft.rfftfreq(len(sound), 1 / 8000)[spectrum.argmax()]
        assert peak == pytest.approx(FUNDAMENTALS[scene.objects[0].color], rel=0.03)
    np.testing.assert_array_equal(sounds.scene("train", 5)[1], sounds.scene("train", 5)[1])
    assert not np.array_equal(sounds.scene("train", 5)[1], sounds.scene("train", 6)[1])
