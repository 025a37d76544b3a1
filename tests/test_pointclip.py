"""PointCLIP V1 / V2: the projections against hand-worked pixels, the view weighting and the adapter against their
formulas, searches on validation only, prompt files, bad clouds, and a few-shot fit and test through Lightning."""
import itertools
import json
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

import lit_clip
from lit_clip.methods.three_d.pointclip import (
    InterViewAdapter,
    PointCLIP,
    best_class_prompts,
    best_view_weights,
    combine_views,
    encode_sentences,
    read_class_prompts,
    smoothed_cross_entropy,
)
from lit_clip.methods.three_d.projection import (
    V1_FEW_SHOT_VIEWS,
    V1_ZERO_SHOT_VIEWS,
    V2_VIEWS,
    project_v1,
    project_v2,
    views_to_clip_input,
)
from lit_clip.models.clip import CLIP, CLIPConfig, TextConfig, VisionConfig
from lit_clip.transforms import CLIP_MEAN, CLIP_STD

IDENTITY_VIEW = [((0.0, 0.0, 0.0),)]  # the camera looks along +z of the cloud as it is
CLASSES = ("sphere", "cube", "flower_pot")


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    """A random micro ViT CLIP (32 px, 32-d embeddings) in open_clip's layout."""
    torch.manual_seed(0)
    text = TextConfig(context_length=24, width=64, heads=1, layers=1)
    config = CLIPConfig(32, VisionConfig(32, 1, 64, patch_size=8), text)
    path = tmp_path_factory.mktemp("pointclip") / "micro_clip.pt"
    lit_clip.save_open_clip(CLIP(config), path)
    return str(path)


def cube_surface(steps: int = 21, half: float = 0.5) -> torch.Tensor:
    """Lattice points on the surface of an axis-aligned cube: symmetric under the cube's rotations."""
    side = torch.linspace(-1, 1, steps)
    grid = torch.stack(torch.meshgrid(side, side, side, indexing="ij"), dim=-1).view(-1, 3)
    return grid[(grid.abs() == 1).any(dim=-1)] * half


def solid_cloud(label: int, points: int, generator: torch.Generator) -> torch.Tensor:
    """A sphere, a cube or a flat disc (for the pot), with random points: three classes a CLIP could tell apart."""
    if label == 0:
        return F.normalize(torch.randn(points, 3, generator=generator), dim=-1) * 0.9
    if label == 1:
        cloud = torch.rand(points, 3, generator=generator) * 2 - 1
        face = torch.randint(0, 3, (points,), generator=generator)
        cloud[torch.arange(points), face] = torch.sign(cloud[torch.arange(points), face])
        return cloud * 0.55
    radius = torch.rand(points, generator=generator).sqrt()
    angle = torch.rand(points, generator=generator) * 2 * math.pi
    return torch.stack([radius * angle.cos(), torch.zeros(points), radius * angle.sin()], dim=-1) * 0.9


