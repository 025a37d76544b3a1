"""ShapesWorld clips and their video data module: determinism, held-out compositions, captions, motions measured
from the frames' pixels (mirrored motions share their middle frame), batches and the one-frame baseline."""
import re

import numpy as np
import pytest
import torch
from lit_clip.datamodules.shapesworld.clips import MOTIONS, ShapesWorldClips
from lit_clip.datamodules.shapesworld.video import ShapesWorldVideo
from lit_clip.datamodules.shapesworld.world import COLORS, SHAPES
from scipy import ndimage

from lit_clip.transforms import to_normalized_tensor

HELD_OUT = ("star moving left", "circle growing", "square swapping places")
MIRRORED = (("moving left", "moving right"), ("moving up", "moving down"), ("growing", "shrinking"))
# Words that say each motion in a caption; none of them says the mirrored motion.
MOTION_WORDS = {
    "moving left": ("left",),
    "moving right": ("right",),
    "moving up": ("up", "rises", "rising"),
    "moving down": ("down", "falls", "falling"),
    "growing": ("grow", "bigger", "expand"),
    "shrinking": ("shrink", "smaller", "contract"),
    "swapping places": ("places",),
}
# Background pixels are grey (channels within a few levels of each other); objects are saturated colours.
SATURATED = 60


def object_mask(frame) -> np.ndarray:
    pixels = np.asarray(frame, dtype=np.int16)
    return pixels.max(axis=2) - pixels.min(axis=2) > SATURATED


def centroid(frame) -> np.ndarray:
    """(x, y) of the object pixels, measured on the image."""
    ys, xs = np.nonzero(object_mask(frame))
    return np.array([xs.mean(), ys.mean()])


@pytest.fixture(scope="module")
def clips():
    return ShapesWorldClips()


def test_clips_are_deterministic_in_seed_split_index():
    a, b = ShapesWorldClips(seed=3), ShapesWorldClips(seed=3)
    for index in range(8):
        ca, cb = a.clip("val", index), b.clip("val", index)
        assert [f.tobytes() for f in ca.frames] == [f.tobytes() for f in cb.frames]
        assert (ca.caption, ca.motion) == (cb.caption, cb.motion)
    reference = a.clip("val", 0).frames[0].tobytes()
    assert a.clip("val", 7).frames[0].tobytes() != reference  # same motion (7 % 7 == 0), another clip
    assert a.clip("test", 0).frames[0].tobytes() != reference
    assert ShapesWorldClips(seed=4).clip("val", 0).frames[0].tobytes() != reference
    long_a, long_b = a.long_video("train", 2, 3), b.long_video("train", 2, 3)
    assert [f.tobytes() for f in long_a.frames] == [f.tobytes() for f in long_b.frames]
    assert long_a.captions == long_b.captions


def test_clip_shape_labels_and_balanced_motions(clips):
    labels = []
    for index in range(2 * len(MOTIONS)):
        clip = clips.clip("train", index)
        assert len(clip.frames) == 8 and all(f.size == (64, 64) and f.mode == "RGB" for f in clip.frames)
        assert len(clip.objects) == (2 if clip.motion_name == "swapping places" else 1)
        labels.append(clip.motion)
    assert labels == [i % len(MOTIONS) for i in range(2 * len(MOTIONS))]


def test_captions_name_colour_shape_and_motion(clips):
    for index in range(70):
        clip = clips.clip("val", index)
        words = clip.caption
        for obj in clip.objects:
            assert re.search(rf"\b{obj.color} {obj.shape}\b", words), (clip.caption, obj)
        assert any(word in words for word in MOTION_WORDS[clip.motion_name]), clip.caption
        for first, second in MIRRORED:  # never the word of the mirrored motion
            other = {first: second, second: first}.get(clip.motion_name)
            if other:
                assert not any(re.search(rf"\b{word}", words) for word in MOTION_WORDS[other]), clip.caption
    captions = {clips.clip("train", i).caption for i in range(70)}
    templates = {re.sub(rf"\b(?:{'|'.join(COLORS)}|{'|'.join(SHAPES)}|small|large|an?)\b", "X", c) for c in captions}
    assert len(templates) > 20  # varied phrasing, not one sentence per motion


