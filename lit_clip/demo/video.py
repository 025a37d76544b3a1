"""The video tab: a CLIP4Clip, ActionCLIP or VideoCLIP checkpoint scores a video file against texts the user types
(queries for the retrieval methods, class names for ActionCLIP) and shows the frames it sampled.

The video and the texts are prepared as ``lit-clip predict`` prepares the checkpoint's: by its data module, rebuilt
from the arguments the checkpoint records (its predict loader's reader, its tokenizer, its prompt templates)."""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
import lightning as L
import numpy as np
import torch
from torch import Tensor

from lit_clip import drawing
from lit_clip.datamodules.export_video import write_video
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.shapesworld.clips import MOTIONS, ShapesWorldClips
from lit_clip.datamodules.timed_captions import CaptionTokens, TimedText, TimedVideoFiles
from lit_clip.datamodules.video import VIDEO_EXTENSIONS, ClipReader, collate_videos, video_transform
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_size, lines, no_progress
from lit_clip.demo.weights import Checkpoint, Weights, predict
from lit_clip.methods import ActionCLIP, CLIP4Clip, VideoCLIP
from lit_clip.models.clip import CLIP
from lit_clip.tokenizer import tokenize

FAMILY = "video"
DEFAULT_FRAMES = 8  # for a checkpoint whose recorded data module names no frame count
FRAME_PX = 96
# One draw of ShapesWorld's test split shown in three motions: only the motion tells the clips' captions apart.
EXAMPLE_MOTIONS = ("moving right", "growing", "swapping places")
EXPECTED_VIDEO = f"expected a video file ({', '.join(VIDEO_EXTENSIONS)})"


@torch.no_grad()
def score_video(weights: Weights, choice: str | None, video: str | Path | None, texts: str, progress=no_progress,
                ) -> tuple[dict[str, float], list[list], np.ndarray]:  # fmt: skip
    """What the checkpoint ``choice`` (a drop-down label or a path) makes of ``video`` against ``texts``:

    - ActionCLIP: its ``predict_step``'s class probabilities over the class names (one per line, or comma-separated),
      averaged over its data module's templates (else ActionCLIP's 16, the recognition sets' default), as it
      evaluates;
    - CLIP4Clip and VideoCLIP: the method's score of each query (one per line) with the video, what its retrieval
      ranks by (``similarity_matrix``: CLIP4Clip's scaled cosine, VideoCLIP's dot product), and their softmax over
      the queries as probabilities.

    Returns the probabilities, the ``[text, score]`` rows best first, and the sampled frames as the model sees them
    (after its preprocessing), captioned with the best text.
    """
    progress(0.1, desc="loading the checkpoint")
    checkpoint, method = weights.load(choice, FAMILY)
    if isinstance(method, VideoCLIP) and method.hparams.feature_dim is not None:
        raise DemoInputError(f"{checkpoint.path} is a VideoCLIP of precomputed per-second features (feature_dim "
                             f"{method.hparams.feature_dim}), which the page cannot compute from a video; use one "
                             "that encodes frames with its CLIP (configs/videoclip/shapes.yaml)")  # fmt: skip
    recognition = isinstance(method, ActionCLIP)
    typed = class_names(texts, at_least=2) if recognition else list(dict.fromkeys(lines(texts, "queries")))
    data_module = weights.data_module(checkpoint)
    progress(0.4, desc="decoding the video")
    batch = video_batch(video, checkpoint, data_module, method)
    progress(0.6, desc="scoring")
    if recognition:
        templates = weights.templates(checkpoint, "actionclip")
        scores = probabilities = predict(method, batch, classnames=typed, templates=templates)["probabilities"][0]
    else:
        batch |= {"text": query_tokens(method, checkpoint, data_module, typed).to(method.device), "caption": typed}
        scores = method.similarity_matrix(batch)[0][0].float()
        probabilities = scores.softmax(dim=-1)
    ranking = sorted(zip(typed, scores.tolist()), key=lambda pair: -pair[1])
    frames = list(drawing.to_uint8_image(batch["video"][0]))
    strip = drawing.frame_strips([frames], [ranking[0][0]], FRAME_PX)
    return dict(zip(typed, probabilities.tolist())), [[text, round(score, 4)] for text, score in ranking], strip


