"""Pick the device of a job: a free GPU claimed through a per-GPU lock file, else the CPU.

Snakemake's `gpu=1` resource only counts; it assigns no card. Each job therefore claims a card
by holding an exclusive flock on `gpu<ID>.lock` for its lifetime, so concurrent jobs never share one.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import IO

import torch

from pdd.precision import check_precision

DEFAULT_LOCK_DIR = Path(os.environ.get("PDD_GPU_LOCK_DIR", "/tmp/pdd-gpu-locks"))
_held: list[IO] = []  # open lock files: released when the process exits


def gpu_ids(count: int) -> list[str]:
    """Physical ids of the `count` visible GPUs (from CUDA_VISIBLE_DEVICES when set)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    return ids[:count] if len(ids) >= count else [str(i) for i in range(count)]


def claim_gpu(
    count: int, lock_dir: Path = DEFAULT_LOCK_DIR, poll_seconds: float = 5.0, timeout: float | None = None
) -> int:
    """Block until one of `count` GPUs is unclaimed, claim it for this process, return its index."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    start, announced = time.monotonic(), False
    while True:
        for index, ident in enumerate(gpu_ids(count)):
            handle = open(lock_dir / f"gpu{ident}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            _held.append(handle)
            return index
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no free GPU among {count} within {timeout} s (locks in {lock_dir})")
        if not announced:
            print(f"pdd: all {count} GPUs are claimed (locks in {lock_dir}); waiting", file=sys.stderr)
            announced = True
        time.sleep(poll_seconds)


# Where the step benchmark (benchmarks/bench_step.py --throughput, docs/performance.md) measured the K members
# as one grouped network faster than the loop over members; `training.fuse_members` unset means this.
# No GPU has run the benchmark yet, so a GPU keeps the loop until one does.
FUSED_FASTER = {"cpu": True}


def fuse_by_default(device: torch.device) -> bool:
    """Whether a training job on `device` runs its members fused when the config does not say."""
    return FUSED_FASTER.get(device.type, False)


def configure_backends(device: torch.device, training: bool, precision: str = "tf32") -> None:
    """GPU numerics of a job: cuDNN autotuning (the jobs run fixed shapes) and TF32 matmuls and convolutions
    in training at precision tf32 or bf16 (what autocast leaves in fp32); attacks and analyses stay in full fp32
    (PyTorch allows TF32 convolutions by default). Leaves everything as it is on the CPU."""
    check_precision(precision)
    if device.type != "cuda":
        return
    tf32 = training and precision != "fp32"
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def select_device(request: str = "auto", training: bool = False, precision: str = "tf32") -> torch.device:
    """'auto': under SLURM the GPU it allocated, else a claimed free GPU, else CPU; otherwise `request` as given.
    The chosen device's backends are set for a training job at `precision` or (default) an fp32 evaluation job."""
    device = _pick_device(request)
    configure_backends(device, training, precision)
    return device


def _pick_device(request: str) -> torch.device:
    """The device `select_device` describes, before its backends are configured."""
    if request != "auto":
        return torch.device(request)
    count = torch.cuda.device_count()
    if count == 0:
        return torch.device("cpu")
    if os.environ.get("SLURM_JOB_ID"):
        return torch.device("cuda", 0)
    return torch.device("cuda", claim_gpu(count))
