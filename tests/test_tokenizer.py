"""Our CLIP tokenizer must give exactly the ids of open_clip's (OpenAI's) tokenizer."""

import gzip
import random

import open_clip
import pytest
import torch

from lit_clip.tokenizer import DEFAULT_VOCAB_PATH, Tokenizer, default_tokenizer, tokenize

TEXTS = [
    # plain English and punctuation
    "a photo of a cat",
    "A photo of a dog.",
    "itap of a {}.",
    "a bad photo of the {}.",
    "Hello, world! How's it going? I'm fine; they're here, we've left, you'll see, he'd go.",
    "don't stop -- e.g. (this) [that] {other} <tag> \"quoted\" 'single' `tick` ~tilde~ ...",
    "snake_case and kebab-case and CamelCase and UPPERCASE and mIxEd CaSe",
    "user@example.com https://example.com/path?q=1&r=2#frag",
    # numbers (CLIP splits them into single digits)
    "1234567890 3.14159 -42 1e-5 50% $19.99 24/7 2nd 3rd 100,000",
    # whitespace
    "   leading and trailing spaces   ",
    "many     spaces\tand\ttabs\nand\nnewlines\r\nand\u00a0nbsp\u2003em-space",
    "\n\t  \n",
    "",
    # unicode: accents, other scripts, emoji, combining marks, mojibake (ftfy repairs it)
    "café naïve résumé Ångström façade über Straße",
    "cafÃ© naÃ¯ve",
    "日本語のテキスト 中文文本 한국어 텍스트",
    "Русский текст и ελληνικά και עברית ועربية",
    "emoji 🐱🐶 👍🏽 👨‍👩‍👧 🇫🇷 ❤️",
    "e\u0301 combining accent, Ǆ digraph, ﬁ ligature, ① circled, Ⅻ roman, ½ fraction, ² sup",
    "\u0345 ypogegrammeni \u0345x a\u0345",
    "zero\u200bwidth\u200dsp\ufeffaces and \x00\x01 control \x7f chars",
    "İstanbul ǅ ß ﬃ",
    # HTML entities (unescaped twice)
    "Tom &amp; Jerry",
    "Tom &amp;amp; Jerry &amp;amp;amp; more",
    "&lt;b&gt;bold&lt;/b&gt; &quot;q&quot; &#39;apos&#39; &#x263A; &nbsp;x &copy; &euro;",
    "&lt;start_of_text&gt;",
    # literal special tokens in the text become the special ids (in both implementations)
    "<start_of_text> hi <END_OF_TEXT> there <|endoftext|>",
    # long words and repetition (BPE cache)
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "the the the the the cat cat cat",
]

LONG_TEXT = " ".join(["a photo of a very fluffy orange cat sitting on a wooden table"] * 12)


def reference(texts, context_length):
    return open_clip.tokenize(texts, context_length=context_length)


@pytest.mark.parametrize("context_length", [16, 77])
def test_matches_open_clip_batch(context_length):
    texts = TEXTS + [LONG_TEXT]
    ours = tokenize(texts, context_length=context_length)
    assert ours.dtype == torch.long
    assert ours.shape == (len(texts), context_length)
    theirs = reference(texts, context_length)
    for text, a, b in zip(texts, ours, theirs):
        assert a.tolist() == b.tolist(), repr(text)


@pytest.mark.parametrize("text", TEXTS)
def test_matches_open_clip_each(text):
    assert tokenize(text).tolist() == reference(text, 77).tolist()


def test_matches_open_clip_random_strings():
    # Random mixes of ASCII, Latin-1, symbols, CJK and emoji hit odd splits and merges.
    rng = random.Random(0)
    pool = (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 .,;:!?'\"-_/\\()[]{}<>&#@$%^*+=|~`\t\n"
        "àéîõüçñßøåæœÀÉÎÕÜ¡¿«»°±µ·×÷ " "日本語中文한국어ру́сскийαβγ€£¥©®™…—–•" "🐱🐶👍🏽❤️\u200d\u0301"
    )
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 60))) for _ in range(300)]
    assert tokenize(texts).tolist() == reference(texts, 77).tolist()


def test_example_ids():
    assert tokenize("a photo of a cat")[0][:8].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 0]


def test_single_string_gives_one_row_and_empty_string_is_sot_eot():
    ids = tokenize("")
    assert ids.shape == (1, 77)
    assert ids[0, :3].tolist() == [49406, 49407, 0]
    assert tokenize([]).shape == (0, 77)


@pytest.mark.parametrize("context_length", [2, 16, 77])
def test_truncation_keeps_eot_last(context_length):
    ids = tokenize(LONG_TEXT, context_length=context_length)[0]
    assert len(default_tokenizer().encode(LONG_TEXT)) > 77
    assert ids[0].item() == 49406
    assert ids[-1].item() == 49407
    assert (ids != 0).all()  # no padding when truncated
    assert ids.tolist() == reference(LONG_TEXT, context_length)[0].tolist()


def test_special_ids_and_vocab_order_match_open_clip():
    tok = default_tokenizer()
    assert (tok.sot_token_id, tok.eot_token_id, tok.vocab_size) == (49406, 49407, 49408)
    # Decoding every id one by one checks the whole vocabulary, order included.
    ref = open_clip.SimpleTokenizer()
    assert ref.vocab_size == tok.vocab_size
    for i in range(tok.vocab_size):
        assert tok.decode([i]) == ref.decode([i]), i


@pytest.mark.parametrize("text", ["a photo of a cat", "two dogs playing in the snow", "", "the quick brown fox"])
def test_encode_decode_round_trip(text):
    tok = default_tokenizer()
    ids = tok.encode(text)
    assert 49406 not in ids and 49407 not in ids  # encode adds no SOT/EOT
    assert tok.decode(ids).strip() == text
    assert tok.decode(torch.tensor(ids)).strip() == text


def test_decode_matches_open_clip_on_unicode():
    tok = default_tokenizer()
    for text in TEXTS:
        ids = tok.encode(text)
        assert tok.decode(ids) == open_clip.decode(torch.tensor(ids)), repr(text)


@pytest.mark.parametrize("context_length", [1, 0, -5])
def test_context_length_below_two_raises(context_length):
    with pytest.raises(ValueError, match="context_length"):
        tokenize("a cat", context_length=context_length)


def test_missing_vocab_file_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "vocab.txt.gz"
    with pytest.raises(FileNotFoundError, match="nope"):
        Tokenizer(missing)


def test_corrupt_vocab_file_names_the_path(tmp_path):
    not_gzip = tmp_path / "not_gzip.txt.gz"
    not_gzip.write_text("this is not gzip data")
    with pytest.raises(ValueError, match="not_gzip"):
        Tokenizer(not_gzip)

    too_short = tmp_path / "too_short.txt.gz"
    with gzip.open(too_short, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\ni n\nt h\n")
    with pytest.raises(ValueError, match="too_short"):
        Tokenizer(str(too_short))


def test_explicit_vocab_path_equals_default():
    assert Tokenizer(DEFAULT_VOCAB_PATH)("a photo of a cat").tolist() == tokenize("a photo of a cat").tolist()