class Clouds(torch.utils.data.Dataset):
    def __init__(self, split: str, labels: list[int], accesses: list, points: int = 64, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.split, self.labels, self.accesses = split, labels, accesses
        self.clouds = [solid_cloud(label, points, generator) for label in labels]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        self.accesses.append(self.split)
        return {"points": self.clouds[index], "label": torch.tensor(self.labels[index]), "index": torch.tensor(index)}


class TinyClouds(L.LightningDataModule):
    """Three classes of random clouds; records which split's clouds were read, in order."""

    classnames = list(CLASSES)
    templates = ["point cloud depth map of a {}."]

    def __init__(self, train=(0, 1, 2, 0, 1, 2), val=(0, 1, 2, 2), test=(0, 1, 2), batch_size: int = 3):
        super().__init__()
        self.accesses: list[str] = []
        splits = {"train": train, "val": val, "test": test}
        self.sets = {name: Clouds(name, list(labels), self.accesses, seed=seed)
                     for seed, (name, labels) in enumerate(splits.items())}  # fmt: skip
        self.batch_size = batch_size

    def _loader(self, split: str, shuffle: bool = False):
        return torch.utils.data.DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")

    def predict_dataloader(self):
        return self._loader("test")


# --- V1's projection, worked by hand --------------------------------------------------------------------------
def test_a_single_point_lands_on_its_pixel_with_its_depth():
    point = torch.tensor([[[0.2, -0.4, 0.0]]])
    image = project_v1(point, V1_ZERO_SHOT_VIEWS, image_size=128, distance=1.6)
    assert image.shape == (1, 6, 128, 128)
    # View 0 is Rz(pi/2): (x, y, z) -> (-y, x, z) = (0.4, 0.2, 0.0); depth 0 + 1.6. Row from x, column from y:
    # ceil((0.4 / 1.6 + 1) * 64 - 0.5) = ceil(79.5) = 80 and ceil((0.2 / 1.6 + 1) * 64 - 0.5) = ceil(71.5) = 72.
    assert image[0, 0].nonzero().tolist() == [[80, 72]]
    assert image[0, 0, 80, 72].item() == pytest.approx(1.6)
    # View 4 is Ry(-pi/2) Rz(pi/2): (0.4, 0.2, 0.0) -> (0.0, 0.2, 0.4), seen from above: depth 2.0,
    # row ceil(64 - 0.5) = 64, column ceil((0.2 / 2.0 + 1) * 64 - 0.5) = ceil(69.9) = 70.
    assert image[0, 4].nonzero().tolist() == [[64, 70]]
    assert image[0, 4, 64, 70].item() == pytest.approx(2.0)
    assert (image[0] > 0).sum().item() == 6, "one pixel per view"


def test_points_on_one_pixel_give_the_harmonic_mean_of_their_depths_and_hidden_points_vanish():
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 0.4], [0.3, 0.0, -2.0]]])  # the third is behind the camera
    image = project_v1(points, IDENTITY_VIEW, image_size=128, distance=1.6)[0, 0]
    assert image.nonzero().tolist() == [[64, 64]]
    assert image[64, 64].item() == pytest.approx(2 / (1 / 1.6 + 1 / 2.0))


def test_a_plane_facing_the_view_gives_a_constant_depth_square():
    side = torch.linspace(-0.5, 0.5, 101)  # 0.01 apart: a third of a pixel at this depth
    plane = torch.stack([*torch.meshgrid(side, side, indexing="ij"), torch.full((101, 101), 0.3)], dim=-1)
    image = project_v1(plane.view(1, -1, 3), IDENTITY_VIEW, image_size=128, distance=1.6)[0, 0]
    first, last = (math.ceil((edge / 1.9 + 1) * 64 - 0.5) for edge in (-0.5, 0.5))  # 47 and 81
    square = image[first : last + 1, first : last + 1]
    torch.testing.assert_close(square, torch.full_like(square, 1.9))
    assert (image > 0).sum().item() == square.numel(), "nothing outside the square"


# --- V2's realistic projection --------------------------------------------------------------------------------
def test_v2_projection_of_a_cube_is_symmetric_under_the_cube_s_rotations():
    front = project_v2(cube_surface()[None], IDENTITY_VIEW)[0, 0]
    assert front.shape == (110, 110) and front.min() == 0 and front.max() == 1
    assert (front < 1).any(dim=0).sum() == 98, "the cube covers 0.8 of the 112-pixel grid, widened by the pooling"
    # Turning the cube a quarter about the viewing axis gives the same cube, so the same image.
    quarter_turn = project_v2(cube_surface()[None], [((0.0, 0.0, math.pi / 2),)])[0, 0]
    torch.testing.assert_close(quarter_turn, front, atol=1e-6, rtol=0)
    # ... and the image has the square's symmetries: the diagonal exactly, the quarter turns up to the official's
    # offset (the 7 x 7 pooling with padding 2 and the ceil put the object a pixel off the image's centre).
    torch.testing.assert_close(front.T, front)
    for turns, shift in ((1, (2, 0)), (2, (2, 2)), (3, (0, 2))):
        torch.testing.assert_close(torch.rot90(front, turns).roll(shift, dims=(0, 1)), front, atol=1e-6, rtol=0)
    box = project_v2((cube_surface() * torch.tensor([1.0, 0.6, 0.3]))[None], IDENTITY_VIEW)[0, 0]
    assert (box.T - box).abs().max() > 0.5, "a box that is not a cube has no such symmetry"


