"""Shared fixtures: a real lit-clip checkpoint, made once per test session; quiet trainers; open_clip twins."""
import os

import lightning as L
import open_clip
import pytest
import torch
from lit_clip.datamodules import ShapesWorldCaptions

import lit_clip
from lit_clip.methods import CLIPPretraining
from lit_clip.models.clip import get_config

# setup.cfg runs the suite on one pytest-xdist worker per core: each worker computes on its share of the cores (two
# workers of two threads each would fight over a 2-core machine's).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


@pytest.fixture(scope="session")
def lit_clip_checkpoint(tmp_path_factory):
    """``last.ckpt`` of a 2-step CLIPPretraining run of the smallest architecture, as `lit-clip fit` writes it."""
    root = tmp_path_factory.mktemp("pretraining")
    data = ShapesWorldCaptions(
        image_size=32, batch_size=4, train_samples=8, val_samples=8, context_length=16, zeroshot_samples_per_class=1
    )
    trainer = L.Trainer(
        max_steps=2, default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True)],
    )  # fmt: skip
    trainer.fit(CLIPPretraining(architecture="ViT-Micro-8", warmup_steps=1), data)
    return root / "last.ckpt"


def quiet_trainer(**kwargs) -> L.Trainer:
    """A Trainer without logger or progress bar that writes checkpoints only where a test asks for them."""
    checkpoints = any(isinstance(c, L.pytorch.callbacks.ModelCheckpoint) for c in kwargs.get("callbacks", []))
    return L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=checkpoints, **kwargs)


@pytest.fixture
def trainer():
    """``trainer(**kwargs)``: a quiet Trainer (see :func:`quiet_trainer`)."""
    return quiet_trainer


def make_open_clip_twin(name: str) -> tuple[lit_clip.CLIP, open_clip.model.CLIP]:
    """Our model of a micro architecture and open_clip's of the same geometry, with open_clip's random weights."""
    config = get_config(name)
    vision, text = config.vision, config.text
    vision_cfg = {"image_size": vision.image_size, "layers": vision.layers, "width": vision.width}
    vision_cfg |= {"head_width": vision.head_width} if vision.is_resnet else {"patch_size": vision.patch_size}
    text_cfg = {k: getattr(text, k) for k in ("context_length", "vocab_size", "width", "heads", "layers")}
    torch.manual_seed(0)
    theirs = open_clip.model.CLIP(config.embed_dim, vision_cfg, text_cfg, quick_gelu=config.quick_gelu).eval()
    ours = lit_clip.create_model(name).eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if k != "attn_mask"})
    return ours, theirs


@pytest.fixture
def open_clip_twin():
    """``open_clip_twin(name)``: see :func:`make_open_clip_twin`."""
    return make_open_clip_twin
