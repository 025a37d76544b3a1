"""CLIP-guided generation (lit_clip/methods/generation/: CLIPDraw, CLIPasso, VQGAN-CLIP and what they share), its
targets (datamodules/generation.py) and its pictures and judge (callbacks/generation.py). The rasteriser and the
VQGAN have their own files (test_rasterizer.py, test_vqgan.py)."""
from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import lit_clip
from lit_clip.callbacks.generation import GenerationProgress, JudgePictures, _truth
from lit_clip.datamodules import GenerationTargets
from lit_clip.datamodules.shapesworld.world import COLOR_RGB, COLORS, class_names
from lit_clip.methods.generation.clipasso import CLIPasso, class_token_attention, xdog
from lit_clip.methods.generation.clipdraw import CLIPDraw
from lit_clip.methods.generation.guidance import random_perspective, random_resized_crop, slug
from lit_clip.methods.generation.vqgan_clip import (
    VQGANCLIP, ClampWithGrad, ReplaceGrad, parse_prompts, spherical_distance,
)  # fmt: skip
from lit_clip.transforms import CLIP_MEAN, CLIP_STD


@pytest.fixture(scope="module")
def rn_file(tmp_path_factory):
    """A random-weight RN-Tiny CLIP (64 px)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "rn_tiny.pt"
    torch.save(lit_clip.create_model("RN-Tiny").state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    """A random-weight ViT-Micro-8 CLIP."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "vit_micro.pt"
    torch.save(lit_clip.create_model("ViT-Micro-8").state_dict(), path)
    return str(path)


def fitted(method, data, tmp_path, callbacks=()):
    trainer = L.Trainer(
        max_epochs=1, logger=TensorBoardLogger(tmp_path, name="run"), enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, callbacks=list(callbacks),
    )  # fmt: skip
    trainer.fit(method, data)
    return trainer


# --- targets -------------------------------------------------------------------------------------------------------
def test_targets_read_files_on_white_and_shapesworld_scenes_named_by_their_captions(tmp_path):
    transparent = np.zeros((30, 60, 4), dtype=np.uint8)
    transparent[:, :30] = (255, 0, 0, 255)  # the left half red and opaque, the right half transparent
    Image.fromarray(transparent, "RGBA").save(tmp_path / "logo.png")
    data = GenerationTargets(images=[str(tmp_path / "logo.png")], shapesworld_scenes=[0, 3], image_size=32)
    images = data.target_images()
    assert images.shape == (3, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    assert torch.allclose(images[0, :, 16, 28], torch.ones(3))  # the transparent half is white
    assert images[0, 0, 16, 4] > 0.9 and images[0, 1, 16, 4] < 0.1
    names = data.target_names
    assert names[0] == "logo" and all(any(c in name for c in COLORS) for name in names[1:])
    padded = GenerationTargets(images=[str(tmp_path / "logo.png")], image_size=32, pad_to_square=True).target_images()
    assert torch.allclose(padded[0, :, 2, 16], torch.ones(3))  # the padding above the wide picture is white
    assert len(list(data.train_dataloader())) == 1000


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({}, ValueError, "nothing to draw"),
        ({"prompts": ["a red circle", " "]}, ValueError, "prompt 1 is empty"),
        ({"images": ["no/such.png"]}, FileNotFoundError, "no/such.png"),
        ({"prompts": ["x"], "steps": 0}, ValueError, "steps"),
    ],
)
def test_targets_refuse_bad_input_by_name(kwargs, error, message):
    with pytest.raises(error, match=message):
        GenerationTargets(**kwargs)


# --- augmentations -------------------------------------------------------------------------------------------------
def test_a_perspective_of_no_distortion_and_a_crop_of_everything_change_nothing():
    images = torch.rand(2, 3, 20, 20)
    assert torch.allclose(random_perspective(images, 0.0, fill=1.0), images, atol=1e-5)
    assert torch.allclose(random_resized_crop(images, 20, (1.0, 1.0), (1.0, 1.0)), images, atol=1e-5)


