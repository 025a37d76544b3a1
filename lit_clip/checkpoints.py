"""Load CLIP weights from OpenAI, open_clip, Hugging Face and lit-clip checkpoints; export to HF and open_clip.

:func:`load_clip` reads top-down: find the format of the source, read its
tensors under our parameter names (OpenAI's, which open_clip kept), work out
the architecture (from what the file records, else from the tensor shapes),
then build the model and load every tensor strictly.

What a file records about the activation (OpenAI's weights need QuickGELU,
open_clip's LAION weights exact GELU; mixing them up costs a few points of
accuracy without any error):

- OpenAI's files (TorchScript archives, or state dicts with their
  ``input_resolution`` / ``context_length`` / ``vocab_size`` entries): QuickGELU.
- Hugging Face: ``hidden_act`` in config.json.
- lit-clip: the ``-quickgelu`` suffix of the run's architecture name.
- open_clip's hub layout (``open_clip_config.json`` beside the weights, as the LAION and timm
  repositories ship them): ``model_cfg.quick_gelu``.
- bare open_clip state dicts record nothing: exact GELU unless told otherwise, with a warning.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import json
import math
import os
import pickle
import re
import typing
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import omegaconf
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lit_clip.models import audioclip, groupvit
from lit_clip.models.clip import (
    CLIP,
    CLIPConfig,
    TextConfig,
    VisionConfig,
    config_from_dict,
    get_config,
    hf_text_config,
)
from lit_clip.models.registry import family_of
from lit_clip.models.timm_tower import TIMM_ARCHITECTURES
from lit_clip.models.transformer import VisionTransformer

# Where CLIPPretraining records what a CLIP it did not build by name (one from `pretrained`) is: another family's
# architecture name, or a CLIP's geometry.
CLIP_ARCHITECTURE_KEY = "clip_architecture"
CLIP_CONFIG_KEY = "clip_config"


def record_clip_geometry(checkpoint: dict, model) -> None:
    """Write into a Lightning checkpoint what its CLIP is (a registered family's architecture name, or its geometry
    and activation), so that ``load_clip`` rebuilds a CLIP that came from ``pretrained`` weights rather than from
    the ``architecture`` named in the hyper-parameters."""
    if model.architecture is not None:
        checkpoint[CLIP_ARCHITECTURE_KEY] = model.architecture
    else:
        checkpoint[CLIP_CONFIG_KEY] = dataclasses.asdict(model.config)

# OpenAI's archives carry these as tensors next to the weights; they mark a file as OpenAI's.
OPENAI_EXTRA_ENTRIES = ("input_resolution", "context_length", "vocab_size")
# A path with one of these endings is a missing file, never a hub id.
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".tar"}
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
HF_SAFETENSORS_FILES = ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]
HF_BIN_FILE = "pytorch_model.bin"
# open_clip's layout on the Hugging Face Hub (its push_to_hf_hub), and its prefix for such ids.
OPEN_CLIP_HUB_PREFIX = "hf-hub:"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def load_clip(
    source: str | os.PathLike, architecture: str | None = None, quick_gelu: bool | None = None
) -> CLIP:
    """Our :class:`~lit_clip.models.clip.CLIP` with the weights of ``source``, in eval mode, fp32, on the CPU.

    Args:
        source: one of
            - an OpenAI checkpoint: the TorchScript archive OpenAI distributes, or a plain state dict;
            - an open_clip checkpoint: a state dict, or a training checkpoint ``{"state_dict": ...}``
              (``module.`` prefixes are dropped); ``.safetensors`` files too;
            - a Hugging Face CLIP model directory (config.json + model.safetensors or pytorch_model.bin),
              or a hub id such as ``openai/clip-vit-base-patch32`` (ViT models only);
            - open_clip's hub layout: a directory with ``open_clip_config.json`` and
              ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``, or an ``hf-hub:`` id of
              one such as ``hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K``;
            - a lit-clip Lightning checkpoint of :class:`~lit_clip.methods.CLIPPretraining`; an architecture of
              another registered model family (``lit_clip.models.registry``) is rebuilt by that family;
            - GroupViT (a :class:`~lit_clip.models.groupvit.GroupViT` comes back): the official checkpoints
              (``group_vit_gcc_yfcc_30e-879422e0.pth``: ``{"model": state_dict, ...}`` with NVlabs/GroupViT's names;
              its heads are taken 64 wide, as in the released models), a transformers GroupViT directory
              (config.json with model_type "groupvit") or hub id such as ``nvidia/groupvit-gcc-yfcc``, and our
              own state dicts and checkpoints. Like every file here, official ones load with ``weights_only=True``;
              the OmegaConf config the official training pickles beside the weights is allowed through (its
              containers and plain nodes only);
            - SLIP's released checkpoints (``slip_base_25ep.pt`` and the others: a CLIP of the timm family,
              ``SLIP-ViT-{S,B,L}-16``, comes back; the SSL head is left out);
            - AudioCLIP (a :class:`~lit_clip.models.audioclip.AudioCLIP` comes back): the released state dicts
              (``AudioCLIP-Full-Training.pt``, ``AudioCLIP-Partial-Training.pt``; OpenAI's RN50 with QuickGELU and
              the ESResNeXt-fbsp tower), and our own state dicts and checkpoints.
        architecture: a name of :func:`lit_clip.architecture_names`; sets the geometry instead of
            working it out. Needed when it cannot be read off the tensors: attention heads are assumed
            to be 64 wide in OpenAI / open_clip files, and open_clip's CLIPs with a timm image tower are
            known by their config name only (``convnext_base_w``: ``lit_clip.models.TIMM_ARCHITECTURES``).
        quick_gelu: the activation, overriding what the file records. open_clip state dicts record
            nothing and load with exact GELU (right for LAION weights of non-``-quickgelu`` configs);
            for OpenAI-trained or ``-quickgelu``-trained open_clip weights pass ``quick_gelu=True`` or
            an ``-quickgelu`` architecture. The architectures of other families set their own activation.

    The activation is, in order: ``quick_gelu`` if given, what the file records, the ``-quickgelu``
    suffix of ``architecture``, exact GELU.
    """
    checkpoint = _read(source)
    named = architecture or checkpoint.architecture
    if named is not None and family_of(named).name != "clip":
        return _build_by_family(named, checkpoint, source, quick_gelu)
    if architecture is None and isinstance(checkpoint.config, groupvit.GroupViTConfig):
        return _build_groupvit(checkpoint, source, quick_gelu)
    if architecture is None and audioclip.is_audioclip_state(checkpoint.state_dict):
        return _build_audioclip(checkpoint, source, quick_gelu)
    if architecture is not None:
        config, name = get_config(architecture), architecture
    elif checkpoint.config is not None:
        config, name = checkpoint.config, checkpoint.architecture or _describe(checkpoint.config)
    else:
        config = _infer_config(checkpoint.state_dict, source)
        name = _describe(config)
    activation = next(q for q in (quick_gelu, checkpoint.quick_gelu, config.quick_gelu) if q is not None)
    if quick_gelu is None and architecture is None and checkpoint.quick_gelu is None and checkpoint.kind.startswith("open_clip"):
        warnings.warn(
            f"{source}: an open_clip state dict does not record its activation; loaded with exact GELU, right for "
            "LAION weights of non-quickgelu configs. For OpenAI-trained or -quickgelu weights pass quick_gelu=True "
            "(--model.init_args.quick_gelu true) or a -quickgelu architecture.",
            stacklevel=2,
        )
    config = dataclasses.replace(config, quick_gelu=activation)
    # Built without memory or random initialisation: the checkpoint's tensors become the parameters.
    # The bias value is a placeholder for the same reason.
    with torch.device("meta"):
        model = CLIP(config, init_logit_bias=0.0 if "logit_bias" in checkpoint.state_dict else None)
    _load_strictly(model, checkpoint.state_dict, f"{source} ({checkpoint.kind})", name)
    return model.eval()


def _build_by_family(
    architecture: str, checkpoint: _Checkpoint, source: str | os.PathLike, quick_gelu: bool | None = None
) -> CLIP:
    """A model of another registered family (``lit_clip.models.registry``), rebuilt by its architecture name, which
    sets the activation too: ``quick_gelu`` may only agree with it."""
    family = family_of(architecture)
    bias = 0.0 if "logit_bias" in checkpoint.state_dict else None
    model = _empty_model(lambda: family.build(architecture, init_logit_bias=bias))
    if quick_gelu is not None and quick_gelu != model.config.quick_gelu:
        activation = "QuickGELU" if model.config.quick_gelu else "exact GELU"
        raise ValueError(
            f"architecture {architecture!r} (family {family.name!r}) has {activation} in its text tower; "
            f"quick_gelu={quick_gelu} cannot change it"
        )
    _load_strictly(model, checkpoint.state_dict, f"{source} ({checkpoint.kind})", architecture)
    model.architecture = architecture
    return model.eval()


def _empty_model(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` on the meta device (no memory, no random initialisation: a checkpoint's tensors become the
    parameters), or for real when the model computes buffers it does not store (the relative-position indices of
    timm's Swin and relpos ViTs, GroupViT's input normalisation), which would stay empty on the meta device."""
    with torch.device("meta"):
        model = build()
    stored = model.state_dict()
    if any(name not in stored for name, _ in model.named_buffers()):
        model = build()
    return model


