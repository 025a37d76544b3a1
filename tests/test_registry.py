"""Model families: a new tower plugs in without editing CLIP, the loader or the methods."""
import lightning as L
import pytest
import torch
from torch import nn

import lit_clip
from lit_clip.datamodules import ShapesWorldCaptions
from lit_clip.methods import CLIPPretraining
from lit_clip.models import CLIP, ModelFamily, family_of, register_family
from lit_clip.models import registry
from lit_clip.models.clip import get_config


class MeanColourTower(nn.Module):
    """A toy image tower: the mean colour of the image, projected."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Linear(3, embed_dim)

    def forward(self, images, prompts=None):
        return self.proj(images.mean(dim=(2, 3)))


def build_toy(name, **options):
    config = get_config("ViT-Micro-8")
    return CLIP(config, visual=MeanColourTower(config.embed_dim), **options)


@pytest.fixture(scope="module", autouse=True)
def toy_family():
    register_family(ModelFamily("toy", lambda: ["Toy-Micro"], build_toy))
    yield
    registry._FAMILIES.pop("toy")  # other tests see the built-in families only


def fit_once(module, root):
    data = ShapesWorldCaptions(image_size=32, batch_size=4, train_samples=8, val_samples=4, context_length=16,
                               zeroshot_samples_per_class=1)  # fmt: skip
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, default_root_dir=root, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True)])  # fmt: skip
    trainer.fit(module, data)
    return root / "last.ckpt"


def test_a_registered_family_trains_and_loads_back(tmp_path):
    assert family_of("Toy-Micro").name == "toy" and family_of("ViT-B-32-quickgelu").name == "clip"
    assert "Toy-Micro" in lit_clip.architecture_names()
    model = lit_clip.create_model("Toy-Micro")
    assert isinstance(model.visual, MeanColourTower) and model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 32)

    module = CLIPPretraining(architecture="Toy-Micro", warmup_steps=1)
    before = module.model.visual.proj.weight.detach().clone()
    loaded = lit_clip.load_clip(fit_once(module, tmp_path))
    assert isinstance(loaded.visual, MeanColourTower)
    assert not torch.equal(loaded.visual.proj.weight, before)  # trained, and what was trained came back
    for key, value in module.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.cpu())


def test_names_are_unique_across_families():
    with pytest.raises(ValueError, match="already 'clip'"):
        register_family(ModelFamily("copy", lambda: ["ViT-B-32"], build_toy))
    with pytest.raises(ValueError, match="unknown architecture 'ViT-Q-1'.*Toy-Micro"):
        lit_clip.create_model("ViT-Q-1")


def test_a_run_from_pretrained_weights_records_their_geometry(tmp_path, lit_clip_checkpoint):
    """The hyper-parameters name the default architecture, not the pretrained CLIP's: the checkpoint says which."""
    module = CLIPPretraining(pretrained=str(lit_clip_checkpoint), warmup_steps=1)  # ViT-Micro-8 weights
    assert module.hparams.architecture != "ViT-Micro-8"
    loaded = lit_clip.load_clip(fit_once(module, tmp_path))
    assert loaded.config == module.model.config
    for key, value in module.model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.cpu())
