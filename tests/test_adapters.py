"""CLIP-Adapter and Tip-Adapter(-F): the heads after a frozen CLIP, checked against their formulas."""
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lit_clip.datamodules import ShapesWorldFewShot

import lit_clip
from lit_clip.methods import CLIPAdapter, CoCoOp, CoOp, MaPLe, TipAdapter, TipAdapterF, ZeroShotClassifier
from lit_clip.methods.classification.tip_adapter import cache_logits, search_grid


@pytest.fixture(scope="module")
def clip_file(lit_clip_checkpoint):
    """A ViT-Micro-8 CLIP (a lit-clip checkpoint: the run records its architecture)."""
    return str(lit_clip_checkpoint)


def tiny_data(**kwargs):
    defaults = dict(shots=2, image_size=32, pool_per_class=2, test_per_class=1, batch_size=16, eval_batch_size=64)
    return ShapesWorldFewShot(**{**defaults, **kwargs})


def test_cache_logits_match_the_formula_by_hand():
    features = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])  # three cached images
    values = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # their classes: 0, 1, 1
    beta = 2.0
    expected = torch.zeros(2, 2)
    for i in range(2):
        for j in range(3):
            affinity = sum(features[i, d] * keys[j, d] for d in range(2))
            expected[i] += math.exp(-beta * (1 - affinity)) * values[j]
    torch.testing.assert_close(cache_logits(features, keys, values, beta), expected)


def test_search_grid_is_the_official_one():
    assert search_grid(7.0, 200)[:3] == pytest.approx([0.1, 0.1345, 0.169])
    assert len(search_grid(3.0, 20)) == 20 and max(search_grid(3.0, 20)) < 3.0


def test_tip_adapter_with_alpha_zero_is_zero_shot_clip(clip_file, trainer):
    data = tiny_data()
    tip = TipAdapter(clip_file, alpha=0.0, search=False, augment_epochs=2)
    zero_shot = ZeroShotClassifier(clip_file)
    ours = trainer().test(tip, data)[0]
    theirs = trainer().test(zero_shot, data)[0]
    assert ours["test/top1"] == theirs["test/top1"] and ours["test/top5"] == theirs["test/top5"]
    images = next(iter(data.test_dataloader()))["image"]
    with torch.no_grad():
        torch.testing.assert_close(tip(images), zero_shot(images))


@pytest.mark.parametrize("search_split,loader", [("full_val", "full_val_dataloader"), ("val", "val_dataloader")])
def test_tip_adapter_cache_and_its_search_on_validation(clip_file, trainer, search_split, loader):
    """The official search runs on the whole validation split; ``search_split="val"`` on the few-shot cut."""
    data = tiny_data(pool_per_class=4)  # 2 validation shots per class, 4 validation images in all
    tip = TipAdapter(clip_file, augment_epochs=2, search_scale=(3.0, 2.0), search_steps=(6, 5), search_split=search_split)
    used = []
    for name in ("augmented_train_dataloader", "val_dataloader", "full_val_dataloader"):
        original = getattr(data, name)
        setattr(data, name, lambda original=original, name=name: used.append(name) or original())

    class RecordTestBatches(L.Callback):
        def on_test_batch_start(self, *args):
            used.append("test batch")

    trainer(callbacks=[RecordTestBatches()]).test(tip, data)
    assert used[:3] == ["augmented_train_dataloader", loader, "test batch"], "cache, search on val, then test"
    assert tip.cache_keys.shape == (128, 32) and torch.allclose(tip.cache_keys.norm(dim=-1), torch.ones(128))
    assert tip.cache_labels.tolist() == [label for _, label in data.samples("train")]
    # The chosen pair is the first best on the validation split, found here by brute force.
    with torch.no_grad():
        batches = list(getattr(data, loader)())
        assert len(torch.cat([batch["label"] for batch in batches])) == {"full_val": 4, "val": 2}[search_split] * 64
        features = torch.cat([tip.image_features(batch["image"]) for batch in batches])
        labels = torch.cat([batch["label"] for batch in batches])
        best = (-1.0, None, None)
        for beta in search_grid(3.0, 6):
            for alpha in search_grid(2.0, 5):
                accuracy = (tip.logits(features, alpha, beta).argmax(-1) == labels).float().mean().item()
                if accuracy > best[0]:
                    best = (accuracy, alpha, beta)
    assert (tip.alpha.item(), tip.beta.item()) == pytest.approx(best[1:])


