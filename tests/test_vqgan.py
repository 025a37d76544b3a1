"""The VQGAN: taming-transformers' parameter names and shapes, its quantiser, loading taming's and our checkpoints,
and VQGANTraining's steps with and without the discriminator."""
import sys
import types

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_clip.datamodules import ShapesWorldCaptions
from lit_clip.methods.generation.vqgan_training import VQGANTraining
from lit_clip.models.vqgan import VQGAN, VQGAN_CONFIGS, AttnBlock, Downsample, VectorQuantizer, load_vqgan

# taming_spec.md 1.6: the configuration its key list was printed for, by taming's own code.
TINY = dict(
    ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[16], resolution=32, z_channels=8, embed_dim=8,
    n_embed=16,
)  # fmt: skip


def taming_keys(ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, embed_dim, n_embed):
    """``{name: shape}`` in state-dict order, as taming's Encoder / Decoder / VectorQuantizer2 build them
    (taming/modules/diffusionmodules/model.py), for 3 input and output channels."""
    keys = {}

    def conv(name, out, inp, k):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = [out, inp, k, k], [out]

    def norm(name, c):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = [c], [c]

    def resnet(name, inp, out):
        norm(f"{name}.norm1", inp), conv(f"{name}.conv1", out, inp, 3)
        norm(f"{name}.norm2", out), conv(f"{name}.conv2", out, out, 3)
        if inp != out:
            conv(f"{name}.nin_shortcut", out, inp, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for projection in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{projection}", c, c, 1)

    def mid(tower, c):
        resnet(f"{tower}.mid.block_1", c, c), attn(f"{tower}.mid.attn_1", c), resnet(f"{tower}.mid.block_2", c, c)

    n, in_ch_mult, res = len(ch_mult), (1, *ch_mult), resolution
    conv("encoder.conv_in", ch, 3, 3)
    for i in range(n):
        block_in, block_out = ch * in_ch_mult[i], ch * ch_mult[i]
        for j in range(num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", block_in if j == 0 else block_out, block_out)
        if res in attn_resolutions:
            for j in range(num_res_blocks):
                attn(f"encoder.down.{i}.attn.{j}", block_out)
        if i != n - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_out, block_out, 3)
            res //= 2
    mid("encoder", ch * ch_mult[-1])
    norm("encoder.norm_out", ch * ch_mult[-1]), conv("encoder.conv_out", z_channels, ch * ch_mult[-1], 3)

    block_in, res = ch * ch_mult[-1], resolution // 2 ** (n - 1)
    conv("decoder.conv_in", block_in, z_channels, 3)
    mid("decoder", block_in)
    for i in reversed(range(n)):  # lowest resolution first, as taming builds them
        block_out = ch * ch_mult[i]
        for j in range(num_res_blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", block_in if j == 0 else block_out, block_out)
        if res in attn_resolutions:
            for j in range(num_res_blocks + 1):
                attn(f"decoder.up.{i}.attn.{j}", block_out)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_out, block_out, 3)
            res *= 2
        block_in = block_out
    # taming's up.insert(0, ...): up.i is level i, so up.0 comes first in the state dict (a stable sort by level)
    for name in sorted((k for k in list(keys) if k.startswith("decoder.up.")), key=lambda k: int(k.split(".")[2])):
        keys[name] = keys.pop(name)
    norm("decoder.norm_out", ch * ch_mult[0]), conv("decoder.conv_out", 3, ch * ch_mult[0], 3)
    keys["quantize.embedding.weight"] = [n_embed, embed_dim]
    conv("quant_conv", embed_dim, z_channels, 1), conv("post_quant_conv", z_channels, embed_dim, 1)
    return keys


def shapes(model):
    return {name: list(t.shape) for name, t in model.state_dict().items()}


def test_tiny_state_dict_is_tamings_key_for_key():
    model = VQGAN(**TINY)
    assert list(shapes(model).items()) == list(taming_keys(**TINY).items())
    got = shapes(model)
    # Spot checks against taming_spec.md 1.6's machine-printed list.
    assert len(got) == 155
    assert got["encoder.down.1.block.0.nin_shortcut.weight"] == [64, 32, 1, 1]
    assert got["encoder.down.1.attn.0.proj_out.weight"] == [64, 64, 1, 1]
    assert got["decoder.up.0.block.0.nin_shortcut.weight"] == [32, 64, 1, 1]
    assert got["decoder.up.1.attn.1.q.bias"] == [64]
    assert got["decoder.up.1.upsample.conv.weight"] == [64, 64, 3, 3]
    assert got["quantize.embedding.weight"] == [16, 8] and got["post_quant_conv.weight"] == [8, 8, 1, 1]
    absent = (
        "encoder.down.0.block.0.nin_shortcut.weight", "encoder.down.1.downsample.conv.weight",
        "encoder.down.0.attn.0.q.weight", "decoder.up.0.block.2.conv1.weight", "decoder.up.0.attn.0.q.weight",
        "decoder.up.0.upsample.conv.weight",
    )  # fmt: skip
    assert not any(name in got for name in absent)
    assert not any("temb" in k or "conv_shortcut" in k for k in got)


def test_imagenet_f16_geometry_and_parameter_counts():
    with torch.device("meta"):  # 76M parameters, not allocated
        model = VQGAN(**VQGAN_CONFIGS["imagenet-f16-16384"])
    config = dict(VQGAN_CONFIGS["imagenet-f16-16384"])
    del config["in_channels"], config["out_ch"], config["dropout"]
    assert list(shapes(model).items()) == list(taming_keys(**config).items())
    counts = [sum(p.numel() for p in tower.parameters()) for tower in (model.encoder, model.decoder)]
    assert counts == [29_298_176, 42_449_795]
    assert len(model.state_dict()) == 343 and model.downsampling_factor == 16
    assert {"encoder.down.4.attn.1.q.weight", "decoder.up.4.attn.2.q.weight"} <= set(model.state_dict())


def test_forward_shapes_codes_and_decode_indices():
    torch.manual_seed(0)
    model = VQGAN(**TINY).eval()
    images = torch.rand(2, 3, 32, 48) * 2 - 1  # any multiple of f, not only the training resolution
    assert model.encode_to_latent(images).shape == (2, 8, 16, 24)
    z_q, loss, (perplexity, encodings, indices) = model.encode(images)
    assert z_q.shape == (2, 8, 16, 24) and indices.shape == (2, 16, 24) and encodings is None
    assert 1 <= perplexity <= 16 and loss.ndim == 0
    reconstruction, codebook_loss = model(images)
    assert reconstruction.shape == images.shape and torch.equal(codebook_loss, loss)
    torch.testing.assert_close(model.decode_indices(indices), model.decode(z_q))
    assert model.downsampling_factor == 2 and model.codebook is model.quantize.embedding.weight


def test_quantiser_is_nearest_code_straight_through_with_the_legacy_loss():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(n_embed=6, embed_dim=3)
    with torch.no_grad():
        quantizer.embedding.weight.normal_()
    z = torch.randn(2, 3, 4, 5, requires_grad=True)
    z_q, loss, (_, _, indices) = quantizer(z)
    rows = z.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    codebook = quantizer.embedding.weight.detach()
    assert torch.equal(indices.flatten(), torch.cdist(rows, codebook).argmin(1))
    torch.testing.assert_close(z_q.detach().permute(0, 2, 3, 1).reshape(-1, 3), codebook[indices.flatten()])
    # Straight-through: the gradient at z is the gradient at z_q.
    upstream = torch.randn_like(z_q)
    (z_grad,) = torch.autograd.grad((z_q * upstream).sum(), z)
    torch.testing.assert_close(z_grad, upstream)
    # Legacy: mean((sg[e] - z)^2) + 0.25 * mean((e - sg[z])^2): commitment weight 1, codebook weight beta.
    error = (codebook[indices.flatten()] - rows).pow(2).mean()
    torch.testing.assert_close(loss, 1.25 * error)
    z_grad, code_grad = torch.autograd.grad(loss, [z, quantizer.embedding.weight])
    expected_z = 2 * (rows - codebook[indices.flatten()]) / rows.numel()
    torch.testing.assert_close(z_grad.permute(0, 2, 3, 1).reshape(-1, 3), expected_z)
    expected_codes = torch.zeros_like(codebook).index_add_(0, indices.flatten(), -0.25 * expected_z)
    torch.testing.assert_close(code_grad, expected_codes)


def test_attention_and_downsampling_are_tamings():
    torch.manual_seed(0)
    block, x = AttnBlock(32), torch.randn(2, 32, 5, 6)
    h = block.norm(x)
    q, k, v = (p(h).flatten(2) for p in (block.q, block.k, block.v))  # taming: bmm, scale c^-0.5, softmax over keys
    w = torch.softmax(torch.bmm(q.transpose(1, 2), k) * 32**-0.5, dim=2)
    expected = x + block.proj_out(torch.bmm(v, w.transpose(1, 2)).view_as(x))
    torch.testing.assert_close(block(x), expected)
    down, x = Downsample(32), torch.randn(1, 32, 8, 8)
    torch.testing.assert_close(down(x), down.conv(F.pad(x, (0, 1, 0, 1))))
    assert down(x).shape == (1, 32, 4, 4)


TAMING_YAML = """model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 8
    n_embed: 16
    monitor: val/rec_loss
    ddconfig:
      double_z: false
      z_channels: 8
      resolution: 32
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 2]
      num_res_blocks: 1
      attn_resolutions: [16]
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params: {disc_conditional: false, disc_in_channels: 3, disc_start: 0, disc_weight: 0.75, disc_num_layers: 2}
"""


def taming_checkpoint(model: VQGAN) -> dict:
    """A Lightning-1.0-style checkpoint as taming saves: VQModel's keys in its order (the loss between the decoder and
    the quantiser), and a pickled object of a class that cannot be imported when loading."""
    state = model.state_dict()
    loss = {"loss.perceptual_loss.scaling_layer.shift": torch.zeros(1, 3, 1, 1),
            "loss.discriminator.main.0.weight": torch.zeros(64, 3, 4, 4)}  # fmt: skip
    ordered = {k: v for k, v in state.items() if k.split(".")[0] in ("encoder", "decoder")}
    ordered |= loss | {k: v for k, v in state.items() if k not in ordered}
    module = types.ModuleType("gone_lightning")
    module.ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": "gone_lightning"})
    sys.modules["gone_lightning"] = module
    return {"epoch": 3, "global_step": 120, "state_dict": ordered, "callbacks": {module.ModelCheckpoint: {}},
            "optimizer_states": [], "lr_schedulers": []}  # fmt: skip


def test_taming_checkpoint_with_its_model_yaml_round_trips(tmp_path):
    torch.manual_seed(0)
    model = VQGAN(**TINY).eval()
    path = tmp_path / "last.ckpt"
    torch.save(taming_checkpoint(model), path)
    del sys.modules["gone_lightning"]  # as pytorch_lightning 1.0 is absent here
    (tmp_path / "model.yaml").write_text(TAMING_YAML)
    loaded = load_vqgan(path, tmp_path / "model.yaml").eval()
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(images)[0], model(images)[0])
    # A config as a dict, and a bare state dict, load the same.
    assert torch.equal(load_vqgan(model.state_dict(), TINY).codebook, model.codebook)


