"""The timm image tower and the "timm" family: open_clip's CLIPs with a timm tower load by name and agree with it."""
import time

import lightning as L
import open_clip
import pytest
import torch
from lit_clip.datamodules import ShapesWorldCaptions

import lit_clip
from lit_clip.methods import CLIPPretraining
from lit_clip.models import TIMM_ARCHITECTURES, TextConfig, TimmArchitecture, TimmImageTower, family_of

TINY = "timm-test_resnet-Tiny"
CAPTIONS = ["a photo of a cat", "a diagram of a red square", "two dogs on the beach"]
MICRO_TEXT = TextConfig(context_length=16, width=32, heads=2, layers=2)
# Test-only geometries for the heads and pools open_clip's configs use less often, and a trunk with buffers that
# are computed when it is built (relative positions), which loading on the meta device must not leave empty.
VARIANTS = {
    "test-convnext": TimmArchitecture(32, "test_convnext", 32, MICRO_TEXT),  # open_clip's ConvNeXt CLIPs' head
    "test-vit-avg-mlp": TimmArchitecture(32, "test_vit", 32, MICRO_TEXT, pool="avg", proj="mlp"),
    "test-vit_relpos": TimmArchitecture(32, "test_vit_relpos", 160, MICRO_TEXT),  # a fixed-size ViT, timm's size
    "test-resnet-max": TimmArchitecture(32, "test_resnet", 32, MICRO_TEXT, pool="max"),
}


@pytest.fixture
def variants(monkeypatch):
    """The test-only architectures in the family's table, for this test only."""
    for name, architecture in VARIANTS.items():
        monkeypatch.setitem(TIMM_ARCHITECTURES, name, architecture)


def open_clip_model(architecture: TimmArchitecture, init_logit_bias: float | None = None) -> open_clip.model.CLIP:
    """open_clip's CLIP of the same geometry, built from a config as its model_configs/*.json spell it."""
    a = architecture
    vision_cfg = {"timm_model_name": a.model_name, "timm_pool": a.pool, "timm_proj": a.proj,
                  "timm_drop_path": a.drop_path, "image_size": a.image_size}  # fmt: skip
    text_cfg = {k: getattr(a.text, k) for k in ("context_length", "vocab_size", "width", "heads", "layers")}
    return open_clip.model.CLIP(a.embed_dim, vision_cfg, text_cfg, init_logit_bias=init_logit_bias)


def perturb_(model: torch.nn.Module) -> torch.nn.Module:
    """Noise on what initialisation leaves constant (biases, norm gains, BN statistics), so a misplaced tensor shows."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and tensor.ndim == 1:
                noise = torch.rand(tensor.shape, generator=generator)
                if name.endswith("running_var"):
                    tensor.mul_(0.5 + noise)
                else:
                    tensor.add_(0.2 * noise - 0.1)
    return model


def assert_same_outputs(ours: lit_clip.CLIP, theirs: open_clip.model.CLIP, image_size: int) -> dict[str, float]:
    """Image and text embeddings equal open_clip's; returns the largest differences."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, image_size, image_size)
    tokens = lit_clip.tokenize(CAPTIONS, context_length=ours.context_length)
    with torch.no_grad():
        pairs = {
            "image": (ours.encode_image(images), theirs.encode_image(images)),
            "text": (ours.encode_text(tokens), theirs.encode_text(tokens)),
        }
    for mine, reference in pairs.values():
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)
    return {name: (mine - reference).abs().max().item() for name, (mine, reference) in pairs.items()}


@pytest.mark.parametrize("name,bias", [(TINY, None), *((name, None) for name in VARIANTS), ("test-resnet-max", -10.0)])
def test_open_clip_state_dicts_load_and_agree(name, bias, variants, tmp_path):
    theirs = perturb_(open_clip_model(TIMM_ARCHITECTURES[name], bias)).eval()
    torch.save(theirs.state_dict(), tmp_path / "open_clip.pt")
    ours = lit_clip.load_clip(tmp_path / "open_clip.pt", architecture=name)
    assert isinstance(ours.visual, TimmImageTower) and (ours.logit_bias is None) == (bias is None)
    differences = assert_same_outputs(ours, theirs, TIMM_ARCHITECTURES[name].image_size)
    print(f"{name}: max abs difference {differences}")
    lit_clip.save_open_clip(ours, tmp_path / "exported.pt")  # and back: open_clip loads ours strictly
    theirs.load_state_dict(torch.load(tmp_path / "exported.pt"))


