"""Image-caption pairs streamed from WebDataset tar shards, the format of LAION, CC3M/CC12M and DataComp.

A shard is a tar file whose members are grouped into samples by name: ``<key>.jpg`` and
``<key>.txt`` form sample ``<key>``. The ``webdataset`` package reads the shards (local paths
or URLs, brace-expanded); this module splits them over ranks and workers, decodes each sample
robustly and gives the batches of :class:`~lit_clip.datamodules.shapesworld.ShapesWorldCaptions`.
"""
from __future__ import annotations

import functools
import logging
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import lightning as L
import torch
import webdataset as wds
from lit_clip.datamodules.images import (
    BadSampleError,
    BadSamplePolicy,
    bad_sample,
    check_caption,
    check_policy,
    load_rgb,
    without_bad_samples,
)
from torch.utils.data import DataLoader, IterableDataset

from lit_clip.noun_prompts import NounPrompts, Tagger, WordType, caption_entries
from lit_clip.transforms import clip_eval_transform, clip_train_transform, image_entries, with_ssl_views

log = logging.getLogger(__name__)

# Samples mixed within each worker; shards are only shuffled as a whole, so without this a
# batch would hold consecutive samples of one shard, which are often from one web page.
SHUFFLE_BUFFER = 1000
# A sample's ``index`` is its shard's number times this plus its position in the shard.
SHARD_STRIDE = 2**32


