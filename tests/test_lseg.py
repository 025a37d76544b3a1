"""LSeg: the DPT decoder's sizes, the logits, the label order, the optimiser, the schedule, the spatial blocks,
multi-scale + flip + sliding-window evaluation, the official checkpoints' names, a training step, the benchmark."""
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader

import lit_clip
from lit_clip.methods import frozen_clip
from lit_clip.methods.segmentation.lseg import (
    OFFICIAL_UNUSED,
    LSeg,
    SpatialRegularization,
    convert_official_state_dict,
    official_key,
    quarter_hooks,
)
from lit_clip.optim import poly_schedule
from lit_clip.transforms import FromCLIPNormalization

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["background", "red circle", "blue square"]


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    """Random micro CLIPs saved as plain state dicts: ``{architecture: path}``."""
    root = tmp_path_factory.mktemp("clips")
    paths = {}
    for architecture in ("ViT-Micro-8", "RN-Tiny"):
        torch.manual_seed(0)
        paths[architecture] = root / f"{architecture}.pt"
        torch.save(lit_clip.create_model(architecture).state_dict(), paths[architecture])
    return paths


def micro_lseg(clip_files, architecture="ViT-Micro-8", **kwargs) -> LSeg:
    """An LSeg on a micro CLIP's own tower (by default), in eval mode, LABELS embedded bare."""
    kwargs = {"backbone": "clip", "readout": "ignore", "features": 16, **kwargs}
    torch.manual_seed(0)
    model = LSeg(str(clip_files[architecture]), architecture=architecture, **kwargs).eval()
    model.build_text_classifier(LABELS, ["{}"])
    return model


def decoder_levels(model: LSeg, images: torch.Tensor) -> list[torch.Tensor]:
    """The four maps the DPT decoder takes: reassembled ViT tokens, or a CNN's stages as they are."""
    features = model.encoder(images)
    if model.reassemble is None:
        return [feature for feature, _ in features]
    return [reassemble(*feature) for reassemble, feature in zip(model.reassemble, features)]


def meta_lseg(monkeypatch, clip_architecture: str, **kwargs) -> LSeg:
    """An LSeg on the meta device (no memory, no weights), its CLIP a random ``clip_architecture``."""
    monkeypatch.setattr(frozen_clip, "load_clip", lambda *args, **kw: lit_clip.create_model(clip_architecture))
    with torch.device("meta"):
        return LSeg("unused", **kwargs)


# --- the DPT decoder ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "backbone, clip_architecture, channels",
    [
        ("vit_large_patch16_384", "ViT-B-32", [256, 512, 1024, 1024]),
        ("vit_base_patch32_384", "ViT-B-32", [96, 192, 384, 768]),
    ],
)
def test_timm_vit_levels_and_embeddings_have_the_dpt_strides(monkeypatch, backbone, clip_architecture, channels):
    model = meta_lseg(monkeypatch, clip_architecture, backbone=backbone)
    assert model.encoder.hooks == ([5, 11, 17, 23] if "large" in backbone else [2, 5, 8, 11])
    assert [r.project.out_channels for r in model.reassemble] == channels
    images = torch.zeros(2, 3, 480, 480, device="meta")
    assert [level.shape[-1] for level in decoder_levels(model, images)] == [120, 60, 30, 15]  # strides 4, 8, 16, 32
    assert model.pixel_embeddings(images).shape == (2, 512, 240, 240)


