"""Video-text retrieval data sets read from disk in the layouts CLIP4Clip reads (MSR-VTT, MSVD, DiDeMo), and a folder
of the user's own videos for ``lit-clip predict``.

Training samples are ``{"video" [T, 3, S, S], "text" [L], "caption", "index"}``, one caption per sample, collated by
:func:`~lit_clip.datamodules.video.collate_videos` into a :class:`~lit_clip.batches.VideoBatch` (``frame_mask`` marks
the frames of clips shorter than ``num_frames``). Validation and test have one sample per video with all its
captions, as :class:`~lit_clip.datamodules.pairs.CocoCaptions` does for images: ``text`` ``[N, L]``,
``text_index`` ``[N]`` (numbered over the split), ``text_video_index`` ``[N]`` (each caption's video ``index``), so
text-to-video retrieval ranks the videos for every caption and video-to-text counts any caption of a video as a hit
(CLIP4Clip's multi-sentence evaluation of MSVD; MSR-VTT's 1k-A test and DiDeMo have one caption per video). Videos
are read with :func:`~lit_clip.datamodules.video.read_clip`; a missing or unreadable video is left out of its batch
and counted in ``skipped_index``, or stops the run, as ``bad_samples`` says.

What CLIP4Clip (``ArrowLuo/CLIP4Clip``, ``dataloaders/dataloader_{msrvtt,msvd,didemo}_retrieval.py``) does, and the
differences:

- Frames: one per second, thinned uniformly to ``max_frames`` (12; 64 for DiDeMo), the same in training and test
  (``sampling="fps"`` here, the default), each resized and centre-cropped to 224 without augmentation.
- MSR-VTT: trains on every caption of the 9k training videos (``--expand_msrvtt_sentences``), one sample each, and
  validates and tests on the 1k-A pairs of ``MSRVTT_JSFUSION_test.csv``.
- MSVD: trains on every caption of the training videos, one sample each; val and test rank all captions of every
  video (about 40 a video).
- DiDeMo: video-paragraph retrieval: the descriptions of a video joined in the file's order into one text, and the
  frames of its first 31 seconds (CLIP4Clip reads 0-31 s, as the annotators saw at most 30 s).
- Videos a list names but the folder lacks: CLIP4Clip leaves them out without a word (DiDeMo) or fails later (the
  others); here they are bad samples, counted in every batch they fall in, and ``setup`` warns how many there are.
- Text: CLIP4Clip cuts captions to ``max_words`` tokens (32; 64 for DiDeMo) keeping the end token; so does our
  tokenizer with ``context_length``.
"""
from __future__ import annotations

import csv
import itertools
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import BadSampleError, BadSamplePolicy, check_policy
from lit_clip.datamodules.loaders import robust_loader
from lit_clip.datamodules.pairs import _captioned, _read_json, _with_captions
from lit_clip.datamodules.video import (
    SAMPLING_MODES,
    ClipReader,
    collate_videos,
    video_info,
    video_prediction_loaders,
    video_transform,
)
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.tokenizer import tokenize

log = logging.getLogger(__name__)

# A video file and its captions.
CaptionedVideo = tuple[Path, list[str]]

# The splits each Lightning stage reads, so that setup() finds bad paths before the run starts.
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


class VideoCaptionDataset(Dataset):
    """Training pairs ``{"video", "text", "caption", "index"}``: a video's clip with one of its captions."""

    def __init__(self, pairs: Sequence[tuple[Path, str]], reader: ClipReader, context_length: int):
        self.pairs, self.reader, self.context_length = pairs, reader, context_length

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        path, caption = self.pairs[index]
        return {
            "video": self.reader(path),
            "text": tokenize(caption, context_length=self.context_length)[0],
            "caption": caption,
            "index": index,
        }


class VideoCaptionsDataset(Dataset):
    """Retrieval samples: a video's clip with all its captions, numbered over the split.

    ``{"video", "index", "text": [n, context_length], "text_index": [n], "caption": list of n}``, where
    ``text_index`` numbers the captions of the whole split in order; :func:`collate_videos` adds
    ``text_video_index``.
    """

    def __init__(self, videos: Sequence[CaptionedVideo], reader: ClipReader, context_length: int):
        self.videos, self.reader, self.context_length = videos, reader, context_length
        self.first_caption = [0, *itertools.accumulate(len(captions) for _, captions in videos)]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        path, captions = _with_captions(self.videos[index])
        return {
            "video": self.reader(path),
            "index": index,
            "text": tokenize(captions, context_length=self.context_length),
            "text_index": torch.arange(self.first_caption[index], self.first_caption[index + 1]),
            "caption": list(captions),
        }