def _build_groupvit(checkpoint: _Checkpoint, source: str | os.PathLike, quick_gelu: bool | None) -> groupvit.GroupViT:
    """A GroupViT of the geometry the file records or its tensors show; ``quick_gelu`` sets the text tower's
    activation. Named after the registered architecture of exactly that geometry, where there is one."""
    config = checkpoint.config
    if quick_gelu is not None:
        config = dataclasses.replace(config, quick_gelu=quick_gelu)
    bias = 0.0 if "logit_bias" in checkpoint.state_dict else None
    model = _empty_model(lambda: groupvit.GroupViT(config, init_logit_bias=bias))
    name = groupvit.architecture_of(config)
    _load_strictly(model, checkpoint.state_dict, f"{source} ({checkpoint.kind})", name or f"GroupViT({config})")
    model.architecture = name
    return model.eval()


def _build_audioclip(checkpoint: _Checkpoint, source: str | os.PathLike, quick_gelu: bool | None) -> audioclip.AudioCLIP:
    """An AudioCLIP of the geometry the file records or, for the released files, its tensors show (the CLIP's as
    for OpenAI's files, the audio tower's among the audio architectures). The released AudioCLIP's CLIP is OpenAI's
    RN50: its state dicts load with QuickGELU unless ``quick_gelu`` says otherwise."""
    state, config = checkpoint.state_dict, checkpoint.config
    if config is None:
        clip_state = {key: value for key, value in state.items()
                      if not key.startswith("audio.") and key not in audioclip.AUDIO_SCALE_NAMES}  # fmt: skip
        config = audioclip.AudioCLIPConfig(_infer_config(clip_state, source), audioclip.infer_audio_config(state, source))
    activation = next(q for q in (quick_gelu, checkpoint.quick_gelu, config.clip.quick_gelu) if q is not None)
    config = dataclasses.replace(config, clip=dataclasses.replace(config.clip, quick_gelu=activation))
    bias = 0.0 if "logit_bias" in state else None
    model = _empty_model(lambda: audioclip.AudioCLIP(config, init_logit_bias=bias))
    name = f"AudioCLIP({_describe(config.clip)}; audio tower {audioclip.audio_architecture_name(config.audio)})"
    _load_strictly(model, state, f"{source} ({checkpoint.kind})", name)
    return model.eval()


