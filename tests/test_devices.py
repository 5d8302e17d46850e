"""GPU claiming: concurrent jobs take different cards (device count simulated, real locking)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pdd.devices import claim_gpu, gpu_ids, select_device

CLAIM = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pdd.devices import claim_gpu
    index = claim_gpu(int(sys.argv[1]), Path(sys.argv[2]), poll_seconds=0.1, timeout=float(sys.argv[3]))
    print(index, flush=True)
    time.sleep(float(sys.argv[4]))
""")


def _start(n: int, lock_dir: Path, timeout: float = 20, hold: float = 3) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLAIM, str(n), str(lock_dir), str(timeout), str(hold)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_processes_take_different_gpus(tmp_path: Path) -> None:
    procs = [_start(2, tmp_path) for _ in range(2)]
    claimed = sorted(int(p.communicate(timeout=60)[0]) for p in procs)
    assert claimed == [0, 1]


def test_third_job_waits_for_a_free_gpu(tmp_path: Path) -> None:
    """Both cards held; a third job says it waits, and takes the card its holder releases (no timing race: the
    holder is released only once the third job has reported waiting)."""
    first = [_start(2, tmp_path, hold=120) for _ in range(2)]
    claimed = [int(p.stdout.readline()) for p in first]
    assert sorted(claimed) == [0, 1]  # both cards claimed
    third = _start(2, tmp_path, timeout=120, hold=0)
    lines = iter(third.stderr.readline, "")
    assert any("waiting" in line for line in lines)  # blocks until the third job reports waiting
    first[0].kill()
    first[0].wait(timeout=30)
    out, _ = third.communicate(timeout=120)
    assert int(out) == claimed[0]  # the released card
    first[1].kill()
    first[1].wait(timeout=30)


def test_claim_times_out_when_all_busy(tmp_path: Path) -> None:
    holder = _start(1, tmp_path, hold=5)
    assert holder.stdout.readline().strip() == "0"
    with pytest.raises(TimeoutError):
        claim_gpu(1, tmp_path, poll_seconds=0.05, timeout=0.3)
    holder.kill()


def test_gpu_ids_follow_cuda_visible_devices(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_ids(2) == ["3", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpu_ids(3) == ["0", "1", "2"]


def test_cpu_when_no_gpu_or_explicit() -> None:
    import torch

    if torch.cuda.device_count() == 0:
        assert select_device("auto").type == "cpu"
    assert select_device("cpu").type == "cpu"
