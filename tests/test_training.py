"""Training: the recipe runs, logs, and resumes after a SIGKILL to the same result."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pdd.models import load_ensemble, read_checkpoint
from pdd.training import TrainConfig, train

ARGS = ["--dataset", "digits", "--method", "pdd", "--members", "2", "--width", "2", "--epochs", "4",
        "--pdd-intervals", "5", "--device", "cpu", "--threads", "1"]


def _train_cli(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pdd.cli", "train", *ARGS, *extra, "--out", str(out),
                             "--log", str(out.with_suffix(".csv"))], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _epochs_logged(log: Path) -> int:
    return len(list(csv.DictReader(log.open()))) if log.exists() else 0


def test_sigkill_mid_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    reference = tmp_path / "reference.pt"
    assert _train_cli(reference).wait(timeout=300) == 0

    out = tmp_path / "killed.pt"
    proc = _train_cli(out)
    deadline = time.monotonic() + 300
    while _epochs_logged(out.with_suffix(".csv")) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the final checkpoint must not exist after a kill mid-run"
    state = read_checkpoint(out.with_name(out.name + ".state"))
    done = len(state["log"])
    assert 2 <= done < 4

    resumed = _train_cli(out)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    assert f"resuming {out} after epoch {done}".encode() in err
    a, b = read_checkpoint(reference), read_checkpoint(out)
    assert [r["test_accuracy"] for r in a["log"]] == [r["test_accuracy"] for r in b["log"]]
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-6), key
    assert not out.with_name(out.name + ".state").exists()


def test_state_of_another_config_is_not_resumed(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.pt"
    cfg = TrainConfig("digits", "baseline", 2, width=2, epochs=1)
    torch.save({"train_config": {"something": "else"}}, out.with_name("m.pt.state"))
    last = train(cfg, tmp_path, out, tmp_path / "log.csv")
    assert "another configuration" in capsys.readouterr().err
    assert last["epoch"] == 1


def test_training_log_and_checkpoint(tmp_path: Path) -> None:
    cfg = TrainConfig("digits", "baseline", 3, width=4, epochs=3, seed=1)
    last = train(cfg, tmp_path, tmp_path / "m.pt", tmp_path / "log.csv")
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {r["method"] for r in rows} == {"baseline"} and rows[0]["K"] == "3"
    assert all(float(r["seconds"]) > 0 for r in rows)
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == pytest.approx(0.02) and lrs[0] > lrs[1] > lrs[2] > 1e-4  # cosine annealing
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert last["test_accuracy"] > 0.8                                         # digits learn fast
    model = load_ensemble(tmp_path / "m.pt")
    assert model.num_members == 3 and not model.training


@pytest.mark.parametrize("bad", [dict(members=1), dict(epochs=0), dict(batch_size=0), dict(method="magic"),
                                 dict(dataset="mnist"), dict(arch="resnet50")])
def test_bad_training_config_rejected(bad: dict) -> None:
    args = dict(dataset="digits", method="baseline", members=2, width=2) | bad
    with pytest.raises(ValueError):
        TrainConfig(**args).spec()


def test_cli_rejects_bad_input_with_a_message(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pdd.cli", "train", "--dataset", "digits", "--method", "magic",
                           "--members", "2", "--out", str(tmp_path / "m.pt"), "--log", str(tmp_path / "l.csv")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown method 'magic'" in proc.stderr
    assert "Traceback" not in proc.stderr
