"""Reading videos (PyAV), choosing their frames, transforms over frames, and the video-text retrieval data modules.

Tiny videos are written with PyAV in each test's folder: lossless codecs (FFV1 on RGB in .mkv, H.264 on RGB at qp 0)
must read back bit for bit, the data sets' lossy codecs (H.264 4:2:0 in .mp4, MPEG-4 part 2 in .avi) within a
stated tolerance; the annotation files of MSR-VTT, MSVD and DiDeMo are written in their real formats.
"""
import csv
import json
import logging
import pickle
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from lit_clip.datamodules import video as video_module
from lit_clip.datamodules.images import BadSampleError
from lit_clip.datamodules.video import (
    ClipReader,
    VideoNotFoundError,
    collate_videos,
    list_videos,
    read_clip,
    read_video,
    sample_frames,
    video_info,
    video_transform,
)
from lit_clip.datamodules.video_retrieval import MSRVTT, MSVD, DiDeMo, VideoFolder
from PIL import Image

from lit_clip.tokenizer import tokenize
from lit_clip.transforms import CLIP_MEAN, CLIP_STD, clip_eval_transform

SIZE = 16


def write(path, frames, fps=10, codec="ffv1", pixel_format="bgr0", options=None, gop=None):
    """Encode uint8 frames [T, H, W, 3] with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pixel_format
        stream.options = options or {}
        if gop:
            stream.codec_context.gop_size = gop
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def noise(count, height=24, width=32, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (count, height, width, 3), dtype=np.uint8)


def smooth(count, height=32, width=32):
    """Frames a lossy codec keeps well: gradients that shift a little every frame."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    brightness = np.stack([np.sin(6 * x + t / 3) * np.cos(5 * y - t / 4) for t in range(count)])
    return np.round(128 + 90 * brightness[..., None] + np.array([20, 0, -20])).astype(np.uint8)  # little chroma


def marked(count, size=SIZE):
    """Frame t filled with the value 8 t (mod 256): which frame was read is visible after any crop."""
    return np.repeat((8 * np.arange(count) % 256).astype(np.uint8), size * size * 3).reshape(count, size, size, 3)


# -- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, codec, pixel_format, options",
    [("clip.mkv", "ffv1", "bgr0", {}), ("clip.mp4", "libx264rgb", "rgb24", {"qp": "0"})],
)
def test_lossless_codecs_read_back_bit_exactly(tmp_path, name, codec, pixel_format, options):
    frames = noise(12)
    path = write(tmp_path / name, frames, codec=codec, pixel_format=pixel_format, options=options)
    assert torch.equal(read_video(path), torch.from_numpy(frames))
    indices = [7, 0, 7, 11, 3]  # any order, repeats
    assert torch.equal(read_video(path, indices), torch.from_numpy(frames[indices]))


@pytest.mark.parametrize(
    "name, codec, tolerance", [("clip.mp4", "libx264", 4.0), ("clip.avi", "mpeg4", 3.0)]
)  # fmt: skip
def test_lossy_codecs_read_back_within_tolerance(tmp_path, name, codec, tolerance):
    """Mean absolute error below ``tolerance`` levels of 255 (measured: 2.3-2.9 for x264 at crf 23, 1.9-2.0 for
    MPEG-4 at quantiser 2), and every decoded frame nearer its own source frame than any other (neighbours differ by
    about 16): the frames come back in their order."""
    frames = smooth(16)
    options = {"crf": "23"} if codec == "libx264" else {"flags": "+qscale", "global_quality": str(2 * 118)}
    path = write(tmp_path / name, frames, codec=codec, pixel_format="yuv420p", options=options)
    decoded = read_video(path).numpy().astype(float)
    assert decoded.shape == frames.shape
    errors = np.abs(decoded[:, None] - frames[None].astype(float)).mean(axis=(2, 3, 4))  # [decoded, source]
    assert np.diag(errors).max() < tolerance
    assert (errors.argmin(axis=1) == np.arange(len(frames))).all()


