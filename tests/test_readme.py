"""The README's worked example of adding a method runs as written."""
import re
from pathlib import Path

import torch

from lit_clip.datamodules import ShapesWorldFewShot

README = Path(__file__).resolve().parents[1] / "README.md"


def worked_example() -> str:
    text = README.read_text()
    section = text[text.index("A worked example:") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_worked_example_of_a_new_method_trains_and_tests(lit_clip_checkpoint, trainer):
    namespace: dict = {}
    exec(compile(worked_example(), "README.md", "exec"), namespace)
    module = namespace["LearnedTemperature"](str(lit_clip_checkpoint), lr=0.5)
    start = module.log_scale.item()
    data = ShapesWorldFewShot(shots=2, image_size=32, pool_per_class=2, test_per_class=1, batch_size=16, base_to_new=True)
    trainer(max_epochs=1, limit_val_batches=0).fit(module, data)
    assert module.log_scale.item() != start  # the one parameter trained
    assert not module.model.logit_scale.requires_grad  # the CLIP stayed frozen
    results = trainer().test(module, data)[0]
    assert {"test/base_top1", "test/new_top1", "test/hm"} <= set(results)
    probabilities = module(next(iter(data.test_dataloader()[0]))["image"]).softmax(-1)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(probabilities.shape[0]))
