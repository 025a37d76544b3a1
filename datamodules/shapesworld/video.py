"""ShapesWorld clips as a video data set: text-video retrieval (CLIP4Clip) and action recognition (ActionCLIP).

Every sample is a clip of :class:`~lit_clip.datamodules.shapesworld.clips.ShapesWorldClips` generated from
``(seed, split, index)``: its frames normalised as CLIP images, its caption ("a red circle moves to the left") and
its action label, the index of its motion in :data:`~lit_clip.datamodules.shapesworld.clips.MOTIONS`. Nothing is
read from disk, so every DataLoader worker and DDP rank makes its own share.

Half of the motions mirror another in time (left / right, up / down, growing / shrinking) and look the same in the
middle frame, so ``num_frames=1`` (that frame alone) is the "CLIP on the middle frame" baseline the video methods are
measured against.
"""
from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import BadSamplePolicy, check_policy
from lit_clip.datamodules.loaders import stateful_loader
from lit_clip.datamodules.shapesworld.clips import MOTIONS, Clip, ShapesWorldClips
from lit_clip.datamodules.video import ClipReader, collate_videos, sample_frames, video_prediction_loaders, video_transform
from torch.utils.data import DataLoader, Dataset

from lit_clip.batches import EvaluationSet
from lit_clip.noun_prompts import caption_entries
from lit_clip.transforms import to_normalized_tensor

TASKS = ("retrieval", "recognition")
# Zero-shot prompts for the motions ("moving left"); the captions' own words are the clips' language.
ACTION_TEMPLATES: tuple[str, ...] = (
    "a video of a shape {}.",
    "a clip of a shape {}.",
    "a shape {}.",
    "a video of something {}.",
)


class ShapesClipDataset(Dataset):
    """``{"video" [T, 3, H, W], "caption", "label", "index"}``, and with ``context_length`` ``"text"`` (the caption's
    token ids): clip ``index`` of a split, drawn from ``allowed`` compositions (None: all of the split), its frames
    ``frame_indices``."""

    def __init__(
        self,
        clips: ShapesWorldClips,
        split: str,
        length: int,
        frame_indices: Sequence[int],
        context_length: int | None,
        allowed: Sequence[str] | None = None,
    ):
        self.clips, self.split, self.length, self.frame_indices = clips, split, length, list(frame_indices)
        self.context_length, self.allowed = context_length, allowed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self._sample(self.clips.clip(self.split, index, self.allowed), index)

    def _sample(self, clip: Clip, index: int) -> dict:
        sample = {
            "video": torch.stack([to_normalized_tensor(clip.frames[k]) for k in self.frame_indices]),
            "caption": clip.caption,
            "label": torch.tensor(clip.motion),
            "index": index,
        }
        if self.context_length is not None:
            sample["text"] = caption_entries(clip.caption, self.context_length)["text"]
        return sample


class ShapesClipFamilies(ShapesClipDataset):
    """Motion families: item ``f`` is the list of the samples of draw ``f`` shown with every motion in turn (the same
    object, background and middle-frame pose wherever the motion allows; see ``ShapesWorldClips.clip``'s ``motion``)."""

    def __getitem__(self, family: int) -> list[dict]:
        return [
            self._sample(self.clips.clip(self.split, family, motion=motion), family * len(MOTIONS) + k)
            for k, motion in enumerate(MOTIONS)
        ]


def collate_families(families: list[list[dict]]) -> dict:
    """One batch of every clip of the families."""
    return collate_videos([sample for family in families for sample in family])


