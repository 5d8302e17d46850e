"""Adversarial training (Table 6): every mini-batch augmented with FGSM / PGD examples crafted on the
ensemble being trained, alone or with PDD.

Vectorised torch code on the model's device; attack evaluation uses ART instead (pdd.evaluation.attacks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pdd.gradients import linf_step
from pdd.losses import ensemble_cross_entropy
from pdd.methods.base import TrainingMethod
from pdd.models import Ensemble, eval_mode
from pdd.settings.methods import LossSettings


def check_attack(attack: str) -> None:
    """Adversarial training knows 'fgsm' and 'pgd'; anything else is a clear error."""
    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"unknown adversarial-training attack {attack!r}; expected 'fgsm' or 'pgd'")


def craft(model: Ensemble, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float, steps: int) -> torch.Tensor:
    """L-inf FGSM (one step of size eps) or PGD (`steps` steps of eps/4, random start) on log(mean softmax).

    The model is put in eval mode while crafting so batch-norm statistics and PDD masks are untouched.
    """
    check_attack(attack)
    if attack == "fgsm":
        x_adv, steps, step_size = x.clone(), 1, eps
    else:
        x_adv, step_size = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1), eps / 4
    with eval_mode(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = F.nll_loss(model.log_mean_prob(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = linf_step(x_adv, grad, step_size, x, eps)
    return x_adv.detach()


class AdversarialTraining(TrainingMethod):
    """L_ECE on the clean batch concatenated with its adversarial examples (`attack`: 'fgsm' or 'pgd')."""

    def __init__(self, settings: LossSettings | None = None, pdd: bool = False, attack: str = "pgd"):
        super().__init__(settings, pdd)
        check_attack(attack)  # before any batch, not at the first one
        self.adversarial = attack
        self.settings_used = ("adv_eps",) if attack == "fgsm" else ("adv_eps", "adv_steps")

    def backward(self, model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        n = len(y)
        x_adv = craft(model, x, y, self.adversarial, self.settings.adv_eps, self.settings.adv_steps)
        x, y = torch.cat([x, x_adv]), torch.cat([y, y])
        logits = model(x)
        objective = ensemble_cross_entropy(logits, y)
        objective.backward()
        return objective.item(), logits.detach()[:, :n]
