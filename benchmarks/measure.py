"""Timing and memory measurement shared by the benchmarks.

- :func:`median_seconds` times several functions in alternating rounds, so a slow
  minute of a shared machine hits all of them alike.
- Peak memory: CUDA's allocator peak on a GPU. On a CPU there is no allocator to ask,
  so the benchmark re-runs itself in a fresh process (:func:`peak_memory_in_fresh_process`)
  that resets the kernel's peak resident size, builds and runs the thing measured, and
  reports how far the peak rose (:func:`report_peak_resident_growth`, Linux only).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(functions: dict[str, Callable], warmup: int, rounds: int, steps: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds of ``steps`` calls."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                function()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in times.items()}


def cuda_peak_growth(build_and_run: Callable[[], object], device: torch.device) -> int:
    """Bytes the CUDA allocator's peak rose by while ``build_and_run`` built its model and ran its steps."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    kept = build_and_run()  # noqa: F841  (alive until the peak is read)
    return torch.cuda.max_memory_allocated(device) - before


def peak_memory_in_fresh_process(module: str, arguments: list[str]) -> int:
    """Run ``python -m module --measure-memory ...arguments``; it prints the peak growth as JSON on its last line."""
    result = subprocess.run([sys.executable, "-m", module, *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the memory measurement of {module} {' '.join(arguments)} failed:\n{result.stderr[-2000:]}")
    return int(json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"])


def report_peak_resident_growth(build_and_run: Callable[[], object]) -> None:
    """Print how far this process's peak resident memory rises over ``build_and_run`` (the child side)."""
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")  # resets the peak resident size (VmHWM) to the current size
    before = _memory_status("VmRSS")
    kept = build_and_run()  # noqa: F841
    print(json.dumps({"peak_bytes": _memory_status("VmHWM") - before}))


def _memory_status(field: str) -> int:
    """A field of /proc/self/status in bytes (the kernel reports kB)."""
    with open("/proc/self/status") as file:
        line = next(line for line in file if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as file:
            model = next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "CPU"
    return f"{model}, {torch.get_num_threads()} threads"
