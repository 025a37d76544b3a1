"""The command line as a user meets it: every config runs, configs compose, bad input gets a clear error."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
BASE = CONFIGS / "clip" / "shapes.yaml"
PRESETS = sorted((CONFIGS / "presets").glob("*.yaml"))
METHOD_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if p.parent.name != "presets")


def lit_clip(*args, cwd, module=False):
    """Run the CLI in a fresh process, as a user would (DDP relaunches the same command line)."""
    command = [sys.executable, "-m", "lit_clip"] if module else [str(Path(sys.executable).parent / "lit-clip")]
    return subprocess.run([*command, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def assert_ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("config", METHOD_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_runs_with_fast_dev_run(config, tmp_path):
    assert_ok(lit_clip("fit", "--config", config, "--trainer.fast_dev_run=true", cwd=tmp_path))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_every_preset_composes_with_the_shapes_config(preset, tmp_path):
    result = lit_clip("fit", "--config", BASE, "--config", preset, "--trainer.fast_dev_run=true", cwd=tmp_path)
    assert_ok(result)


def test_python_dash_m_saves_the_resolved_config_and_seed_into_the_run_directory(tmp_path):
    result = lit_clip(
        "fit", "--config", BASE, "--trainer.max_steps=2", "--trainer.limit_val_batches=1",
        "--seed_everything=123", "--trainer.logger.init_args.save_dir=runs", cwd=tmp_path, module=True,
    )  # fmt: skip
    assert_ok(result)
    run_dir = tmp_path / "runs" / "clip-shapes" / "version_0"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["seed_everything"] == 123
    assert saved["model"]["class_path"] == "lit_clip.methods.CLIPPretraining"
    assert list(run_dir.glob("events.out.tfevents.*")), "no TensorBoard events in the run directory"
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_print_config_resolves_interpolation(tmp_path):
    config = tmp_path / "interpolated.yaml"
    config.write_text(yaml.safe_dump({"data": {"init_args": {"context_length": "${model.init_args.warmup_steps}"}}}))
    result = lit_clip("fit", "--config", BASE, "--config", config, "--print_config", cwd=tmp_path)
    assert_ok(result)
    printed = yaml.safe_load(result.stdout)
    assert printed["data"]["init_args"]["context_length"] == printed["model"]["init_args"]["warmup_steps"]


def test_missing_config_file_is_named(tmp_path):
    result = lit_clip("fit", "--config", "configs/clip/nope.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "nope.yaml" in result.stderr


def test_misspelled_key_is_named(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({"model": {"init_args": {"learning_rate": 0.1}}}))
    result = lit_clip("fit", "--config", BASE, "--config", config, cwd=tmp_path)
    assert result.returncode != 0
    assert "learning_rate" in result.stderr


def test_unknown_architecture_in_a_config_lists_the_known_ones(tmp_path):
    result = lit_clip("fit", "--config", BASE, "--model.init_args.architecture=ViT-X-1", cwd=tmp_path)
    assert result.returncode != 0
    assert "ViT-X-1" in result.stderr and "ViT-B-32" in result.stderr
