"""Image-caption pairs streamed from WebDataset tar shards, the format of LAION, CC3M/CC12M and DataComp.

A shard is a tar file whose members are grouped into samples by name: ``<key>.jpg`` and
``<key>.txt`` form sample ``<key>``. The ``webdataset`` package reads the shards (local paths
or URLs, brace-expanded); this module splits them over ranks and workers, decodes each sample
robustly and gives the batches of :class:`~lit_clip.datamodules.shapes.ShapesWorldCaptions`.
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
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lit_clip.datamodules.images import BadSampleError, BadSamplePolicy, check_caption, load_rgb
from lit_clip.tokenizer import tokenize
from lit_clip.transforms import clip_eval_transform, clip_train_transform

log = logging.getLogger(__name__)

# Samples mixed within each worker; shards are only shuffled as a whole, so without this a
# batch would hold consecutive samples of one shard, which are often from one web page.
SHUFFLE_BUFFER = 1000
# A worker giving up after this many bad samples in a row: that is a broken data set, not bad files.
MAX_CONSECUTIVE_BAD = 100
# A sample's ``index`` is its shard's number times this plus its position in the shard.
SHARD_STRIDE = 2**32


class WebDatasetPairs(L.LightningDataModule):
    """Image-caption pairs from WebDataset shards for contrastive pretraining.

    Batches: ``{"image": float [B, 3, S, S], "text": long [B, context_length], "caption": list[str],
    "index": long [B], "skipped": long [B], "key": list[str]}``. ``index`` is unique in the data
    set (shard number * 2**32 + position in the shard), so that evaluation under DDP counts every
    sample once; ``skipped`` counts the bad samples passed over just before each sample in its
    worker's stream (bad samples at the very end of a worker's shards have no next sample and go
    uncounted, but are logged); ``key`` is the sample's name in its shard.

    Epochs: an IterableDataset has no length, so the training epoch is declared with
    ``train_samples_per_epoch``: each rank's loader has ``train_samples_per_epoch // (world_size *
    batch_size)`` batches, and Lightning ends the epoch after that many.

    - ``resampled=False``: every shard is read once per epoch, split over ranks and then over
      each rank's DataLoader workers, so no sample is seen twice. Declare at most the samples the
      rank with the fewest gets (equal-size shards, a multiple of the world size): a rank that
      runs out early ends its epoch early and leaves the others waiting in the gathered loss.
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
            bad_samples: "skip" undecodable images, missing or empty captions (counted in
                ``skipped``; unreadable shards are skipped with a warning) or "raise" an error
                naming the shard and key.
        """
        super().__init__()
        self.save_hyperparameters()
        if bad_samples not in ("skip", "raise"):
            raise ValueError(f"unknown bad_samples policy {bad_samples!r}; expected 'skip' or 'raise'")
        if train_samples_per_epoch < 1:
            raise ValueError(f"train_samples_per_epoch must be positive, got {train_samples_per_epoch}")
        self.image_keys = [key.strip().lower() for key in image_keys.split(";") if key.strip()]

    def setup(self, stage: str) -> None:
        if stage == "fit":
            _check_local_shards(self.hparams.train_shards)
        if self.hparams.val_shards is not None and stage in ("fit", "validate"):
            _check_local_shards(self.hparams.val_shards)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        rank, world_size = _rank_and_world_size()
        urls = wds.shardlists.expand_urls(h.train_shards)
        if not h.resampled and len(urls) < world_size:
            raise ValueError(
                f"{len(urls)} training shards cannot be split over {world_size} ranks without repeating "
                "samples; write more, smaller shards or set resampled=True"
            )
        batches = h.train_samples_per_epoch // (world_size * h.batch_size)
        if batches == 0:
            raise ValueError(
                f"train_samples_per_epoch={h.train_samples_per_epoch} is less than one batch of "
                f"{h.batch_size} on each of {world_size} ranks"
            )
        if h.resampled:
            # Every worker draws its own shards (seeded by rank, worker and time): nothing to split or shuffle.
            shards = wds.WebDataset(
                urls,
                resampled=True,
                shardshuffle=False,
                nodesplitter=None,
                workersplitter=None,
                handler=self._shard_error_handler(),
                empty_check=False,
            )
        else:
            # Shards are split before shuffling, so ranks and workers get disjoint sets.
            shards = wds.WebDataset(
                urls,
                shardshuffle=len(urls),
                detshuffle=True,  # a new shard order every epoch, from the epoch number
                nodesplitter=functools.partial(_split_by_rank, rank=rank, world_size=world_size),
                workersplitter=wds.split_by_worker,
                handler=self._shard_error_handler(),
                empty_check=False,  # a worker left without shards simply yields nothing
            )
        pipeline = (
            shards.compose(functools.partial(_number_samples, shard_numbers=_numbers(urls)))
            .shuffle(SHUFFLE_BUFFER)
            .compose(self._decoder(clip_train_transform(h.image_size)))
        )
        if h.resampled:
            pipeline = pipeline.compose(functools.partial(_worker_share, batches=batches, batch_size=h.batch_size))
        return self._loader(_Sized(pipeline, batches * h.batch_size), train=True)

    def val_dataloader(self) -> DataLoader | list:
        h = self.hparams
        if h.val_shards is None:
            return []
        rank, world_size = _rank_and_world_size()
        urls = wds.shardlists.expand_urls(h.val_shards)
        shards = wds.WebDataset(
            urls,
            shardshuffle=False,
            nodesplitter=functools.partial(_split_by_rank, rank=rank, world_size=world_size),
            workersplitter=wds.split_by_worker,
            handler=self._shard_error_handler(),
            empty_check=False,
        )
        pipeline = shards.compose(
            functools.partial(_number_samples, shard_numbers=_numbers(urls)),
            self._decoder(clip_eval_transform(h.image_size)),
        )
        return self._loader(pipeline, train=False)

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
        )

    def _decoder(self, transform: Callable) -> Callable:
        h = self.hparams
        return functools.partial(
            _decode_pairs,
            image_keys=self.image_keys,
            caption_key=h.caption_key.lower(),
            transform=transform,
            context_length=h.context_length,
            policy=h.bad_samples,
        )

    def _shard_error_handler(self) -> Callable[[Exception], bool]:
        # Errors reading a shard itself (unreachable URL, corrupt tar), as opposed to one sample.
        return wds.warn_and_continue if self.hparams.bad_samples == "skip" else wds.reraise_exception


class _Sized(IterableDataset):
    """A pipeline with a declared number of samples, so its DataLoader has a length in batches.

    Not webdataset's ``with_length``, whose class made on the fly cannot be pickled to workers.
    """

    def __init__(self, pipeline: IterableDataset, length: int):
        self.pipeline, self.length = pipeline, length

    def __iter__(self) -> Iterator[dict]:
        return iter(self.pipeline)

    def __len__(self) -> int:
        return self.length


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


def _decode_pairs(
    samples: Iterable[dict],
    image_keys: list[str],
    caption_key: str,
    transform: Callable,
    context_length: int,
    policy: BadSamplePolicy,
) -> Iterator[dict]:
    """Raw webdataset samples into model inputs, passing over bad ones and counting them."""
    skipped = 0
    for sample in samples:
        try:
            pair = _decode(sample, image_keys, caption_key, transform, context_length)
        except BadSampleError as error:
            if policy == "raise":
                raise
            log.warning("skipping bad sample: %s", error)
            skipped += 1
            if skipped >= MAX_CONSECUTIVE_BAD:
                raise BadSampleError(f"{skipped} bad samples in a row, the last {error}") from error
            continue
        pair["skipped"] = skipped
        skipped = 0
        yield pair


def _decode(sample: dict, image_keys: list[str], caption_key: str, transform: Callable, context_length: int) -> dict:
    name = f"{sample['__url__']}:{sample['__key__']}"
    image_key = next((key for key in image_keys if key in sample), None)
    if image_key is None:
        members = sorted(key for key in sample if not key.startswith("__"))
        raise BadSampleError(f"{name}: no image ({';'.join(image_keys)}) in the sample, only {members}")
    if caption_key not in sample:
        raise BadSampleError(f"{name}: no caption (.{caption_key}) in the sample")
    try:
        caption = sample[caption_key].decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadSampleError(f"{name}.{caption_key}: caption is not UTF-8 ({error})") from error
    caption = check_caption(caption, f"{name}.{caption_key}")
    image = load_rgb(sample[image_key], name=f"{name}.{image_key}")
    return {
        "image": transform(image),
        "text": tokenize(caption, context_length=context_length)[0],
        "caption": caption,
        "index": sample["__index__"],
        "key": sample["__key__"],
    }


def _split_by_rank(urls: Iterable, rank: int, world_size: int) -> Iterator:
    """webdataset's ``split_by_node`` with the rank fixed in the main process."""
    return islice(urls, rank, None, world_size)


def _worker_share(samples: Iterable[dict], batches: int, batch_size: int) -> Iterator[dict]:
    """This worker's share of an endless stream: the DataLoader takes batches from its workers
    in turn, so worker ``w`` of ``n`` gives ``batches // n`` batches, plus one if ``w < batches % n``."""
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    share = batches // workers + (worker < batches % workers)
    return islice(samples, share * batch_size)


def _rank_and_world_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _check_local_shards(shards: str) -> None:
    """Fail early, naming the first missing local shard; URLs are left to the reader."""
    for url in wds.shardlists.expand_urls(shards):
        if "://" not in url and not url.startswith("pipe:") and not Path(url).is_file():
            raise FileNotFoundError(f"shard {url} not found (from {shards!r})")
