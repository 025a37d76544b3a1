"""Action recognition videos read from disk: Kinetics, UCF101 and HMDB51 in their official layouts and splits, and
ActionCLIP's list files, as ActionCLIP reads them.

Every data module gives :class:`~lit_clip.batches.VideoBatch` es of ``{"video", "frame_mask", "label", "index",
"path", "skipped_index"}`` and has ``classnames`` and ``templates`` for a zero-shot head, as the image classification
data modules (:mod:`lit_clip.datamodules.classification`). ``videos(split)`` lists a split's :class:`ActionVideo` s
without opening any file; ``predict_videos`` gives ``lit-clip predict`` a folder or list of the user's videos.

Frames (:mod:`lit_clip.datamodules.video`): ``num_frames`` TSN segments of the video, a random frame of each in
training and each one's centre in evaluation (:func:`~lit_clip.datamodules.video.sample_frames`); one crop for the
whole clip: in training a random resized crop, flip, colour jitter and greyscale (ActionCLIP's augmentation), in
evaluation the short side resized to ``image_size * 256 // 224`` and a centre crop (ActionCLIP's ``GroupScale`` and
``GroupCenterCrop``).

Several views at test (``num_clips``): a test video gives ``V = num_clips`` clips of ``num_frames`` frames, view
``v`` taking in every segment the frame at ``(v + 1/2) / V`` of it: the centres of ``num_frames * V`` equal segments,
every ``V``-th one from the ``v``-th (so one view is the plain uniform clip). Test batches then hold ``video``
``[B, V, T, 3, S, S]`` and ``frame_mask`` ``[B, V, T]`` (one view: ``[B, T, 3, S, S]`` and ``[B, T]``, as
everywhere); ``label``, ``index`` and ``path`` stay one per video, so evaluation counts each video once under DDP
and a video that cannot be read drops out with all its views. A method flattens the views into the batch
(``video.flatten(0, 1)``), scores every clip and averages each video's ``V`` scores
(``scores.unflatten(0, (B, V)).mean(1)``; ActionCLIP's ``split_views``).

Official code (``sallymmx/ActionCLIP``: ``datasets/datasets.py``, ``lists/``, ``configs/``) and the differences:

- ActionCLIP reads frames extracted to folders (``img_00001.jpg``, ...) listed as ``path num_frames label`` lines,
  with label files ``id,name``; :class:`VideoListRecognition` reads these lists and also lists of video files. The
  data set modules read the videos themselves (PyAV decodes only the frames wanted) from the official layouts, so
  no frame extraction is needed.
- Its test centre frame is ``int(i * n / N + (n / N - 1) / 2)``, half a frame before ours (see
  :func:`~lit_clip.datamodules.video.sample_frames`); its multi-scale corner crop is a random resized crop here.
- Class names: ActionCLIP prompts UCF101's names as they are written ("ApplyEyeMakeup"); we split them into words
  ("apply eye makeup") by default, as the HMDB51 and Kinetics names it uses already are (``readable_classnames``
  False keeps them). Labels follow the official files: UCF101's ``classInd.txt``, HMDB51's sorted class names,
  Kinetics' sorted labels (ActionCLIP's ``kinetics_400_labels.csv`` order).
- The 16 templates of its ``utils/Text_Prompt.py`` are the default ``templates`` (the named set "actionclip",
  :data:`lit_clip.templates.ACTIONCLIP_TEMPLATES`).
- UCF101 and HMDB51 have no validation split: validation and test both read the split's test list, as ActionCLIP
  validates on it; Kinetics tests on its validation set unless a test csv is given (every published Kinetics-400
  number is on the validation set).
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import (
    BadSampleError,
    BadSamplePolicy,
    RobustSamples,
    check_policy,
    load_rgb,
    without_bad_samples,
)
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.video import (
    VIDEO_EXTENSIONS,
    ClipReader,
    VideoInfo,
    collate_videos,
    read_video,
    sample_frames,
    video_info,
    video_prediction_loaders,
    video_transform,
)
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.batches import VideoBatch
from lit_clip.templates import resolve_templates

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

@dataclass(frozen=True)
class ActionVideo:
    """One video of a data set: a video file, or (ActionCLIP's lists) a folder of its frames as images, and its
    label, an index into the data module's ``classnames``. ``num_frames``: a frame folder's frame count, from its
    list line; a video file's count is read from the file."""

    path: Path
    label: int
    num_frames: int | None = None

    @property
    def is_frame_folder(self) -> bool:
        """A folder of frame images (a path without a video extension, with a frame count), not a video file."""
        return self.num_frames is not None and self.path.suffix.lower() not in VIDEO_EXTENSIONS


# -- frames of a video --------------------------------------------------------------------------


def clip_frame_indices(available: int, num_frames: int, sampling: str, views: int = 1) -> list[int]:
    """The frames of ``views`` clips of ``num_frames`` frames of a video of ``available`` frames, view after view.

    "random": one clip, a random frame of each of ``num_frames`` equal segments (TSN's, ActionCLIP's training).
    "uniform": view ``v`` takes the frame at ``(v + 1/2) / views`` of every segment, i.e. of the centres of
    ``num_frames * views`` equal segments every ``views``-th from the ``v``-th; one view is each segment's centre.
    """
    if views < 1:
        raise ValueError(f"views must be at least 1, got {views}")
    if sampling == "random":
        if views != 1:
            raise ValueError("random sampling draws one clip per video; several views are for evaluation (uniform)")
        return sample_frames(available, num_frames, "random")
    if sampling != "uniform":
        raise ValueError(f"unknown sampling {sampling!r}; expected 'random' (training) or 'uniform'")
    centres = sample_frames(available, num_frames * views, "uniform")
    return [index for view in range(views) for index in centres[view::views]]


class ActionVideoDataset(Dataset):
    """``{"video" [V, T, 3, S, S], "label", "index", "path"}`` for a list of :class:`ActionVideo` s: ``V = views``
    clips of ``T = num_frames`` frames each (see :func:`clip_frame_indices`), through ``transform`` with one crop for
    all of them. A video that cannot be read raises :class:`~lit_clip.datamodules.images.BadSampleError` naming it.
    """

    def __init__(
        self,
        videos: Sequence[ActionVideo],
        num_frames: int,
        sampling: str,
        transform: Callable[[Tensor], Tensor],
        views: int = 1,
        image_tmpl: str = "img_{:05d}.jpg",
        index_bias: int = 1,
    ):
        self.videos, self.num_frames, self.sampling, self.views = videos, num_frames, sampling, views
        self.transform, self.image_tmpl, self.index_bias = transform, image_tmpl, index_bias

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        video = self.videos[index]
        if video.is_frame_folder:
            frames = read_frame_folder(video.path, self._indices(video.num_frames), self.image_tmpl, self.index_bias)
        else:
            frames = read_video(video.path, self._indices_of)
        clips = self.transform(frames).unflatten(0, (self.views, self.num_frames))
        return {"video": clips, "label": torch.tensor(video.label), "index": index, "path": str(video.path)}

    def _indices(self, available: int) -> list[int]:
        return clip_frame_indices(available, self.num_frames, self.sampling, self.views)

    def _indices_of(self, info: VideoInfo) -> list[int]:
        return self._indices(info.num_frames)


def read_frame_folder(folder: Path, indices: Sequence[int], image_tmpl: str, index_bias: int = 1) -> Tensor:
    """uint8 ``[T, H, W, 3]``: frames ``indices`` (from 0) of a folder of frame images named ``image_tmpl`` with
    frame ``i`` at number ``i + index_bias`` (ActionCLIP's ``img_{:05d}.jpg`` from 1); a missing folder or image is a
    :class:`~lit_clip.datamodules.images.BadSampleError` naming it."""
    if not folder.is_dir():
        raise BadSampleError(f"{folder}: frame folder not found")
    images = {i: np.asarray(load_rgb(folder / image_tmpl.format(i + index_bias))) for i in sorted(set(indices))}
    shapes = {image.shape for image in images.values()}
    if len(shapes) > 1:
        raise BadSampleError(f"{folder}: frames of different sizes {sorted(shapes)}")
    return torch.from_numpy(np.stack([images[i] for i in indices]))


def collate_views(samples: list[dict]) -> VideoBatch:
    """Samples of :class:`ActionVideoDataset` into a batch: ``video`` ``[B, T, 3, S, S]`` and ``frame_mask`` ``[B, T]``
    for one view, ``[B, V, T, 3, S, S]`` and ``[B, V, T]`` for ``V``; ``label``, ``index`` one per video, ``path`` a
    list of str (see the module docstring)."""
    views = samples[0]["video"].shape[0]
    if any(sample["video"].shape[0] != views for sample in samples):
        counts = [sample["video"].shape[0] for sample in samples]
        raise ValueError(f"the samples of a batch have different numbers of views: {counts}")
    batch = collate_videos([{**sample, "video": sample["video"][0]} for sample in samples])
    if views > 1:
        clips = collate_videos([{"video": clip} for sample in samples for clip in sample["video"]])
        batch["video"] = clips["video"].unflatten(0, (len(samples), views))
        batch["frame_mask"] = clips["frame_mask"].unflatten(0, (len(samples), views))
    return batch


# -- the data modules ---------------------------------------------------------------------------

# The splits each Lightning stage reads, so that setup() finds bad paths before the run starts.
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


class _ActionVideosDataModule(L.LightningDataModule):
    """Loaders over ``videos(split)``; subclasses list the videos and set ``classnames`` and ``templates``. The
    hparams ``num_frames``, ``num_clips``, ``image_size``, ``batch_size``, ``eval_batch_size``, ``num_workers``,
    ``bad_samples``, ``flip``, ``color_jitter`` and ``predict_videos`` are every subclass's."""

    classnames: list[str]
    templates: list[str]
    image_tmpl: str = "img_{:05d}.jpg"
    index_bias: int = 1

    def videos(self, split: str) -> list[ActionVideo]:
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        # Probe a few videos of every split the stage reads, so that a wrong folder stops the run now.
        for split in _STAGE_SPLITS.get(stage, ()):
            _probe_videos(self.videos(split), split, self.hparams.bad_samples, self.image_tmpl, self.index_bias)

    def dataset(self, split: str) -> ActionVideoDataset:
        """The data set of ``split``: random segment frames and augmentation in training, the centres of the
        segments in evaluation, ``num_clips`` views at test."""
        h = self.hparams
        _check_split(split)
        train = split == "train"
        if train:
            transform = video_transform(h.image_size, train=True, flip=h.flip, color_jitter=h.color_jitter)
        else:
            transform = self.eval_transform()
        views = h.num_clips if split == "test" else 1
        sampling = "random" if train else "uniform"
        return ActionVideoDataset(
            self.videos(split), h.num_frames, sampling, transform, views, self.image_tmpl, self.index_bias
        )

    def eval_transform(self) -> Callable[[Tensor], Tensor]:
        """ActionCLIP's test preprocessing: the short side resized to ``image_size * 256 // 224``, a centre crop."""
        return video_transform(self.hparams.image_size, resize=self.hparams.image_size * 256 // 224)

    def _loader(self, split: str) -> StatefulDataLoader:
        h = self.hparams
        train = split == "train"
        dataset = self.dataset(split)
        if train:
            require_one_batch(len(dataset), h.batch_size, self.trainer, f"training videos of {type(self).__name__}")
        batch_size = h.batch_size if train or h.eval_batch_size is None else h.eval_batch_size
        collate = without_bad_samples(collate_views, training=train)
        return stateful_loader(RobustSamples(dataset, h.bad_samples), batch_size, h.num_workers, train, collate)

    def train_dataloader(self) -> StatefulDataLoader:
        return self._loader("train")

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader("val")

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader | list:
        reader = ClipReader(self.hparams.num_frames, "uniform", self.eval_transform())
        return video_prediction_loaders(self.hparams, reader, default=self.test_dataloader)


def _check_common(num_frames: int, num_clips: int, image_size: int, bad_samples: str) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if num_clips < 1:
        raise ValueError(f"num_clips (views per test video) must be at least 1, got {num_clips}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    check_policy(bad_samples)


# -- Kinetics -----------------------------------------------------------------------------------

_KINETICS_LAYOUT = """expected Kinetics' csv files and videos named as its downloaders name them:
  <root>/
    annotations/train.csv, val.csv, test.csv   label,youtube_id,time_start,time_end,split
    train/[<label>/]<youtube_id>_<time_start:06d>_<time_end:06d>.mp4   (any video extension; class folders or not)
    val/[<label>/]...
    test/[<label>/]..."""


class Kinetics400(_ActionVideosDataModule):
    """Kinetics-400 (400 human actions, ~240k training and ~20k validation clips of up to 10 s from YouTube), from the
    official csv files and the videos as the common downloaders save them.

    Layout (:data:`_KINETICS_LAYOUT`): the csv files (columns ``label, youtube_id, time_start, time_end, split``;
    others such as ``is_cc`` ignored) and, per split, a folder of ``<youtube_id>_<time_start:06d>_<time_end:06d>``
    videos, flat (cvdfoundation's archives) or in one folder per class (ActivityNet's ``download.py``), any video
    extension. Videos are found by name anywhere under the split's folder. Kinetics clips disappear from YouTube,
    so every copy misses some: rows without a video are left out with a warning giving their number (policy
    "skip") or stop the run naming them ("raise"). ``missing_videos[split]`` counts them.

    ``classnames``: the distinct labels of the csv files, sorted (ActionCLIP's label order); they are readable
    already ("air drumming"). The same csv format serves Kinetics-600 and -700 (``classnames`` follow the files).
    Protocol (ActionCLIP): 8 frames, train on train, report top-1 / top-5 on the validation set (78.4 % top-1 for
    ViT-B/32 with 8 frames, 81.1 % for ViT-B/16).
    """

    def __init__(
        self,
        root: str,
        train_csv: str | None = "annotations/train.csv",
        val_csv: str = "annotations/val.csv",
        test_csv: str | None = None,
        train_dir: str = "train",
        val_dir: str = "val",
        test_dir: str = "test",
        num_frames: int = 8,
        num_clips: int = 1,
        image_size: int = 224,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        flip: bool = True,
        color_jitter: bool = True,
        templates: str | Sequence[str] = "actionclip",
        predict_videos: str | None = None,
    ):
        """
        Args:
            root: the data set folder; relative csv and video folder paths are under it.
            train_csv, val_csv, test_csv: the splits' csv files; ``train_csv`` None for evaluation only,
                ``test_csv`` None to test on the validation set (csv and videos).
            train_dir, val_dir, test_dir: the splits' video folders.
            num_frames: frames per clip (TSN segments; ActionCLIP's 8).
            num_clips: views per test video (temporal clips; see the module docstring); 1 in training and validation.
            image_size: side of the square frames.
            batch_size: training videos per process; eval_batch_size: evaluation videos per batch (None: batch_size).
            num_workers: DataLoader worker processes (each decodes its videos with PyAV).
            bad_samples: "skip" a video that cannot be read (left out of its batch, its index in ``skipped_index``)
                or "raise" an error naming the file; also how rows without a video are handled.
            flip, color_jitter: ActionCLIP's training flip and colour jitter with greyscale.
            templates: zero-shot prompt templates: ActionCLIP's 16 ("actionclip"), another named set or a list of
                strings with one ``{}``.
            predict_videos: ``lit-clip predict``'s videos: a folder, a file listing video paths, or a video; by
                default predict reads the test split.
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(num_frames, num_clips, image_size, bad_samples)
        self.root = Path(root)
        csvs = {"train": train_csv, "val": val_csv, "test": test_csv or val_csv}
        dirs = {"train": train_dir, "val": val_dir, "test": test_dir if test_csv else val_dir}
        self._sources = {split: (self.root / csvs[split], self.root / dirs[split]) for split in SPLITS if csvs[split]}
        self._rows = {path: _kinetics_rows(path) for path, _ in self._sources.values()}
        self.classnames = sorted({label for rows in self._rows.values() for label, _ in rows})
        self.templates = resolve_templates(templates)
        self.missing_videos: dict[str, int] = {}
        self._videos: dict[str, list[ActionVideo]] = {}

    def videos(self, split: str) -> list[ActionVideo]:
        _check_split(split)
        if split not in self._sources:
            raise ValueError(f"Kinetics400 has no {split} split: give {split}_csv")
        if split not in self._videos:
            self._videos[split] = self._find(split)
        return self._videos[split]

    def _find(self, split: str) -> list[ActionVideo]:
        csv_path, folder = self._sources[split]
        if not folder.is_dir():
            raise FileNotFoundError(f"{split} video folder {folder} not found; {_KINETICS_LAYOUT}")
        on_disk = {}
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith("."):
                on_disk.setdefault(path.stem, path)
        label_of = {name: label for label, name in enumerate(self.classnames)}
        videos, missing = [], []
        for label, stem in self._rows[csv_path]:
            if stem in on_disk:
                videos.append(ActionVideo(on_disk[stem], label_of[label]))
            else:
                missing.append(stem)
        if not videos:
            raise FileNotFoundError(
                f"none of the {len(missing)} videos of {csv_path} is under {folder} (e.g. {missing[0]}.mp4); "
                f"{_KINETICS_LAYOUT}"
            )
        if missing:
            message = (
                f"{len(missing)} of the {len(missing) + len(videos)} videos of {csv_path} are not under {folder} "
                f"(e.g. {', '.join(missing[:3])})"
            )
            if self.hparams.bad_samples == "raise":
                raise FileNotFoundError(f"{message}; bad_samples='skip' leaves them out")
            log.warning("%s; leaving them out", message)
        self.missing_videos[split] = len(missing)
        return videos


def _kinetics_rows(path: Path) -> list[tuple[str, str]]:
    """``(label, video name)`` per row of a Kinetics csv file, the name ``<youtube_id>_<start:06d>_<end:06d>``."""
    rows = []
    for line, row in _read_table(path, ("label", "youtube_id", "time_start", "time_end"), _KINETICS_LAYOUT):
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            raise ValueError(f"{path}, line {line}: time_start / time_end {row['time_start']!r} / "
                             f"{row['time_end']!r} are not numbers of seconds") from None  # fmt: skip
        if not row["label"].strip():
            raise ValueError(f"{path}, line {line}: no label (a test csv without labels cannot be evaluated)")
        rows.append((row["label"].strip(), f"{row['youtube_id']}_{start:06d}_{end:06d}"))
    if not rows:
        raise ValueError(f"{path} lists no videos; {_KINETICS_LAYOUT}")
    return rows


# -- UCF101 -------------------------------------------------------------------------------------

_UCF101_LAYOUT = """expected UCF101's layout (UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip extracted):
  <root>/
    UCF-101/<Class>/v_<Class>_g<group>_c<clip>.avi
    ucfTrainTestlist/classInd.txt                 "<id> <Class>" lines, ids from 1
    ucfTrainTestlist/trainlist0{1,2,3}.txt        "<Class>/v_<Class>_gXX_cYY.avi <id>" lines
    ucfTrainTestlist/testlist0{1,2,3}.txt         "<Class>/v_<Class>_gXX_cYY.avi" lines"""


class UCF101(_ActionVideosDataModule):
    """UCF101 (101 actions, 13,320 YouTube clips in 25 groups), read from the official archives and split lists.

    Split ``k`` (1-3) trains on ``trainlist0k.txt`` and tests on ``testlist0k.txt`` (the 7 groups of split k left
    out of training); validation reads the test list too. Labels follow ``classInd.txt``; ``classnames`` are its
    names split into words ("ApplyEyeMakeup" -> "apply eye makeup", ``readable_classnames``). The published
    figures average the three splits.
    """

    def __init__(
        self,
        root: str,
        split: int = 1,
        videos_dir: str = "UCF-101",
        splits_dir: str = "ucfTrainTestlist",
        readable_classnames: bool = True,
        num_frames: int = 8,
        num_clips: int = 1,
        image_size: int = 224,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        flip: bool = True,
        color_jitter: bool = True,
        templates: str | Sequence[str] = "actionclip",
        predict_videos: str | None = None,
    ):
        """
        Args:
            root: the folder holding ``videos_dir`` and ``splits_dir``.
            split: the official split, 1, 2 or 3.
            videos_dir: the video folder (one sub-folder per class) under ``root``.
            splits_dir: the folder of ``classInd.txt`` and the split lists under ``root``.
            readable_classnames: class names split into lower-case words; False: as ``classInd.txt`` writes them.
            num_frames, num_clips, image_size, batch_size, eval_batch_size, num_workers, bad_samples, flip,
                color_jitter, templates, predict_videos: as :class:`Kinetics400`'s.
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(num_frames, num_clips, image_size, bad_samples)
        _check_official_split(split, "UCF101")
        self.root = Path(root)
        lists, videos = self.root / splits_dir, self.root / videos_dir
        class_ind = lists / "classInd.txt"
        names = {}
        for number, line in enumerate(_read_lines(class_ind, _UCF101_LAYOUT), 1):
            class_id, _, name = line.partition(" ")
            if not class_id.isdigit() or not name.strip():
                raise ValueError(f"{class_ind}, line {number}: {line!r} is not '<id> <Class>'")
            names[int(class_id)] = name.strip()
        if sorted(names) != list(range(1, len(names) + 1)):
            raise ValueError(f"{class_ind}: class ids must run from 1 to the number of classes without gaps")
        raw = [names[class_id] for class_id in sorted(names)]
        self.classnames = [readable_classname(name) for name in raw] if readable_classnames else raw
        self.templates = resolve_templates(templates)
        label_of = {name: label for label, name in enumerate(raw)}
        self._videos = {"train": _ucf_list(lists / f"trainlist0{split}.txt", videos, label_of, labelled=True)}
        self._videos["val"] = self._videos["test"] = _ucf_list(lists / f"testlist0{split}.txt", videos, label_of)

    def videos(self, split: str) -> list[ActionVideo]:
        _check_split(split)
        return self._videos[split]


def _ucf_list(path: Path, videos: Path, label_of: dict[str, int], labelled: bool = False) -> list[ActionVideo]:
    """The videos of a UCF101 split list; the label from the class folder of the path (checked against the line's
    class id in the train lists)."""
    listed = []
    for number, line in enumerate(_read_lines(path, _UCF101_LAYOUT), 1):
        relative, _, class_id = line.partition(" ")
        name = relative.split("/")[0]
        if name not in label_of or "/" not in relative:
            raise ValueError(f"{path}, line {number}: {relative!r} is not '<Class>/<video>', a class of classInd.txt")
        if labelled and class_id.strip() != str(label_of[name] + 1):
            raise ValueError(f"{path}, line {number}: class id {class_id.strip()!r} is not {name}'s in classInd.txt "
                             f"({label_of[name] + 1})")  # fmt: skip
        listed.append(ActionVideo(videos / relative, label_of[name]))
    return listed


def readable_classname(name: str) -> str:
    """A CamelCase class name as lower-case words: "ApplyEyeMakeup" -> "apply eye makeup", "YoYo" -> "yo yo"; an
    upper-case run stays one word ("PlayingTV" -> "playing tv"); underscores read as spaces."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name.replace("_", " "))
    return " ".join(word.lower() for word in words)


# -- HMDB51 -------------------------------------------------------------------------------------

_HMDB51_LAYOUT = """expected HMDB51's layout (hmdb51_org.rar with its per-class archives, and test_train_splits.rar):
  <root>/
    hmdb51_org/<class>/<video>.avi
    testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt   "<video>.avi <1 train | 2 test | 0 unused>" lines"""


class HMDB51(_ActionVideosDataModule):
    """HMDB51 (51 actions, 6,766 clips from films and YouTube), read from the official archives and split files.

    Split ``k`` (1-3) reads ``<class>_test_split<k>.txt`` of every class: videos marked 1 are trained on, those
    marked 2 tested on (70 and 30 per class), 0 unused; validation reads the test videos too. Labels follow the
    sorted class names; ``classnames`` read "_" as " " ("brush hair"). The published figures average the splits.
    """

    def __init__(
        self,
        root: str,
        split: int = 1,
        videos_dir: str = "hmdb51_org",
        splits_dir: str = "testTrainMulti_7030_splits",
        num_frames: int = 8,
        num_clips: int = 1,
        image_size: int = 224,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        flip: bool = True,
        color_jitter: bool = True,
        templates: str | Sequence[str] = "actionclip",
        predict_videos: str | None = None,
    ):
        """
        Args:
            root: the folder holding ``videos_dir`` and ``splits_dir``.
            split: the official split, 1, 2 or 3.
            videos_dir: the video folder (one sub-folder per class) under ``root``.
            splits_dir: the folder of the split files under ``root``.
            num_frames, num_clips, image_size, batch_size, eval_batch_size, num_workers, bad_samples, flip,
                color_jitter, templates, predict_videos: as :class:`Kinetics400`'s.
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(num_frames, num_clips, image_size, bad_samples)
        _check_official_split(split, "HMDB51")
        self.root = Path(root)
        lists, videos = self.root / splits_dir, self.root / videos_dir
        suffix = f"_test_split{split}.txt"
        files = sorted(lists.glob(f"*{suffix}")) if lists.is_dir() else []
        if not files:
            raise FileNotFoundError(f"no split file *{suffix} in {lists}; {_HMDB51_LAYOUT}")
        classes = [file.name[: -len(suffix)] for file in files]
        self.classnames = [name.replace("_", " ") for name in classes]
        self.templates = resolve_templates(templates)
        self._videos: dict[str, list[ActionVideo]] = {"train": [], "test": []}
        for label, (name, file) in enumerate(zip(classes, files)):
            for number, line in enumerate(_read_lines(file, _HMDB51_LAYOUT), 1):
                fields = line.split()
                if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                    raise ValueError(f"{file}, line {number}: {line!r} is not '<video>.avi <0 | 1 | 2>'")
                if fields[1] != "0":
                    split_name = "train" if fields[1] == "1" else "test"
                    self._videos[split_name].append(ActionVideo(videos / name / fields[0], label))
        for split_name, listed in self._videos.items():
            if not listed:
                raise ValueError(f"the *{suffix} files in {lists} mark no video for {split_name}")
        self._videos["val"] = self._videos["test"]

    def videos(self, split: str) -> list[ActionVideo]:
        _check_split(split)
        return self._videos[split]


# -- ActionCLIP's lists -------------------------------------------------------------------------

_LIST_FORMAT = """expected ActionCLIP's list files:
  a list: one "<frame folder> <num_frames> <label>" line per video (frames named image_tmpl, from index_bias), or
          "<video file> <label>" / "<video file> <num_frames> <label>"; paths absolute or relative to root
  labels_csv: "id,name" with a header, one row per class (ActionCLIP's lists/*_labels.csv)"""


class VideoListRecognition(_ActionVideosDataModule):
    """Action recognition from ActionCLIP's list files (any data set): ``path num_frames label`` lines of frame
    folders (``img_00001.jpg``, ... as ActionCLIP's and TSN's frame extraction writes them), or lines of video files,
    and a labels csv ``id,name`` (ActionCLIP's ``lists/kinetics_400_labels.csv``, ``ucf_labels.csv``, ...).

    ``classnames``: the csv's names by id, as written. A frame folder's frames are sampled from the list's
    ``num_frames``; a video file's from its own frame count.
    """

    def __init__(
        self,
        train_list: str | None,
        val_list: str,
        labels_csv: str,
        test_list: str | None = None,
        root: str | None = None,
        image_tmpl: str = "img_{:05d}.jpg",
        index_bias: int = 1,
        num_frames: int = 8,
        num_clips: int = 1,
        image_size: int = 224,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        flip: bool = True,
        color_jitter: bool = True,
        templates: str | Sequence[str] = "actionclip",
        predict_videos: str | None = None,
    ):
        """
        Args:
            train_list: the training list (None for evaluation only); val_list: the validation list;
                test_list: the test list (None: the validation list, as ActionCLIP tests).
            labels_csv: the ``id,name`` class file.
            root: the folder relative paths of the lists are under; by default each list's folder.
            image_tmpl, index_bias: frame file names of a frame folder (ActionCLIP's ``img_{:05d}.jpg`` from 1).
            num_frames, num_clips, image_size, batch_size, eval_batch_size, num_workers, bad_samples, flip,
                color_jitter, templates, predict_videos: as :class:`Kinetics400`'s.
        """
        super().__init__()
        self.save_hyperparameters()
        _check_common(num_frames, num_clips, image_size, bad_samples)
        self.image_tmpl, self.index_bias = image_tmpl, index_bias
        names = {}
        labels_path = Path(labels_csv)
        for line, row in _read_table(labels_path, ("id", "name"), _LIST_FORMAT):
            if not row["id"].strip().isdigit():
                raise ValueError(f"{labels_path}, line {line}: id {row['id']!r} is not an integer")
            names[int(row["id"])] = row["name"].strip()
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"{labels_path}: ids must run from 0 to the number of classes - 1 without gaps")
        self.classnames = [names[i] for i in range(len(names))]
        self.templates = resolve_templates(templates)
        files = {"train": train_list, "val": val_list, "test": test_list or val_list}
        self._videos = {
            split: _read_video_list(Path(file), root, len(self.classnames)) for split, file in files.items() if file
        }

    def videos(self, split: str) -> list[ActionVideo]:
        _check_split(split)
        if split not in self._videos:
            raise ValueError(f"VideoListRecognition has no {split} split: give {split}_list")
        return self._videos[split]


def _read_video_list(path: Path, root: str | None, num_classes: int) -> list[ActionVideo]:
    base = Path(root) if root is not None else path.parent
    videos = []
    for number, line in enumerate(_read_lines(path, _LIST_FORMAT), 1):
        fields = line.rsplit(maxsplit=2)
        if len(fields) == 3 and not fields[1].isdigit():  # "<video file with a space> <label>"
            fields = [f"{fields[0]} {fields[1]}", fields[2]]
        if len(fields) < 2 or not all(field.isdigit() for field in fields[1:]):
            raise ValueError(f"{path}, line {number}: {line!r} is not '<path> <num_frames> <label>' / '<path> <label>'")
        label = int(fields[-1])
        if label >= num_classes:
            raise ValueError(f"{path}, line {number}: label {label} is not one of the {num_classes} classes")
        num_frames = int(fields[1]) if len(fields) == 3 else None
        video_path = base / fields[0]
        if num_frames is None and video_path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise ValueError(f"{path}, line {number}: a frame folder needs its count: '<folder> <num_frames> <label>'")
        videos.append(ActionVideo(video_path, label, num_frames))
    return videos


# -- helpers ------------------------------------------------------------------------------------


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")


def _check_official_split(split: int, dataset: str) -> None:
    if isinstance(split, bool) or split not in (1, 2, 3):
        raise ValueError(f"split must be one of {dataset}'s official splits 1, 2 or 3, got {split!r}")


def _read_lines(path: Path, expected: str) -> list[str]:
    """The non-blank lines of a text file, stripped (CRLF too); a missing file is an error saying what was expected."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {expected}")
    with open(path, encoding="utf-8") as file:
        return [line.strip() for line in file if line.strip()]


def _read_table(path: Path, columns: Sequence[str], expected: str) -> list[tuple[int, dict]]:
    """The rows of a csv file with a header, as ``(line number, row)``; a missing file or column is an error that
    says what was expected."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {expected}")
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        header = reader.fieldnames or []
        missing = [column for column in columns if column not in header]
        if missing:
            raise ValueError(f"{path} has no column {missing[0]!r}; its header has {header}; {expected}")
        rows = []
        for row in reader:
            if any(row[column] is None for column in columns):
                raise ValueError(f"{path}, line {reader.line_num}: fewer fields than the header's {len(header)}")
            rows.append((reader.line_num, row))
    return rows


def _probe_videos(
    videos: Sequence[ActionVideo], split: str, policy: BadSamplePolicy, image_tmpl: str, index_bias: int
) -> None:
    """Open a few videos spread over ``split`` (a frame folder: its first frame): with policy "raise" any failure,
    and with "skip" all of them failing, stops the run now, naming the files."""
    probes = 8
    probed = videos[:: max(1, len(videos) // probes)][:probes]
    errors = []
    for video in probed:
        try:
            if video.is_frame_folder:
                read_frame_folder(video.path, [0], image_tmpl, index_bias)
            else:
                video_info(video.path)
        except BadSampleError as error:
            if policy == "raise":
                raise
            errors.append(str(error))
    if errors and len(errors) == len(probed):
        raise BadSampleError(
            f"none of {len(errors)} videos probed across the {split} split can be read, e.g. {errors[0]}; "
            "is the video folder right?"
        )
