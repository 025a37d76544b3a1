"""Zero-shot head, retrieval recall, optimiser groups and schedule, and the ShapesWorld data module."""
import math

import pytest
import torch
import torch.nn.functional as F
from lit_clip.datamodules import ShapesWorldCaptions

import lit_clip
from lit_clip.metrics import retrieval_ranks, retrieval_recall
from lit_clip.optim import warmup_cosine_schedule, weight_decay_groups


def test_zeroshot_classifier_is_the_renormalised_mean_of_template_embeddings():
    model = lit_clip.create_model("ViT-Micro-8").eval()
    classnames, templates = ["red circle", "blue star"], ["a photo of a {}.", "a {}."]
    classifier = lit_clip.build_zeroshot_classifier(model, classnames, templates)
    assert classifier.shape == (model.config.embed_dim, 2)
    for c, name in enumerate(classnames):
        tokens = lit_clip.tokenize([t.format(name) for t in templates], context_length=model.context_length)
        with torch.no_grad():
            expected = F.normalize(F.normalize(model.encode_text(tokens), dim=-1).mean(0), dim=0)
        torch.testing.assert_close(classifier[:, c], expected)


def test_zeroshot_classifier_fills_the_article_of_each_name():
    model = lit_clip.create_model("ViT-Micro-8").eval()
    prompts = []

    def tokenizer(texts, context_length):
        prompts.extend(texts)
        return lit_clip.tokenize(texts, context_length=context_length)

    lit_clip.build_zeroshot_classifier(model, ["apple", "car"], ["a photo of {article} {}.", "a {}."], tokenizer)
    assert prompts == ["a photo of an apple.", "a apple.", "a photo of a car.", "a car."]


def test_zeroshot_classifier_needs_names_and_templates():
    with pytest.raises(ValueError, match="0 templates"):
        lit_clip.build_zeroshot_classifier(lit_clip.create_model("ViT-Micro-8"), ["a"], [])


def test_retrieval_recall_one_caption_per_image():
    images = torch.eye(4)
    texts = torch.eye(4)[[0, 1, 3, 2]]  # captions 2 and 3 point at the wrong images
    metrics = retrieval_recall(images, texts, torch.arange(4), ks=(1, 2))
    assert metrics["i2t_R@1"] == 0.5 and metrics["t2i_R@1"] == 0.5
    # image 2: one other caption scores higher than its own, so it is a hit at 2; the tie at 0 is not "higher"
    assert metrics["i2t_R@2"] == 1.0


def test_retrieval_recall_image_to_text_is_a_hit_when_any_caption_is_in_the_top_k():
    images = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    texts = F.normalize(torch.tensor([[1.0, 0.1], [0.2, 1.0], [0.9, 0.3], [1.0, 0.05]]), dim=-1)
    text_to_image = torch.tensor([0, 1, 1, 0])  # image 1's captions are texts 1 and 2
    metrics = retrieval_recall(images, texts, text_to_image, ks=(1,))
    assert metrics["i2t_R@1"] == 1.0  # image 0's best text is its own caption 3; image 1's is caption 1
    assert metrics["t2i_R@1"] == 0.75  # caption 2 is closer to image 0


@pytest.mark.parametrize("architecture", ["ViT-B-32", "RN50"])
def test_weight_decay_groups_exempt_what_open_clip_exempts(architecture):
    """open_clip's model declares its exemptions (no_weight_decay()) beside the 1-d parameters it leaves to timm."""
    import open_clip

    reference = open_clip.create_model(architecture)
    expected = {n for n, p in reference.named_parameters() if p.ndim < 2 or n in reference.no_weight_decay()}
    model = lit_clip.create_model(architecture)
    decay, no_decay = weight_decay_groups(model, 0.2)
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert exempt == expected
    assert "token_embedding.weight" in {names[id(p)] for p in decay["params"]}  # decayed, as in open_clip
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0


def test_warmup_then_cosine():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine_schedule(optimizer, warmup_steps=10, total_steps=110)
    lrs = []
    for _ in range(110):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[-1] < 0.001


def test_shapes_data_module_batches():
    datamodule = ShapesWorldCaptions(image_size=32, batch_size=4, train_samples=8, val_samples=8, context_length=16)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["text"].shape == (4, 16)
    assert (batch["text"][:, 0] == 49406).all() and len(batch["caption"]) == 4
    pairs, zeroshot = datamodule.val_dataloader()
    classification = next(iter(zeroshot))
    assert set(classification) == {"image", "label", "index"} and classification["label"].max() < 64
    assert len(zeroshot.dataset) == 8 * 64 and len(datamodule.classnames) == 64
    # the same sample twice is the same image: workers and ranks agree without sharing state
    torch.testing.assert_close(pairs.dataset[3]["image"], pairs.dataset[3]["image"])


