"""CoOp, CoCoOp and MaPLe: prompts assembled where the papers put them, frozen CLIP, checkpoints without CLIP."""
import lightning as L
import pytest
import torch
from lit_clip.datamodules import ShapesWorldFewShot

import lit_clip
from lit_clip.methods import CoCoOp, CoOp, MaPLe
from lit_clip.models.clip import CLIP, CLIPConfig, TextConfig, VisionConfig
from lit_clip.tokenizer import default_tokenizer, tokenize

# Class names of different token lengths, so the class-token positions are really exercised.
NAMES = ["cat", "traffic light", "hippopotamus", "red circle"]


@pytest.fixture(scope="module")
def deep_clip(tmp_path_factory):
    """A random 4-layer ViT CLIP saved in open_clip's layout (deep enough for 3 layers of MaPLe prompts)."""
    torch.manual_seed(0)
    config = CLIPConfig(32, VisionConfig(32, 4, 64, patch_size=8), TextConfig(context_length=24, width=64, heads=1, layers=4))
    path = tmp_path_factory.mktemp("deep") / "deep_clip.pt"
    lit_clip.save_open_clip(CLIP(config), path)
    return str(path)


@pytest.fixture(scope="module")
def resnet_clip(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rn") / "rn_tiny.pt"
    lit_clip.save_open_clip(lit_clip.create_model("RN-Tiny"), path)
    return str(path)


def zero_shot_features(clip, prompts):
    with torch.no_grad():
        return clip.encode_text(tokenize(prompts, context_length=clip.context_length))


def tiny_data(image_size=32, **kwargs):
    return ShapesWorldFewShot(
        shots=1, image_size=image_size, pool_per_class=1, test_per_class=1, batch_size=8, eval_batch_size=64, **kwargs
    )


def test_names_have_different_token_lengths():
    assert len({len(default_tokenizer().encode(name)) for name in NAMES}) >= 3


@pytest.mark.parametrize(
    "position, text", [("end", "a photo of a {}."), ("middle", "a photo {} of a."), ("front", "{} a photo of a.")]
)
def test_coop_from_a_photo_of_a_equals_the_written_prompt(deep_clip, position, text):
    """Untrained context from "a photo of a": each layout must equal the same words written out."""
    coop = CoOp(deep_clip, ctx_init="a photo of a", class_token_position=position)
    coop.set_classes(NAMES)
    with torch.no_grad():
        ours = coop.text_features()
    torch.testing.assert_close(ours, zero_shot_features(coop.model, [text.format(n) for n in NAMES]), atol=1e-5, rtol=1e-4)


def test_coop_random_context_has_n_ctx_vectors_and_is_saved_alone(deep_clip, tmp_path, trainer):
    coop = CoOp(deep_clip, n_ctx=5)
    assert coop.ctx.shape == (5, 64)
    data = tiny_data()
    fit = trainer(max_epochs=1, max_steps=1, limit_val_batches=0, default_root_dir=tmp_path,
                  callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])  # fmt: skip
    fit.fit(coop, data)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"]
    assert list(saved) == ["ctx"], "the checkpoint must hold the context only: no CLIP, no class-name buffers"
    # ... so it classifies other classes: base-to-new testing swaps in the new half's names.
    results = trainer().test(CoOp.load_from_checkpoint(tmp_path / "last.ckpt"), tiny_data(base_to_new=True))[0]
    assert {"test/base_top1", "test/new_top1", "test/hm"} <= set(results)


def test_class_specific_context_is_per_class_and_cannot_change_classes(deep_clip, tmp_path, trainer):
    coop = CoOp(deep_clip, n_ctx=3, class_specific_context=True)
    data = tiny_data()
    trainer(max_epochs=1, max_steps=1, limit_val_batches=0, default_root_dir=tmp_path,
            callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)]).fit(coop, data)  # fmt: skip
    assert coop.ctx.shape == (64, 3, 64)
    reloaded = CoOp.load_from_checkpoint(tmp_path / "last.ckpt")
    assert reloaded.ctx.shape == (64, 3, 64)
    torch.testing.assert_close(reloaded.ctx, coop.ctx.cpu())
    with pytest.raises(ValueError, match="class-specific contexts for 64 classes"):
        coop.set_classes(NAMES)