def test_v2_inversion_and_official_view_sets():
    cloud = cube_surface()[None]
    inverted, plain = project_v2(cloud), project_v2(cloud, invert=False)
    assert inverted.shape == (1, 10, 110, 110)
    torch.testing.assert_close(inverted, 1 - plain)
    assert plain[0, :, 0, 0].eq(0).all(), "background black before the inversion"
    assert len(V1_ZERO_SHOT_VIEWS) == 6 and len(V1_FEW_SHOT_VIEWS) == 10 and len(V2_VIEWS) == 10
    single_point = project_v2(torch.zeros(1, 1, 3), invert=False)  # no extent to scale by: the grid's centre
    assert torch.isfinite(single_point).all() and single_point[0, 0, 54, 54] == 1


# --- bad clouds -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("project", [project_v1, project_v2])
def test_empty_and_non_finite_clouds_are_refused(project):
    with pytest.raises(ValueError, match="empty point cloud"):
        project(torch.zeros(2, 0, 3))
    cloud = torch.rand(2, 5, 3)
    cloud[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"point cloud 1 has NaN or infinite coordinates \(point 3"):
        project(cloud)
    cloud[1, 3, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        project(cloud)
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        project(torch.rand(5, 3))


# --- view weights, adapter, loss: their formulas --------------------------------------------------------------
def test_view_weights_weight_each_view_s_similarities():
    features = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])  # one cloud, two views, unit features
    classifier = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two classes
    weights, scale = torch.tensor([0.25, 1.0]), 10.0
    expected = [scale / math.sqrt(2) * (0.25 * features[0, 0, c] + 1.0 * features[0, 1, c]) for c in range(2)]
    torch.testing.assert_close(combine_views(features, classifier, weights, scale), torch.tensor([expected]))


