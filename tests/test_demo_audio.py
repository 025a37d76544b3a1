"""The demo page's audio tab through Gradio's client: an AudioCLIP checkpoint's zero-shot probabilities, spectrogram
and sound-image similarity equal the model's computed in Python; bad input is a message on the page."""
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from conftest import fit_checkpoint
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import lit_clip
from lit_clip import drawing
from lit_clip.datamodules.images import load_rgb
from lit_clip.datamodules.shapesworld import SHAPES_TEMPLATES
from lit_clip.demo import audio
from lit_clip.demo.weights import Weights, find_checkpoints
from lit_clip.templates import fill_template
from lit_clip.transforms import clip_eval_transform

AUDIO = [("Audio", audio)]
NAMES = ["red circle", "blue square", "green triangle"]


@pytest.fixture(scope="module")
def audioclip_checkpoint(tmp_path_factory, lit_clip_checkpoint):
    """A one-step ``lit-clip fit --config configs/audioclip/shapes.yaml`` on the tiny CLIP."""
    return fit_checkpoint("audioclip/shapes.yaml", tmp_path_factory.mktemp("audioclip"), lit_clip_checkpoint)


def serve(demo_page, checkpoint, folders=()):
    """The audio tab of a page that found ``checkpoint`` (and reads typed paths in ``folders``), its drop-down label
    and its weights."""
    weights = Weights(None, find_checkpoints([checkpoint]), folders=folders)
    (choice,) = weights.choices("audio")
    return demo_page(weights, AUDIO), choice, weights


def test_sound_through_the_page_equals_audioclip_in_python(audioclip_checkpoint, demo_page, tmp_path):
    client, choice, weights = serve(demo_page, audioclip_checkpoint)
    sound, picture = audio.example_sounds(tmp_path / "examples")[0]
    probabilities, spectrogram, similarity = client.predict(
        choice, handle_file(str(sound)), "\n".join(NAMES), handle_file(str(picture)), api_name="/classify_sound"
    )

    # AudioCLIP written out: the sound file as it is (1 s at the tower's 8 kHz, ShapesWorldAudio's clips: nothing to
    # cut or pad), each class the renormalised mean of its ShapesWorld prompts, softmax of 100 x the cosines; the
    # image at the size of ShapesWorldAudio's (configs/audioclip/shapes.yaml: 64 px), not the tower's 32.
    model = lit_clip.load_clip(str(audioclip_checkpoint)).eval()
    data_image_size = torch.load(audioclip_checkpoint, weights_only=False)["datamodule_hyper_parameters"]["image_size"]
    assert data_image_size != model.config.vision.image_size
    wave, rate = sf.read(sound, dtype="float32")
    assert rate == model.audio_config.sample_rate and wave.shape == (rate,)
    waveform = torch.from_numpy(wave)[None, None]
    with torch.no_grad():
        heard = F.normalize(model.encode_audio(waveform), dim=-1)
        classes = []
        for name in NAMES:
            prompts = lit_clip.tokenize([fill_template(t, name) for t in SHAPES_TEMPLATES], model.context_length)
            classes.append(F.normalize(F.normalize(model.encode_text(prompts), dim=-1).mean(dim=0), dim=-1))
        expected = (100 * heard @ torch.stack(classes).T).softmax(dim=-1)[0]
        pixels = clip_eval_transform(data_image_size)(load_rgb(picture))[None]
        seen = F.normalize(model.encode_image(pixels), dim=-1)
        decibels = model.audio.spectrogram(waveform)[0, 0].flatten(0, 1)

    on_page = {entry["label"]: entry["confidence"] for entry in probabilities["confidences"]}
    assert set(on_page) == set(NAMES)
    torch.testing.assert_close(torch.tensor([on_page[n] for n in NAMES]), expected, atol=1e-5, rtol=1e-4)
    assert similarity == pytest.approx(float(heard[0] @ seen[0]), abs=1e-5)
    expected_picture = audio.enlarged(drawing.spectrogram_picture(decibels))
    assert min(expected_picture.shape[:2]) >= audio.SPECTROGRAM_PX
    np.testing.assert_array_equal(np.asarray(Image.open(spectrogram).convert("RGB")), expected_picture)
    # The page scored with a classifier of its own: the cached method's zero-shot head is left as loaded.
    assert weights.load(choice, "audio")[1].audio_zeroshot.classifier is None

    # Without an image: the same probabilities, and no similarity.
    probabilities, _, similarity = client.predict(choice, handle_file(str(sound)), ", ".join(NAMES), None,
                                                  api_name="/classify_sound")  # fmt: skip
    assert similarity is None
    assert {e["label"]: e["confidence"] for e in probabilities["confidences"]} == pytest.approx(on_page, abs=1e-6)


def test_bad_input_is_a_message_on_the_page(audioclip_checkpoint, lit_clip_checkpoint, demo_page, tmp_path):
    client, choice, _ = serve(demo_page, audioclip_checkpoint, folders=[lit_clip_checkpoint.parent])
    sound, picture = audio.example_sounds(tmp_path / "examples")[0]
    names = "red circle, blue square"
    with pytest.raises(AppError, match=r"red_circle\.png: cannot decode audio .*expected a sound file"):
        client.predict(choice, handle_file(str(picture)), names, None, api_name="/classify_sound")
    with pytest.raises(AppError, match="give a sound"):
        client.predict(choice, None, names, None, api_name="/classify_sound")
    with pytest.raises(AppError, match="at least 2 class names"):
        client.predict(choice, handle_file(str(sound)), "red circle", None, api_name="/classify_sound")
    with pytest.raises(AppError, match="choose a checkpoint"):
        client.predict(None, handle_file(str(sound)), names, None, api_name="/classify_sound")
    with pytest.raises(AppError, match="does not name its method"):  # a typed path: a checkpoint of no method
        client.predict(str(lit_clip_checkpoint), handle_file(str(sound)), names, None, api_name="/classify_sound")
    with pytest.raises(AppError, match="reads typed checkpoint paths only inside its --checkpoints folders"):
        client.predict(str(sound), handle_file(str(sound)), names, None, api_name="/classify_sound")
