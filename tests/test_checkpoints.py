"""load_clip against the reference implementations, on random weights saved in each format; offline.

Every model is compared on its outputs, not only its tensors: open_clip's and
transformers' own models are the references. Initialisation leaves some
tensors constant (norm gains, biases, ResNet's zero-initialised last BN gain),
which would let a tensor loaded into the wrong place go unnoticed, so all of
them are randomised first.
"""
import dataclasses
import fnmatch
import json
import shutil
import warnings

import huggingface_hub
import lightning as L
import open_clip
import pytest
import torch
import torch.nn.functional as F
import transformers
from lightning.pytorch.callbacks import ModelCheckpoint
from lit_clip.datamodules import ShapesWorldCaptions
from safetensors.torch import save_file
from torch import nn

import lit_clip
from lit_clip.methods.pretraining.clip_pretraining import CLIPPretraining

CAPTIONS = ["a photo of a cat", "a diagram of a red square", "two dogs on the beach"]
# A small geometry with 64-wide heads, so that it can be read off the tensors.
SMALL_VISION = dict(image_size=32, layers=2, width=128, patch_size=8)
SMALL_TEXT = dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=2)


def randomize_(model: nn.Module) -> nn.Module:
    """Random values for what initialisation leaves constant: biases, norm gains, BN statistics."""
    generator = torch.Generator().manual_seed(0)
    noise = lambda t: torch.randn(t.shape, generator=generator)  # noqa: E731
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith("bias"):
                tensor.copy_(0.1 * noise(tensor))
            elif name.endswith("weight") and tensor.ndim == 1:  # layer and batch norm gains
                tensor.copy_(1 + 0.2 * noise(tensor))
            elif name.endswith("running_mean"):
                tensor.copy_(0.1 * noise(tensor))
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    return model


def round_to_fp16_(model: nn.Module) -> nn.Module:
    """OpenAI's archives hold fp16 weights: a reference with the same rounded values is compared exactly."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return model


def open_clip_reference(name: str | None = None, quick_gelu: bool = False):
    """A named open_clip model, or the small geometry; randomised, on fp16-representable values."""
    if name is None:
        model = open_clip.model.CLIP(64, SMALL_VISION, SMALL_TEXT, quick_gelu=quick_gelu)
    else:
        model = open_clip.create_model(name)
    return round_to_fp16_(randomize_(model)).eval()


def inputs(image_size: int, context_length: int = 77):
    images = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    return images, lit_clip.tokenize(CAPTIONS, context_length=context_length)


@torch.no_grad()
def features(model, images, tokens):
    return model.encode_image(images), model.encode_text(tokens)


@torch.no_grad()
def hf_features(model, images, tokens):
    # transformers 5 returns output objects here; the projected embeddings are the pooler output.
    image = model.get_image_features(pixel_values=images).pooler_output
    return image, model.get_text_features(input_ids=tokens).pooler_output


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def assert_same_features(label: str, ours, reference, images, tokens, reference_features=None) -> None:
    """Image and text features agree to 1e-4 of their scale, and rank the captions alike."""
    our_images, our_texts = features(ours, images, tokens)
    their_images, their_texts = (reference_features or features)(reference, images, tokens)
    differences = relative_difference(our_images, their_images), relative_difference(our_texts, their_texts)
    print(f"{label}: max relative difference image {differences[0]:.1e}, text {differences[1]:.1e}")
    assert max(differences) < 1e-4
    logits = lambda i, t: F.normalize(i, dim=-1) @ F.normalize(t, dim=-1).T  # noqa: E731
    assert torch.equal(logits(our_images, our_texts).argmax(1), logits(their_images, their_texts).argmax(1))


def open_clip_state_dict(model) -> dict:
    # open_clip's causal text mask is a non-persistent buffer: never in a state dict.
    return dict(model.state_dict())


def assert_same_state(ours: dict, theirs: dict) -> None:
    assert sorted(ours) == sorted(theirs)
    assert all(torch.equal(ours[k], theirs[k].to(ours[k].dtype)) for k in ours)


def save_torchscript_archive(state_dict: dict, path, image_size: int) -> None:
    """An archive like OpenAI's: fp16 tensors under OpenAI's names, plus its three extra entries."""
    root = nn.Module()
    for key, tensor in state_dict.items():
        *modules, leaf = key.split(".")
        owner = root
        for name in modules:
            if not hasattr(owner, name):
                owner.add_module(name, nn.Module())
            owner = getattr(owner, name)
        owner.register_buffer(leaf, tensor.half() if tensor.is_floating_point() else tensor)
    for key, value in dict(input_resolution=image_size, context_length=77, vocab_size=49408).items():
        root.register_buffer(key, torch.tensor(value))
    with warnings.catch_warnings():  # torch.jit is deprecated; OpenAI's files are TorchScript all the same
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(root), path)


@pytest.fixture(scope="module")
def vit_b_32():
    return open_clip_reference("ViT-B-32")


@pytest.fixture(scope="module")
def rn50_quickgelu():
    """OpenAI's RN50 geometry and activation."""
    return open_clip_reference("RN50-quickgelu")


