"""GAL (Kariyappa & Qureshi 2019): L_ECE + lambda * mean_b log sum_{i<j} exp cos(g_i, g_j), lambda 0.5."""

from __future__ import annotations

import torch

from pdd.losses import gal_penalty
from pdd.methods.deg import InputGradientPenalty


class GAL(InputGradientPenalty):
    """Gradient Alignment Loss with the signed cosine, as in the DVERGE authors' GAL trainer (SGD recipe)."""

    settings_used = ("gal_lambda",)

    def weight(self) -> float:
        return self.settings.gal_lambda

    def penalty(self, grads: torch.Tensor) -> torch.Tensor:
        return gal_penalty(grads)