def video_batch(source: str | Path | None, checkpoint: Checkpoint, data_module: L.LightningDataModule | None,
                method: CLIP4Clip | ActionCLIP | VideoCLIP) -> dict[str, Tensor]:  # fmt: skip
    """``{"video" [1, T, 3, S, S], "frame_mask" [1, T]}`` on the method's device: a video file as ``lit-clip
    predict`` reads the checkpoint's videos, through its data module's own predict loader (its frame count and
    sampling, its evaluation transform, DiDeMo's first 31 s ...). VideoCLIP's data modules have none: their
    evaluation's frames (TimedCaptions': the middle frame of each second)."""
    if source is None:
        raise DemoInputError("give a video: upload a video file, or pick an example below")
    path, data = Path(source), checkpoint.datamodule_hyper_parameters
    if path.suffix.lower() not in VIDEO_EXTENSIONS:  # what predict_videos reads as a video, not as a list of paths
        raise DemoInputError(f"{path.name} is not a video file; {EXPECTED_VIDEO}")
    try:
        if data_module is not None and "predict_videos" in data_module.hparams:
            batch = predict_loader_batch(data_module, path)
        elif data.get("video_dir"):
            batch = collate_videos([{"video": per_second_frames(path, data)}])
        else:  # no predict loader of videos, or no data module rebuilt here: the recorded arguments
            batch = collate_videos([{"video": recorded_reader(checkpoint, method)(path)}])
    except BadSampleError as error:
        raise DemoInputError(f"{error}; {EXPECTED_VIDEO}") from error
    return {key: batch[key].to(method.device) for key in ("video", "frame_mask")}


def predict_loader_batch(data_module: L.LightningDataModule, path: Path) -> dict:
    """The batch of ``path`` that the data module's ``predict_dataloader`` gives ``lit-clip predict``, its
    ``predict_videos`` pointed at the file for the call (its settings restored after): an unreadable file raises
    rather than being skipped, no queries file is read, no worker process is started for one video."""
    hparams = data_module.hparams
    for_one_video = {"predict_videos": str(path), "predict_texts": None, "bad_samples": "raise", "num_workers": 0}
    saved = {key: hparams[key] for key in for_one_video if key in hparams}
    hparams.update({key: value for key, value in for_one_video.items() if key in saved})
    try:
        (batch,) = data_module.predict_dataloader()
    finally:
        hparams.update(saved)
    return batch


def per_second_frames(path: Path, data: dict) -> Tensor:
    """``[T, 3, S, S]``: a VideoCLIP TimedCaptions' video file as it reads its videos (``TimedVideoFiles``: the
    middle frame of each second at its ``image_size``), at most ``max_video_len`` seconds as its evaluation clips."""
    video = TimedVideoFiles({path.stem: TimedText((), (), ())}, None, str(path.parent), data["image_size"])(path.stem)
    return video.read(range(min(video.num_seconds, data["max_video_len"])))


def recorded_reader(checkpoint: Checkpoint, method: CLIP4Clip | ActionCLIP | VideoCLIP) -> ClipReader:
    """Only where the checkpoint's data module has no predict loader of videos (ShapesWorldTimedCaptions, whose clips
    the model saw whole: ``clip_frames`` frames) or cannot be rebuilt here (UCF101's or HMDB51's class lists absent,
    say): a reader from its recorded arguments (frame count, ``uniform`` sampling by default, image size, the
    recognition data modules' test crop)."""
    data = checkpoint.datamodule_hyper_parameters
    size = data.get("image_size") or image_size(frame_encoder(method))
    frames = data.get("num_frames") or data.get("clip_frames") or DEFAULT_FRAMES
    resize = size * 256 // 224 if "num_clips" in data else None  # num_clips: the recognition data modules' own
    return ClipReader(frames, data.get("sampling") or "uniform", video_transform(size, resize=resize))


def frame_encoder(method: CLIP4Clip | ActionCLIP | VideoCLIP) -> CLIP:
    """The CLIP whose image tower encodes the method's frames."""
    return method.clip if isinstance(method, VideoCLIP) else method.model


