"""Tower geometry and parameter names: ours against open_clip's for every named architecture.

The big towers are built on the meta device (shapes only, no memory), so the
real geometry of ViT-L-14 is checked in milliseconds.
"""
import open_clip
import pytest
import torch

import lit_clip
from lit_clip.models.clip import ARCHITECTURES, get_config

REFERENCE_ARCHITECTURES = ["RN50", "RN101", "ViT-B-32", "ViT-B-16", "ViT-L-14"]


@pytest.mark.parametrize("name", REFERENCE_ARCHITECTURES + [n + "-quickgelu" for n in REFERENCE_ARCHITECTURES])
def test_state_dict_matches_open_clip(name):
    with torch.device("meta"):
        ours = lit_clip.create_model(name).state_dict()
        theirs = open_clip.model.CLIP(**open_clip.get_model_config(name)).state_dict()
    # OpenAI's text attention mask is a buffer in open_clip; we use SDPA's causal flag instead.
    theirs = {k: v for k, v in theirs.items() if k != "attn_mask"}
    assert sorted(ours) == sorted(theirs)
    mismatched = {k: (tuple(ours[k].shape), tuple(theirs[k].shape)) for k in ours if ours[k].shape != theirs[k].shape}
    assert not mismatched


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_tower_output_shapes(name):
    config = get_config(name)
    small = name in ("ViT-Tiny-8", "RN-Tiny", "ViT-Micro-8")
    with torch.device("cpu" if small else "meta"):
        model = lit_clip.create_model(name)
        images = torch.randn(2, 3, config.vision.image_size, config.vision.image_size)
        tokens = lit_clip.tokenize(["a photo of a cat", "a dog"], context_length=config.text.context_length)
        tokens = tokens.to(images.device)
        assert model.encode_image(images).shape == (2, config.embed_dim)
        assert model.encode_text(tokens).shape == (2, config.embed_dim)
        dense = model.visual.forward_dense(images)
        assert dense.shape[:2] == (2, config.embed_dim)
    assert model.logit_scale.shape == ()


