"""WebDatasetPairs on ShapesWorld shards: batch format, epochs, rank/worker splits, bad samples."""
from __future__ import annotations

import gc
import io

import pytest
import torch
import webdataset as wds
from lit_clip.datamodules import WebDatasetPairs
from lit_clip.datamodules.export import export_webdataset
from lit_clip.datamodules.images import BadSampleError
from PIL import Image

ALL_KEYS = [f"{index:06d}" for index in range(30)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Three shards of ten samples, keys 000000..000029."""
    root = tmp_path_factory.mktemp("shards")
    paths = export_webdataset(root, samples=30, shard_size=10, image_size=32)
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    return f"{root}/shard-{{000000..000002}}.tar"


def _data(train_shards: str, **kwargs) -> WebDatasetPairs:
    settings = dict(train_samples_per_epoch=30, image_size=32, context_length=16, batch_size=5, num_workers=0)
    data = WebDatasetPairs(train_shards, **{**settings, **kwargs})
    # save_hyperparameters leaves a frame cycle that links back to the calling test's frame, so the
    # test's loaders would outlive it until a garbage collection, whose order makes the DataLoader
    # wait 5 s for each persistent worker to stop. Collected now, the loaders go when the test ends.
    gc.collect()
    data.setup("fit")
    return data


def _keys(loader) -> list[str]:
    return [key for batch in loader for key in batch["key"]]


def _check_indices(batches) -> None:
    """``index`` is shard number * 2**32 + position in the shard: with 10-sample shards, the key's number."""
    for batch in batches:
        assert [(index >> 32) * 10 + (index & 0xFFFFFFFF) for index in batch["index"].tolist()] == [
            int(key) for key in batch["key"]
        ]


@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_every_key_once_per_epoch(shards, num_workers):
    data = _data(shards, val_shards=shards, num_workers=num_workers)
    loader = data.train_dataloader()
    assert len(loader) == 6
    for _ in range(2):  # the second epoch reuses the persistent workers
        batches = list(loader)
        assert len(batches) == 6
        assert sorted(key for batch in batches for key in batch["key"]) == ALL_KEYS
        _check_indices(batches)
    val_batches = list(data.val_dataloader())
    assert sorted(key for batch in val_batches for key in batch["key"]) == ALL_KEYS
    _check_indices(val_batches)


def test_batch_format(shards):
    data = _data(shards, val_shards=shards)
    for batch in (next(iter(data.train_dataloader())), next(iter(data.val_dataloader()))):
        assert batch["image"].dtype == torch.float32 and batch["image"].shape == (5, 3, 32, 32)
        assert batch["text"].dtype == torch.long and batch["text"].shape == (5, 16)
        assert len(batch["caption"]) == 5 and all(isinstance(c, str) and c for c in batch["caption"])
        assert batch["index"].dtype == torch.long and batch["index"].shape == (5,)
        assert batch["skipped_index"].dtype == torch.long and batch["skipped_index"].tolist() == []
    assert data.val_dataloader().drop_last is False and data.train_dataloader().loader.drop_last is True


def test_two_ranks_read_disjoint_shards(tmp_path, monkeypatch):
    export_webdataset(tmp_path, samples=40, shard_size=10, image_size=32)
    # Stands in for an initialised process group, in the main process and the (forked) workers.
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *args, **kwargs: 2)
    keys = []
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda *args, rank=rank, **kwargs: rank)
        data = _data(f"{tmp_path}/shard-{{000000..000003}}.tar", train_samples_per_epoch=40, num_workers=2)
        loader = data.train_dataloader()
        assert len(loader) == 4  # 40 samples // (2 ranks * 5)
        keys.append(_keys(loader))
    assert len(keys[0]) == len(keys[1]) == 20
    assert not set(keys[0]) & set(keys[1])
    assert sorted(keys[0] + keys[1]) == [f"{index:06d}" for index in range(40)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resampled_yields_declared_batches(shards, num_workers):
    data = _data(shards, resampled=True, train_samples_per_epoch=35, num_workers=num_workers)
    loader = data.train_dataloader()
    assert len(loader) == 7
    for _ in range(2):
        keys = _keys(loader)
        assert len(keys) == 35 and set(keys) <= set(ALL_KEYS)


@pytest.fixture
def bad_shard(tmp_path):
    """Keys a..e: b has a truncated JPEG, c an empty caption, d no image; a and e are good."""
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    path = tmp_path / "bad-000000.tar"
    with wds.TarWriter(str(path)) as writer:
        writer.write({"__key__": "a", "jpg": jpeg, "txt": "a red square."})
        writer.write({"__key__": "b", "jpg": jpeg[: len(jpeg) // 2], "txt": "a cut square."})
        writer.write({"__key__": "c", "jpg": jpeg, "txt": "  "})
        writer.write({"__key__": "d", "txt": "no picture."})
        writer.write({"__key__": "e", "png": _png(), "txt": "a green square."})
    return str(path)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (20, 30), (0, 255, 0, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def test_bad_samples_left_out_and_each_counted_once(bad_shard):
    data = _data(bad_shard, val_shards=bad_shard, batch_size=2, train_samples_per_epoch=2)
    batches = list(data.val_dataloader())  # unshuffled: a b | c d | e
    assert [batch.get("key") for batch in batches] == [["a"], None, ["e"]]
    assert [batch["skipped_index"].tolist() for batch in batches] == [[1], [2, 3], []]
    # Training: the shuffled stream's first 4 of the 5 samples, at least one of them good (only 3 are bad;
    # a batch of bad samples only would stop the run by design).
    training = _data(bad_shard, batch_size=4, train_samples_per_epoch=4)
    batches = list(training.train_dataloader())
    assert len(batches) == 1 and len(batches[0]["key"]) + len(batches[0]["skipped_index"]) == 4
    assert set(batches[0]["key"]) <= {"a", "e"} and len(batches[0]["skipped_index"]) >= 2


def test_a_bad_sample_at_the_end_of_the_stream_is_counted(tmp_path, bad_shard):
    source = {sample["__key__"]: sample for sample in wds.WebDataset(bad_shard, shardshuffle=False)}
    path = tmp_path / "ends-bad.tar"
    with wds.TarWriter(str(path)) as writer:
        for name in ("a", "e", "b"):
            writer.write({k: v for k, v in source[name].items() if k != "__url__"})
    data = _data(str(path), val_shards=str(path), batch_size=2, train_samples_per_epoch=2)
    batches = list(data.val_dataloader())
    assert [batch["skipped_index"].tolist() for batch in batches] == [[], [2]]


@pytest.mark.parametrize("key", ["b", "c", "d"])
def test_bad_samples_raise_names_shard_and_key(tmp_path, bad_shard, key):
    # One bad sample after a good one, in a shard of their own.
    source = {sample["__key__"]: sample for sample in wds.WebDataset(bad_shard, shardshuffle=False)}
    path = tmp_path / f"one-bad-{key}.tar"
    with wds.TarWriter(str(path)) as writer:
        for name in ("a", key):
            writer.write({k: v for k, v in source[name].items() if k != "__url__"})
    data = _data(str(path), val_shards=str(path), batch_size=2, train_samples_per_epoch=2, bad_samples="raise")
    reason = {"b": r"b\.jpg: cannot decode image", "c": r"c\.txt: empty caption", "d": r"d: no image"}[key]
    with pytest.raises(BadSampleError, match=rf"one-bad-{key}\.tar:{reason}"):
        list(data.val_dataloader())


def test_missing_shard_is_named(shards, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"shard-000003\.tar not found"):
        _data(shards.replace("000002}", "000004}"))
    with pytest.raises(FileNotFoundError, match=r"nowhere-0\.tar not found"):
        _data(shards, val_shards=f"{tmp_path}/nowhere-{{0..1}}.tar")
    _data("https://example.invalid/shard-{0000..0009}.tar")  # URLs are left to the reader


def test_lightning_fit_runs_the_declared_epochs(shards):
    """The endless resampled stream: Lightning must end each epoch at the loader's length."""
    import lightning as L

    from lit_clip.methods import CLIPPretraining

    data = _data(shards, val_shards=shards, resampled=True, batch_size=10, num_workers=1)
    trainer = L.Trainer(
        max_epochs=2, num_sanity_val_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(CLIPPretraining(architecture="ViT-Micro-8", warmup_steps=1), data)
    assert trainer.num_training_batches == 3 and trainer.global_step == 6
    assert "val/loss" in trainer.callback_metrics and "val/i2t_R@1" in trainer.callback_metrics
