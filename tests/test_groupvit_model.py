"""GroupViT's towers: shapes through the stages, the assignments, agreement with transformers' GroupViTModel, and
loading / export in the official, transformers' and our own layouts."""
import dataclasses
from collections import OrderedDict

import huggingface_hub
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from transformers import GroupViTConfig as HFGroupViTConfig
from transformers import GroupViTModel
from transformers.models.groupvit.modeling_groupvit import get_grouping_from_attentions

import lit_clip
from lit_clip.models import GROUPVIT_ARCHITECTURES, GroupViT, create_model, family_of
from lit_clip.models import groupvit as gv
from lit_clip.transforms import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

MICRO = GROUPVIT_ARCHITECTURES["GroupViT-Micro"]
# transformers' GroupViT as small as it gets, with three stages of groups 16 -> 4 over 8 x 8 patches.
HF_TINY = {
    "text_config": {"hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "max_position_embeddings": 16, "vocab_size": 100, "bos_token_id": 98, "eos_token_id": 99,
                    "pad_token_id": 0},
    "vision_config": {"hidden_size": 32, "intermediate_size": 128, "depths": [2, 1, 1], "num_hidden_layers": 4,
                      "num_group_tokens": [16, 4, 0], "num_output_groups": [16, 4, 4], "num_attention_heads": 2,
                      "image_size": 32, "patch_size": 4},
    "projection_dim": 16,
    "projection_intermediate_dim": 24,
}  # fmt: skip


def perturb_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Noise on every tensor, so what initialisation leaves constant (biases, norms, BatchNorm statistics, zero
    group tokens and positions) shows when it lands in the wrong place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if not tensor.is_floating_point() or name.endswith("logit_scale"):
                continue
            if name.endswith("running_var"):
                tensor.mul_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif tensor.ndim == 1:
                tensor.add_(0.2 * torch.rand(tensor.shape, generator=generator) - 0.1)
            else:
                tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
    return model


def token_ids(batch: int, length: int, vocab: int) -> torch.Tensor:
    """SOT, words, EOT (the highest id), zero padding: CLIP's tokenisation, of several lengths."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, vocab - 2, (batch, length), generator=generator)
    ids[:, 0] = vocab - 2
    for row in range(batch):
        end = 2 + row * (length - 3) // max(1, batch - 1)
        ids[row, end], ids[row, end + 1 :] = vocab - 1, 0
    return ids


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


@pytest.fixture(scope="module")
def micro() -> GroupViT:
    torch.manual_seed(0)
    return perturb_(create_model("GroupViT-Micro")).eval()


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory) -> tuple[GroupViTModel, object]:
    """transformers' tiny GroupViTModel with random weights, in eval mode, and the directory it is saved in."""
    torch.manual_seed(0)
    model = perturb_(GroupViTModel(HFGroupViTConfig(**HF_TINY))).eval()
    directory = tmp_path_factory.mktemp("hf-groupvit")
    model.save_pretrained(directory)
    return model, directory


# --- the model -------------------------------------------------------------------------------------
def test_family_builds_both_architectures_by_name_and_on_the_meta_device():
    assert family_of("GroupViT-S-16").name == family_of("GroupViT-Micro").name == "groupvit"
    assert {"GroupViT-S-16", "GroupViT-Micro"} <= set(lit_clip.architecture_names())
    with torch.device("meta"):
        model = family_of("GroupViT-S-16").build("GroupViT-S-16", init_logit_bias=None)
    assert isinstance(model, GroupViT) and model.architecture == "GroupViT-S-16" and model.logit_bias is None
    c = model.config
    assert (c.vision.width, c.vision.heads, c.vision.patch_size, c.vision.image_size) == (384, 6, 16, 224)
    assert (c.vision.depths, c.vision.num_group_tokens, c.vision.num_output_groups) == ((6, 3, 3), (64, 8, 0), (64, 8))
    text = (c.text.width, c.text.layers, c.text.heads, c.text.context_length, c.text.vocab_size)
    assert text == (256, 12, 4, 77, 49408)
    assert (c.projection_hidden, c.embed_dim, c.quick_gelu) == (4096, 256, True)
    assert model.logit_scale.shape == model.multi_label_logit_scale.shape == ()
    biased = create_model("GroupViT-Micro", init_logit_bias=-10.0)
    assert biased.logit_bias.item() == -10.0