# --- open_clip ---------------------------------------------------------------------------------------
def test_open_clip_state_dict_loads_with_exact_gelu(vit_b_32, tmp_path):
    torch.save(open_clip_state_dict(vit_b_32), tmp_path / "vit.pt")
    ours = lit_clip.load_clip(tmp_path / "vit.pt")
    assert ours.config == lit_clip.models.clip.get_config("ViT-B-32")
    assert not ours.training
    images, tokens = inputs(224)
    assert_same_features("open_clip ViT-B-32 state dict", ours, vit_b_32, images, tokens)


def test_open_clip_training_checkpoint_drops_ddp_prefix(vit_b_32, tmp_path):
    state = {"module." + k: v for k, v in open_clip_state_dict(vit_b_32).items()}
    torch.save({"epoch": 3, "name": "run", "state_dict": state}, tmp_path / "epoch_3.pt")
    ours = lit_clip.load_clip(tmp_path / "epoch_3.pt")
    assert_same_state(ours.state_dict(), open_clip_state_dict(vit_b_32))


def test_open_clip_quickgelu_weights_need_to_be_named(tmp_path):
    reference = open_clip_reference(quick_gelu=True)
    torch.save(open_clip_state_dict(reference), tmp_path / "small.pt")
    images, tokens = inputs(32)
    assert not lit_clip.load_clip(tmp_path / "small.pt").config.quick_gelu  # the file does not say
    ours = lit_clip.load_clip(tmp_path / "small.pt", quick_gelu=True)
    assert ours.config.quick_gelu
    assert_same_features("open_clip quickgelu, quick_gelu=True", ours, reference, images, tokens)


def test_open_clip_safetensors_file(tmp_path):
    reference = open_clip_reference()
    save_file(open_clip_state_dict(reference), tmp_path / "open_clip_model.safetensors")
    ours = lit_clip.load_clip(tmp_path / "open_clip_model.safetensors")
    assert_same_state(ours.state_dict(), open_clip_state_dict(reference))


# --- OpenAI ------------------------------------------------------------------------------------------
def test_openai_torchscript_archive_resnet(rn50_quickgelu, tmp_path):
    save_torchscript_archive(open_clip_state_dict(rn50_quickgelu), tmp_path / "RN50.pt", 224)
    ours = lit_clip.load_clip(tmp_path / "RN50.pt")
    assert ours.config == lit_clip.models.clip.get_config("RN50-quickgelu")
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in ours.parameters())
    assert all(b.device.type == "cpu" for b in ours.buffers())
    images, tokens = inputs(224)
    assert_same_features("OpenAI-style RN50 archive", ours, rn50_quickgelu, images, tokens)