def test_the_official_resnet_101_stages_go_into_the_decoder_as_they_are(monkeypatch):
    model = meta_lseg(monkeypatch, "ViT-B-32", backbone="resnet101.tv_in1k", readout="ignore")
    assert model.reassemble is None and model.encoder.channels == [256, 512, 1024, 2048]
    assert [conv.in_channels for conv in model.decoder.layer_rn] == [256, 512, 1024, 2048]
    images = torch.zeros(2, 3, 480, 480, device="meta")
    assert [level.shape[-1] for level in decoder_levels(model, images)] == [120, 60, 30, 15]
    assert model.pixel_embeddings(images).shape == (2, 512, 240, 240)
    # ImageNet's mean and std, from CLIP's: a black image stays black, a CLIP-mean grey becomes ImageNet's grey
    black = -torch.tensor(lit_clip.transforms.CLIP_MEAN) / torch.tensor(lit_clip.transforms.CLIP_STD)
    cfg = model.encoder.cnn.pretrained_cfg
    normalize = FromCLIPNormalization(cfg["mean"], cfg["std"])
    imagenet_black = -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(normalize(black.view(1, 3, 1, 1)).flatten(), imagenet_black)
    with pytest.raises(ValueError, match="readout 'ignore'"):
        meta_lseg(monkeypatch, "ViT-B-32", backbone="resnet101.tv_in1k", readout="project")


def test_a_small_timm_cnn_gives_logits_at_the_image_size(clip_files):
    model = micro_lseg(clip_files, backbone="test_resnet.r160_in1k")
    assert model.encoder.reductions == [4, 8, 16, 32]
    assert model(torch.randn(2, 3, 64, 96)).shape == (2, len(LABELS), 64, 96)


def test_a_small_timm_vit_gives_logits_at_the_image_size(clip_files):
    model = micro_lseg(clip_files, backbone="vit_tiny_patch16_224", readout="project")
    assert [r.project.out_channels for r in model.reassemble] == [24, 48, 96, 192]
    assert model(torch.randn(2, 3, 64, 96)).shape == (2, len(LABELS), 64, 96)
    assert model(torch.randn(1, 3, 50, 70)).shape == (1, len(LABELS), 50, 70)


@pytest.mark.parametrize("architecture, hooks", [("ViT-Micro-8", [0, 0, 1, 1]), ("RN-Tiny", [1, 2, 3, 4])])
def test_clip_tower_decoder_sizes_and_unused_tower_parts_frozen(clip_files, architecture, hooks):
    model = micro_lseg(clip_files, architecture)
    assert model.encoder.hooks == hooks
    images = torch.randn(2, 3, 64, 64)
    assert [level.shape[-1] for level in decoder_levels(model, images)] == [16, 8, 4, 2]
    assert (model.reassemble is None) == (architecture == "RN-Tiny")  # a ResNet's stages need no reassembly
    assert model.pixel_embeddings(images).shape == (2, model.model.text_projection.shape[1], 32, 32)
    assert model(torch.randn(1, 3, 40, 72)).shape == (1, len(LABELS), 40, 72)  # padded to 64 x 96, cropped back
    frozen = {name.split(".")[1] for name, p in model.encoder.tower.named_parameters(prefix="t") if not p.requires_grad}
    assert frozen == ({"ln_post", "proj"} if architecture == "ViT-Micro-8" else {"attnpool"})


@torch.no_grad()
def test_a_clip_vit_tower_gives_its_class_tokens_to_the_project_readout(clip_files):
    model = micro_lseg(clip_files, readout="project")
    images = torch.randn(2, 3, 64, 64)
    features = model.encoder(images)
    tokens = model.encoder.tower.forward_intermediates(images, indices=[0, 1], return_prefix_tokens=True)[1]
    torch.testing.assert_close(features[-1][1], tokens[-1][1][:, 0])  # the last hooked block's class token
    assert [token.shape for _, token in features] == [(2, model.encoder.channels[0])] * 4
    before = model(images)
    model.encoder.tower.class_embedding += 1.0  # the class token reaches the pixels only through the readout
    assert not torch.allclose(model(images), before)
    with pytest.raises(ValueError, match="readout 'ignore'"):
        LSeg(str(clip_files["RN-Tiny"]), architecture="RN-Tiny", backbone="clip", readout="project")


def test_quarter_hooks_are_the_official_ones():
    assert quarter_hooks(24) == [5, 11, 17, 23] and quarter_hooks(12) == [2, 5, 8, 11]
    assert quarter_hooks(4) == [0, 1, 2, 3] and quarter_hooks(2) == [0, 0, 1, 1]


