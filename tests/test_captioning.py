"""Captioning on CLIP: the decoders (beam 1 is greedy; a wide beam finds the best caption), ShapesWorld's and
Karpathy's captioning data, CLIP-ViL's transformer (causality, its loss, Noam, self-critical training) and ClipCap
(its mappers, its loss, a tokenizer's path), trained and evaluated with the checkpoint's vocabulary."""
import itertools

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_clip.datamodules import KarpathyCaptions, ShapesWorldCaptioning
from lit_clip.datamodules.captioning import END_ID, PAD_ID, caption_vocabulary, choose_references, encode_captions
from lit_clip.datamodules.export import export_coco_karpathy
from lit_clip.datamodules.shapesworld.captioning import named_compositions, names_the_scene, scene_and_references
from lit_clip.datamodules.shapesworld.world import ShapesWorld
from lit_clip.methods import ClipCap, TransformerCaptioning
from lit_clip.methods.vl import decoding
from lit_clip.methods.vl.attention import MultiHeadAttention
from lit_clip.methods.vl.captioning import with_end
from lit_clip.methods.vl.clipcap import MLPMapper, TransformerMapper
from lit_clip.methods.vl.transformer_captioner import CachedDecoding, CaptionTransformer, noam_rate

MICRO_TRANSFORMER = dict(hidden=16, layers=1, heads=2, ff=32, max_length=8, noam_warmup=4)
MICRO_CLIPCAP = dict(language_model={"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 64}, tokenizer=None,
                     prefix_length=2, clip_length=2, mapping_layers=1, max_tokens=8, beam_size=2, lr=1e-3,
                     warmup_steps=1)  # fmt: skip


def micro_data(**kwargs):
    options = dict(image_size=32, held_out=4, train_samples=8, val_samples=4, test_samples=4, batch_size=4,
                   vocabulary_scenes=40)  # fmt: skip
    return ShapesWorldCaptioning(**{**options, **kwargs})


# --- decoding -------------------------------------------------------------------------------------------------------
VOCABULARY, START, END, PAD = 5, 1, 4, 0


def toy_language_model(seed: int = 0):
    """Next-word log-probabilities that depend on the image and on every word so far; padding never written."""
    table = torch.randn(97, VOCABULARY, generator=torch.Generator().manual_seed(seed))
    table[:, END] -= 1.0  # captions of a few words

    def next_logprobs(rows, words):
        key = (rows * 31 + (words * torch.arange(1, words.shape[1] + 1)).sum(dim=1) * 7 + words.shape[1]) % 97
        logits = table[key].clone()
        logits[:, PAD] = float("-inf")
        return logits.log_softmax(dim=-1)

    return next_logprobs


def caption_logprob(next_logprobs, row: int, caption) -> float:
    words, total = torch.tensor([[START]]), 0.0
    for word in caption:
        total += next_logprobs(torch.tensor([row]), words)[0, word].item()
        words = torch.cat([words, torch.tensor([[word]])], dim=1)
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_with_one_beam_is_greedy_decoding(seed):
    model = toy_language_model(seed)
    greedy = decoding.greedy(model, 6, START, END, PAD, max_length=7)
    assert torch.equal(decoding.beam_search(model, 6, START, END, PAD, max_length=7, beam_size=1), greedy)
    ended = [row for row in greedy.tolist() if END in row]
    assert ended and all(all(word == PAD for word in row[row.index(END) + 1 :]) for row in ended)


def test_a_beam_as_wide_as_every_caption_finds_the_most_likely_one():
    model, max_length = toy_language_model(3), 3
    found = decoding.beam_search(model, 4, START, END, PAD, max_length=max_length, beam_size=64)
    words = [w for w in range(VOCABULARY) if w != PAD]
    for row in range(4):
        captions = [c for n in range(1, max_length + 1) for c in itertools.product(words, repeat=n)
                    if END not in c[:-1] and (c[-1] == END or n == max_length)]  # fmt: skip
        best = max(captions, key=lambda caption: caption_logprob(model, row, caption))
        assert tuple(w for w in found[row].tolist() if w != PAD) == best


def test_a_wide_length_normalised_beam_finds_the_caption_of_best_mean_log_probability():
    model, max_length = toy_language_model(5), 3
    found = decoding.beam_search(model, 4, START, END, PAD, max_length, beam_size=64, length_normalised=True)
    words = [w for w in range(VOCABULARY) if w != PAD]
    for row in range(4):
        captions = [c for n in range(1, max_length + 1) for c in itertools.product(words, repeat=n)
                    if END not in c[:-1] and (c[-1] == END or n == max_length)]  # fmt: skip
        best = max(captions, key=lambda caption: caption_logprob(model, row, caption) / len(caption))
        assert tuple(w for w in found[row].tolist() if w != PAD) == best


def test_length_normalised_beams_rank_by_the_mean_log_probability():
    # "END" at once: -1.0 in all and per word; "2 END": -0.6 - 0.6 = -1.2 in all, -0.6 per word.
    def next_logprobs(rows, words):
        logprobs = torch.full((len(rows), VOCABULARY), -30.0)
        logprobs[:, END] = -1.0 if words.shape[1] == 1 else -0.6
        logprobs[:, 2] = -0.6 if words.shape[1] == 1 else -30.0
        return logprobs

    plain = decoding.beam_search(next_logprobs, 1, START, END, PAD, max_length=3, beam_size=2)
    normalised = decoding.beam_search(next_logprobs, 1, START, END, PAD, 3, beam_size=2, length_normalised=True)
    assert plain[0].tolist() == [END, PAD, PAD] and normalised[0].tolist() == [2, END, PAD]


def test_sampling_draws_each_images_captions_together_and_a_cold_sample_is_greedy():
    model = toy_language_model(4)
    torch.manual_seed(0)
    samples = decoding.sample(model, 3, START, END, PAD, max_length=7, per_image=4, temperature=1e-4)
    greedy = decoding.greedy(model, 3, START, END, PAD, max_length=7)
    assert torch.equal(samples, greedy.repeat_interleave(4, dim=0))
    warm = decoding.sample(model, 3, START, END, PAD, max_length=7, per_image=50)
    assert len({tuple(row) for row in warm.tolist()}) > 3


# --- data -----------------------------------------------------------------------------------------------------------
def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def test_every_reference_names_every_object_of_its_scene_and_they_differ():
    world = ShapesWorld(image_size=64, min_objects=1, max_objects=4)
    phrasings = 0
    for index in range(150):
        scene, references = scene_and_references(world, "val", index, 5)
        assert references[0] == scene.caption and len(references) == 5
        for reference in references:
            for obj in scene.objects:
                words = f" {reference} "
                assert f" {obj.color} {obj.shape}" in words or f" {obj.color} {plural(obj.shape)}" in words, reference
        phrasings += len(set(references))
    assert phrasings > 150 * 3  # most references of a scene are different sentences
    again = scene_and_references(world, "val", 7, 5)[1]
    assert again == scene_and_references(world, "val", 7, 5)[1]


def test_the_naming_check_reads_colours_and_shapes_singular_or_plural():
    assert named_compositions("Two blue stars, and a small red circle.") == {("blue", "star"), ("red", "circle")}
    assert named_compositions("a large pink ring above three green crosses") == {("pink", "ring"), ("green", "cross")}
    assert named_compositions("a photo of shapes") == set()
    world = ShapesWorld(image_size=64, min_objects=1, max_objects=4)
    for index in range(100):  # every reference names exactly its scene's colour-shape pairs
        scene, references = scene_and_references(world, "test", index, 5)
        assert all(names_the_scene(reference, scene) for reference in references)
    scene = world.scene("test", 0)
    everything = " and ".join(f"a {obj.name}" for obj in scene.objects)
    assert names_the_scene(everything, scene) and not names_the_scene(f"a {scene.objects[0].name}", scene)
    assert not names_the_scene(everything + " and a pink star", scene)  # one too many


def test_shapesworld_captioning_batches_and_vocabulary():
    data = micro_data()
    data.setup("fit")
    assert data.words[:3] == ["<pad>", "<unk>", "<eos>"] and "circle" in data.words
    batch = next(iter(data.train_dataloader()))
    assert batch["captions"].shape == (4, 5, 24) and len(batch["references"]) == 4
    words = {word: k for k, word in enumerate(data.words)}
    first = batch["caption_text"][0][0]
    assert torch.equal(batch["captions"][0, 0], encode_captions([first], words, 24)[0])
    assert len(data.test_dataloader()) == 2 and data.evaluation_names == ["", "unseen/"]
    unseen = next(iter(data.test_dataloader()[1]))
    for reference in (refs[0] for refs in unseen["references"]):
        assert any(name in reference or name.replace(name.split()[1], plural(name.split()[1])) in reference
                   for name in data.held_out)  # fmt: skip


def test_vocabulary_encoding_and_reference_choice():
    vocabulary = caption_vocabulary(["A red circle.", "a red star", "A blue circle"], min_count=2)
    assert vocabulary == ["<pad>", "<unk>", "<eos>", "a", "circle", "red"]
    ids = encode_captions(["a red star, a red circle!"], {w: k for k, w in enumerate(vocabulary)}, max_words=5)
    assert ids.tolist() == [[3, 5, 1, 3, 5]]  # "star" unknown, cut at 5 words
    torch.manual_seed(0)
    repeated = choose_references(["x", "y"], 5)
    assert repeated[:2] == ["x", "y"] and set(repeated) == {"x", "y"} and len(repeated) == 5
    chosen = choose_references(list("abcdefg"), 5)
    assert "".join(chosen) in "abcdefg"  # a run of consecutive captions


def test_karpathy_captions_read_coco_folders_restval_trains_and_a_bad_image_is_skipped(tmp_path):
    exported = export_coco_karpathy(tmp_path, {"train": 3, "restval": 1, "val": 2, "test": 2}, image_size=32)
    exported["val"][1][0].write_bytes(b"not a jpeg")
    data = KarpathyCaptions(str(tmp_path), min_word_count=1, image_size=32, batch_size=2, num_workers=0)
    data.setup("fit")
    assert len(data.split("train")) == 4 and data.split("val")[0][0].parent.name == "val2014"
    batch = next(iter(data.val_dataloader()))
    assert batch["skipped_index"].tolist() == [1] and len(batch["references"]) == 1
    assert batch["references"][0] == exported["val"][0][1]
    assert data.training_references()[0] == exported["train"][0][1]
    with pytest.raises(FileNotFoundError, match="missing.json"):
        KarpathyCaptions(str(tmp_path), annotations="missing.json").setup("fit")


# --- CLIP-ViL's transformer -------------------------------------------------------------------------------------------
def test_masked_attention_runs_in_half_precision():
    attention = MultiHeadAttention(hidden=8, heads=2, dropout=0.0).half()
    x, mask = torch.randn(1, 3, 8).half(), torch.tensor([[[False, False, True]]])
    assert torch.isfinite(attention(x, x, x, mask)).all()


def test_the_decoder_reads_no_later_word_and_no_padding():
    torch.manual_seed(0)
    model = CaptionTransformer(words=9, visual_dim=6, hidden=16, layers=2, heads=2, ff=32).eval()
    memory = model.encode(torch.randn(1, 4, 6))
    words = torch.tensor([[2, 5, 6, 7]])
    changed = torch.tensor([[2, 5, 6, 8]])
    torch.testing.assert_close(model(memory, words)[:, :3], model(memory, changed)[:, :3])
    padded = torch.tensor([[2, 5, 6, 0, 0]])
    torch.testing.assert_close(model(memory, padded)[:, :3], model(memory, words[:, :3]))


def test_decoding_a_word_at_a_time_with_the_cache_equals_decoding_the_whole_caption():
    torch.manual_seed(0)
    model = CaptionTransformer(words=9, visual_dim=6, hidden=16, layers=2, heads=2, ff=32).eval()
    memory = model.encode(torch.randn(3, 4, 6))
    cached = CachedDecoding(model, memory)
    rows, words = torch.tensor([0, 0, 1, 2]), torch.tensor([[2, 5, 6, 7], [2, 8, 3, 3], [2, 4, 4, 4], [2, 7, 6, 5]])
    for t in range(1, 5):
        expected = model(memory[rows], words[:, :t])[:, -1]
        expected[:, PAD_ID] = float("-inf")
        torch.testing.assert_close(cached(rows, words[:, :t]), expected, atol=1e-5, rtol=1e-5)

    def recomputed(rows, words):
        logprobs = model(memory[rows], words)[:, -1]
        return logprobs.index_fill(1, torch.tensor(PAD_ID), float("-inf"))

    beams = decoding.beam_search(CachedDecoding(model, memory), 3, END_ID, END_ID, PAD_ID, max_length=6, beam_size=3)
    assert torch.equal(beams, decoding.beam_search(recomputed, 3, END_ID, END_ID, PAD_ID, max_length=6, beam_size=3))


def test_noam_peaks_at_the_warmup_as_clip_vils_schedule():
    assert noam_rate(20_000, 512, 20_000, 1.0) == pytest.approx(3.125e-4 * (20_000 / 20_000) * 1.0, rel=1e-3)
    assert noam_rate(20_000, 512, 20_000, 1.0) > noam_rate(19_000, 512, 20_000, 1.0) > noam_rate(1, 512, 20_000, 1.0)
    assert noam_rate(80_000, 512, 20_000, 1.0) == pytest.approx(noam_rate(20_000, 512, 20_000, 1.0) / 2)


def test_the_cross_entropy_is_the_mean_over_words_with_the_end(lit_clip_checkpoint):
    torch.manual_seed(0)
    method = TransformerCaptioning(str(lit_clip_checkpoint), **MICRO_TRANSFORMER)
    method.words = [f"w{k}" for k in range(9)]
    method.build()
    method.eval()
    memory = torch.randn(2, 3, 16)
    captions = torch.tensor([[4, 5, 0], [6, 0, 0]])
    assert with_end(captions).tolist() == [[4, 5, END_ID, 0], [6, END_ID, 0, 0]]
    logprobs, mask = method.word_logprobs(memory, with_end(captions))
    assert mask.tolist() == [[True, True, True, False], [True, True, False, False]]
    full = method.captioner(memory, torch.tensor([[END_ID, 4, 5, 0], [END_ID, 6, 0, 0]]))
    assert logprobs[0, :3].tolist() == pytest.approx([full[0, 0, 4].item(), full[0, 1, 5].item(),
                                                      full[0, 2, END_ID].item()])  # fmt: skip
    assert logprobs[1, :2].tolist() == pytest.approx([full[1, 0, 6].item(), full[1, 1, END_ID].item()])


def test_transformer_captioning_trains_with_self_critical_steps_and_tests_seen_and_unseen(lit_clip_checkpoint,
                                                                                         tmp_path):  # fmt: skip
    torch.manual_seed(0)
    method = TransformerCaptioning(str(lit_clip_checkpoint), self_critical_after=1, scst_lr=1e-3, samples=2,
                                   **MICRO_TRANSFORMER)  # fmt: skip
    data = micro_data()
    logger = TensorBoardLogger(tmp_path, name="captioning")
    trainer = L.Trainer(max_epochs=2, logger=logger, enable_progress_bar=False, log_every_n_steps=1,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])  # fmt: skip
    clip_before = {k: v.clone() for k, v in method.model.state_dict().items()}
    trainer.fit(method, data)
    assert all(torch.equal(v, method.model.state_dict()[k]) for k, v in clip_before.items())
    metrics = trainer.callback_metrics
    assert {"val/CIDEr", "val/Bleu_4", "val/ROUGE_L", "train/sample_cider", "train/greedy_cider"} <= set(metrics)
    optimizer = trainer.optimizers[0]
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.999)  # a fresh Adam for the second stage
    assert trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0] == pytest.approx(1e-3)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert not any(k.startswith("model.") for k in saved["state_dict"]) and saved["caption_vocabulary"] == data.words
    restored = TransformerCaptioning.load_from_checkpoint(tmp_path / "last.ckpt")
    assert all(torch.equal(v, restored.captioner.state_dict()[k]) for k, v in method.captioner.state_dict().items())
    results = L.Trainer(logger=False, enable_progress_bar=False).test(restored, data, verbose=False)
    assert {"test/CIDEr", "test/unseen/CIDEr"} <= set(results[0]) | set(results[-1])
    (events,) = (tmp_path / "captioning").rglob("events.out.tfevents.*")
    pictures = EventAccumulator(str(events), size_guidance={"images": 0})
    pictures.Reload()
    assert "val/captions" in pictures.Tags()["images"]
    other = micro_data(min_objects=4, max_objects=4, vocabulary_scenes=2)
    with pytest.raises(ValueError, match="caption vocabulary differs"):
        L.Trainer(logger=False, enable_progress_bar=False).test(restored, other, verbose=False)