def query_tokens(method: CLIP4Clip | VideoCLIP, checkpoint: Checkpoint, data_module: L.LightningDataModule | None,
                 queries: list[str]) -> Tensor:  # fmt: skip
    """The queries' token ids as the checkpoint's data module writes texts: CLIP's BPE at its ``context_length``
    for CLIP4Clip (what its ``predict_texts`` loader gives), its ``CaptionTokens`` for VideoCLIP."""
    data = checkpoint.datamodule_hyper_parameters
    if not isinstance(method, VideoCLIP):
        return tokenize(queries, context_length=data.get("context_length") or method.model.context_length)
    tokens = getattr(data_module, "tokens", None)
    if tokens is None:  # the data module could not be rebuilt here: its recorded tokenizer, else the text tower's
        own = "clip" if method.hparams.text_encoder == "clip" else method.hparams.pretrained_text
        tokens = caption_tokens(data.get("tokenizer") or own, data.get("context_length") or method.clip.context_length)
    return torch.stack([tokens(tokens.encode(query)) for query in queries])


@functools.lru_cache(maxsize=8)
def caption_tokens(tokenizer: str, context_length: int) -> CaptionTokens:
    """One ``CaptionTokens`` per setting, kept: a transformers tokenizer takes a while to load."""
    return CaptionTokens(tokenizer, context_length)


def example_clips(folder: Path) -> list[tuple[Path, str]]:
    """``clip_<motion>.mp4`` for each of :data:`EXAMPLE_MOTIONS`, with its caption: 8 frames at 4 frames a second,
    128 px, H.264 4:2:0 (what browsers play)."""
    clips = ShapesWorldClips(image_size=examples.EXAMPLE_PX)
    written = []
    for motion in EXAMPLE_MOTIONS:
        clip, path = clips.clip("test", 0, motion=motion), folder / f"clip_{motion.replace(' ', '_')}.mp4"
        if not path.exists():
            write_video(path, clip.frames, clips.frames_per_second, codec="lossy")
        written.append((path, clip.caption))
    return written


def tab(weights: Weights, folder: Path) -> None:
    """The tab's components and events, inside the page's ``gr.Tab``."""
    gr.Markdown(
        "A video method scores a video against your texts: CLIP4Clip and VideoCLIP rank queries (text-video "
        "retrieval), ActionCLIP gives each class name's probability (zero-shot or trained action recognition); "
        "below, the frames it sampled. Train a checkpoint with `lit-clip fit --config configs/clip4clip/shapes.yaml` "
        "(or `actionclip/shapes.yaml`, `videoclip/shapes.yaml`) and start the page with `--checkpoints runs/`."
    )
    choices = weights.choices(FAMILY)
    with gr.Row():
        with gr.Column():
            checkpoint = gr.Dropdown(choices, value=choices[0] if choices else None, allow_custom_value=True,
                                     label="CLIP4Clip, ActionCLIP or VideoCLIP checkpoint (or its path)")  # fmt: skip
            video = gr.Video(sources=["upload"], label="video")
            texts = gr.Textbox(label="queries, one per line (ActionCLIP: class names, one per line or comma-separated)",
                               lines=4)  # fmt: skip
            run = gr.Button("Score", variant="primary")
        with gr.Column():
            probabilities = gr.Label(label="probabilities over the texts", num_top_classes=10)
            scores = gr.Dataframe(headers=["text", "score"], datatype=["str", "number"],
                                  label="the method's scores, best first")  # fmt: skip
            frames = gr.Image(type="numpy", format="png", label="the frames the method sees")
    clips = example_clips(folder)
    gr.Examples([[str(path), "\n".join(MOTIONS)] for path, _ in clips], inputs=[video, texts],
                label="ActionCLIP: the motions as class names")  # fmt: skip
    captions = "\n".join(caption for _, caption in clips)
    gr.Examples([[str(path), captions] for path, _ in clips], inputs=[video, texts],
                label="CLIP4Clip, VideoCLIP: the clips' captions as queries")  # fmt: skip

    def score(checkpoint_label, video_file, texts_text, progress=gr.Progress()):
        return score_video(weights, checkpoint_label, video_file, texts_text, progress)

    run.click(shown(score), [checkpoint, video, texts], [probabilities, scores, frames], api_name="score_video")
