"""Videos read from disk: decoding with PyAV, choosing frames as the video methods do, transforms over frames and the
collation of clips into :class:`~lit_clip.batches.VideoBatch` es.

The shared pieces (used by the retrieval data sets of :mod:`lit_clip.datamodules.video_retrieval`, the recognition
data sets of :mod:`lit_clip.datamodules.video_recognition` and the ShapesWorld clips):

- :func:`read_video`: the frames a video file holds at the given indices (or times), uint8 ``[T, H, W, 3]`` RGB.
  Only what is needed is decoded: the decoder stops after the last frame wanted and skips ahead with a seek where a
  keyframe lies between the frame it is at and the next one wanted (from the container's index of keyframes, or,
  without one, across gaps of more than 2 s), so a few frames of a long video cost a few GOPs. Frames are numbered
  by counting from the start, and after a seek by their timestamps; streams without trustworthy timestamps (raw
  .h264 / .m2v, MPEG-TS and -PS) are decoded in order, and a seek that fails or overshoots starts over without
  seeking. Missing, empty, undecodable and truncated files raise a :class:`BadSampleError` naming the file.
- :func:`video_info`: frame count, frame rate and duration, robust to containers that store no frame count.
- :func:`sample_frames`: which frames of a video make a clip: "uniform" (the centre of each of N equal segments:
  CLIP4Clip's and ActionCLIP's test sampling), "random" (one random frame per segment: TSN's training sampling, as
  ActionCLIP trains) and "fps" (one frame per second, CLIP4Clip's extraction, thinned uniformly to at most N);
  :func:`read_clip` samples and decodes in one opening of the file, :class:`ClipReader` adds the transform.
- :func:`video_transform`: CLIP's preprocessing of every frame with one crop for the whole clip (torchvision v2 on
  ``tv_tensors.Video``): float ``[T, 3, S, S]`` normalised with CLIP's mean and std.
- :func:`collate_videos`: clips of different lengths padded to the longest with zero frames and ``frame_mask``.
- :func:`video_prediction_loaders`: ``lit-clip predict``'s loaders of the user's videos (:func:`list_videos`) and
  text queries.

Official code, and where this differs:

- CLIP4Clip (``ArrowLuo/CLIP4Clip``, ``dataloaders/rawvideo_util.py``) reads with OpenCV, one frame at the start of
  every second (``feature_framerate`` 1; frame ``sec * int(fps)``), resizes each frame's short side to 224 (bicubic)
  and centre-crops it, in training and test alike: it trains without augmentation. More frames than ``max_frames``
  are thinned with ``np.linspace(0, n - 1, max_frames)`` (``slice_framepos`` 2, what its scripts pass); fewer are
  padded and masked. We decode with PyAV (FFmpeg, as OpenCV does underneath), take frame ``floor(sec * fps)`` (the
  same at integer frame rates; at 29.97 fps OpenCV's ``int(fps)`` drifts by a frame every 29 s), and resize tensors
  rather than PIL images (bicubic with antialiasing either way; pixels differ by a level or two of 255).
- ActionCLIP (``sallymmx/ActionCLIP``, ``datasets/datasets.py``, ``utils/Augmentation.py``) samples TSN segments: a
  random frame of each of N segments in training, the segment's centre at test (``int(i * n / N + (n / N - 1) /
  2)``, which is the frame before ours when the centre falls in a frame's first half; N = 1 gives the middle frame
  ``n // 2`` in both). Its training crop is a multi-scale corner crop (side 66-100 % of the short side, bilinear)
  with a flip, colour jitter (p 0.8) and greyscale (p 0.2); ours is a random resized crop of 44-100 % of the
  frame's area (the official range on a square frame; anywhere, ratio 3/4-4/3, bicubic) with the same flip, and
  the jitter and greyscale as an option. Its test transform resizes the short side to ``S * 256 / 224`` before the
  centre crop (``resize`` here).
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from lit_clip.datamodules.images import BadSampleError, RobustSamples, without_bad_samples
from lit_clip.datamodules.predict import TextsDataset, _text_lines, read_texts
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from lit_clip.batches import VideoBatch
from lit_clip.transforms import CLIP_MEAN, CLIP_STD, ScaleToUnit

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv")
SAMPLING_MODES = ("uniform", "random", "fps")

# What FFmpeg reports for broken data (InvalidDataError is also a ValueError, its file errors OSErrors).
_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, EOFError, MemoryError)
# Without an index of keyframes (some containers keep none), seek when the next wanted frame is this many seconds
# ahead; a seek that lands behind the current frame raises the threshold for the rest of the video.
_SEEK_SECONDS = 2.0
# FFmpeg's flag of container formats whose timestamps may jump (AVFMT_TS_DISCONT: MPEG-TS and -PS, which also seek by
# estimate).
_UNNUMBERED_FORMATS = 0x0200


class VideoNotFoundError(BadSampleError, FileNotFoundError):
    """A video file that does not exist: a :class:`~lit_clip.datamodules.images.BadSampleError` (a data set skips
    and counts it under the bad-sample policy "skip") and a ``FileNotFoundError``."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself: ``num_frames`` (exact when the container stores it, otherwise duration
    times frame rate, otherwise the number of packets), ``fps`` (frames per second) and ``duration`` in seconds."""

    num_frames: int
    fps: float
    duration: float


# -- reading ------------------------------------------------------------------------------------


def video_info(path: str | Path, name: str | None = None) -> VideoInfo:
    """The frame count, frame rate and duration of a video file (see :class:`VideoInfo`).

    Raises:
        VideoNotFoundError: the file does not exist.
        BadSampleError: naming the file, for an empty file, one FFmpeg cannot open or one without a video stream.
    """
    name = _check_file(path, name)
    with _decoding(name), av.open(str(path)) as container:
        return _info(container, _video_stream(container, name), path, name)


def read_video(
    path: str | Path,
    frame_indices: Sequence[int] | Callable[[VideoInfo], Sequence[int]] | None = None,
    times: Sequence[float] | None = None,
    name: str | None = None,
) -> Tensor:
    """Frames of a video file as uint8 RGB ``[T, H, W, 3]``, decoded with PyAV (any format FFmpeg reads).

    Args:
        path: the video file.
        frame_indices: the frames to return, in this order (repeats allowed), 0 being the first frame shown; or a
            function of the file's :class:`VideoInfo` giving them (the file is opened once), e.g.
            ``lambda info: sample_frames(info.num_frames, 8, "uniform")``. None (and no ``times``): every frame.
        times: instead of ``frame_indices``, the frames on screen at these times in seconds from the start (frame
            ``floor(t * fps)``).
        name: what to call the file in errors; by default its path.

    Only the frames up to the last one wanted are decoded, skipping ahead by seeking where a keyframe lies between
    the decoder's position and the next wanted frame. A frame index at most a second past the end of the stream (a
    frame count from the container's duration may overshoot by a frame or two) gives the last frame.

    Raises:
        VideoNotFoundError: the file does not exist (a ``FileNotFoundError`` and a ``BadSampleError``).
        BadSampleError: naming the file, for an empty or undecodable file, one without a video stream, one whose
            stream yields no frame, or one whose stream ends more than a second before a wanted frame (truncated).
    """
    if frame_indices is not None and times is not None:
        raise ValueError("read_video takes frame_indices or times, not both")
    if times is not None and any(time < 0 for time in times):
        raise ValueError(f"times must be >= 0 seconds, got {min(times)}")
    name = _check_file(path, name)
    with _decoding(name):
        container = av.open(str(path))
    with container:
        with _decoding(name):
            # PyAV's default threads (slices only): frame threads made small clips slower (measured) and would
            # multiply with the DataLoader's workers.
            stream = _video_stream(container, name)
            info = _info(container, stream, path, name) if callable(frame_indices) or times is not None else None
        if times is not None:
            frame_indices = [min(int(math.floor(time * info.fps + 1e-6)), info.num_frames - 1) for time in times]
        elif callable(frame_indices):
            frame_indices = frame_indices(info)  # outside _decoding: its errors are the caller's, not the file's
        if frame_indices is not None:
            frame_indices = [int(index) for index in frame_indices]
            if not frame_indices or min(frame_indices) < 0:
                raise ValueError(f"{name}: expected frame indices >= 0, got {frame_indices}")
        with _decoding(name):
            if frame_indices is None:
                frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            else:
                try:
                    decoded = _decode(container, stream, sorted(set(frame_indices)), name, seek=True)
                except _SeekFailed:  # decode the file again from its start, in order
                    with av.open(str(path)) as again:
                        decoded = _decode(again, again.streams.video[0], sorted(set(frame_indices)), name, seek=False)
                frames = [decoded[index] for index in frame_indices] if decoded else []
            if not frames:
                raise BadSampleError(f"{name}: the video stream holds no frame")
            return torch.from_numpy(np.stack(frames))


@contextlib.contextmanager
def _decoding(name: str):
    """FFmpeg's errors (and those of odd data) as a :class:`BadSampleError` naming the file."""
    try:
        yield
    except BadSampleError:
        raise
    except _DECODE_ERRORS as error:
        raise BadSampleError(f"{name}: cannot decode video ({type(error).__name__}: {error})") from error


