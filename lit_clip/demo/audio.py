"""The audio tab: an AudioCLIP checkpoint (``AudioCLIPPretraining``) hears a sound file: its zero-shot probabilities
over class names the user types, the spectrogram its audio tower computes and, given an image too, how close the
sound and the image lie in the joint space."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import gradio as gr
import lightning as L
import numpy as np
import soundfile as sf
import torch
from PIL import Image
from torch import Tensor

from lit_clip import drawing
from lit_clip.datamodules.audio import AudioReader, audio_eval_transform
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.shapesworld import ShapesWorld
from lit_clip.datamodules.shapesworld import class_names as shapes_class_names
from lit_clip.datamodules.shapesworld.sounds import ShapesWorldSounds
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_batch, image_input, no_progress, open_image
from lit_clip.demo.weights import Checkpoint, Weights, predict
from lit_clip.methods import AudioCLIPPretraining
from lit_clip.zeroshot import build_zeroshot_classifier, scaled_cosine_logits

FAMILY = "audio"
# ShapesWorldAudio's sounds, as configs/audioclip/shapes.yaml trains on them (ESResNeXt-Tiny hears 8 kHz).
EXAMPLE_SAMPLE_RATE, EXAMPLE_SECONDS = 8000, 1.0
SPECTROGRAM_PX = 256


@torch.no_grad()
def classify_sound(weights: Weights, choice: str | None, sound: str | Path | None, names: str,
                   image: Image.Image | None = None, progress=no_progress,
                   ) -> tuple[dict[str, float], np.ndarray, float | None]:  # fmt: skip
    """What AudioCLIP hears in ``sound`` with the checkpoint ``choice`` (a drop-down label or a path):

    - each class name's probability (names one per line, or comma-separated), as the method's zero-shot audio
      evaluation scores (its ``audio_zeroshot`` head: ``softmax(100 * sound . class)``, each class the mean of its
      prompts in the templates of the checkpoint's data module, else the bare name, AudioCLIP's);
    - the sound's spectrogram as its audio tower's front end computes it (the three frequency bands stacked, low at
      the bottom, as the TensorBoard callback draws it);
    - with ``image``, the cosine similarity of the sound and the image in the joint space, else None.
    """
    classnames = class_names(names, at_least=2)
    progress(0.1, desc="loading the checkpoint")
    checkpoint, method = weights.load(choice, FAMILY)
    data_module = weights.data_module(checkpoint)
    progress(0.5, desc="reading the sound")
    batch = {"audio": sound_batch(sound, checkpoint, data_module, method)}
    if image is not None:  # at the size the data module's images had (ShapesWorldAudio's), else the tower's
        batch["image"] = image_batch(method.model, [image], checkpoint.datamodule_hyper_parameters.get("image_size"))
    progress(0.7, desc="listening")
    prediction = predict(method, batch)
    # The head's computation on a classifier of our own: building the cached method's head would replace the
    # classes (and reset the accuracy) of its evaluation.
    classifier = build_zeroshot_classifier(method.model, classnames, weights.templates(checkpoint, ("{}",)))
    logits = scaled_cosine_logits(method.audio_zeroshot.logit_scale, prediction["audio_embedding"], classifier)
    probabilities = logits.softmax(dim=-1)[0]
    decibels = method.model.audio.spectrogram(batch["audio"])[0, 0].flatten(0, 1)  # first channel, bands stacked
    similarity = None
    if image is not None:
        similarity = float(prediction["audio_embedding"][0] @ prediction["image_embedding"][0])
    return dict(zip(classnames, probabilities.tolist())), enlarged(drawing.spectrogram_picture(decibels)), similarity


def sound_batch(source: str | Path | None, checkpoint: Checkpoint, data_module: L.LightningDataModule | None,
                method: AudioCLIPPretraining) -> Tensor:  # fmt: skip
    """``[1, channels, samples]`` on the method's device: a sound file read and prepared as the checkpoint's data
    module prepares its evaluation clips (:func:`sound_preparation`)."""
    if source is None:
        raise DemoInputError("give a sound: upload a sound file, or pick an example below")
    tower = method.model.audio_config
    read, prepare = sound_preparation(checkpoint, data_module, tower.sample_rate)
    try:
        wave = read(Path(source))
    except BadSampleError as error:
        raise DemoInputError(f"{error}; expected a sound file (WAV, FLAC, OGG, MP3)") from error
    wave = prepare(wave) if prepare else torch.from_numpy(wave)
    if wave.shape[-1] < tower.win_length:
        raise DemoInputError(f"the sound is {wave.shape[-1] / tower.sample_rate * 1000:.3g} ms long; the audio tower "
                             f"needs at least {tower.win_length / tower.sample_rate * 1000:.3g} ms")  # fmt: skip
    return wave[None].to(method.device)


def sound_preparation(checkpoint: Checkpoint, data_module: L.LightningDataModule | None, sample_rate: int,
                      ) -> tuple[Callable[[Path], np.ndarray], Callable[[np.ndarray], Tensor] | None]:  # fmt: skip
    """How the checkpoint's data module reads a sound file and prepares it for evaluation (the audio data modules
    have no predict loader of files): a data module of sound files (ESC-50, UrbanSound8K, AudioClips) by its own
    ``reader()`` (its rate, channels, UrbanSound8K's cut and min-max scaling) and ``audio_eval_transform(out_len)``
    (centred padding or crop to its clips' length), as its test loader."""
    if data_module is not None and hasattr(data_module, "reader"):
        return data_module.reader(), audio_eval_transform(data_module.out_len)
    # ShapesWorldAudio's sounds are made, not read; AudioWebDataset's are decoded from its shards (at its rate and
    # channels); and a data module that cannot be rebuilt here (its files absent) is read by its recorded arguments.
    # None: the sound's length as it is.
    data = checkpoint.datamodule_hyper_parameters
    length = round(sample_rate * data["duration"]) if data.get("duration") else None
    min_max = bool(data.get("min_max"))  # UrbanSound8K's scaling, of its clips' first `length` samples
    reader = AudioReader(sample_rate, data.get("channels", 1), length if min_max else None, min_max)
    return reader, audio_eval_transform(length) if length else None


def enlarged(picture: np.ndarray, min_side: int = SPECTROGRAM_PX) -> np.ndarray:
    """``picture`` with each pixel repeated into a square, so that its shorter side is at least ``min_side``: a
    spectrogram of a hundred-odd bins and frames is a stamp on the page, and blurs if the browser scales it."""
    factor = max(1, -(-min_side // min(picture.shape[:2])))
    return picture.repeat(factor, axis=0).repeat(factor, axis=1)


def example_sounds(folder: Path) -> list[tuple[Path, Path]]:
    """``<class>.wav`` for each of :data:`~lit_clip.demo.examples.SINGLE_OBJECTS`, with its picture: the sound of
    the very scene that picture shows (ShapesWorldSounds of the same world), 1 s at 8 kHz, mono, 16-bit."""
    world, names = ShapesWorld(image_size=examples.EXAMPLE_PX), shapes_class_names("color_shape")
    sounds = ShapesWorldSounds(world, EXAMPLE_SAMPLE_RATE, EXAMPLE_SECONDS)
    pairs = []
    for name, picture in zip(examples.SINGLE_OBJECTS, examples.single_object_images(folder)):
        path = folder / f"{name.replace(' ', '_')}.wav"
        if not path.exists():
            _, sound = sounds.single_object("test", 0, names.index(name))
            sf.write(path, sound, EXAMPLE_SAMPLE_RATE, subtype="PCM_16")
        pairs.append((path, picture))
    return pairs


def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    gr.Markdown(
        "AudioCLIP hears a sound: the probability of each class name you type (written into the prompt templates "
        "its data module evaluated with), the spectrogram its audio tower computes and, with an image, the cosine "
        "similarity of sound and image. Train a checkpoint with `lit-clip fit --config configs/audioclip/shapes.yaml`"
        " and start the page with `--checkpoints runs/audioclip-shapes`."
    )
    choices = weights.choices(FAMILY)
    with gr.Row():
        with gr.Column():
            checkpoint = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True,
                                     label="AudioCLIP checkpoint (or type its path)")  # fmt: skip
            sound = gr.Audio(type="filepath", sources=["upload"], label="sound")
            names = gr.Textbox(label="class names (one per line, or comma-separated)", lines=3)
            image = image_input("image (optional)")
            run = gr.Button("Listen", variant="primary")
        with gr.Column():
            probabilities = gr.Label(label="probabilities", num_top_classes=10)
            spectrogram = gr.Image(type="numpy", format="png", label="spectrogram (low frequencies at the bottom)")
            similarity = gr.Number(label="sound-image cosine similarity")
    shapes = ", ".join(examples.SINGLE_OBJECTS)
    gr.Examples([[str(path), shapes, str(picture)] for path, picture in example_sounds(folder)],
                inputs=[sound, names, image])  # fmt: skip

    def listen(checkpoint_label, sound_file, names_text, image_file, progress=gr.Progress()):
        image = open_image(image_file) if image_file else None
        return classify_sound(weights, checkpoint_label, sound_file, names_text, image, progress)

    run.click(shown(listen), [checkpoint, sound, names, image], [probabilities, spectrogram, similarity],
              api_name="classify_sound")  # fmt: skip