def test_shapes_through_the_stages(micro):
    images = torch.randn(2, 3, 64, 64)
    features = micro.visual.forward_features(images)
    # 64 patches -> 16 segments -> 4; the last stage keeps 4
    assert features.grid == (8, 8) and features.tokens.shape == (2, 4, 64)
    assert [a.shape for a in features.assignments] == [(2, 16, 64), (2, 4, 16)]
    groups = micro.encode_groups(images)
    assert groups.embeddings.shape == (2, 4, 32) and micro.encode_image(images).shape == (2, 32)
    torch.testing.assert_close(groups.image_embeddings, micro.encode_image(images))
    assert [m.shape for m in groups.maps()] == [(2, 16, 8, 8), (2, 4, 8, 8)]
    assert [m.shape for m in groups.maps((64, 48))] == [(2, 16, 64, 48), (2, 4, 64, 48)]
    assert micro.encode_text(token_ids(3, 12, 49408)).shape == (3, 32)
    assert micro.encode_text(token_ids(6, 12, 49408).view(2, 3, 12)).shape == (2, 3, 32)  # caption + 2 prompts
    assert micro.encode_image(torch.randn(1, 3, 80, 96)).shape == (1, 32)  # positions resized


def test_assignments_sum_to_one_over_groups_and_are_one_hot_in_eval(micro):
    groups = micro.encode_groups(torch.randn(2, 3, 64, 64))
    for soft, hard in zip(groups.assignments, groups.hard_assignments):
        torch.testing.assert_close(soft.sum(dim=1), torch.ones(soft.shape[0], soft.shape[2]))
        assert set(hard.unique().tolist()) == {0.0, 1.0} and (hard.sum(dim=1) == 1).all()
        assert torch.equal(hard.argmax(dim=1), soft.argmax(dim=1))  # evaluation: the argmax of the soft one
    for stage_map in groups.maps((64, 64)):  # pixels too, through the composed stages and the resizing
        torch.testing.assert_close(stage_map.sum(dim=1), torch.ones(2, 64, 64))


def test_gumbel_straight_through_gives_the_assignment_gradients():
    torch.manual_seed(0)
    model = create_model("GroupViT-Micro").train()
    groups = model.encode_groups(torch.randn(8, 3, 64, 64))
    for hard in groups.hard_assignments:
        assert (hard.sum(dim=1) == 1).all()  # hard in training too: Gumbel samples, one group per token
    loss = model.encode_image(torch.randn(8, 3, 64, 64)).square().mean()
    loss.backward()
    for stage in model.visual.stages[:-1]:
        # q and k reach the output only through the assignment: the one-hot passes the softmax's gradient on.
        for projection in (stage.grouping.assign.q_proj, stage.grouping.assign.k_proj):
            assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0


def test_bf16_autocast_training_step_stays_finite():
    torch.manual_seed(0)
    model = create_model("GroupViT-Micro").train()
    images, ids = torch.randn(8, 3, 64, 64), token_ids(8, 16, 49408)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        image_features, text_features, logit_scale = model(images, ids)
        logits = logit_scale * image_features @ text_features.T
        labels = torch.arange(8)
        loss = (F.cross_entropy(logits.float(), labels) + F.cross_entropy(logits.float().T, labels)) / 2
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gradient_checkpointing_gives_the_same_gradients(micro):
    images, ids = torch.randn(4, 3, 64, 64), token_ids(4, 16, 49408)

    def gradients() -> dict[str, torch.Tensor]:
        micro.zero_grad()
        image, text, scale = micro(images, ids)  # eval mode: argmax assignments, no noise
        (scale * image @ text.T).logsumexp(dim=1).sum().backward()
        return {name: p.grad.clone() for name, p in micro.named_parameters() if p.grad is not None}

    plain = gradients()
    micro.set_grad_checkpointing(True)
    try:
        checkpointed = gradients()
    finally:
        micro.set_grad_checkpointing(False)
        micro.zero_grad()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