class WebDatasetPairs(L.LightningDataModule):
    """Image-caption pairs from WebDataset shards for contrastive pretraining.

    Batches: ``{"image": float [B, 3, S, S], "text": long [B, context_length], "caption": list[str],
    "index": long [B], "key": list[str], "skipped_index": long [k]}``. ``index`` is unique in the
    data set (shard number * 2**32 + position in the shard), so that evaluation under DDP counts
    every sample once; ``key`` is the sample's name in its shard. A bad sample (undecodable image,
    missing or empty caption) takes its place in the stream and is left out of its batch, its
    ``index`` listed in ``skipped_index``: counted exactly once, the batch one smaller.

    Epochs: an IterableDataset has no length, so the training epoch is declared with
    ``train_samples_per_epoch``: each rank's loader has ``train_samples_per_epoch // (world_size *
    batch_size)`` batches, and every rank's stream gives exactly that many, so the epoch always
    ends with its validation and no rank waits for another in the gathered loss.

    - ``resampled=False``: every shard is read once per epoch, split over ranks and then over
      each rank's DataLoader workers. Declare at most the samples the rank with the fewest gets
      (equal-size shards, a multiple of the world size). Where a rank's shards run out before the
      declared batches (more declared than there are, or unreadable shards), its loader reads them
      again from the start, with a warning that says by how much: some samples are then seen twice
      in that epoch. Shards that yield no full batch at all are an error. Each loader worker drops
      its last partial batch, unread for training (a bad sample in it is not counted).
    - ``resampled=True``: every worker draws shards at random with replacement, an endless
      stream cut to exactly the declared batches; for large data sets and uneven shards.

    Validation reads every ``val_shards`` sample once, split over ranks and workers, keeping
    partial batches. Under DDP, CLIPPretraining synchronises every validation step, so each rank
    must get the same batches: equal-size shards, a multiple of ``world_size * num_workers``
    shards, shard size a multiple of ``batch_size``.

    The rank and world size come from torch.distributed, read when a loader is made (Lightning
    makes them after initialising it) rather than in the workers, which do not share the
    process group when started by spawn or forkserver.
    """

    def __init__(
        self,
        train_shards: str,
        train_samples_per_epoch: int,
        val_shards: str | None = None,
        resampled: bool = False,
        image_keys: str = "jpg;png;jpeg",
        caption_key: str = "txt",
        image_size: int = 224,
        context_length: int = 77,
        batch_size: int = 64,
        num_workers: int = 4,
        bad_samples: BadSamplePolicy = "skip",
        noun_prompts: int = 0,
        noun_tagger: Tagger = "auto",
        noun_word_type: WordType = "noun",
        ssl_views: bool = False,
    ):
        """
        Args:
            train_shards: the training shards, brace-expanded: ``"data/shard-{000000..000099}.tar"``,
                ``"https://host/shard-{0000..0099}.tar"``, several lists joined by ``::``.
            train_samples_per_epoch: samples in one training epoch over all ranks.
            val_shards: the validation shards, in the same notation; None for no validation.
            resampled: draw training shards at random with replacement instead of reading each once.
            image_keys: the image's file extension in a sample, alternatives separated by ``;``,
                first match used.
            caption_key: the caption's file extension (UTF-8 text).
            image_size: side of the square model input.
            context_length: token length of the captions; at most the model's context length.
            batch_size: per process.
            num_workers: DataLoader worker processes per process.
            bad_samples: "skip" undecodable images, missing or empty captions (left out of their
                batch and listed in ``skipped_index``; unreadable shards are skipped with a warning)
                or "raise" an error naming the shard and key.
            noun_prompts: give training batches ``noun_text`` ``[B, noun_prompts, context_length]``, prompts of
                each caption's nouns (GroupViT's multi-label loss; see ``lit_clip.noun_prompts``); 0: none.
            noun_tagger: how nouns are found: "auto", "nltk" (the official tagger) or "rules".
            noun_word_type: prompt "noun"s (the released configs') or "noun_phrase"s ("small red circle").
            ssl_views: give training samples SLIP's two SimCLR views (``ssl_view_1``, ``ssl_view_2``) beside
                the CLIP view, which is then a crop of 50-100 % (see ``lit_clip.transforms.with_ssl_views``).
        """
        super().__init__()
        self.save_hyperparameters()
        check_policy(bad_samples)
        if train_samples_per_epoch < 1:
            raise ValueError(f"train_samples_per_epoch must be positive, got {train_samples_per_epoch}")
        self.image_keys = [key.strip().lower() for key in image_keys.split(";") if key.strip()]

    def setup(self, stage: str) -> None:
        if stage == "fit":
            _check_local_shards(self.hparams.train_shards)
        if self.hparams.val_shards is not None and stage in ("fit", "validate"):
            _check_local_shards(self.hparams.val_shards)

    def train_dataloader(self) -> Iterable[dict]:
        h = self.hparams
        samples, batches = training_samples(
            h.train_shards, h.resampled, h.num_workers, h.batch_size, h.train_samples_per_epoch,
            shard_error_handler(h.bad_samples),
        )
        pipeline = samples.compose(self._decoder(self.train_transform(), train=True))
        return _ExactBatches(self._loader(pipeline, train=True), batches, h.train_shards)

    def train_transform(self) -> Callable:
        """CLIP's training augmentation; with ``ssl_views``, SLIP's: a crop of 50-100 % and two SimCLR views."""
        h = self.hparams
        if h.ssl_views:
            return with_ssl_views(clip_train_transform(h.image_size, scale=(0.5, 1.0)), h.image_size)
        return clip_train_transform(h.image_size)

    def val_dataloader(self) -> DataLoader | list:
        h = self.hparams
        if h.val_shards is None:
            return []
        samples = evaluation_samples(h.val_shards, shard_error_handler(h.bad_samples))
        return self._loader(samples.compose(self._decoder(clip_eval_transform(h.image_size), train=False)), train=False)

    def _loader(self, dataset: IterableDataset, train: bool) -> DataLoader:
        h = self.hparams
        # No sampler and no shuffle: the pipeline splits and shuffles, and Lightning adds no
        # DistributedSampler to an IterableDataset.
        return DataLoader(
            dataset,
            batch_size=h.batch_size,
            drop_last=train,  # the gathered contrastive loss needs equal batches on every rank
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            collate_fn=without_bad_samples(training=train),
        )

    def _decoder(self, transform: Callable, train: bool) -> Callable:
        h = self.hparams
        nouns = None
        if train and h.noun_prompts:
            nouns = NounPrompts(h.noun_prompts, tagger=h.noun_tagger, word_type=h.noun_word_type)
        decode = functools.partial(
            _decode,
            image_keys=self.image_keys,
            caption_key=h.caption_key.lower(),
            transform=transform,
            context_length=h.context_length,
            noun_prompts=nouns,
        )
        return functools.partial(decoded, decode=decode, policy=h.bad_samples)


