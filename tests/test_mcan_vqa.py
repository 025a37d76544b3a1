"""MCAN on CLIP grid features: its blocks on small cases, the schedule, training and evaluation on ShapesWorld
questions with the checkpoint's vocabularies, the random-tower baseline, GloVe files."""
import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_clip.datamodules import ShapesWorldQuestions
from lit_clip.methods import MCANVQA
from lit_clip.methods.vl.mcan_vqa import MCAN, AttentionFlatten, LayerNorm, read_glove
from lit_clip.optim import epoch_step_schedule

MICRO = dict(hidden=16, layers=1, heads=2, word_dim=8, flat_mlp=16, flat_out=32, warmup_epochs=1,
             decay_epochs=[2, 3], lr=1e-3)  # fmt: skip


def micro_data(**kwargs):
    options = dict(image_size=32, held_out=4, train_samples=16, val_samples=8, test_samples=8, batch_size=8)
    return ShapesWorldQuestions(**{**options, **kwargs})


def test_mcans_layer_norm_divides_by_the_unbiased_std_plus_eps():
    x = torch.tensor([[1.0, 2.0, 4.0]])
    expected = (x - x.mean()) / (torch.tensor([1.0, 2.0, 4.0]).std(unbiased=True) + 1e-6)
    torch.testing.assert_close(LayerNorm(3)(x), expected)


def test_attention_flatten_ignores_padding():
    flatten = AttentionFlatten(hidden=8, mlp=8, out=4, dropout=0.0).eval()
    x, other = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    other[:, :3] = x[:, :3]
    mask = torch.tensor([[False, False, False, True, True]])
    torch.testing.assert_close(flatten(x, mask), flatten(other, mask))


def test_padding_words_do_not_change_the_answer():
    torch.manual_seed(0)
    mcan = MCAN(words=10, visual_dim=6, answers=5, hidden=16, layers=2, heads=2, word_dim=8, flat_mlp=8, flat_out=12)
    mcan.eval()
    question, visual = torch.tensor([[3, 4, 5, 0, 0]]), torch.randn(1, 4, 6)
    shorter = question[:, :3]
    # The LSTM reads left to right: the states of the real words are the same with or without padding after them.
    torch.testing.assert_close(mcan(question, visual), mcan(shorter, visual), atol=1e-5, rtol=1e-5)
    assert mcan(question, visual).shape == (1, 5)


def test_the_learning_rate_warms_up_by_quarters_and_decays_as_mcan():
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    schedule = epoch_step_schedule(optimizer, 2, warmup_epochs=3, decay_epochs=[10, 12], decay_factor=0.2)
    factors = []
    for _ in range(13 * 2):
        factors.append(schedule.get_last_lr()[0] / 1e-3)
        optimizer.step()
        schedule.step()
    assert factors[::2] == factors[1::2]  # constant within an epoch
    assert factors[::2] == pytest.approx([0.25, 0.5, 0.75] + [1.0] * 7 + [0.2] * 2 + [0.04])


def test_training_changes_mcan_alone_and_test_reports_accuracy_per_type_and_unseen(lit_clip_checkpoint, tmp_path):
    torch.manual_seed(0)
    method = MCANVQA(str(lit_clip_checkpoint), **MICRO)
    data = micro_data()
    logger = TensorBoardLogger(tmp_path, name="vqa")
    trainer = L.Trainer(max_epochs=2, logger=logger, enable_progress_bar=False, default_root_dir=tmp_path,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])  # fmt: skip
    clip_before = {k: v.clone() for k, v in method.model.state_dict().items()}
    trainer.fit(method, data)
    assert all(torch.equal(v, method.model.state_dict()[k]) for k, v in clip_before.items())
    metrics = trainer.callback_metrics
    assert 0 <= metrics["val/accuracy"] <= 1 and "val/accuracy_relation" in metrics
    method.validation_step({"skipped_index": torch.tensor([0, 1])}, 0)  # a batch of unreadable images only
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert not any(k.startswith("model.") for k in saved["state_dict"])  # the CLIP comes back from `pretrained`
    assert saved["vqa_vocabulary"]["answers"] == data.answers
    restored = MCANVQA.load_from_checkpoint(tmp_path / "last.ckpt")
    assert all(torch.equal(v, restored.mcan.state_dict()[k]) for k, v in method.mcan.state_dict().items())
    results = L.Trainer(logger=False, enable_progress_bar=False).test(restored, data, verbose=False)
    assert {"test/accuracy", "test/unseen/accuracy", "test/accuracy_count"} <= set(results[0]) | set(results[-1])
    (events,) = (tmp_path / "vqa").rglob("events.out.tfevents.*")
    pictures = EventAccumulator(str(events), size_guidance={"images": 0})
    pictures.Reload()
    assert "val/answers" in pictures.Tags()["images"]


def test_the_random_tower_baseline_keeps_its_tower_in_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    method = MCANVQA(None, architecture="ViT-Micro-8", **MICRO)
    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, limit_val_batches=0,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])  # fmt: skip
    trainer.fit(method, micro_data())
    restored = MCANVQA.load_from_checkpoint(tmp_path / "last.ckpt")
    assert all(torch.equal(v, restored.model.state_dict()[k]) for k, v in method.model.state_dict().items())
    with pytest.raises(ValueError, match="architecture"):
        MCANVQA(None)


def test_glove_vectors_fill_known_words_and_a_wrong_width_is_named(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("red 1 2 3\nstar 4 5 6\n")
    vectors = read_glove(glove, ["<pad>", "<unk>", "red", "circle", "star"], 3)
    assert vectors.tolist() == [[0, 0, 0], [0, 0, 0], [1, 2, 3], [0, 0, 0], [4, 5, 6]]
    with pytest.raises(ValueError, match="glove.txt:1: 3 values for 'red', expected 4"):
        read_glove(glove, ["red"], 4)
