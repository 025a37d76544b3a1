"""The linear probe: CoOp's binary search for C, and the whole protocol end to end on ShapesWorld."""
import math

import pytest
from lit_clip.datamodules import ShapesWorldClassification

from lit_clip.methods import LinearProbe
from lit_clip.methods.classification.linear_probe import refine_C


def test_refine_C_walks_to_the_peak_of_a_unimodal_accuracy():
    calls = []

    def accuracy(C):
        calls.append(C)
        return -abs(math.log10(C) - 0.3)

    C, value = refine_C(accuracy, peak=1.0, steps=8)
    assert len(calls) == 16  # both ends at every step, as lpclip
    assert abs(math.log10(C) - 0.3) < 2 / 2**7 and value == accuracy(C)
    assert calls[:2] == [pytest.approx(0.1), pytest.approx(10.0)]  # a tenth to ten times the sweep's best


def test_refine_C_keeps_the_left_end_on_a_tie_and_zero_steps_keep_the_peak():
    C, _ = refine_C(lambda C: 0.5, peak=100.0, steps=1)
    assert C == pytest.approx(10.0)
    assert refine_C(lambda C: 0.5, peak=100.0, steps=0)[0] == 100.0


def test_linear_probe_end_to_end(trainer, lit_clip_checkpoint):
    data = ShapesWorldClassification(
        vocabulary="color", image_size=32, train_per_class=8, val_per_class=4, test_per_class=8, batch_size=32
    )
    probe = LinearProbe(str(lit_clip_checkpoint), C_grid=(1e-2, 1.0, 1e2), refine_steps=2, max_iter=50)
    results = trainer().test(probe, data)[0]
    # 8 colours: chance is 0.125; even a 2-step tower's features separate them in part (0.39 measured).
    assert results["test/top1"] > 2 * 0.125
    assert 1e-3 <= results["test/best_C"] <= 1e3
    assert 0 <= results["test/val_top1_at_best_C"] <= 1
