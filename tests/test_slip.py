"""SLIP: the three views of a training image, the SSL head and its loss term, SLIP's decay rule, clear errors.

NT-Xent's formula and its distributed guarantee are tested with the other losses (tests/test_losses.py); every SLIP
config runs in tests/test_cli.py."""
import dataclasses

import pytest
import torch
from PIL import Image

from lit_clip.datamodules import CsvPairs, ShapesWorldCaptions
from lit_clip.datamodules.export import export_csv_pairs
from lit_clip.datamodules.pairs import _with_captions
from lit_clip.methods import SLIPPretraining
from lit_clip.methods.pretraining.slip import MIN_SSL_BATCH
from lit_clip.models import TextConfig
from lit_clip.transforms import clip_train_transform, to_normalized_tensor


def test_shapesworld_gives_the_scene_as_clips_view_and_two_different_ssl_views():
    data = ShapesWorldCaptions(image_size=32, train_samples=8, batch_size=4, ssl_views=True)
    sample = data.train_dataloader().dataset[3]
    scene = data.world.scene("train", 3)
    torch.testing.assert_close(sample["image"], to_normalized_tensor(scene.image))
    assert sample["ssl_view_1"].shape == sample["ssl_view_2"].shape == sample["image"].shape
    assert not torch.equal(sample["ssl_view_1"], sample["ssl_view_2"])
    assert not torch.equal(sample["ssl_view_1"], sample["image"])
    assert "ssl_view_1" not in ShapesWorldCaptions(image_size=32, train_samples=8, batch_size=4).train_dataloader().dataset[3]


def test_real_data_gives_clips_crop_of_half_the_image_or_more_as_its_view(tmp_path):
    """The CLIP view is CLIP's training transform at SLIP's scale (0.5-1), drawn first from torch's generator."""
    export_csv_pairs(tmp_path, {"train": 4})
    data = CsvPairs(train_file=str(tmp_path / "train.csv"), image_size=32, batch_size=2, ssl_views=True)
    dataset = data.train_dataloader().dataset.dataset
    torch.manual_seed(7)
    sample = dataset[1]
    path, captions = _with_captions(dataset.pairs[1])
    torch.manual_seed(7)
    torch.randint(len(captions), ())  # the caption's draw comes first
    expected = clip_train_transform(32, scale=(0.5, 1.0))(Image.open(path))
    torch.testing.assert_close(sample["image"], expected)
    assert not torch.equal(sample["ssl_view_1"], sample["ssl_view_2"])


@pytest.fixture
def method():
    torch.manual_seed(0)
    return SLIPPretraining(architecture="ViT-Micro-8", ssl_hidden_dim=32, ssl_embed_dim=16)


def batch(size=4, views=True):
    generator = torch.Generator().manual_seed(0)
    images = {"image": torch.randn(size, 3, 32, 32, generator=generator)}
    if views:
        images |= {name: torch.randn(size, 3, 32, 32, generator=generator) for name in ("ssl_view_1", "ssl_view_2")}
    return {**images, "text": torch.randint(1, 100, (size, 8), generator=generator)}


def test_the_ssl_head_reads_the_towers_pooled_feature_and_adds_its_weighted_term(method):
    head = method.ssl_head
    assert head.layer1.in_features == method.model.visual.pooled_width  # the ViT's width, before CLIP's projection
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    with pytest.warns(UserWarning, match=f"below {MIN_SSL_BATCH} its BatchNorm"):  # 4 images a view
        terms = method.loss_terms(batch())
    assert set(terms) == {"contrastive_loss", "ssl_loss"}
    method.hparams.ssl_scale = 0.5
    try:
        halved = method.loss_terms(batch())["ssl_loss"]
    finally:
        method.hparams.ssl_scale = 1.0
    torch.testing.assert_close(halved, terms["ssl_loss"] / 2)
    sum(terms.values()).backward()
    assert head.layer1.weight.grad is not None and method.model.visual.conv1.weight.grad is not None


def test_a_batch_without_ssl_views_names_the_data_option(method):
    with pytest.raises(ValueError, match="ssl_views: true"):
        method.loss_terms(batch(views=False))


def test_slips_decay_rule_decays_position_embeddings_but_no_norm_bias_or_scale(method):
    decayed, undecayed = (set(map(id, group["params"])) for group in method.build_optimizer(fused=False).param_groups)
    names = {**dict(method.model.named_parameters()), **dict(method.ssl_head.named_parameters(prefix="ssl_head"))}
    for name in ("positional_embedding", "visual.positional_embedding", "visual.proj", "ssl_head.layer1.weight"):
        assert id(names[name]) in decayed, name
    for name in ("logit_scale", "visual.class_embedding", "ln_final.weight", "ssl_head.bn1.weight", "ssl_head.layer3.bias"):
        assert id(names[name]) in undecayed, name
    assert len(decayed) + len(undecayed) == len(names)


def test_slips_released_checkpoints_map_onto_the_timm_family(tmp_path):
    """A file in SLIP's layout (``{"state_dict": {"module.visual.*" (timm's ViT), "module.image_projection", OpenAI's
    text names, "module.image_mlp.*"}, "args": Namespace}``) loads strictly as ``SLIP-ViT-S-16``; its image embedding
    is SLIP's ``visual(x) @ image_projection``. Sizes shrunk for speed: a 2-block ViT-S and a 1-layer text tower."""
    import argparse

    import timm

    from lit_clip import load_clip
    from lit_clip.models import create_model, timm_tower

    small = dataclasses.replace(timm_tower.TIMM_ARCHITECTURES["SLIP-ViT-S-16"], text=TextConfig(width=64, heads=1, layers=1),
                                timm_kwargs=(("num_heads", 12), ("depth", 2)))  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(timm_tower.TIMM_ARCHITECTURES, "SLIP-ViT-S-16", small)
        torch.manual_seed(0)
        text = {k: v for k, v in create_model("SLIP-ViT-S-16").state_dict().items() if not k.startswith("visual.")}
        vit = timm.create_model("vit_small_patch16_224", num_heads=12, depth=2, num_classes=0).eval()
        projection = torch.randn(384, 512)
        state = {**{f"visual.{k}": v for k, v in vit.state_dict().items()}, "image_projection": projection, **text,
                 "image_mlp.layer1.weight": torch.randn(8, 384)}  # fmt: skip
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "args": argparse.Namespace(lr=3e-3)},
                   tmp_path / "slip_small_25ep.pt")  # fmt: skip
        model = load_clip(tmp_path / "slip_small_25ep.pt")
    assert model.architecture == "SLIP-ViT-S-16" and model.config.quick_gelu
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), vit(images) @ projection)