class ShapesWorldVideo(L.LightningDataModule):
    """Clips of moving shapes for text-video retrieval or zero-shot / trained action recognition.

    Batches are :class:`~lit_clip.batches.VideoBatch` es (``collate_videos``): ``video``, ``frame_mask``,
    ``caption``, ``label``, ``index``, and ``text`` (the captions' token ids) for retrieval. ``classnames``: the
    motions ("moving left"), ``templates``: prompts for them. Validation and test read the clips of their split;
    with ``held_out``, a loader of held-out compositions only, whose metrics ``evaluation_sets`` names "heldout"
    (``test/heldout_top1``, ``val/heldout_t2v_R@1``); last, a loader of motion families ("motions":
    ``test/motions_t2v_R@1``): the same number of clips in families of one draw shown in every motion, where only
    the motion tells a clip's caption from six others, and a mirrored motion's middle frame is the same.
    """

    def __init__(
        self,
        task: str = "retrieval",
        image_size: int = 64,
        clip_frames: int = 8,
        num_frames: int | None = None,
        frames_per_second: float = 4.0,
        held_out: Sequence[str] = (),
        seed: int = 0,
        train_samples: int = 8192,
        motion_families: bool = False,
        val_samples: int = 256,
        test_samples: int = 512,
        context_length: int = 32,
        batch_size: int = 32,
        num_workers: int = 0,
        predict_videos: str | None = None,
        predict_texts: str | None = None,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            task: "retrieval" (samples carry their caption's token ids as ``text``) or "recognition" (labels only).
            image_size: side of the square frames in pixels.
            clip_frames: frames of a generated clip; its middle frame is ``clip_frames // 2``.
            num_frames: frames given to the model, the centres of ``num_frames`` equal segments of the clip (see
                ``lit_clip.datamodules.video.sample_frames``); 1 gives the middle frame alone (the "CLIP on the
                middle frame" baseline); None: every frame.
            frames_per_second: the clips' nominal frame rate.
            held_out: "<shape> <motion>" compositions ("star moving left") never in a training clip; validation and
                test add a loader of these only (metrics prefixed "heldout_").
            seed: the world's seed; clip ``i`` of a split is the same for a given seed.
            train_samples: clips per training epoch.
            motion_families: train on batches of motion families: one draw of an object shown with each of the 7
                motions (mirrored motions then share their middle frame), ``batch_size`` families a batch (7 x as
                many clips). Their clips differ only in motion: the hard negatives that make a contrastive model learn
                motion, which in batches of random clips colour and shape alone tell apart.
            val_samples, test_samples: clips of each validation / test loader.
            context_length: token length of the captions; at most the model's context length.
            batch_size: per process: clips, or families with ``motion_families`` (evaluation batches hold as many
                clips).
            num_workers: DataLoader worker processes.
            predict_videos: ``lit-clip predict``'s videos: a folder (searched recursively), a file listing video
                paths, or a video; each read as ``num_frames`` uniform frames (every frame of a clip of
                ``clip_frames``), resized and centre-cropped to ``image_size``. By default predict reads the test split.
            predict_texts: ``lit-clip predict``'s text queries, a text file with one a line.
            bad_samples: an unreadable video of ``predict_videos``: "skip" (and count) or "raise".
        """
        super().__init__()
        self.save_hyperparameters()
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)}")
        check_policy(bad_samples)
        self.clips = ShapesWorldClips(image_size, clip_frames, frames_per_second, seed, held_out)
        if num_frames is None:
            num_frames = clip_frames
        if not 1 <= num_frames <= clip_frames:
            raise ValueError(
                f"num_frames must be from 1 to clip_frames={clip_frames} (or None for all), got {num_frames}"
            )
        self.frame_indices = sample_frames(clip_frames, num_frames, "uniform")
        self.classnames = list(MOTIONS)
        self.templates = list(ACTION_TEMPLATES)

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        """The sets of the ``stage`` loaders, in loader order: the split's clips, then the held-out ones if any."""
        sets = [EvaluationSet("", tuple(self.classnames))]
        if self.clips.held_out:
            sets.append(EvaluationSet("heldout", tuple(self.classnames)))
        return [*sets, EvaluationSet("motions", tuple(self.classnames))]

    @property
    def _context_length(self) -> int | None:
        return self.hparams.context_length if self.hparams.task == "retrieval" else None

    def _dataset(self, split: str, length: int, allowed: Sequence[str] | None = None) -> ShapesClipDataset:
        return ShapesClipDataset(self.clips, split, length, self.frame_indices, self._context_length, allowed)

    @property
    def _batch_clips(self) -> int:
        """Clips a batch holds: ``batch_size``, or ``batch_size`` families of 7 with ``motion_families``."""
        return self.hparams.batch_size * (len(MOTIONS) if self.hparams.motion_families else 1)

    def _loader(self, dataset: Dataset, shuffle: bool = False) -> DataLoader:
        return stateful_loader(dataset, self._batch_clips, self.hparams.num_workers, shuffle, collate_fn=collate_videos)

    def _evaluation_loaders(self, split: str, length: int) -> list[DataLoader]:
        loaders = [self._loader(self._dataset(split, length))]
        if self.clips.held_out:
            loaders.append(self._loader(self._dataset(split, length, self.clips.held_out)))
        families = ShapesClipFamilies(self.clips, split, length // len(MOTIONS), self.frame_indices, self._context_length)
        family_batch = max(1, self._batch_clips // len(MOTIONS))
        loaders.append(stateful_loader(families, family_batch, self.hparams.num_workers, False, collate_fn=collate_families))
        return loaders

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        if not h.motion_families:
            require_one_batch(h.train_samples, h.batch_size, self.trainer, "training clips (train_samples)")
            return self._loader(self._dataset("train", h.train_samples), shuffle=True)
        families = h.train_samples // len(MOTIONS)
        require_one_batch(families, h.batch_size, self.trainer, "motion families (train_samples / 7)")
        dataset = ShapesClipFamilies(self.clips, "train", families, self.frame_indices, self._context_length)
        return stateful_loader(dataset, h.batch_size, h.num_workers, True, collate_fn=collate_families)

    def val_dataloader(self) -> list[DataLoader]:
        return self._evaluation_loaders("val", self.hparams.val_samples)

    def test_dataloader(self) -> list[DataLoader]:
        return self._evaluation_loaders("test", self.hparams.test_samples)

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        h = self.hparams
        reader = ClipReader(len(self.frame_indices), "uniform", video_transform(h.image_size))
        return video_prediction_loaders(h, reader, default=lambda: self._evaluation_loaders("test", h.test_samples)[0])
