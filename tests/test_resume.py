"""Surviving a kill: a run SIGKILLed mid-epoch and resumed with --ckpt_path last ends with the same
weights as the same run done in one go."""
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS, SAVE_EVERY, KILL_AT = 20, 10, 13  # 8 steps an epoch: the checkpoint and the kill fall mid-epoch

KILLER = '''
import os, signal
import lightning as L

class KillAtStep(L.Callback):
    """Dies like a preempted job: no clean-up, no final checkpoint."""
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def fit(run_dir: Path, *extra: str, env=None) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "lit_clip", "fit", "--config", str(ROOT / "configs/clip/shapes.yaml"),
        "--model.init_args.architecture=ViT-Micro-8", "--model.init_args.warmup_steps=5",
        "--data.init_args.image_size=32", "--data.init_args.context_length=16", "--data.init_args.batch_size=8",
        "--data.init_args.train_samples=64", "--data.init_args.val_samples=8",
        "--data.init_args.zeroshot_samples_per_class=1", "--trainer.limit_val_batches=1",
        f"--trainer.max_steps={STEPS}", "--trainer.max_epochs=-1", "--trainer.enable_progress_bar=false",
        "--trainer.logger.init_args.save_dir=runs",
        "--trainer.callbacks+=ModelCheckpoint", f"--trainer.callbacks.every_n_train_steps={SAVE_EVERY}",
        "--trainer.callbacks.save_last=true", "--trainer.callbacks.save_top_k=0",
        "--trainer.callbacks.dirpath=steps", *extra,
    ]  # fmt: skip
    return subprocess.run(command, cwd=run_dir, capture_output=True, text=True, timeout=600, env=env)


def final_weights(run_dir: Path) -> dict:
    checkpoint = torch.load(run_dir / "steps" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == STEPS
    return checkpoint["state_dict"]


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path):
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    whole.mkdir()
    pieces.mkdir()
    (pieces / "killer.py").write_text(KILLER)
    env = {**__import__("os").environ, "PYTHONPATH": str(pieces)}

    assert fit(whole).returncode == 0
    killed = fit(pieces, "--trainer.callbacks+=killer.KillAtStep", f"--trainer.callbacks.step={KILL_AT}", env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    interrupted = torch.load(pieces / "steps" / "last.ckpt", map_location="cpu", weights_only=True)
    assert interrupted["global_step"] == SAVE_EVERY
    resumed = fit(pieces, "--ckpt_path=steps/last.ckpt")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, actual = final_weights(whole), final_weights(pieces)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=0, msg=name)
