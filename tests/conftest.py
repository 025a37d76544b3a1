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


@pytest.fixture
def demo_page(tmp_path):
    """``demo_page(weights, tabs)``: the demo page with those tabs (``(title, module)`` pairs, by default all)
    served on a free local port, and a Gradio client of it; closed after the test."""
    from gradio_client import Client  # the demo extra's; dev installs it too

    from lit_clip.demo.page import launch

    opened = []

    def serve(weights, tabs=None):
        page, url = launch(weights, tmp_path / "examples", block=False, tabs=tabs)
        # httpx's 5 s default is too short for the whole page's config on a 2-core machine busy with other tests.
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"), httpx_kwargs={"timeout": 120})
        opened.append((page, client))
        return client

    yield serve
    for page, client in opened:
        client.close()
        page.close()


def fit_checkpoint(config: str, tmp_path, clip_checkpoint, *overrides: str):
    """``last.ckpt`` of ``lit-clip fit --config configs/<config>`` run for one step in ``tmp_path`` with the tests'
    stand-ins for weights and data (``test_cli.fixture_arguments``): a checkpoint as the CLI writes it, naming its
    method's and data module's classes."""
    import sys
    from pathlib import Path

    from test_cli import CONFIGS, fixture_arguments

    from lit_clip.cli import main

    path = CONFIGS / config
    arguments = fixture_arguments(path, tmp_path, clip_checkpoint)
    here, argv = os.getcwd(), sys.argv
    os.chdir(tmp_path)
    sys.argv = ["lit-clip"]  # pytest's own arguments are not the CLI's
    try:
        main(["fit", "--config", str(path), *arguments, "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
              "--trainer.enable_progress_bar=false", "--trainer.logger.init_args.save_dir=runs", *overrides])
    finally:
        os.chdir(here)
        sys.argv = argv
    # The newest file: stand-ins copied before the run (the generation configs' judge, a last.ckpt) are older.
    written = sorted(Path(tmp_path).rglob("*.ckpt"), key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"))
    assert written, f"lit-clip fit --config {config} wrote no checkpoint under {tmp_path}"
    return written[-1]


@pytest.fixture(scope="session")
def cli_clip_checkpoint(tmp_path_factory, lit_clip_checkpoint):
    """A CLIP checkpoint written by ``lit-clip fit`` (it names its class: the demo page lists it)."""
    root = tmp_path_factory.mktemp("cli-clip")
    return fit_checkpoint("clip/shapes.yaml", root, lit_clip_checkpoint, "--model.init_args.architecture=ViT-Micro-8",
                          "--data.init_args.image_size=32", "--data.init_args.context_length=16")
