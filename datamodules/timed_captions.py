"""Videos with timed captions, VideoCLIP's pretraining data: overlapped video-text clips in retrieval-augmented
batches (Xu et al., 2021; the official code is fairseq's ``examples/MMPT``).

A long video comes with captions that each hold a time span (HowTo100M's ASR sentences, YouCook2's annotated
steps) and with one input per second: precomputed per-second features (MMPT's S3D, 512-d, ``[seconds, D]``
``.npy`` files) or frames (one per second, decoded from the video file, for a frozen image tower).

**Overlapped clips** (:func:`overlapped_span`). A training sample is one video and ``clips_per_video`` pairs cut
from it. Each pair's text is a span of consecutive captions grown as MMPT's ``TextClipSamplingProcessor``: a random
centre caption, then one neighbour at a time, the next or the previous one with equal chance (the one there is at
either end of the video), until the span holds at least a token budget drawn uniformly from ``text_len`` (MMPT's
``sampled_min_len`` 8 to ``sampled_max_len`` 64 BERT tokens), every caption of the video, or 256 seconds. Its
video is a span of a random length in ``video_len`` seconds (MMPT: 3 to 32) centred on a random time inside the
text span: positives that overlap in time without being aligned.

**Retrieval-augmented batches** (:class:`ClusteredBatchSampler`). A batch is ``videos_per_batch`` videos x
``clips_per_video`` clips (MMPT: 32 x 16), the videos near each other in the model's space, so that in-batch
negatives are hard. Each epoch the method embeds every training video (the mean over its clips of the pooled video
and text vectors) and hands the embeddings to :attr:`video_clusters` (:class:`VideoClusters`): k-means (faiss when
installed, else :func:`kmeans` in torch) into clusters of about ``videos_per_cluster`` videos; the batch sampler
groups each epoch's videos (under DDP, each process's share) cluster by cluster. Data never imports a method: the
sampler takes plain tensors, and the method (``lit_clip.methods.video.videoclip``) reads
:meth:`video_embedding_loader` and calls ``video_clusters.set_embeddings``.

Data modules: :class:`TimedCaptions` (HowTo100M / YouCook2-style files: a captions file and per-video features or
videos; validation by text-video retrieval over the captioned segments of the validation videos, YouCook2's
protocol) and :class:`ShapesWorldTimedCaptions` (long ShapesWorld videos of several captioned motion clips;
validation by retrieval over single clips).

Training batches: ``features`` float ``[B, T, D]`` (or ``video`` ``[B, T, 3, H, W]``), ``frame_mask`` bool ``[B, T]``,
``text`` long ``[B, L]`` (the text span's tokens: ``[CLS] ... [SEP]`` for BERT, SOT ... EOT for CLIP),
``caption`` (the span's captions joined), ``index`` (each clip's video), B = videos x clips.

Differences from the official code, on purpose:

- The video span: MMPT grows it one second at a time in a random direction from the centre, and at a video's edge
  only inward, so near an edge its middle leaves the text span (a text span in the first second gives the video
  span [0, L), whose middle is L / 2). Here the span is centred on the random time and shortened where the video
  ends, so its centre is always inside the text span (its length may then be below ``video_len``'s minimum, never
  below 1 second).
- Retrieval-augmented batches: MMPT indexes the video vectors with faiss (IVF, 512 centroids) and makes each batch
  from the 64 nearest videos of a random query video (32 of them drawn), so a video may be in several batches of an
  epoch or in none. Here k-means clusters are cut into batches, so every video is seen once per epoch; a batch at
  the border of two clusters takes the end of one and the start of the nearest next one (clusters are visited
  along a nearest-neighbour tour of their centroids). MMPT embeds videos with its ``VariedLenAligner`` clips (text
  and video spans aligned); here with the training clips themselves.
- Text lengths (the span's token budget) are counted with the tokenizer the batches use (BERT's WordPiece as MMPT,
  or CLIP's BPE). Each caption's full token list counts (MMPT's pretokenisation cuts a caption at 32 tokens).
- Frames of a video file are the frame at the middle of each second (MMPT extracts S3D features per second).
- ShapesWorld: "seconds" are frames: a per-second position is a frame of the long video, and caption times are
  multiplied by the clips' ``frames_per_second``.
"""
from __future__ import annotations

import json
import logging
import math
import pickle
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from lit_clip.datamodules.checks import require_one_batch
from lit_clip.datamodules.images import BadSampleError, BadSamplePolicy, RobustSamples, without_bad_samples
from lit_clip.datamodules.shapesworld.clips import ShapesWorldClips
from lit_clip.datamodules.shapesworld.video import ShapesClipDataset
from lit_clip.datamodules.video import (
    VIDEO_EXTENSIONS,
    VideoNotFoundError,
    collate_videos,
    read_video,
    video_info,
    video_transform,
)
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from lit_clip.batches import EvaluationSet
from lit_clip.tokenizer import default_tokenizer
from lit_clip.transforms import to_normalized_tensor