def training_samples(
    train_shards: str, resampled: bool, num_workers: int, batch_size: int, samples_per_epoch: int, handler: Callable
) -> tuple[wds.WebDataset, int]:
    """The training samples of a WebDataset data module, numbered and shuffled, and the batches each rank reads in an
    epoch. Shards are split over ranks and loader workers before shuffling (disjoint sets; a new shard order every
    epoch), or with ``resampled`` drawn at random by every worker; ``handler`` decides what an unreadable shard does.
    Too few shards or samples for the ranks and workers are clear errors."""
    rank, world_size = _rank_and_world_size()
    urls = wds.shardlists.expand_urls(train_shards)
    readers = world_size * max(1, num_workers)
    if not resampled and len(urls) < readers:
        raise ValueError(
            f"{len(urls)} training shards cannot give each of {world_size} ranks x {max(1, num_workers)} "
            f"loader workers a shard of its own; write at least {readers} shards, lower num_workers "
            "or set resampled=True"
        )
    batches = samples_per_epoch // (world_size * batch_size)
    if batches == 0:
        raise ValueError(
            f"train_samples_per_epoch={samples_per_epoch} is less than one batch of {batch_size} on each of "
            f"{world_size} ranks"
        )
    if resampled:
        # Every worker draws its own shards (seeded by rank, worker and time): nothing to split or shuffle.
        shards = wds.WebDataset(
            urls, resampled=True, shardshuffle=False, nodesplitter=None, workersplitter=None, handler=handler,
            empty_check=False,
        )  # fmt: skip
    else:
        shards = wds.WebDataset(
            urls,
            shardshuffle=len(urls),
            detshuffle=True,  # a new shard order every epoch, from the epoch number
            nodesplitter=functools.partial(_split_by_rank, rank=rank, world_size=world_size),
            workersplitter=wds.split_by_worker,
            handler=handler,
            empty_check=False,  # a worker left without shards simply yields nothing
        )
    numbered = shards.compose(functools.partial(_number_samples, shard_numbers=_numbers(urls)))
    return numbered.shuffle(SHUFFLE_BUFFER), batches


def evaluation_samples(shards: str, handler: Callable) -> wds.WebDataset:
    """The samples of evaluation shards, numbered, each read once: the shards split over ranks and loader workers."""
    rank, world_size = _rank_and_world_size()
    urls = wds.shardlists.expand_urls(shards)
    dataset = wds.WebDataset(
        urls,
        shardshuffle=False,
        nodesplitter=functools.partial(_split_by_rank, rank=rank, world_size=world_size),
        workersplitter=wds.split_by_worker,
        handler=handler,
        empty_check=False,
    )
    return dataset.compose(functools.partial(_number_samples, shard_numbers=_numbers(urls)))


class _ExactBatches:
    """A training loader that gives exactly ``batches`` batches an epoch, whatever its stream holds.

    Its ``len`` is the declared epoch, which Lightning and the learning-rate schedule read, and every
    rank gives that many, so the epoch ends with its validation and no rank waits for another in the
    gathered loss. A stream that ends early (its shards read once) is read again; an endless one
    (resampled) is cut.
    """

    def __init__(self, loader: DataLoader, batches: int, shards: str):
        self.loader, self.batches, self.shards = loader, batches, shards

    def __iter__(self) -> Iterator[dict]:
        given = 0
        while True:
            in_pass = 0
            for batch in self.loader:
                yield batch
                in_pass, given = in_pass + 1, given + 1
                if given == self.batches:
                    return
            if in_pass == 0:
                raise ValueError(
                    f"the training shards {self.shards!r} gave no full batch; are they readable tar files in the "
                    "WebDataset layout (<key>.<jpg, flac ...> + <key>.txt), and do they hold at least a batch per "
                    "loader worker?"
                )
            log.warning(
                "the training shards %r ran out after %d of the %d batches declared for this epoch "
                "(train_samples_per_epoch); reading them again, so some samples are seen twice this epoch",
                self.shards, given, self.batches,
            )

    def __len__(self) -> int:
        return self.batches


