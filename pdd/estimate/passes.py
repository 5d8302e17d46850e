"""Measuring image-passes and FLOPs: what one unit of a job kind costs, counted on the job's own code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from pdd.evaluation.cost_meter import CostMeter
from pdd.evaluation.flops import FlopCounter
from pdd.models import Ensemble

if TYPE_CHECKING:
    from pdd.estimate.width import WidthScale

# The datasets' real split sizes (Tiny-ImageNet's test split is its labelled val split).
TRAIN_IMAGES = {"fashion_mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "tiny_imagenet": 100_000,
                "digits": 1_437}
TEST_IMAGES = {"fashion_mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000, "tiny_imagenet": 10_000,
               "digits": 360}
# Clean error of the paper's K = 3 baseline ("No Attack" row of Table 2: 94.37, 80.32, 67.36% accuracy): the share
# of test images an evaluation job skips. CIFAR-10 and digits: not in the paper, no saving projected.
CLEAN_ERROR = {"fashion_mnist": 1 - 0.9437, "cifar100": 1 - 0.8032, "tiny_imagenet": 1 - 0.6736}
CPU = torch.device("cpu")
TINY_EPS = 1e-5  # measuring restarts: an eps no image breaks at, so every restart runs on every image



@dataclass(frozen=True)
class Passes:
    """Image-passes (forward, backward) per unit; `extra` counts single-member passes outside the ledger;
    `flops` is every FLOP of the unit (`pdd.evaluation.flops.FlopCounter`, the extra passes included)."""

    forward: float
    backward: float
    extra: float = 0.0
    flops: float = 0.0

    @property
    def total(self) -> float:
        return self.forward + self.backward

    def __add__(self, other: Passes) -> Passes:
        return Passes(self.forward + other.forward, self.backward + other.backward, self.extra + other.extra,
                      self.flops + other.flops)

    def __sub__(self, other: Passes) -> Passes:
        return Passes(self.forward - other.forward, self.backward - other.backward, self.extra - other.extra,
                      self.flops - other.flops)

    def __mul__(self, factor: float) -> Passes:
        return Passes(self.forward * factor, self.backward * factor, self.extra * factor, self.flops * factor)

    def show(self) -> str:
        text = f"{self.total:,.4g} ({self.forward:,.4g} fwd + {self.backward:,.4g} bwd)"
        return text + (f" + {self.extra:,.4g} uncounted member passes" if self.extra else "")


@contextmanager
def uncounted_member_passes(model: Ensemble) -> Iterator[list[float]]:
    """Count, in ensemble image-passes (member-images / K), the single-member passes that bypass
    `Ensemble.forward`, so CostMeter cannot see them: `member_feature` (DVERGE's distillation; forward, and
    backward where its output is differentiated) and `features` called from outside forward (diversity's L_F)."""
    found = [0.0]
    k, depth = model.num_members, [0]
    forward, features, member_feature = model.forward, model.features, model.member_feature

    def add(images: float) -> None:
        found[0] += images

    def counted_forward(x: torch.Tensor) -> torch.Tensor:
        depth[0] += 1
        try:
            return forward(x)
        finally:
            depth[0] -= 1

    def counted_features(x: torch.Tensor) -> torch.Tensor:
        if not depth[0]:
            add(x.shape[1] if x.dim() == 5 else x.shape[0])
        return features(x)

    def counted_member_feature(index: int, x: torch.Tensor, layer: int) -> torch.Tensor:
        out, images = member_feature(index, x, layer), x.shape[0] / k
        add(images)
        if out.requires_grad:
            out.register_hook(lambda grad: add(images))
        return out

    model.forward, model.features, model.member_feature = counted_forward, counted_features, counted_member_feature
    try:
        yield found
    finally:
        del model.forward, model.features, model.member_feature


def measure(run: Callable[[], object], images: int, model: Ensemble | None = None,
            scale: WidthScale | None = None) -> Passes:
    """Image-passes per image of `run()` (every ensemble it runs), plus the passes CostMeter cannot see, and
    its FLOPs per image counted in the same run (each operator's scaled by `scale` when given)."""
    extra = [0.0]
    with CostMeter() as cost, FlopCounter(scale) as counter:
        if model is not None:
            with uncounted_member_passes(model) as extra:
                run()
        else:
            run()
    return Passes(cost["forward_images"] / images, cost["backward_images"] / images, extra[0] / images,
                  counter.total / images)


def line(at: Callable[[int], Passes]) -> tuple[Passes, Passes]:
    """(intercept, slope) of passes that grow linearly with an iteration count, from the counts 1 and 2."""
    one, two = at(1), at(2)
    slope = two - one
    return one - slope, slope