# --- the logits ------------------------------------------------------------------------------------
@torch.no_grad()
def test_logits_are_the_scaled_cosines_of_pixels_and_labels(clip_files):
    model = micro_lseg(clip_files)
    images = torch.randn(2, 3, 64, 64)
    pixels = F.normalize(model.pixel_embeddings(images), dim=1)
    texts = F.normalize(model.model.encode_text(lit_clip.tokenize(LABELS, context_length=16)), dim=-1)
    expected = torch.einsum("bdhw,cd->bchw", pixels, texts) / 0.07
    torch.testing.assert_close(model.cosine_logits(1 / 0.07, pixels), expected, atol=1e-4, rtol=1e-4)
    upsampled = F.interpolate(expected, scale_factor=2, mode="bilinear", align_corners=True)
    torch.testing.assert_close(model(images), upsampled, atol=1e-4, rtol=1e-4)
    assert not isinstance(model.logit_scale, nn.Parameter) and "logit_scale" not in model.state_dict()
    learnable = micro_lseg(clip_files, learnable_logit_scale=True)
    assert isinstance(learnable.logit_scale, nn.Parameter)
    assert any(p is learnable.logit_scale for p in learnable.parameter_groups()[1]["params"])


@torch.no_grad()
def test_another_label_order_permutes_the_channels(clip_files):
    model = micro_lseg(clip_files)
    images = torch.randn(2, 3, 64, 64)
    logits = model(images)
    order = [2, 0, 1]
    model.build_text_classifier([LABELS[i] for i in order], ["{}"])
    torch.testing.assert_close(model(images), logits[:, order])


@torch.no_grad()
def test_each_image_s_own_labels_pick_its_channels(clip_files):
    """Few-shot episodes: image b's logits over ``labels[b]`` are those channels of the logits over every label,
    also through multi-scale, flipped, windowed evaluation."""
    model = micro_lseg(clip_files, test_scales=[0.75, 1.0], flip=True, test_crop_size=48)
    images = torch.randn(2, 3, 64, 64)
    labels = torch.tensor([[0, 2], [0, 1]])
    full, own = model(images), model(images, labels)
    torch.testing.assert_close(own, torch.stack([full[b, labels[b]] for b in range(2)]))
    full, own = model.evaluation_logits(images), model.evaluation_logits(images, labels)
    torch.testing.assert_close(own, torch.stack([full[b, labels[b]] for b in range(2)]))


# --- the spatial regularisation blocks -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["depthwise", "bottleneck"])
@pytest.mark.parametrize("depth", [1, 2])
def test_spatial_blocks_keep_the_shape_and_share_one_kernel_over_labels(kind, depth):
    torch.manual_seed(0)
    block = SpatialRegularization(kind, depth, "lrelu")
    logits = torch.randn(2, 5, 12, 10)
    out = block(logits)
    assert out.shape == logits.shape
    x = logits
    for i in range(depth):
        y = torch.cat([F.conv2d(x[:, [c]], block.conv.weight, block.conv.bias, padding=1) for c in range(5)], dim=1)
        y = y + x.max(dim=1, keepdim=True).values if kind == "bottleneck" else y
        x = y if i == depth - 1 else F.leaky_relu(y)
    torch.testing.assert_close(out, x)


def test_spatial_block_sits_after_the_logits(clip_files):
    model = micro_lseg(clip_files, spatial_block="bottleneck", block_depth=2)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, len(LABELS), 64, 64)
    assert any(p is model.spatial_block.conv.weight for p in model.parameter_groups()[1]["params"])


# --- the optimiser and the schedule --------------------------------------------------------------------
def test_decoder_and_head_learn_ten_times_faster_than_encoder_and_reassembly(clip_files):
    model = micro_lseg(clip_files)
    encoder_group, decoder_group = model.parameter_groups()
    assert encoder_group["lr"] == 0.004 and decoder_group["lr"] == pytest.approx(0.04)
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    trainable_encoder = [p for p in [*model.encoder.parameters(), *model.reassemble.parameters()] if p.requires_grad]
    assert ids(encoder_group["params"]) == ids(trainable_encoder)
    assert ids(decoder_group["params"]) == ids([*model.decoder.parameters(), *model.head.parameters()])
    grouped = ids(encoder_group["params"]) | ids(decoder_group["params"])
    assert grouped.isdisjoint(ids(model.model.parameters()))
    trainable = {id(p) for name, p in model.named_parameters() if p.requires_grad and not name.startswith("model.")}
    assert grouped == trainable


