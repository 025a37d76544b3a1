"""Action recognition data read from disk: Kinetics' csv files and downloader names, UCF101's and HMDB51's official
split files, ActionCLIP's frame lists (and MSR-VTT's, MSVD's and DiDeMo's files for retrieval, HowTo100M's timed
captions with per-second features for VideoCLIP), all written by the ShapesWorld exporters in the real formats and
read back by the real parsers and PyAV.

Clips are 32 x 32 pixels and 8 frames, so every video is written and decoded in milliseconds.
"""
import csv
import json
import pickle
import re

import numpy as np
import pytest
import torch
from lit_clip.datamodules.export_video import (
    export_actionclip_lists,
    export_didemo,
    export_hmdb51,
    export_kinetics,
    export_msrvtt,
    export_msvd,
    export_timed_captions,
    export_ucf101,
    write_video,
)
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.shapesworld.clips import MOTIONS, ShapesWorldClips
from lit_clip.datamodules.video import read_video, sample_frames
from lit_clip.datamodules.video_recognition import (
    HMDB51,
    UCF101,
    Kinetics400,
    VideoListRecognition,
    clip_frame_indices,
    readable_classname,
)

from lit_clip.templates import ACTIONCLIP_TEMPLATES

SIZE, FRAMES = 32, 8
SMALL = dict(num_frames=4, image_size=SIZE, batch_size=4, num_workers=0)
MOTIONS_3 = ("moving left", "moving right", "growing")


@pytest.fixture(scope="module")
def clips():
    return ShapesWorldClips(image_size=SIZE, num_frames=FRAMES)


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory, clips):
    root = tmp_path_factory.mktemp("kinetics")
    return root, export_kinetics(root, {"train": 2, "val": 1}, clips)


def frames_of(clip) -> np.ndarray:
    return np.stack([np.asarray(frame) for frame in clip.frames])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


# -- codecs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", [".mp4", ".avi", ".mkv"])
def test_lossless_export_reads_back_bit_exact(tmp_path, clips, extension):
    clip = clips.clip("val", 5)
    write_video(tmp_path / f"clip{extension}", clip.frames, clips.frames_per_second)
    decoded = read_video(tmp_path / f"clip{extension}")
    assert decoded.dtype == torch.uint8 and decoded.shape == (FRAMES, SIZE, SIZE, 3)
    np.testing.assert_array_equal(decoded.numpy(), frames_of(clip))
    # and a chosen subset, in a chosen order
    subset = read_video(tmp_path / f"clip{extension}", [6, 1, 1])
    np.testing.assert_array_equal(subset.numpy(), frames_of(clip)[[6, 1, 1]])