log = logging.getLogger(__name__)

# MMPT's TextClipSamplingProcessor stops growing a text span past this many seconds.
MAX_TEXT_SPAN_SECONDS = 256


# -- text ---------------------------------------------------------------------------------------


class CaptionTokens:
    """Token ids of captions for the text tower: ``"clip"`` (CLIP's BPE: SOT, ids, EOT, zeros; our tokenizer) or a
    transformers tokenizer by hub id or folder (``"bert-base-uncased"``: ``[CLS]`` ids ``[SEP]`` ``[PAD]``...),
    ``context_length`` ids in all, special tokens included."""

    def __init__(self, tokenizer: str = "clip", context_length: int = 32):
        if context_length < 3:
            raise ValueError(f"context_length must hold the two special tokens and a word (>= 3), got {context_length}")
        self.name, self.context_length = tokenizer, context_length
        self._tokenizer = None  # a transformers tokenizer, loaded on first use (in each worker)

    def encode(self, caption: str) -> list[int]:
        """The caption's ids without special tokens."""
        if self.name == "clip":
            return default_tokenizer().encode(caption)
        return self._transformers()(caption, add_special_tokens=False)["input_ids"]

    def __call__(self, ids: Sequence[int]) -> Tensor:
        """long ``[context_length]``: ``ids`` cut to fit, between the start and end tokens, padded."""
        if self.name == "clip":
            tokenizer = default_tokenizer()
            start, end, pad = tokenizer.sot_token_id, tokenizer.eot_token_id, 0
        else:
            tokenizer = self._transformers()
            start, end, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
        row = [start, *list(ids)[: self.context_length - 2], end]
        return torch.tensor(row + [pad] * (self.context_length - len(row)), dtype=torch.long)

    def _transformers(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.name)
        return self._tokenizer


# -- overlapped clips ---------------------------------------------------------------------------


class OverlappedSpan(NamedTuple):
    """A positive pair: captions ``[first_caption, end_caption)`` and seconds ``[video_start, video_end)``."""

    first_caption: int
    end_caption: int
    video_start: int
    video_end: int


def text_span(
    caption_lengths: Sequence[int],
    starts: Sequence[float],
    ends: Sequence[float],
    centre: int,
    max_text_len: int,
    rng: random.Random,
) -> tuple[int, int]:
    """``[first, end)``: consecutive captions grown from caption ``centre`` as MMPT's ``TextClipSamplingProcessor``.

    While there is a caption left on either side, the span holds fewer than ``max_text_len`` tokens and lasts less
    than 256 seconds: add the next caption when a coin says so (``rng.random() > 0.5``) and there is one, else the
    previous one, or the next one when there is no previous one.
    """
    count = len(caption_lengths)
    first, end = centre, centre + 1
    text_len = caption_lengths[centre]
    duration = max(0.0, ends[centre] - starts[centre])
    while (first > 0 or end < count) and text_len < max_text_len and duration < MAX_TEXT_SPAN_SECONDS:
        if (rng.random() > 0.5 and end < count) or first == 0:
            text_len += caption_lengths[end]
            end += 1
        else:
            first -= 1
            text_len += caption_lengths[first]
        duration = max(0.0, ends[end - 1] - starts[first])
    return first, end


