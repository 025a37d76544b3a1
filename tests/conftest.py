"""Shared fixtures: a real lit-clip checkpoint, made once per test session."""
import lightning as L
import pytest
from lit_clip.datamodules import ShapesWorldCaptions

from lit_clip.methods import CLIPPretraining


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