def test_kinetics_export_holds_the_generator_clip_of_each_row(kinetics, clips):
    root, exported = kinetics
    with open(root / "annotations" / "val.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for r in (0, len(rows) - 1):  # row r of a split's csv shows clips.clip(split, r, motion=<its label>)
        path, label = exported["val"][r]
        assert path.parent.name == rows[r]["label"] == sorted(MOTIONS)[label]
        expected = frames_of(clips.clip("val", r, motion=rows[r]["label"]))
        np.testing.assert_array_equal(read_video(path).numpy(), expected)


@pytest.mark.parametrize("extension", [".mp4", ".avi"])
def test_lossy_codec_is_within_tolerance(tmp_path, clips, extension):
    # Tolerance: PSNR >= 25 dB over the clip (measured: 30 dB for H.264 crf 23, 28 dB for MPEG-4 at q 3 on these
    # 32-pixel clips, most of the loss being 4:2:0 chroma on coloured edges), yet not lossless.
    clip = clips.clip("val", 5)
    write_video(tmp_path / f"clip{extension}", clip.frames, clips.frames_per_second, codec="lossy")
    decoded = read_video(tmp_path / f"clip{extension}").numpy()
    assert decoded.shape == (FRAMES, SIZE, SIZE, 3)
    assert psnr(decoded, frames_of(clip)) >= 25.0
    assert np.abs(decoded.astype(int) - frames_of(clip)).max() > 0


def test_unknown_codec_or_extension_is_a_clear_error(tmp_path, clips):
    with pytest.raises(ValueError, match=r"no lossless codec for clip\.webm"):
        write_video(tmp_path / "clip.webm", clips.clip("val", 0).frames, 4)
    with pytest.raises(ValueError, match="no video encoder 'not-a-codec'"):
        write_video(tmp_path / "clip.avi", clips.clip("val", 0).frames, 4, codec="not-a-codec")


# -- frames and views -----------------------------------------------------------------------------


def test_views_take_the_segment_centres_of_more_segments():
    # 80 frames, 4 segments of 20, 2 views: the centres of 8 segments of 10 frames, every other one.
    assert clip_frame_indices(80, 4, "uniform", views=2) == [5, 25, 45, 65, 15, 35, 55, 75]
    assert clip_frame_indices(80, 4, "uniform") == sample_frames(80, 4, "uniform") == [10, 30, 50, 70]
    assert clip_frame_indices(90, 3, "uniform", views=3) == [5, 35, 65, 15, 45, 75, 25, 55, 85]
    torch.manual_seed(0)
    for _ in range(50):  # training: one random frame in each of the 4 segments of 20 frames
        indices = clip_frame_indices(80, 4, "random")
        assert [index // 20 for index in indices] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="several views are for evaluation"):
        clip_frame_indices(80, 4, "random", views=2)


def test_test_batches_hold_every_view_of_each_video(kinetics):
    root, exported = kinetics
    data = Kinetics400(root, num_clips=2, **SMALL)
    batch = next(iter(data.test_dataloader()))
    assert batch["video"].shape == (4, 2, 4, 3, SIZE, SIZE) and batch["frame_mask"].shape == (4, 2, 4)
    assert batch["frame_mask"].all() and batch["label"].tolist() == [label for _, label in exported["val"][:4]]
    assert batch["index"].tolist() == [0, 1, 2, 3] and batch["path"] == [str(p) for p, _ in exported["val"][:4]]
    transform = data.eval_transform()
    for b in (0, 3):
        for view, indices in enumerate(([0, 2, 4, 6], [1, 3, 5, 7])):  # 8 frames: 8 segments of 1, every other one
            expected = transform(read_video(batch["path"][b], indices))
            torch.testing.assert_close(batch["video"][b, view], expected)
    one = next(iter(Kinetics400(root, **SMALL).test_dataloader()))
    assert one["video"].shape == (4, 4, 3, SIZE, SIZE) and one["frame_mask"].shape == (4, 4)
    torch.testing.assert_close(one["video"][0], data.eval_transform()(read_video(batch["path"][0], [1, 3, 5, 7])))


# -- Kinetics -------------------------------------------------------------------------------------


def test_kinetics_reads_the_csv_files_and_the_downloader_names(kinetics):
    root, exported = kinetics
    data = Kinetics400(root, **SMALL)
    assert data.classnames == sorted(MOTIONS) and data.templates == list(ACTIONCLIP_TEMPLATES)
    for split, csv_split in (("train", "train"), ("val", "val"), ("test", "val")):  # tests on val by default
        videos = data.videos(split)
        assert [(v.path, v.label) for v in videos] == exported[csv_split]
        for video in videos:  # <youtube_id>_<start:06d>_<end:06d> in the class folder of its label
            assert re.fullmatch(r"[A-Za-z0-9_-]{11}_\d{6}_\d{6}\.mp4", video.path.name)
            assert video.path.parent.name == data.classnames[video.label]
    assert data.missing_videos == {"train": 0, "val": 0, "test": 0}
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["video"].shape == (4, 4, 3, SIZE, SIZE) and batch["skipped_index"].numel() == 0
    assert batch["video"].dtype == torch.float32 and batch["label"].dtype == torch.long


def test_kinetics_without_class_folders_and_with_missing_videos(tmp_path, clips):
    exported = export_kinetics(tmp_path, {"train": 1, "val": 1}, clips, motions=MOTIONS_3, class_folders=False)
    assert all(path.parent == tmp_path / "train" for path, _ in exported["train"])
    exported["train"][1][0].unlink()  # gone from YouTube
    data = Kinetics400(tmp_path, **SMALL)
    assert data.classnames == sorted(MOTIONS_3)
    assert [(v.path, v.label) for v in data.videos("train")] == [exported["train"][0], exported["train"][2]]
    assert data.missing_videos["train"] == 1
    with pytest.raises(FileNotFoundError, match=rf"1 of the 3 videos of .*train\.csv are not under .*train.*"
                                                rf"{exported['train'][1][0].stem}"):  # fmt: skip
        Kinetics400(tmp_path, bad_samples="raise", **SMALL).videos("train")


def test_kinetics_errors_name_the_missing_file_and_the_layout(tmp_path, kinetics):
    with pytest.raises(FileNotFoundError, match=r"annotations/train\.csv not found; expected Kinetics' csv"):
        Kinetics400(tmp_path, **SMALL)
    root, _ = kinetics
    with pytest.raises(FileNotFoundError, match=r"val video folder .*nowhere not found; expected Kinetics"):
        Kinetics400(root, val_dir="nowhere", **SMALL).videos("val")
    (tmp_path / "bad.csv").write_text("youtube_id,time_start,time_end\nabc,1,11\n")
    with pytest.raises(ValueError, match=r"bad\.csv has no column 'label'"):
        Kinetics400(tmp_path, train_csv=None, val_csv="bad.csv", **SMALL)


# -- UCF101 ---------------------------------------------------------------------------------------


def test_readable_classnames_of_ucf101():
    names = ["ApplyEyeMakeup", "YoYo", "PlayingDaf", "HandstandPushups", "CleanAndJerk", "Skijet", "TaiChi"]
    assert [readable_classname(name) for name in names] == [
        "apply eye makeup", "yo yo", "playing daf", "handstand pushups", "clean and jerk", "skijet", "tai chi",
    ]  # fmt: skip


def test_ucf101_honours_the_official_splits(tmp_path, clips):
    exported = export_ucf101(tmp_path, groups=(1, 8, 15, 22), clips_per_group=1, clips=clips, motions=MOTIONS_3)
    assert (tmp_path / "ucfTrainTestlist" / "trainlist01.txt").read_bytes().endswith(b"\r\n")  # as the official
    for split in (1, 2, 3):
        data = UCF101(tmp_path, split=split, **SMALL)
        assert data.classnames == ["growing", "moving left", "moving right"]  # classInd order, readable
        assert UCF101(tmp_path, split=split, readable_classnames=False, **SMALL).classnames[1] == "MovingLeft"
        for role, split_names in (("train", ("train",)), ("test", ("val", "test"))):
            for name in split_names:
                assert [(v.path, v.label) for v in data.videos(name)] == exported[split][role]
        # split k tests on groups 7k-6..7k, trains on the others
        test_groups = {int(re.search(r"_g(\d\d)_", v.path.name).group(1)) for v in data.videos("test")}
        train_groups = {int(re.search(r"_g(\d\d)_", v.path.name).group(1)) for v in data.videos("train")}
        assert test_groups == {7 * split - 6} and train_groups == {1, 8, 15, 22} - test_groups
        for video in data.videos("train"):  # v_<Class>_gXX_cYY.avi in the folder of its class
            assert video.path.parent.name == video.path.name.split("_")[1]
            assert readable_classname(video.path.parent.name) == data.classnames[video.label]
    data.setup("test")
    batch = next(iter(UCF101(tmp_path, split=1, **SMALL).test_dataloader()))
    assert batch["video"].shape == (3, 4, 3, SIZE, SIZE) and batch["label"].tolist() == [0, 1, 2]


def test_ucf101_errors(tmp_path, clips):
    export_ucf101(tmp_path, groups=(1, 8), clips=clips, motions=MOTIONS_3)
    (tmp_path / "ucfTrainTestlist" / "testlist02.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"testlist02\.txt not found; expected UCF101's layout"):
        UCF101(tmp_path, split=2, **SMALL)
    with pytest.raises(ValueError, match="official splits 1, 2 or 3"):
        UCF101(tmp_path, split=4, **SMALL)
    lines = (tmp_path / "ucfTrainTestlist" / "trainlist01.txt").read_text().splitlines()
    lines[0] = lines[0].rsplit(" ", 1)[0] + " 3"  # the class id of another class
    (tmp_path / "ucfTrainTestlist" / "trainlist01.txt").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"trainlist01\.txt, line 1: class id '3' is not Growing's"):
        UCF101(tmp_path, split=1, **SMALL)


# -- HMDB51 ---------------------------------------------------------------------------------------


def test_hmdb51_honours_the_split_ids(tmp_path, clips):
    exported = export_hmdb51(tmp_path, videos_per_class=4, clips=clips, motions=MOTIONS_3)
    for split in (1, 2, 3):
        data = HMDB51(tmp_path, split=split, **SMALL)
        assert data.classnames == ["growing", "moving left", "moving right"]
        ids = {}  # the split files read independently: video name -> id
        for name in ("growing", "moving_left", "moving_right"):
            split_file = tmp_path / "testTrainMulti_7030_splits" / f"{name}_test_split{split}.txt"
            for line in split_file.read_text().splitlines():
                video, role = line.split()
                ids[video] = role
        assert sorted(v.path.name for v in data.videos("train")) == sorted(k for k, r in ids.items() if r == "1")
        assert sorted(v.path.name for v in data.videos("test")) == sorted(k for k, r in ids.items() if r == "2")
        assert len(data.videos("train")) == 6 and len(data.videos("test")) == 3  # 2 and 1 of each class, 1 unused
        assert data.videos("val") == data.videos("test")
        assert [(v.path, v.label) for v in data.videos("train")] == exported[split]["train"]
        for video in data.videos("test"):
            assert video.path.parent.name.replace("_", " ") == data.classnames[video.label]


def test_hmdb51_missing_split_files_is_a_clear_error(tmp_path, clips):
    with pytest.raises(FileNotFoundError, match=r"no split file \*_test_split1\.txt in .*testTrainMulti_7030_splits"):
        HMDB51(tmp_path, **SMALL)
    export_hmdb51(tmp_path, videos_per_class=4, clips=clips, motions=MOTIONS_3)
    path = tmp_path / "testTrainMulti_7030_splits" / "growing_test_split1.txt"
    path.write_text(path.read_text() + "extra.avi 7\n")
    with pytest.raises(ValueError, match=r"growing_test_split1\.txt, line 5: 'extra\.avi 7' is not"):
        HMDB51(tmp_path, split=1, **SMALL)


# -- bad samples ----------------------------------------------------------------------------------


def test_corrupt_and_missing_videos_are_skipped_and_counted_or_raised(tmp_path, clips):
    exported = export_hmdb51(tmp_path, videos_per_class=4, clips=clips, motions=MOTIONS_3)
    test = exported[1]["test"]  # 3 videos
    test[0][0].write_bytes(b"\x00garbage, not a video" * 10)
    test[2][0].unlink()
    data = HMDB51(tmp_path, split=1, bad_samples="skip", **SMALL)
    data.setup("test")  # some probed videos can be read: the run starts
    batch = next(iter(data.test_dataloader()))
    assert batch["skipped_index"].tolist() == [0, 2]
    assert batch["index"].tolist() == [1] and batch["label"].tolist() == [test[1][1]]
    assert batch["video"].shape == (1, 4, 3, SIZE, SIZE)
    with pytest.raises(BadSampleError, match=re.escape(str(test[0][0]))):
        HMDB51(tmp_path, split=1, bad_samples="raise", **SMALL).setup("test")
    test[1][0].write_bytes(b"")
    with pytest.raises(BadSampleError, match="none of 3 videos probed across the test split can be read"):
        data.setup("test")


# -- ActionCLIP's lists ---------------------------------------------------------------------------


def test_actionclip_frame_lists(tmp_path, clips):
    exported = export_actionclip_lists(tmp_path, {"train": 1, "val": 1}, clips, MOTIONS_3, image_tmpl="img_{:05d}.png")
    data = VideoListRecognition(
        tmp_path / "train_frames.txt", tmp_path / "val_frames.txt", tmp_path / "labels.csv",
        image_tmpl="img_{:05d}.png", num_frames=FRAMES, image_size=SIZE, batch_size=2, num_workers=0,
    )  # fmt: skip
    assert data.classnames == list(MOTIONS_3)
    listed = [(v.path, v.label, v.num_frames) for v in data.videos("test")]
    assert listed == [(path, label, FRAMES) for path, label in exported["val"]]
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    for b in range(2):  # PNG frames: every frame of the clip, through the evaluation transform
        expected = data.eval_transform()(torch.from_numpy(frames_of(clips.clip("val", b, motion=MOTIONS_3[b]))))
        torch.testing.assert_close(batch["video"][b], expected)
    (tmp_path / "bad.txt").write_text("frames/train/x 1\n")
    with pytest.raises(ValueError, match=r"a frame folder needs its count"):
        VideoListRecognition(None, tmp_path / "bad.txt", tmp_path / "labels.csv")


# -- MSR-VTT --------------------------------------------------------------------------------------


def test_msrvtt_export_is_read_by_the_retrieval_data_module(tmp_path, clips):
    from lit_clip.datamodules.video_retrieval import MSRVTT

    exported = export_msrvtt(tmp_path, train_videos=3, test_videos=2, captions_per_video=2, clips=clips)
    assert [path.name for path, _ in exported["train"] + exported["test"]] == [f"video{n}.mp4" for n in range(5)]
    assert exported["train"][0][1][0] == clips.clip("train", 0).caption
    data = MSRVTT(tmp_path, num_frames=4, image_size=SIZE, batch_size=2, eval_batch_size=2, num_workers=0)
    assert sorted(data.videos("train")) == sorted(exported["train"])
    assert data.videos("test") == exported["test"]
    np.testing.assert_array_equal(read_video(exported["test"][1][0]).numpy(), frames_of(clips.clip("test", 1)))


# -- MSVD, DiDeMo ---------------------------------------------------------------------------------


def test_msvd_export_is_read_by_the_retrieval_data_module(tmp_path, clips):
    from lit_clip.datamodules.video_retrieval import MSVD

    exported = export_msvd(tmp_path, {"train": 2, "val": 1, "test": 2}, captions_per_video=2, clips=clips)
    data = MSVD(tmp_path, num_frames=4, image_size=SIZE, batch_size=2, eval_batch_size=2, num_workers=0)
    for split in ("train", "val", "test"):
        assert data.videos(split) == exported[split]
    with open(tmp_path / "raw-captions.pkl", "rb") as file:
        captions = pickle.load(file)
    [(path, (first, _))] = exported["val"]
    caption = clips.clip("val", 0).caption  # "in this video, the red circle moves left."
    assert captions[path.stem][0] == caption.replace(",", "").rstrip(".").split() == first.split()  # words, read joined
    assert re.fullmatch(r"[A-Za-z0-9_-]{11}_\d+_\d+", path.stem)  # MSVD's <youtube id>_<start>_<end>
    np.testing.assert_array_equal(read_video(exported["test"][1][0]).numpy(), frames_of(clips.clip("test", 1)))


def test_didemo_export_is_read_by_the_retrieval_data_module(tmp_path, clips):
    from lit_clip.datamodules.video_retrieval import DiDeMo

    exported = export_didemo(tmp_path, {"train": 2, "test": 1}, segments=2, clips=clips)
    data = DiDeMo(tmp_path, num_frames=4, image_size=SIZE, batch_size=2, eval_batch_size=2, num_workers=0)
    assert data.videos("train") == exported["train"] and data.videos("test") == exported["test"]
    video = clips.long_video("test", 0, 2)
    [(path, [paragraph])] = exported["test"]
    assert paragraph == " ".join(video.captions)
    moments = json.loads((tmp_path / "test_data.json").read_text())
    assert [moment["description"] for moment in moments] == video.captions
    assert all(moment["video"] == path.name and moment["times"] == [[0, 0]] * 4 for moment in moments)  # 0-4 s
    np.testing.assert_array_equal(read_video(path).numpy(), np.stack([np.asarray(f) for f in video.frames]))


# -- timed captions -------------------------------------------------------------------------------


def test_timed_captions_export_is_read_by_the_timed_captions_data_module(tmp_path, clips):
    from lit_clip.datamodules.timed_captions import TimedCaptions

    exported = export_timed_captions(tmp_path, {"train": 2, "val": 1}, segments=2, feature_dim=8, clips=clips)
    data = TimedCaptions(
        str(tmp_path / "caption.json"), features_dir=str(tmp_path / "s3d"), train_list=str(tmp_path / "train_list.txt"),
        val_list=str(tmp_path / "val_list.txt"), tokenizer="clip", context_length=16, num_workers=0,
    )  # fmt: skip
    for split in ("train", "val"):
        assert data.video_ids[split] == [path.stem for path, _ in exported[split]]
        assert [list(data.captions[v].texts) for v in data.video_ids[split]] == [c for _, c in exported[split]]
    video = clips.long_video("val", 0, 2)
    text = data.captions[data.video_ids["val"][0]]
    assert list(zip(text.starts, text.ends)) == video.spans == [(0.0, 2.0), (2.0, 4.0)]
    features = np.load(exported["val"][0][0])
    assert features.dtype == np.float32 and features.shape == (4, 8)  # 2 clips of 2 s, a feature a second
    assert len({row.tobytes() for row in features}) == 4  # each second's frame its own feature
    again = export_timed_captions(tmp_path / "again", {"val": 1}, segments=2, feature_dim=8, clips=clips)
    np.testing.assert_array_equal(np.load(again["val"][0][0]), features)
    batch = next(iter(data.val_dataloader()[0]))  # each caption with its own seconds' features
    assert batch["caption"] == video.captions
    torch.testing.assert_close(batch["features"][1], torch.from_numpy(features[2:]))