def test_self_critical_rewards_samples_against_the_greedy_caption(lit_clip_checkpoint):
    torch.manual_seed(0)
    method = TransformerCaptioning(str(lit_clip_checkpoint), self_critical_after=0, samples=3, **MICRO_TRANSFORMER)
    method.words = ["<pad>", "<unk>", "<eos>", "a", "red", "circle", "star"]
    method.build()
    tokens = method.reward_tokens(["A red circle.", "a green star"], max_words=2)
    assert tokens == [["a", "red", "<eos>"], ["a", "<unk>", "<eos>"]]
    assert method.id_tokens(torch.tensor([[3, 4, 5, END_ID, PAD_ID], [END_ID, 0, 0, 0, 0], [3, 4, 5, 6, 6]])) == [
        ["a", "red", "circle", "<eos>"], ["<eos>"], ["a", "red", "circle", "star", "star"]]  # unended: no end word
    with pytest.raises(ValueError, match="vocabulary differs"):
        method.on_load_checkpoint({"caption_vocabulary": method.words[:-1], "state_dict": {}})


# --- ClipCap ----------------------------------------------------------------------------------------------------------
def test_clipcaps_mappers_have_the_official_shapes():
    mlp = MLPMapper(clip_dim=512, width=768, prefix_length=10)
    assert mlp[0].out_features == 3840 and mlp(torch.randn(2, 512)).shape == (2, 10, 768)
    transformer = TransformerMapper(clip_dim=8, width=16, prefix_length=4, clip_length=3, layers=2, heads=8)
    assert transformer(torch.randn(2, 8)).shape == (2, 4, 16)
    assert transformer.layers[0].to_queries.bias is None and transformer.layers[0].project.bias is not None