def video_span(
    text_start: float, text_end: float, num_seconds: int, min_len: int, max_len: int, rng: random.Random
) -> tuple[int, int]:
    """``[start, end)`` seconds of a video of ``num_seconds`` whose centre ``(start + end) / 2`` is a random time
    in ``[floor(text_start), ceil(text_end)]`` (MMPT's bounds for the centre) and whose length is drawn from
    ``[min_len, max_len]``; shortened, one second at a time, while no span of that length centred in the text span
    fits in the video (a text span at time 1 allows 2 seconds at most). Text spans past the video's last second are
    taken as its last second."""
    if num_seconds < 1:
        raise ValueError(f"a video needs at least one second to cut a clip from, got {num_seconds}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"video span lengths must satisfy 1 <= min_len <= max_len, got {min_len} and {max_len}")
    low = min(max(math.floor(text_start), 0), num_seconds - 1)
    high = min(max(math.ceil(text_end), low + 1), num_seconds)
    length = min(rng.randint(min_len, max_len), num_seconds)
    while True:
        # Integer starts s with the centre s + length / 2 in [low, high] and the span inside the video. Ends at
        # length 1: s = low qualifies.
        first = max(0, math.ceil(low - length / 2))
        last = min(num_seconds - length, math.floor(high - length / 2))
        if first <= last:
            start = rng.randint(first, last)
            return start, start + length
        length -= 1


def overlapped_span(
    caption_lengths: Sequence[int],
    starts: Sequence[float],
    ends: Sequence[float],
    num_seconds: int,
    text_len: tuple[int, int] = (8, 64),
    video_len: tuple[int, int] = (3, 32),
    rng: random.Random | None = None,
) -> OverlappedSpan:
    """VideoCLIP's overlapped positive pair of a video: a text span (:func:`text_span` from a random centre caption,
    with a token budget drawn from ``text_len``) and a video span of ``video_len`` seconds centred in it
    (:func:`video_span`).

    Args:
        caption_lengths: each caption's length in tokens.
        starts, ends: each caption's time span in seconds.
        num_seconds: per-second inputs the video has.
        text_len: MMPT's ``(sampled_min_len, sampled_max_len)``.
        video_len: MMPT's ``(sampled_video_min_len, sampled_video_max_len)``.
        rng: the random source (a ``random.Random``); None: Python's global one.
    """
    if not len(caption_lengths) == len(starts) == len(ends) > 0:
        raise ValueError(
            f"a video needs captions with a start and an end each, got {len(caption_lengths)} lengths, "
            f"{len(starts)} starts and {len(ends)} ends"
        )
    rng = rng or random.Random()
    centre = rng.randint(0, len(caption_lengths) - 1)
    first, end = text_span(caption_lengths, starts, ends, centre, rng.randint(*text_len), rng)
    video_start, video_end = video_span(starts[first], ends[end - 1], num_seconds, *video_len, rng)
    return OverlappedSpan(first, end, video_start, video_end)


@dataclass(frozen=True)
class TimedText:
    """A video's captions: ``texts[k]`` spoken (shown) from ``starts[k]`` to ``ends[k]`` seconds."""

    starts: tuple[float, ...]
    ends: tuple[float, ...]
    texts: tuple[str, ...]


@dataclass
class TimedVideoSample:
    """What a data set gives for one video: its captions, its length in seconds and ``read(seconds)``, the
    per-second inputs at those seconds (``[len(seconds), D]`` features or ``[len(seconds), 3, H, W]`` frames)."""

    text: TimedText
    num_seconds: int
    read: Callable[[Sequence[int]], Tensor]


class OverlappedClips(Dataset):
    """Training samples of videos with timed captions: ``{"clips": [...], "index"}``, ``clips_per_video`` overlapped
    clips of video ``index``, each ``{key: [T, ...], "text", "caption"}`` (``key``: "features" or "video").

    ``videos(index)`` gives a :class:`TimedVideoSample` (it may raise ``BadSampleError``).
    """

    def __init__(
        self,
        videos: Callable[[int], TimedVideoSample],
        length: int,
        key: str,
        tokens: CaptionTokens,
        clips_per_video: int,
        text_len: tuple[int, int],
        video_len: tuple[int, int],
    ):
        self.videos, self.length, self.key, self.tokens = videos, length, key, tokens
        self.clips_per_video, self.text_len, self.video_len = clips_per_video, text_len, video_len

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        video = self.videos(index)
        rng = random.Random(int(torch.randint(2**62, ())))  # torch's seed: seed_everything, a stream per worker
        text = video.text
        ids = [self.tokens.encode(caption) for caption in text.texts]
        lengths = [len(row) for row in ids]
        spans = [
            overlapped_span(lengths, text.starts, text.ends, video.num_seconds, self.text_len, self.video_len, rng)
            for _ in range(self.clips_per_video)
        ]
        seconds = sorted({s for span in spans for s in range(span.video_start, span.video_end)})
        inputs = video.read(seconds)  # each needed second once, however many clips share it
        row_of = {second: row for row, second in enumerate(seconds)}
        clips = []
        for span in spans:
            captions = range(span.first_caption, span.end_caption)
            clips.append({
                self.key: inputs[row_of[span.video_start] : row_of[span.video_end - 1] + 1],
                "text": self.tokens([i for k in captions for i in ids[k]]),
                "caption": " ".join(text.texts[k] for k in captions),
            })  # fmt: skip
        return {"clips": clips, "index": index}


def collate_per_second(samples: list[dict]) -> dict:
    """Clips with per-second ``features`` ``[T, D]`` or ``video`` ``[T, 3, H, W]`` into a batch, padded to the
    longest with zeros and ``frame_mask`` (``lit_clip.datamodules.video.collate_videos``)."""
    if "features" not in samples[0]:
        return collate_videos(samples)
    renamed = [{("video" if key == "features" else key): value for key, value in s.items()} for s in samples]
    batch = collate_videos(renamed)
    batch["features"] = batch.pop("video")
    return batch


def collate_overlapped_clips(samples: list[dict]) -> dict:
    """:class:`OverlappedClips` samples into one batch of all their clips (videos x clips rows), each clip's
    ``index`` its video's."""
    return collate_per_second([{**clip, "index": sample["index"]} for sample in samples for clip in sample["clips"]])


# -- retrieval-augmented batches ------------------------------------------------------------------


def kmeans(
    points: Tensor, num_clusters: int, iterations: int = 20, seed: int = 0, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """``(centroids [k, D], assignment [N])``: k-means (L2) of ``points`` ``[N, D]``, ``k = min(num_clusters, N)``.

    ``backend``: "faiss" (faiss-cpu's ``Kmeans``, what MMPT's index trains), "torch" (k-means++ seeding and Lloyd
    iterations, an empty cluster restarted at the point farthest from its centroid) or "auto" (faiss if installed).
    """
    if points.dim() != 2 or points.shape[0] == 0:
        raise ValueError(f"kmeans needs points [N, D] with N > 0, got shape {tuple(points.shape)}")
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"unknown k-means backend {backend!r}; expected 'auto', 'faiss' or 'torch'")
    points = points.detach().float().cpu()
    k = max(1, min(num_clusters, points.shape[0]))
    if backend != "torch":
        try:
            import faiss
        except ImportError:
            if backend == "faiss":
                raise
        else:
            x = np.ascontiguousarray(points.numpy())
            clustering = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, min_points_per_centroid=1)
            clustering.train(x)
            _, labels = clustering.index.search(x, 1)
            return torch.from_numpy(clustering.centroids).clone(), torch.from_numpy(labels[:, 0]).long()
    generator = torch.Generator().manual_seed(seed)
    centroids = points[torch.randint(points.shape[0], (1,), generator=generator)]
    for _ in range(1, k):  # k-means++: each next seed drawn with probability ~ squared distance to the nearest
        weights = torch.cdist(points, centroids).min(dim=1).values.square()
        if weights.sum() == 0:  # fewer distinct points than clusters: any point
            weights = torch.ones_like(weights)
        pick = torch.multinomial(weights, 1, generator=generator)
        centroids = torch.cat([centroids, points[pick]])
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(dim=1)
        counts = torch.bincount(assignment, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        updated = sums / counts.clamp_min(1)[:, None]
        distance = (points - updated[assignment]).norm(dim=1)
        for empty in torch.nonzero(counts == 0).flatten():
            farthest = int(distance.argmax())
            updated[empty], distance[farthest] = points[farthest], 0.0
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids, torch.cdist(points, centroids).argmin(dim=1)


def centroid_tour(centroids: Tensor) -> list[int]:
    """The clusters in the order of a nearest-neighbour tour of their centroids, from cluster 0: consecutive clusters
    are near each other."""
    distance = torch.cdist(centroids.float(), centroids.float())
    tour, left = [0], set(range(1, centroids.shape[0]))
    while left:
        nearest = min(left, key=lambda c: float(distance[tour[-1], c]))
        tour.append(nearest)
        left.remove(nearest)
    return tour


class VideoClusters:
    """The clusters of the training videos, shared by the data module, its batch samplers and the method.

    :meth:`set_embeddings` clusters the videos' embeddings ``[N, D]`` (row ``i``: dataset index ``i``) into about
    ``N / (videos_per_cluster * world_size)`` clusters, so that each process's share of a cluster (a
    ``DistributedSampler`` gives each ``1 / world_size`` of the videos) still fills about ``videos_per_cluster /
    videos_per_batch`` batches. ``assignment`` is None until then (plain random batches).
    """

    def __init__(self, videos_per_cluster: int, backend: str = "auto", iterations: int = 20, seed: int = 0):
        if videos_per_cluster < 1:
            raise ValueError(f"videos_per_cluster must be at least 1, got {videos_per_cluster}")
        self.videos_per_cluster, self.backend = videos_per_cluster, backend
        self.iterations, self.seed = iterations, seed
        self.assignment: Tensor | None = None
        self.tour: list[int] = []

    def set_embeddings(self, embeddings: Tensor, world_size: int = 1) -> None:
        clusters = max(1, round(embeddings.shape[0] / (self.videos_per_cluster * world_size)))
        centroids, assignment = kmeans(embeddings, clusters, self.iterations, self.seed, self.backend)
        self.set_clusters(assignment, centroids)

    def set_clusters(self, assignment: Tensor, centroids: Tensor) -> None:
        self.assignment, self.tour = assignment.long().cpu(), centroid_tour(centroids)

    def state_dict(self) -> dict:
        return {"assignment": self.assignment, "tour": list(self.tour)}

    def load_state_dict(self, state: dict) -> None:
        self.assignment, self.tour = state["assignment"], list(state["tour"])


class ClusteredBatchSampler(BatchSampler):
    """Batches of ``batch_size`` indices of ``sampler``'s epoch, grouped by ``clusters`` (MMPT's retrieval-augmented
    batches): every index of the epoch once, most batches within one cluster.

    The epoch's indices (``sampler``'s order: random, and under DDP this process's share, when Lightning puts a
    ``DistributedSampler`` in) are stably sorted by their cluster's place in the centroid tour, starting at the
    cluster of the epoch's first index, and cut into batches; the batches come in the order of their earliest index
    in ``sampler``'s order. Without clusters yet (``clusters.assignment`` None), plain ``BatchSampler`` batches.
    Follows ``BatchSampler``'s signature, so Lightning can rebuild it around its distributed sampler.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool, clusters: VideoClusters):
        super().__init__(sampler, batch_size, drop_last)
        self.clusters = clusters

    def __iter__(self) -> Iterator[list[int]]:
        indices = list(self.sampler)
        assignment = self.clusters.assignment
        if assignment is None or not indices:
            yield from super().__iter__()
            return
        if max(indices) >= assignment.shape[0]:
            raise ValueError(
                f"the video clusters cover {assignment.shape[0]} videos but the sampler gave index {max(indices)}; "
                "set the embeddings of every training video"
            )
        tour = self.clusters.tour
        start = tour.index(int(assignment[indices[0]]))
        place = torch.empty(len(tour), dtype=torch.long)
        place[torch.tensor(tour[start:] + tour[:start])] = torch.arange(len(tour))
        order = torch.argsort(place[assignment[torch.tensor(indices)]], stable=True).tolist()
        cut = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        batches = [order[i : i + self.batch_size] for i in range(0, cut, self.batch_size)]
        batches.sort(key=min)  # positions in the sampler's order: its earliest member
        for positions in batches:
            yield [indices[p] for p in positions]


# -- data modules ----------------------------------------------------------------------------------


class _TimedCaptionsData(L.LightningDataModule):
    """What both data modules share: clustered training batches of :class:`OverlappedClips` and the loader of every
    training video for the method's embeddings."""

    video_clusters: VideoClusters
    tokens: CaptionTokens

    def _setup_common(self, tokenizer: str, context_length: int, videos_per_cluster: int | None) -> None:
        h = self.hparams
        for name in ("videos_per_batch", "clips_per_video"):
            if h[name] < 1:
                raise ValueError(f"{name} must be at least 1, got {h[name]}")
        for name in ("text_len", "video_len"):
            low, high = h[name]
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be (min, max) with 1 <= min <= max, got {tuple(h[name])}")
        self.tokens = CaptionTokens(tokenizer, context_length)
        self.video_clusters = VideoClusters(videos_per_cluster or 2 * h.videos_per_batch)

    def _training_set(self) -> OverlappedClips:
        raise NotImplementedError

    def _bad_samples(self) -> BadSamplePolicy:
        return "raise"

    def train_dataloader(self) -> StatefulDataLoader:
        h = self.hparams
        dataset = self._training_set()
        require_one_batch(len(dataset), h.videos_per_batch, self.trainer, "training videos (videos_per_batch)")
        batches = ClusteredBatchSampler(RandomSampler(dataset), h.videos_per_batch, True, self.video_clusters)
        return StatefulDataLoader(
            RobustSamples(dataset, self._bad_samples()),
            batch_sampler=batches,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            collate_fn=without_bad_samples(collate_overlapped_clips, training=True),
        )

    def video_embedding_loader(self) -> DataLoader:
        """Every training video once (this process's share under DDP), ``videos_per_batch`` to a batch, as training
        batches are made: what the method embeds to cluster the videos."""
        h = self.hparams
        dataset = RobustSamples(self._training_set(), self._bad_samples())
        world_size = self.trainer.world_size if self.trainer is not None else 1
        sampler = None
        if world_size > 1:
            sampler = DistributedSampler(dataset, world_size, self.trainer.global_rank, shuffle=False)
        return DataLoader(
            dataset, batch_size=h.videos_per_batch, sampler=sampler, num_workers=h.num_workers,
            collate_fn=without_bad_samples(collate_overlapped_clips, training=False),
        )  # fmt: skip

    def _evaluation_loader(self, dataset: Dataset) -> StatefulDataLoader:
        h = self.hparams
        return StatefulDataLoader(
            RobustSamples(dataset, self._bad_samples()),
            batch_size=h.eval_batch_size,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            collate_fn=without_bad_samples(collate_per_second, training=False),
        )


def read_timed_captions(path: str | Path) -> dict[str, TimedText]:
    """``{video_id: TimedText}`` from a captions file: HowTo100M's ``caption.json`` / ``raw_caption.json`` (``{id:
    {"start": [...], "end": [...], "text": [...]}}``) or MMPT's pickle of it (``raw_caption_dedup.pkl``: the same dict,
    each value a JSON string or a dict). A text that is not a string (HowTo100M has NaNs) is read as empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file {path} not found; expected HowTo100M's caption JSON or MMPT's pickle")
    if path.suffix == ".pkl":
        with open(path, "rb") as file:
            raw = pickle.load(file)
    else:
        raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of video id to captions, got a {type(raw).__name__}")
    videos = {}
    for video_id, entry in raw.items():
        entry = json.loads(entry) if isinstance(entry, str) else entry
        try:
            starts, ends, texts = entry["start"], entry["end"], entry["text"]
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"{path}: captions of {video_id!r} need 'start', 'end' and 'text' lists ({error!r})"
            ) from None
        if not len(starts) == len(ends) == len(texts):
            raise ValueError(
                f"{path}: {video_id!r} has {len(starts)} starts, {len(ends)} ends and {len(texts)} texts; expected one "
                "of each per caption"
            )
        if texts:
            texts = tuple(text.strip() if isinstance(text, str) else "" for text in texts)
            videos[str(video_id)] = TimedText(tuple(map(float, starts)), tuple(map(float, ends)), texts)
    return videos


def read_video_ids(path: str | Path) -> list[str]:
    """The video ids of a list file (MMPT's ``how2_s3d_train.lst``): one per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video list {path} not found; expected a text file with one video id per line")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class TimedVideoFiles:
    """``videos(video_id)``: a :class:`TimedVideoSample` of a video's captions and its per-second inputs, from
    ``features_dir/<video_id>.npy`` (``[seconds, D]``; ``key`` "features") or from the video file in ``video_dir``
    (the middle frame of each second, CLIP's evaluation preprocessing at ``image_size``; ``key`` "video"). A missing
    or broken file raises ``BadSampleError`` naming it."""

    def __init__(
        self, captions: dict[str, TimedText], features_dir: str | None, video_dir: str | None, image_size: int
    ):
        self.captions, self.features_dir, self.video_dir = captions, features_dir, video_dir
        self.key = "features" if features_dir is not None else "video"
        self.transform = video_transform(image_size)

    def __call__(self, video_id: str) -> TimedVideoSample:
        text = self.captions[video_id]
        if self.features_dir is None:
            path = self._video_path(video_id)
            seconds = max(1, math.ceil(video_info(path).duration - 0.5))
            return TimedVideoSample(
                text, seconds, lambda rows: self.transform(read_video(path, times=[s + 0.5 for s in rows]))
            )
        path = Path(self.features_dir) / f"{video_id}.npy"
        if not path.is_file():
            raise BadSampleError(f"{path}: features file not found")
        try:
            features = torch.from_numpy(np.load(path).astype(np.float32))
        except (OSError, ValueError, EOFError) as error:
            raise BadSampleError(f"{path}: cannot read features ({type(error).__name__}: {error})") from error
        if features.dim() != 2 or features.shape[0] == 0:
            raise BadSampleError(f"{path}: expected per-second features [seconds, D], got {tuple(features.shape)}")
        return TimedVideoSample(text, features.shape[0], lambda rows: features[list(rows)])

    def _video_path(self, video_id: str) -> Path:
        for extension in VIDEO_EXTENSIONS:
            path = Path(self.video_dir) / f"{video_id}{extension}"
            if path.is_file():
                return path
        raise VideoNotFoundError(f"{Path(self.video_dir) / video_id}.*: no video file ({', '.join(VIDEO_EXTENSIONS)})")


class _ByIndex:
    """``videos(ids[index])``: a video of a list by its index in it."""

    def __init__(self, videos: TimedVideoFiles, ids: Sequence[str]):
        self.videos, self.ids = videos, ids

    def __call__(self, index: int) -> TimedVideoSample:
        return self.videos(self.ids[index])


class TimedCaptions(_TimedCaptionsData):
    """HowTo100M / YouCook2-style videos with timed captions, for VideoCLIP's pretraining.

    Per video, either ``features_dir/<video_id>.npy`` (``[seconds, D]``, one feature per second, MMPT's S3D
    features; batches carry ``features``) or a video file ``video_dir/<video_id>.<ext>`` read at one frame per
    second, the middle one (batches carry ``video``, CLIP's evaluation preprocessing at ``image_size``).

    Validation and test: every caption of the ``val_list`` / ``test_list`` videos with its own seconds
    (``[floor(start), ceil(end))``, at most ``max_video_len``), text-video retrieval as MMPT's YouCook2 evaluation.
    """

    def __init__(
        self,
        captions: str,
        features_dir: str | None = None,
        video_dir: str | None = None,
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        tokenizer: str = "bert-base-uncased",
        context_length: int = 63,
        videos_per_batch: int = 32,
        clips_per_video: int = 16,
        text_len: tuple[int, int] = (8, 64),
        video_len: tuple[int, int] = (3, 32),
        max_video_len: int = 32,
        videos_per_cluster: int | None = None,
        image_size: int = 224,
        eval_batch_size: int = 64,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
    ):
        """
        Args:
            captions: HowTo100M's caption JSON or MMPT's caption pickle (see :func:`read_timed_captions`).
            features_dir: folder of ``<video_id>.npy`` per-second features.
            video_dir: instead, folder of the video files (any of ``VIDEO_EXTENSIONS``).
            train_list, val_list, test_list: files of video ids, one per line (MMPT's ``.lst``); no ``train_list``:
                every captioned video not in the validation or test list. Ids without captions are left out (logged).
            tokenizer: the text tower's: a transformers tokenizer (hub id or folder; MMPT's ``bert-base-uncased``) or
                "clip" (CLIP's BPE, for a CLIP text tower).
            context_length: token ids per text, special tokens included (MMPT: 61 caption tokens + [CLS] + [SEP]).
            videos_per_batch, clips_per_video: a training batch is this many videos x clips (MMPT: 32 x 16).
            text_len: the range of a text span's token budget (MMPT's ``sampled_min_len``, ``sampled_max_len``).
            video_len: the range of a video span's length in seconds (``sampled_video_{min,max}_len``).
            max_video_len: the most seconds of an evaluation clip (MMPT's ``max_video_len``).
            videos_per_cluster: the mean cluster size of the retrieval-augmented batches per process (default: two
                batches' worth, as MMPT draws 32 videos of the 64 nearest).
            image_size: frames' side, with ``video_dir``.
            eval_batch_size: clips per evaluation batch.
            num_workers: DataLoader worker processes.
            bad_samples: "skip" (leave unreadable videos out of their batch, logged and counted) or "raise".
        """
        super().__init__()
        self.save_hyperparameters()
        if (features_dir is None) == (video_dir is None):
            raise ValueError("give features_dir (per-second .npy features) or video_dir (video files), exactly one")
        self._setup_common(tokenizer, context_length, videos_per_cluster)
        self.captions = read_timed_captions(captions)
        self.videos = TimedVideoFiles(self.captions, features_dir, video_dir, image_size)
        self.key = self.videos.key
        held = {split: self._ids(path, split) for split, path in (("val", val_list), ("test", test_list))}
        if train_list is not None:
            self.video_ids = {"train": self._ids(train_list, "train"), **held}
        else:
            others = {video_id for ids in held.values() for video_id in ids}
            self.video_ids = {"train": [v for v in self.captions if v not in others], **held}
        if not self.video_ids["train"]:
            raise ValueError(f"no training video with captions in {captions}")

    def _ids(self, path: str | None, split: str) -> list[str]:
        if path is None:
            return []
        ids = read_video_ids(path)
        kept = [video_id for video_id in ids if video_id in self.captions]
        if len(kept) < len(ids):
            missing = len(ids) - len(kept)
            log.warning("%s: %d of %d %s videos have no captions and are left out", path, missing, len(ids), split)
        return kept

    def _bad_samples(self) -> BadSamplePolicy:
        return self.hparams.bad_samples

    def _training_set(self) -> OverlappedClips:
        h, ids = self.hparams, self.video_ids["train"]
        return OverlappedClips(
            _ByIndex(self.videos, ids), len(ids), self.key, self.tokens, h.clips_per_video, tuple(h.text_len),
            tuple(h.video_len),
        )  # fmt: skip

    def _loaders(self, split: str) -> list[StatefulDataLoader]:
        if not self.video_ids[split]:
            return []
        segments = CaptionedSegments(self.videos, self.video_ids[split], self.tokens, self.hparams.max_video_len)
        return [self._evaluation_loader(segments)]

    def val_dataloader(self) -> list[StatefulDataLoader]:
        return self._loaders("val")

    def test_dataloader(self) -> list[StatefulDataLoader]:
        return self._loaders("test")


class CaptionedSegments(Dataset):
    """Every caption of ``video_ids`` with the seconds it spans (at least one, at most ``max_video_len``):
    ``{"features" | "video", "text", "caption", "index"}``."""

    def __init__(self, videos: TimedVideoFiles, video_ids: Sequence[str], tokens: CaptionTokens, max_video_len: int):
        self.videos, self.tokens, self.max_video_len = videos, tokens, max_video_len
        self.items = [(video_id, k) for video_id in video_ids for k in range(len(videos.captions[video_id].texts))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        video_id, k = self.items[index]
        video = self.videos(video_id)
        start = min(max(math.floor(video.text.starts[k]), 0), video.num_seconds - 1)
        end = min(max(math.ceil(video.text.ends[k]), start + 1), video.num_seconds, start + self.max_video_len)
        caption = video.text.texts[k]
        return {
            self.videos.key: video.read(range(start, end)),
            "text": self.tokens(self.tokens.encode(caption)),
            "caption": caption,
            "index": index,
        }


class _Tokenized(Dataset):
    """``dataset``'s samples with ``"text"``: their caption's token ids."""

    def __init__(self, dataset: Dataset, tokens: CaptionTokens):
        self.dataset, self.tokens = dataset, tokens

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        return {**sample, "text": self.tokens(self.tokens.encode(sample["caption"]))}


class LongShapesVideos:
    """``videos(index)``: long training video ``index`` of ``segments`` ShapesWorld clips as a
    :class:`TimedVideoSample` counted in frames (caption spans times ``frames_per_second``; inputs: frames)."""

    def __init__(self, clips: ShapesWorldClips, segments: int):
        self.clips, self.segments = clips, segments

    def __call__(self, index: int) -> TimedVideoSample:
        video = self.clips.long_video("train", index, self.segments)
        fps, frames = video.frames_per_second, video.frames
        starts, ends = (tuple(time * fps for time in times) for times in zip(*video.spans))
        text = TimedText(starts, ends, tuple(video.captions))
        return TimedVideoSample(
            text, len(frames), lambda rows: torch.stack([to_normalized_tensor(frames[r]) for r in rows])
        )


class ShapesWorldTimedCaptions(_TimedCaptionsData):
    """Long ShapesWorld videos with timed captions (``ShapesWorldClips.long_video``: ``segments`` motion clips in a
    row, each with its caption) for VideoCLIP on a CPU; validation and test: text-video retrieval over single clips,
    one caption each (every frame of a clip; ``held_out`` compositions in a second loader, metrics "heldout_").

    Time is counted in frames: a "second" of VideoCLIP is one frame of the long video, so ``video_len`` is in frames
    and a caption spanning ``[start, end)`` seconds spans ``[start * fps, end * fps)`` frames. Batches carry ``video``
    (frames for the method's frozen image tower).
    """

    def __init__(
        self,
        image_size: int = 64,
        clip_frames: int = 8,
        frames_per_second: float = 4.0,
        segments: int = 6,
        held_out: Sequence[str] = (),
        seed: int = 0,
        train_videos: int = 512,
        val_samples: int = 256,
        test_samples: int = 512,
        tokenizer: str = "clip",
        context_length: int = 32,
        videos_per_batch: int = 8,
        clips_per_video: int = 4,
        text_len: tuple[int, int] = (8, 24),
        video_len: tuple[int, int] = (4, 16),
        videos_per_cluster: int | None = None,
        eval_batch_size: int = 64,
        num_workers: int = 0,
    ):
        """
        Args:
            image_size, clip_frames, frames_per_second, held_out, seed: the clips' (see ``ShapesWorldClips``).
            segments: clips (captions) per long training video.
            train_videos: long videos per training epoch.
            val_samples, test_samples: single clips of each evaluation loader.
            tokenizer: "clip" (CLIP's BPE, for the CLIP text tower) or a transformers tokenizer.
            context_length: token ids per text (at most the text tower's context).
            videos_per_batch, clips_per_video: a training batch is this many videos x clips.
            text_len: the range of a text span's token budget (a ShapesWorld caption is about 6 to 12 tokens).
            video_len: the range of a video span's length in frames.
            videos_per_cluster: the mean cluster size of the retrieval-augmented batches (default: two batches' worth).
            eval_batch_size: clips per evaluation batch.
            num_workers: DataLoader worker processes.
        """
        super().__init__()
        self.save_hyperparameters()
        if segments < 1:
            raise ValueError(f"segments must be at least 1, got {segments}")
        self._setup_common(tokenizer, context_length, videos_per_cluster)
        self.clips = ShapesWorldClips(image_size, clip_frames, frames_per_second, seed, held_out)

    def _training_set(self) -> OverlappedClips:
        h = self.hparams
        videos = LongShapesVideos(self.clips, h.segments)
        return OverlappedClips(
            videos, h.train_videos, "video", self.tokens, h.clips_per_video, tuple(h.text_len), tuple(h.video_len)
        )

    def evaluation_sets(self, stage: str) -> list[EvaluationSet]:
        """The sets of the ``stage`` loaders, in loader order: the split's clips, then the held-out ones if any."""
        return [EvaluationSet("", ()), *([EvaluationSet("heldout", ())] if self.clips.held_out else [])]

    def _loaders(self, split: str, length: int) -> list[StatefulDataLoader]:
        frames = range(self.hparams.clip_frames)
        sets = [ShapesClipDataset(self.clips, split, length, frames, None)]
        if self.clips.held_out:
            sets.append(ShapesClipDataset(self.clips, split, length, frames, None, self.clips.held_out))
        return [self._evaluation_loader(_Tokenized(dataset, self.tokens)) for dataset in sets]

    def val_dataloader(self) -> list[StatefulDataLoader]:
        return self._loaders("val", self.hparams.val_samples)

    def test_dataloader(self) -> list[StatefulDataLoader]:
        return self._loaders("test", self.hparams.test_samples)
