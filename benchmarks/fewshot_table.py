"""The few-shot table a reviewer asks for: methods x shots x seeds, and base-to-new, from the methods' own configs.

Every run is ``lit-clip fit`` (methods that train) then ``lit-clip test`` of ``configs/<method>/<name>.yaml``,
with the shots, the seed and the pretrained CLIP set from here; the last epoch is evaluated, as the
papers do, and each method's config gives one ``max_epochs`` for every shot count (CoOp's paper
scales them: 50, 100, 200 epochs for 1, 2-4, 8-16 shots). Writes ``runs.csv`` (one row per run)
and ``table.md`` (mean and standard deviation over seeds, in %, and whether the papers' orderings
reappear). Run from the repository root:

    lit-clip fit --config configs/clip/shapes_vit.yaml          # the frozen CLIP (ShapesWorld, ViT-Tiny-8)
    python -m benchmarks.fewshot_table --pretrained runs/clip-shapes-vit/version_0/checkpoints/last.ckpt

    # real data, from the methods' CoOp-layout configs (configs/coop/imagenet.yaml, ...); CoCoOp's and
    # MaPLe's are base-to-new configs (imagenet_base2new.yaml), run them with --config-name imagenet_base2new
    python -m benchmarks.fewshot_table --config-name imagenet --methods coop clip_adapter tip_adapter tip_adapter_f \
        --base-to-new-shots 0 --pretrained ViT-B-16.pt --set data.init_args.root=data
"""
from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import lightning as L

from lit_clip.cli import LitClipCLI

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("zeroshot", "coop", "cocoop", "maple", "clip_adapter", "tip_adapter", "tip_adapter_f")
LABELS = {
    "zeroshot": "Zero-shot CLIP", "coop": "CoOp", "cocoop": "CoCoOp", "maple": "MaPLe",
    "clip_adapter": "CLIP-Adapter", "tip_adapter": "Tip-Adapter", "tip_adapter_f": "Tip-Adapter-F",
}  # fmt: skip


def config_path(method: str, name: str) -> Path:
    """``configs/<method>/<name>.yaml``; the zero-shot baseline's few-shot config is ``configs/zeroshot/<name>_fewshot.yaml``."""
    return ROOT / "configs" / method / (f"{name}_fewshot.yaml" if method == "zeroshot" else f"{name}.yaml")


def run(method: str, config: Path, pretrained: str, shots: int, seed: int, base_to_new: bool, overrides: list[str], work_dir: Path) -> dict:
    """One fit (if the method trains) and test; the test metrics and the wall time."""
    args = [
        "--config", str(config), f"--model.init_args.pretrained={pretrained}", f"--seed_everything={seed}",
        f"--data.init_args.shots={shots}", f"--data.init_args.seed={seed}", f"--data.init_args.base_to_new={base_to_new}",
        "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.limit_val_batches=0",  # the protocol evaluates the last epoch; Tip-Adapter searches on val itself
        f"--trainer.default_root_dir={work_dir}",  # where the CLI writes the run's config.yaml
        *(f"--{override}" for override in overrides),
    ]  # fmt: skip
    start = time.perf_counter()
    cli = LitClipCLI(args=args, run=False)
    if cli.model.trains:
        cli.trainer.fit(cli.model, cli.datamodule)
    metrics = cli.trainer.test(cli.model, cli.datamodule, verbose=False)[0]
    return {"seconds": time.perf_counter() - start, **metrics}


def overrides_for(method: str, settings: list[str]) -> list[str]:
    """The ``--set`` values for ``method``'s runs: the unprefixed ones, and its own without the ``method:`` prefix."""
    chosen = []
    for setting in settings:
        key = setting.split("=", 1)[0]
        if ":" not in key:  # a value may hold colons (hf-hub:org/name), a key never does
            chosen.append(setting)
        elif key.split(":", 1)[0] == method:
            chosen.append(setting.split(":", 1)[1])
    return chosen


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def mean(rows: list[dict], method: str, protocol: str, metric: str, shots: int | None = None) -> float | None:
    values = [r[metric] for r in rows if r["method"] == method and r["protocol"] == protocol and (shots is None or r["shots"] == shots)]
    return statistics.mean(values) if values else None