def _check_file(path: str | Path, name: str | None) -> str:
    name = name or str(path)
    path = Path(path)
    if not path.is_file():
        raise VideoNotFoundError(f"{name}: video file not found")
    if path.stat().st_size == 0:
        raise BadSampleError(f"{name}: empty file (0 bytes)")
    return name


def _video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise BadSampleError(f"{name}: no video stream (streams: {[s.type for s in container.streams] or 'none'})")
    return container.streams.video[0]


def _info(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: str | Path, name: str
) -> VideoInfo:
    rate = _frame_rate(container, stream)
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    num_frames = stream.frames
    if not num_frames and duration and rate:
        num_frames = round(duration * rate)
    if not num_frames:  # neither stored nor computable (raw streams): count the packets, in a second reader of the
        # file (demuxing only, no decoding), as such streams may not seek back
        with av.open(str(path)) as counter:
            num_frames = sum(1 for packet in counter.demux(counter.streams.video[0]) if packet.size)
    if not num_frames:
        raise BadSampleError(f"{name}: the video stream holds no frame")
    if not rate:
        if not duration:
            raise BadSampleError(f"{name}: the video stream has neither a frame rate nor a duration")
        rate = num_frames / duration
    return VideoInfo(num_frames=int(num_frames), fps=float(rate), duration=duration or num_frames / float(rate))