def test_a_perspective_fills_from_outside_moves_the_same_for_the_whole_batch_and_passes_gradients():
    images = torch.rand(2, 3, 40, 40, requires_grad=True)
    warped = random_perspective(images, 0.9, fill=1.0, generator=torch.Generator().manual_seed(3))
    corner = warped[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corner > 0.99).sum() >= 4 * 2  # corners moved inwards at least somewhere: filled with white
    twin = random_perspective(images[1:] * 1, 0.9, fill=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(warped[1:], twin, atol=1e-6)  # one draw for the batch
    warped.sum().backward()
    assert images.grad.abs().sum() > 0


def test_a_perspective_whose_horizon_crosses_a_pixel_fills_it_instead_of_nan():
    # This draw puts the homography's denominator at exactly 0 on 9 pixels of a 64 px picture: grid_sample gave NaN
    # there, which after ~100 steps made a VQGAN-CLIP run's latent NaN.
    warped = random_perspective(torch.rand(1, 3, 64, 64), 0.7, fill=0.5, generator=torch.Generator().manual_seed(19650))
    assert torch.isfinite(warped).all()


# --- CLIPDraw ------------------------------------------------------------------------------------------------------
def clipdraw(rn_file, prompts=("a red circle",), **kwargs):
    method = CLIPDraw(rn_file, architecture="RN-Tiny", **kwargs)
    method.create_pictures(GenerationTargets(prompts=list(prompts), steps=2))
    return method


def test_clipdraw_starts_from_the_official_random_strokes(rn_file):
    method = clipdraw(rn_file, prompts=["a", "b"], num_paths=200, canvas_size=100)
    points, segments = method.points.detach(), method.num_segments
    assert points.shape == (2, 200, 10, 2) and set(segments.unique().tolist()) == {1, 2, 3}
    steps = (points[:, :, 1:] - points[:, :, :-1]).abs()
    assert steps.max() <= 0.05 * 100 + 1e-4 and steps.max() > 0.045 * 100  # +-0.05 of the side a control point
    assert points[:, :, 0].min() >= 0 and points[:, :, 0].max() <= 100
    assert torch.all(method.half_widths == 1.0)
    assert 0 <= method.colours.min() and method.colours.max() <= 1 and method.colours[..., 3].std() > 0.1
    assert method.pictures().shape == (2, 3, 100, 100)


def test_clipdraw_loss_is_minus_the_summed_cosine_plus_the_weighted_negatives(rn_file):
    method = clipdraw(
        rn_file, num_paths=8, canvas_size=64, num_augmentations=1, distortion_scale=0.0, crop_scale=(1.0, 1.0),
        negative_prompts=["a blue square"], negative_weight=0.3, normalize=True,
    )  # fmt: skip
    drawing = method.pictures().detach()
    loss, cosine = method.drawing_losses(drawing)
    normalised = (drawing - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    image = F.normalize(method.model.encode_image(normalised), dim=-1)[0]
    text = method.text_features(["a red circle", "a blue square"])
    assert torch.allclose(loss[0], -(image @ text[0]) + 0.3 * (image @ text[1]), atol=1e-5)
    assert torch.allclose(cosine[0], image @ text[0], atol=1e-5)


def test_clipdraw_fits_writes_png_and_svg_clamps_and_steps_the_points_lr_down(rn_file, tmp_path):
    method = CLIPDraw(rn_file, architecture="RN-Tiny", num_paths=16, canvas_size=64, num_augmentations=2,
                      widths_lr=5.0, colours_lr=5.0)  # fmt: skip
    data = GenerationTargets(prompts=["a red circle", "a green star"], steps=4)
    lrs = []

    class LearningRates(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = fitted(method, data, tmp_path, [LearningRates(), GenerationProgress(every_n_steps=2)])
    assert lrs == [1.0, 1.0, 0.4, 0.1]
    assert 1.0 <= method.half_widths.min() and method.half_widths.max() <= 50.0
    assert 0.0 <= method.colours.min() and method.colours.max() <= 1.0
    pictures = sorted(p.name for p in (tmp_path / "run" / "version_0" / "pictures").iterdir())
    assert pictures == ["00_a_red_circle.png", "00_a_red_circle.svg", "01_a_green_star.png", "01_a_green_star.svg"]
    events = EventAccumulator(trainer.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert [event.step for event in events.Images("train/pictures")] == [0, 2, 4]


# --- CLIPasso ------------------------------------------------------------------------------------------------------
def test_xdog_marks_the_edges_of_a_dark_disc_and_not_the_flat_background():
    y, x = np.mgrid[:64, :64]
    photo = torch.ones(3, 64, 64)
    photo[:, (x - 32) ** 2 + (y - 32) ** 2 < 15**2] = 0.1
    edges = 1 - xdog(photo)  # CLIPasso multiplies the saliency by one minus XDoG's binary image
    ring = ((x - 32) ** 2 + (y - 32) ** 2 > 12**2) & ((x - 32) ** 2 + (y - 32) ** 2 < 15**2)
    assert edges[torch.from_numpy(ring)].mean() > 0.9
    assert edges[:6, :6].sum() == 0 and edges[-6:, -6:].sum() == 0


def test_class_token_attention_is_the_mean_over_heads_and_layers_of_the_softmaxed_attention(vit_file):
    clip = lit_clip.load_clip(vit_file, "ViT-Micro-8")
    images = torch.randn(2, 3, clip.visual.image_size, clip.visual.image_size)
    maps = class_token_attention(clip.visual, images)
    grid = clip.visual.image_size // clip.visual.patch_size
    assert maps.shape == (2, grid, grid) and (maps > 0).all() and (maps.flatten(1).sum(1) < 1).all()


def test_clipasso_draws_starts_only_where_the_saliency_map_is_non_zero(rn_file, monkeypatch):
    method = CLIPasso(rn_file, architecture="RN-Tiny", num_strokes=6, seeds=(0, 1), use_edges=False)
    allowed = torch.zeros(1, 64, 64)
    allowed[0, 10:14, 40:50] = torch.rand(4, 10) + 0.1  # 40 pixels
    monkeypatch.setattr(method, "saliency", lambda photos: allowed)
    starts = method.stroke_starts(torch.rand(1, 3, 64, 64), [torch.Generator().manual_seed(s) for s in (0, 1)])
    assert starts.shape == (1, 2, 6, 2)
    x, y = starts[..., 0].long(), starts[..., 1].long()
    assert (allowed[0, y, x] > 0).all()
    assert all(len(set(zip(x[0, s].tolist(), y[0, s].tolist()))) == 6 for s in range(2))  # without replacement


def test_clipasso_loss_is_layer2_and_layer3_mse_plus_a_tenth_of_one_minus_cosine(rn_file):
    method = CLIPasso(rn_file, architecture="RN-Tiny")
    sketch, photo = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    loss = method.pair_losses(sketch, photo, augment=False)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    fc_s, maps_s = method.model.visual.forward_intermediates((sketch - mean) / std)
    fc_p, maps_p = method.model.visual.forward_intermediates((photo - mean) / std)
    expected = F.mse_loss(maps_s[2], maps_p[2]) + F.mse_loss(maps_s[3], maps_p[3])
    expected = expected + 0.1 * (1 - F.cosine_similarity(fc_s, fc_p))[0]
    assert torch.allclose(loss[0], expected, atol=1e-5)


def test_clipasso_needs_a_resnet_for_its_geometric_loss(vit_file):
    with pytest.raises(ValueError, match="ResNet"):
        CLIPasso(vit_file, architecture="ViT-Micro-8")


def test_clipasso_fits_seeds_as_a_batch_and_keeps_each_target_s_best_seed(rn_file, vit_file, tmp_path):
    method = CLIPasso(rn_file, architecture="RN-Tiny", saliency_clip=vit_file,
                      saliency_architecture="ViT-Micro-8", num_strokes=4, seeds=(0, 1, 2),
                      evaluate_every=2, num_augmentations=1)  # fmt: skip
    data = GenerationTargets(shapesworld_scenes=[0, 1], image_size=64, steps=3)
    fitted(method, data, tmp_path)
    assert method.points.shape == (6, 4, 4, 2) and torch.isfinite(method.best_loss).all()
    best = method.best_of_seeds()
    for target in range(2):
        seed = method.best_loss[3 * target : 3 * target + 3].argmin()
        assert torch.equal(best[target], method.best_points[3 * target + seed])
    directory = tmp_path / "run" / "version_0" / "pictures"
    assert len(list(directory.glob("*.png"))) == 2 and len(list(directory.glob("*.svg"))) == 2


# --- VQGAN-CLIP ----------------------------------------------------------------------------------------------------
def test_the_spherical_distance_is_zero_for_identical_embeddings_and_half_the_squared_angle_otherwise():
    a = F.normalize(torch.randn(5, 8), dim=-1)
    assert torch.allclose(spherical_distance(a, a), torch.zeros(5), atol=1e-6)
    b = F.normalize(torch.randn(5, 8), dim=-1)
    angle = torch.arccos((a * b).sum(-1))
    assert torch.allclose(spherical_distance(a, b), angle**2 / 2, atol=1e-5)


def test_replace_grad_and_clamp_with_grad():
    x = torch.tensor([0.5, 2.0, -1.0], requires_grad=True)
    y = ReplaceGrad.apply(torch.zeros(3), x * 3)
    assert torch.equal(y, torch.zeros(3))
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 3.0))
    x.grad = None
    clamped = ClampWithGrad.apply(x, 0.0, 1.0)
    assert torch.equal(clamped.detach(), torch.tensor([0.5, 1.0, 0.0]))
    (clamped * torch.tensor([1.0, 1.0, 1.0])).sum().backward()  # descent lowers all three
    assert torch.equal(x.grad, torch.tensor([1.0, 1.0, 0.0]))  # -1 may not go lower; 2.0 may come down


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a red circle", [("a red circle", 1.0, -math.inf)]),
        ("a red circle:2 | a blue square:-0.5:0.1", [("a red circle", 2.0, -math.inf), ("a blue square", -0.5, 0.1)]),
        ("time: 12:30", [("time", 12.0, 30.0)]),  # as the official's rsplit(":", 2)
        ("ratio 3:4:x", [("ratio 3:4:x", 1.0, -math.inf)]),
    ],
)
def test_prompts_parse_trailing_weights_and_stops(text, expected):
    assert parse_prompts(text) == expected