def test_poly_schedule_values():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.04)
    schedule = poly_schedule(optimizer, total=10, power=0.9)
    rates = []
    for _ in range(12):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [0.04 * (1 - min(t, 10) / 10) ** 0.9 for t in range(12)]
    assert rates == pytest.approx(expected)
    assert rates[5] == pytest.approx(0.04 * 0.5**0.9) and rates[10] == rates[11] == 0
    with pytest.raises(ValueError):
        poly_schedule(optimizer, total=0)


# --- evaluation: multi-scale, flip, sliding windows ----------------------------------------------------
def ramp_model(clip_files, calls: list, **kwargs) -> LSeg:
    """An LSeg whose "network" is known: logit 0 = the image's first channel, logit 1 = the column index, 2 = 0."""
    model = micro_lseg(clip_files, **kwargs)

    def forward(images, labels=None):
        calls.append(tuple(images.shape[-2:]))
        columns = torch.arange(images.shape[-1], dtype=images.dtype).expand_as(images[:, :1])
        return torch.cat([images[:, :1], columns, torch.zeros_like(columns)], dim=1)

    model.forward = forward
    return model


def test_multi_scale_flip_logits_are_the_average_over_scales_and_mirrors(clip_files):
    calls = []
    model = ramp_model(clip_files, calls, test_scales=[1.0, 0.5], flip=True)
    images = torch.randn(1, 3, 20, 32)
    logits = model.evaluation_logits(images)

    def resized(x, size):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    # Mirroring averages the column ramp to its middle; the image channel is mirror-symmetric in the model.
    half_image = resized(resized(images[:, :1], (10, 16)), (20, 32))
    expected_image = (images[:, :1] + half_image) / 2
    expected_columns = ((32 - 1) / 2 + (16 - 1) / 2) / 2
    torch.testing.assert_close(logits[:, :1], expected_image)
    torch.testing.assert_close(logits[:, 1:2], torch.full_like(logits[:, 1:2], expected_columns))
    assert calls == [(20, 32), (20, 32), (10, 16), (10, 16)]
    calls.clear()
    assert model.predict_masks(images).shape == (1, 20, 32) and len(calls) == 4
    calls.clear()
    model._trainer = SimpleNamespace(validating=True, sanity_checking=False)  # validation: single-scale, as official
    assert model.predict_masks(images).shape == (1, 20, 32) and calls == [(20, 32)]


def test_sliding_windows_reproduce_a_pixelwise_model_with_the_official_window_count(clip_files):
    calls = []
    model = ramp_model(clip_files, calls, test_crop_size=24)
    images = torch.randn(2, 3, 40, 56)
    logits = model.evaluation_logits(images)
    torch.testing.assert_close(logits[:, :1], images[:, :1])
    # The official grid: ceil((40 - 24) / 16) + 1 = 2 rows, ceil((56 - 24) / 16) + 1 = 3 columns of 24 x 24 windows.
    assert calls == [(24, 24)] * 6
    # The column logit is each window's own column index, averaged over the windows that cover a pixel.
    lefts = (0, 16, 32)
    covering = [[left for left in lefts if left <= c < left + 24] for c in range(56)]
    columns = [sum(c - left for left in windows) / len(windows) for c, windows in enumerate(covering)]
    torch.testing.assert_close(logits[:, 1], torch.tensor(columns).expand(2, 40, 56))


