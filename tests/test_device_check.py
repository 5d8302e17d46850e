"""benchmarks/device_check.py, run as the GPU machine would run it: a subprocess that can import torch and numpy
but none of the project's other dependencies (ART, Snakemake, pandas, tqdm, ...), which that machine lacks."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "device_check.py"
ABSENT = ("art", "snakemake", "pandas", "tqdm", "yaml", "click", "scipy", "matplotlib", "torchvision", "sklearn",
          "statsmodels")
RUNNER = """
import runpy, sys
for name in {absent!r}:
    sys.modules[name] = None  # `import name` fails as for an absent package (torch's optional probes see None)
sys.argv = [{script!r}, *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
"""


def _script():
    """The script as a module (for its lists of fields and methods)."""
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args: str, gpu: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "") if gpu else ""}
    code = RUNNER.format(absent=sorted(ABSENT), script=str(SCRIPT))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=900)


def test_without_a_gpu_it_prints_one_line_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    done = run("--out", str(out))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1 and "no CUDA GPU" in done.stdout
    assert not out.exists()


def test_cpu_smoke_runs_every_section_and_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    done = run("--cpu-smoke", "--budget-s", "600", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    device_check = _script()
    assert report["complete"] and not report["skipped"] and report["elapsed_s"] <= 600
    assert {"name", "card", "torch", "peaks", "width"} <= set(report["device"])
    results = report["results"]
    for r in results:
        assert set(device_check.FIELDS) <= set(r), r
    ok = [r for r in results if r["error"] is None]
    for r in ok:
        for key in ("seconds", "images_per_s", "flops", "flop_per_s"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert r["flop_per_s"] == r["flops"] / r["seconds"]
    train = [r for r in ok if r["section"] == "train"]
    assert {r["method"] for r in train} >= set(device_check.CORE)
    assert {(r["precision"], r["mode"]) for r in train} >= {("fp32", "loop"), ("tf32", "loop"), ("bf16", "loop"),
                                                             ("tf32", "fused")}
    assert {(r["section"], r["precision"]) for r in ok if r["section"] != "train"} == {
        (a, p) for a in ("pgd10", "cw") for p in ("fp32", "tf32", "bf16")}
    assert set(report["summary"]["tf32"]) == {"train", "attacks"}
    assert "| what | data | K |" in done.stdout  # the Markdown table


def test_a_short_budget_skips_what_does_not_fit_and_still_writes_figures(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    done = run("--cpu-smoke", "--budget-s", "4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["results"] and report["skipped"] and not report["complete"]