def test_sparse_reads_seek_and_decode_only_what_they_need(tmp_path, monkeypatch):
    """Frames far apart in a long H.264 video (keyframe every 10 frames) equal those of a full decode, and far fewer
    frames than the video holds are decoded."""
    frames = smooth(150, 16, 16)
    path = write(tmp_path / "long.mp4", frames, codec="libx264", pixel_format="yuv420p", options={"crf": "18"}, gop=10)
    full = read_video(path)
    decoded = []
    numbered = video_module._numbered

    def counting(*args, **kwargs):
        for item in numbered(*args, **kwargs):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(video_module, "_numbered", counting)
    for indices in ([0, 149], [140, 5, 77], [10, 11, 12, 100], list(range(3, 150, 29))):
        decoded.clear()
        assert torch.equal(read_video(path, indices), full[indices])
    decoded.clear()
    read_video(path, [0, 75, 149])
    assert len(decoded) < 40  # three GOPs at most, of 150 frames


@pytest.mark.parametrize(
    "name, codec", [("clip.mkv", "libx264"), ("clip.avi", "mpeg4"), ("clip.ts", "libx264"), ("clip.h264", "libx264")]
)  # fmt: skip
def test_sparse_reads_in_other_containers(tmp_path, monkeypatch, name, codec):
    """Matroska and AVI seek by their index; MPEG-TS (timestamps that may jump, seeks by estimate) and raw H.264 (no
    timestamps) are decoded in order. With MPEG-TS allowed to seek, its seeks overshoot, and reading starts over
    without seeking: the same frames."""
    frames = smooth(90, 16, 16)
    path = write(tmp_path / name, frames, codec=codec, pixel_format="yuv420p", gop=10)
    full = read_video(path)
    assert video_info(path).num_frames == 90 and full.shape[0] == 90
    indices = [4, 45, 60, 89]
    assert torch.equal(read_video(path, indices), full[indices])
    monkeypatch.setattr(video_module, "_UNNUMBERED_FORMATS", 0)
    assert torch.equal(read_video(path, indices), full[indices])


def test_times_give_the_frame_on_screen(tmp_path):
    frames = noise(20, 8, 8)
    path = write(tmp_path / "clip.mkv", frames, fps=10)
    times = [0.0, 0.05, 0.1, 0.99, 1.0, 1.95]
    expected = [int(np.floor(t * 10 + 1e-6)) for t in times]  # frame k is on screen from k / 10 s
    assert expected == [0, 0, 1, 9, 10, 19]
    assert torch.equal(read_video(path, times=times), torch.from_numpy(frames[expected]))


def test_video_info_without_a_stored_frame_count(tmp_path):
    """Matroska keeps no frame count: it comes from the duration times the frame rate."""
    path = write(tmp_path / "clip.mkv", noise(25, 8, 8), fps=5)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    info = video_info(path)
    assert (info.num_frames, info.fps, info.duration) == (25, 5.0, pytest.approx(5.0))
    mp4 = video_info(write(tmp_path / "clip.mp4", noise(7, 8, 8), fps=7, codec="libx264rgb", pixel_format="rgb24"))
    assert (mp4.num_frames, mp4.fps) == (7, 7.0)