def test_taming_geometry_without_config_needs_a_named_one():
    shapes_model = VQGAN(**VQGAN_CONFIGS["shapes-f4"])
    assert load_vqgan({"state_dict": shapes_model.state_dict()}).config == shapes_model.config
    with pytest.raises(ValueError, match="pass config="):
        load_vqgan({"state_dict": VQGAN(**TINY).state_dict()})


def test_mismatched_keys_and_missing_files_are_named(tmp_path):
    state = VQGAN(**TINY).state_dict()
    state["decoder.up.1.upsampl.conv.weight"] = state.pop("decoder.up.1.upsample.conv.weight")
    path = tmp_path / "renamed.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ValueError, match="renamed.ckpt") as error:
        load_vqgan(path, TINY)
    assert "missing (1): decoder.up.1.upsample.conv.weight" in str(error.value)
    assert "unexpected (1): decoder.up.1.upsampl.conv.weight" in str(error.value)
    with pytest.raises(ValueError, match=r"wrong shape \(1\): quantize.embedding.weight \[16, 8\] \(expected \[32"):
        load_vqgan(VQGAN(**TINY).state_dict(), TINY | {"n_embed": 32})
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        load_vqgan(tmp_path / "nowhere.ckpt")


def test_codebook_from_data_and_dead_code_restarts():
    torch.manual_seed(0)
    method = VQGANTraining(architecture=TINY, codebook_init="data", dead_code_steps=2)
    method.trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    codebook = method.vqgan.codebook
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    method.init_codebook(images)
    with torch.no_grad():
        latents = method.vqgan.encode_to_latent(images)
    flat = latents.permute(0, 2, 3, 1).reshape(-1, 8)
    distances = (codebook.detach()[:, None] - flat[None]).norm(dim=-1)
    assert distances.min(1).values.max() < 1e-5 and len(distances.argmin(1).unique()) == 16
    # Only code 0 chosen: the others are restarted after dead_code_steps batches, onto latent vectors.
    with torch.no_grad():
        codebook.fill_(100.0)
    only_code_0 = torch.zeros(2, 16, 16, dtype=torch.long)
    assert method.restart_dead_codes(latents, only_code_0) == 0
    assert method.restart_dead_codes(latents, only_code_0) == 15
    assert torch.all(codebook[0] == 100.0)
    assert (codebook[1:].detach()[:, None] - flat[None]).norm(dim=-1).min(1).values.max() < 1e-5
    assert method.idle_batches.tolist() == [0] * 16 and "idle_batches" not in method.state_dict()