@dataclass
class _Checkpoint:
    """A file's tensors under our names, and what the file records about the architecture."""

    state_dict: dict[str, Tensor]
    kind: str
    config: CLIPConfig | groupvit.GroupViTConfig | audioclip.AudioCLIPConfig | None = None
    architecture: str | None = None
    quick_gelu: bool | None = None


# --- finding the format ----------------------------------------------------------------------------
def _read(source: str | os.PathLike) -> _Checkpoint:
    if isinstance(source, str) and source.startswith(OPEN_CLIP_HUB_PREFIX):
        repo_id = source.removeprefix(OPEN_CLIP_HUB_PREFIX)
        # One weights file, as open_clip's own hf-hub: loading fetches them.
        return _read_open_clip_directory(_download_from_hub(repo_id, OPEN_CLIP_CONFIG, [[w] for w in OPEN_CLIP_WEIGHTS]))
    path = Path(source)
    if path.is_dir():
        if (path / OPEN_CLIP_CONFIG).is_file():
            return _read_open_clip_directory(path)
        return _read_hf_directory(path)
    if path.is_file():
        return _read_file(path)
    message = f"no checkpoint file or model directory at {str(source)!r}"
    # Only strings can be hub ids: a Path is meant as a file, and so is `runs/last` when runs/ is here.
    if isinstance(source, str) and HUB_ID.fullmatch(source) and path.suffix not in CHECKPOINT_SUFFIXES:
        first = source.partition("/")[0]
        if not Path(first).exists():
            return _read_hf_directory(_download_from_hub(source, "config.json", [HF_SAFETENSORS_FILES, [HF_BIN_FILE]]))
        message += f" (a local path, not a Hugging Face Hub id, since {first!r} exists here)"
    # A near miss, such as runs/last for runs/last.ckpt, is worth naming.
    near = sorted(path.parent.glob(glob.escape(path.name) + ".*")) if path.parent.is_dir() else []
    if near:
        message += f"; did you mean {' or '.join(str(p) for p in near[:3])}?"
    raise FileNotFoundError(message)


