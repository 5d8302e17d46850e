"""Failures under Snakemake: a training job killed mid-run resumes from its epoch checkpoint when the
workflow is restarted, and a failing job leaves nothing Snakemake would take as a finished output."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import SNAKEFILE, snakemake, tiny_config

pytestmark = pytest.mark.slow

MODEL = "results/models/digits/resnet18/K2/baseline/seed0"
TRAIN_LOG = "results/logs/train/digits_resnet18_K2_baseline_seed0.log"
EPOCHS = 12  # about 0.5 s each here: long enough to be caught mid-run (after epoch 2), short to finish


def _workdir(tmp_path: Path, epochs: int) -> Path:
    cfg = tiny_config()
    cfg["datasets"]["digits"]["epochs"] = epochs
    cfg["tables"] = {"timing": {"datasets": ["digits"], "K": [2], "methods": ["baseline"]}}
    cfg["figures"] = {}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def _pdd_train_pid(work: Path) -> int | None:
    """The `pdd train` process running in `work` (found through /proc), if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        names = [Path(a.decode(errors="replace")).name for a in argv[:2]]
        if "pdd" in names and b"train" in argv and cwd == str(work):
            return int(entry.name)
    return None


def _epochs_logged(work: Path) -> int:
    try:
        return len(pd.read_csv(work / MODEL / "train_log.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


@pytest.mark.parametrize("kill_snakemake", [False, True], ids=["train-process", "train-and-snakemake"])
def test_killed_training_resumes_after_restart(tmp_path: Path, kill_snakemake: bool) -> None:
    work = _workdir(tmp_path, EPOCHS)
    cmd = ["snakemake", "-s", str(SNAKEFILE), "--cores", "2", f"{MODEL}/ensemble.pt", "--configfile", "tiny.yaml"]
    run = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while _epochs_logged(work) < 2 or not (work / MODEL / "ensemble.pt.state").exists():
            assert run.poll() is None and time.monotonic() < deadline, "training never got to epoch 2"
            time.sleep(0.1)
        pid = _pdd_train_pid(work)
        assert pid is not None
        if kill_snakemake:  # the whole job dies at once, as on a node failure
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
        os.kill(pid, signal.SIGKILL)
        first = run.communicate(timeout=60)[0]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode != 0
    if not kill_snakemake:
        assert "Error in rule train" in first
    assert not (work / MODEL / "ensemble.pt").exists()
    assert (work / MODEL / "ensemble.pt.state").exists()   # not an output: Snakemake leaves it

    if kill_snakemake:
        # A half-written train_log.csv is left behind, but marked incomplete: Snakemake refuses to take it.
        assert (work / MODEL / "train_log.csv").exists()
        snakemake(work, "--unlock", "--configfile", "tiny.yaml")  # the killed run's lock
        refused = snakemake(work, f"{MODEL}/ensemble.pt", "-n", "--configfile", "tiny.yaml", check=False)
        assert refused.returncode != 0 and "incomplete" in (refused.stdout + refused.stderr).lower()
    else:
        assert not (work / MODEL / "train_log.csv").exists()  # Snakemake removed the failed job's outputs

    snakemake(work, f"{MODEL}/ensemble.pt", "--rerun-incomplete", "--configfile", "tiny.yaml")
    resumed = (work / TRAIN_LOG).read_text()
    done = int(resumed.split(" after epoch ")[1].split()[0])
    assert f"pdd: resuming {MODEL}/ensemble.pt after epoch {done}" in resumed and 2 <= done < EPOCHS
    log = pd.read_csv(work / MODEL / "train_log.csv")
    assert list(log["epoch"]) == list(range(1, EPOCHS + 1))    # every epoch once: resumed, not restarted
    assert (work / MODEL / "ensemble.pt").exists() and not (work / MODEL / "ensemble.pt.state").exists()
    assert "Nothing to be done" in snakemake(work, f"{MODEL}/ensemble.pt", "-n", "--configfile", "tiny.yaml").stdout


def test_failing_attack_leaves_no_output(tmp_path: Path) -> None:
    work = _workdir(tmp_path, 1)
    snakemake(work, f"{MODEL}/ensemble.pt", "--configfile", "tiny.yaml")
    checkpoint = work / MODEL / "ensemble.pt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a cut copy
    target = "results/eval/digits/resnet18/K2/baseline/seed0/whitebox/fgsm.json"

    failed = snakemake(work, target, "--configfile", "tiny.yaml", check=False)
    assert failed.returncode != 0 and "Error in rule whitebox" in failed.stdout + failed.stderr
    log = (work / "results/logs/whitebox/digits_resnet18_K2_baseline_seed0_whitebox_fgsm.log").read_text()
    assert "corrupt or truncated" in log
    assert [p for p in (work / "results" / "eval").rglob("*") if p.is_file()] == []  # no result, no temp file
    again = snakemake(work, target, "-n", "--configfile", "tiny.yaml").stdout
    assert "rule whitebox:" in again and "Missing output files" in again