def test_clipcap_trains_on_caption_tokens_only_and_evaluates(lit_clip_checkpoint, tmp_path):
    torch.manual_seed(0)
    method = ClipCap(str(lit_clip_checkpoint), **MICRO_CLIPCAP)
    data = micro_data()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])  # fmt: skip
    trainer.fit(method, data)
    assert "val/CIDEr" in trainer.callback_metrics
    # The loss: the cross-entropy of each caption token and the end, given the prefix and the tokens before it.
    method.eval()
    batch = next(iter(data.train_dataloader()))
    batch["captions"] = batch["captions"][:, :1]
    tokens = method.caption_tokens(batch)
    prefix = method.prefix(batch["image"])
    row = tokens[0][: int(method.token_lengths(tokens[:1])[0])]
    assert row[-1] == END_ID and (tokens[0, len(row) :] == PAD_ID).all()
    logits = method.language_model(inputs_embeds=torch.cat(
        [prefix[:1], method.language_model.get_input_embeddings()(row[None])], dim=1)).logits  # fmt: skip
    expected = torch.nn.functional.cross_entropy(logits[0, 1:-1], row)
    torch.manual_seed(0)
    single = {"image": batch["image"][:1], "captions": batch["captions"][:1]}
    with torch.no_grad():
        assert method.caption_loss(single).item() == pytest.approx(expected.item(), rel=1e-5)
    restored = ClipCap.load_from_checkpoint(tmp_path / "last.ckpt")
    assert all(torch.equal(v, restored.mapper.state_dict()[k]) for k, v in method.mapper.state_dict().items())
    assert all(torch.equal(v, restored.language_model.state_dict()[k])
               for k, v in method.language_model.state_dict().items())  # fmt: skip


