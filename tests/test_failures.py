"""Failures under Snakemake: a training job killed mid-run resumes from its epoch checkpoint when the
workflow is restarted, and a failing job leaves nothing Snakemake would take as a finished output."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import SNAKEFILE, snakemake, tiny_config

pytestmark = pytest.mark.slow

MODEL = "results/models/digits/resnet18/K2/baseline/seed0"
TRAIN_LOG = "results/logs/train/digits_resnet18_K2_baseline_seed0.log"
EPOCHS = 12  # about 0.5 s each here: killed after epochs 2 and 4, short enough to finish


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


def _run_and_kill(work: Path, after_epoch: int, kill_snakemake: bool, *flags: str) -> str:
    """Start the training job under Snakemake; once epoch `after_epoch` is checkpointed, SIGKILL the
    `pdd train` process (first Snakemake itself too if `kill_snakemake`: the whole job dies, as on a
    node failure). Returns the run's output."""
    cmd = ["snakemake", "-s", str(SNAKEFILE), "--cores", "2", f"{MODEL}/ensemble.pt", *flags,
           "--configfile", "tiny.yaml"]
    run = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while _epochs_logged(work) < after_epoch or not (work / MODEL / "ensemble.pt.state").exists():
            assert run.poll() is None and time.monotonic() < deadline, f"training never got to epoch {after_epoch}"
            time.sleep(0.1)
        pid = _pdd_train_pid(work)
        assert pid is not None
        if kill_snakemake:
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=30)
        os.kill(pid, signal.SIGKILL)
        out = run.communicate(timeout=60)[0]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode != 0
    assert not (work / MODEL / "ensemble.pt").exists()
    assert (work / MODEL / "ensemble.pt.state").exists()  # not an output: Snakemake leaves it
    return out


def _resumed_after(work: Path) -> int:
    """The epoch the last training job resumed after, from its log."""
    text = (work / TRAIN_LOG).read_text()
    match = re.search(rf"pdd: resuming {re.escape(MODEL)}/ensemble.pt after epoch (\d+)", text)
    assert match, text[-2000:]
    return int(match.group(1))


def test_killed_training_resumes_after_restart(tmp_path: Path) -> None:
    work = _workdir(tmp_path, EPOCHS)
    # 1. The training process is killed while Snakemake runs it: Snakemake sees the job fail.
    out = _run_and_kill(work, 2, kill_snakemake=False)
    assert "Error in rule train" in out
    assert not (work / MODEL / "train_log.csv").exists()  # Snakemake removed the failed job's outputs

    # 2. The restarted job resumes; then the whole job dies (Snakemake and training at once).
    _run_and_kill(work, 4, True, "--rerun-incomplete")
    first = _resumed_after(work)
    assert first >= 2
    # The half-written train_log.csv is left behind but marked incomplete: Snakemake will not take it.
    assert (work / MODEL / "train_log.csv").exists()
    snakemake(work, "--unlock", "--configfile", "tiny.yaml")  # the killed run's lock
    refused = snakemake(work, f"{MODEL}/ensemble.pt", "-n", "--configfile", "tiny.yaml", check=False)
    assert refused.returncode != 0 and "incomplete" in (refused.stdout + refused.stderr).lower()

    # 3. Restarted again, it resumes where the second run stopped and finishes.
    snakemake(work, f"{MODEL}/ensemble.pt", "--rerun-incomplete", "--configfile", "tiny.yaml")
    second = _resumed_after(work)
    assert first < second < EPOCHS
    log = pd.read_csv(work / MODEL / "train_log.csv")
    assert list(log["epoch"]) == list(range(1, EPOCHS + 1))    # every epoch once: resumed, not restarted
    assert (work / MODEL / "ensemble.pt").exists() and not (work / MODEL / "ensemble.pt.state").exists()
    assert "Nothing to be done" in snakemake(work, f"{MODEL}/ensemble.pt", "-n", "--configfile", "tiny.yaml").stdout


def test_failing_attack_leaves_no_output(tmp_path: Path) -> None:
    work = _workdir(tmp_path, 1)
    cfg = yaml.safe_load((work / "tiny.yaml").read_text())  # Table 2 of the baseline: its white-box attack job
    cfg["tables"]["table2_whitebox_k3"] = {"datasets": ["digits"], "K": [2], "methods": ["baseline"]}
    (work / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    # A trained ensemble's files, planted (no training run needed): the checkpoint is cut short, as by a
    # full disk or an interrupted copy. Snakemake takes them as given and runs only the attack.
    (work / "results" / "data").mkdir(parents=True)
    (work / "results" / "data" / "digits.json").write_text("{}")
    (work / MODEL).mkdir(parents=True)
    (work / MODEL / "train_log.csv").write_text("epoch\n1\n")
    buffer = io.BytesIO()
    torch.save({"format": "anything", "weights": torch.zeros(1000)}, buffer)
    (work / MODEL / "ensemble.pt").write_bytes(buffer.getvalue()[:2000])
    target = "results/eval/digits/resnet18/K2/baseline/seed0/whitebox/fgsm.json"
    plan = snakemake(work, target, "-n", "--configfile", "tiny.yaml").stdout
    assert re.search(r"rule whitebox_\w+:", plan) and "rule train:" not in plan and "rule prepare_data:" not in plan

    failed = snakemake(work, target, "--configfile", "tiny.yaml", check=False)
    assert failed.returncode != 0 and "Error in rule whitebox_" in failed.stdout + failed.stderr
    # the job runs every white-box attack of the model; its log is named after them
    logs = work / "results/logs/whitebox/digits/resnet18/K2/baseline/seed0/whitebox"
    log = next(logs.glob("*fgsm*.log")).read_text()
    assert "corrupt or truncated" in log
    assert [p for p in (work / "results" / "eval").rglob("*") if p.is_file()] == []  # no result, no temp file
    again = snakemake(work, target, "-n", "--configfile", "tiny.yaml").stdout
    assert re.search(r"rule whitebox_\w+:", again) and "Missing output files" in again