def test_frozen_resnet_clip_stays_in_eval_mode_and_unchanged(resnet_clip, trainer):
    coop = CoOp(resnet_clip, n_ctx=4)
    before = {k: v.clone() for k, v in coop.model.state_dict().items()}
    initial_context = coop.ctx.detach().clone()
    modes = []

    class RecordMode(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            modes.append((module.training, module.model.training, module.model.visual.bn1.training))

    trainer(max_epochs=1, max_steps=2, limit_val_batches=0, callbacks=[RecordMode()]).fit(coop, tiny_data(image_size=64))
    assert modes == [(True, False, False)] * 2
    for key, value in coop.model.state_dict().items():  # BatchNorm running statistics included
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=f"{key} changed")
    assert not torch.equal(coop.ctx.detach(), initial_context), "the context did not train"


def test_cocoop_batches_prompts_exactly_as_one_image_at_a_time(deep_clip):
    torch.manual_seed(0)
    cocoop = CoCoOp(deep_clip).eval()
    cocoop.set_classes(NAMES)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        batched = cocoop(images)
        one_by_one = torch.cat([cocoop(images[i : i + 1]) for i in range(3)])
    assert batched.shape == (3, len(NAMES))
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)
    # Each image gets its own prompts: with the Meta-Net's shift removed, all images share one set.
    text_per_image = cocoop.meta_net(cocoop.image_features(images))
    assert not torch.allclose(text_per_image[0], text_per_image[1])


def test_cocoop_without_the_meta_net_shift_is_zero_shot_clip(deep_clip):
    cocoop = CoCoOp(deep_clip).eval()
    torch.nn.init.zeros_(cocoop.meta_net.linear2.weight)
    torch.nn.init.zeros_(cocoop.meta_net.linear2.bias)
    cocoop.set_classes(NAMES)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = cocoop(images)
        text = torch.nn.functional.normalize(zero_shot_features(cocoop.model, [f"a photo of a {n}." for n in NAMES]), dim=-1)
        expected = cocoop.model.logit_scale.exp() * cocoop.image_features(images) @ text.T
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


