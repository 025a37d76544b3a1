"""The towers' shared vocabulary for dense methods: timm's intermediates, MaskCLIP's dense maps, per-token text.

Intermediates are checked against open_clip's ``forward_intermediates`` with its random weights loaded into
ours; the dense maps against independent computations of MaskCLIP's value path (the ordinary attention of a
one-token sequence, the pooling head with uniform attention) and against a translation-invariance property.
"""
import pytest
import torch

import lit_clip
from lit_clip.models.resnet import ModifiedResNet


def randomize_batch_norms_(model: torch.nn.Module) -> None:
    """BatchNorm statistics and affine parameters away from the identity, so that they count in a check."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)


# --- forward_intermediates and feature_info ---------------------------------------------------------------
@pytest.mark.parametrize("output_fmt", ["NCHW", "NLC"])
@pytest.mark.parametrize("indices", [None, 1, [0, -1]])
@pytest.mark.parametrize("norm", [False, True])
@torch.no_grad()
def test_vit_intermediates_match_open_clip(output_fmt, indices, norm, open_clip_twin):
    ours, theirs = open_clip_twin("ViT-Micro-8")
    images = torch.randn(2, 3, 32, 32)
    pooled, intermediates = ours.visual.forward_intermediates(images, indices, output_fmt, norm)
    reference = theirs.visual.forward_intermediates(
        images, indices=indices, output_fmt=output_fmt, normalize_intermediates=norm
    )
    assert len(intermediates) == len(reference["image_intermediates"])
    for a, b in zip(intermediates, reference["image_intermediates"]):
        assert a.shape == b.shape == ((2, 64, 4, 4) if output_fmt == "NCHW" else (2, 16, 64))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # max abs difference 4.8e-7
    torch.testing.assert_close(pooled, reference["image_features"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, ours.encode_image(images))


@torch.no_grad()
def test_resnet_intermediates_match_open_clip(open_clip_twin):
    ours, theirs = open_clip_twin("RN-Tiny")
    randomize_batch_norms_(theirs)
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if k != "attn_mask"})
    images = torch.randn(2, 3, 64, 64)
    pooled, intermediates = ours.visual.forward_intermediates(images)
    reference = theirs.visual.forward_intermediates(images)
    for a, b in zip(intermediates, reference["image_intermediates"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, reference["image_features"], rtol=1e-5, atol=1e-5)
    tokens = ours.visual.forward_intermediates(images, [1, 4], output_fmt="NLC", intermediates_only=True)
    for sequence, feature_map in zip(tokens, [intermediates[1], intermediates[4]], strict=True):
        assert torch.equal(sequence, feature_map.flatten(2).transpose(1, 2))


@pytest.mark.parametrize("name, size", [("ViT-Micro-8", 32), ("RN-Tiny", 64)])
@torch.no_grad()
def test_feature_info_describes_the_intermediates(name, size):
    """Channels and reduction as timm describes them, the module names real, an int n the last n, ascending."""
    tower = lit_clip.create_model(name).eval().visual
    features = tower.forward_intermediates(torch.randn(1, 3, size, size), intermediates_only=True)
    assert len(features) == len(tower.feature_info)
    for feature, info in zip(features, tower.feature_info):
        assert feature.shape[1] == info["num_chs"] and feature.shape[-1] == size // info["reduction"]
        tower.get_submodule(info["module"])
    last_two = tower.forward_intermediates(torch.randn(1, 3, size, size), 2, intermediates_only=True)
    assert [f.shape for f in last_two] == [f.shape for f in features[-2:]]
    with pytest.raises(ValueError, match="last 9"):
        tower.forward_intermediates(torch.randn(1, 3, size, size), 9)
    with pytest.raises(ValueError, match=r"got \[7\]"):
        tower.forward_intermediates(torch.randn(1, 3, size, size), [7])
    with pytest.raises(ValueError, match="NHWC"):
        tower.forward_intermediates(torch.randn(1, 3, size, size), output_fmt="NHWC")


@pytest.mark.parametrize("name, last", [("ViT-Micro-8", "transformer.resblocks.1"), ("RN-Tiny", "layer4")])
def test_intermediates_only_stops_after_the_last_chosen_feature(name, last):
    tower = lit_clip.create_model(name).eval().visual
    calls = []
    tower.get_submodule(last).register_forward_hook(lambda *args: calls.append(1))
    size = tower.image_size
    tower.forward_intermediates(torch.randn(1, 3, size, size), [0], intermediates_only=True)
    assert not calls
    tower.forward_intermediates(torch.randn(1, 3, size, size), [0])
    assert calls == [1]


def test_resnet_intermediates_only_take_other_image_sizes():
    tower = lit_clip.create_model("RN-Tiny").eval().visual  # built for 64 px
    *_, last = tower.forward_intermediates(torch.randn(1, 3, 96, 128), intermediates_only=True)
    assert last.shape == (1, 512, 3, 4)
    with pytest.raises(ValueError, match="built for 64 x 64"):
        tower.forward_intermediates(torch.randn(1, 3, 96, 128))


# --- dense image features (MaskCLIP) ----------------------------------------------------------------------
@pytest.mark.parametrize("name, size, grid", [("ViT-Micro-8", 32, (4, 4)), ("RN-Tiny", 64, (2, 2))])
def test_dense_image_shape(name, size, grid):
    model = lit_clip.create_model(name).eval()
    dense = model.encode_dense_image(torch.randn(2, 3, size, size))
    assert dense.shape == (2, model.config.embed_dim, *grid)


@torch.no_grad()
def test_vit_dense_is_the_last_block_with_each_patch_attending_to_itself():
    """MaskCLIP's value path equals the ordinary last block run on each patch token as a one-token sequence
    (softmax over one key is 1), then ln_post and proj: an independent computation through the attention code."""
    torch.manual_seed(0)
    tower = lit_clip.create_model("ViT-Micro-8").eval().visual
    images = torch.randn(2, 3, 48, 40)  # a 6 x 5 grid, positions resized
    dense = tower.forward_dense(images)
    (before_last,) = tower.forward_intermediates(images, [-2], output_fmt="NLC", intermediates_only=True)
    alone = tower.transformer.resblocks[-1](before_last.reshape(-1, 1, before_last.shape[-1]))
    expected = (tower.ln_post(alone) @ tower.proj).reshape(2, 6, 5, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(dense, expected, rtol=1e-5, atol=1e-5)  # max abs difference 0.0 here
    # Not the projected patch tokens of the full forward: the last attention is really skipped.
    full = tower.ln_post(tower.transformer(tower.ln_pre(tower.embed(images))))[:, 1:] @ tower.proj
    assert not torch.allclose(dense.flatten(2).transpose(1, 2), full, atol=1e-3)


@torch.no_grad()
def test_resnet_dense_is_value_then_output_projection_at_every_position():
    torch.manual_seed(0)
    tower = lit_clip.create_model("RN-Tiny").eval().visual
    randomize_batch_norms_(tower)
    images = torch.randn(2, 3, 64, 64)
    (features,) = tower.forward_intermediates(images, 1, intermediates_only=True)  # layer4, [2, 512, 2, 2]
    pool = tower.attnpool
    by_hand = torch.einsum("oc,bchw->bohw", pool.v_proj.weight, features) + pool.v_proj.bias[:, None, None]
    by_hand = torch.einsum("oc,bchw->bohw", pool.c_proj.weight, by_hand) + pool.c_proj.bias[:, None, None]
    torch.testing.assert_close(tower.forward_dense(images), by_hand, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_resnet_dense_averages_to_the_pooled_embedding_when_attention_is_uniform():
    """With queries and keys zeroed (uniform attention) and no positions, the attention pool is c_proj(v_proj(mean)):
    the dense map's mean over positions, since both projections are affine. Ties the map to the pooled space."""
    torch.manual_seed(0)
    tower = lit_clip.create_model("RN-Tiny").eval().visual
    randomize_batch_norms_(tower)
    pool = tower.attnpool
    for tensor in (pool.q_proj.weight, pool.q_proj.bias, pool.k_proj.weight, pool.k_proj.bias):
        tensor.zero_()
    pool.positional_embedding.zero_()
    images = torch.randn(3, 3, 64, 64)
    torch.testing.assert_close(tower.forward_dense(images).mean(dim=(2, 3)), tower(images), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_resnet_dense_of_a_uniform_image_is_the_same_everywhere_but_the_border():
    """No learned positions in the dense head: one colour gives one feature at every position that the
    convolutions' zero padding does not reach (all but the outer ring of a 4 x 4 map)."""
    torch.manual_seed(0)
    tower = ModifiedResNet((1, 1, 1, 1), output_dim=16, heads=2, image_size=128, width=8).eval()
    randomize_batch_norms_(tower)
    colours = torch.tensor([[0.3, -0.2, 0.8], [-1.0, 0.5, 0.1]])
    dense = tower.forward_dense(colours[:, :, None, None].expand(2, 3, 128, 128))
    interior = dense[:, :, 1:-1, 1:-1].flatten(2)
    torch.testing.assert_close(interior, interior[:, :, :1].expand_as(interior), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(interior[0], interior[1], atol=1e-3)  # and the feature does depend on the colour


# --- per-token text outputs ---------------------------------------------------------------------------------
def test_text_tokens_at_eot_are_the_text_embedding_and_padding_is_masked():
    torch.manual_seed(0)  # weights of their own, not drawn after whichever tests ran before
    model = lit_clip.create_model("ViT-Micro-8").eval()
    token_ids = lit_clip.tokenize(["a red circle", "two blue stars and a green ring", ""], context_length=16)
    tokens, padding = model.encode_text_tokens(token_ids)
    eot = token_ids.argmax(dim=-1)
    assert tokens.shape == (3, 16, 32) and padding.dtype == torch.bool
    # The same numbers up to float rounding: one projection of 48 rows and one of 3 may take different kernels.
    torch.testing.assert_close(tokens[torch.arange(3), eot], model.encode_text(token_ids), rtol=1e-6, atol=1e-6)
    assert torch.equal(padding, token_ids == 0) and not padding[torch.arange(3), eot].any()
    hidden, _ = model.encode_text_tokens(token_ids, project=False)
    assert hidden.shape == (3, 16, model.transformer.width)
    torch.testing.assert_close(hidden @ model.text_projection, tokens)


def test_text_tokens_before_eot_ignore_what_follows():
    """Causal tower: changing the padding leaves every unmasked token as it was."""
    model = lit_clip.create_model("ViT-Micro-8").eval()
    token_ids = lit_clip.tokenize(["a red circle"], context_length=16)
    noisy = token_ids.clone()
    noisy[token_ids == 0] = 1234
    tokens, padding = model.encode_text_tokens(token_ids)
    noisy_tokens, _ = model.encode_text_tokens(noisy)
    torch.testing.assert_close(tokens[~padding], noisy_tokens[~padding])
    assert not torch.allclose(tokens[padding], noisy_tokens[padding])
    with pytest.raises(ValueError, match="token ids must be in"):
        model.encode_text_tokens(token_ids + 49408)
