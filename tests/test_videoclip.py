"""VideoCLIP: overlapped video-text spans, the dot-product loss, masked mean pooling, k-means and the
retrieval-augmented batch sampler, the model's towers and the timed-caption data modules."""
import json
import math
import pickle
import random

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lit_clip.datamodules.timed_captions import (
    CaptionTokens,
    ClusteredBatchSampler,
    ShapesWorldTimedCaptions,
    TimedCaptions,
    VideoClusters,
    kmeans,
    overlapped_span,
    text_span,
    video_span,
)

from lit_clip.methods.video.videoclip import VideoCLIP
from lit_clip.tokenizer import default_tokenizer

TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


class ScriptedRandom(random.Random):
    """``random()`` returns the scripted coins in turn."""

    def __init__(self, coins):
        super().__init__(0)
        self.coins = list(coins)

    def random(self):
        return self.coins.pop(0)


# -- overlapped spans -----------------------------------------------------------------------------


def test_text_span_grows_as_mmpt():
    lengths, starts, ends = [5, 5, 5, 5], [0, 2, 4, 6], [2, 4, 6, 8]
    # Heads (> 0.5): the next caption while there is one; 5 + 5 + 5 tokens reach the budget of 12.
    assert text_span(lengths, starts, ends, 1, 12, ScriptedRandom([0.9, 0.9])) == (1, 4)
    # Tails: the previous one; at the first caption only the next one is left.
    assert text_span(lengths, starts, ends, 1, 12, ScriptedRandom([0.1, 0.1])) == (0, 3)
    # A budget the centre caption already fills: the caption alone.
    assert text_span(lengths, starts, ends, 2, 5, ScriptedRandom([])) == (2, 3)
    # Spans stop at 256 seconds whatever the budget.
    assert text_span([1] * 4, [0, 100, 200, 300], [100, 200, 300, 400], 0, 64, ScriptedRandom([0.9] * 3)) == (0, 3)


def test_overlapped_span_centre_inside_text_span():
    rng = random.Random(0)
    lengths_seen = set()
    for draw in range(3000):
        count = rng.randint(1, 12)
        bounds = sorted(rng.uniform(0, 90) for _ in range(2 * count))
        starts, ends = bounds[0::2], bounds[1::2]
        lengths = [rng.randint(1, 15) for _ in range(count)]
        seconds = rng.randint(1, 100)
        span = overlapped_span(lengths, starts, ends, seconds, (8, 64), (3, 32), rng)
        assert 0 <= span.first_caption < span.end_caption <= count
        low = min(max(math.floor(starts[span.first_caption]), 0), seconds - 1)
        high = min(max(math.ceil(ends[span.end_caption - 1]), low + 1), seconds)
        centre = (span.video_start + span.video_end) / 2
        assert low <= centre <= high, (draw, span, low, high)
        length = span.video_end - span.video_start
        assert 0 <= span.video_start and span.video_end <= seconds and 1 <= length <= 32
        if low >= 16 and high <= seconds - 16:  # far from the video's ends: the drawn length is kept
            assert length >= 3
            lengths_seen.add(length)
        grown_all = span.first_caption == 0 and span.end_caption == count
        if not grown_all and ends[span.end_caption - 1] - starts[span.first_caption] < 256:
            assert sum(lengths[span.first_caption : span.end_caption]) >= 8  # the budget is at least 8 tokens
    assert lengths_seen == set(range(3, 33))


def test_video_span_is_shortened_at_the_video_edges():
    rng = random.Random(1)
    for _ in range(200):
        start, end = video_span(0.2, 0.9, num_seconds=50, min_len=3, max_len=32, rng=rng)  # text span in second 0
        assert (start + end) / 2 <= 1 and start == 0 and 1 <= end <= 2
        start, end = video_span(48.5, 49.5, num_seconds=50, min_len=3, max_len=32, rng=rng)  # the last seconds
        assert 48 <= (start + end) / 2 <= 50 and end == 50 and end - start <= 4
        start, end = video_span(3.0, 4.0, num_seconds=5, min_len=3, max_len=32, rng=rng)  # a short video
        assert 3 <= (start + end) / 2 <= 4 and 0 <= start and end <= 5
    with pytest.raises(ValueError, match="min_len <= max_len"):
        video_span(0, 1, 10, 5, 3, rng)


# -- the loss and pooling -------------------------------------------------------------------------


def bert_model(**kwargs) -> VideoCLIP:
    torch.manual_seed(0)
    options = {"text_encoder": "bert", "bert_config": TINY_BERT, "feature_dim": 16, "video_layers": 1,
               "max_video_len": 8, "retrieval_augmented": False} | kwargs  # fmt: skip
    return VideoCLIP(**options)


