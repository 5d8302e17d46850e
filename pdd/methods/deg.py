"""DEG (eq. 3-4): L_ECE plus a penalty on the members' input gradients, second order."""

from __future__ import annotations

import torch

from pdd.gradients import replicate
from pdd.losses import ensemble_cross_entropy, gradient_dispersion
from pdd.methods.base import TrainingMethod
from pdd.models import Ensemble


class InputGradientPenalty(TrainingMethod):
    """L_ECE + weight * penalty(g), g_k = d L_CE(member k) / dx per sample, differentiated twice.

    Each member sees its own copy of x, so one backward pass yields all K input gradients (PDD's mask is
    sampled, so no gradient crosses members). Only dL/dx keeps its graph: also keeping dL_ECE/dtheta's
    graph to skip the final forward backward measured 20% slower. The penalties are scale-invariant, so
    differentiating the batch-mean L_ECE gives the same per-sample directions as the sum.
    """

    def weight(self) -> float:
        raise NotImplementedError

    def penalty(self, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        lam = self.weight()
        xs = replicate(x, model.num_members)
        logits = model(xs)
        ece = ensemble_cross_entropy(logits, y)
        (grad_x,) = torch.autograd.grad(ece, xs, create_graph=True)
        penalty = self.penalty(grad_x)
        (ece + lam * penalty).backward()
        return ece.item() + lam * penalty.item(), logits.detach()


class DEG(InputGradientPenalty):
    """Dispersed Ensemble Gradients: L_g = sum over pairs of the batch-mean cosine (eq. 3), lambda 0.01."""

    deg = True
    settings_used = ("deg_lambda",)

    def weight(self) -> float:
        return self.settings.deg_lambda

    def penalty(self, grads: torch.Tensor) -> torch.Tensor:
        return gradient_dispersion(grads)