class _VideoRetrievalDataModule(L.LightningDataModule):
    """Loaders over ``videos(split)``; subclasses read the splits in ``_read``.

    The subclass's ``hparams`` hold ``num_frames``, ``sampling``, ``train_sampling``, ``augment``, ``image_size``,
    ``context_length``, ``batch_size``, ``eval_batch_size``, ``num_workers``, ``bad_samples``, ``predict_videos``
    and ``predict_texts``.
    """

    classnames = None  # captions only: no zero-shot classification during evaluation
    max_seconds: float | None = None  # read only the video's first seconds (DiDeMo)
    layout = ""  # the expected files, for error messages

    def __init__(self):
        super().__init__()
        self._videos: dict[str, list[CaptionedVideo]] = {}

    def _check_settings(self) -> None:
        h = self.hparams
        check_policy(h.bad_samples)
        for key in ("sampling", "train_sampling"):
            if h[key] is not None and h[key] not in SAMPLING_MODES:
                raise ValueError(f"unknown {key} {h[key]!r}; expected one of {SAMPLING_MODES}")

    def _read(self, split: str) -> dict[str, list[CaptionedVideo]]:
        """The videos of ``split`` with their captions, and of any other split read from the same file."""
        raise NotImplementedError

    def videos(self, split: str) -> list[CaptionedVideo]:
        """The videos of ``split`` with their captions, read on first use."""
        if split not in self._videos:
            self._videos.update(self._read(split))
        return self._videos[split]

    def setup(self, stage: str) -> None:
        # Read and probe every split the stage needs now, so that a wrong path stops the run before its first step.
        for split in _STAGE_SPLITS.get(stage, ()):
            _check_videos(self.videos(split), split, self.hparams.bad_samples, self.layout)

    def reader(self, train: bool) -> ClipReader:
        """How a split's videos become clips: ``train_sampling`` (or ``sampling``) and, with ``augment``, a random
        crop and flip in training; ``sampling`` and the centre crop otherwise."""
        h = self.hparams
        sampling = (h.train_sampling or h.sampling) if train else h.sampling
        transform = video_transform(h.image_size, train=train and h.augment)
        return ClipReader(h.num_frames, sampling, transform, max_seconds=self.max_seconds)

    def train_dataloader(self) -> StatefulDataLoader:
        h = self.hparams
        # One sample per caption (CLIP4Clip's unfolded sentences).
        pairs = [(path, caption) for path, captions in self.videos("train") for caption in captions]
        require_one_batch(len(pairs), h.batch_size, self.trainer, "training captions")
        return robust_loader(VideoCaptionDataset(pairs, self.reader(True), h.context_length), h, collate_videos, True)

    def _retrieval_loader(self, split: str) -> StatefulDataLoader:
        h = self.hparams
        dataset = VideoCaptionsDataset(self.videos(split), self.reader(False), h.context_length)
        return robust_loader(dataset, h, collate_videos, train=False)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._retrieval_loader("val")

    def test_dataloader(self) -> StatefulDataLoader:
        return self._retrieval_loader("test")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        return video_prediction_loaders(self.hparams, self.reader(False), default=self.test_dataloader)


_COMMON_ARGS = """
            num_frames: frames per clip (CLIP4Clip's ``max_frames``); "fps" sampling gives fewer for short videos.
            sampling: how clips are drawn from videos (see ``lit_clip.datamodules.video.sample_frames``): "fps" (one
                frame a second, thinned uniformly to ``num_frames``: CLIP4Clip's), "uniform" or "random".
            train_sampling: the training clips' sampling, if not ``sampling`` (e.g. "random", TSN's).
            augment: a random crop (44-100 % of the area) and flip of training clips; CLIP4Clip trains without.
            image_size: side of the square frames.
            context_length: token length of the captions (CLIP4Clip's ``max_words``); longer ones are cut.
            batch_size: per process; training clips per batch.
            eval_batch_size: per process; videos per validation / test batch (with all their captions).
            num_workers: DataLoader worker processes (each decodes the videos of its batches).
            predict_videos: ``lit-clip predict``'s videos: a folder (searched recursively), a file listing video
                paths, or a video; by default predict reads the test split.
            predict_texts: ``lit-clip predict``'s queries: a text file, one a line.
            bad_samples: "skip" a missing or unreadable video (left out of its batch, its index in
                ``skipped_index``) or "raise" an error naming it. Empty captions are left out with a warning, or
                raised when the file is read."""