def test_pointclip_logits_are_the_weighted_per_view_cosines(clip_file):
    model = PointCLIP(clip_file, view_weights=[0.25, 1.0, 0.5, 0.75, 1.0, 0.25], quick_gelu=False).eval()
    model.set_classes(CLASSES)
    points = torch.stack([solid_cloud(label, 64, torch.Generator().manual_seed(label)) for label in range(2)])
    images = model.batch_input({"points": points})
    assert images.shape == (2, 6, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
        per_view = [F.normalize(model.model.encode_image(images[:, v]), dim=-1) for v in range(6)]
    pooled = sum(weight * feature for weight, feature in zip(model.view_weights, per_view)) / math.sqrt(6)
    torch.testing.assert_close(logits, model.model.logit_scale.exp() * pooled @ model.text_classifier)


def test_inter_view_adapter_shapes_and_residual():
    torch.manual_seed(0)
    adapter = InterViewAdapter(dim=8, num_views=3).eval()
    assert adapter.fusion_weights.tolist() == [0.5, 0.5, 0.5]
    linears = [m for m in [*adapter.global_branch, *adapter.view_branch] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(24, 8), (8, 8), (8, 24)]
    features = torch.randn(4, 3, 8)
    output = adapter(features)
    assert output.shape == (4, 3, 8)
    normed = adapter.view_norm((features * 0.5).flatten(0, 1)).view_as(features)
    adapted = adapter.view_branch(adapter.global_branch(normed)).view_as(features)
    torch.testing.assert_close(output, 0.6 * adapted + 0.4 * features)
    with torch.no_grad():  # a silent view branch leaves the residual alone
        adapter.view_branch[2].weight.zero_()
        adapter.view_branch[2].bias.zero_()
    torch.testing.assert_close(adapter(features), 0.4 * features)


def test_label_smoothing_is_dgcnn_s():
    logits, labels = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([0])
    log_probabilities = logits.log_softmax(dim=1)[0]
    expected = -(0.8 * log_probabilities[0] + 0.1 * log_probabilities[1] + 0.1 * log_probabilities[2])
    assert smoothed_cross_entropy(logits, labels, 0.2).item() == pytest.approx(expected.item())
    assert smoothed_cross_entropy(logits, labels, 0.2) != F.cross_entropy(logits, labels, label_smoothing=0.2)


# --- searches -------------------------------------------------------------------------------------------------
def test_view_weight_search_finds_the_grid_s_first_best_by_brute_force():
    torch.manual_seed(0)
    scores, labels, grid = torch.randn(24, 3, 4), torch.randint(0, 4, (24,)), (0.25, 0.5, 1.0)

    def accuracy(weights):
        return (torch.einsum("v,nvc->nc", torch.tensor(weights), scores).argmax(dim=1) == labels).float().mean().item()

    start = torch.ones(3)
    combinations = [list(w) for w in itertools.product(grid, repeat=3)]  # the official loops' order
    best = max(accuracy(w) for w in combinations)
    assert best > accuracy(start.tolist()) and sum(accuracy(w) == best for w in combinations) == 2, "a tie to break"
    weights, found = best_view_weights(scores, labels, grid, start, chunk_elements=100)  # several chunks
    assert found == pytest.approx(best)
    assert weights.tolist() == next(w for w in combinations if accuracy(w) == best), "the first best"
    # Only the searched views move.
    weights, _ = best_view_weights(scores, labels, grid, torch.tensor([0.75, 1.0, 1.0]), searched_views=[1, 2])
    assert weights[0] == 0.75
    with pytest.raises(ValueError, match="searched_views"):
        best_view_weights(scores, labels, grid, start, searched_views=[3])


class TableViews(PointCLIP):
    """PointCLIP whose view features come from a table by cloud index, so a search has something to find."""

    tables: dict[str, torch.Tensor] = {}
    searching = False

    def set_classes(self, classnames):
        self.register_buffer("text_classifier", torch.eye(2), persistent=False)

    def batch_input(self, batch):
        return self.tables["val" if self.searching else "test"][batch["index"]]

    def view_features(self, images):
        return images

    def search_on_validation(self):
        self.searching = True
        super().search_on_validation()
        self.searching = False


def test_search_uses_the_validation_split_only_and_keeps_its_best(clip_file, trainer):
    # Validation: view 0 is confidently wrong, view 1 right; on the test clouds it is the other way round. Only
    # the weights (0.25, 1.0) get validation right; a search on test would keep (1, 1).
    wrong_first = torch.tensor([[[0.0, 1.0], [0.8, 0.0]], [[1.0, 0.0], [0.0, 0.8]]])  # labels 0, 1
    TableViews.tables = {"val": wrong_first, "test": wrong_first.flip(1)}
    data = TinyClouds(val=(0, 1), test=(0, 1), batch_size=2)
    data.classnames = ["a", "b"]
    model = TableViews(clip_file, view_weights=[1.0, 1.0], views=[[0, 0, 0], [0, 1.5, 0]], search_view_weights=True,
                       search_grid=(0.25, 1.0), quick_gelu=False)  # fmt: skip
    results = trainer().test(model, data)[0]
    assert model.view_weights.tolist() == [0.25, 1.0] and bool(model.searched)
    assert data.accesses == ["val", "val", "test", "test"], "one pass over validation, then the test clouds"
    assert results["test/top1"] == 0.0 and results["test/view_weight_0"] == 0.25


# --- prompt files ---------------------------------------------------------------------------------------------
def test_prompt_file_sentences_are_averaged_per_class_and_bad_files_are_named(clip_file, tmp_path):
    prompts = {"sphere": ["a round ball.", "a globe."], "cube": ["a box."], "flower pot": ["a pot with a plant."]}
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(prompts))
    model = PointCLIP(clip_file, prompts_file=str(path), quick_gelu=False).eval()
    model.set_classes(CLASSES)  # "flower_pot" finds "flower pot"
    for column, name in enumerate(["sphere", "cube", "flower pot"]):
        expected = F.normalize(encode_sentences(model.model, prompts[name]).mean(dim=0), dim=0)
        torch.testing.assert_close(model.text_classifier[:, column], expected)
    with pytest.raises(ValueError, match=r"prompts.json has no prompts for class 'cone' \(its classes: 'sphere'"):
        model.set_classes(["sphere", "cone"])
    for content, message in [("{not json", "not valid JSON"), ("[]", "non-empty JSON object"),
                             ('{"cube": []}', "prompts of 'cube' must be a non-empty list")]:  # fmt: skip
        path.write_text(content)
        with pytest.raises(ValueError, match=message):
            read_class_prompts(path)
    with pytest.raises(FileNotFoundError, match="no prompt file"):
        read_class_prompts(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="search_prompts"):
        PointCLIP(clip_file, search_prompts=True, quick_gelu=False)


