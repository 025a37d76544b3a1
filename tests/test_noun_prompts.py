"""GroupViT's noun prompts: the words found, the draw, the padding, the data modules' ``noun_text``."""
import numpy as np
import pytest
import torch
from lit_clip.datamodules import ShapesWorldCaptions, WebDatasetPairs
from lit_clip.datamodules.export import export_webdataset
from lit_clip.datamodules.shapesworld.world import SHAPES, ShapesWorld

from lit_clip.noun_prompts import NounPrompts, caption_entries, nltk_available, rule_noun_phrases, rule_words
from lit_clip.tokenizer import tokenize

SHAPE_OF_WORD = {**{s: s for s in SHAPES}, **{s + "s": s for s in SHAPES}, "crosses": "cross"}
# Words about the picture itself: nouns (or participles) to a tagger too, as in the official prompts.
PICTURE_WORDS = {"photo", "picture", "image", "rendering", "shapes", "textured", "background"}


def test_rules_find_the_shape_words_of_shapesworld_captions_and_no_colour_size_or_relation():
    world = ShapesWorld(64, 1, 4, 0, ())
    for index in range(300):
        scene = world.scene("train", index)
        words = {word.lower() for word in rule_words(scene.caption)}
        assert words - SHAPE_OF_WORD.keys() <= PICTURE_WORDS, scene.caption
        shapes = {SHAPE_OF_WORD[word] for word in words if word in SHAPE_OF_WORD}
        assert shapes == {obj.shape for obj in scene.objects}, scene.caption


def test_rules_leave_out_closed_class_words_adverbs_and_adjectives():
    caption = "Two very happy dogs are quickly running to the left of a beautiful wooden house in the snow"
    assert rule_words(caption) == ["dogs", "running", "house", "snow"]


def test_noun_phrases_are_runs_of_adjectives_and_nouns_ending_in_a_noun():
    caption = "a large orange square is below a small orange cross, and two very happy dogs near a wooden house"
    assert rule_noun_phrases(caption) == ["large orange square", "small orange cross", "happy dogs", "wooden house"]
    prompts = NounPrompts(count=2, templates=["{}"], tagger="rules", word_type="noun_phrase")
    assert set(prompts("a red circle and a blue star.", np.random.default_rng(0))) == {"red circle", "blue star"}


def test_prompts_are_templated_nouns_padded_with_the_caption():
    prompts = NounPrompts(count=3, templates=["a photo of a {}."], tagger="rules")
    rng = np.random.default_rng(0)
    assert sorted(prompts("a red circle and a blue star.", rng)[:2]) == ["a photo of a circle.", "a photo of a star."]
    assert prompts("a red circle and a blue star.", rng)[2] == "a red circle and a blue star."
    assert prompts("red and blue.", rng) == ["red and blue."] * 3  # no noun: the caption three times


def test_a_noun_written_twice_can_be_drawn_twice_as_the_official_choice_over_the_list():
    prompts = NounPrompts(count=2, templates=["{}"], tagger="rules")
    draws = {tuple(prompts("a circle, a circle and a star", np.random.default_rng(seed))) for seed in range(40)}
    assert ("circle", "circle") in draws and any("star" in draw for draw in draws)


def test_prompts_follow_torch_s_seed_when_no_generator_is_given():
    prompts = NounPrompts(count=2, tagger="rules")
    torch.manual_seed(3)
    first = prompts("a dog chasing a cat near a tree")
    torch.manual_seed(3)
    assert prompts("a dog chasing a cat near a tree") == first


@pytest.mark.skipif(nltk_available(), reason="nltk's tagger data is installed here: nothing to refuse")
def test_the_nltk_tagger_without_its_data_is_a_clear_error_and_auto_falls_back_with_a_warning():
    with pytest.raises(RuntimeError, match="averaged_perceptron_tagger_eng"):
        NounPrompts(tagger="nltk")
    with pytest.warns(UserWarning, match="lit-clip's rules"):
        assert NounPrompts(tagger="auto").tagger == "rules"


def test_caption_entries_and_the_shapesworld_training_batches():
    entries = caption_entries("a red circle.", 16, NounPrompts(2, ["{}"], tagger="rules"))
    assert torch.equal(entries["text"], tokenize("a red circle.", context_length=16)[0])
    assert torch.equal(entries["noun_text"], tokenize(["circle", "a red circle."], context_length=16))
    data = ShapesWorldCaptions(noun_prompts=3, noun_tagger="rules", batch_size=4, train_samples=8, context_length=32)
    batch = next(iter(data.train_dataloader()))
    assert batch["noun_text"].shape == (4, 3, 32)
    assert "noun_text" not in next(iter(data.val_dataloader()[0]))  # evaluation batches as before


def test_webdataset_training_batches_carry_noun_prompts(tmp_path):
    export_webdataset(tmp_path, 8, shard_size=8, image_size=32)
    data = WebDatasetPairs(
        str(tmp_path / "shard-000000.tar"), 8, image_size=32, context_length=32, batch_size=4, num_workers=0,
        noun_prompts=2, noun_tagger="rules",
    )  # fmt: skip
    data.trainer = None
    batch = next(iter(data.train_dataloader()))
    assert batch["noun_text"].shape == (4, 2, 32)
