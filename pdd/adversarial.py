"""FGSM / PGD examples crafted on the ensemble being trained (adversarial training, Table 6).

Vectorised torch code on the model's device; attack evaluation uses ART instead (pdd.attacks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pdd.models import Ensemble


def craft(model: Ensemble, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float, steps: int) -> torch.Tensor:
    """L-inf FGSM (one step of size eps) or PGD (`steps` steps of eps/4, random start) on log(mean softmax).

    The model is put in eval mode while crafting so batch-norm statistics and PDD masks are untouched.
    """
    if attack not in ("fgsm", "pgd"):
        raise ValueError(f"unknown adversarial-training attack {attack!r}; expected 'fgsm' or 'pgd'")
    was_training = model.training
    model.eval()
    if attack == "fgsm":
        x_adv, steps, step_size = x.clone(), 1, eps
    else:
        x_adv, step_size = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1), eps / 4
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.nll_loss(model.log_mean_prob(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + step_size * grad.sign(), x - eps), x + eps).clamp(0, 1)
    model.train(was_training)
    return x_adv.detach()
