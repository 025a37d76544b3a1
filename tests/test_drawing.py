"""The pictures of lit_clip.drawing: their shapes and dtypes, that they show what they are given where they
should, and that the callbacks log them to TensorBoard."""
from __future__ import annotations

import io

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lit_clip.callbacks import DetectionSamples, GroupMaps, ImageTextSamples
from lit_clip.callbacks.groupvit import grouping_statistics
from lit_clip.datamodules import ShapesWorldCaptions, ShapesWorldDetection
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lit_clip
from lit_clip import drawing
from lit_clip.drawing import MARGIN
from lit_clip.methods import CLIPPretraining, GroupViTPretraining, ViLD
from lit_clip.transforms import to_normalized_tensor

RED, GREY, WHITE = (255, 0, 0), (128, 128, 128), (255, 255, 255)


def solid(colour: tuple[int, int, int], px: int = 32) -> np.ndarray:
    return np.full((px, px, 3), colour, dtype=np.uint8)


def is_picture(picture: np.ndarray) -> bool:
    return isinstance(picture, np.ndarray) and picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3


def count(picture: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((picture == colour).all(axis=-1).sum())


def test_to_uint8_image_undoes_the_normalisation_for_one_image_or_a_batch():
    pixels = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    normalised = to_normalized_tensor(Image.fromarray(pixels))
    one, batch = drawing.to_uint8_image(normalised), drawing.to_uint8_image(torch.stack([normalised] * 2))
    assert is_picture(one) and np.array_equal(one, pixels)
    assert batch.shape == (2, 8, 6, 3) and batch.dtype == np.uint8 and np.array_equal(batch[1], pixels)


def test_palette_gives_distinct_colours():
    colours = drawing.palette(12)
    assert len(set(colours)) == 12
    assert all(len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in colours)


def test_caption_grid_puts_each_image_above_its_caption():
    grid = drawing.caption_grid([solid(RED), solid(GREY)], ["a red square", "a grey square"], px=40)
    assert is_picture(grid) and grid.shape[1] == MARGIN + 2 * (40 + MARGIN) and grid.shape[0] > 40
    assert count(grid[:, : MARGIN + 40], RED) == 40 * 40 and count(grid, RED) == 40 * 40
    caption_area = grid[MARGIN + 40 + MARGIN // 2 :]
    assert (caption_area != 255).any(axis=-1).sum() > 50  # the captions' letters


def test_frame_strips_put_each_clip_s_frames_in_a_row_in_time_order_beside_its_caption():
    clips = [[solid(RED), solid(GREY), solid(RED)], [solid(GREY), solid(GREY)]]
    strips = drawing.frame_strips(clips, ["a red square blinks", "a grey square"], px=40)
    assert is_picture(strips) and count(strips, RED) == 2 * 40 * 40
    first_row = strips[MARGIN : MARGIN + 40]
    red_columns = np.flatnonzero((first_row == RED).all(axis=-1).any(axis=0))
    # frames 1 and 3 of the first clip are red: two runs of 40 columns, two frame steps (40 + 2 px each) apart
    assert len(red_columns) == 80 and red_columns[40] - red_columns[0] == 2 * (40 + 2)
    assert (strips[:, : red_columns[0]] != 255).any(axis=-1).sum() > 50  # the captions' letters at the left


def test_similarity_figure_grows_with_the_images_and_shows_thumbnails_captions_and_values():
    def figure(n: int, captions: list[str] | None = None, value: float | None = None) -> np.ndarray:
        similarity = np.eye(n) if value is None else np.full((n, n), value)
        captions = captions or [f"caption number {i} of a few words" for i in range(n)]
        return drawing.similarity_figure([solid(RED)] + [solid(GREY)] * (n - 1), captions, similarity, 48, 200)

    small, large = figure(2), figure(8)
    assert is_picture(small) and is_picture(large)
    assert large.shape[0] > small.shape[0] and large.shape[1] > small.shape[1]
    assert 600 <= large.shape[1] <= 900  # legible at TensorBoard's native size, not wider than its card
    assert count(small, RED) == count(large, RED) == 48 * 48  # the red image's thumbnail, once

    left = MARGIN + 200  # the matrix starts right of the caption column
    changed = (figure(8) != figure(8, ["", "", "", "", "", "", "", ""])).any(axis=-1)
    assert changed[:, :left].sum() > 200 and not changed[:, left:].any()  # captions only in their column
    changed = (figure(8, value=0.25) != figure(8, value=0.75)).any(axis=-1)
    assert changed[:, left : left + 8 * 52].sum() > 8 * 8 * 20  # a number in every cell
    # The highest similarity in the scale's top colour (viridis yellow), the lowest in its bottom one.
    assert count(large, (253, 231, 37)) > 8 * 52 and count(large, (68, 1, 84)) > 52 * 52


def test_segmentation_overlay_paints_the_classes_and_leaves_ignored_pixels():
    image = solid(GREY)
    mask = torch.full((32, 32), 255)
    mask[:, :16] = 2
    overlay = drawing.segmentation_overlay(image, mask, ["sky", "road", "car"], min_side=0)
    assert is_picture(overlay) and overlay.shape[0] >= 32 and overlay.shape[1] > 32  # the legend beside
    colour = drawing.palette(1)[0]
    assert np.array_equal(overlay[:32, :16], np.broadcast_to((np.add(GREY, colour) // 2), (32, 16, 3)))
    assert np.array_equal(overlay[:32, 16:32], image[:, 16:])
    assert count(overlay[:, 32:], colour) > 50  # the swatch of the one class present

    enlarged = drawing.segmentation_overlay(image, mask, ["sky", "road", "car"])
    assert enlarged.shape[0] == 256 and np.array_equal(enlarged[:, 128:256], np.broadcast_to(GREY, (256, 128, 3)))


def test_boxes_with_names_outline_the_box_in_its_class_colour_with_a_tag_above():
    image = solid(GREY, 64)
    boxes = torch.tensor([[10.0, 20.0, 40.0, 50.0]])
    drawn = drawing.boxes_with_names(image, boxes, torch.tensor([1]), ["cat", "dog"], min_side=0)
    assert is_picture(drawn) and drawn.shape == (64, 64, 3)
    colour = drawing.palette(1)[0]
    assert tuple(drawn[35, 10]) == tuple(drawn[20, 25]) == tuple(drawn[50, 25]) == colour  # the outline
    assert tuple(drawn[35, 25]) == tuple(drawn[60, 60]) == GREY  # inside and outside
    assert count(drawn[:20], colour) > 100  # the tag above the box
    with_scores = drawing.boxes_with_names(image, boxes, [1], ["cat", "dog"], scores=[0.87], min_side=0)
    assert not np.array_equal(with_scores, drawn)  # "dog 0.87", not "dog"

    enlarged = drawing.boxes_with_names(image, boxes, [1], ["cat", "dog"])
    assert enlarged.shape == (256, 256, 3) and tuple(enlarged[140, 40]) == colour


def test_detection_comparison_shows_truth_beside_the_best_predictions_base_and_novel_in_their_colours():
    names = ["cat", "dog"]  # "dog" is novel
    truth = {"boxes": torch.tensor([[4.0, 20.0, 28.0, 60.0], [36.0, 20.0, 60.0, 60.0]]), "labels": torch.tensor([0, 1])}
    prediction = {**truth, "scores": torch.tensor([0.9, 0.8])}
    # Another cat below the threshold: not drawn.
    unsure = {"boxes": torch.tensor([[4.0, 20.0, 28.0, 60.0], [36.0, 20.0, 60.0, 60.0], [10.0, 30.0, 50.0, 50.0]]),
              "labels": torch.tensor([0, 1, 0]), "scores": torch.tensor([0.9, 0.8, 0.2])}  # fmt: skip

    def compare(prediction=prediction, names=names, **kwargs) -> np.ndarray:
        return drawing.detection_comparison([solid(GREY, 64)], [truth], [prediction], names, {"dog"}, **kwargs)

    picture = compare(min_side=0)
    assert is_picture(picture) and picture.shape[1] > MARGIN + 2 * (64 + MARGIN)  # the legend beside
    top = picture.shape[0] - (64 + MARGIN)  # the titles' band
    cell = lambda column, picture=picture: picture[top : top + 64, MARGIN + column * (64 + MARGIN) :][:, :64]
    base, novel = drawing.BASE_COLOUR, drawing.NOVEL_COLOUR
    for column in (0, 1):  # ground truth, prediction
        assert tuple(cell(column)[40, 4]) == tuple(cell(column)[60, 16]) == base  # the cat's outline
        assert tuple(cell(column)[40, 36]) == tuple(cell(column)[60, 48]) == novel  # the dog's
        assert tuple(cell(column)[40, 16]) == tuple(cell(column)[40, 48]) == GREY  # inside
    legend = picture[:, MARGIN + 2 * (64 + MARGIN) :]
    assert count(legend, base) > 50 and count(legend, novel) > 50  # "base" and "novel" swatches

    assert np.array_equal(compare(unsure, min_side=0), picture)
    best = compare(unsure, max_boxes=1, min_side=0)
    assert count(cell(1, best), novel) == 0 and tuple(cell(1, best)[40, 4]) == base  # the 0.9 cat alone
    changed = (compare(names=["cow", "dog"], min_side=0) != picture).any(axis=-1)[top:]
    assert changed[:20, :64].sum() > 10 and changed[:20, 72:136].sum() > 10  # the name on each column's tag above
    assert not changed[20:].any()  # and nothing else
    nothing = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}
    empty = drawing.detection_comparison([solid(GREY, 64)], [nothing], [nothing], names, {"dog"}, min_side=0)
    assert count(cell(0, empty), GREY) == count(cell(1, empty), GREY) == 64 * 64

    enlarged = compare()  # 64 px enlarged to 256
    assert enlarged.shape[1] > MARGIN + 2 * (256 + MARGIN) and enlarged.shape[0] >= 256 + MARGIN
    assert tuple(enlarged[enlarged.shape[0] - MARGIN - 256 + 160, MARGIN + 16]) == base


def test_group_map_colours_each_group_and_draws_their_borders():
    assignment = torch.tensor([[0, 1], [2, 3]])  # one group per patch of a 2 x 2 grid
    groups = drawing.group_map(solid(GREY), assignment, min_side=0)
    assert is_picture(groups) and groups.shape[0] >= 32 and groups.shape[1] > 32  # the legend may be taller
    quadrants = {tuple(groups[y, x]) for y, x in ((4, 4), (4, 28), (28, 4), (28, 28))}
    assert len(quadrants) == 4 and GREY not in quadrants
    assert tuple(groups[4, 16]) == tuple(groups[16, 4]) == WHITE  # where groups meet
    named = drawing.group_map(solid(GREY), assignment, ["sky", "tree", "road", "car"], min_side=0)
    assert np.array_equal(named[:32, :32], groups[:32, :32]) and not np.array_equal(named, groups)


def test_group_stages_show_each_image_then_each_stage_s_groups_in_a_row():
    halves = torch.zeros(2, 4, 32, 32)  # stage 1: 4 groups, the left half in group 0 and the right in group 1
    halves[:, 0, :, :16], halves[:, 1, :, 16:] = 0.9, 0.8
    one_group = torch.zeros(2, 2, 32, 32)
    one_group[:, 1] = 0.6  # stage 2: 2 groups, every pixel in group 1
    picture = drawing.group_stages([solid(GREY)] * 2, [halves, one_group], min_side=0)
    assert is_picture(picture)
    top = picture.shape[0] - 2 * (32 + MARGIN)  # the titles' band
    cell = lambda row, column: picture[top + row * (32 + MARGIN):][:32, MARGIN + column * (32 + MARGIN):][:, :32]
    assert picture.shape[1] == MARGIN + 3 * (32 + MARGIN)  # image, stage 1, stage 2
    for row in range(2):
        assert count(cell(row, 0), GREY) == 32 * 32  # the image as it is
        left, right = tuple(cell(row, 1)[8, 4]), tuple(cell(row, 1)[8, 28])
        assert left != right and GREY not in (left, right)  # two groups, two colours
        assert count(cell(row, 1), WHITE) > 0 and count(cell(row, 2), WHITE) == 0  # borders only between groups


@pytest.mark.parametrize(
    "draw",
    [
        lambda: drawing.caption_grid([solid(RED)] * 2, ["a red square", "another one"]),
        lambda: drawing.similarity_figure([solid(RED)] * 2, ["a red square", "another one"], np.eye(2)),
    ],
    ids=["caption_grid", "similarity_figure"],
)
def test_pictures_keep_working_with_pillow_s_unscalable_bitmap_font(monkeypatch, draw):
    """Pillow before 10.1 has no ``load_default(size=...)``: the pictures fall back to its small bitmap font."""
    bitmap = drawing.ImageFont.load_default_imagefont()

    def old_load_default(**kwargs):
        if kwargs:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return bitmap

    monkeypatch.setattr(drawing.ImageFont, "load_default", old_load_default)
    drawing._font.cache_clear()
    try:
        picture = draw()
        assert is_picture(picture) and count(picture, RED) > 0
    finally:
        drawing._font.cache_clear()


def test_image_text_samples_logs_both_pictures_to_tensorboard(tmp_path):
    data = ShapesWorldCaptions(
        image_size=32, batch_size=8, val_samples=8, context_length=16, zeroshot_samples_per_class=1
    )
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = L.Trainer(
        logger=logger, callbacks=[ImageTextSamples(num_samples=4, image_px=40)],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.validate(CLIPPretraining(architecture="ViT-Micro-8"), data)
    logger.experiment.flush()

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert {"val/samples", "val/similarity"} <= set(events.Tags()["images"])
    samples, similarity = events.Images("val/samples"), events.Images("val/similarity")
    assert len(samples) == len(similarity) == 1
    grid = np.asarray(Image.open(io.BytesIO(samples[0].encoded_image_string)))
    figure = np.asarray(Image.open(io.BytesIO(similarity[0].encoded_image_string)))
    assert grid.shape[:2] == (samples[0].height, samples[0].width) and grid.shape[1] == MARGIN + 4 * (40 + MARGIN)
    assert figure.shape[:2] == (similarity[0].height, similarity[0].width) and figure.shape[1] > 4 * 44


def test_group_maps_logs_the_groups_of_both_stages_to_tensorboard(tmp_path):
    data = ShapesWorldCaptions(
        image_size=64, batch_size=8, val_samples=8, context_length=32, zeroshot_samples_per_class=1
    )
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = L.Trainer(
        logger=logger, callbacks=[GroupMaps(num_samples=3)], enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(GroupViTPretraining(architecture="GroupViT-Micro"), data)
    logger.experiment.flush()

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    (groups,) = events.Images("val/groups")
    picture = np.asarray(Image.open(io.BytesIO(groups.encoded_image_string)))
    side = 128  # the 64 px images enlarged to the default min_side
    assert picture.shape[1] == MARGIN + 3 * (side + MARGIN)  # image, stage 1, stage 2
    assert picture.shape[0] > 3 * (side + MARGIN)  # 3 images, under the titles
    for stage, groups_made in ((1, 16), (2, 4)):  # GroupViT-Micro's
        assert 1 <= trainer.callback_metrics[f"val/groups_in_use/stage{stage}"] <= groups_made
        assert 1 / groups_made <= trainer.callback_metrics[f"val/largest_group/stage{stage}"] <= 1


def test_grouping_statistics_count_the_groups_that_hold_patches():
    owners = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 2]])  # two images of 2 x 2 patches, 3 groups
    maps = F.one_hot(owners, 3).float().transpose(1, 2).unflatten(-1, (2, 2)) * 0.6 + 0.1  # soft, same argmax
    statistics = grouping_statistics([maps, maps[:, :2]])
    assert statistics["groups_in_use/stage1"] == pytest.approx((1 + 3) / 2)
    assert statistics["largest_group/stage1"] == pytest.approx((1.0 + 0.5) / 2)
    assert statistics["groups_in_use/stage2"] == pytest.approx((1 + 2) / 2)  # group 2's patch goes to group 0
    assert statistics["largest_group/stage2"] == pytest.approx((1.0 + 0.5) / 2)


def test_detection_samples_logs_validation_and_test_detections_to_tensorboard(tmp_path):
    torch.manual_seed(0)
    clip_file = tmp_path / "rn_tiny.pt"  # a random CLIP: the detections are random, the picture is not
    torch.save(lit_clip.create_model("RN-Tiny").state_dict(), clip_file)
    model = ViLD(str(clip_file), architecture="RN-Tiny", backbone="resnet18", fpn_channels=16, head_convs=1,
                 head_fcs=1, head_fc=32, min_size=64, max_size=64, anchor_sizes=(8, 16, 32, 64, 128),
                 proposals_per_image=20, proposals_before_nms=50, roi_samples_per_image=16, score_threshold=0.0)  # fmt: skip
    data = ShapesWorldDetection(image_size=64, batch_size=2, val_samples=2, test_samples=2)
    model.base_classnames = tuple(data.classnames)  # as after training
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = L.Trainer(
        logger=logger, callbacks=[DetectionSamples(score_threshold=0.0)], enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.validate(model, data)
    trainer.test(model, data)
    logger.experiment.flush()

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    for tag in ("val/detections", "test/detections"):
        (logged,) = events.Images(tag)
        picture = np.asarray(Image.open(io.BytesIO(logged.encoded_image_string)))
        side = 256  # the 64 px scenes enlarged to detection_comparison's min_side
        assert picture.shape[1] > MARGIN + 2 * (side + MARGIN)  # ground truth, prediction and the legend
        assert picture.shape[0] > 2 * (side + MARGIN)  # the batch's 2 images
        grid = picture[:, : MARGIN + 2 * (side + MARGIN)]
        assert count(grid, drawing.BASE_COLOUR) + count(grid, drawing.NOVEL_COLOUR) > 100  # boxes drawn


def test_video_samples_logs_frame_strips_and_the_method_s_scores_to_tensorboard(tmp_path):
    from lit_clip.callbacks import VideoSamples
    from lit_clip.datamodules import ShapesWorldVideo
    from lit_clip.methods import CLIP4Clip

    data = ShapesWorldVideo(image_size=32, num_frames=3, batch_size=4, val_samples=8, context_length=16)
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = L.Trainer(
        logger=logger, callbacks=[VideoSamples(num_samples=3, frame_px=40)],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.validate(CLIP4Clip(architecture="ViT-Micro-8", sim_header="meanP"), data)
    logger.experiment.flush()

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert {"val/video_samples", "val/video_similarity"} <= set(events.Tags()["images"])
    strips = np.asarray(Image.open(io.BytesIO(events.Images("val/video_samples")[0].encoded_image_string)))
    figure = np.asarray(Image.open(io.BytesIO(events.Images("val/video_similarity")[0].encoded_image_string)))
    assert strips.shape[0] == MARGIN + 3 * (40 + MARGIN) and strips.shape[1] > 3 * (40 + 2)  # 3 clips of 3 frames
    assert figure.shape[1] > 3 * 44  # a column per clip
