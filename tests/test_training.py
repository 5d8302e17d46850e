"""Training: the recipe runs, logs, and resumes after a SIGKILL to the same result."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pdd.training
from pdd.models import load_ensemble, read_checkpoint
from pdd.training import TrainConfig, _rng_state, _set_rng_state, ensemble_spec, train

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
    assert torch.serialization.get_unsafe_globals_in_checkpoint(out.with_name(out.name + ".state")) == []
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
        assert torch.equal(value, b["state_dict"][key]), key                  # bit-identical on the CPU
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
    # lr of epoch e = 1e-4 + (0.02 - 1e-4) * (1 + cos(pi * e / 3)) / 2, one scheduler step per epoch:
    # e = 0: 0.02; e = 1: 1e-4 + 0.0199 * 0.75 = 0.015025; e = 2: 1e-4 + 0.0199 * 0.25 = 0.005075
    assert lrs == pytest.approx([0.02, 0.015025, 0.005075], rel=1e-9, abs=0)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert last["test_accuracy"] > 0.8                                         # digits learn fast
    model = load_ensemble(tmp_path / "m.pt")
    assert model.num_members == 3 and not model.training


@pytest.mark.parametrize("bad", [dict(members=1), dict(epochs=0), dict(batch_size=0), dict(method="magic"),
                                 dict(dataset="mnist"), dict(arch="resnet50")])
def test_bad_training_config_rejected(bad: dict) -> None:
    args = dict(dataset="digits", method="baseline", members=2, width=2) | bad
    with pytest.raises(ValueError):
        ensemble_spec(TrainConfig(**args))


def test_cli_rejects_bad_input_with_a_message(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pdd.cli", "train", "--dataset", "digits", "--method", "magic",
                           "--members", "2", "--out", str(tmp_path / "m.pt"), "--log", str(tmp_path / "l.csv")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown method 'magic'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_rng_state_round_trips_through_a_plain_file(tmp_path: Path) -> None:
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()            # both now hold a cached Gaussian
    state = _rng_state()
    assert state["numpy"]["has_gauss"] == 1 and state["python"]["gauss_next"] is not None
    torch.save({"rng": state}, tmp_path / "s.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "s.pt") == []

    def draws() -> tuple:
        return (random.gauss(0, 1), random.random(), np.random.standard_normal(), np.random.rand(3).tolist(),
                torch.rand(3))

    expected = draws()
    random.seed(4), np.random.seed(4), torch.manual_seed(4)
    _set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    again = draws()
    assert again[:4] == expected[:4] and torch.equal(again[4], expected[4])


class _Killed(Exception):
    pass


def _train_killed_after(cfg: TrainConfig, tmp_path: Path, out: Path, epochs: int, monkeypatch) -> Path:
    """Run `train` and stop it, as a kill would, right after the resume state of epoch `epochs` is saved."""
    real, saved = pdd.training.torch_save, []

    def save(obj, path) -> None:
        real(obj, path)
        if str(path).endswith(".state"):
            saved.append(path)
            if len(saved) == epochs:
                raise _Killed

    monkeypatch.setattr(pdd.training, "torch_save", save)
    with pytest.raises(_Killed):
        train(cfg, tmp_path, out, tmp_path / "killed.csv")
    monkeypatch.undo()
    return out.with_name(out.name + ".state")


def test_state_in_the_legacy_format_still_resumes(tmp_path: Path, monkeypatch, capsys) -> None:
    """A resume state written before the plain format (numpy's and Python's RNG state tuples) resumes to the
    weights of an uninterrupted run."""
    cfg = TrainConfig("digits", "pdd", 2, width=2, epochs=3, pdd_intervals=5)
    train(cfg, tmp_path, tmp_path / "reference.pt", tmp_path / "reference.csv")
    out = tmp_path / "killed.pt"
    state_path = _train_killed_after(cfg, tmp_path, out, 2, monkeypatch)
    state = read_checkpoint(state_path)
    numpy_state, python_state = state["rng"]["numpy"], state["rng"]["python"]
    state["rng"]["numpy"] = (numpy_state["bit_generator"], np.array(numpy_state["state"]["key"], dtype=np.uint32),
                             numpy_state["state"]["pos"], numpy_state["has_gauss"], numpy_state["gauss"])
    state["rng"]["python"] = (python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"])
    torch.save(state, state_path)
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(state_path)

    train(cfg, tmp_path, out, tmp_path / "killed.csv")
    assert f"resuming {out} after epoch 2" in capsys.readouterr().err
    a, b = read_checkpoint(tmp_path / "reference.pt"), read_checkpoint(out)
    assert [r["train_loss"] for r in a["log"]] == [r["train_loss"] for r in b["log"]]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
