"""Baseline and PDD: the ensemble cross-entropy L_ECE alone (PDD acts inside the model)."""

from __future__ import annotations

import torch

from pdd.losses import ensemble_cross_entropy
from pdd.methods.base import TrainingMethod
from pdd.models import Ensemble


class CrossEntropy(TrainingMethod):
    """L_ECE: the mean of the members' cross-entropies (with the PDD layer when `pdd`)."""

    def backward(self, model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        logits = model(x)
        objective = ensemble_cross_entropy(logits, y)
        objective.backward()
        return objective.item(), logits.detach()