def test_a_negative_prompt_pushes_away_and_a_stop_cuts_the_gradient_below_it(rn_file, tmp_path):
    from lit_clip.models.vqgan import VQGAN

    config = dict(embed_dim=8, n_embed=16, ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[],
                  resolution=32, z_channels=8)  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path / "vqgan.ckpt"
    torch.save({"state_dict": VQGAN(**config).state_dict()}, path)

    def gradient_and_loss(prompt: str):
        method = VQGANCLIP(rn_file, str(path), vqgan_config=config, architecture="RN-Tiny", image_size=32, cutouts=2)
        method.create_pictures(GenerationTargets(prompts=[prompt], steps=1))
        loss = method.picture_losses(method.pictures()).sum()
        loss.backward()
        return method, method.z.grad, loss

    method, pushed, loss = gradient_and_loss("a red circle:-1")
    assert method.z.shape == (1, 8, 16, 16)
    assert torch.all(method.z >= method.z_min) and torch.all(method.z <= method.z_max)
    assert loss < 0 and pushed.abs().sum() > 0  # minus the distance: descending it moves away
    _, stopped, _ = gradient_and_loss("a blue star:1:10")  # every distance (at most pi^2 / 2) is below the stop
    assert stopped.abs().sum() == 0
    fitted(method, GenerationTargets(prompts=["a red circle:-1"], steps=2), tmp_path)
    assert torch.all(method.z >= method.z_min - 1e-6) and torch.all(method.z <= method.z_max + 1e-6)