def test_small_images_are_padded_to_one_window_and_scaled_sizes_follow_the_base_size(clip_files):
    calls = []
    model = ramp_model(clip_files, calls, test_crop_size=24, test_base_size=520)
    logits = model.window_logits(torch.randn(1, 3, 10, 20))
    assert calls == [(24, 24)] and logits.shape == (1, 3, 10, 20)
    assert model.scaled_size(300, 400, 0.75) == (293, 390)  # long side ceil(520 * 0.75), aspect kept
    assert model.scaled_size(400, 300, 1.75) == (910, 683)


# --- the official checkpoints --------------------------------------------------------------------------
def official_lseg_tree(backbone: str, arch_option: int) -> nn.Module:
    """The official LSegModule's parameter tree (lang-seg ``modules/models/lseg_net.py``, ``lseg_blocks.py``,
    ``lseg_vit.py``; the few-shot ResNet-101 of ``lseg_net_zs.py``, ``lseg_vit_zs.py``), rebuilt from their
    module definitions with placeholders where a module has no tensors."""
    net = nn.Module()
    net.clip_pretrained = open_clip.create_model("ViT-B-32-quickgelu", device="meta")  # OpenAI's names
    net.pretrained = nn.Module()
    if backbone == "resnet101":  # _make_resnet_backbone(torchvision's resnet101)
        resnet = torchvision.models.resnet101()
        net.pretrained.layer1 = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, resnet.layer1)
        for stage in (2, 3, 4):
            setattr(net.pretrained, f"layer{stage}", getattr(resnet, f"layer{stage}"))
        features = [256, 512, 1024, 2048]
    else:
        large = "large" in backbone
        vit_features, features = (1024, [256, 512, 1024, 1024]) if large else (768, [96, 192, 384, 768])
        # act_postprocess: readout, Transpose, Unflatten, 1x1 conv, resampling (none at the ViT's own stride)
        up = lambda channels, factor: nn.ConvTranspose2d(channels, channels, factor, factor)  # noqa: E731
        down = nn.Conv2d(1024, 1024, 3, 2, 1)
        resample = [up(256, 4), up(512, 2), None, down] if large else [up(96, 8), up(192, 4), up(384, 2), None]
        net.pretrained.model = timm.create_model(backbone)
        for level in range(4):
            readout = nn.Module()
            readout.project = nn.Sequential(nn.Linear(2 * vit_features, vit_features), nn.GELU())
            stages = [readout, nn.Identity(), nn.Identity(), nn.Conv2d(vit_features, features[level], 1)]
            postprocess = nn.Sequential(*stages, *filter(None, [resample[level]]))
            setattr(net.pretrained, f"act_postprocess{level + 1}", postprocess)
    net.scratch = nn.Module()
    for level in range(4):
        setattr(net.scratch, f"layer{level + 1}_rn", nn.Conv2d(features[level], 256, 3, padding=1, bias=False))
        fusion = nn.Module()
        fusion.out_conv = nn.Conv2d(256, 256, 1)
        for unit_name in ("resConfUnit1", "resConfUnit2"):
            unit = nn.Module()
            unit.conv1 = nn.Conv2d(256, 256, 3, padding=1, bias=False)
            unit.conv2 = nn.Conv2d(256, 256, 3, padding=1, bias=False)
            unit.bn1, unit.bn2 = nn.BatchNorm2d(256), nn.BatchNorm2d(256)
            setattr(fusion, unit_name, unit)
        setattr(net.scratch, f"refinenet{level + 1}", fusion)
    net.scratch.head1 = nn.Conv2d(256, 512, 1)
    if arch_option:
        net.scratch.head_block = nn.Module()
        net.scratch.head_block.depthwise = nn.Module()
        net.scratch.head_block.depthwise.depthwise = nn.Conv2d(1, 1, 3, padding=1)
    module = nn.Module()
    module.net = net
    return module