def _read_file(path: Path) -> _Checkpoint:
    if _is_torchscript(path):
        # OpenAI's archives are TorchScript; only their tensors are used. torch.jit is deprecated,
        # which is no concern of whoever loads OpenAI's files.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            state = dict(torch.jit.load(path, map_location="cpu").state_dict())
        return _from_state_dict(state, "TorchScript archive", openai=True)
    if path.suffix == ".safetensors":
        state = _load_safetensors(path)
        if any(key.startswith(("text_model.", "vision_model.")) for key in state):
            raise ValueError(
                f"{path} holds Hugging Face CLIP weights, whose geometry is in config.json: "
                f"pass the directory holding both, load_clip({str(path.parent)!r})"
            )
        return _from_state_dict(state, "safetensors file")
    content = _torch_load(path)
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a checkpoint (a dict of tensors)")
    if "pytorch-lightning_version" in content:
        return _from_lightning(content)
    if isinstance(content.get("model"), dict) and groupvit.is_official_state(content["model"]):
        return _from_state_dict(content["model"], "checkpoint")  # the official GroupViT's {"model": ...}
    if isinstance(content.get("state_dict"), dict):
        return _from_state_dict(content["state_dict"], "training checkpoint")
    return _from_state_dict(content, "state dict")


# OmegaConf's containers and plain value nodes: data, as safe to rebuild as dicts and lists.
OMEGACONF_CONTAINERS = [
    omegaconf.DictConfig, omegaconf.ListConfig, omegaconf.base.ContainerMetadata, omegaconf.base.Metadata,
    omegaconf.nodes.AnyNode, omegaconf.nodes.StringNode, omegaconf.nodes.IntegerNode, omegaconf.nodes.FloatNode,
    omegaconf.nodes.BooleanNode, typing.Any, dict, list, collections.defaultdict, int, float, str, bool,
]  # fmt: skip


def _torch_load(path: Path):
    """``torch.load`` of a file that may come from anywhere: only tensors, numbers, strings and containers."""
    try:
        # Lightning, open_clip and Hugging Face .bin checkpoints hold nothing else, so they load
        # without running arbitrary pickled code; GroupViT's official files add their run's OmegaConf config, SLIP's
        # their run's argparse arguments.
        with torch.serialization.safe_globals([*OMEGACONF_CONTAINERS, argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a file that is not its own
        # torch's own message is long and suggests weights_only=False; keep only what it found.
        text = str(error)
        pickled = re.search(r"GLOBAL ([\w.]+)", text)
        detail = text.partition("WeightsUnpickler error:")[2].strip() or text
        found = f"it pickles {pickled[1]}" if pickled else f"{type(error).__name__}: {detail.splitlines()[0]}"
        message = f"{path} is not a checkpoint that torch.load can read safely ({found})"
        if isinstance(error, pickle.UnpicklingError):  # what weights_only raises for content it refuses
            message += (
                ": lit-clip loads with weights_only=True, which refuses to unpickle non-tensor content "
                "(anything but tensors, numbers, strings and containers), since that could run code"
            )
        raise ValueError(message) from error


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(path)
    except SafetensorError as error:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from error


def _read_json(path: Path, expected: str) -> dict:
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); expected {expected}") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds a JSON {type(content).__name__}; expected {expected}")
    return content


def _is_torchscript(path: Path) -> bool:
    """torch.jit.save writes a zip with a constants.pkl record; torch.save's zips have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


# --- reading tensors under our names ---------------------------------------------------------------
def _from_state_dict(state: dict, container: str, openai: bool = False) -> _Checkpoint:
    """OpenAI's or open_clip's tensors, under our names already; OpenAI's extra entries mark OpenAI weights. A
    GroupViT's (the official names or ours) come with the geometry their shapes show."""
    # open_clip's training checkpoints come from DDP-wrapped models: keys start with `module.`.
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if groupvit.is_official_state(state):
        state = groupvit.from_official(state)
        return _Checkpoint(state, f"official GroupViT {container}", groupvit.infer_config(state), quick_gelu=True)
    if groupvit.is_groupvit_state(state):  # ours, saved bare
        return _Checkpoint(state, f"GroupViT {container}", groupvit.infer_config(state))
    if audioclip.is_audioclip_state(state):  # the released AudioCLIP's names are ours; its CLIP is OpenAI's
        return _Checkpoint(state, f"AudioCLIP {container}", quick_gelu=True)
    if "image_projection" in state and "visual.pos_embed" in state:
        return _from_official_slip(state, container)
    openai = openai or any(key in state for key in OPENAI_EXTRA_ENTRIES)
    if not openai:
        return _Checkpoint(state, f"open_clip {container}")
    for key in OPENAI_EXTRA_ENTRIES:
        state.pop(key, None)
    return _Checkpoint(state, f"OpenAI {container}", quick_gelu=True)