@pytest.mark.parametrize("pair", MIRRORED, ids=lambda pair: " / ".join(pair))
def test_mirrored_motions_share_the_middle_frame_and_differ_in_the_clip(clips, pair):
    middle = clips.middle_frame
    for index in range(3):
        first, second = (clips.clip("test", index, motion=motion) for motion in pair)
        assert first.frames[middle].tobytes() == second.frames[middle].tobytes()
        assert first.frames[0].tobytes() != second.frames[0].tobytes()
        for clip in (first, second):
            start, end = centroid(clip.frames[0]), centroid(clip.frames[-1])
            area = [np.count_nonzero(object_mask(frame)) for frame in clip.frames]
            moved = end - start
            if clip.motion_name in ("moving left", "moving right", "moving up", "moving down"):
                axis = 0 if clip.motion_name in ("moving left", "moving right") else 1
                sign = -1 if clip.motion_name in ("moving left", "moving up") else 1
                assert sign * moved[axis] > 0.2 * 64, (clip.motion_name, moved)  # the travel is 25-35 % of the image
                assert abs(moved[1 - axis]) < 1.5
                assert max(area) - min(area) < 0.1 * max(area)
            else:
                grows = clip.motion_name == "growing"
                assert np.all(np.diff(area) > 0) if grows else np.all(np.diff(area) < 0), area
                assert max(area) > 3 * min(area)  # radius ratio 2-2.5: area ratio 4-6
                assert np.abs(moved).max() < 1.5  # in place
    # The dataset's own clip of a motion is one of these twins: forcing its motion changes nothing.
    index = MOTIONS.index(pair[0])
    assert clips.clip("val", index).frames[3].tobytes() == clips.clip("val", index, motion=pair[0]).frames[3].tobytes()


def test_swapping_objects_end_where_the_other_started(clips):
    checked = 0
    for index in range(MOTIONS.index("swapping places"), 200, len(MOTIONS)):
        clip = clips.clip("val", index)
        first_pair, last_pair = (ndimage.label(object_mask(clip.frames[k])) for k in (0, -1))
        if first_pair[1] != 2 or last_pair[1] != 2 or clip.objects[0].color == clip.objects[1].color:
            continue

        def blobs(frame, labelled):
            pixels = np.asarray(frame, dtype=np.float64)
            masks = [labelled[0] == k for k in (1, 2)]
            return [(np.argwhere(m).mean(axis=0), pixels[m].mean(axis=0)) for m in masks]

        start, end = blobs(clip.frames[0], first_pair), blobs(clip.frames[-1], last_pair)
        for position, color in start:
            # The blob at this place in the last frame has the other blob's colour.
            there = min(end, key=lambda blob: np.linalg.norm(blob[0] - position))
            assert np.linalg.norm(there[0] - position) < 4
            other = next(c for p, c in start if p is not position)
            assert np.linalg.norm(there[1] - other) < np.linalg.norm(there[1] - color)
        a, b = clip.objects
        assert np.allclose(a.centers[0], b.centers[-1]) and np.allclose(b.centers[0], a.centers[-1])
        checked += 1
    assert checked >= 5


def test_held_out_compositions_never_in_train_and_drawn_for_zero_shot():
    world = ShapesWorldClips(held_out=HELD_OUT)
    for index in range(300):
        clip = world.clip("train", index)
        assert not set(clip.compositions) & set(HELD_OUT), clip.compositions
    shown = set()
    for index in range(30):
        clip = world.clip("test", index, allowed=HELD_OUT)
        assert set(clip.compositions) <= set(HELD_OUT)
        shown |= set(clip.compositions)
    assert shown == set(HELD_OUT)
    val = {c for index in range(300) for c in world.clip("val", index).compositions}
    assert set(HELD_OUT) <= val  # the ordinary evaluation split holds them too
    captions = [c for i in range(30) for c in world.long_video("train", i, 2).captions]
    assert not [c for c in captions if "star" in c and "left" in c]


def test_long_video_segments_and_spans(clips):
    video = clips.long_video("val", 0, 4)
    assert len(video.frames) == 4 * clips.num_frames and len(video.captions) == len(video.motions) == 4
    assert video.spans == [(2.0 * k, 2.0 * (k + 1)) for k in range(4)]  # 8 frames at 4 fps: 2 s a segment
    assert video.frames_per_second == 4.0
    for (start, end), motion in zip(video.spans, video.motions):
        frames = video.frames[round(start * 4) : round(end * 4)]
        if MOTIONS[motion] in ("moving left", "moving right"):
            moved = centroid(frames[-1])[0] - centroid(frames[0])[0]
            assert np.sign(moved) == (1 if MOTIONS[motion] == "moving right" else -1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(held_out=["star moving sideways"]), "star moving sideways"),
        (dict(held_out=["purple star"]), "'purple star'"),
        (dict(held_out="star moving left"), "list of '<shape> <motion>' compositions, got the string"),
        (dict(held_out=[f"{shape} growing" for shape in SHAPES]), "every shape of 'growing'"),
        (dict(num_frames=1), "num_frames"),
    ],
)
def test_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShapesWorldClips(**kwargs)