@pytest.mark.parametrize(
    "backbone, spatial_block, arch_option",
    [
        ("vit_large_patch16_384", None, 0),
        ("vit_large_patch16_384", "bottleneck", 1),
        ("vit_base_patch32_384", "depthwise", 2),
        ("resnet101", None, 0),
    ],
)
def test_official_names_map_one_to_one_onto_ours(monkeypatch, backbone, spatial_block, arch_option):
    with torch.device("meta"):
        official = official_lseg_tree(backbone, arch_option).state_dict()
    ours_backbone = {"backbone": backbone}
    if backbone == "resnet101":
        ours_backbone = {"backbone": "resnet101.tv_in1k", "readout": "ignore"}
    ours = meta_lseg(monkeypatch, "ViT-B-32-quickgelu", spatial_block=spatial_block, **ours_backbone).state_dict()
    mapped = convert_official_state_dict(official)
    unused = [key for key in official if official_key(key) is None]
    expected_unused = {"net.scratch.refinenet4.resConfUnit1."} if backbone == "resnet101" else set(OFFICIAL_UNUSED)
    assert {prefix for prefix in OFFICIAL_UNUSED for key in unused if key.startswith(prefix)} == expected_unused
    assert set(mapped) == set(ours), (sorted(set(mapped) - set(ours))[:5], sorted(set(ours) - set(mapped))[:5])
    assert len(mapped) == len(official) - len(unused)  # no two official names land on one of ours
    assert all(mapped[name].shape == ours[name].shape for name in ours)
    with pytest.raises(KeyError, match="not a name"):
        official_key("net.scratch.auxlayer.weight")


def test_an_official_checkpoint_loads_every_tensor(clip_files, tmp_path):
    """A micro model's tensors saved under the official names (those of the ViT-L/16 tree, which hold a
    patch-16 ViT's and a micro CLIP's) load into a fresh model; the official model's unused tensors are skipped."""
    with torch.device("meta"):
        official_names = {official_key(key): key for key in official_lseg_tree("vit_large_patch16_384", 0).state_dict()}
    model = micro_lseg(clip_files, backbone="vit_tiny_patch16_224", readout="project")
    state = {official_names[name]: value for name, value in model.state_dict().items()}
    state["net.pretrained.model.head.weight"] = torch.zeros(1000, 192)
    torch.save({"state_dict": state, "epoch": 199}, tmp_path / "official.ckpt")
    torch.manual_seed(1)
    fresh = LSeg(
        str(clip_files["ViT-Micro-8"]), architecture="ViT-Micro-8", backbone="vit_tiny_patch16_224", features=16
    )
    fresh.load_official_checkpoint(tmp_path / "official.ckpt")
    for name, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], value, msg=name)


# --- training ------------------------------------------------------------------------------------------
class FakeSegmentationData(L.LightningDataModule):
    classnames = LABELS
    templates = ["a photo of a {}."]

    def train_dataloader(self):
        torch.manual_seed(0)
        masks = torch.randint(0, len(LABELS), (8, 64, 64))
        masks[:, :4] = 255  # unlabelled rows
        batches = [
            {"image": torch.randn(4, 3, 64, 64), "mask": masks[i : i + 4], "index": torch.arange(i, i + 4)}
            for i in (0, 4)
        ]
        return DataLoader(batches, batch_size=None)


def test_a_training_step_changes_the_decoder_and_the_tower_copy_but_not_the_frozen_clip(clip_files, trainer):
    model = micro_lseg(clip_files, "RN-Tiny")
    before = {name: value.clone() for name, value in model.state_dict().items()}
    run = trainer(max_epochs=1, max_steps=1)
    run.fit(model, FakeSegmentationData())
    after = model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert not any(name.startswith("model.") for name in changed)
    assert any(name.startswith("decoder.") for name in changed) and any(name.startswith("head.") for name in changed)
    assert any(name.startswith("encoder.tower.layer1.") for name in changed)
    assert not any(name.startswith("encoder.tower.attnpool.") for name in changed)
    assert model.classnames == tuple(LABELS)
    optimizer = run.optimizers[0]
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.004, 0.04])  # epoch 0 of the poly
    assert isinstance(model.text_classifier, torch.Tensor) and math.isfinite(run.callback_metrics["train/loss"])


# --- the benchmark -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_benchmark_quick_mode_prints_ratios():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_lseg", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("|---")][1:]
    assert rows and all("x" in line for line in rows)