# SLIP's released ViTs by width: MoCo v3's ViT-S (12 heads), timm's ViT-B/16 and ViT-L/16.
SLIP_ARCHITECTURES = {384: "SLIP-ViT-S-16", 768: "SLIP-ViT-B-16", 1024: "SLIP-ViT-L-16"}


def _from_official_slip(state: dict[str, Tensor], container: str) -> _Checkpoint:
    """SLIP's released checkpoints (``slip_base_25ep.pt``: ``{"state_dict": {"module.visual.*", "module.image_projection",
    ...}, "args": ...}``) as a CLIP of the timm family: the timm ViT under ``visual.trunk.``, its projection as the
    tower's head (SLIP multiplies by it, the head's linear map by its transpose), the text tower's names as OpenAI's.
    The SSL head (``image_mlp.*``) is SLIP's training head, not part of the CLIP: left out."""
    width = state["visual.pos_embed"].shape[-1]
    if width not in SLIP_ARCHITECTURES:
        raise ValueError(f"an official SLIP {container} with a ViT {width} wide: SLIP released 384, 768 and 1024")
    converted = {}
    for key, value in state.items():
        if key == "image_projection":
            converted["visual.head.proj.weight"] = value.T
        elif key.startswith("visual."):
            converted["visual.trunk." + key.removeprefix("visual.")] = value
        elif not key.startswith("image_mlp."):
            converted[key] = value
    return _Checkpoint(converted, f"official SLIP {container}", architecture=SLIP_ARCHITECTURES[width], quick_gelu=True)


def _from_lightning(content: dict) -> _Checkpoint:
    # lit-clip methods keep the CLIP under `self.model`; the other entries (loss state, heads of
    # follow-up methods) are not part of it.
    state = {key.removeprefix("model."): value for key, value in content["state_dict"].items()
             if key.startswith("model.")}  # fmt: skip
    if CLIP_ARCHITECTURE_KEY in content:  # a run that started from another family's weights records their name
        return _Checkpoint(state, "lit-clip checkpoint", architecture=content[CLIP_ARCHITECTURE_KEY])
    if CLIP_CONFIG_KEY in content and groupvit.is_groupvit_config_dict(content[CLIP_CONFIG_KEY]):
        return _Checkpoint(state, "lit-clip checkpoint", groupvit.GroupViTConfig.from_dict(content[CLIP_CONFIG_KEY]))
    if CLIP_CONFIG_KEY in content and audioclip.is_audioclip_config_dict(content[CLIP_CONFIG_KEY]):
        config = audioclip.AudioCLIPConfig.from_dict(content[CLIP_CONFIG_KEY])
        return _Checkpoint(state, "lit-clip checkpoint", config, quick_gelu=config.clip.quick_gelu)
    if CLIP_CONFIG_KEY in content:  # a run that started from other weights records their geometry
        config = config_from_dict(content[CLIP_CONFIG_KEY])
        return _Checkpoint(state, "lit-clip checkpoint", config, quick_gelu=config.quick_gelu)
    architecture = content.get("hyper_parameters", {}).get("architecture")
    if architecture is None:
        return _Checkpoint(state, "Lightning checkpoint")
    if family_of(architecture).name != "clip":  # built by its family, by name
        return _Checkpoint(state, "lit-clip checkpoint", architecture=architecture)
    config = get_config(architecture)
    return _Checkpoint(state, "lit-clip checkpoint", config, architecture, config.quick_gelu)


def _read_hf_directory(directory: Path) -> _Checkpoint:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{directory} has no config.json, so it is not a Hugging Face model directory")
    expected = "a Hugging Face CLIP config (a JSON object with model_type 'clip' or 'groupvit')"
    hf_config = _read_json(config_file, expected)
    if hf_config.get("model_type") == "groupvit":
        config = groupvit.config_from_hf(hf_config, str(config_file))
        state = groupvit.from_hf(_read_hf_weights(directory))
        return _Checkpoint(state, "Hugging Face GroupViTModel", config, quick_gelu=config.quick_gelu)
    if hf_config.get("model_type") != "clip":
        raise ValueError(
            f"{directory} holds a {hf_config.get('model_type')!r} model, not a Hugging Face CLIPModel or GroupViTModel"
        )
    # Fields equal to transformers' defaults (those of openai/clip-vit-base-patch32) may be left out.
    vision, text = hf_config.get("vision_config", {}), hf_config.get("text_config", {})
    activations = {vision.get("hidden_act", "quick_gelu"), text.get("hidden_act", "quick_gelu")}
    if len(activations) > 1 or not activations <= {"quick_gelu", "gelu"}:
        raise ValueError(f"{directory}: activations {sorted(activations)} are not supported; lit-clip uses "
                         "quick_gelu or exact gelu, the same in both towers")  # fmt: skip
    if {vision.get("layer_norm_eps", 1e-5), text.get("layer_norm_eps", 1e-5)} != {1e-5}:
        raise ValueError(f"{directory}: lit-clip's layer norms use eps 1e-5, this config asks for another")

    state = _from_hf_names(_read_hf_weights(directory))
    # The shapes give the geometry; only the head counts must come from the config.
    vision_heads, text_heads = vision.get("num_attention_heads", 12), text.get("num_attention_heads", 8)
    config = _infer_config(state, directory, vision_heads, text_heads)
    return _Checkpoint(state, "Hugging Face CLIPModel", config, quick_gelu=activations == {"quick_gelu"})