@pytest.mark.parametrize("temperature", [None, 0.5])
def test_loss_by_hand(temperature):
    torch.manual_seed(0)
    video, text = torch.randn(4, 6), torch.randn(4, 6)
    scale = 1.0 if temperature is None else 1.0 / temperature
    expected = 0.0
    for i in range(4):  # -log softmax of the right pair, video->text and text->video, summed over directions
        expected -= math.log(math.exp(scale * video[i] @ text[i]) / sum(math.exp(scale * video[i] @ t) for t in text))
        expected -= math.log(math.exp(scale * text[i] @ video[i]) / sum(math.exp(scale * text[i] @ v) for v in video))
    expected /= 4
    for gather in (True, False):
        model = bert_model(temperature=temperature, gather_negatives=gather)
        assert model.contrastive_loss(video, text).item() == pytest.approx(expected, rel=1e-5)


def test_masked_mean_pooling_ignores_padding():
    model = bert_model().eval()
    torch.manual_seed(1)
    features, text = torch.randn(1, 3, 16), torch.tensor([[101, 2000, 2001, 102]])
    alone = model.encode_video({"features": features})
    padded = model.encode_video({"features": torch.cat([features, torch.randn(1, 4, 16)], 1),
                                 "frame_mask": torch.tensor([[True] * 3 + [False] * 4])})  # fmt: skip
    torch.testing.assert_close(padded, alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.encode_text(F.pad(text, (0, 5))), model.encode_text(text), rtol=1e-5, atol=1e-5)
    # The [CLS] output is left out: the pooled text is the mean of the other real tokens' outputs.
    hidden = model.text_transformer(input_ids=text).last_hidden_state
    torch.testing.assert_close(model.encode_text(text), hidden[:, 1:].mean(1), rtol=1e-5, atol=1e-5)


def test_clip_text_tower_pools_after_the_start_token_and_frames_stay_frozen():
    torch.manual_seed(0)
    model = VideoCLIP(architecture="ViT-Micro-8", video_layers=1, max_video_len=4, retrieval_augmented=False).train()
    assert not model.clip.visual.training and model.clip.transformer.training
    text = default_tokenizer()(["a red circle moves left"], context_length=16)
    tokens, _ = model.clip.encode_text_tokens(text)
    end = int(text.argmax())
    torch.testing.assert_close(model.encode_text(text), tokens[:, 1 : end + 1].mean(1))
    video = torch.randn(2, 3, 3, 32, 32)
    frame_mask = torch.tensor([[True, True, False], [True, True, True]])
    batch = {"video": video, "frame_mask": frame_mask, "text": text.repeat(2, 1)}
    model.contrastive_loss(*model(batch)).backward()
    assert all(p.grad is None for p in model.clip.visual.parameters())
    assert model.clip.transformer.resblocks[0].attn.in_proj_weight.grad is not None
    assert model.video_mlp.linear1.weight.grad is not None
    # Padding frames are not encoded: the features of a frame are the frozen tower's embedding of it.
    features = model.per_second_features(batch)
    torch.testing.assert_close(features[0, :2], model.clip.encode_image(video[0, :2]))
    assert features[0, 2].abs().sum() == 0


def test_tiny_bert_forward_backward():
    model = bert_model().train()
    batch = {"features": torch.randn(6, 5, 16), "frame_mask": torch.ones(6, 5, dtype=torch.bool),
             "text": torch.randint(1000, 2000, (6, 7))}  # fmt: skip
    batch["text"][:, 0], batch["text"][:, -1] = 101, 102
    video, text = model(batch)
    assert video.shape == text.shape == (6, 32)
    model.contrastive_loss(video, text).backward()
    for module in (model.video_mlp, model.video_transformer.encoder, model.text_transformer.encoder):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert model.clip is None  # precomputed features: no frame encoder
    with pytest.raises(ValueError, match="max_video_len"):
        model.encode_video({"features": torch.randn(1, 9, 16)})
    with pytest.raises(ValueError, match="feature_dim"):
        model.encode_video({"features": torch.randn(1, 3, 12)})


# -- retrieval-augmented batches ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_kmeans_finds_two_obvious_clusters(backend):
    torch.manual_seed(0)
    points = torch.cat([torch.randn(30, 5) + 8, torch.randn(20, 5) - 8])[torch.randperm(50)]
    truth = points[:, 0] > 0
    centroids, assignment = kmeans(points, 2, backend=backend)
    assert centroids.shape == (2, 5)
    assert assignment[truth].unique().numel() == 1 and assignment[~truth].unique().numel() == 1
    assert assignment[truth][0] != assignment[~truth][0]