def orderings(rows: list[dict], shots: list[int]) -> list[str]:
    """The papers' claims, checked against the means of this table."""
    checks = []

    def claim(text: str, left: float | None, right: float | None, strict: bool = True) -> None:
        if left is None or right is None:
            return
        holds = left > right if strict else left >= right
        checks.append(f"- {text}: **{'yes' if holds else 'no'}** ({100 * left:.1f} vs {100 * right:.1f})")

    b2n = "base-to-new"
    claim("CoOp above zero-shot CLIP on base classes", mean(rows, "coop", b2n, "test/base_top1"), mean(rows, "zeroshot", b2n, "test/base_top1"))
    claim("CoCoOp above CoOp on new classes", mean(rows, "cocoop", b2n, "test/new_top1"), mean(rows, "coop", b2n, "test/new_top1"))
    claim("CoCoOp above CoOp in H", mean(rows, "cocoop", b2n, "test/hm"), mean(rows, "coop", b2n, "test/hm"))
    for k in shots:
        claim(f"Tip-Adapter-F >= Tip-Adapter, {k} shots", mean(rows, "tip_adapter_f", "few-shot", "test/top1", k),
              mean(rows, "tip_adapter", "few-shot", "test/top1", k), strict=False)  # fmt: skip
        claim(f"Tip-Adapter >= zero-shot CLIP, {k} shots", mean(rows, "tip_adapter", "few-shot", "test/top1", k),
              mean(rows, "zeroshot", "few-shot", "test/top1", k), strict=False)  # fmt: skip
        claim(f"CoOp above zero-shot CLIP, {k} shots", mean(rows, "coop", "few-shot", "test/top1", k),
              mean(rows, "zeroshot", "few-shot", "test/top1", k))  # fmt: skip
    return checks


def markdown(rows: list[dict], methods: list[str], shots: list[int], base_to_new_shots: int) -> str:
    lines = [f"Few-shot top-1 (%), mean ± std over seeds {sorted({r['seed'] for r in rows})}:", "",
             "| method | " + " | ".join(f"{k} shot{'s' * (k > 1)}" for k in shots) + " |", "|---|" + "---:|" * len(shots)]  # fmt: skip
    for method in methods:
        cells = []
        for k in shots:
            values = [r["test/top1"] for r in rows if r["method"] == method and r["protocol"] == "few-shot" and r["shots"] == k]
            cells.append(mean_std(values) if values else "")
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    b2n_rows = [r for r in rows if r["protocol"] == "base-to-new"]
    if b2n_rows:
        lines += ["", f"Base-to-new, {base_to_new_shots} shots of the base classes (%), mean ± std over seeds:", "",
                  "| method | Base | New | H |", "|---|---:|---:|---:|"]  # fmt: skip
        for method in methods:
            mine = [r for r in b2n_rows if r["method"] == method]
            if mine:
                cells = [mean_std([r[m] for r in mine]) for m in ("test/base_top1", "test/new_top1", "test/hm")]
                lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    checks = orderings(rows, shots)
    if checks:
        lines += ["", "The papers' orderings, on these means:", "", *checks]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True, help="the frozen CLIP (any source lit_clip.load_clip reads)")
    parser.add_argument("--config-name", default="shapes", help="configs/<method>/<NAME>.yaml")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--base-to-new-shots", type=int, default=16, help="0 skips the base-to-new runs")
    parser.add_argument("--set", nargs="*", default=[], metavar="[METHOD:]KEY=VALUE",
                        help="config overrides for every run, or for one method's runs (maple:model.init_args.prompt_depth=2)")  # fmt: skip
    parser.add_argument("--out", default="runs/fewshot-table", help="folder for runs.csv and table.md")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    L.pytorch.utilities.disable_possible_user_warnings()
    plan = [(m, "few-shot", k, s) for m in args.methods for k in args.shots for s in args.seeds]
    if args.base_to_new_shots:
        plan += [(m, "base-to-new", args.base_to_new_shots, s) for m in args.methods for s in args.seeds]
    configs = {method: config_path(method, args.config_name) for method in args.methods}
    missing = [str(path) for path in configs.values() if not path.is_file()]
    if missing:
        parser.error(f"no config {', '.join(missing)}: give --methods that have configs/<method>/{args.config_name}.yaml")
    # runs.csv is written after every run; an interrupted table continues where it stopped (delete a
    # method's rows from runs.csv to run them again).
    rows = read_csv(out / "runs.csv") if (out / "runs.csv").exists() else []
    done = {run_key(row) for row in rows}
    for index, (method, protocol, shots, seed) in enumerate(plan, 1):
        if (method, protocol, shots, seed) in done:
            continue
        result = run(method, configs[method], args.pretrained, shots, seed, protocol == "base-to-new", overrides_for(method, args.set), out / "last_run")
        rows.append({"method": method, "protocol": protocol, "shots": shots, "seed": seed, **result})
        score = " ".join(f"{k.removeprefix('test/')}={v:.3f}" for k, v in result.items() if k.endswith(("top1", "hm")))
        print(f"[{index}/{len(plan)}] {method} {protocol} {shots} shots seed {seed}: {score} ({result['seconds']:.0f} s)", flush=True)
        write_csv(out / "runs.csv", rows)
    planned = set(plan)
    rows = [row for row in rows if run_key(row) in planned]
    table = markdown(rows, args.methods, args.shots, args.base_to_new_shots)
    (out / "table.md").write_text(table)
    print("\n" + table)


def run_key(row: dict) -> tuple:
    """The plan entry a runs.csv row answers: (method, protocol, shots, seed)."""
    return row["method"], row["protocol"], row["shots"], row["seed"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    numbers = {"shots": int, "seed": int}
    return [{k: numbers.get(k, float)(v) if k not in ("method", "protocol") else v for k, v in row.items() if v != ""} for row in rows]


def write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