def test_openai_torchscript_archive_vit(tmp_path):
    reference = open_clip_reference(quick_gelu=True)
    save_torchscript_archive(open_clip_state_dict(reference), tmp_path / "ViT.pt", 32)
    ours = lit_clip.load_clip(tmp_path / "ViT.pt")
    assert ours.config.quick_gelu
    images, tokens = inputs(32)
    assert_same_features("OpenAI-style ViT archive", ours, reference, images, tokens)


def test_openai_plain_state_dict_selects_quickgelu(tmp_path):
    reference = open_clip_reference(quick_gelu=True)
    extras = {k: torch.tensor(v) for k, v in dict(input_resolution=32, context_length=77, vocab_size=49408).items()}
    torch.save({**open_clip_state_dict(reference), **extras}, tmp_path / "ViT.pt")
    ours = lit_clip.load_clip(tmp_path / "ViT.pt")
    assert ours.config.quick_gelu
    images, tokens = inputs(32)
    assert_same_features("OpenAI-style state dict", ours, reference, images, tokens)
    assert not lit_clip.load_clip(tmp_path / "ViT.pt", quick_gelu=False).config.quick_gelu


# --- Hugging Face ------------------------------------------------------------------------------------
def tiny_hf_clip(hidden_act: str) -> transformers.CLIPModel:
    common = dict(
        hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, projection_dim=32,
        hidden_act=hidden_act,
    )  # fmt: skip
    # eos_token_id 49407: HF pools at the first EOS, as we pool at the highest id (EOS in CLIP's vocabulary).
    text = dict(common, vocab_size=49408, max_position_embeddings=77, eos_token_id=49407)
    vision = dict(common, image_size=32, patch_size=8)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)
    return randomize_(transformers.CLIPModel(config)).eval()


@pytest.mark.parametrize(
    "hidden_act, weights", [("quick_gelu", "safetensors"), ("quick_gelu", "shards"), ("gelu", "bin")]
)
def test_hugging_face_directory(hidden_act, weights, tmp_path):
    reference = tiny_hf_clip(hidden_act)
    reference.save_pretrained(tmp_path, max_shard_size="10MB" if weights == "shards" else "50GB")
    if weights == "bin":  # as older repositories hold them, with the position_ids buffers
        state = reference.state_dict()
        state["text_model.embeddings.position_ids"] = torch.arange(77)[None]
        torch.save(state, tmp_path / "pytorch_model.bin")
        (tmp_path / "model.safetensors").unlink()
    assert (tmp_path / "model.safetensors.index.json").exists() == (weights == "shards")
    ours = lit_clip.load_clip(tmp_path)
    assert ours.config.quick_gelu == (hidden_act == "quick_gelu")
    assert ours.config.vision.head_width == 32 and ours.config.text.heads == 2
    images, tokens = inputs(32)
    assert_same_features(f"HF {hidden_act} {weights}", ours, reference, images, tokens, hf_features)


def test_hugging_face_hub_id_fetches_one_weight_format(tmp_path, monkeypatch):
    repository = tmp_path / "repository"
    tiny_hf_clip("quick_gelu").save_pretrained(repository)
    shutil.copy(repository / "model.safetensors", repository / "pytorch_model.bin")  # content is not read
    patterns = []

    def snapshot_download(repo_id, allow_patterns):
        patterns.append(allow_patterns)
        snapshot = tmp_path / "snapshot"
        snapshot.mkdir(exist_ok=True)
        for file in repository.iterdir():
            if any(fnmatch.fnmatch(file.name, pattern) for pattern in allow_patterns):
                shutil.copy(file, snapshot)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    ours = lit_clip.load_clip("someone/tiny-clip")
    assert len(patterns) == 1 and not (tmp_path / "snapshot/pytorch_model.bin").exists()
    assert ours.config.text.width == 64


def test_hugging_face_hub_offline_says_how_to_load_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # no cached copy
    with pytest.raises(ConnectionError) as error:
        lit_clip.load_clip("openai/clip-vit-base-patch32")
    message = str(error.value)
    assert "could not reach the Hugging Face Hub" in message
    assert "download openai/clip-vit-base-patch32 --local-dir DIR" in message and "load_clip(DIR)" in message


