"""Write ShapesWorld clips to disk in the layouts of real video data sets.

The files exercise the real parsers and the video decoding of :mod:`lit_clip.datamodules.video_recognition`
(Kinetics' csv files and downloader names, UCF101's and HMDB51's archives and split files, ActionCLIP's frame
lists) and of :mod:`lit_clip.datamodules.video_retrieval` (MSR-VTT's, MSVD's and DiDeMo's files as CLIP4Clip reads them)
and :mod:`lit_clip.datamodules.timed_captions` (HowTo100M's timed captions with per-second features, as VideoCLIP
reads them) in tests and demos, without downloading anything. Class names are the motions of
:data:`~lit_clip.datamodules.shapesworld.clips.MOTIONS` ("moving left"), written as each data set writes its names
("MovingLeft" in UCF101, "moving_left" in HMDB51). The recognition exporters return the written ``(video path,
label)`` pairs, labels numbered as the data module numbers them, in the order of the split files.

Codecs (:func:`write_video`): "lossless" is FFV1 on RGB (``bgr0``) in ``.avi`` and ``.mkv`` and H.264 on RGB
(``libx264rgb``, ``qp`` 0) in ``.mp4``, so a decoded frame is the generator's frame bit for bit; "lossy" is the
data sets' own kind of codec: MPEG-4 part 2 on 4:2:0 YUV at a fixed quantiser of 3 in ``.avi`` (UCF101's and
HMDB51's XviD / DivX) and H.264 on 4:2:0 YUV at ``crf`` 23 (x264's default) in ``.mp4`` and ``.mkv`` (Kinetics' and
MSR-VTT's); or any PyAV encoder by name.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import json
import math
import pickle
import re
from fractions import Fraction
from pathlib import Path
from typing import Mapping, Sequence

import av
import numpy as np
from lit_clip.datamodules.shapesworld.clips import MOTIONS, Clip, ShapesWorldClips
from PIL import Image

Exported = dict[str, list[tuple[Path, int]]]
ExportedSplits = dict[int, Exported]
ExportedCaptions = dict[str, list[tuple[Path, list[str]]]]

# (encoder, pixel format, options) per file extension.
_LOSSLESS = {
    ".avi": ("ffv1", "bgr0", {}),
    ".mkv": ("ffv1", "bgr0", {}),
    ".mp4": ("libx264rgb", "rgb24", {"qp": "0"}),
}
_LOSSY = {
    ".avi": ("mpeg4", "yuv420p", {"flags": "+qscale", "global_quality": str(3 * 118)}),  # ffmpeg's -q:v 3
    ".mkv": ("libx264", "yuv420p", {"crf": "23"}),
    ".mp4": ("libx264", "yuv420p", {"crf": "23"}),
}


def write_video(
    path: str | Path, frames: Sequence[Image.Image | np.ndarray], fps: float, codec: str = "lossless"
) -> None:
    """Encode RGB frames (PIL images or uint8 ``[H, W, 3]`` arrays) into a video file with PyAV.

    Args:
        path: the file; its extension (``.avi``, ``.mkv``, ``.mp4``) chooses the container.
        frames: the frames, all of one size (even sides for the 4:2:0 codecs).
        fps: frames per second.
        codec: "lossless" (FFV1 RGB in avi / mkv, H.264 RGB at ``qp`` 0 in mp4: decoded frames equal the input),
            "lossy" (MPEG-4 part 2 at quantiser 3 in avi, H.264 4:2:0 at ``crf`` 23 in mp4 / mkv: the real data
            sets' codecs), or a PyAV encoder name (RGB when it takes RGB, else 4:2:0 YUV, its default settings).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if codec in ("lossless", "lossy"):
        table = _LOSSLESS if codec == "lossless" else _LOSSY
        if suffix not in table:
            raise ValueError(f"no {codec} codec for {path.name}; expected a file ending in one of {list(table)}")
        name, pixel_format, options = table[suffix]
    else:
        name, pixel_format, options = codec, _pixel_format(codec), {}
    arrays = [np.asarray(frame.convert("RGB") if isinstance(frame, Image.Image) else frame) for frame in frames]
    if not arrays:
        raise ValueError(f"no frames to write to {path}")
    height, width = arrays[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(name, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        stream.options = dict(options)
        for array in arrays:
            if array.shape != (height, width, 3):
                raise ValueError(f"frames of {path} differ in size: {array.shape} after {(height, width, 3)}")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())


def _pixel_format(codec: str) -> str:
    try:
        formats = [f.name for f in av.codec.Codec(codec, "w").video_formats or ()]
    except (av.FFmpegError, ValueError) as error:  # an unknown name is a ValueError
        raise ValueError(f"PyAV has no video encoder {codec!r} ({type(error).__name__}: {error})") from error
    for wanted in ("rgb24", "bgr0", "yuv420p"):
        if wanted in formats:
            return wanted
    if not formats:
        raise ValueError(f"{codec!r} is not a video encoder with known pixel formats")
    return formats[0]


def _motions(motions: Sequence[str] | None) -> list[str]:
    chosen = list(MOTIONS if motions is None else motions)
    unknown = [motion for motion in chosen if motion not in MOTIONS]
    if unknown or not chosen:
        raise ValueError(f"unknown motion {unknown[0] if unknown else None!r}; expected names from {list(MOTIONS)}")
    return chosen


def _camel_case(name: str) -> str:
    return "".join(word.capitalize() for word in name.split())


def _write_lines(path: Path, lines: Sequence[str], newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        file.write("".join(f"{line}{newline}" for line in lines))


# -- Kinetics -----------------------------------------------------------------------------------


def youtube_id(split: str, index: int) -> str:
    """An 11-character YouTube-like id (``A-Z a-z 0-9 - _``) for video ``index`` of ``split``, fixed per pair."""
    digest = hashlib.sha1(f"{split}/{index}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:11]


def export_kinetics(
    root: str | Path,
    per_class: Mapping[str, int],
    clips: ShapesWorldClips | None = None,
    motions: Sequence[str] | None = None,
    class_folders: bool = True,
    codec: str = "lossless",
    extension: str = ".mp4",
) -> Exported:
    """Kinetics' layout: ``root/annotations/<split>.csv`` (label, youtube_id, time_start, time_end, split; rows
    sorted by label) and ``root/<split>/[<label>/]<youtube_id>_<start:06d>_<end:06d>.mp4`` (ActivityNet's
    downloader's names, with class folders; cvdfoundation's, without). Row ``r`` of a split's csv shows
    ``clips.clip(split, r, motion=<its label>)``; labels index the sorted motion names.

    Args:
        root: output folder.
        per_class: videos per class for each split written, e.g. ``{"train": 2, "val": 1}``.
        clips: the clip generator (by default ``ShapesWorldClips()``).
        motions: the classes (motion names); all of MOTIONS by default.
        class_folders: one folder per label (with its spaces) inside the split folder, or all videos in it.
        codec, extension: see :func:`write_video`.
    """
    root, clips = Path(root), clips or ShapesWorldClips()
    names = sorted(_motions(motions))
    exported: Exported = {split: [] for split in per_class}
    for split, count in per_class.items():
        rows = []
        for label, name in enumerate(names):
            for _ in range(count):
                row = len(rows)
                start = 7 * row % 290
                stem = f"{youtube_id(split, row)}_{start:06d}_{start + 10:06d}"
                path = root / split / (name if class_folders else "") / f"{stem}{extension}"
                write_video(path, clips.clip(split, row, motion=name).frames, clips.frames_per_second, codec)
                rows.append([name, youtube_id(split, row), start, start + 10, split])
                exported[split].append((path, label))
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        with open(root / "annotations" / f"{split}.csv", "w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            writer.writerows(rows)
    return exported


# -- UCF101 -------------------------------------------------------------------------------------


def export_ucf101(
    root: str | Path,
    groups: Sequence[int] = (1, 8, 15, 22),
    clips_per_group: int = 1,
    clips: ShapesWorldClips | None = None,
    motions: Sequence[str] | None = None,
    codec: str = "lossless",
) -> ExportedSplits:
    """UCF101's layout: ``root/UCF-101/<Class>/v_<Class>_g<XX>_c<YY>.avi`` and ``root/ucfTrainTestlist/`` with
    ``classInd.txt`` (classes sorted by name, ids from 1) and the three splits' ``trainlist0k.txt`` /
    ``testlist0k.txt`` as the official ones draw them: split k tests on the groups 7k-6 to 7k and trains on the
    other groups (of 1-25). CRLF line ends, as the official lists. Video ``n`` (counted over classes, then groups,
    then clips) shows ``clips.clip("train", n, motion=<its class>)``.

    Returns ``{k: {"train": [...], "test": [...]}}`` for the splits 1-3, ``(video, label)`` in list order.

    Args:
        root: output folder.
        groups: the groups (1-25) written for every class; the default gives each split one test group.
        clips_per_group: videos per group and class.
        clips, motions, codec: as :func:`export_kinetics`'s (``.avi`` files).
    """
    root, clips = Path(root), clips or ShapesWorldClips()
    if not groups or any(not 1 <= group <= 25 for group in groups):
        raise ValueError(f"groups must be UCF101 groups 1..25, got {list(groups)}")
    classes = sorted((_camel_case(motion), motion) for motion in _motions(motions))
    lists = root / "ucfTrainTestlist"
    _write_lines(lists / "classInd.txt", [f"{i} {name}" for i, (name, _) in enumerate(classes, 1)], "\r\n")
    exported: ExportedSplits = {split: {"train": [], "test": []} for split in (1, 2, 3)}
    number = 0
    for label, (name, motion) in enumerate(classes):
        for group in sorted(groups):
            for clip in range(1, clips_per_group + 1):
                relative = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"
                write_video(root / "UCF-101" / relative, clips.clip("train", number, motion=motion).frames,
                            clips.frames_per_second, codec)  # fmt: skip
                number += 1
                for split in (1, 2, 3):
                    role = "test" if (group - 1) // 7 == split - 1 else "train"
                    exported[split][role].append((root / "UCF-101" / relative, label))
    for split, roles in exported.items():
        train = [f"{path.parent.name}/{path.name} {label + 1}" for path, label in roles["train"]]
        _write_lines(lists / f"trainlist0{split}.txt", train, "\r\n")
        _write_lines(lists / f"testlist0{split}.txt", [f"{p.parent.name}/{p.name}" for p, _ in roles["test"]], "\r\n")
    return exported


# -- HMDB51 -------------------------------------------------------------------------------------

# The split ids of a class's videos, rotated by one for each split: 1 train, 2 test, 0 unused.
_HMDB_ROLES = (1, 1, 2, 0)


def export_hmdb51(
    root: str | Path,
    videos_per_class: int = 4,
    clips: ShapesWorldClips | None = None,
    motions: Sequence[str] | None = None,
    codec: str = "lossless",
) -> ExportedSplits:
    """HMDB51's layout: ``root/hmdb51_org/<class>/<video>.avi`` (class names with "_") and
    ``root/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt`` with a ``"<video>.avi <id> "`` line per video
    of the class: video ``j`` gets id ``(1, 1, 2, 0)[(j + k - 1) % 4]`` in split k (1 train, 2 test, 0 unused). Video
    ``n`` (counted over the sorted classes, then their videos) shows ``clips.clip("train", n, motion=<its class>)``.

    Returns ``{k: {"train": [...], "test": [...]}}`` for the splits 1-3, labels indexing the sorted class names.

    Args:
        root: output folder.
        videos_per_class: videos of every class (4: each split has train, test and unused videos of every class).
        clips, motions, codec: as :func:`export_kinetics`'s (``.avi`` files).
    """
    root, clips = Path(root), clips or ShapesWorldClips()
    classes = sorted((motion.replace(" ", "_"), motion) for motion in _motions(motions))
    exported: ExportedSplits = {split: {"train": [], "test": []} for split in (1, 2, 3)}
    number = 0
    for label, (name, motion) in enumerate(classes):
        lines: dict[int, list[str]] = {split: [] for split in (1, 2, 3)}
        for j in range(videos_per_class):
            filename = f"ShapesWorld_clip_{number}_{name}_f_nm_np1_fr_med_{j}.avi"
            path = root / "hmdb51_org" / name / filename
            write_video(path, clips.clip("train", number, motion=motion).frames, clips.frames_per_second, codec)
            number += 1
            for split in (1, 2, 3):
                role = _HMDB_ROLES[(j + split - 1) % len(_HMDB_ROLES)]
                lines[split].append(f"{filename} {role} ")
                if role:
                    exported[split]["train" if role == 1 else "test"].append((path, label))
        for split, split_lines in lines.items():
            _write_lines(root / "testTrainMulti_7030_splits" / f"{name}_test_split{split}.txt", split_lines)
    return exported


# -- ActionCLIP's frame lists -------------------------------------------------------------------


def export_actionclip_lists(
    root: str | Path,
    per_class: Mapping[str, int],
    clips: ShapesWorldClips | None = None,
    motions: Sequence[str] | None = None,
    image_tmpl: str = "img_{:05d}.jpg",
) -> Exported:
    """ActionCLIP's inputs: frames extracted to ``root/frames/<split>/<class>/<n>/img_00001.jpg``, ...
    (``image_tmpl``, numbered from 1), the lists ``root/<split>_frames.txt`` of ``"<folder> <num_frames> <label>"``
    lines (folders relative to ``root``) and ``root/labels.csv`` (``id,name``, the motions in the order given).
    Video ``n`` of a split shows ``clips.clip(split, n, motion=<its class>)``. Returns ``(frame folder, label)``.

    Args:
        root: output folder.
        per_class: videos per class for each split written, e.g. ``{"train": 2, "val": 1}``.
        clips, motions: as :func:`export_kinetics`'s.
        image_tmpl: the frame file names (".png" for lossless frames; ActionCLIP's are JPEG).
    """
    root, clips = Path(root), clips or ShapesWorldClips()
    names = _motions(motions)
    with open(_mkdir(root) / "labels.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "name"])
        writer.writerows(enumerate(names))
    exported: Exported = {split: [] for split in per_class}
    for split, count in per_class.items():
        lines = []
        for label, name in enumerate(names):
            for _ in range(count):
                number = len(lines)
                folder = root / "frames" / split / name.replace(" ", "_") / f"{number:05d}"
                frames = clips.clip(split, number, motion=name).frames
                for i, frame in enumerate(frames, 1):
                    frame.save(_mkdir(folder) / image_tmpl.format(i))
                lines.append(f"{folder.relative_to(root).as_posix()} {len(frames)} {label}")
                exported[split].append((folder, label))
        _write_lines(root / f"{split}_frames.txt", lines)
    return exported


def _mkdir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- MSR-VTT ------------------------------------------------------------------------------------

# Further captions of a clip, each true of it: its objects and its motion in phrasings of their own.
_EXTRA_CAPTIONS = ("a video of {objects} {motion}.", "{objects}: {motion}.", "a short clip showing {objects} {motion}.")


def _check_captions_per_video(count: int) -> None:
    if not 1 <= count <= 1 + len(_EXTRA_CAPTIONS):
        raise ValueError(f"captions_per_video must be 1..{1 + len(_EXTRA_CAPTIONS)}, got {count}")


def _clip_captions(clip: Clip, count: int) -> list[str]:
    """The clip's own caption, then captions naming its objects and motion (``_EXTRA_CAPTIONS``): ``count`` of them."""
    objects = " and ".join(f"a {obj.name}" for obj in clip.objects)
    extra = [template.format(objects=objects, motion=clip.motion_name) for template in _EXTRA_CAPTIONS]
    return [clip.caption, *extra][:count]


def export_msrvtt(
    root: str | Path,
    train_videos: int,
    test_videos: int,
    captions_per_video: int = 2,
    clips: ShapesWorldClips | None = None,
    codec: str = "lossless",
    videos_dir: str = "MSRVTT_Videos",
) -> ExportedCaptions:
    """MSR-VTT's files as CLIP4Clip reads them: ``root/MSRVTT_data.json`` (``videos``: video_id, category, url,
    start time, end time, split, id; ``sentences``: caption, video_id, sen_id), ``root/MSRVTT_train.9k.csv`` (column
    ``video_id``: the training videos), ``root/MSRVTT_JSFUSION_test.csv`` (key, vid_key, video_id, sentence: one
    caption per test video, the 1k-A list's form) and ``root/<videos_dir>/video<n>.mp4``. Videos ``video0`` ... are
    the training ones, then the test ones; ``video<n>`` shows ``clips.clip(split, i)`` (``i`` its number within the
    split). Its first caption is the clip's own, the others name its objects and motion (see ``_EXTRA_CAPTIONS``).

    Returns ``{"train": [(video, captions)], "test": [(video, [the JSFUSION sentence])]}``.

    Args:
        root: output folder.
        train_videos, test_videos: videos of each split.
        captions_per_video: captions of every video in ``MSRVTT_data.json`` (1 to 4; MSR-VTT has 20).
        clips: the clip generator (by default ``ShapesWorldClips()``).
        codec: see :func:`write_video` (``.mp4`` files).
        videos_dir: the video folder under ``root`` (``MSRVTT_Videos``, as CLIP4Clip's scripts and
            :class:`~lit_clip.datamodules.video_retrieval.MSRVTT` call it).
    """
    _check_captions_per_video(captions_per_video)
    root, clips = Path(root), clips or ShapesWorldClips()
    videos, sentences, exported = [], [], {"train": [], "test": []}
    for split, count in (("train", train_videos), ("test", test_videos)):
        for i in range(count):
            number = len(videos)
            video_id = f"video{number}"
            clip = clips.clip(split, i)
            path = root / videos_dir / f"{video_id}.mp4"
            write_video(path, clip.frames, clips.frames_per_second, codec)
            captions = _clip_captions(clip, captions_per_video)
            videos.append({
                "category": clip.motion, "url": f"https://www.youtube.com/watch?v={youtube_id(split, i)}",
                "video_id": video_id, "start time": 0.0, "end time": clips.duration, "split": split, "id": number,
            })  # fmt: skip
            for caption in captions:
                sentences.append({"caption": caption, "video_id": video_id, "sen_id": len(sentences)})
            exported[split].append((path, captions if split == "train" else captions[:1]))
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "MSRVTT_data.json", "w") as file:
        json.dump({"info": {"year": "2016"}, "videos": videos, "sentences": sentences}, file)
    with open(root / "MSRVTT_train.9k.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["video_id"])
        writer.writerows([path.stem] for path, _ in exported["train"])
    with open(root / "MSRVTT_JSFUSION_test.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["key", "vid_key", "video_id", "sentence"])
        for k, (path, (sentence,)) in enumerate(exported["test"]):
            writer.writerow([f"ret{k}", f"msr{path.stem.removeprefix('video')}", path.stem, sentence])
    return exported


# -- MSVD ---------------------------------------------------------------------------------------


def export_msvd(
    root: str | Path,
    videos: Mapping[str, int],
    captions_per_video: int = 2,
    clips: ShapesWorldClips | None = None,
    codec: str = "lossless",
    videos_dir: str = "MSVD_Videos",
) -> ExportedCaptions:
    """MSVD's files as CLIP4Clip reads them (collaborative-experts'): ``root/raw-captions.pkl`` (a pickled dict of
    video id -> captions, each a list of lower-case words without punctuation), ``root/<split>_list.txt`` (the
    split's video ids, one a line) and ``root/<videos_dir>/<id>.avi``. Ids are MSVD's ``<youtube id>_<start>_<end>``;
    video ``i`` of a split shows ``clips.clip(split, i)``, its captions those of :func:`export_msrvtt`.

    Returns ``{split: [(video, captions)]}``, each caption as the data module reads it (its words joined by spaces).

    Args:
        root: output folder.
        videos: videos of each split written, e.g. ``{"train": 4, "val": 2, "test": 2}``.
        captions_per_video: captions of every video (1 to 4; MSVD has about 40).
        clips, codec: as :func:`export_msrvtt`'s (``.avi`` files).
        videos_dir: the video folder under ``root`` (``MSVD_Videos``, as CLIP4Clip's scripts call it).
    """
    _check_captions_per_video(captions_per_video)
    root, clips = Path(root), clips or ShapesWorldClips()
    captions: dict[str, list[list[str]]] = {}
    exported: ExportedCaptions = {split: [] for split in videos}
    for split, count in videos.items():
        ids = []
        for i in range(count):
            start = 5 * i % 120
            video_id = f"{youtube_id(split, i)}_{start}_{start + 10}"
            clip = clips.clip(split, i)
            path = root / videos_dir / f"{video_id}.avi"
            write_video(path, clip.frames, clips.frames_per_second, codec)
            captions[video_id] = [_words(caption) for caption in _clip_captions(clip, captions_per_video)]
            exported[split].append((path, [" ".join(words) for words in captions[video_id]]))
            ids.append(video_id)
        _write_lines(root / f"{split}_list.txt", ids)
    with open(root / "raw-captions.pkl", "wb") as file:
        pickle.dump(captions, file)
    return exported


def _words(caption: str) -> list[str]:
    """A caption as MSVD's ``raw-captions.pkl`` holds it: its lower-case words, punctuation left out."""
    return re.findall(r"[a-z0-9']+", caption.lower())


# -- DiDeMo -------------------------------------------------------------------------------------

# DiDeMo's moments are marked in 5-second segments, by 4 annotators each.
_DIDEMO_SEGMENT_SECONDS, _DIDEMO_ANNOTATORS = 5.0, 4


def flickr_name(split: str, index: int) -> str:
    """A Flickr-like video file name (``<user>@N0<k>_<photo>_<secret>.mp4``, DiDeMo's) for video ``index`` of
    ``split``, fixed per pair."""
    digest = hashlib.sha1(f"didemo/{split}/{index}".encode()).hexdigest()
    user, photo = int(digest[:8], 16) % 10**8, int(digest[8:18], 16) % 10**10
    return f"{user}@N0{int(digest[18], 16) % 10}_{photo}_{digest[19:29]}.mp4"


def export_didemo(
    root: str | Path,
    videos: Mapping[str, int],
    segments: int = 3,
    clips: ShapesWorldClips | None = None,
    codec: str = "lossless",
    videos_dir: str = "DiDeMo_Videos",
) -> ExportedCaptions:
    """DiDeMo's files as CLIP4Clip reads them: ``root/<split>_data.json`` (LocalizingMoments' list of moments:
    annotation_id, description, video, times (each annotator's ``[first, last]`` 5-second segment), download_link,
    num_segments), ``root/<split>_list.txt`` (the split's video file names, one a line) and
    ``root/<videos_dir>/<video>`` (:func:`flickr_name`). Video ``i`` of a split is ``clips.long_video(split, i,
    segments)``; each of its segments is a moment, described by the segment's caption.

    Returns ``{split: [(video, [its paragraph])]}``: the descriptions joined by spaces, as the data module reads them.

    Args:
        root: output folder.
        videos: videos of each split written, e.g. ``{"train": 4, "val": 2, "test": 2}``.
        segments: clips (moments) of every video.
        clips, codec: as :func:`export_msrvtt`'s (``.mp4`` files).
        videos_dir: the video folder under ``root`` (``DiDeMo_Videos``, as CLIP4Clip's scripts call it).
    """
    root, clips = Path(root), clips or ShapesWorldClips()
    exported: ExportedCaptions = {split: [] for split in videos}
    for split, count in videos.items():
        moments, names = [], []
        for i in range(count):
            name, video = flickr_name(split, i), clips.long_video(split, i, segments)
            path = root / videos_dir / name
            write_video(path, video.frames, video.frames_per_second, codec)
            user, photo = name.split("_")[:2]
            duration = len(video.frames) / video.frames_per_second
            for caption, (start, end) in zip(video.captions, video.spans):
                first = int(start // _DIDEMO_SEGMENT_SECONDS)
                last = max(first, math.ceil(end / _DIDEMO_SEGMENT_SECONDS) - 1)
                moments.append({
                    "annotation_id": len(moments), "description": caption, "video": name,
                    "times": [[first, last]] * _DIDEMO_ANNOTATORS,
                    "download_link": f"https://www.flickr.com/videos/{user}/{photo}",
                    "num_segments": math.ceil(duration / _DIDEMO_SEGMENT_SECONDS),
                })  # fmt: skip
            names.append(name)
            exported[split].append((path, [" ".join(video.captions)]))
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{split}_data.json", "w") as file:
            json.dump(moments, file)
        _write_lines(root / f"{split}_list.txt", names)
    return exported


# -- HowTo100M-style timed captions -------------------------------------------------------------


def export_timed_captions(
    root: str | Path,
    videos: Mapping[str, int],
    segments: int = 3,
    feature_dim: int = 512,
    clips: ShapesWorldClips | None = None,
    seed: int = 0,
    features_dir: str = "s3d",
) -> ExportedCaptions:
    """HowTo100M's files as VideoCLIP (MMPT) reads them: ``root/caption.json`` (``{video id: {"start": [...], "end":
    [...], "text": [...]}}``, in seconds), ``root/<features_dir>/<video id>.npy`` (float32 ``[seconds,
    feature_dim]``, one feature a second: S3D's place) and ``root/<split>_list.txt`` (the split's video ids, one a
    line: MMPT's ``.lst``). Video ``i`` of a split (id :func:`youtube_id`) is ``clips.long_video(split, i,
    segments)``, each segment's caption timed over its seconds. Its feature of second ``s`` is a fixed random
    projection (drawn from ``seed``) of the pixels of its frame at ``s + 0.5`` seconds (the frame
    ``TimedCaptions`` reads from a video file), so the features are a function of the frames.

    Returns ``{split: [(features file, captions)]}``.

    Args:
        root: output folder.
        videos: videos of each split written, e.g. ``{"train": 4, "val": 2}``.
        segments: clips (captions) of every video.
        feature_dim: the features' width (512: S3D's, the VideoCLIP configs' ``feature_dim``).
        clips: the clip generator (by default ``ShapesWorldClips()``).
        seed: the projection's.
        features_dir: the features folder under ``root``.
    """
    root, clips = Path(root), clips or ShapesWorldClips()
    pixels = 3 * clips.image_size**2
    projection = np.random.default_rng(seed).standard_normal((pixels, feature_dim)) / math.sqrt(pixels)
    captions: dict[str, dict[str, list]] = {}
    exported: ExportedCaptions = {split: [] for split in videos}
    for split, count in videos.items():
        ids = []
        for i in range(count):
            video_id, video = youtube_id(split, i), clips.long_video(split, i, segments)
            fps = video.frames_per_second
            seconds = math.ceil(len(video.frames) / fps)
            frames = [video.frames[min(int((s + 0.5) * fps), len(video.frames) - 1)] for s in range(seconds)]
            pixels_per_second = np.stack([np.asarray(frame, dtype=np.float64).reshape(-1) / 255 for frame in frames])
            features = pixels_per_second @ projection
            path = _mkdir(root / features_dir) / f"{video_id}.npy"
            np.save(path, features.astype(np.float32))
            starts, ends = zip(*video.spans)
            captions[video_id] = {"start": list(starts), "end": list(ends), "text": list(video.captions)}
            exported[split].append((path, list(video.captions)))
            ids.append(video_id)
        _write_lines(root / f"{split}_list.txt", ids)
    with open(root / "caption.json", "w") as file:
        json.dump(captions, file)
    return exported


def main(args: list[str] | None = None) -> None:
    """``python -m lit_clip.datamodules.export_video LAYOUT ROOT``: ShapesWorld clips on disk, to try a real-data
    video config."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    layouts = ["kinetics", "ucf101", "hmdb51", "actionclip-lists", "msrvtt", "msvd", "didemo", "timed-captions"]
    parser.add_argument("layout", choices=layouts)
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=20, help="training videos (per class for recognition)")
    parser.add_argument("--test", type=int, default=10, help="evaluation videos (per class for recognition)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--codec", default="lossless", help='"lossless", "lossy" or a PyAV encoder name')
    options = parser.parse_args(args)
    clips = ShapesWorldClips(image_size=options.image_size, num_frames=options.num_frames)
    if options.layout == "kinetics":
        export_kinetics(options.root, {"train": options.train, "val": options.test}, clips, codec=options.codec)
    elif options.layout == "ucf101":  # groups 1, 8, 15, 22: per split and class 3 x --test training, --test test videos
        export_ucf101(options.root, clips_per_group=options.test, clips=clips, codec=options.codec)
    elif options.layout == "hmdb51":  # per split and class: half trained on, a quarter tested on
        export_hmdb51(options.root, options.train + options.test, clips, codec=options.codec)
    elif options.layout == "actionclip-lists":
        export_actionclip_lists(options.root, {"train": options.train, "val": options.test}, clips)
    elif options.layout == "msrvtt":
        export_msrvtt(options.root, options.train, options.test, clips=clips, codec=options.codec)
    else:  # MSVD's, DiDeMo's and the timed captions' val and test: --test videos each
        splits = {"train": options.train, "val": options.test, "test": options.test}
        if options.layout == "msvd":
            export_msvd(options.root, splits, clips=clips, codec=options.codec)
        elif options.layout == "didemo":
            export_didemo(options.root, splits, clips=clips, codec=options.codec)
        else:
            export_timed_captions(options.root, splits, clips=clips)
    print(f"wrote ShapesWorld clips in the {options.layout} layout under {options.root}")


if __name__ == "__main__":
    main()
