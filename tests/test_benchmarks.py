"""The benchmark scripts in their quick modes, so they cannot rot. No speed is asserted here: the scripts
print ratios measured in one run, and the README quotes their full runs."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_python(*args, cwd=ROOT, timeout=900):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def run_module(*args, **kwargs):
    return run_python("-m", *args, **kwargs)


def table_rows(output: str) -> list[list[str]]:
    lines = [line for line in output.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def number(cell: str) -> float:
    """A number as the scripts print it: thousands separated by commas, maybe followed by a unit ("1,073.4",
    "3.20x", "512 MiB")."""
    return float(cell.split()[0].replace(",", "").removesuffix("x"))


@pytest.mark.slow
def test_clip_benchmark_quick_mode_compares_every_contender():
    rows = table_rows(run_module("benchmarks.bench_clip", "--quick"))
    seen = {(row[1], row[2]) for row in rows}
    contenders = ("lit-clip", "lit-clip compiled", "open_clip", "transformers")
    assert seen == {(precision, c) for precision in ("fp32", "bf16") for c in contenders}
    for row in rows:
        numbers = [number(cell) for cell in (row[3], row[6], row[7], row[9], row[10])]
        assert all(n > 0 for n in numbers), row
        if row[2].startswith("lit-clip"):
            assert number(row[4]) > 0 and number(row[5]) > 0, "ratios against open_clip and transformers"


@pytest.mark.slow
def test_prompt_benchmark_quick_run():
    rows = table_rows(run_module("benchmarks.bench_prompts", "--architecture", "ViT-Micro-8", "--batch-sizes", "1", "4", "--rounds", "1"))
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("CoOp", "1", "64"), ("CoCoOp", "1", "64"), ("CoOp", "4", "64"), ("CoCoOp", "4", "256"),
    ]  # fmt: skip
    assert all(number(row[3]) > 0 and number(row[4]) > 0 for row in rows)


@pytest.mark.slow
def test_fewshot_table_runs_every_method_from_its_config(tmp_path, lit_clip_checkpoint):
    out = tmp_path / "table"
    run_module(
        "benchmarks.fewshot_table", "--pretrained", lit_clip_checkpoint, "--shots", "1", "--seeds", "1", "2",
        "--base-to-new-shots", "1", "--out", out,
        "--set", "trainer.max_epochs=1", "data.init_args.pool_per_class=2", "data.init_args.test_per_class=1",
        "coop:model.init_args.n_ctx=4", "maple:model.init_args.prompt_depth=2",
        "tip_adapter:model.init_args.augment_epochs=1", "tip_adapter_f:model.init_args.augment_epochs=1",
    )  # fmt: skip
    with open(out / "runs.csv") as file:
        runs = list(csv.DictReader(file))
    methods = ["zeroshot", "coop", "cocoop", "maple", "clip_adapter", "tip_adapter", "tip_adapter_f"]
    assert len(runs) == len(methods) * (2 + 2)  # 1 shot x 2 seeds, and base-to-new x 2 seeds
    assert {r["method"] for r in runs} == set(methods)
    assert all(0 <= float(r["test/top1"]) <= 1 for r in runs if r["protocol"] == "few-shot")
    assert all(0 <= float(r["test/hm"]) <= 1 for r in runs if r["protocol"] == "base-to-new")
    table = (out / "table.md").read_text()
    for label in ("Zero-shot CLIP", "CoOp", "CoCoOp", "MaPLe", "CLIP-Adapter", "Tip-Adapter", "Tip-Adapter-F"):
        assert f"| {label} |" in table
    assert "CoCoOp above CoOp on new classes" in table and " ± " in table


def test_fewshot_table_overrides_go_to_their_method_and_keep_colons_in_values():
    # benchmarks/ is not on the test path (the repository root is not: see setup.cfg); run it as the README does.
    settings = ["model.init_args.pretrained=hf-hub:org/clip", "maple:model.init_args.prompt_depth=2", "coop:trainer.max_epochs=3"]
    script = (
        "import json, sys; from benchmarks.fewshot_table import overrides_for; "
        "print(json.dumps({m: overrides_for(m, sys.argv[1:]) for m in ('maple', 'cocoop')}))"
    )
    chosen = json.loads(run_python("-c", script, *settings).splitlines()[-1])
    assert chosen["maple"] == ["model.init_args.pretrained=hf-hub:org/clip", "model.init_args.prompt_depth=2"]
    assert chosen["cocoop"] == ["model.init_args.pretrained=hf-hub:org/clip"]


@pytest.mark.slow
def test_groupvit_benchmark_quick_mode_compares_with_transformers():
    rows = table_rows(run_module("benchmarks.bench_groupvit", "--quick"))
    assert [row[3] for row in rows] == ["lit-clip", "transformers"]
    assert all(number(row[4]) > 0 and number(row[6]) > 0 for row in rows)
    assert number(rows[0][8]) < 1e-4  # the two compute the same embeddings


@pytest.mark.slow
def test_vild_benchmark_quick_mode_times_each_variant_beside_faster_rcnn():
    output = run_module("benchmarks.bench_vild", "--quick", "--threads", "1")  # 1: no racing a busy CPU's other jobs
    training, crops = (table_rows(part) for part in output.split("\n\n") if part.startswith("| "))
    assert [row[5] for row in training] == ["Faster R-CNN (4conv-2fc head)", "ViLD-text", "ViLD", "ViLD-ens"]
    assert all(number(row[7]) > 0 and number(row[8]) > 0 for row in training)
    assert number(training[0][9]) == 1.0 and all(number(row[9]) > 0 for row in training)
    assert [row[0] for row in crops] == ["RN-Tiny"] and number(crops[0][3]) > 0


@pytest.mark.slow
def test_glip_benchmark_quick_mode_times_each_fusion_depth_beside_vild():
    # Without the memory column: it rebuilds each model in a fresh process, a minute of the suite's time.
    rows = table_rows(run_module("benchmarks.bench_glip", "--quick", "--threads", "1", "--no-memory"))
    assert [row[5] for row in rows] == ["ViLD-text", "GLIP, fusion depth 0/2", "GLIP, fusion depth 1/2",
                                        "GLIP, fusion depth 2/2"]  # fmt: skip
    assert all(number(row[7]) > 0 for row in rows) and number(rows[0][8]) == 1.0
    params = [number(row[6]) for row in rows[1:]]
    assert params[0] < params[1] < params[2]  # each fusion block adds cross-attention and a BERT layer
    assert all(row[9] == "-" for row in rows)


def test_slip_benchmark_quick_mode_times_slips_step_beside_clips(monkeypatch, capsys):
    # In this process: a fresh one would spend most of the test importing torch and Lightning again.
    monkeypatch.syspath_prepend(str(ROOT))  # the benchmarks package sits at the root, not installed
    from benchmarks import bench_slip

    monkeypatch.setattr(sys, "argv", ["bench_slip", "--quick"])
    bench_slip.main()
    rows = table_rows(capsys.readouterr().out)
    assert [row[0] for row in rows] == ["fp32"]
    clip, slip, ratio = (number(cell) for cell in rows[0][1:4])
    assert clip > 0 and slip > 0 and ratio == pytest.approx(slip / clip, rel=0.02)


def test_audio_benchmark_quick_mode_times_the_audio_tower(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import bench_audio

    monkeypatch.setattr(sys, "argv", ["bench_audio", "--quick"])
    bench_audio.main()
    rows = table_rows(capsys.readouterr().out)
    assert [row[:3] for row in rows] == [["ESResNeXt-Tiny", "1 s at 8000 Hz", "fp32"]]
    assert number(rows[0][3]) > 100_000 and number(rows[0][4]) > 0 and number(rows[0][5]) > 0
    assert 0 < number(rows[0][6].rstrip("%")) <= 100


def test_video_benchmark_quick_mode_times_the_loaders_and_every_method_s_step(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import bench_video

    monkeypatch.setattr(sys, "argv", ["bench_video", "--quick"])
    bench_video.main()
    rows = [row for row in table_rows(capsys.readouterr().out) if not row[0].startswith("training step")]  # 2 tables
    names = [row[0] for row in rows]
    assert names == [
        "ShapesWorldVideo (generated)", "MSRVTT (lossless mp4, 1 fps)", "Kinetics400 (lossy mp4, TSN + augmentation)",
        "CLIP4Clip meanP", "CLIP4Clip seqTransf", "ActionCLIP Transf", "VideoCLIP (CLIP text)",
    ]  # fmt: skip
    assert all(number(row[1]) > 0 for row in rows)


def test_pointclip_benchmark_quick_mode_times_each_projection_beside_encoding(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import bench_pointclip

    monkeypatch.setattr(sys, "argv", ["bench_pointclip", "--quick"])
    bench_pointclip.main()
    rows = table_rows(capsys.readouterr().out)
    assert [row[0] for row in rows] == ["V1 zero-shot", "V1 few-shot", "V2"]
    assert all(number(row[3]) > 0 and number(row[4]) > 0 and number(row[5]) > 0 for row in rows)


def test_rasterizer_benchmark_quick_mode_times_culled_and_dense_rendering_of_the_same_images(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import bench_rasterizer

    monkeypatch.setattr(sys, "argv", ["bench_rasterizer", "--quick"])
    bench_rasterizer.main()
    rows = table_rows(capsys.readouterr().out)
    assert [row[0] for row in rows] == ["CLIPDraw-like", "CLIPasso-like"]
    assert all(number(row[3]) > 0 and number(row[5]) > 0 and number(row[8]) < 1e-4 for row in rows)


@pytest.mark.slow
def test_generation_benchmark_quick_mode_times_a_step_of_each_method_beside_its_picture(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import bench_generation

    monkeypatch.setattr(sys, "argv", ["bench_generation", "--quick", "--rounds", "1", "--warmup", "0"])
    bench_generation.main()
    rows = table_rows(capsys.readouterr().out)
    assert [row[0] for row in rows] == ["CLIPDraw", "CLIPasso", "VQGAN-CLIP"]
    assert all(number(row[3]) > 0 and 0 < number(row[5]) for row in rows)


@pytest.mark.slow
def test_caption_naming_reads_a_captioners_checkpoint_and_prints_its_row(tmp_path, lit_clip_checkpoint):
    script = (
        "import lightning as L, sys; from lit_clip.methods import TransformerCaptioning; "
        "from lit_clip.datamodules import ShapesWorldCaptioning; "
        "data = ShapesWorldCaptioning(image_size=32, held_out=4, train_samples=8, batch_size=4, vocabulary_scenes=20); "
        "method = TransformerCaptioning(sys.argv[1], hidden=16, layers=1, heads=2, ff=32, max_length=6); "
        "trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, limit_val_batches=0, "
        "default_root_dir=sys.argv[2]); trainer.fit(method, data); trainer.save_checkpoint(sys.argv[2] + '/c.ckpt')"
    )
    run_python("-c", script, lit_clip_checkpoint, tmp_path)
    rows = table_rows(run_module("benchmarks.caption_naming", tmp_path / "c.ckpt", "--test-samples", "4"))
    assert len(rows) == 1 and rows[0][0].endswith("c.ckpt")
    assert number(rows[0][1]) >= 0 and 0 <= number(rows[0][2]) <= 1 and 0 <= number(rows[0][4]) <= 1
