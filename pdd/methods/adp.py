"""ADP (Pang et al. 2019): L_ECE - alpha * ensemble entropy - beta * log ensemble diversity."""

from __future__ import annotations

import torch

from pdd.losses import adp_loss
from pdd.methods.base import TrainingMethod
from pdd.models import Ensemble


class ADP(TrainingMethod):
    """Adaptive Diversity Promoting regulariser, as run by the paper's authors (alpha 2, beta 0.5)."""

    adp = True
    settings_used = ("adp_alpha", "adp_beta")

    def backward(self, model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        logits = model(x)
        objective = adp_loss(logits, y, self.settings.adp_alpha, self.settings.adp_beta)
        objective.backward()
        return objective.item(), logits.detach()