def test_an_open_clip_config_loads_by_its_name(tmp_path):
    """open_clip's own smallest timm config, built by open_clip from its JSON (random weights, ~90M parameters)."""
    start = time.perf_counter()
    theirs = perturb_(open_clip.create_model("convnext_tiny", pretrained=None)).eval()
    torch.save(theirs.state_dict(), tmp_path / "convnext_tiny.pt")
    ours = lit_clip.load_clip(tmp_path / "convnext_tiny.pt", architecture="convnext_tiny")
    differences = assert_same_outputs(ours, theirs, 224)
    print(f"convnext_tiny: max abs difference {differences}, {time.perf_counter() - start:.1f} s")


@pytest.mark.parametrize("name", sorted(name for name in TIMM_ARCHITECTURES if not name.startswith(("timm-", "SLIP-"))))
def test_the_table_is_open_clips_configs(name):
    config = open_clip.get_model_config(name)
    vision, architecture = config["vision_cfg"], TIMM_ARCHITECTURES[name]
    assert family_of(name).name == "timm"
    assert architecture == TimmArchitecture(
        config["embed_dim"], vision["timm_model_name"], vision["image_size"], TextConfig(**config["text_cfg"]),
        vision["timm_pool"], vision["timm_proj"], vision.get("timm_drop_path"),
    )  # fmt: skip
    # What the table does not transcribe has open_clip's defaults.
    assert not vision.get("timm_proj_bias") and not vision.get("timm_drop") and not vision.get("timm_model_pretrained")
    assert not config.get("quick_gelu") and not config.get("custom_text") and "init_logit_bias" not in config


@pytest.mark.parametrize("model_name", ["test_convnext", "test_vit", "test_resnet"])
def test_forward_intermediates_as_timm_describes_them(model_name):
    tower = TimmImageTower(model_name, 16).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled, features = tower.forward_intermediates(images)
        torch.testing.assert_close(pooled, tower(images))
        assert len(features) == len(tower.feature_info) > 1
        for feature, info in zip(features, tower.feature_info):
            size = 64 // info["reduction"]
            assert feature.shape == (2, info["num_chs"], size, size)
            assert info["module"].startswith("trunk.") and tower.get_submodule(info["module"]) is not None
        last_two = tower.forward_intermediates(images, indices=2, output_fmt="NLC", intermediates_only=True)
        assert [f.shape for f in last_two] == [(2, f.shape[2] * f.shape[3], f.shape[1]) for f in features[-2:]]
        torch.testing.assert_close(last_two[1], features[-1].flatten(2).transpose(1, 2))
        _, chosen = tower.forward_intermediates(images, indices=[-1, 0])
        assert [f.shape for f in chosen] == [features[0].shape, features[-1].shape]

        # intermediates_only stops after the last chosen feature.
        last = tower.get_submodule(tower.feature_info[-1]["module"])
        calls = []
        handle = last.register_forward_hook(lambda *args: calls.append(1))
        tower.forward_intermediates(images, indices=[0], intermediates_only=True)
        handle.remove()
        assert not calls

    with pytest.raises(ValueError, match="feature indices must be"):
        tower.forward_intermediates(images, indices=[len(features)])
    with pytest.raises(ValueError, match="output_fmt"):
        tower.forward_intermediates(images, output_fmt="NHWC")


def test_lock_and_grad_checkpointing_reach_the_trunk():
    model = lit_clip.create_model(TINY)
    model.lock_image_tower()
    assert not any(p.requires_grad for p in model.visual.trunk.parameters())
    assert all(p.requires_grad for p in model.visual.head.parameters())  # as open_clip's TimmModel.lock
    model.lock_image_tower(unlocked_groups=1)  # the last group of a timm ResNet's: layer4
    trainable = {name.split(".")[0] for name, p in model.visual.trunk.named_parameters() if p.requires_grad}
    assert trainable == {"layer4"}

    model.set_grad_checkpointing(True)
    assert model.visual.trunk.grad_checkpointing
    model.train().encode_image(torch.randn(2, 3, 64, 64)).sum().backward()
    assert model.visual.head.proj.weight.grad is not None


