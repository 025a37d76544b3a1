"""The video tab: a CLIP4Clip, ActionCLIP or VideoCLIP checkpoint scores a video file against texts the user types
(queries for the retrieval methods, class names for ActionCLIP) and shows the frames it sampled."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import torch
from torch import Tensor

from lit_clip import drawing
from lit_clip.datamodules.export_video import write_video
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.shapesworld.clips import MOTIONS, ShapesWorldClips
from lit_clip.datamodules.shapesworld.video import ACTION_TEMPLATES
from lit_clip.datamodules.timed_captions import CaptionTokens
from lit_clip.datamodules.video import ClipReader, video_info, video_transform
from lit_clip.demo import examples
from lit_clip.demo.errors import DemoInputError, shown
from lit_clip.demo.inputs import class_names, image_size, lines, no_progress
from lit_clip.demo.weights import Checkpoint, Weights, predict
from lit_clip.methods import ActionCLIP, CLIP4Clip, VideoCLIP
from lit_clip.models.clip import CLIP
from lit_clip.templates import resolve_templates
from lit_clip.tokenizer import tokenize

FAMILY = "video"
DEFAULT_FRAMES = 8  # for a checkpoint whose data module names no frame count
FRAME_PX = 96
# One draw of ShapesWorld's test split shown in three motions: only the motion tells the clips' captions apart.
EXAMPLE_MOTIONS = ("moving right", "growing", "swapping places")


def frame_encoder(method: CLIP4Clip | ActionCLIP | VideoCLIP) -> CLIP:
    """The CLIP whose image tower encodes the method's frames."""
    return method.clip if isinstance(method, VideoCLIP) else method.model


def video_clip(source: str | Path | None, checkpoint: Checkpoint, method: CLIP4Clip | ActionCLIP | VideoCLIP) -> Tensor:
    """``[T, 3, S, S]``: a video file's frames as the checkpoint's data module reads a video for ``lit-clip predict``
    (its frame count and sampling, ``uniform`` by default; its image size; the recognition sets' larger resize
    before the centre crop, ActionCLIP's test crop)."""
    if source is None:
        raise DemoInputError("give a video: upload a video file, or pick an example below")
    data = checkpoint.datamodule_hyper_parameters
    size = data.get("image_size") or image_size(frame_encoder(method))
    frames = data.get("num_frames") or data.get("clip_frames") or DEFAULT_FRAMES
    resize = size * 256 // 224 if "num_clips" in data else None  # the recognition data modules' test transform
    reader = ClipReader(frames, data.get("sampling") or "uniform", video_transform(size, resize=resize))
    expected = "expected a video file (MP4, WebM, AVI, MKV, ...)"
    try:
        if video_info(source).num_frames < 2:  # FFmpeg reads a picture as a video of one frame
            raise DemoInputError(f"{source} holds a single frame (a still image?); {expected}")
        return reader(Path(source))
    except BadSampleError as error:
        raise DemoInputError(f"{error}; {expected}") from error


def action_templates(checkpoint: Checkpoint) -> list[str]:
    """The prompt templates ActionCLIP's evaluation wrote class names into: ShapesWorld's motion prompts for
    ShapesWorld's clips, else its data module's ``templates``, else ActionCLIP's 16."""
    data = checkpoint.datamodule_hyper_parameters
    if str(data.get("_class_path", "")).endswith(".ShapesWorldVideo"):
        return list(ACTION_TEMPLATES)
    return resolve_templates(data.get("templates") or "actionclip")


def query_tokens(method: CLIP4Clip | VideoCLIP, checkpoint: Checkpoint, queries: list[str]) -> Tensor:
    """The queries' token ids as the checkpoint's data module writes captions: CLIP's BPE for CLIP4Clip, VideoCLIP's
    tokenizer (CLIP's or a BERT's) for VideoCLIP."""
    if not isinstance(method, VideoCLIP):
        return tokenize(queries, context_length=method.model.context_length)
    if method.hparams.feature_dim is not None:
        raise DemoInputError(f"{checkpoint.path} is a VideoCLIP of precomputed per-second features (feature_dim "
                             f"{method.hparams.feature_dim}), which the page cannot compute from a video; use one "
                             "that encodes frames with its CLIP (configs/videoclip/shapes.yaml)")  # fmt: skip
    data = checkpoint.datamodule_hyper_parameters
    own = "clip" if method.hparams.text_encoder == "clip" else method.hparams.pretrained_text
    tokenizer = data.get("tokenizer") or own
    tokens = CaptionTokens(tokenizer, data.get("context_length") or method.clip.context_length)
    return torch.stack([tokens(tokens.encode(query)) for query in queries])


@torch.no_grad()
def score_video(weights: Weights, choice: str | None, video: str | Path | None, texts: str, progress=no_progress,
                ) -> tuple[dict[str, float], list[list], np.ndarray]:  # fmt: skip
    """What the checkpoint ``choice`` (a drop-down label or a path) makes of ``video`` against ``texts``:

    - ActionCLIP: its ``predict_step``'s class probabilities over the class names (one per line, or comma-separated),
      averaged over :func:`action_templates`, as it evaluates;
    - CLIP4Clip and VideoCLIP: the method's score of each query (one per line) with the clip, what its retrieval
      ranks by (``similarity_matrix``: CLIP4Clip's scaled cosine, VideoCLIP's dot product), and their softmax over
      the queries as probabilities.

    Returns the probabilities, the ``[text, score]`` rows best first, and the sampled frames as the model sees them
    (after its preprocessing), captioned with the best text.
    """
    checkpoint = weights.checkpoint(choice, FAMILY)
    recognition = checkpoint.method == "ActionCLIP"
    typed = class_names(texts, at_least=2) if recognition else list(dict.fromkeys(lines(texts, "queries")))
    progress(0.1, desc="loading the checkpoint")
    method = weights.method(checkpoint)
    progress(0.4, desc="decoding the video")
    clip = video_clip(video, checkpoint, method)
    batch = {"video": clip[None].to(method.device),
             "frame_mask": torch.ones(1, clip.shape[0], dtype=torch.bool, device=method.device)}  # fmt: skip
    progress(0.6, desc="scoring")
    if recognition:
        prediction = predict(method, batch, classnames=typed, templates=action_templates(checkpoint))
        scores = probabilities = prediction["probabilities"][0]
    else:
        batch |= {"text": query_tokens(method, checkpoint, typed).to(method.device), "caption": typed}
        scores = method.similarity_matrix(batch)[0][0].float()
        probabilities = scores.softmax(dim=-1)
    ranking = sorted(zip(typed, scores.tolist()), key=lambda pair: -pair[1])
    strip = drawing.frame_strips([list(drawing.to_uint8_image(clip))], [ranking[0][0]], FRAME_PX)
    return dict(zip(typed, probabilities.tolist())), [[text, round(score, 4)] for text, score in ranking], strip


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
