"""Real-data paths end to end: the export command, and broken images counted or raised during training."""
import csv

import lightning as L
import pytest
from lit_clip.datamodules import CsvPairs
from lit_clip.datamodules.export import export_csv_pairs
from lit_clip.datamodules.images import BadSampleError

from lit_clip.methods import CLIPPretraining


def test_training_logs_how_many_samples_were_skipped(tmp_path):
    exported = export_csv_pairs(tmp_path / "data", {"train": 16})
    broken = exported["train"][3][0]
    broken.write_bytes(broken.read_bytes()[:100])  # a truncated JPEG
    data = CsvPairs(str(tmp_path / "data" / "train.csv"), image_size=32, context_length=16, batch_size=8, num_workers=0)
    trainer = L.Trainer(
        max_epochs=1, logger=L.pytorch.loggers.CSVLogger(tmp_path / "logs"), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(CLIPPretraining(architecture="ViT-Micro-8", warmup_steps=1), data)
    rows = list(csv.DictReader(open(tmp_path / "logs/lightning_logs/version_0/metrics.csv")))
    assert [float(r["train/skipped_samples"]) for r in rows if r.get("train/skipped_samples")] == [1.0]


def test_raise_policy_names_the_broken_file(tmp_path):
    exported = export_csv_pairs(tmp_path / "data", {"train": 8})
    broken = exported["train"][2][0]
    broken.write_bytes(b"")
    data = CsvPairs(str(tmp_path / "data" / "train.csv"), image_size=32, context_length=16, batch_size=8,
                    num_workers=0, bad_samples="raise")  # fmt: skip
    with pytest.raises(BadSampleError, match=broken.name):  # found by setup's probe, before any training
        data.setup("fit")


def test_export_command_writes_files_the_data_modules_read(tmp_path):
    from lit_clip.datamodules import CocoCaptions, WebDatasetPairs
    from lit_clip.datamodules.export import main

    main(["coco", str(tmp_path / "coco"), "--train", "8", "--val", "4", "--image-size", "32"])
    main(["webdataset", str(tmp_path / "wds"), "--train", "8", "--val", "4", "--shard-size", "4"])
    coco = CocoCaptions(str(tmp_path / "coco"), image_size=32, context_length=16, batch_size=4, num_workers=0)
    coco.setup("fit")
    assert next(iter(coco.train_dataloader()))["image"].shape == (4, 3, 32, 32)
    shards = WebDatasetPairs(
        str(tmp_path / "wds" / "shard-{000000..000001}.tar"), train_samples_per_epoch=8, image_size=32,
        context_length=16, batch_size=4, num_workers=0,
    )  # fmt: skip
    shards.setup("fit")
    assert sum(batch["image"].shape[0] for batch in shards.train_dataloader()) == 8
