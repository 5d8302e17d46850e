"""Fixed cost per job: import time of each job's entry path, `pdd --help`, and tiny jobs; by hand.

    python benchmarks/bench_startup.py                       # this checkout, median of 5 fresh interpreters
    python benchmarks/bench_startup.py --before /tmp/before  # and another checkout of pdd, interleaved run by run
    python benchmarks/bench_startup.py --python /tmp/cpu/bin/python  # and another interpreter (a venv), interleaved

Every figure is the wall time of a fresh `python` process (what Snakemake pays per job), median of `--reps`;
`--before DIR` runs the same commands with PYTHONPATH=DIR (e.g. `git archive <commit> | tar -x -C DIR`),
alternating the two checkouts run by run so that the machine's load hits both alike; `--python PY` runs this
checkout under another interpreter instead (e.g. a venv holding PyTorch's CPU build, to weigh the CUDA build's
libraries that every job loads). The tiny jobs: `pdd
train` of a K = 2, width-2 baseline on the digits for one epoch, and `pdd attack` FGSM on 20 test images of it;
then FGSM, BIM and PGD on those images as three jobs (three processes, as the workflow ran them before) and as
one job (`--attack NAME=P` three times, as it runs them now; '-' for a checkout without that form).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What each job imports on its way to work: the CLI, then the modules its command imports when it runs.
ENTRY_IMPORTS = {
    "import torch (floor)": "import torch",
    "import pdd.cli": "import pdd.cli",
    "train job imports": "import pdd.cli, pdd.training, pdd.devices, pdd.evaluation.cost_meter",
    "attack job imports": "import pdd.cli, pdd.evaluation.attacks, pdd.evaluation.records, "
                          "art.attacks.evasion, art.estimators.classification",
    "diversity job imports": "import pdd.cli, pdd.evaluation.diversity, pdd.evaluation.external, "
                             "pdd.evaluation.records",
}


ATTACKS = ("fgsm", "bim", "pgd")  # the one-job-or-three comparison


def commands(work: Path, py: str) -> dict[str, list[list[str]]]:
    """The measured commands, run by interpreter `py`: each a sequence of fresh interpreters."""
    model = work / "m.pt"
    out = {name: [[py, "-c", code]] for name, code in ENTRY_IMPORTS.items()}
    out["pdd --help"] = [[py, "-m", "pdd.cli", "--help"]]
    out["tiny train job"] = [[py, "-m", "pdd.cli", "train", "--dataset", "digits", "--method", "baseline",
                              "--members", "2", "--width", "2", "--epochs", "1", "--device", "cpu", "--threads", "1",
                              "--out", str(model), "--log", str(work / "log.csv")]]
    attack = [py, "-m", "pdd.cli", "attack", "--model", str(model), "--num-images", "20", "--device", "cpu",
              "--threads", "1"]
    out["tiny attack job"] = [attack + ["--attack", "fgsm", "--param", "0.1", "--out", str(work / "attack.json")]]
    out["FGSM, BIM, PGD: three jobs"] = [attack + ["--attack", a, "--param", "0.1", "--out", str(work / f"{a}.json")]
                                         for a in ATTACKS]
    out["FGSM, BIM, PGD: one job"] = [attack + [x for a in ATTACKS for x in ("--attack", f"{a}=0.1")]
                                      + [x for a in ATTACKS for x in ("--out", str(work / f"one_{a}.json"))]]
    return out


def run(cmds: list[list[str]], pythonpath: Path, cwd: Path) -> float:
    """Wall seconds of fresh processes running `cmds` one after another with pdd imported from `pythonpath`;
    NaN if a command fails (a checkout without the command's form)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    start = time.perf_counter()
    for cmd in cmds:
        done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return math.nan
    return time.perf_counter() - start


def torch_version(py: str) -> str:
    """The torch version (with its build tag, e.g. '+cpu') that interpreter `py` imports."""
    done = subprocess.run([py, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    return done.stdout.strip() or "no torch"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    other = parser.add_mutually_exclusive_group()
    other.add_argument("--before", type=Path, help="another checkout (its repository root) to compare with")
    other.add_argument("--python", help="another interpreter to run this checkout with (e.g. a venv's python)")
    args = parser.parse_args()
    # name -> (checkout, interpreter); the first is this checkout under this interpreter
    sides = {"this checkout": (REPO, sys.executable)}
    if args.before:
        sides["before"] = (args.before.resolve(), sys.executable)
    if args.python:
        sides = {f"torch {torch_version(py)}": (REPO, py) for py in (sys.executable, args.python)}
    this, *others = sides
    with tempfile.TemporaryDirectory() as tmp:
        works = {name: Path(tmp) / f"side{i}" for i, name in enumerate(sides)}
        for work in works.values():
            work.mkdir()
        cmds = {name: commands(works[name], py) for name, (_, py) in sides.items()}
        for name, (root, _) in sides.items():  # the tiny attack needs the tiny train job's model: run it once first
            run(cmds[name]["tiny train job"], root, works[name])
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.reps):
            for label in cmds[this]:
                for name, (root, _) in sides.items():
                    times.setdefault((label, name), []).append(run(cmds[name][label], root, works[name]))
    names = list(sides)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median wall seconds of {args.reps} fresh "
          f"processes{', sides interleaved' if others else ''}\n")
    saved = f" | {this} saves (s) |" if others else " |"
    print("| command | " + " | ".join(f"{n} (s)" for n in reversed(names)) + saved)
    print("|---|" + "---:|" * (len(names) + (1 if others else 0)))
    for label in cmds[this]:
        med = {n: statistics.median(times[label, n]) for n in names}
        cells = ["-" if math.isnan(med[n]) else f"{med[n]:.2f}" for n in reversed(names)]
        if others:
            saved = med[others[0]] - med[this]
            cells.append("-" if math.isnan(saved) else f"{saved:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
