"""The timing table's measurement: every method timed on the same batch, interleaved, per-epoch state stepped."""

from __future__ import annotations

import pytest
import torch

from pdd.methods.base import TrainingMethod
from pdd.models import EnsembleSpec
from pdd.settings.methods import LossSettings
from pdd.step_timing import time_methods


def test_every_method_is_timed_and_steps_through_its_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    epochs: list[tuple[int, int]] = []
    start_epoch = TrainingMethod.start_epoch

    def spy(self, model, epoch, total, seed):
        epochs.append((epoch, total))
        start_epoch(self, model, epoch, total, seed)

    monkeypatch.setattr(TrainingMethod, "start_epoch", spy)
    spec = EnsembleSpec("resnet18", 2, 10, 1, width=2)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 10
    pdd = {"num_intervals": 4, "alpha": 0.9, "beta": 0.1}
    medians = time_methods(["baseline", "pdd", "adp"], spec, pdd, LossSettings(), x, y, warmup=1, reps=2)
    assert set(medians) == {"baseline", "pdd", "adp"} and all(0 < t < 60 for t in medians.values())
    # one untimed start_epoch per method and round (warm-up included), in round-robin order
    assert epochs == [(r, 3) for r in range(3) for _ in range(3)]


def test_a_diverging_method_is_an_error_not_a_time() -> None:
    spec = EnsembleSpec("resnet18", 2, 10, 1, width=2)
    x, y = torch.full((4, 1, 8, 8), float("nan")), torch.zeros(4, dtype=torch.long)
    with pytest.raises(RuntimeError, match="baseline: non-finite loss"):
        time_methods(["baseline"], spec, {}, LossSettings(), x, y, warmup=0, reps=1)