def test_maple_at_depth_one_has_the_zero_shot_text_side(deep_clip):
    maple = MaPLe(deep_clip, n_ctx=2, ctx_init="a photo of a", prompt_depth=1).eval()
    maple.set_classes(NAMES)
    with torch.no_grad():
        _, text = maple.encode(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(text, zero_shot_features(maple.model, [f"a photo of a {n}." for n in NAMES]), atol=1e-5, rtol=1e-4)


class BlockInputs:
    """Records the input of every block of both towers, and of the vision tower's ln_pre."""

    def __init__(self, clip):
        self.inputs, self.handles = {}, []
        for tower, blocks in (("text", clip.transformer.resblocks), ("vision", clip.visual.transformer.resblocks)):
            for i, block in enumerate(blocks):
                self.handles.append(block.register_forward_pre_hook(self.recorder((tower, i))))
        self.handles.append(clip.visual.ln_pre.register_forward_pre_hook(self.recorder(("vision", "ln_pre"))))

    def recorder(self, key):
        def hook(module, args):
            self.inputs[key] = args[0].detach().clone()

        return hook


def test_maple_prompts_sit_where_the_paper_puts_them_at_every_prompted_layer(deep_clip):
    depth, n_ctx = 3, 2
    maple = MaPLe(deep_clip, n_ctx=n_ctx, prompt_depth=depth).eval()
    maple.set_classes(NAMES)
    recorded = BlockInputs(maple.model)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maple.encode(images)
        text_prompts, vision_prompts = maple.layer_prompts()
    inputs = recorded.inputs
    image_tokens = 1 + maple.model.visual.grid_size**2
    # Layer 0: text prompts in the input sequence (with positions), vision prompts appended before ln_pre.
    positions = maple.model.positional_embedding[1 : 1 + n_ctx]
    torch.testing.assert_close(inputs[("text", 0)][:, 1 : 1 + n_ctx], (maple.ctx + positions).expand(len(NAMES), -1, -1))
    torch.testing.assert_close(inputs[("vision", "ln_pre")][:, image_tokens:], vision_prompts[0].expand(2, -1, -1))
    for layer in range(1, depth):  # replaced before each deeper prompted block
        torch.testing.assert_close(inputs[("text", layer)][:, 1 : 1 + n_ctx], text_prompts[layer].expand(len(NAMES), -1, -1))
        torch.testing.assert_close(inputs[("vision", layer)][:, image_tokens:], vision_prompts[layer].expand(2, -1, -1))
    # From layer J on nothing is replaced: the tokens are what block J-1 made of the prompts.
    assert not torch.allclose(inputs[("text", depth)][:, 1 : 1 + n_ctx], text_prompts[-1].expand(len(NAMES), -1, -1))
    for tower, tokens in (("text", inputs[("text", 0)].shape[1]), ("vision", image_tokens + n_ctx)):
        assert {inputs[(tower, i)].shape[1] for i in range(4)} == {tokens}, f"{tower} sequence length changed"


def test_maple_outputs_change_when_and_only_when_a_prompt_of_a_layer_changes(deep_clip):
    depth, n_ctx = 3, 2
    maple = MaPLe(deep_clip, n_ctx=n_ctx, prompt_depth=depth).eval()
    maple.set_classes(NAMES)
    images = torch.randn(2, 3, 32, 32)

    def outputs():
        with torch.no_grad():
            return maple.encode(images)

    image_0, text_0 = outputs()
    with torch.no_grad():
        for layer in range(1, depth):
            saved = maple.deep_text_prompts[layer - 1].clone()
            # Random, not constant, changes: a constant shift of a token is invisible behind the layer norms.
            maple.deep_text_prompts[layer - 1].add_(torch.randn_like(saved))
            image, text = outputs()
            assert not torch.allclose(text, text_0) and not torch.allclose(image, image_0), f"layer {layer} text prompt"
            maple.deep_text_prompts[layer - 1].copy_(saved)
            saved = maple.deep_couplings[layer - 1].weight.clone()
            maple.deep_couplings[layer - 1].weight.add_(torch.randn_like(saved))
            image, text = outputs()
            assert torch.equal(text, text_0) and not torch.allclose(image, image_0), f"layer {layer} coupling"
            maple.deep_couplings[layer - 1].weight.copy_(saved)

    def perturb_prompt_slots(tower_blocks, start, layer):
        """Noise on the prompt positions of block ``layer - 1``'s output."""

        def hook(module, args, output):
            output = output.clone()
            output[:, start : start + n_ctx] += torch.randn_like(output[:, start : start + n_ctx])
            return output

        return tower_blocks[layer - 1].register_forward_hook(hook)

    image_tokens = 1 + maple.model.visual.grid_size**2
    for layer in range(1, depth + 1):
        handles = [
            perturb_prompt_slots(maple.model.transformer.resblocks, 1, layer),
            perturb_prompt_slots(maple.model.visual.transformer.resblocks, image_tokens, layer),
        ]
        image, text = outputs()
        for handle in handles:
            handle.remove()
        if layer < depth:  # replaced before block `layer`: what was there does not matter
            torch.testing.assert_close(text, text_0, atol=0, rtol=0)
            torch.testing.assert_close(image, image_0, atol=0, rtol=0)
        else:  # block J keeps the tokens: they carry on into the outputs
            assert not torch.allclose(text, text_0) and not torch.allclose(image, image_0)


def test_maple_needs_a_vit_and_a_depth_the_towers_have(deep_clip, resnet_clip):
    with pytest.raises(ValueError, match="ViT"):
        MaPLe(resnet_clip)
    with pytest.raises(ValueError, match="prompt_depth must be between 1 and the towers' depth 4"):
        MaPLe(deep_clip, prompt_depth=9)
    with pytest.raises(ValueError, match="n_ctx=5"):
        MaPLe(deep_clip, n_ctx=5, ctx_init="a photo of a", prompt_depth=2)


def test_only_prompts_train(deep_clip):
    maple = MaPLe(deep_clip, prompt_depth=3)
    names = {name for name, p in maple.named_parameters() if p.requires_grad}
    assert names == {"ctx", "proj.weight", "proj.bias", "deep_text_prompts.0", "deep_text_prompts.1",
                     "deep_couplings.0.weight", "deep_couplings.0.bias", "deep_couplings.1.weight", "deep_couplings.1.bias"}  # fmt: skip
    # The deeper couplings start as copies of one initialisation, as in the official code.
    torch.testing.assert_close(maple.deep_couplings[0].weight, maple.deep_couplings[1].weight)


def test_too_long_prompts_are_an_error_not_a_truncation(deep_clip):
    coop = CoOp(deep_clip, n_ctx=16)
    with pytest.raises(ValueError, match="hippopotamus"):
        coop.set_classes(["cat", "hippopotamus " * 3])


def test_bad_class_token_position_is_named(deep_clip):
    with pytest.raises(ValueError, match="'back'"):
        CoOp(deep_clip, class_token_position="back")


def test_a_module_tested_before_training_still_trains(deep_clip, trainer):
    """Class prompts built during a test (inference mode) must not break a later fit of the same module."""
    coop = CoOp(deep_clip, ctx_init="a photo of a")
    data = tiny_data()
    trainer().test(coop, data)
    before = coop.ctx.detach().clone()
    trainer(max_epochs=1, max_steps=1, limit_val_batches=0).fit(coop, data)
    assert not coop.ctx.is_inference() and coop.ctx.requires_grad
    assert not torch.equal(coop.ctx, before), "the context did not train"