@pytest.mark.parametrize("architecture", ["ViT-Micro-8", "ViT-Micro-8-quickgelu"])
def test_hugging_face_export_round_trip(architecture, tmp_path):
    model = randomize_(lit_clip.create_model(architecture, init_logit_bias=-10.0)).eval()
    lit_clip.save_huggingface(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["text_config"]["hidden_act"] == (
        "quick_gelu" if architecture.endswith("-quickgelu") else "gelu"
    )
    loaded = lit_clip.load_clip(tmp_path)
    assert loaded.config == model.config
    assert_same_state(loaded.state_dict(), model.state_dict())

    reference = transformers.CLIPModel.from_pretrained(tmp_path).eval()
    images, tokens = inputs(32, context_length=16)
    assert_same_features(f"HF export {architecture}", model, reference, images, tokens, hf_features)


def test_hugging_face_export_refuses_resnet(tmp_path):
    with pytest.raises(ValueError, match="ModifiedResNet"):
        lit_clip.save_huggingface(lit_clip.create_model("RN-Tiny"), tmp_path)


# --- open_clip export --------------------------------------------------------------------------------
@pytest.mark.parametrize("architecture", ["ViT-Micro-8-quickgelu", "RN-Tiny"])
def test_open_clip_export_loads_strictly(architecture, tmp_path):
    model = randomize_(lit_clip.create_model(architecture, init_logit_bias=-10.0)).eval()
    lit_clip.save_open_clip(model, tmp_path / "model.pt")
    config = model.config
    vision, text = dataclasses.asdict(config.vision), dataclasses.asdict(config.text)
    reference = open_clip.model.CLIP(config.embed_dim, vision, text, quick_gelu=config.quick_gelu, init_logit_bias=0.0)
    reference.eval()
    reference.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True), strict=True)
    size, context = config.vision.image_size, config.text.context_length
    images, tokens = inputs(size, context)
    assert_same_features(f"open_clip export {architecture}", model, reference, images, tokens)


# --- lit-clip ----------------------------------------------------------------------------------------
def test_lit_clip_lightning_checkpoint(tmp_path):
    module = CLIPPretraining(architecture="ViT-Micro-8-quickgelu", loss="siglip", warmup_steps=1)
    data = ShapesWorldCaptions(
        image_size=32, batch_size=4, train_samples=8, val_samples=8, context_length=16, zeroshot_samples_per_class=1
    )
    trainer = L.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, data)
    ours = lit_clip.load_clip(tmp_path / "last.ckpt")
    assert ours.config == lit_clip.models.clip.get_config("ViT-Micro-8-quickgelu")
    assert ours.logit_bias is not None
    assert_same_state(ours.state_dict(), module.model.state_dict())


# --- what does not load ------------------------------------------------------------------------------
def test_architecture_override_for_heads_the_shapes_do_not_show(tmp_path):
    model = randomize_(lit_clip.create_model("ViT-Micro-8"))
    lit_clip.save_open_clip(model, tmp_path / "micro.pt")
    with pytest.raises(ValueError, match=r"attention heads .* pass architecture="):
        lit_clip.load_clip(tmp_path / "micro.pt")  # text width 32: heads are not 64 wide
    loaded = lit_clip.load_clip(tmp_path / "micro.pt", architecture="ViT-Micro-8")
    assert_same_state(loaded.state_dict(), model.state_dict())