def test_pretraining_can_start_from_pretrained_weights(lit_clip_checkpoint):
    from lit_clip.methods import CLIPPretraining

    reference = lit_clip.load_clip(lit_clip_checkpoint)
    module = CLIPPretraining(pretrained=str(lit_clip_checkpoint), loss="siglip")
    assert module.model.training and module.model.logit_bias.item() == -10.0
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(module.model.state_dict()[name], tensor)


@pytest.mark.parametrize(
    "architecture,betas,eps", [("ViT-Micro-8", (0.9, 0.98), 1e-6), ("RN-Tiny", (0.9, 0.999), 1e-8)]
)
def test_adamw_defaults_follow_the_image_tower_as_open_clip(architecture, betas, eps):
    from lit_clip.methods import CLIPPretraining

    group = CLIPPretraining(architecture=architecture).build_optimizer(fused=False).param_groups[0]
    assert group["betas"] == betas and group["eps"] == eps
    group = CLIPPretraining(architecture=architecture, betas=(0.8, 0.9), eps=1e-3).build_optimizer().param_groups[0]
    assert group["betas"] == (0.8, 0.9) and group["eps"] == 1e-3


def test_logit_scale_is_clamped_at_100_after_each_step(trainer):
    """CLIP clamps the learned temperature so that logits never exceed 100 x cosine."""
    from lit_clip.methods import CLIPPretraining

    module = CLIPPretraining(architecture="ViT-Micro-8", warmup_steps=1, lr=0.0)
    with torch.no_grad():
        module.model.logit_scale.fill_(math.log(1000.0))  # above the clamp, as a big update would leave it
    data = ShapesWorldCaptions(image_size=32, batch_size=4, train_samples=8, val_samples=4, context_length=16,
                               zeroshot_samples_per_class=1)  # fmt: skip
    trainer(max_steps=1, limit_val_batches=0).fit(module, data)
    assert module.model.logit_scale.item() == pytest.approx(math.log(100.0))
    assert module.model.logit_scale.exp().item() == pytest.approx(100.0)


def test_pretraining_minimises_the_sum_of_its_loss_terms_and_logs_each(trainer):
    """The hook SLIP / AudioCLIP extend: ``loss_terms`` returns named terms, training minimises their sum."""
    from lit_clip.methods import CLIPPretraining

    class WithAnExtraTerm(CLIPPretraining):
        def loss_terms(self, batch):
            terms = super().loss_terms(batch)
            self.contrastive = terms["contrastive_loss"].detach()
            return {**terms, "extra_loss": 10 * self.model.logit_scale}

    module = WithAnExtraTerm(architecture="ViT-Micro-8", warmup_steps=1, lr=0.1)
    data = ShapesWorldCaptions(image_size=32, batch_size=4, train_samples=8, val_samples=4, context_length=16,
                               zeroshot_samples_per_class=1)  # fmt: skip
    start_scale = module.model.logit_scale.item()
    fitted = trainer(max_steps=1, limit_val_batches=0)
    fitted.fit(module, data)
    logged = fitted.callback_metrics
    assert set(logged) >= {"train/loss", "train/contrastive_loss", "train/extra_loss"}
    torch.testing.assert_close(logged["train/contrastive_loss"], module.contrastive)
    torch.testing.assert_close(logged["train/loss"], logged["train/contrastive_loss"] + logged["train/extra_loss"])
    assert module.model.logit_scale.item() < start_scale - 0.05  # the extra term's gradient pushed it down


def test_lit_pretraining_optimises_only_the_unlocked_parameters():
    from lit_clip.methods import CLIPPretraining

    module = CLIPPretraining(architecture="ViT-Micro-8", lock_image=True, lock_image_unlocked_groups=1)
    optimised = {id(p) for group in module.build_optimizer(fused=False).param_groups for p in group["params"]}
    names = {n for n, p in module.model.named_parameters() if id(p) in optimised}
    assert {n for n in names if n.startswith("visual.")} == {"visual.proj"}  # the last group: the projection
    assert "token_embedding.weight" in names and "logit_scale" in names


def test_retrieval_ranks_by_hand_with_ties_against_the_query():
    similarity = torch.tensor([[0.9, 0.5, 0.1, 0.3], [0.2, 0.2, 0.8, 0.1], [0.1, 0.4, 0.3, 0.2], [0.5, 0.6, 0.7, 0.9]])
    # right items 0, 1, 2, 3 rank 1; 3 (0.2 ties 0.2, and 0.8 above it); 2 (0.4 above); 1
    metrics = retrieval_ranks(similarity, torch.arange(4), ks=(1, 2))
    assert metrics["R@1"] == 0.5 and metrics["R@2"] == 0.75
    assert metrics["MdR"] == 1.5 and metrics["MnR"] == (1 + 3 + 2 + 1) / 4