def test_bad_and_missing_videos_are_named(tmp_path):
    (tmp_path / "text.mp4").write_bytes(b"this is no video " * 50)
    (tmp_path / "empty.avi").write_bytes(b"")
    data = write(tmp_path / "full.mkv", noise(60, 8, 8), fps=10).read_bytes()
    (tmp_path / "truncated.mkv").write_bytes(data[: len(data) // 3])
    for name, reason in [("text.mp4", "cannot decode"), ("empty.avi", "empty file"), ("truncated.mkv", "truncated")]:
        with pytest.raises(BadSampleError, match=reason) as raised:
            read_clip(tmp_path / name, 4, "uniform")
        assert name in str(raised.value)
    with pytest.raises(FileNotFoundError, match="missing.mp4: video file not found") as raised:
        read_video(tmp_path / "missing.mp4")
    assert isinstance(raised.value, BadSampleError) and isinstance(raised.value, VideoNotFoundError)
    with pytest.raises(ValueError, match="unknown frame sampling"):  # a setting, not a bad sample
        read_clip(tmp_path / "full.mkv", 4, "middle")


# -- choosing frames ----------------------------------------------------------------------------


def test_uniform_sampling_takes_segment_centres():
    assert sample_frames(10, 1) == [5]  # the middle frame
    assert sample_frames(9, 1) == [4]
    assert sample_frames(10, 4) == [1, 3, 6, 8]  # centres 1.25, 3.75, 6.25, 8.75
    assert sample_frames(3, 5) == [0, 0, 1, 2, 2]  # centres 0.3, 0.9, 1.5, 2.1, 2.7: short videos repeat frames
    assert sample_frames(8, 8) == list(range(8))


def test_random_sampling_draws_one_frame_per_segment():
    seen = [set() for _ in range(4)]
    for seed in range(200):
        indices = sample_frames(10, 4, "random", generator=torch.Generator().manual_seed(seed))
        # segments [0, 2), [2, 5), [5, 7), [7, 10): floor(k n / N)
        for k, (index, (low, high)) in enumerate(zip(indices, [(0, 2), (2, 5), (5, 7), (7, 10)])):
            assert low <= index < high
            seen[k].add(index)
    assert seen == [{0, 1}, {2, 3, 4}, {5, 6}, {7, 8, 9}]  # every frame of a segment is drawn
    same = [sample_frames(100, 8, "random", generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert same[0] == same[1]
    short = sample_frames(3, 6, "random", generator=torch.Generator().manual_seed(0))
    assert len(short) == 6 and set(short) == {0, 1, 2} and short == sorted(short)  # all frames and random others


def test_fps_sampling_takes_a_frame_a_second_thinned_uniformly():
    assert sample_frames(95, 100, "fps", fps=10) == list(range(0, 95, 10))  # 10 frames, fewer than asked
    # 10 candidates thinned with linspace(0, 9, 4) = 0, 3, 6, 9 (CLIP4Clip's slice_framepos 2)
    assert sample_frames(95, 4, "fps", fps=10) == [0, 30, 60, 90]
    assert sample_frames(100, 4, "fps", fps=29.97) == [0, 29, 59, 89]  # floor(j * 29.97)
    assert sample_frames(40, 10, "fps", fps=10, target_fps=2) == [0, 5, 10, 15, 20, 25, 30, 35]
    with pytest.raises(ValueError, match="frame rate"):
        sample_frames(10, 4, "fps")
    with pytest.raises(ValueError, match="unknown frame sampling"):
        sample_frames(10, 4, "centre")


def test_read_clip_with_max_seconds_reads_only_the_start(tmp_path):
    path = write(tmp_path / "long.mkv", marked(40), fps=1)
    frames = read_clip(path, 64, "fps", max_seconds=31)  # DiDeMo's: seconds 0 to 31
    assert frames.shape[0] == 32 and frames[:, 0, 0, 0].tolist() == [8 * t % 256 for t in range(32)]
    assert read_clip(path, 64, "fps").shape[0] == 40


# -- transforms ---------------------------------------------------------------------------------


def test_eval_transform_matches_clip_eval_transform_on_every_frame():
    frames = torch.from_numpy(smooth(3, 30, 40))
    ours = video_transform(24)(frames)
    reference = torch.stack([clip_eval_transform(24)(Image.fromarray(frame.numpy())) for frame in frames])
    assert ours.shape == (3, 3, 24, 24) and ours.dtype == torch.float32
    # Bicubic resizing of tensors and of PIL images differ by a level or two of 255 (x 1/std in normalised units).
    assert (ours - reference).abs().mean() < 0.02 and (ours - reference).abs().max() < 0.15


def test_train_transform_crops_every_frame_alike():
    image = noise(1, 40, 40)[0]
    frames = torch.from_numpy(np.stack([image] * 4))
    outputs = []
    for seed in range(3):
        torch.manual_seed(seed)
        clip = video_transform(16, train=True, color_jitter=True)(frames)
        assert clip.shape == (4, 3, 16, 16)
        assert all(torch.equal(clip[0], frame) for frame in clip[1:])  # one crop, flip and jitter for the clip
        outputs.append(clip[0])
    assert not torch.equal(outputs[0], outputs[1])  # drawn anew for every clip
    white = video_transform(8, train=True)(torch.full((2, 20, 30, 3), 255, dtype=torch.uint8))
    expected = ((1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)).view(1, 3, 1, 1)
    assert torch.allclose(white, expected.expand_as(white), atol=1e-5)


# -- batches ------------------------------------------------------------------------------------


def test_collate_pads_clips_and_masks_the_padding():
    clips = [torch.randn(3, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.randn(2, 3, 4, 4)]
    samples = [{"video": c, "caption": f"c{i}", "index": i, "text": torch.full((5,), i)} for i, c in enumerate(clips)]
    batch = collate_videos(samples)
    assert batch["video"].shape == (3, 3, 3, 4, 4)
    assert batch["frame_mask"].tolist() == [[True] * 3, [True, False, False], [True, True, False]]
    for clip, padded in zip(clips, batch["video"]):
        assert torch.equal(padded[: len(clip)], clip) and not padded[len(clip):].any()
    assert batch["caption"] == ["c0", "c1", "c2"] and batch["index"].tolist() == [0, 1, 2]
    assert batch["text"].shape == (3, 5)


def test_collate_concatenates_the_captions_of_retrieval_samples():
    def sample(index, captions, text_index):
        return {"video": torch.zeros(2, 3, 4, 4), "index": index, "text": tokenize(captions, 8),
                "text_index": torch.tensor(text_index), "caption": captions}  # fmt: skip

    samples = [sample(4, ["a", "b"], [7, 8]), sample(5, ["c"], [9])]
    batch = collate_videos(samples)
    assert batch["text"].shape == (3, 8) and batch["caption"] == ["a", "b", "c"]
    assert batch["text_index"].tolist() == [7, 8, 9] and batch["text_video_index"].tolist() == [4, 4, 5]
    assert batch["index"].tolist() == [4, 5]


# -- the retrieval data sets in their files -----------------------------------------------------

SMALL = dict(num_frames=4, image_size=SIZE, context_length=16, batch_size=2, eval_batch_size=2, num_workers=0)


def write_clip(path, frames=6, fps=2, seed=0):
    """A small clip in the data set's own codec: H.264 in .mp4, MPEG-4 in .avi, FFV1 otherwise."""
    codec = {".mp4": ("libx264", "yuv420p"), ".avi": ("mpeg4", "yuv420p")}.get(path.suffix, ("ffv1", "bgr0"))
    return write(path, noise(frames, SIZE, SIZE, seed), fps=fps, codec=codec[0], pixel_format=codec[1])


def write_csv(path, header, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def msrvtt(tmp_path):
    """Train videos 0-2 (2 captions each; video2's file corrupt), test videos 4, 5, 6 (whose only file is .mkv, found
    by its name without extension) and 3 (no file)."""
    videos = tmp_path / "MSRVTT_Videos"
    for number in (0, 1, 4, 5):
        write_clip(videos / f"video{number}.mp4", frames=4 + number, seed=number)
    write_clip(videos / "sub" / "video6.mkv", seed=6)
    (videos / "video2.mp4").write_bytes(b"corrupt")
    sentences = [{"caption": f"caption {k} of video{v}", "video_id": f"video{v}", "sen_id": 2 * v + k}
                 for v in range(7) for k in range(2)]  # fmt: skip
    with open(tmp_path / "MSRVTT_data.json", "w") as file:
        json.dump({"info": {}, "videos": [{"video_id": f"video{v}", "url": "u", "split": "x"} for v in range(7)],
                   "sentences": sentences}, file)  # fmt: skip
    write_csv(tmp_path / "MSRVTT_train.9k.csv", ["video_id"], [[f"video{v}"] for v in range(3)])
    write_csv(tmp_path / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [[f"ret{k}", f"msr{v}", f"video{v}", f"test sentence of video{v}"] for k, v in enumerate((4, 5, 6, 3))])
    return tmp_path


def test_msrvtt_trains_on_every_caption_and_tests_on_the_1k_pairs(msrvtt, caplog):
    data = MSRVTT(str(msrvtt), **SMALL | {"batch_size": 3})
    data.setup("fit")
    train = data.videos("train")
    assert [p.name for p, _ in train] == ["video0.mp4", "video1.mp4", "video2.mp4"]
    assert train[0][1] == ["caption 0 of video0", "caption 1 of video0"]
    skipped, captions = [], []
    for batch in data.train_dataloader():
        skipped += batch["skipped_index"].tolist()
        captions += batch["caption"]
        assert batch["video"].shape[2:] == (3, SIZE, SIZE) and batch["text"].shape[1] == 16
    # 6 training samples, one per caption; the 2 of video2 (corrupt) are left out and counted.
    assert sorted(skipped) == [4, 5]
    assert sorted(captions) == sorted(f"caption {k} of video{v}" for v in (0, 1) for k in range(2))
    with caplog.at_level(logging.WARNING):
        data.setup("test")
    assert "1 of 4 videos of the test split are missing" in caplog.text
    test = data.videos("test")
    assert [(p.name, c) for p, c in test] == [
        (name, [f"test sentence of {name.split('.')[0]}"]) for name in ("video4.mp4", "video5.mp4", "video6.mkv")
    ] + [("video3.mp4", ["test sentence of video3"])]
    batches = list(data.test_dataloader())
    assert [b["text_video_index"].tolist() for b in batches] == [[0, 1], [2]]
    assert [b["text_index"].tolist() for b in batches] == [[0, 1], [2]]
    assert [b["skipped_index"].tolist() for b in batches] == [[], [3]]  # video3, missing
    # "fps" sampling at 2 fps: video4 (8 frames) gives seconds 0-3, video5 (9 frames) 0-4 thinned to 4 frames.
    assert batches[0]["frame_mask"].tolist() == [[True] * 4, [True] * 4]
    assert batches[1]["frame_mask"].tolist() == [[True] * 3]  # video6: 6 frames at 2 fps, seconds 0-2


def test_msrvtt_clear_errors(msrvtt):
    layout = "expected CLIP4Clip's MSR-VTT layout"
    with pytest.raises(FileNotFoundError, match=f"MSRVTT_data.json.missing not found; {layout}"):
        MSRVTT(str(msrvtt), data_json="MSRVTT_data.json.missing", **SMALL).setup("fit")
    write_csv(msrvtt / "bad.csv", ["vid", "sentence"], [["video4", "s"]])
    with pytest.raises(ValueError, match="bad.csv has no column 'video_id'"):
        MSRVTT(str(msrvtt), test_csv="bad.csv", **SMALL).setup("test")
    with pytest.raises(FileNotFoundError, match="video folder .*nowhere not found"):
        MSRVTT(str(msrvtt), videos_dir="nowhere", **SMALL).setup("test")
    with pytest.raises(FileNotFoundError, match="1 of 4 videos of the test split are missing, e.g. .*video3.mp4"):
        MSRVTT(str(msrvtt), bad_samples="raise", **SMALL).setup("test")
    with pytest.raises(ValueError, match="unknown sampling 'middle'"):
        MSRVTT(str(msrvtt), sampling="middle")


def test_msvd_ranks_all_captions_of_every_video(tmp_path):
    for k, video_id in enumerate(["-4wsuPCjDBc_5_15", "abc_1_9", "xyz_0_4", "q_2_3"]):
        write_clip(tmp_path / "MSVD_Videos" / f"{video_id}.avi", seed=k)
    captions = {
        "-4wsuPCjDBc_5_15": [["a", "man", "sings"], ["someone", "sings"]],
        "abc_1_9": [["a", "cat", "jumps"]],
        "xyz_0_4": [["a", "dog", "runs"], ["the", "dog", "is", "running"], ["dog"]],
        "q_2_3": [["a", "car"]],
    }
    with open(tmp_path / "raw-captions.pkl", "wb") as file:
        pickle.dump(captions, file)
    (tmp_path / "train_list.txt").write_text("-4wsuPCjDBc_5_15\nabc_1_9\n")
    (tmp_path / "val_list.txt").write_text("q_2_3\n")
    (tmp_path / "test_list.txt").write_text("xyz_0_4\nabc_1_9\n")
    data = MSVD(str(tmp_path), **SMALL)
    data.setup("fit")
    assert [c for _, c in data.videos("train")] == [["a man sings", "someone sings"], ["a cat jumps"]]
    train = [c for batch in data.train_dataloader() for c in batch["caption"]]
    # 3 training captions, one sample each; shuffled batches of 2 drop the last partial one.
    assert len(train) == 2 and set(train) <= {"a man sings", "someone sings", "a cat jumps"}
    data.setup("test")
    (batch,) = list(data.test_dataloader())
    assert batch["caption"] == ["a dog runs", "the dog is running", "dog", "a cat jumps"]
    assert batch["text_video_index"].tolist() == [0, 0, 0, 1] and batch["text_index"].tolist() == [0, 1, 2, 3]
    assert torch.equal(batch["text"], tokenize(batch["caption"], 16))
    assert batch["video"].shape == (2, 3, 3, SIZE, SIZE)  # 6 frames at 2 fps: seconds 0, 1, 2
    (tmp_path / "raw-captions.pkl").unlink()
    with pytest.raises(FileNotFoundError, match="raw-captions.pkl not found; expected CLIP4Clip's MSVD layout"):
        MSVD(str(tmp_path), **SMALL).setup("test")


def test_didemo_joins_descriptions_into_a_paragraph(tmp_path):
    ids = ["10015567@N08_3655084291_d8b58466fa.mov", "14284075@N00_2531575981_cfc4de4f4e.avi"]
    write(tmp_path / "DiDeMo_Videos" / ids[0], marked(40), fps=1, codec="libx264rgb", pixel_format="rgb24",
          options={"qp": "0"})  # lossless H.264 in a .mov container
    write_clip(tmp_path / "DiDeMo_Videos" / ids[1], seed=1)
    items = [
        {"video": ids[0], "description": "a man walks in.", "times": [[0, 0], [0, 1]], "annotation_id": 1},
        {"video": ids[1], "description": "a dog barks.", "times": [[2, 3]], "annotation_id": 2},
        {"video": ids[0], "description": "he sits down.", "times": [[3, 4]], "annotation_id": 3},
    ]
    for split in ("train", "test"):
        (tmp_path / f"{split}_data.json").write_text(json.dumps(items))
        (tmp_path / f"{split}_list.txt").write_text("\n".join(ids) + "\n")
    data = DiDeMo(str(tmp_path), **SMALL | {"num_frames": 64})
    data.setup("test")
    assert [c for _, c in data.videos("test")] == [["a man walks in. he sits down."], ["a dog barks."]]
    (batch,) = list(data.test_dataloader())
    # The first video's first 31 seconds at 1 fps: frames 0-31; the second's 6 frames at 2 fps: seconds 0-2.
    assert batch["frame_mask"].sum(dim=1).tolist() == [32, 3]
    expected = (torch.tensor([8 * t % 256 for t in range(32)]) / 255 - CLIP_MEAN[0]) / CLIP_STD[0]
    assert torch.allclose(batch["video"][0, :32, 0, 0, 0], expected, atol=1e-5)
    assert batch["caption"] == ["a man walks in. he sits down.", "a dog barks."]
    (tmp_path / "test_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test_list.txt not found; expected CLIP4Clip's DiDeMo layout"):
        DiDeMo(str(tmp_path), **SMALL).setup("test")


# -- the user's own videos ----------------------------------------------------------------------


def test_video_folder_predicts_videos_and_queries(tmp_path):
    write_clip(tmp_path / "videos" / "b.mp4", frames=8, seed=1)
    write_clip(tmp_path / "videos" / "nested" / "a.avi", frames=4, seed=2)
    (tmp_path / "videos" / "broken.mkv").write_bytes(b"broken")
    (tmp_path / "videos" / "notes.txt").write_text("not a video")
    (tmp_path / "queries.txt").write_text("a red circle\n\nmoving left\n")
    assert [p.name for p in list_videos(tmp_path / "videos")] == ["b.mp4", "broken.mkv", "a.avi"]
    data = VideoFolder(str(tmp_path / "videos"), str(tmp_path / "queries.txt"), num_frames=3, image_size=SIZE,
                       batch_size=4, num_workers=0)  # fmt: skip
    videos, texts = data.predict_dataloader()
    (batch,) = list(videos)
    assert [p.split("/")[-1] for p in batch["path"]] == ["b.mp4", "a.avi"]
    assert batch["skipped_index"].tolist() == [1]  # broken.mkv, skipped and counted
    assert batch["video"].shape == (2, 3, 3, SIZE, SIZE) and batch["frame_mask"].all()
    (queries,) = list(texts)
    assert queries["caption"] == ["a red circle", "moving left"]
    assert torch.equal(queries["text"], tokenize(["a red circle", "moving left"], 77))
    expected = ClipReader(3, "uniform", video_transform(SIZE))(tmp_path / "videos" / "b.mp4")
    assert torch.equal(batch["video"][0], expected)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video files"):
        list_videos(tmp_path / "empty")