@pytest.mark.parametrize(
    "disc_start, options",
    [
        (None, {}),
        (1, dict(codebook_init="data", dead_code_steps=1, crop_size=16, disc_num_layers=2, lr_schedule="cosine")),
    ],
)
def test_training_steps_change_the_weights_and_the_checkpoint_loads(tmp_path, disc_start, options):
    torch.manual_seed(0)
    data = ShapesWorldCaptions(
        image_size=32, batch_size=4, train_samples=12, val_samples=4, zeroshot_samples_per_class=1, context_length=16
    )
    method = VQGANTraining(TINY, learning_rate=1e-3, disc_start=disc_start, disc_ndf=16, pictures=2, **options)
    before = {k: v.clone() for k, v in method.state_dict().items() if v.is_floating_point()}
    logger = TensorBoardLogger(tmp_path, name="vqgan")
    trainer = L.Trainer(
        max_epochs=1, logger=logger, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
        num_sanity_val_steps=0, log_every_n_steps=1,
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)],
    )  # fmt: skip
    trainer.fit(method, data)
    metrics = trainer.callback_metrics
    for name in ("train/rec_loss", "train/codebook_loss", "train/perplexity", "val/rec_loss", "val/psnr"):
        assert torch.isfinite(metrics[name]), name
    assert 0 < metrics["val/codebook_usage"] <= 1
    # 3 batches; with the discriminator from the second on, Lightning counts both optimizers' steps.
    assert trainer.global_step == (3 if disc_start is None else 5)
    after = method.state_dict()
    unchanged = [k for k, v in before.items() if torch.equal(v, after[k])]
    # While every logit is within the hinge's margin, the last bias's gradient is -1/2 (real) + 1/2 (fake).
    assert unchanged in ([], ["loss.discriminator.main.8.bias"]), unchanged
    assert any(k.startswith("loss.discriminator.main.") for k in after) == (disc_start is not None)
    if disc_start is not None:
        assert torch.isfinite(metrics["train/disc_loss"]) and torch.isfinite(metrics["train/d_weight"])
        assert [o.param_groups[0]["lr"] for o in trainer.optimizers] == [0.0, 0.0]  # the cosine's end
    (events,) = (tmp_path / "vqgan").rglob("events.out.tfevents.*")
    pictures = EventAccumulator(str(events), size_guidance={"images": 0})
    pictures.Reload()
    (picture,) = pictures.Images("val/reconstructions")  # 2 images above their reconstructions
    assert (picture.width, picture.height) == (2 + 2 * 34, 2 + 2 * 34)
    loaded = load_vqgan(tmp_path / "checkpoints" / "last.ckpt")
    for name, tensor in method.vqgan.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