def test_predict_captions_a_folder_of_images(lit_clip_checkpoint, tmp_path):
    world = ShapesWorld(image_size=48)
    for k in range(3):
        world.scene("test", k).image.save(tmp_path / f"scene{k}.png")
    torch.manual_seed(0)
    method = TransformerCaptioning(str(lit_clip_checkpoint), **MICRO_TRANSFORMER)
    data = micro_data(predict_images=str(tmp_path))
    data.setup("predict")
    (predictions,) = [L.Trainer(logger=False, enable_progress_bar=False).predict(method, data)]
    assert [p.rsplit("/", 1)[1] for batch in predictions for p in batch["path"]] == [f"scene{k}.png" for k in range(3)]
    assert all(isinstance(caption, str) for batch in predictions for caption in batch["caption"])


def test_clipcaps_transformer_mapping_keeps_the_language_model_frozen_and_a_tokenizer_folder_works(
    lit_clip_checkpoint, tmp_path
):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<|endoftext|>", "[UNK]", *sorted({w for c in ("a red circle", "a blue star") for w in c.split()})]
    tokenizer = Tokenizer(models.WordLevel({w: k for k, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", unk_token="[UNK]")
    fast.save_pretrained(tmp_path / "tokenizer")
    torch.manual_seed(0)
    options = {**MICRO_CLIPCAP, "tokenizer": str(tmp_path / "tokenizer"), "mapping": "transformer"}
    method = ClipCap(str(lit_clip_checkpoint), **options)
    method.words = ["<pad>", "<unk>", "<eos>"]
    method.build()
    assert not any(p.requires_grad for p in method.language_model.parameters())
    method.train()
    assert not method.language_model.training and method.mapper.training
    batch = {"image": torch.randn(2, 3, 32, 32), "caption_text": [["a red circle"], ["a blue star"]]}
    tokens = method.caption_tokens(batch)
    assert tokens.tolist() == [[words.index(w) for w in "a red circle".split()] + [0],
                               [words.index(w) for w in "a blue star".split()] + [0]]  # fmt: skip
    method.caption_loss(batch).backward()
    assert method.mapper.prefix_const.grad is not None
    method.eval()
    texts = method.to_text(method.generate(batch))
    assert len(texts) == 2 and all(set(t.split()) <= set(words[2:]) for t in texts)