def test_clear_errors_of_draws_and_data_module():
    world = ShapesWorldClips(held_out=HELD_OUT)
    with pytest.raises(ValueError, match="held out and cannot be drawn in split 'train'"):
        world.clip("train", 0, allowed=["star moving left"])
    with pytest.raises(ValueError, match="at least one"):
        world.clip("val", 0, allowed=[])
    with pytest.raises(ValueError, match="unknown split"):
        world.clip("training", 0)
    with pytest.raises(ValueError, match="unknown motion"):
        world.clip("val", 0, motion="spinning")
    with pytest.raises(ValueError, match="unknown task"):
        ShapesWorldVideo(task="captioning")
    with pytest.raises(ValueError, match="num_frames must be from 1 to clip_frames=8"):
        ShapesWorldVideo(num_frames=9)


def test_retrieval_batches():
    data = ShapesWorldVideo(image_size=32, num_frames=4, batch_size=4, context_length=16, val_samples=8)
    batch = next(iter(data.train_dataloader()))
    assert batch["video"].shape == (4, 4, 3, 32, 32) and batch["video"].dtype == torch.float32
    mask = batch["frame_mask"]
    assert mask.shape == (4, 4) and mask.dtype == torch.bool and mask.all()
    assert batch["text"].shape == (4, 16) and batch["text"].dtype == torch.long
    assert batch["label"].dtype == torch.long and len(batch["caption"]) == 4
    loaders = data.val_dataloader()
    assert len(loaders) == 2 and [s.name for s in data.evaluation_sets("validate")] == ["", "motions"]
    batch = next(iter(loaders[0]))
    assert batch["index"].tolist() == [0, 1, 2, 3]
    # Frames 1, 3, 5, 7 of the clip (segment centres), normalised as CLIP images.
    clip = data.clips.clip("val", 2)
    expected = torch.stack([to_normalized_tensor(clip.frames[k]) for k in (1, 3, 5, 7)])
    assert torch.equal(batch["video"][2], expected)
    assert batch["caption"][2] == clip.caption and batch["label"][2] == clip.motion


def test_recognition_one_frame_is_the_middle_frame_and_held_out_loader():
    data = ShapesWorldVideo(
        task="recognition", image_size=32, num_frames=1, held_out=HELD_OUT, batch_size=8, test_samples=8
    )
    assert data.classnames == list(MOTIONS) and all("{}" in t for t in data.templates)
    assert [s.name for s in data.evaluation_sets("test")] == ["", "heldout", "motions"]
    assert all(s.classnames == tuple(MOTIONS) for s in data.evaluation_sets("test"))
    split_loader, held_out_loader, _ = data.test_dataloader()
    batch = next(iter(split_loader))
    assert batch["video"].shape == (8, 1, 3, 32, 32) and "text" not in batch
    for b in range(8):
        clip = data.clips.clip("test", b)
        assert torch.equal(batch["video"][b, 0], to_normalized_tensor(clip.frames[4]))
    held = next(iter(held_out_loader))
    motions = {MOTIONS.index(c.split(" ", 1)[1]) for c in HELD_OUT}
    assert set(held["label"].tolist()) == motions
    for caption, label in zip(held["caption"], held["label"].tolist()):
        shapes = [c.split(" ", 1)[0] for c in HELD_OUT if c.endswith(MOTIONS[label])]
        assert any(shape in caption for shape in shapes), caption


def test_motion_families_batch_one_draw_in_every_motion_mirrored_ones_sharing_the_middle_frame():
    data = ShapesWorldVideo(image_size=32, motion_families=True, train_samples=28, batch_size=2)
    batch = next(iter(data.train_dataloader()))
    n = len(MOTIONS)
    assert batch["video"].shape[:2] == (2 * n, 8) and batch["text"].shape[0] == 2 * n
    assert batch["label"].tolist() == list(range(n)) * 2
    for family in batch["video"].split(n):
        left, right, up, down, grow, shrink = family[:6, 4]  # the middle frames of the mirrored pairs
        assert torch.equal(left, right) and torch.equal(up, down) and torch.equal(grow, shrink)
        assert not torch.equal(family[0], family[1])  # the clips differ
    assert not torch.equal(batch["video"][0], batch["video"][n])  # families are different draws


def test_the_motions_evaluation_set_holds_whole_families_with_distinct_indices():
    data = ShapesWorldVideo(image_size=32, num_frames=2, batch_size=14, val_samples=28, context_length=16)
    families = data.val_dataloader()[-1]
    batches = list(families)
    n = len(MOTIONS)
    assert [b["video"].shape[0] for b in batches] == [2 * n, 2 * n]  # 14 clips a batch, as the other loaders
    labels = torch.cat([b["label"] for b in batches])
    assert labels.tolist() == list(range(n)) * 4
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(4 * n))  # each clip counted once
    first = batches[0]
    assert torch.equal(first["video"][0], torch.stack([to_normalized_tensor(f) for f in
                                                       [data.clips.clip("val", 0, motion=0).frames[k] for k in (2, 6)]]))