def test_clustered_batch_sampler_groups_each_epoch_by_cluster():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    labels = torch.arange(3).repeat_interleave(torch.tensor([8, 12, 16]))[torch.randperm(36)]
    embeddings = centres[labels] + torch.randn(36, 2) * 0.1
    clusters = VideoClusters(videos_per_cluster=12, backend="torch")
    sampler = ClusteredBatchSampler(torch.utils.data.RandomSampler(range(36)), 4, True, clusters)
    plain = list(sampler)  # no clusters yet: plain random batches
    assert sorted(i for batch in plain for i in batch) == list(range(36))
    clusters.set_embeddings(embeddings)
    assert clusters.assignment.unique().numel() == 3
    for _ in range(3):  # epochs
        batches = list(sampler)
        assert len(batches) == len(sampler) == 9 and all(len(batch) == 4 for batch in batches)
        assert sorted(i for batch in batches for i in batch) == list(range(36))  # each video once
        assert all(labels[batch].unique().numel() == 1 for batch in batches)  # cluster sizes are multiples of 4
    # Clusters of 7, 13 and 16 videos: at most one batch at each of the two borders mixes clusters.
    uneven = torch.arange(3).repeat_interleave(torch.tensor([7, 13, 16]))
    clusters.set_clusters(uneven, centres)
    batches = list(ClusteredBatchSampler(torch.utils.data.RandomSampler(range(36)), 4, False, clusters))
    assert sorted(i for batch in batches for i in batch) == list(range(36))
    assert sum(uneven[batch].unique().numel() > 1 for batch in batches) <= 2


# -- data -----------------------------------------------------------------------------------------


def test_shapesworld_timed_batch():
    data = ShapesWorldTimedCaptions(
        image_size=32, clip_frames=4, segments=3, train_videos=4, videos_per_batch=2, clips_per_video=3,
        text_len=(4, 12), video_len=(2, 6), context_length=24,
    )  # fmt: skip
    batch = next(iter(data.train_dataloader()))
    rows = 2 * 3
    assert batch["video"].shape[:3] == (rows, batch["frame_mask"].shape[1], 3) and batch["text"].shape == (rows, 24)
    assert batch["index"].view(2, 3).unique(dim=1).shape[1] == 1  # three clips of each video
    lengths = batch["frame_mask"].sum(1)
    assert ((lengths >= 1) & (lengths <= 6)).all() and not batch["video"][~batch["frame_mask"]].any()
    tokenizer = default_tokenizer()
    for row in range(rows):
        long_video = data.clips.long_video("train", int(batch["index"][row]), 3)
        captions = long_video.captions
        assert any(batch["caption"][row] == " ".join(captions[a:b]) for a in range(3) for b in range(a + 1, 4))
        ids = [tokenizer.sot_token_id, *tokenizer.encode(batch["caption"][row])][:23] + [tokenizer.eot_token_id]
        assert batch["text"][row, : len(ids)].tolist() == ids
    evaluation = next(iter(data.val_dataloader()[0]))
    assert evaluation["video"].shape[1] == 4 and evaluation["text"].shape[1] == 24 and len(evaluation["caption"]) == 64


def write_features_fixture(root, pickled: bool):
    captions = {
        "vidA": {"start": [0.0, 3.2, 7.5], "end": [3.0, 7.0, 11.9],
                 "text": ["cut the onion", "heat the pan", "add oil"]},
        "vidB": {"start": [0.5, 4.0], "end": [4.0, 9.5], "text": ["boil water", float("nan")]},
        "vidC": {"start": [1.0], "end": [2.5], "text": ["serve"]},
    }
    path = root / ("raw_caption_dedup.pkl" if pickled else "caption.json")
    if pickled:  # MMPT's pickle: video id -> the JSON string
        path.write_bytes(pickle.dumps({k: json.dumps(v) for k, v in captions.items()}))
    else:
        path.write_text(json.dumps(captions))
    features = root / "feat_how2_s3d"
    features.mkdir()
    for video_id, seconds in (("vidA", 12), ("vidB", 10), ("vidC", 3)):  # row r is all r: the seconds can be read back
        np.save(features / f"{video_id}.npy", np.repeat(np.arange(seconds, dtype=np.float16)[:, None], 8, axis=1))
    (root / "train.lst").write_text("vidA\nvidB\nmissing_video\n")
    (root / "val.lst").write_text("vidC\nvidA\n")
    return path, features