def _numbers(urls: list[str]) -> dict[str, int]:
    return {url: number for number, url in enumerate(urls)}


def _number_samples(samples: Iterable[dict], shard_numbers: dict[str, int]) -> Iterator[dict]:
    """Give each sample its ``index`` from its shard's number and its position in the shard,
    counted before any shuffling (a shard is read by one worker, its samples in tar order)."""
    url, position = None, 0
    for sample in samples:
        if sample["__url__"] != url:
            url, position = sample["__url__"], 0
        sample["__index__"] = shard_numbers[url] * SHARD_STRIDE + position
        position += 1
        yield sample


def decoded(samples: Iterable[dict], decode: Callable[[dict], dict], policy: BadSamplePolicy) -> Iterator[dict]:
    """Raw webdataset samples through ``decode``; a bad one becomes a :func:`bad_sample` marker in its place, or is
    raised with policy "raise"."""
    for sample in samples:
        try:
            yield decode(sample)
        except BadSampleError as error:
            if policy == "raise":
                raise
            log.warning("skipping bad sample: %s", error)
            yield bad_sample(sample["__index__"])


def sample_name(sample: dict) -> str:
    """A sample's name in errors: its shard and key."""
    return f"{sample['__url__']}:{sample['__key__']}"


def sample_member(sample: dict, keys: list[str], what: str) -> str:
    """The first of ``keys`` (file extensions) that the sample holds; a sample with none is a bad sample."""
    key = next((key for key in keys if key in sample), None)
    if key is None:
        members = sorted(key for key in sample if not key.startswith("__"))
        raise BadSampleError(f"{sample_name(sample)}: no {what} ({';'.join(keys)}) in the sample, only {members}")
    return key


def sample_text(sample: dict, key: str, what: str) -> str:
    """The sample's UTF-8 text under ``key``, checked as a caption; missing, undecodable or empty: a bad sample."""
    name = sample_name(sample)
    if key not in sample:
        raise BadSampleError(f"{name}: no {what} (.{key}) in the sample")
    try:
        text = sample[key].decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadSampleError(f"{name}.{key}: {what} is not UTF-8 ({error})") from error
    return check_caption(text, f"{name}.{key}")


def shard_error_handler(policy: BadSamplePolicy) -> Callable[[Exception], bool]:
    """What an error reading a shard itself does (an unreachable URL, a corrupt tar), as opposed to one sample."""
    return wds.warn_and_continue if policy == "skip" else wds.reraise_exception


def _decode(
    sample: dict,
    image_keys: list[str],
    caption_key: str,
    transform: Callable,
    context_length: int,
    noun_prompts: NounPrompts | None = None,
) -> dict:
    image_key = sample_member(sample, image_keys, "image")
    caption = sample_text(sample, caption_key, "caption")
    image = load_rgb(sample[image_key], name=f"{sample_name(sample)}.{image_key}")
    return {
        **image_entries(transform, image),
        **caption_entries(caption, context_length, noun_prompts),
        "index": sample["__index__"],
        "key": sample["__key__"],
    }


def _split_by_rank(urls: Iterable, rank: int, world_size: int) -> Iterator:
    """webdataset's ``split_by_node`` with the rank fixed in the main process."""
    return islice(urls, rank, None, world_size)


def _rank_and_world_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _check_local_shards(shards: str) -> None:
    """Fail early, naming the first missing local shard; URLs are left to the reader."""
    for url in wds.shardlists.expand_urls(shards):
        if "://" not in url and not url.startswith("pipe:") and not Path(url).is_file():
            raise FileNotFoundError(f"shard {url} not found (from {shards!r})")