def test_quickgelu_variant_changes_the_activation_only():
    plain, quick = lit_clip.create_model("ViT-Micro-8"), lit_clip.create_model("ViT-Micro-8-quickgelu")
    quick.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(plain.encode_image(images), quick.encode_image(images))
    assert type(quick.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(ValueError) as error:
        lit_clip.create_model("ViT-B-33")
    message = str(error.value)
    assert "ViT-B-33" in message
    for known in ("RN50", "ViT-B-32", "ViT-L-14-quickgelu", "ViT-Tiny-8"):
        assert known in message


def test_text_tower_from_token_embeddings_equals_from_ids():
    model = lit_clip.create_model("ViT-Micro-8").eval()
    tokens = lit_clip.tokenize(["a red circle", "two blue stars and a green ring"], context_length=16)
    from_ids = model.encode_text(tokens)
    from_embeddings = model.encode_text_embeddings(model.token_embedding(tokens), tokens.argmax(-1))
    torch.testing.assert_close(from_ids, from_embeddings)


def test_padding_after_eot_does_not_change_the_text_embedding():
    model = lit_clip.create_model("ViT-Micro-8").eval()
    tokens = lit_clip.tokenize(["a red circle"], context_length=16)
    noisy = tokens.clone()
    noisy[0, tokens.argmax(-1) + 1 :] = 1234
    noisy[0, tokens.argmax(-1)] = 49407
    torch.testing.assert_close(model.encode_text(tokens), model.encode_text(noisy))


def test_text_longer_than_context_is_a_clear_error():
    model = lit_clip.create_model("ViT-Micro-8")
    with pytest.raises(ValueError, match="context length 16"):
        model.encode_text(lit_clip.tokenize(["a cat"], context_length=77))


def test_attention_matches_torch_multihead_attention():
    """Our SDPA attention with OpenAI's parameter names computes what nn.MultiheadAttention does."""
    from lit_clip.models.transformer import Attention

    ours = Attention(64, 4)
    reference = torch.nn.MultiheadAttention(64, 4, batch_first=True)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(3, 10, 64)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(10)
    torch.testing.assert_close(ours(x), reference(x, x, x, need_weights=False)[0])
    torch.testing.assert_close(ours(x, causal=True), reference(x, x, x, attn_mask=mask, need_weights=False)[0])


def test_deep_prompts_replace_tokens_per_layer():
    """Prompts of layer i >= 1 only matter from block i on; vision prompts change the pooled output."""
    model = lit_clip.create_model("ViT-Micro-8").eval()
    images = torch.randn(2, 3, 32, 32)
    width = model.visual.transformer.width
    prompts = [torch.randn(3, width), torch.randn(3, width)]
    base = model.encode_image(images, prompts)
    changed = [prompts[0], torch.randn(3, width)]
    assert not torch.allclose(base, model.encode_image(images, changed))
    assert model.visual.forward_tokens(images, prompts).shape == model.visual.forward_tokens(images).shape


def test_resnet_rejects_vision_prompts():
    model = lit_clip.create_model("RN-Tiny")
    with pytest.raises(ValueError, match="ViT"):
        model.encode_image(torch.randn(1, 3, 64, 64), [torch.randn(2, 16)])


def test_forward_returns_normalised_features_and_scale():
    model = lit_clip.create_model("ViT-Micro-8")
    image_features, text_features, scale = model(torch.randn(2, 3, 32, 32), lit_clip.tokenize(["a", "b"], 16))
    torch.testing.assert_close(image_features.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(text_features.norm(dim=-1), torch.ones(2))
    assert scale.item() == pytest.approx(1 / 0.07, rel=1e-5)


@pytest.mark.parametrize("name", ["ViT-Micro-8", "RN-Tiny", "ViT-Micro-8-quickgelu"])
def test_outputs_match_open_clip_with_the_same_weights(name, open_clip_twin):
    """Same geometry built by open_clip, its random weights loaded into ours: same embeddings."""
    ours, theirs = open_clip_twin(name)
    vision, text = get_config(name).vision, get_config(name).text
    images = torch.randn(3, 3, vision.image_size, vision.image_size)
    tokens = lit_clip.tokenize(["a red circle", "two blue stars", ""], context_length=text.context_length)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_image(images), theirs.encode_image(images), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours.encode_text(tokens), theirs.encode_text(tokens), rtol=1e-4, atol=1e-5)


def test_initialisation_follows_openai_formulas():
    """OpenAI's initialize_parameters: text tower stds shrink with width and depth; ViT tokens scaled by width^-0.5."""
    torch.manual_seed(0)
    model = lit_clip.create_model("ViT-B-32")
    width, layers = model.transformer.width, model.transformer.layers
    proj_std = width**-0.5 * (2 * layers) ** -0.5
    expected = {
        "token_embedding.weight": 0.02,
        "positional_embedding": 0.01,
        "text_projection": width**-0.5,
        "transformer.resblocks.0.attn.in_proj_weight": width**-0.5,
        "transformer.resblocks.0.attn.out_proj.weight": proj_std,
        "transformer.resblocks.0.mlp.c_fc.weight": (2 * width) ** -0.5,
        "transformer.resblocks.0.mlp.c_proj.weight": proj_std,
        "visual.class_embedding": model.visual.class_embedding.numel() ** -0.5,
        "visual.positional_embedding": model.visual.class_embedding.numel() ** -0.5,
        "visual.proj": model.visual.class_embedding.numel() ** -0.5,
    }
    parameters = dict(model.named_parameters())
    for name, std in expected.items():
        assert parameters[name].std().item() == pytest.approx(std, rel=0.1), name
    resnet = lit_clip.create_model("RN50")
    pool = resnet.visual.attnpool
    for projection in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
        assert projection.weight.std().item() == pytest.approx(pool.c_proj.in_features**-0.5, rel=0.1)
    # Each residual branch starts as the identity: the last BatchNorm of every bottleneck (not the stem's bn3) is 0.
    branch_gains = [p for n, p in resnet.visual.named_parameters() if n.startswith("layer") and n.endswith("bn3.weight")]
    assert len(branch_gains) == 16 and all(not p.any() for p in branch_gains)
    assert resnet.visual.bn3.weight.all()


@pytest.mark.parametrize("unlocked", [0, 1, 2, 3])
def test_lit_locks_freeze_what_open_clips_locks_freeze(unlocked):
    """lock_image_tower / lock_text_tower leave trainable exactly the parameters open_clip's leave trainable."""
    reference = open_clip.model.CLIP(64, dict(image_size=32, layers=3, width=64, patch_size=8),
                                     dict(context_length=16, width=64, heads=1, layers=3))  # fmt: skip
    config = lit_clip.models.clip.CLIPConfig(
        embed_dim=64,
        vision=lit_clip.models.clip.VisionConfig(image_size=32, layers=3, width=64, patch_size=8),
        text=lit_clip.models.clip.TextConfig(context_length=16, width=64, heads=1, layers=3),
    )
    ours = lit_clip.CLIP(config)
    assert {n for n, _ in ours.named_parameters()} == {n for n, _ in reference.named_parameters()}
    reference.lock_image_tower(unlocked_groups=unlocked)
    reference.lock_text_tower(unlocked_layers=unlocked)
    ours.lock_image_tower(unlocked)
    ours.lock_text_tower(unlocked)
    trainable = lambda model: {n for n, p in model.named_parameters() if p.requires_grad}  # noqa: E731
    assert trainable(ours) == trainable(reference)
    assert "logit_scale" in trainable(ours)


def test_a_resnet_tower_locks_whole():
    model = lit_clip.create_model("RN-Tiny")
    model.lock_image_tower()
    assert not any(p.requires_grad for p in model.visual.parameters())
    with pytest.raises(ValueError, match="locks whole"):
        model.lock_image_tower(1)