@pytest.mark.parametrize("pickled", [False, True])
def test_clip_list_layout_with_features(tmp_path, pickled):
    captions, features = write_features_fixture(tmp_path, pickled)
    data = TimedCaptions(str(captions), features_dir=str(features), train_list=str(tmp_path / "train.lst"),
                         val_list=str(tmp_path / "val.lst"), tokenizer="clip", context_length=16, videos_per_batch=2,
                         clips_per_video=4, text_len=(2, 6), video_len=(2, 5), num_workers=0)  # fmt: skip
    assert data.video_ids["train"] == ["vidA", "vidB"]
    batch = next(iter(data.train_dataloader()))
    assert batch["features"].shape[0] == 8 and batch["features"].shape[2] == 8
    texts = {"vidA": ["cut the onion", "heat the pan", "add oil"], "vidB": ["boil water", ""]}
    for row in range(8):
        video_id = data.video_ids["train"][int(batch["index"][row])]
        seconds = batch["features"][row, batch["frame_mask"][row], 0]
        assert torch.equal(seconds, seconds[0] + torch.arange(len(seconds)))  # consecutive seconds of that video
        spans = [" ".join(texts[video_id][a:b]) for a in range(3) for b in range(a + 1, 4)]
        assert batch["caption"][row] in spans
    evaluation = next(iter(data.val_dataloader()[0]))
    assert evaluation["caption"] == ["serve", "cut the onion", "heat the pan", "add oil"]
    mask = evaluation["frame_mask"]
    assert [evaluation["features"][k, mask[k], 0].tolist() for k in range(4)] == [
        [1, 2], [0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 10, 11]
    ]  # fmt: skip
    tokens = CaptionTokens("clip", 16)
    assert torch.equal(evaluation["text"][0], tokens(tokens.encode("serve")))


def test_clip_list_video_files_and_bad_samples(tmp_path):
    captions = {"clip0": {"start": [0.0], "end": [3.0], "text": ["a square turns red"]},
                "gone": {"start": [0.0], "end": [2.0], "text": ["nothing here"]}}  # fmt: skip
    (tmp_path / "caption.json").write_text(json.dumps(captions))
    with av.open(str(tmp_path / "clip0.mp4"), "w") as container:  # 3 s at 4 fps, second s is grey level 80 * s
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for k in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 80 * (k // 4), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    data = TimedCaptions(
        str(tmp_path / "caption.json"), video_dir=str(tmp_path), tokenizer="clip", context_length=16,
        videos_per_batch=2, clips_per_video=2, video_len=(1, 3), image_size=32, num_workers=0,
    )  # fmt: skip
    batch = next(iter(data.train_dataloader()))
    assert batch["skipped_index"].tolist() == [1] and batch["video"].shape[0] == 2  # "gone" has no file
    means = batch["video"][0][batch["frame_mask"][0]].mean(dim=(1, 2, 3))
    assert (means[1:] > means[:-1]).all()  # consecutive seconds, brighter and brighter


def test_retrieval_augmented_clusters_are_set_in_fit(trainer):
    data = ShapesWorldTimedCaptions(image_size=32, clip_frames=4, segments=2, train_videos=8, videos_per_batch=2,
                                    clips_per_video=2, val_samples=4, test_samples=4, video_len=(2, 4),
                                    context_length=16, videos_per_cluster=4)  # fmt: skip
    torch.manual_seed(0)
    model = VideoCLIP(architecture="ViT-Micro-8", video_layers=1, max_video_len=4, warmup_steps=1)
    trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0).fit(model, data)
    assert data.video_clusters.assignment.shape == (8,) and len(data.video_clusters.tour) == 2
    metrics = trainer(limit_test_batches=1).test(model, data)[0]
    assert {"test/t2v_R@1", "test/v2t_R@5", "test/t2v_MdR", "test/v2t_MnR"} <= set(metrics)
    scores, captions = model.similarity_matrix(next(iter(data.test_dataloader()[0])))
    assert scores.shape == (4, 4) and len(captions) == 4


def test_bert_from_a_folder_inits_the_video_transformer_from_its_first_layers(tmp_path):
    from transformers import BertConfig, BertModel

    from lit_clip.models.language import word_tokenizer

    tokenizer = word_tokenizer(["boil", "water", "the", "pan"])
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), **TINY_BERT)
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = VideoCLIP(text_encoder="bert", pretrained_text=str(tmp_path), feature_dim=16, video_layers=1,
                      retrieval_augmented=False)  # fmt: skip
    text_layer, video_layer = model.text_transformer.encoder.layer[0], model.video_transformer.encoder.layer[0]
    assert len(model.video_transformer.encoder.layer) == 1 and len(model.text_transformer.encoder.layer) == 2
    torch.testing.assert_close(video_layer.state_dict(), text_layer.state_dict())
    assert model.video_special_ids == (tokenizer.cls_token_id, tokenizer.sep_token_id)
    tokens = CaptionTokens(str(tmp_path), context_length=8)
    ids = tokens(tokens.encode("boil the water") + tokens.encode("the pan"))
    assert ids.tolist()[:7] == [tokenizer.cls_token_id, *tokenizer("boil the water the pan")["input_ids"][1:]]
    assert ids.tolist()[6:] == [tokenizer.sep_token_id, tokenizer.pad_token_id]
    batch = model.on_before_batch_transfer({"text": torch.stack([ids, F.pad(ids[:3], (0, 5))])}, 0)
    assert batch["text"].shape == (2, 7)  # cut after the longest text's [SEP]