class MSRVTT(_VideoRetrievalDataModule):
    """MSR-VTT as CLIP4Clip reads it: the 9k training videos with all their captions, the 1k-A test pairs."""

    layout = (
        "expected CLIP4Clip's MSR-VTT layout: MSRVTT_data.json ({'videos': [...], 'sentences': [{'video_id', "
        "'caption'}]}), MSRVTT_train.9k.csv (a 'video_id' column), MSRVTT_JSFUSION_test.csv (columns 'video_id' "
        "and 'sentence') and a folder of <video_id>.mp4 files"
    )

    def __init__(
        self,
        root: str,
        data_json: str = "MSRVTT_data.json",
        train_csv: str = "MSRVTT_train.9k.csv",
        test_csv: str = "MSRVTT_JSFUSION_test.csv",
        val_csv: str | None = None,
        videos_dir: str = "MSRVTT_Videos",
        num_frames: int = 12,
        sampling: str = "fps",
        train_sampling: str | None = None,
        augment: bool = False,
        image_size: int = 224,
        context_length: int = 32,
        batch_size: int = 128,
        eval_batch_size: int = 16,
        num_workers: int = 4,
        predict_videos: str | None = None,
        predict_texts: str | None = None,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the MSR-VTT folder; the other paths are relative to it (or absolute).
            data_json: the captions of all videos.
            train_csv: the training videos (``MSRVTT_train.7k.csv`` for the 7k split).
            test_csv: the test pairs, one caption per video.
            val_csv: the validation pairs; by default the test pairs (as CLIP4Clip validates).
            videos_dir: the folder of ``<video_id>.mp4`` files (``.webm`` or any other extension also found),
                searched recursively.
        """
        super().__init__()
        self.save_hyperparameters()
        self._check_settings()
        self.root = Path(root)

    __init__.__doc__ = __init__.__doc__.rstrip() + _COMMON_ARGS

    def _read(self, split: str) -> dict[str, list[CaptionedVideo]]:
        h = self.hparams
        videos = _VideoFiles(self.root / h.videos_dir, ".mp4", self.layout)
        if split == "train":
            data = _read_json(self.root / h.data_json, ("sentences",), self.layout)
            captions: dict[str, list] = {}
            for sentence in _entries(data["sentences"], ("video_id", "caption"), self.root / h.data_json, self.layout):
                captions.setdefault(str(sentence["video_id"]), []).append(sentence["caption"])
            train_csv = self.root / h.train_csv
            ids = [row["video_id"] for row in _read_csv(train_csv, ("video_id",), self.layout)]
            pairs = [(videos.path(i), captions.get(i, [])) for i in ids]
            return {"train": _captioned(pairs, str(train_csv), h.bad_samples)}
        path = self.root / (h.test_csv if split == "test" or h.val_csv is None else h.val_csv)
        captions = {}
        for row in _read_csv(path, ("video_id", "sentence"), self.layout):
            captions.setdefault(row["video_id"], []).append(row["sentence"])
        return {split: _captioned([(videos.path(i), texts) for i, texts in captions.items()], str(path), h.bad_samples)}


class MSVD(_VideoRetrievalDataModule):
    """MSVD as CLIP4Clip reads it (the splits and captions of collaborative-experts): 1,200 training, 100
    validation and 670 test videos with about 40 captions each."""

    layout = (
        "expected CLIP4Clip's MSVD layout: raw-captions.pkl (a pickled dict of video id -> list of captions, each a "
        "list of words), train_list.txt, val_list.txt and test_list.txt (one video id a line) and a folder of "
        "<video id>.avi files"
    )

    def __init__(
        self,
        root: str,
        captions_file: str = "raw-captions.pkl",
        train_list: str = "train_list.txt",
        val_list: str = "val_list.txt",
        test_list: str = "test_list.txt",
        videos_dir: str = "MSVD_Videos",
        num_frames: int = 12,
        sampling: str = "fps",
        train_sampling: str | None = None,
        augment: bool = False,
        image_size: int = 224,
        context_length: int = 32,
        batch_size: int = 128,
        eval_batch_size: int = 16,
        num_workers: int = 4,
        predict_videos: str | None = None,
        predict_texts: str | None = None,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the MSVD folder; the other paths are relative to it (or absolute).
            captions_file: the pickled captions (a trusted file: unpickling runs code a crafted file holds).
            train_list, val_list, test_list: the video ids of each split.
            videos_dir: the folder of ``<video id>.avi`` files (any extension), searched recursively.
        """
        super().__init__()
        self.save_hyperparameters()
        self._check_settings()
        self.root = Path(root)

    __init__.__doc__ = __init__.__doc__.rstrip() + _COMMON_ARGS

    def _read(self, split: str) -> dict[str, list[CaptionedVideo]]:
        h = self.hparams
        captions_path = self.root / h.captions_file
        if not captions_path.is_file():
            raise FileNotFoundError(f"{captions_path} not found; {self.layout}")
        try:
            with open(captions_path, "rb") as file:
                captions = pickle.load(file)
        except (pickle.UnpicklingError, EOFError, ValueError, ImportError, AttributeError) as error:
            raise ValueError(f"{captions_path} is not a readable pickle ({error}); {self.layout}") from error
        if not isinstance(captions, dict):
            raise ValueError(f"{captions_path} holds a {type(captions).__name__}, not a dict; {self.layout}")
        list_path = self.root / h[f"{split}_list"]
        ids = _read_ids(list_path, self.layout)
        unknown = [i for i in ids if i not in captions]
        if unknown:
            log.warning("%s: %d videos have no captions in %s (e.g. %s); they are skipped and counted",
                        list_path, len(unknown), captions_path, unknown[0])  # fmt: skip
        videos = _VideoFiles(self.root / h.videos_dir, ".avi", self.layout)
        pairs = [(videos.path(i), [_words_to_text(c) for c in captions.get(i, [])]) for i in ids]
        return {split: _captioned(pairs, f"{list_path} with {captions_path}", h.bad_samples)}


class DiDeMo(_VideoRetrievalDataModule):
    """DiDeMo as CLIP4Clip reads it: video-paragraph retrieval, each video's descriptions joined into one text, the
    frames of its first 31 seconds (``max_seconds``)."""

    layout = (
        "expected CLIP4Clip's DiDeMo layout: train_data.json, val_data.json and test_data.json (LocalizingMoments' "
        "lists of {'video', 'description', 'times'}), train_list.txt, val_list.txt and test_list.txt (one video "
        "file name a line) and a folder of the video files"
    )
    max_seconds = 31.0

    def __init__(
        self,
        root: str,
        train_json: str = "train_data.json",
        val_json: str = "val_data.json",
        test_json: str = "test_data.json",
        train_list: str | None = "train_list.txt",
        val_list: str | None = "val_list.txt",
        test_list: str | None = "test_list.txt",
        videos_dir: str = "DiDeMo_Videos",
        num_frames: int = 64,
        sampling: str = "fps",
        train_sampling: str | None = None,
        augment: bool = False,
        image_size: int = 224,
        context_length: int = 64,
        batch_size: int = 128,
        eval_batch_size: int = 16,
        num_workers: int = 4,
        predict_videos: str | None = None,
        predict_texts: str | None = None,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            root: the DiDeMo folder; the other paths are relative to it (or absolute).
            train_json, val_json, test_json: the descriptions of each split.
            train_list, val_list, test_list: the videos of each split (collaborative-experts'), one file name a line;
                None: every video of the split's descriptions.
            videos_dir: the folder of the video files, named as the descriptions' ``video`` (or that name with
                another extension), searched recursively.
        """
        super().__init__()
        self.save_hyperparameters()
        self._check_settings()
        self.root = Path(root)

    __init__.__doc__ = __init__.__doc__.rstrip() + _COMMON_ARGS

    def _read(self, split: str) -> dict[str, list[CaptionedVideo]]:
        h = self.hparams
        json_path = self.root / h[f"{split}_json"]
        if not json_path.is_file():
            raise FileNotFoundError(f"{json_path} not found; {self.layout}")
        items = _read_json_list(json_path, self.layout)
        descriptions: dict[str, list] = {}
        for item in _entries(items, ("video", "description"), json_path, self.layout):
            descriptions.setdefault(str(item["video"]), []).append(item["description"])
        ids = _read_ids(self.root / h[f"{split}_list"], self.layout) if h[f"{split}_list"] else list(descriptions)
        videos = _VideoFiles(self.root / h.videos_dir, "", self.layout)
        checked = _captioned([(videos.path(i), descriptions.get(i, [])) for i in ids], str(json_path), h.bad_samples)
        # A paragraph of the video's descriptions in the file's order (CLIP4Clip's " ".join).
        return {split: [(path, [" ".join(texts)] if texts else []) for path, texts in checked]}


class VideoFolder(L.LightningDataModule):
    """The user's own videos and text queries for ``lit-clip predict`` (retrieval from a folder of videos): batches
    ``{"video", "frame_mask", "path", "index", "skipped_index"}`` and ``{"text", "caption"}``."""

    classnames = None

    def __init__(
        self,
        predict_videos: str,
        predict_texts: str | None = None,
        num_frames: int = 12,
        sampling: str = "uniform",
        image_size: int = 224,
        context_length: int = 77,
        batch_size: int = 16,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            predict_videos: a folder of videos (searched recursively), a file listing video paths (relative to
                its folder), or one video.
            predict_texts: a text file of queries, one a line.
            num_frames: frames per clip.
            sampling: "uniform" (the centres of ``num_frames`` equal segments), "fps" (one frame a second, thinned
                to ``num_frames``: CLIP4Clip's) or "random".
            image_size: side of the square frames.
            context_length: token length of the queries.
            batch_size: videos (or queries) per batch.
            num_workers: DataLoader worker processes.
            bad_samples: "skip" an unreadable video (left out, its index in ``skipped_index``) or "raise".
        """
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLING_MODES}")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        h = self.hparams
        reader = ClipReader(h.num_frames, h.sampling, video_transform(h.image_size))
        return video_prediction_loaders(h, reader, default=lambda: [])


# -- readers ------------------------------------------------------------------------------------


class _VideoFiles:
    """The video files under ``folder`` (recursively) by file name and by name without extension."""

    def __init__(self, folder: Path, extension: str, layout: str):
        if not folder.is_dir():
            raise FileNotFoundError(f"video folder {folder} not found; {layout}")
        self.folder, self.extension = folder, extension
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, Path] = {}
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                self.by_name.setdefault(path.name, path)
                self.by_stem.setdefault(path.stem, path)

    def path(self, video_id: str) -> Path:
        """The file of ``video_id``: named so, or so plus the layout's extension, or so plus any extension; the
        expected path (``<folder>/<id><extension>``) when none exists, to be named when it is read."""
        return (
            self.by_name.get(video_id)
            or self.by_name.get(video_id + self.extension)
            or self.by_stem.get(video_id)
            or self.folder / (video_id + self.extension)
        )