class _SeekFailed(Exception):
    """A seek that cannot be trusted: it failed, overshot its target, or gave frames without timestamps."""


def _decode(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    wanted: list[int],
    name: str,
    seek: bool,
) -> dict:
    """``{index: frame [H, W, 3]}`` for the sorted frame indices ``wanted``, with ``seek``, seeking forward where it
    saves decoding.

    Frames are numbered by counting from the start; after a seek, by their timestamp times the frame rate (exact for
    the constant frame rates of these data sets).

    Raises:
        _SeekFailed: a seek failed, overshot its target (containers without an index seek by estimate) or gave
            frames without timestamps; the caller decodes again without seeking.
    """
    rate, time_base, start = _frame_rate(container, stream), stream.time_base, stream.start_time or 0
    # Decoded in order: raw streams (no container, so no duration: .h264, .m2v), which have no timestamps to seek by,
    # and formats whose timestamps may jump, so do not number frames (MPEG-TS and -PS).
    seekable = seek and bool(rate and time_base) and container.duration is not None
    seekable = seekable and not container.format.flags & _UNNUMBERED_FORMATS
    keyframes = _keyframe_indices(stream, rate) if seekable else None
    seek_gap = _SEEK_SECONDS * float(rate) if seekable else math.inf
    frames = _numbered(container.decode(stream))
    decoded, position, last, k, sought, landing = {}, -1, None, 0, None, False
    while k < len(wanted):
        target = wanted[k]
        if seekable and target != sought and _worth_seeking(position, target, keyframes, seek_gap):
            sought, landing = target, True
            try:
                container.seek(start + int(Fraction(target) / rate / time_base), stream=stream, backward=True)
            except av.error.FFmpegError as error:
                raise _SeekFailed from error
            frames = _numbered(container.decode(stream), lambda pts: round((pts - start) * time_base * rate))
        item = next(frames, None)
        if item is None:
            if landing:  # a seek to a frame the stream does not reach
                raise _SeekFailed
            break
        index, frame = item
        if index is None or (landing and index > target):
            raise _SeekFailed
        if landing and index <= position:  # no keyframe where hoped: seek only across longer gaps from now on
            keyframes, seek_gap = None, max(seek_gap, target - index + 1)
        landing, position, last = False, index, frame
        if target <= position:
            image = frame.to_ndarray(format="rgb24")
            while k < len(wanted) and wanted[k] <= position:
                decoded[wanted[k]] = image
                k += 1
    if k < len(wanted) and last is not None:  # past the end of the stream: its last frame, if it ends about there
        if wanted[-1] - position > max(2.0, float(rate or 0)):
            raise BadSampleError(
                f"{name}: the video stream ends at frame {position}, more than a second before the wanted frame "
                f"{wanted[-1]} (a truncated file, if its header's frame count or duration implied that frame)"
            )
        log.debug("%s: frames %s are past the end of the stream (frame %d); using its last", name, wanted[k:], position)
        image = last.to_ndarray(format="rgb24")
        decoded.update({index: image for index in wanted[k:]})
    return decoded


