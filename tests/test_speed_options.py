"""The speed levers change speed only: CPU attention, patch dropout, compile, fused AdamW, checkpointing."""
import pytest
import torch
import torch.nn.functional as F

import lit_clip
from lit_clip.methods import CLIPPretraining, CoCoOp
from lit_clip.models.transformer import attention
from lit_clip.tokenizer import trim_padding


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_cpu_attention_equals_scaled_dot_product_attention(causal, dtype, tolerance):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 11, 16, dtype=dtype, requires_grad=True) for _ in range(3))
    ours = attention(q, k, v, causal)
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    torch.testing.assert_close(ours.float(), reference, atol=tolerance, rtol=tolerance)
    grad = torch.randn_like(reference)
    ours_grads = torch.autograd.grad(ours.float(), (q, k, v), grad)
    reference_grads = torch.autograd.grad(reference, (q, k, v), grad)
    for a, b in zip(ours_grads, reference_grads):
        torch.testing.assert_close(a.float(), b.float(), atol=5 * tolerance, rtol=5 * tolerance)


def test_patch_dropout_keeps_the_class_token_and_drops_patches_in_training_only():
    model = lit_clip.create_model("ViT-Micro-8")  # 32 px, patch 8: 16 patches
    model.set_patch_dropout(0.5)
    lengths = []
    model.visual.ln_pre.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    images = torch.randn(2, 3, 32, 32)
    model.train()
    model.encode_image(images)
    model.eval()
    model.encode_image(images)
    model.visual.forward_dense(images)
    assert lengths == [1 + 8, 1 + 16, 1 + 16]
    with pytest.raises(ValueError, match="ModifiedResNet"):
        lit_clip.create_model("RN-Tiny").set_patch_dropout(0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        model.set_patch_dropout(1.0)


def test_compiled_towers_keep_the_plain_parameter_names():
    plain = CLIPPretraining(architecture="ViT-Micro-8")
    compiled = CLIPPretraining(architecture="ViT-Micro-8", compile=True)
    assert list(compiled.state_dict()) == list(plain.state_dict())


def test_adamw_is_fused_unless_lightning_must_clip_gradients():
    module = CLIPPretraining(architecture="ViT-Micro-8")
    assert module.build_optimizer().defaults["fused"]
    assert not module.build_optimizer(fused=False).defaults["fused"]


def test_gradient_checkpointing_of_a_frozen_text_tower_gives_the_same_gradients(lit_clip_checkpoint):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(1)  # the same Meta-Net
        cocoop = CoCoOp(str(lit_clip_checkpoint), grad_checkpointing=checkpointing).eval()
        cocoop.set_classes(["red circle", "blue star"])
        F.cross_entropy(cocoop(images), torch.tensor([0, 1])).backward()
        gradients.append(cocoop.ctx.grad.clone())
    torch.testing.assert_close(gradients[0], gradients[1])


def test_trimmed_padding_changes_no_text_feature():
    torch.manual_seed(0)
    model = lit_clip.create_model("ViT-Micro-8").eval()
    tokens = lit_clip.tokenize(["a red circle.", "a photo of a large blue star."], context_length=16)
    trimmed = trim_padding(tokens)
    assert trimmed.shape == (2, int(tokens.argmax(-1).max()) + 1) and trimmed.shape[1] < 16
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(trimmed), model.encode_text(tokens), atol=1e-6, rtol=1e-5)


def test_pretraining_batches_are_trimmed_on_the_host():
    module = CLIPPretraining(architecture="ViT-Micro-8")
    tokens = lit_clip.tokenize(["a red circle.", "two stars."], context_length=16)
    batch = module.on_before_batch_transfer({"image": torch.zeros(2, 3, 32, 32), "text": tokens}, 0)
    assert batch["text"].shape[1] == int(tokens.argmax(-1).max()) + 1
