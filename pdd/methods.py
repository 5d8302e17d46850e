"""What each training method of the paper means, and its loss + backward for one mini-batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pdd.adversarial import craft
from pdd.losses import adp_loss, ensemble_cross_entropy, gradient_dispersion
from pdd.models import Ensemble


@dataclass(frozen=True)
class Method:
    """A training method: which of the paper's ingredients it switches on."""

    pdd: bool = False                # Priority Diversified Dropouts on the penultimate features
    deg: bool = False                # Dispersed Ensemble Gradients penalty
    adp: bool = False                # Adaptive Diversity Promoting regulariser (Pang et al.)
    adversarial: str | None = None   # adversarial training with 'fgsm' or 'pgd' examples (Table 6)


METHODS: dict[str, Method] = {
    "baseline": Method(),
    "adp": Method(adp=True),
    "pdd": Method(pdd=True),
    "deg": Method(deg=True),
    "pdd_deg": Method(pdd=True, deg=True),
    "advt_fgsm": Method(adversarial="fgsm"),
    "advt_fgsm_pdd": Method(pdd=True, adversarial="fgsm"),
    "advt_pgd": Method(adversarial="pgd"),
    "advt_pgd_pdd": Method(pdd=True, adversarial="pgd"),
}


def get_method(name: str) -> Method:
    """The `Method` called `name`, or a clear error listing the known names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]


@dataclass(frozen=True)
class Hyper:
    """The loss weights of the defences (paper defaults) and the adversarial-training attack."""

    deg_lambda: float = 0.01
    adp_alpha: float = 2.0
    adp_beta: float = 0.5
    adv_eps: float = 0.02
    adv_steps: int = 10


def backward_step(model: Ensemble, method: Method, hyper: Hyper, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Compute the method's loss on (x, y), leave its gradient in the parameters' `.grad`;
    return (loss value, member logits of the clean batch, detached)."""
    n = len(y)
    if method.adversarial:
        x_adv = craft(model, x, y, method.adversarial, hyper.adv_eps, hyper.adv_steps)
        x, y = torch.cat([x, x_adv]), torch.cat([y, y])
    if method.deg:
        loss, logits = _deg_backward(model, hyper.deg_lambda, x, y)
    else:
        logits = model(x)
        objective = adp_loss(logits, y, hyper.adp_alpha, hyper.adp_beta) if method.adp else ensemble_cross_entropy(logits, y)
        objective.backward()
        loss = objective.item()
    return loss, logits.detach()[:, :n]


def _deg_backward(model: Ensemble, lam: float, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """L_ECE + lambda * L_g with input gradients g_k of each member's CE (eq. 3-4), second order.

    Each member sees its own copy of x, so one backward pass yields all K input gradients
    (PDD's mask is sampled, so no gradient crosses members). Only dL/dx keeps its graph: also
    keeping dL_ECE/dtheta's graph to skip the final forward backward measured 20% slower.
    """
    k = model.num_members
    xs = x.unsqueeze(0).expand(k, *x.shape).clone().requires_grad_(True)
    logits = model(xs)
    ece = ensemble_cross_entropy(logits, y)
    (grad_x,) = torch.autograd.grad(ece, xs, create_graph=True)
    penalty = gradient_dispersion(grad_x)
    (ece + lam * penalty).backward()
    return ece.item() + lam * penalty.item(), logits.detach()