def _read_csv(path: Path, columns: Sequence[str], layout: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {layout}")
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = [column for column in columns if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} has no column {missing[0]!r} (its columns: {reader.fieldnames}); {layout}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path} has no rows; {layout}")
    return rows


def _read_ids(path: Path, layout: str) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {layout}")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path} lists no video; {layout}")
    return ids


def _read_json_list(path: Path, layout: str) -> list:
    content = _read_json(path, (), layout)
    if not isinstance(content, list):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a list; {layout}")
    return content


def _entries(entries, keys: Sequence[str], path: Path, layout: str) -> list[dict]:
    """``entries``, each checked to be a dict with ``keys``."""
    for number, entry in enumerate(entries):
        missing = [key for key in keys if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise ValueError(f"{path}: entry {number} has no {missing[0]!r} key; {layout}")
    return entries


def _words_to_text(caption) -> object:
    """A caption of ``raw-captions.pkl``: a list of words joined by spaces (CLIP4Clip's ``" ".join``); text as it
    is; anything else unchanged, for :func:`_captioned` to report."""
    if isinstance(caption, (list, tuple)) and all(isinstance(word, str) for word in caption):
        return " ".join(caption)
    return caption


def _check_videos(videos: list[CaptionedVideo], split: str, policy: BadSamplePolicy, layout: str, probes: int = 4):
    """Count the split's missing video files (a warning; with policy "raise", an error) and read the headers of a
    few: none found, or none of the probed readable, stops the run now, naming the files."""
    missing = [path for path, _ in videos if not path.is_file()]
    if missing and len(missing) == len(videos):
        raise FileNotFoundError(f"none of the {len(videos)} videos of the {split} split exists, e.g. {missing[0]}; "
                                f"{layout}")  # fmt: skip
    if missing and policy == "raise":
        raise FileNotFoundError(
            f"{len(missing)} of {len(videos)} videos of the {split} split are missing, e.g. {missing[0]}; {layout}"
        )
    if missing:
        log.warning("%d of %d videos of the %s split are missing (e.g. %s); they are skipped and counted",
                    len(missing), len(videos), split, missing[0])  # fmt: skip
    present = [path for path, _ in videos if path.is_file()]
    probed = present[:: max(1, len(present) // probes)][:probes]
    errors = []
    for path in probed:
        try:
            video_info(path)
        except BadSampleError as error:
            if policy == "raise":
                raise
            errors.append(str(error))
    if errors and len(errors) == len(probed):
        raise BadSampleError(
            f"none of {len(errors)} videos probed across the {split} split can be read, e.g. {errors[0]}"
        )
