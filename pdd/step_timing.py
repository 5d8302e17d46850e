"""Seconds per training step of several methods, timed interleaved in one process (median of many steps),
so that other jobs on the machine cannot favour one method: the `timing` table's measurement."""

from __future__ import annotations

import copy
import math
import statistics
import time

import torch

from pdd.methods import LossSettings, get_method
from pdd.models import Ensemble, EnsembleSpec
from pdd.training import TrainConfig


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer reads finished work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_methods(methods: list[str], spec: EnsembleSpec, pdd: dict, settings: LossSettings, x: torch.Tensor,
                 y: torch.Tensor, warmup: int, reps: int, lr: float = TrainConfig.lr,
                 momentum: float = TrainConfig.momentum, weight_decay: float = TrainConfig.weight_decay,
                 seed: int = 0, channels_last: bool = False, fuse_members: bool = False) -> dict[str, float]:
    """Median seconds per step (zero_grad, the method's loss and backward, SGD step) of every method, each on
    its own copy of the same initial ensemble and the same batch; methods alternate round-robin so drifts of
    the machine hit all alike; each round is an epoch for the methods' per-epoch state. `pdd` holds PDD's
    {num_intervals, alpha, beta} for the methods that use it; `channels_last` and `fuse_members` are
    `TrainConfig`'s throughput options."""
    device = x.device
    torch.manual_seed(seed)
    initial = Ensemble(spec).state_dict()
    runs = {}
    for name in methods:
        method = get_method(name, settings)
        model = Ensemble(EnsembleSpec(**{**spec.__dict__, "pdd": dict(pdd) if method.uses_pdd else {}}))
        model.load_state_dict(copy.deepcopy(initial))
        model.to(device).train()
        if channels_last:
            model.to(memory_format=torch.channels_last)
        model.fuse_members = fuse_members
        optimizers = [torch.optim.SGD(group, lr=lr, momentum=momentum, weight_decay=weight_decay)
                      for group in method.parameter_groups(model)]
        runs[name] = (model, method, optimizers)

    def step(name: str) -> float:
        model, method, optimizers = runs[name]
        sync(device)
        start = time.perf_counter()
        loss, _ = method.step(model, optimizers, x, y)
        sync(device)
        if not math.isfinite(loss):
            raise RuntimeError(f"{name}: non-finite loss {loss}")
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(warmup + reps):
        for name in methods:
            model, method, _ = runs[name]
            method.start_epoch(model, round_, warmup + reps, seed)  # untimed (DVERGE draws its layer here)
            elapsed = step(name)
            if round_ >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}