# --- the judge -----------------------------------------------------------------------------------------------------
def test_a_picture_s_truth_is_the_longest_class_name_in_its_caption():
    names = class_names("color_shape")
    assert names[_truth("a drawing of a red circle on white", names)] == "red circle"
    assert _truth("00_a_small_red_circle", names) == names.index("red circle")
    assert _truth("a square", names) is None
    # ShapesWorld captions end in a period (CLIPasso's targets are named by them)
    assert _truth("a rendering of a large orange ring.", class_names("shape")) == class_names("shape").index("ring")


def test_judge_pictures_scores_colours_and_writes_its_report(rn_file, tmp_path, monkeypatch):
    method = clipdraw(rn_file, prompts=["a red circle", "a blue square"], num_paths=4, canvas_size=32)
    red, blue = (torch.tensor(COLOR_RGB[COLORS.index(c)] / 255, dtype=torch.float32) for c in ("red", "blue"))
    pictures = torch.ones(2, 3, 32, 32)
    pictures[0, :, :16] = red.view(3, 1, 1)  # half red, half white: every coloured pixel red
    pictures[1, :, :8] = red.view(3, 1, 1)
    pictures[1, :, 8:16] = blue.view(3, 1, 1)  # as much red as blue
    monkeypatch.setattr(method, "pictures", lambda: pictures)
    trainer = L.Trainer(logger=TensorBoardLogger(tmp_path, name="judge"), enable_progress_bar=False)
    trainer.datamodule = GenerationTargets(prompts=["a red circle", "a blue square"])
    monkeypatch.setattr(L.Trainer, "log_dir", property(lambda self: str(tmp_path)))
    JudgePictures(rn_file).on_train_end(trainer, method)
    report = json.loads((tmp_path / "judge.json").read_text())
    assert [p["colour_pixels"] for p in report["pictures"]] == [1.0, 0.5]
    assert report["mean"]["colour_pixels"] == 0.75 and 0 <= report["mean"]["truth_probability"] <= 1


def test_slugs_are_file_names():
    assert slug("A red circle, on white!") == "a_red_circle_on_white" and slug("???") == "picture"
