"""Factories of 'external' models for tests/test_external.py (imported by name, as a user's module would be).

All are built from the same tiny digits architecture as `SPEC`, so one set of trained weights, rearranged,
fits each of them and every route must give the same numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from pdd.models import Ensemble, EnsembleSpec, build_features

SPEC = EnsembleSpec("resnet18", num_members=2, num_classes=10, in_channels=1, width=4)


def pdd_ensemble() -> Ensemble:
    """A pdd ensemble, as a user who trained with our models elsewhere would return it."""
    return Ensemble(SPEC)


def _body() -> nn.Module:
    return build_features(SPEC.arch, SPEC.width, SPEC.in_channels)


def sequential_members() -> list[nn.Module]:
    """Members as nn.Sequential(features, head): the penultimate features are visible (L_F works)."""
    return [nn.Sequential(_body(), nn.Linear(8 * SPEC.width, SPEC.num_classes)) for _ in range(SPEC.num_members)]


class Member(nn.Module):
    """A member with no feature split visible from outside (an arbitrary user module)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _body()
        self.head = nn.Linear(8 * SPEC.width, SPEC.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def plain_members() -> list[nn.Module]:
    return [Member() for _ in range(SPEC.num_members)]


def single_model() -> nn.Module:
    """One classifier (K = 1)."""
    return Member()


def seven_classes() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 7))


class Stacked(nn.Module):
    """Wrong: one module returning member logits [K, B, L] instead of a list of members."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.linear(x.flatten(1))] * 2)


def stacked_logits() -> nn.Module:
    return Stacked()


def not_a_model() -> int:
    return 42


def member_states(ensemble_state: dict[str, torch.Tensor], body: str, head: str) -> list[dict[str, torch.Tensor]]:
    """A pdd `Ensemble` state_dict as one state_dict per member, keys renamed to `body`.* and `head`.*."""
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(SPEC.num_members)]
    for key, value in ensemble_state.items():
        part, k, rest = key.split(".", 2)
        out[int(k)][f"{body if part == 'members' else head}.{rest}"] = value
    return out