def test_mismatched_checkpoint_names_keys_and_shapes(tmp_path):
    state = open_clip_state_dict(open_clip_reference())
    torch.save(state, tmp_path / "small.pt")
    with pytest.raises(ValueError) as error:
        lit_clip.load_clip(tmp_path / "small.pt", architecture="ViT-B-32")
    message = str(error.value)
    assert "does not fit ViT-B-32" in message and "small.pt" in message
    assert "missing: visual.transformer.resblocks.2." in message
    assert "shape mismatch (checkpoint vs model): " in message
    assert "visual.class_embedding (128,) vs (768,)" in message

    del state["visual.ln_post.bias"]
    state["visual.extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match=r"missing: visual\.ln_post\.bias; unexpected: visual\.extra\.weight$"):
        lit_clip.load_clip(tmp_path / "edited.pt")


def test_missing_file_and_files_that_are_not_checkpoints(tmp_path):
    for missing in [tmp_path / "nothing.pt", "runs/nothing.ckpt", str(tmp_path / "nothing")]:
        with pytest.raises(FileNotFoundError, match="nothing"):
            lit_clip.load_clip(missing)
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="notes.txt is not a checkpoint"):
        lit_clip.load_clip(tmp_path / "notes.txt")
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a CLIP checkpoint"):
        lit_clip.load_clip(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        lit_clip.load_clip(tmp_path)


# -- open_clip's hub layout --------------------------------------------------------------------


def write_open_clip_hub_directory(directory, model, quick_gelu: bool, weights: str) -> None:
    """What open_clip's push_to_hf_hub writes: open_clip_config.json beside the weights."""
    directory.mkdir(parents=True, exist_ok=True)
    model_cfg = {"embed_dim": 64, "vision_cfg": SMALL_VISION, "text_cfg": SMALL_TEXT, "quick_gelu": quick_gelu}
    config = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]}}
    (directory / "open_clip_config.json").write_text(json.dumps(config))
    state = {key: value.contiguous() for key, value in open_clip_state_dict(model).items()}
    if weights.endswith(".safetensors"):
        save_file(state, directory / weights)
    else:
        torch.save(state, directory / weights)


@pytest.mark.parametrize("weights", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
@pytest.mark.parametrize("quick_gelu", [True, False])
def test_open_clip_hub_directory_loads_with_the_activation_of_its_config(tmp_path, weights, quick_gelu):
    reference = open_clip_reference(quick_gelu=quick_gelu)
    write_open_clip_hub_directory(tmp_path / "hub", reference, quick_gelu, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the config records the activation: nothing to warn about
        ours = lit_clip.load_clip(tmp_path / "hub")
    assert ours.config.quick_gelu == quick_gelu
    assert_same_features("open_clip hub directory", ours, reference, *inputs(32))


def test_hf_hub_prefix_downloads_the_open_clip_layout(tmp_path, monkeypatch):
    import huggingface_hub

    reference = open_clip_reference(quick_gelu=True)
    write_open_clip_hub_directory(tmp_path / "hub", reference, True, "open_clip_model.safetensors")
    asked = []

    def snapshot_download(repo_id, allow_patterns):
        asked.append((repo_id, allow_patterns))
        return str(tmp_path / "hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    ours = lit_clip.load_clip("hf-hub:laion/some-clip")
    assert asked == [("laion/some-clip", ["open_clip_config.json", "open_clip_model.safetensors"])]
    assert ours.config.quick_gelu
    assert_same_features("hf-hub: id", ours, reference, *inputs(32))


def test_a_bare_open_clip_state_dict_warns_how_to_choose_the_activation(tmp_path):
    torch.save(open_clip_state_dict(open_clip_reference()), tmp_path / "weights.pt")
    with pytest.warns(UserWarning, match="does not record its activation; loaded with exact GELU.*quick_gelu=True"):
        lit_clip.load_clip(tmp_path / "weights.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lit_clip.load_clip(tmp_path / "weights.pt", quick_gelu=True).config.quick_gelu


def test_open_clip_hub_directory_errors_name_the_file(tmp_path):
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {}}))
    with pytest.raises(ValueError, match=r"open_clip_config\.json has no \"model_cfg\" object"):
        lit_clip.load_clip(tmp_path)
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}}))
    with pytest.raises(FileNotFoundError, match=r"has open_clip_config\.json but no weights"):
        lit_clip.load_clip(tmp_path)