def _read_hf_weights(directory: Path) -> dict[str, Tensor]:
    if (directory / "model.safetensors").is_file():
        return _load_safetensors(directory / "model.safetensors")
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index, "a safetensors index (a JSON object with a weight_map)")["weight_map"]
        shards = sorted(set(weight_map.values()))
        return {key: value for shard in shards for key, value in _load_safetensors(directory / shard).items()}
    if (directory / HF_BIN_FILE).is_file():
        return _torch_load(directory / HF_BIN_FILE)
    raise FileNotFoundError(f"{directory} has a config.json but no model.safetensors or {HF_BIN_FILE}")


def _read_open_clip_directory(directory: Path) -> _Checkpoint:
    """open_clip's hub layout: the activation from ``model_cfg`` of its config, the geometry from the tensors."""
    expected = 'open_clip\'s hub config (a JSON object with a "model_cfg" object)'
    model_cfg = _read_json(directory / OPEN_CLIP_CONFIG, expected).get("model_cfg")
    if not isinstance(model_cfg, dict):
        raise ValueError(f"{directory / OPEN_CLIP_CONFIG} has no \"model_cfg\" object; expected {expected}")
    weights = next((directory / name for name in OPEN_CLIP_WEIGHTS if (directory / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{directory} has {OPEN_CLIP_CONFIG} but no weights: {' or '.join(OPEN_CLIP_WEIGHTS)}")
    state = _load_safetensors(weights) if weights.suffix == ".safetensors" else _torch_load(weights)
    checkpoint = _from_state_dict(state, "hub directory")
    checkpoint.quick_gelu = bool(model_cfg.get("quick_gelu", False))
    return checkpoint


def _download_from_hub(repo_id: str, config: str, weight_formats: list[list[str]]) -> Path:
    """The repository's ``config`` file and its weights in the first of ``weight_formats`` (file name
    patterns) it holds: repositories often hold the same weights in several formats."""
    import huggingface_hub  # only hub ids need it
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        for patterns in weight_formats:
            directory = Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=[config, *patterns]))
            if any(any(directory.glob(pattern)) for pattern in patterns):
                break
    except LocalEntryNotFoundError as error:  # no connection (or offline mode) and no cached copy
        raise ConnectionError(
            f"no local file or directory named {repo_id!r}, and the download of hub id {repo_id!r} failed: "
            f"could not reach the Hugging Face Hub to download {repo_id!r}, and it is not in the local cache. "
            f"Download it on a machine with a connection, `hf download {repo_id} --local-dir DIR` "
            f"(`huggingface-cli download {repo_id} --local-dir DIR` with older huggingface_hub), "
            f"copy DIR here and call load_clip(DIR)."
        ) from error
    except Exception as error:  # no such repository, a gated one, a network error, ...
        raise FileNotFoundError(
            f"no local file or directory named {repo_id!r}, and the download of hub id {repo_id!r} from the "
            f"Hugging Face Hub failed ({type(error).__name__}: {error})"
        ) from error
    return directory


# Our names (= OpenAI's) against Hugging Face's: whole names, or prefixes where they end in ".".
_HF_NAMES = [
    ("visual.transformer.resblocks.", "vision_model.encoder.layers."),
    ("transformer.resblocks.", "text_model.encoder.layers."),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
    ("visual.conv1.", "vision_model.embeddings.patch_embedding."),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
    ("visual.ln_pre.", "vision_model.pre_layrnorm."),  # sic
    ("visual.ln_post.", "vision_model.post_layernorm."),
    ("visual.proj", "visual_projection.weight"),
    ("token_embedding.", "text_model.embeddings.token_embedding."),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("ln_final.", "text_model.final_layer_norm."),
    ("text_projection", "text_projection.weight"),
]
# Within one transformer block.
_HF_BLOCK_NAMES = [
    ("attn.out_proj.", "self_attn.out_proj."),
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
]
# Ours multiply as `x @ P`; HF's are nn.Linear weights, `x @ W.T`.
_HF_TRANSPOSED = {"visual.proj", "text_projection"}
_HF_BLOCK = re.compile(r"((?:vision|text)_model\.encoder\.layers\.\d+\.)(.*)")


def _rename(name: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        if name == old or (old.endswith(".") and name.startswith(old)):
            return new + name[len(old) :]
    return name


def _from_hf_names(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    to_ours, block_to_ours = [(b, a) for a, b in _HF_NAMES], [(b, a) for a, b in _HF_BLOCK_NAMES]
    state = {}
    for name, tensor in hf_state.items():
        if name.endswith("position_ids"):  # an arange buffer that older files store
            continue
        block = _HF_BLOCK.fullmatch(name)
        if block:
            prefix, part = block.groups()
            if part.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
                continue  # packed with q below
            if part.startswith("self_attn.q_proj."):
                # nn.MultiheadAttention's packed projection: q, k, v stacked in that order.
                kind = part.removeprefix("self_attn.q_proj.")
                tensor = torch.cat([hf_state[f"{prefix}self_attn.{p}_proj.{kind}"] for p in "qkv"])
                part = f"attn.in_proj_{kind}"
            name = prefix + _rename(part, block_to_ours)
        key = _rename(name, to_ours)
        state[key] = tensor.T if key in _HF_TRANSPOSED else tensor
    return state


def _to_hf_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    hf_state = {}
    for key, tensor in state.items():
        name = _rename(key, _HF_NAMES)
        block = _HF_BLOCK.fullmatch(name)
        if block and block[2].startswith("attn.in_proj_"):
            kind = block[2].removeprefix("attn.in_proj_")
            for p, part in zip("qkv", tensor.chunk(3)):
                hf_state[f"{block[1]}self_attn.{p}_proj.{kind}"] = part
            continue
        if block:
            name = block[1] + _rename(block[2], _HF_BLOCK_NAMES)
        hf_state[name] = tensor.T if key in _HF_TRANSPOSED else tensor
    return hf_state


# --- working out the architecture ------------------------------------------------------------------
def _infer_config(
    state: dict[str, Tensor],
    source: str | os.PathLike,
    vision_heads: int | None = None,
    text_heads: int | None = None,
) -> CLIPConfig:
    """The geometry from the tensor shapes; heads, which shapes do not show, default to 64 wide."""

    def blocks(prefix: str) -> int:
        return len({key[len(prefix) :].split(".")[0] for key in state if key.startswith(prefix)})

    def heads(width: int, tower: str) -> int:
        if width % 64:
            raise ValueError(
                f"cannot tell the attention heads of {source}'s {tower} tower (width {width} is not a multiple "
                "of 64): pass architecture=<one of lit_clip.architecture_names()>"
            )
        return width // 64

    if any(key.startswith("visual.trunk.") for key in state):
        raise ValueError(
            f"{source} holds an open_clip CLIP with a timm image tower (visual.trunk.*), whose architecture its "
            "tensors do not tell: pass architecture= with open_clip's config name, one of the timm family's "
            f"{', '.join(sorted(TIMM_ARCHITECTURES))}"
        )
    try:
        if "visual.proj" in state:  # a ViT; ModifiedResNets pool with attention instead
            conv = state["visual.conv1.weight"]
            width, patch = conv.shape[0], conv.shape[-1]
            grid = math.isqrt(state["visual.positional_embedding"].shape[0] - 1)
            vision = VisionConfig(
                image_size=patch * grid,
                layers=blocks("visual.transformer.resblocks."),
                width=width,
                patch_size=patch,
                head_width=width // (vision_heads or heads(width, "image")),
                mlp_ratio=_mlp_ratio(state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0], width),
            )
        else:
            vision = VisionConfig(
                image_size=32 * math.isqrt(state["visual.attnpool.positional_embedding"].shape[0] - 1),
                layers=tuple(blocks(f"visual.layer{stage}.") for stage in (1, 2, 3, 4)),
                width=state["visual.layer1.0.conv1.weight"].shape[0],
            )
        width = state["ln_final.weight"].shape[0]
        text = TextConfig(
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            width=width,
            heads=text_heads or heads(width, "text"),
            layers=blocks("transformer.resblocks."),
            mlp_ratio=_mlp_ratio(state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0], width),
        )
        return CLIPConfig(embed_dim=state["text_projection"].shape[1], vision=vision, text=text)
    except KeyError as missing:
        raise ValueError(
            f"{source} is not a CLIP checkpoint in OpenAI / open_clip layout: it has no {missing}, which the "
            f"architecture is read from (its first keys: {list(state)[:5]}); with architecture=NAME, load_clip "
            "lists all that does not fit NAME"
        ) from None


def _mlp_ratio(hidden: int, width: int) -> float:
    """A ratio that the towers' ``int(width * mlp_ratio)`` turns back into ``hidden`` (15 / 11 * 11 < 15)."""
    ratio = hidden / width
    while int(width * ratio) < hidden:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def _describe(config: CLIPConfig) -> str:
    vision, text = config.vision, config.text
    if vision.is_resnet:
        image = f"ModifiedResNet {list(vision.layers)} width {vision.width}"
    else:
        image = f"ViT width {vision.width} x {vision.layers} layers, patch {vision.patch_size}"
    return (f"CLIP({image}, {vision.image_size} px; text width {text.width} x {text.layers} layers, "
            f"context {text.context_length}; embed {config.embed_dim})")  # fmt: skip


# --- building and loading --------------------------------------------------------------------------
def _load_strictly(model: CLIP, state: dict[str, Tensor], source: str, name: str, shown: int = 5) -> None:
    """``load_state_dict(strict=True)`` into a model on the meta device, with one error that lists what
    does not fit, with shapes."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = [
        f"{label}: {', '.join(items[:shown])}" + (f" and {len(items) - shown} more" if len(items) > shown else "")
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch (checkpoint vs model)", mismatched),
        )
        if items
    ]
    if problems:
        raise ValueError(f"checkpoint {source} does not fit {name}: " + "; ".join(problems))
    # fp32 (OpenAI's archives hold fp16), and contiguous (HF's projections arrive transposed).
    state = {
        key: tensor.to(torch.float32, memory_format=torch.contiguous_format) if tensor.is_floating_point() else tensor
        for key, tensor in state.items()
    }
    model.load_state_dict(state, assign=True)


# --- export ----------------------------------------------------------------------------------------
def save_huggingface(model: CLIP, directory: str | os.PathLike) -> None:
    """Write config.json + model.safetensors that ``transformers.CLIPModel.from_pretrained(directory)`` loads.

    Models with our ViT image tower only: transformers has no ResNet or timm towers. A ``logit_bias`` (SigLIP loss) is written
    too; transformers' CLIPModel has no such parameter and ignores it, :func:`load_clip` reads it back.

    A :class:`~lit_clip.models.groupvit.GroupViT` is written for ``transformers.GroupViTModel`` likewise, with its
    ``multi_label_logit_scale``, which GroupViTModel has not either.
    """
    if isinstance(model, groupvit.GroupViT):
        _save_safetensors(groupvit.to_hf(model.state_dict()), directory, groupvit.hf_config(model.config))
        return
    if not isinstance(model.visual, VisionTransformer):
        raise ValueError(
            f"Hugging Face's CLIPModel has only ViT image towers and this model has a {type(model.visual).__name__}; "
            "save it with save_open_clip instead"
        )
    _save_safetensors(_to_hf_names(model.state_dict()), directory, _hf_config(model.config))


def _save_safetensors(state: dict[str, Tensor], directory: str | os.PathLike, config: dict) -> None:
    """model.safetensors and config.json in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors wants each tensor contiguous in its own memory (q, k, v are views of one tensor).
    tensors = {name: tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
               for name, tensor in state.items()}  # fmt: skip
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _hf_config(config: CLIPConfig) -> dict:
    vision, text = config.vision, config.text
    activation = "quick_gelu" if config.quick_gelu else "gelu"
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": config.embed_dim,
        "text_config": {**hf_text_config(text, config.quick_gelu), "projection_dim": config.embed_dim},
        "vision_config": {
            "hidden_size": vision.width,
            "intermediate_size": int(vision.width * vision.mlp_ratio),
            "num_hidden_layers": vision.layers,
            "num_attention_heads": vision.width // vision.head_width,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "projection_dim": config.embed_dim,
            "hidden_act": activation,
            "layer_norm_eps": 1e-5,
        },
    }


def save_open_clip(model: CLIP, path: str | os.PathLike) -> None:
    """Write the weights as a plain state dict in open_clip's (= OpenAI's) layout.

    open_clip loads it strictly into a model of the same geometry and activation, e.g.
    ``open_clip.create_model("ViT-B-32", pretrained=path)`` for our ``ViT-B-32`` (``NAME-quickgelu`` for
    a QuickGELU model). open_clip's text attention mask is a non-persistent buffer, not part of the file.
    """
    torch.save({key: tensor.detach().cpu() for key, tensor in model.state_dict().items()}, path)


__all__ = ["load_clip", "save_huggingface", "save_open_clip"]