# --- transformers ----------------------------------------------------------------------------------
def test_agrees_with_transformers_groupvit(hf_tiny):
    theirs, directory = hf_tiny
    ours = lit_clip.load_clip(directory)
    assert isinstance(ours, GroupViT) and not ours.training
    assert ours.config == gv.config_from_hf(theirs.config.to_dict())
    # The same pixels: CLIP-normalised for ours (every lit-clip data module's), ImageNet-normalised for theirs
    # (the statistics the released weights were trained on; our tower converts).
    pixels = torch.rand(3, 3, 32, 32)
    images = (pixels - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    imagenet = (pixels - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    ids = token_ids(3, 12, 100)
    with torch.no_grad():
        vision = theirs.vision_model(pixel_values=imagenet, output_attentions=True, return_dict=True)
        image = theirs.visual_projection(vision.pooler_output)
        text = theirs.get_text_features(input_ids=ids).pooler_output
        their_groups = theirs.visual_projection(vision.last_hidden_state.flatten(0, 1)).unflatten(0, (3, -1))
        groups = ours.encode_groups(images)
        assert relative(ours.encode_image(images), image) < 1e-4
        assert relative(ours.encode_text(ids), text) < 1e-4
        assert relative(groups.embeddings, their_groups) < 1e-4
        assert len(groups.assignments) == len(vision.attentions) == 2
        for mine, their in zip(groups.assignments, vision.attentions):
            assert mine.shape == their.shape and relative(mine, their) < 1e-4
        final = get_grouping_from_attentions(vision.attentions, (32, 32))
        assert relative(groups.maps((32, 32))[-1], final) < 1e-4


def test_transformers_hub_id_goes_through_the_hub_download(hf_tiny, monkeypatch):
    _, directory = hf_tiny
    asked = []

    def snapshot_download(repo_id, allow_patterns):
        asked.append((repo_id, allow_patterns))
        return str(directory)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    ours = lit_clip.load_clip("nvidia/groupvit-gcc-yfcc")
    assert isinstance(ours, GroupViT) and asked[0][0] == "nvidia/groupvit-gcc-yfcc"
    assert "config.json" in asked[0][1]


def test_save_huggingface_is_read_by_transformers_and_back(micro, tmp_path):
    lit_clip.save_huggingface(micro, tmp_path)
    theirs = GroupViTModel.from_pretrained(tmp_path).eval()
    images, ids = torch.randn(2, 3, 64, 64), token_ids(2, 20, 49408)
    with torch.no_grad():
        assert relative(micro.encode_image(images), theirs.get_image_features(pixel_values=images).pooler_output) < 1e-4
        assert relative(micro.encode_text(ids), theirs.get_text_features(input_ids=ids).pooler_output) < 1e-4
    back = lit_clip.load_clip(tmp_path)
    assert back.architecture == "GroupViT-Micro" and back.config == micro.config  # its CLIP-statistics input too
    for name, tensor in micro.state_dict().items():  # the multi-label scale too, which transformers ignores
        assert torch.equal(back.state_dict()[name], tensor), name


def test_the_released_weights_see_imagenet_statistics_and_ours_clip_s():
    """The paper's geometry (the released weights) converts CLIP-normalised input to ImageNet's; GroupViT-Micro,
    trained here on lit-clip's data, takes it as it comes."""
    assert GROUPVIT_ARCHITECTURES["GroupViT-S-16"].vision.image_normalization == "imagenet"
    assert GROUPVIT_ARCHITECTURES["GroupViT-Micro"].vision.image_normalization == "clip"
    pixels = torch.rand(1, 3, 8, 8)
    clip_normalized = (pixels - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    tower = gv.GroupViTImageTower(GROUPVIT_ARCHITECTURES["GroupViT-S-16"].vision)
    expected = (pixels - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(tower.normalize(clip_normalized), expected)


def test_the_paper_geometry_is_transformers_default_groupvit():
    assert gv.config_from_hf(HFGroupViTConfig().to_dict()) == GROUPVIT_ARCHITECTURES["GroupViT-S-16"]
    with torch.device("meta"):
        theirs = GroupViTModel(HFGroupViTConfig()).state_dict()
        ours = gv.to_hf(create_model("GroupViT-S-16").state_dict())
    assert set(ours) - set(theirs) == {"multi_label_logit_scale"} and set(theirs) <= set(ours)
    assert all(ours[name].shape == theirs[name].shape for name in theirs)


@pytest.mark.parametrize("name", sorted(GROUPVIT_ARCHITECTURES))
def test_transformers_names_cover_every_parameter_both_ways(name):
    with torch.device("meta"):
        state = create_model(name).state_dict()
    hf_state = gv.to_hf(state)
    assert not any(key.startswith(("visual.", "transformer.", "image_projector")) for key in hf_state)
    back = gv.from_hf(hf_state)
    assert list(back) == list(state) and all(back[k].shape == state[k].shape for k in state)


# --- the official layout ---------------------------------------------------------------------------
def official_groupvit_tree(config: gv.GroupViTConfig) -> nn.Module:
    """The official ``MultiLabelContrastive`` parameter tree (NVlabs/GroupViT ``models/group_vit.py``,
    ``models/transformer.py``, ``models/utils.py``, ``models/multi_label_contrastive.py``), rebuilt from their module
    definitions, with placeholders where a module holds no tensors."""
    v, t = config.vision, config.text
    width = v.width

    def mlp(features: int, hidden: int, out: int) -> nn.Module:  # Mlp / MixerMlp
        module = nn.Module()
        module.fc1, module.fc2 = nn.Linear(features, hidden), nn.Linear(hidden, out)
        return module

    def attention(fused: bool) -> nn.Module:  # Attention(qkv_fuse=...) / AssignAttention
        module = nn.Module()
        if fused:
            module.qkv = nn.Linear(width, 3 * width)
        else:
            module.q_proj, module.k_proj, module.v_proj = (nn.Linear(width, width) for _ in range(3))
        module.proj = nn.Linear(width, width)
        return module

    def attn_block() -> nn.Module:  # AttnBlock
        block = nn.Module()
        block.norm1, block.attn, block.norm2 = nn.LayerNorm(width), attention(True), nn.LayerNorm(width)
        block.mlp = mlp(width, int(width * v.mlp_ratio), width)
        return block

    def grouping_block(groups: int, out_groups: int) -> nn.Module:  # GroupingBlock
        block = nn.Module()
        block.norm_tokens, block.norm_post_tokens, block.norm_x = (nn.LayerNorm(width) for _ in range(3))
        block.mlp_inter = mlp(groups, int(v.assign_mlp_ratio[0] * width), out_groups)
        cross = nn.Module()  # CrossAttnBlock(post_norm=True)
        cross.norm_post, cross.attn, cross.norm2 = nn.LayerNorm(width), attention(False), nn.LayerNorm(width)
        cross.mlp = mlp(width, 4 * width, width)
        block.pre_assign_attn, block.assign = cross, attention(False)
        block.norm_new_x = nn.LayerNorm(width)
        block.mlp_channels = mlp(width, int(v.assign_mlp_ratio[1] * width), width)
        return block

    image = nn.Module()
    image.patch_embed = nn.Module()
    image.patch_embed.proj = nn.Conv2d(3, width, v.patch_size, v.patch_size)
    image.patch_embed.norm = nn.LayerNorm(width)
    image.pos_embed = nn.Parameter(torch.zeros(1, (v.image_size // v.patch_size) ** 2, width))
    image.layers = nn.ModuleList()
    for i, depth in enumerate(v.depths):
        layer = nn.Module()  # GroupingLayer
        if v.num_group_tokens[i]:
            layer.group_token = nn.Parameter(torch.zeros(1, v.num_group_tokens[i], width))
        layer.blocks = nn.ModuleList(attn_block() for _ in range(depth))
        if i < len(v.depths) - 1:
            layer.downsample = grouping_block(v.num_group_tokens[i], v.num_output_groups[i])
        if i > 0 and v.num_group_tokens[i]:
            layer.group_projector = nn.Sequential(
                nn.LayerNorm(width), mlp(v.num_group_tokens[i - 1], width // 2, v.num_group_tokens[i])
            )
        image.layers.append(layer)
    image.norm = nn.LayerNorm(width)

    text = nn.Module()  # TextTransformer: OpenAI's
    text.transformer = nn.Module()
    text.transformer.resblocks = nn.Sequential()
    for _ in range(t.layers):
        block = nn.Module()
        block.attn = nn.MultiheadAttention(t.width, t.width // 64 or 1)
        block.ln_1, block.ln_2 = nn.LayerNorm(t.width), nn.LayerNorm(t.width)
        block.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(t.width, 4 * t.width), gelu=nn.GELU(),
                                              c_proj=nn.Linear(4 * t.width, t.width)))  # fmt: skip
        text.transformer.resblocks.append(block)
    text.positional_embedding = nn.Parameter(torch.zeros(t.context_length, t.width))
    text.ln_final = nn.LayerNorm(t.width)
    text.token_embedding = nn.Embedding(t.vocab_size, t.width)

    def projector(features: int) -> nn.Module:  # ProjectMLP(num_layers=2)
        module = nn.Module()
        module.linear_hidden = nn.Sequential(
            nn.Conv1d(features, config.projection_hidden, 1), nn.BatchNorm1d(config.projection_hidden), nn.ReLU()
        )
        module.linear_out = nn.Conv1d(config.projection_hidden, config.embed_dim, 1)
        return module

    model = nn.Module()
    model.img_encoder, model.text_encoder = image, text
    model.logit_scale = nn.Parameter(torch.zeros(()))
    model.img_projector, model.text_projector = projector(width), projector(t.width)
    model.multi_label_logit_scale = nn.Parameter(torch.zeros(()))
    return model


@pytest.mark.parametrize("name", sorted(GROUPVIT_ARCHITECTURES))
def test_official_names_map_one_to_one_onto_ours(name):
    config = GROUPVIT_ARCHITECTURES[name]
    with torch.device("meta"):
        official = official_groupvit_tree(config).state_dict()
        ours = create_model(name).state_dict()
    mapped = gv.to_official(ours)
    assert set(mapped) == set(official)
    assert all(mapped[key].shape == official[key].shape for key in official)
    back = gv.from_official(official)
    assert set(back) == set(ours) and all(back[k].shape == ours[k].shape for k in ours)


def test_official_checkpoint_loads_by_its_names(tmp_path):
    torch.manual_seed(0)
    official = perturb_(official_groupvit_tree(MICRO)).state_dict()
    file = tmp_path / "group_vit_micro-0123abcd.pth"
    # As the official save_checkpoint writes it: the weights, the epoch, metrics, and the run's OmegaConf config.
    config = OmegaConf.create({"model": {"type": "MultiLabelContrastive", "img_encoder": {"depths": [2, 1, 1]}},
                               "train": {"base_lr": 1.6e-3, "epochs": 30, "amp_opt_level": "O1"}, "tag": None})
    content = {"model": {f"module.{k}": v for k, v in official.items()}, "epoch": 29, "metrics": {"acc1": 1.0}}
    torch.save({**content, "config": config}, file)
    ours = lit_clip.load_clip(file)
    assert ours.architecture == "GroupViT-Micro"  # its geometry, 32-wide heads included
    for key, tensor in gv.to_official(ours.state_dict()).items():
        assert torch.equal(tensor, official[key]), key


def test_lit_clip_checkpoints_and_state_dicts_load(micro, tmp_path):
    state = {f"model.{k}": v for k, v in micro.state_dict().items()}
    hyper_parameters = {"architecture": "GroupViT-Micro"}
    by_name = {"pytorch-lightning_version": "2.5", "state_dict": state, "hyper_parameters": hyper_parameters}
    torch.save(by_name, tmp_path / "named.ckpt")
    by_config = {"pytorch-lightning_version": "2.5", "state_dict": state, "clip_config": dataclasses.asdict(MICRO)}
    torch.save(by_config, tmp_path / "config.ckpt")
    torch.save(micro.state_dict(), tmp_path / "bare.pt")
    for file in ("named.ckpt", "config.ckpt", "bare.pt"):
        loaded = lit_clip.load_clip(tmp_path / file)
        assert isinstance(loaded, GroupViT) and loaded.architecture == "GroupViT-Micro", file
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in micro.state_dict().items()), file
