"""What a user meets when a run is interrupted or its data is broken: resume, last.ckpt, partial
files, failed runs, full disks, bad samples counted exactly once, errors that name the file."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lit_clip.datamodules import CocoCaptions, CsvPairs, WebDatasetPairs
from lit_clip.datamodules.export import export_coco_captions, export_csv_pairs, export_webdataset
from lit_clip.datamodules.images import BadSampleError
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_clip import checkpoint_io
from lit_clip.checkpoint_io import AtomicCheckpointIO
from lit_clip.cli import _newest_state_as_last
from lit_clip.methods import CLIPPretraining

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ROOT / "configs" / "clip" / "shapes.yaml"
# The reproduction: 5 steps an epoch of the smallest CLIP.
SMALL_RUN = [
    "--model.init_args.architecture=ViT-Micro-8", "--data.init_args.image_size=32", "--data.init_args.train_samples=320",
    "--data.init_args.val_samples=64", "--data.init_args.zeroshot_samples_per_class=1",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
]  # fmt: skip


def lit_clip(*args, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lit_clip", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


# -- resume -------------------------------------------------------------------------------------


def test_ckpt_path_last_continues_the_run_in_its_directory(tmp_path):
    first = lit_clip("fit", "--config", SHAPES, *SMALL_RUN, "--trainer.max_epochs=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "runs" / "clip-shapes" / "version_0"
    partial = run / "checkpoints" / ".last.ckpt.999999999.partial"  # a save killed half-way, by a dead process
    partial.write_bytes(b"half a checkpoint")

    resumed = lit_clip("fit", "--config", SHAPES, *SMALL_RUN, "--trainer.max_epochs=3", "--ckpt_path=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "runs" / "clip-shapes").iterdir()) == ["version_0"]
    assert "Restored all states from the checkpoint at" in resumed.stderr + resumed.stdout
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 15
    # One curve: validation at steps 4 and 9 by the first process, 14 by the resumed one.
    events = EventAccumulator(str(run))
    events.Reload()
    top1 = events.Scalars("val/zeroshot_top1")
    assert [scalar.step for scalar in top1] == [4, 9, 14]
    # TensorBoard's hp_metric is the monitored metric, after the placeholder Lightning writes at step 0.
    hp_metric = [(scalar.step, scalar.value) for scalar in events.Scalars("hp_metric") if scalar.step > 0]
    assert hp_metric == [(scalar.step, scalar.value) for scalar in top1]
    # The first config is kept beside the resumed one; the partial file is gone.
    assert (run / "config.yaml").exists() and (run / "config.resume1.yaml").exists()
    assert not partial.exists()
    # test reads `last` as the same file.
    tested = lit_clip("test", "--config", SHAPES, *SMALL_RUN, "--ckpt_path=last", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert f"checkpoint at {Path('runs/clip-shapes/version_0/checkpoints/last.ckpt')}" in tested.stderr + tested.stdout


def test_test_with_ckpt_path_last_and_no_run_says_so(tmp_path):
    result = lit_clip("test", "--config", SHAPES, *SMALL_RUN, "--ckpt_path=last", cwd=tmp_path)
    assert result.returncode != 0
    assert "--ckpt_path last: no last.ckpt under runs/clip-shapes; give the checkpoint's path" in result.stderr


def test_ckpt_path_last_without_an_earlier_run_starts_a_new_one(tmp_path):
    result = lit_clip("fit", "--config", SHAPES, *SMALL_RUN, "--trainer.max_steps=2", "--ckpt_path=last", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no last.ckpt of an earlier run was found; starting a new run" in result.stderr
    assert (tmp_path / "runs" / "clip-shapes" / "version_0" / "checkpoints" / "last.ckpt").exists()


class FallingScore(BoringModel):
    """Validation score 1, 1/2, 1/3, ...: a top-1 'max' checkpoint is saved after the first epoch only."""

    def on_validation_epoch_end(self):
        self.log("score", 1.0 / (self.current_epoch + 1))


def test_save_last_holds_the_newest_state_where_a_metric_is_monitored(tmp_path):
    callbacks = _newest_state_as_last([ModelCheckpoint(dirpath=tmp_path, monitor="score", mode="max", save_last=True)])
    trainer = L.Trainer(
        max_epochs=3, limit_train_batches=4, limit_val_batches=1, callbacks=callbacks, logger=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(FallingScore())
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 12
    assert [p.name for p in tmp_path.glob("epoch=*.ckpt")] == ["epoch=0-step=4.ckpt"]  # the best is still kept


class RisingScore(BoringModel):
    def on_validation_epoch_end(self):
        self.log("score", float(self.current_epoch))


def test_last_ckpt_holds_the_state_of_the_other_checkpoint_callbacks_after_their_saves(tmp_path):
    best = ModelCheckpoint(dirpath=tmp_path, monitor="score", mode="max", save_last=True)
    callbacks = _newest_state_as_last([best])
    assert [type(c).__name__ for c in callbacks] == ["ModelCheckpoint", "LastCheckpoint"]
    trainer = L.Trainer(
        max_epochs=3, limit_train_batches=2, limit_val_batches=1, callbacks=callbacks, logger=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(RisingScore())
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)["callbacks"]
    (monitor_state,) = [value for key, value in state.items() if key.startswith("ModelCheckpoint")]
    assert Path(monitor_state["best_model_path"]).name == "epoch=2-step=6.ckpt"  # this epoch's, not the one before


class RecordsSaves(BoringModel):
    def __init__(self):
        super().__init__()
        self.saved_at = []

    def on_save_checkpoint(self, checkpoint):
        self.saved_at.append(checkpoint["global_step"])


def test_save_last_every_n_steps_also_saves_each_epoch_end_and_the_last_step(tmp_path):
    every_3 = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_train_steps=3)
    callbacks = _newest_state_as_last([every_3])
    assert [type(c).__name__ for c in callbacks] == ["LastCheckpoint"]  # it was only there for last.ckpt
    model = RecordsSaves()
    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=5, limit_val_batches=1, callbacks=callbacks, logger=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model)
    assert model.saved_at == [3, 5, 6, 9, 10]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


# -- failed runs and full disks -----------------------------------------------------------------


def test_data_smaller_than_a_batch_says_by_how_much_and_leaves_no_run_directory(tmp_path):
    result = lit_clip(
        "fit", "--config", SHAPES, *SMALL_RUN, "--data.init_args.train_samples=40", cwd=tmp_path
    )  # batch_size 64
    assert result.returncode != 0
    assert "40 training samples (train_samples) are fewer than one training batch of 64 (short by 24)" in result.stderr
    assert "cosine schedule" not in result.stderr
    assert not list((tmp_path / "runs" / "clip-shapes").glob("version_*"))


def test_smaller_than_a_batch_in_the_pair_modules(tmp_path):
    export_csv_pairs(tmp_path, {"train": 3}, image_size=32)
    data = CsvPairs(str(tmp_path / "train.csv"), image_size=32, batch_size=4, num_workers=0)
    data.setup("fit")
    with pytest.raises(ValueError, match=r"3 training images are fewer than one training batch of 4 \(short by 1\)"):
        data.train_dataloader()


def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)
    # The kernel's own 'No space left on device': every write to /dev/full fails with it.
    monkeypatch.setattr(checkpoint_io, "open", lambda *args, **kwargs: open("/dev/full", "wb"), raising=False)
    with pytest.raises(OSError, match=r"no space left on the device of .* while saving checkpoint last\.ckpt .*"
                       r"the previous one is unchanged"):  # fmt: skip
        io.save_checkpoint({"step": 2, "weights": torch.zeros(10**6)}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_unreadable_validation_images_stop_the_run_before_training(tmp_path):
    exported = export_coco_captions(tmp_path, {"train": 4, "val": 4}, image_size=32)
    for path, _ in exported["val"]:
        path.write_bytes(b"")
    with pytest.raises(BadSampleError, match=r"none of 4 images probed across the val split can be read.*empty file"):
        CocoCaptions(str(tmp_path), image_size=32, batch_size=2, num_workers=0).setup("fit")


# -- bad samples counted once -------------------------------------------------------------------


def fit_and_read_metrics(model, data, tmp_path, **trainer_args) -> list[dict]:
    logger = L.pytorch.loggers.CSVLogger(tmp_path / "logs")
    trainer = L.Trainer(
        logger=logger, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        log_every_n_steps=1, num_sanity_val_steps=0, **trainer_args,
    )  # fmt: skip
    trainer.fit(model, data)
    return list(csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")))


def logged(rows, name) -> list[float]:
    return [float(row[name]) for row in rows if row.get(name)]


def test_adjacent_bad_files_are_counted_once_in_training_and_validation(tmp_path):
    exported = export_csv_pairs(tmp_path, {"train": 16, "val": 8}, image_size=32)
    for index in (1, 2, 3):
        exported["train"][index][0].write_bytes(b"not a jpeg")
    for index in (5, 6):
        exported["val"][index][0].write_bytes(b"")
    data = CsvPairs(
        str(tmp_path / "train.csv"), str(tmp_path / "val.csv"), image_size=32, context_length=16, batch_size=4,
        num_workers=0,
    )  # fmt: skip
    rows = fit_and_read_metrics(CLIPPretraining(architecture="ViT-Micro-8", warmup_steps=1), data, tmp_path, max_epochs=1)
    assert logged(rows, "train/skipped_samples") == [3.0]
    assert logged(rows, "val/skipped_samples") == [2.0]


def test_a_bad_caption_is_a_bad_sample(tmp_path):
    export_csv_pairs(tmp_path, {"train": 8}, image_size=32)
    lines = (tmp_path / "train.csv").read_text().splitlines()
    lines[3] = lines[3].split("\t")[0] + "\t   "  # the third image's caption is blank
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    settings = dict(image_size=32, context_length=16, batch_size=8, num_workers=0)
    with pytest.raises(ValueError, match=r"train\.csv: a caption of .*00002\.jpg is empty; expected non-empty text"):
        CsvPairs(str(tmp_path / "train.csv"), bad_samples="raise", **settings).setup("fit")
    data = CsvPairs(str(tmp_path / "train.csv"), **settings)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["skipped_index"].tolist() == [2] and sorted(batch["index"].tolist()) == [0, 1, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("caption", [None, 42])
def test_a_coco_caption_that_is_not_text_names_the_file(tmp_path, caption):
    export_coco_captions(tmp_path, {"train": 2, "val": 2}, image_size=32)
    annotations = tmp_path / "annotations" / "captions_train2017.json"
    content = json.loads(annotations.read_text())
    content["annotations"][0]["caption"] = caption
    annotations.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=rf"captions_train2017\.json: a caption of .*000000000001\.jpg is {caption}"):
        CocoCaptions(str(tmp_path), image_size=32, batch_size=2, num_workers=0, bad_samples="raise").setup("fit")
    data = CocoCaptions(str(tmp_path), image_size=32, batch_size=2, num_workers=0)
    data.setup("fit")  # skip: the caption is left out, the image keeps its other caption
    assert len(data.pairs("train")[0][1]) == 1


def test_a_csv_that_is_not_utf8_names_the_file(tmp_path):
    export_csv_pairs(tmp_path, {"train": 4}, image_size=32)
    text = (tmp_path / "train.csv").read_text().replace("\ta ", "\ta caf\u00e9 ", 1)
    (tmp_path / "train.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"train\.csv, after line \d+: byte 0xe9 is not UTF-8"):
        CsvPairs(str(tmp_path / "train.csv"), image_size=32, batch_size=2, num_workers=0).setup("fit")


# -- WebDataset streams that run short ----------------------------------------------------------


def test_a_short_stream_still_ends_each_epoch_with_validation(tmp_path):
    export_webdataset(tmp_path, samples=20, shard_size=10, image_size=32)
    shards = f"{tmp_path}/shard-{{000000..000001}}.tar"
    # 30 declared, 20 there: the stream is read again for the last 10 and every epoch validates.
    data = WebDatasetPairs(
        shards, train_samples_per_epoch=30, val_shards=shards, image_size=32, context_length=16, batch_size=10,
        num_workers=0,
    )  # fmt: skip
    model = CLIPPretraining(architecture="ViT-Micro-8", warmup_steps=1)
    rows = fit_and_read_metrics(model, data, tmp_path, max_epochs=2)
    assert [int(row["step"]) for row in rows if row.get("val/loss")] == [2, 5]


def test_a_stream_that_yields_nothing_is_an_error(tmp_path):
    empty = tmp_path / "empty-000000.tar"
    empty.write_bytes(b"\0" * 1024)  # an empty tar archive
    data = WebDatasetPairs(str(empty), train_samples_per_epoch=4, image_size=32, batch_size=2, num_workers=0)
    data.setup("fit")
    with pytest.raises(ValueError, match=r"empty-000000\.tar' gave no full batch"):
        list(data.train_dataloader())