def test_prompt_search_keeps_a_sentence_only_when_it_helps():
    features = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    classifier = torch.eye(2)  # cloud 1 scores (0.9, 0.1): class 0, wrong; 2 of 3 right
    # Class 1's sentences (0.8, 0.6) and (0.6, 0.8) give cloud 1 0.78 and 0.62, still below 0.9: no gain.
    sentences = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0], [0.8, 0.6], [0.6, 0.8]])]
    assert best_class_prompts(features, labels, classifier, sentences) == ([None, None], pytest.approx(2 / 3))
    # (0.95, 1.0) gives cloud 1 0.955 > 0.9 while cloud 0 keeps class 0 (0.95 < 1): all right.
    sentences[1] = torch.tensor([[0.0, 1.0], [0.95, 1.0]])
    assert best_class_prompts(features, labels, classifier, sentences) == ([None, 1], 1.0)


# --- the method through Lightning ------------------------------------------------------------------------------
def test_defaults_follow_the_official_settings(clip_file):
    zero_shot = PointCLIP(clip_file, quick_gelu=False)
    assert (zero_shot.num_views, zero_shot.resolution, zero_shot.distance, zero_shot.trains) == (6, 128, 1.6, False)
    few_shot = PointCLIP(clip_file, adapter=True, quick_gelu=False)
    assert (few_shot.num_views, few_shot.resolution, few_shot.distance, few_shot.trains) == (10, 224, 1.4, True)
    v2 = PointCLIP(clip_file, projection="v2", quick_gelu=False)
    assert (v2.num_views, v2.resolution, v2.invert) == (10, 112, True)
    with pytest.raises(ValueError, match="view_weights has 2 values for 6 views"):
        PointCLIP(clip_file, view_weights=[1.0, 1.0], quick_gelu=False)
    with pytest.raises(ValueError, match="unknown view set 'v3'"):
        PointCLIP(clip_file, views="v3", quick_gelu=False)
    with pytest.raises(ValueError, match="distance is V1's"):
        PointCLIP(clip_file, projection="v2", distance=2.0, quick_gelu=False)


def test_views_as_drawn_and_as_the_clip_takes_them(clip_file):
    points = torch.stack([solid_cloud(1, 64, torch.Generator().manual_seed(0))])
    model = PointCLIP(clip_file, quick_gelu=False)
    drawn = model.projected_views(points)
    assert drawn.shape == (1, 6, 128, 128) and 0 <= drawn.min() and drawn.max() <= 1
    torch.testing.assert_close(drawn * 2.6, project_v1(points))
    official = PointCLIP(clip_file, resolution=32, quick_gelu=False).batch_input({"points": points})
    assert official.shape == (1, 6, 3, 32, 32) and official.max() > 1.5, "official: the depths themselves"
    normalized = PointCLIP(clip_file, projection="v2", normalize_views=True, quick_gelu=False)
    images = normalized.batch_input({"points": points})
    resized = views_to_clip_input(project_v2(points), 32)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 1, 3, 1, 1)
    torch.testing.assert_close(images, (resized - mean) / std)


def test_few_shot_adapter_fits_saves_alone_and_tests(clip_file, trainer, tmp_path):
    model = PointCLIP(clip_file, adapter=True, resolution=32, search_view_weights=True, quick_gelu=False)
    start = {name: value.clone() for name, value in model.adapter.state_dict().items()}
    data = TinyClouds()
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer(max_epochs=2, default_root_dir=tmp_path, callbacks=[checkpoints]).fit(model, data)
    assert not bool(model.searched), "no search during fit: the adapter changes every epoch"
    assert not torch.equal(model.adapter.fusion_weights, start["fusion_weights"]), "the view weights learn"
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"]
    assert {name.split(".")[0] for name in saved} == {"adapter", "view_weights", "searched"}, "no CLIP saved"
    results = trainer().test(model, data)[0]
    assert bool(model.searched) and 0 <= results["test/top1"] <= 1
    reloaded = PointCLIP.load_from_checkpoint(tmp_path / "last.ckpt")
    assert trainer().test(reloaded, data)[0]["test/top1"] == results["test/top1"]
    with pytest.raises(ValueError, match="nothing to train"):
        trainer(max_epochs=1).fit(PointCLIP(clip_file, quick_gelu=False), data)


def test_predict_on_point_batches(clip_file, trainer):
    predictions = trainer().predict(PointCLIP(clip_file, projection="v2", quick_gelu=False), TinyClouds())
    assert predictions[0]["probabilities"].shape == (3, 3)
    assert set(predictions[0]["predicted_class"]) <= set(CLASSES)