def test_what_a_timm_tower_cannot_do_says_so(tmp_path):
    model = lit_clip.create_model(TINY)
    images = torch.randn(2, 3, 64, 64)
    with pytest.raises(ValueError, match=r"vision prompts need lit-clip's ViT .*TimmImageTower \(test_resnet\)"):
        model.encode_image(images, prompts=[torch.zeros(2, 8)])
    with pytest.raises(NotImplementedError, match=r"TimmImageTower \(test_resnet\).*forward_intermediates"):
        model.encode_dense_image(images)
    with pytest.raises(ValueError, match="patch dropout needs a ViT image tower; this model has a TimmImageTower"):
        model.set_patch_dropout(0.5)
    with pytest.raises(ValueError, match="expected a batch"):
        model.encode_image(images[0])
    with pytest.raises(ValueError, match="unknown projection head 'attn'"):
        TimmImageTower("test_convnext", 16, proj="attn")
    with pytest.raises(ValueError, match=r"'test_vit_relpos' is built for 160 x 160 images only.*img_size=32"):
        TimmImageTower("test_vit_relpos", 16, image_size=32)
    assert TimmImageTower("test_vit_relpos", 16, image_size=32, img_size=32)(images[:, :, :32, :32]).shape == (2, 16)

    torch.save(open_clip_model(TIMM_ARCHITECTURES[TINY]).state_dict(), tmp_path / "open_clip.pt")
    with pytest.raises(ValueError, match=r"timm image tower .*pass architecture=.*convnext_base_w, .*timm-test_resnet"):
        lit_clip.load_clip(tmp_path / "open_clip.pt")
    with pytest.raises(ValueError, match="has exact GELU in its text tower; quick_gelu=True cannot change it"):
        lit_clip.load_clip(tmp_path / "open_clip.pt", architecture=TINY, quick_gelu=True)


def test_pretraining_a_timm_clip_and_loading_it_back(tmp_path):
    data = ShapesWorldCaptions(image_size=64, batch_size=4, train_samples=8, val_samples=4, context_length=32,
                               zeroshot_samples_per_class=1)  # fmt: skip
    module = CLIPPretraining(architecture=TINY, warmup_steps=1)
    before = module.model.visual.head.proj.weight.detach().clone()
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoints])  # fmt: skip
    trainer.fit(module, data)
    loaded = lit_clip.load_clip(tmp_path / "last.ckpt")
    assert isinstance(loaded.visual, TimmImageTower) and not loaded.training
    assert not torch.equal(loaded.visual.head.proj.weight, before)  # trained, and what was trained came back
    for key, value in module.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.cpu())

    # Fine-tuning from that checkpoint: the run records the family's architecture, so it loads back too.
    tuned = CLIPPretraining(pretrained=str(tmp_path / "last.ckpt"), warmup_steps=1)
    assert tuned.model.architecture == TINY
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, default_root_dir=tmp_path / "tuned", logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "tuned", save_last=True)])  # fmt: skip
    trainer.fit(tuned, data)
    reloaded = lit_clip.load_clip(tmp_path / "tuned" / "last.ckpt")
    for key, value in tuned.model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value.cpu())


def test_the_adamw_defaults_and_the_export_follow_the_tower():
    from lit_clip.optim import adamw_betas_and_eps

    assert adamw_betas_and_eps(lit_clip.create_model(TINY).visual) == ((0.9, 0.999), 1e-8)  # open_clip: not a ViT
    assert adamw_betas_and_eps(TimmImageTower("test_vit", 16, image_size=160)) == ((0.9, 0.98), 1e-6)
    with pytest.raises(ValueError, match="only ViT image towers and this model has a TimmImageTower"):
        lit_clip.save_huggingface(lit_clip.create_model(TINY), "unused")