def _frame_rate(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Fraction | None:
    """The stream's frames per second: the container's average (``avg_frame_rate``), or for raw streams, whose
    average is the demuxer's guess of 25, FFmpeg's guess from the codec's timing (``r_frame_rate``)."""
    rates = (stream.average_rate, stream.guessed_rate, stream.base_rate)
    if container.duration is None:
        rates = (stream.guessed_rate, stream.average_rate, stream.base_rate)
    return next((rate for rate in rates if rate), None)


def _numbered(frames, index_of: Callable[[int], int] | None = None):
    """``(index, frame)`` of decoded frames: counted from 0, or (``index_of``) from their timestamps (None when a
    frame has none)."""
    for count, frame in enumerate(frames):
        if index_of is None:
            yield count, frame
        else:
            pts = frame.pts if frame.pts is not None else frame.dts
            yield (None if pts is None else index_of(pts)), frame


def _keyframe_indices(stream: av.video.stream.VideoStream, rate: Fraction) -> list[int] | None:
    """The frame indices of the stream's keyframes from the container's index (counted from the first keyframe, the
    first frame: index entries hold decoding timestamps, which B-frames shift), or None when there is no index."""
    try:
        stamps = [entry.timestamp for entry in stream.index_entries if entry.is_keyframe]
    except (AttributeError, av.error.FFmpegError):  # an index PyAV cannot read: decide by distance instead
        return None
    if len(stamps) < 2:
        return None
    return [round((stamp - stamps[0]) * stream.time_base * rate) for stamp in stamps]


def _worth_seeking(position: int, target: int, keyframes: list[int] | None, seek_gap: float) -> bool:
    """Whether a backward seek to ``target`` lands after ``position``: a keyframe lies in between."""
    if target <= position + 1:
        return False
    if keyframes is not None:
        landing = keyframes[max(0, int(np.searchsorted(keyframes, target, side="right")) - 1)]
        return landing > position + 1
    return target - position > seek_gap


def read_clip(
    path: str | Path,
    num_frames: int,
    sampling: str = "uniform",
    target_fps: float = 1.0,
    max_seconds: float | None = None,
    generator: torch.Generator | None = None,
    name: str | None = None,
) -> Tensor:
    """The frames of a video's clip, uint8 ``[T, H, W, 3]``: :func:`sample_frames` over the file's frames (those of
    its first ``max_seconds`` seconds, up to and including the frame at ``max_seconds``, when given: CLIP4Clip reads
    DiDeMo's first 31 s) with ``num_frames``, ``sampling``, ``target_fps`` and ``generator``, decoded by
    :func:`read_video` in one pass over the file. T is ``num_frames``, or fewer for "fps" sampling of a short video.

    Raises:
        VideoNotFoundError, BadSampleError: as :func:`read_video`.
    """

    def indices(info: VideoInfo) -> list[int]:
        available = info.num_frames
        if max_seconds is not None:
            available = min(available, int(max_seconds * info.fps + 1e-6) + 1)
        return sample_frames(available, num_frames, sampling, fps=info.fps, target_fps=target_fps, generator=generator)

    if sampling not in SAMPLING_MODES:  # before opening the file: a wrong setting is no bad sample
        raise ValueError(f"unknown frame sampling {sampling!r}; expected one of {SAMPLING_MODES}")
    return read_video(path, indices, name=name)


# -- choosing frames ----------------------------------------------------------------------------


def sample_frames(
    num_available: int,
    num_frames: int,
    mode: str = "uniform",
    fps: float | None = None,
    target_fps: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[int]:
    """The indices (sorted) of the frames of a video of ``num_available`` frames that make its clip.

    Args:
        num_available: the video's frame count (:attr:`VideoInfo.num_frames`).
        num_frames: the clip's length N (the most frames, for "fps").
        mode:
            "uniform": N equal segments of the video, the frame at each one's centre, ``floor((k + 1/2) n / N)``
            (the middle frame ``n // 2`` for N = 1); a video shorter than N repeats frames.
            "random": N equal segments (from ``floor(k n / N)`` to ``floor((k + 1) n / N)``), a random frame of each
            (TSN's training sampling). A video of at most N frames gives all its frames and random others, sorted
            (ActionCLIP's ``_sample_indices``).
            "fps": the frame at the start of every ``1 / target_fps`` seconds (``floor(j fps / target_fps)``,
            CLIP4Clip's extraction at ``feature_framerate`` 1), thinned to N with ``linspace(0, m - 1, N)`` when more
            (its ``slice_framepos`` 2). A short video gives fewer than N frames: the clip is padded when collated.
        fps: the video's frame rate; needed by "fps".
        target_fps: frames per second taken by "fps".
        generator: torch's generator for "random" (by default the global one: seeded by ``seed_everything`` and
            differently in each DataLoader worker).
    """
    if num_available < 1:
        raise ValueError(f"a video needs at least one frame to sample from, got num_available={num_available}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    n, count = int(num_available), int(num_frames)
    if mode == "uniform":
        return [(2 * k + 1) * n // (2 * count) for k in range(count)]
    if mode == "random":
        if n <= count:
            extra = torch.randint(n, (count - n,), generator=generator).tolist()
            return sorted([*range(n), *extra])
        bounds = [k * n // count for k in range(count + 1)]
        draws = torch.rand(count, generator=generator, dtype=torch.float64).tolist()
        return [low + min(int(draw * (high - low)), high - low - 1)
                for low, high, draw in zip(bounds, bounds[1:], draws)]  # fmt: skip
    if mode == "fps":
        if not fps or fps <= 0 or target_fps <= 0:
            raise ValueError(f'sampling "fps" needs the frame rate fps > 0 and target_fps > 0, got {fps}, {target_fps}')
        step = fps / target_fps
        indices = [int(j * step + 1e-6) for j in range(int(math.ceil(n / step - 1e-6)))]
        indices = [index for index in indices if index < n]
        if len(indices) > count:
            indices = [indices[i] for i in np.linspace(0, len(indices) - 1, num=count).astype(int)]
        return indices
    raise ValueError(f"unknown frame sampling {mode!r}; expected one of {SAMPLING_MODES}")


# -- transforms ---------------------------------------------------------------------------------


def video_transform(
    image_size: int,
    train: bool = False,
    scale: tuple[float, float] = (0.44, 1.0),
    flip: bool = True,
    color_jitter: bool = False,
    resize: int | None = None,
) -> Callable[[Tensor | np.ndarray], Tensor]:
    """CLIP's preprocessing of a clip: uint8 frames ``[T, H, W, 3]`` (as :func:`read_video` gives them) into float
    ``[T, 3, image_size, image_size]`` normalised with CLIP's mean and std, with one crop (and flip, jitter) drawn
    for all frames.

    Args:
        image_size: side of the square frames.
        train: False: resize the short side to ``resize`` (bicubic, antialiased; ``image_size`` by default, CLIP's
            and CLIP4Clip's) and centre-crop (:func:`lit_clip.transforms.clip_eval_transform` on every frame; e.g.
            ``resize = image_size * 256 // 224`` for ActionCLIP's test crop). True: a random crop of ``scale`` of
            the frame's area (ratio 3/4 to 4/3) resized to ``image_size``, as ActionCLIP's multi-scale crop (side
            66-100 %), then the options below. CLIP4Clip trains with the evaluation transform (``train=False``).
        scale: the range of the training crop's area.
        flip: flip the clip left-right with probability 1/2 in training.
        color_jitter: ActionCLIP's colour jitter in training (p 0.8: brightness 0.4, contrast 0.4, saturation 0.2,
            hue 0.1) and greyscale (p 0.2).
        resize: the short side before the evaluation centre crop.
    """
    bicubic = T.InterpolationMode.BICUBIC
    if train:
        steps = [T.RandomResizedCrop(image_size, scale=scale, interpolation=bicubic, antialias=True)]
        steps += [T.RandomHorizontalFlip()] if flip else []
        if color_jitter:
            steps += [T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)]
    else:
        steps = [T.Resize(resize or image_size, interpolation=bicubic, antialias=True), T.CenterCrop(image_size)]
    return _FramesTransform(T.Compose([*steps, ScaleToUnit(), T.Normalize(CLIP_MEAN, CLIP_STD), T.ToPureTensor()]))


class _FramesTransform:
    """uint8 ``[T, H, W, 3]`` as a ``tv_tensors.Video`` ``[T, 3, H, W]`` through ``transform`` (picklable)."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, frames: Tensor | np.ndarray) -> Tensor:
        frames = torch.as_tensor(frames)
        if frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames [T, H, W, 3], got shape {tuple(frames.shape)}")
        return self.transform(tv_tensors.Video(frames.permute(0, 3, 1, 2)))


# -- batches ------------------------------------------------------------------------------------


def collate_videos(samples: list[dict]) -> VideoBatch:
    """Clips into a :class:`~lit_clip.batches.VideoBatch`: ``video`` ``[B, T, 3, H, W]`` padded with zero frames
    to the longest clip, ``frame_mask`` bool ``[B, T]`` (False on padding); ``caption`` and ``path`` stay lists of
    str; the other keys as ``default_collate``.

    Retrieval samples with several captions (``text`` ``[n, L]``, ``text_index`` ``[n]``, ``caption`` n strings,
    as :class:`~lit_clip.datamodules.video_retrieval.VideoCaptionsDataset` gives) are concatenated as
    ``lit_clip.datamodules.pairs.collate_image_captions`` does: ``text`` ``[N, L]``, ``text_index`` ``[N]``
    (numbered over the split), ``text_video_index`` ``[N]`` (each caption's video ``index``), ``caption`` N strings.
    """
    if not samples:
        raise ValueError("collate_videos needs at least one sample")
    lengths = [sample["video"].shape[0] for sample in samples]
    video = samples[0]["video"].new_zeros(len(samples), max(lengths), *samples[0]["video"].shape[1:])
    frame_mask = torch.zeros(len(samples), max(lengths), dtype=torch.bool)
    for b, (sample, length) in enumerate(zip(samples, lengths)):
        video[b, :length] = sample["video"]
        frame_mask[b, :length] = True
    batch = {"video": video, "frame_mask": frame_mask}
    several = "text_index" in samples[0]
    if several:
        counts = torch.tensor([len(sample["caption"]) for sample in samples])
        batch["text"] = torch.cat([sample["text"] for sample in samples])
        batch["text_index"] = torch.cat([torch.as_tensor(sample["text_index"]) for sample in samples])
        batch["text_video_index"] = torch.as_tensor([sample["index"] for sample in samples]).repeat_interleave(counts)
        batch["caption"] = [caption for sample in samples for caption in sample["caption"]]
    lists = {"caption", "path"}
    for key in samples[0]:
        if key in batch or key == "video":
            continue
        values = [sample[key] for sample in samples]
        batch[key] = values if key in lists else default_collate(values)
    return batch


# -- prediction ---------------------------------------------------------------------------------


def list_videos(source: str | Path) -> list[Path]:
    """The video files ``source`` names: a folder's (recursively, sorted; by :data:`VIDEO_EXTENSIONS`), a list
    file's (one path a line, relative to its folder), or the video file itself."""
    source = Path(source)
    if source.is_dir():
        videos = sorted(
            p for p in source.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")
        )
        if not videos:
            raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {source}")
        return videos
    if not source.is_file():
        raise FileNotFoundError(f"predict_videos: {source} is neither a folder, a video file nor a list of video paths")
    if source.suffix.lower() in VIDEO_EXTENSIONS:
        return [source]
    videos = [source.parent / line.strip() for line in _text_lines(source)]
    if not videos:
        raise ValueError(f"{source} lists no video path; expected one video path per line")
    return videos


@dataclass(frozen=True)
class ClipReader:
    """A video file's clip as a data set reads it: :func:`read_clip` with these settings, then ``transform``
    (:func:`video_transform`). Picklable, for DataLoader workers."""

    num_frames: int
    sampling: str
    transform: Callable[[Tensor], Tensor]
    target_fps: float = 1.0
    max_seconds: float | None = None

    def __call__(self, path: str | Path) -> Tensor:
        """Float ``[T, 3, S, S]``."""
        frames = read_clip(path, self.num_frames, self.sampling, self.target_fps, self.max_seconds)
        return self.transform(frames)


class VideoPathsDataset(Dataset):
    """``{"video", "path", "index"}`` for each video file; an unreadable one is a bad sample (see
    :class:`~lit_clip.datamodules.images.RobustSamples`)."""

    def __init__(self, paths: Sequence[Path], reader: ClipReader):
        self.paths, self.reader = list(paths), reader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return {"video": self.reader(self.paths[index]), "path": str(self.paths[index]), "index": index}


def video_prediction_loaders(hparams, reader: ClipReader, default: Callable[[], DataLoader]) -> DataLoader | list:
    """``lit-clip predict``'s loaders of ``hparams.predict_videos`` (:func:`list_videos`; batches ``{"video",
    "frame_mask", "path", "index", "skipped_index"}``, read by ``reader``, unreadable videos skipped and counted or
    raised by ``hparams.bad_samples``) and ``hparams.predict_texts`` (a text file, one query a line; batches
    ``{"text", "caption"}``, as :func:`lit_clip.datamodules.predict.prediction_loaders` gives), or ``default()``."""
    loaders = []
    batch_size = hparams.get("eval_batch_size") or hparams.batch_size
    if hparams.get("predict_videos"):
        dataset = RobustSamples(VideoPathsDataset(list_videos(hparams.predict_videos), reader), hparams.bad_samples)
        collate = without_bad_samples(collate_videos, training=False)
        loaders.append(DataLoader(dataset, batch_size=batch_size, num_workers=hparams.num_workers, collate_fn=collate))
    if hparams.get("predict_texts"):
        texts = TextsDataset(read_texts(hparams.predict_texts), hparams.context_length)
        loaders.append(DataLoader(texts, batch_size=batch_size, num_workers=hparams.num_workers))
    if not loaders:
        return default()
    return loaders[0] if len(loaders) == 1 else loaders