def test_classes_without_cache_entries_get_zero_shot_logits(clip_file, trainer):
    data = tiny_data()
    tip = TipAdapter(clip_file, augment_epochs=1, search=False, alpha=5.0)
    trainer().test(tip, data)  # builds the cache over the 64 classes
    tip.set_classes(["cat", "red circle"])  # "red circle" has cached images, "cat" none
    assert tip.cache_values[:, 0].sum() == 0 and tip.cache_values[:, 1].sum() == 2  # 2 shots of red circle
    zero_shot = ZeroShotClassifier(clip_file)
    zero_shot.trainer = tip.trainer
    zero_shot.set_classes(["cat", "red circle"])
    images = next(iter(data.test_dataloader()))["image"]
    with torch.no_grad():
        torch.testing.assert_close(tip(images)[:, 0], zero_shot(images)[:, 0])
        assert not torch.allclose(tip(images)[:, 1], zero_shot(images)[:, 1])


def test_tip_adapter_f_trains_the_keys_then_searches_again(clip_file, tmp_path, trainer):
    data = tiny_data()
    tip = TipAdapterF(clip_file, augment_epochs=1, search_scale=(3.0, 2.0), search_steps=(4, 4), lr=0.05)
    initial = {}

    class RecordKeys(L.Callback):
        def on_train_start(self, trainer, module):
            initial["keys"] = module.cache_keys.detach().clone()

    fit = trainer(max_epochs=2, num_sanity_val_steps=0, default_root_dir=tmp_path,
                  callbacks=[RecordKeys(), L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])  # fmt: skip
    fit.fit(tip, data)
    assert isinstance(tip.cache_keys, torch.nn.Parameter)
    assert torch.allclose(initial["keys"].norm(dim=-1), torch.ones(128)), "keys start as the normalised cache"
    assert not torch.allclose(tip.cache_keys.detach(), initial["keys"]), "the keys did not train"
    assert bool(tip.searched)
    state = torch.load(tmp_path / "last.ckpt", weights_only=False)["state_dict"]
    assert set(state) == {"cache_keys", "cache_labels", "alpha", "beta", "searched"}
    reloaded = TipAdapterF.load_from_checkpoint(tmp_path / "last.ckpt")
    torch.testing.assert_close(reloaded.cache_keys, tip.cache_keys.detach().cpu())
    results = trainer().test(reloaded, data)[0]
    assert results["test/alpha"] == pytest.approx(tip.alpha.item())


def test_clip_adapter_blends_a_bias_free_bottleneck(clip_file, trainer):
    adapter = CLIPAdapter(clip_file, residual_ratio=0.2)
    layers = list(adapter.adapter)
    assert [type(layer).__name__ for layer in layers] == ["Linear", "ReLU", "Linear", "ReLU"]
    assert layers[0].weight.shape == (8, 32) and all(getattr(layer, "bias", None) is None for layer in layers)
    # With the ratio at 0 it is zero-shot CLIP with the learned logit scale.
    plain = CLIPAdapter(clip_file, residual_ratio=0.0)
    data = tiny_data()
    plain.trainer = adapter.trainer = trainer()
    plain.trainer.datamodule = data
    plain.set_classes(data.classnames)
    images = next(iter(data.test_dataloader()))["image"]
    with torch.no_grad():
        text = lit_clip.build_zeroshot_classifier(plain.model, data.classnames, data.templates)
        expected = plain.model.logit_scale.exp() * F.normalize(plain.model.encode_image(images), dim=-1) @ text
        torch.testing.assert_close(plain(images), expected)


@pytest.mark.parametrize("method", [CoOp, CoCoOp, MaPLe, CLIPAdapter, TipAdapter, TipAdapterF])
def test_every_method_runs_in_bf16(method, clip_file, trainer):
    # Sized for ViT-Micro-8: 2 layers, a 16-token context.
    kwargs = {CoOp: {"n_ctx": 4}, MaPLe: {"prompt_depth": 2}, TipAdapter: {"augment_epochs": 1}, TipAdapterF: {"augment_epochs": 1}}
    kwargs = kwargs.get(method, {})
    module = method(clip_file, **kwargs)
    tower_dtypes = set()
    module.model.visual.register_forward_hook(lambda tower, inputs, output: tower_dtypes.add(output.dtype))
    learned = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    data = tiny_data(base_to_new=True)
    run = trainer(max_epochs=1, max_steps=2, limit_val_batches=1, limit_test_batches=1, precision="bf16-mixed")
    if module.trains:
        run.fit(module, data)
        changed = [n for n, p in module.named_parameters() if n in learned and not torch.equal(p, learned[n])]
        assert changed, "no learned parameter moved in two bf16 steps"
        assert all(torch.isfinite(p).all() for p in module.parameters())
    results = run.test(module, data)[0]
    assert tower_dtypes == {torch.bfloat16}  # the frozen tower really ran under bf16 autocast
    assert all(math.isfinite(results[f"test/{name}"]) for name in ("base_top1", "new_top1", "hm"))


@pytest.mark.parametrize("method", [CoOp, CoCoOp, MaPLe, CLIPAdapter, TipAdapter, ZeroShotClassifier])
def test_logits_stay_fp32_under_bf16_autocast(method, clip_file, trainer):
    """bf16 logits round close classes to ties and move the argmax: the last matmul runs in fp32."""
    kwargs = {CoOp: {"n_ctx": 4}, MaPLe: {"prompt_depth": 2}, TipAdapter: {"augment_epochs": 1}}
    module = method(clip_file, **kwargs.get(method, {}))
    data = tiny_data()
    module.trainer = trainer()
    module.trainer.datamodule = data
    data.setup("fit")
    if isinstance(module, TipAdapter):
        module.build_cache()
    module.use_classes(data.classnames)
    images = next(iter(data.test_dataloader()))["image"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = module(images)
    assert logits.dtype == torch.float32


def test_clip_adapter_blends_at_its_default_ratio(clip_file):
    """f' = 0.2 A(f) + 0.8 f, then CLIP's scaled cosine against the text classifier."""
    module = CLIPAdapter(clip_file)
    assert module.hparams.residual_ratio == 0.2
    torch.manual_seed(0)
    for layer in module.adapter.modules():
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.weight, std=0.5)  # far from zero, so A(f) weighs in
    dim = module.model.text_projection.shape[1]
    module.register_buffer("text_classifier", F.normalize(torch.randn(dim, 3), dim=0), persistent=False)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        f = module.model.encode_image(images).float()
        blended = F.normalize(0.2 * module.adapter(f) + 0.8 * f, dim=-1)
        expected = module.model.logit_scale.exp() * blended @ module.text_classifier
        torch.testing.assert_close(module(images), expected)
        assert not torch.allclose(module(images), module.model.logit_scale.exp() * F.normalize(f, dim=-1) @ module.text_classifier)


def test_a_method_reads_its_input_through_batch_input(clip_file, trainer):
    """The frozen base's input hook: a method whose input is another view of the batch (region crops,
    depth views, video frames) is evaluated by the same code."""

    class ZeroShotOnViews(ZeroShotClassifier):
        def batch_input(self, batch):
            return batch["view"]

    class ImagesAsViews(L.Callback):  # the images move to "view"; "image" becomes noise
        def on_test_batch_start(self, trainer, module, batch, *args):
            batch["view"], batch["image"] = batch["image"], torch.randn_like(batch["image"])

    data = tiny_data()
    plain = trainer().test(ZeroShotClassifier(clip_file), data)[0]
    on_views = ZeroShotOnViews(clip_file)
    assert trainer(callbacks=[ImagesAsViews()]).test(on_views, data)[0] == plain
