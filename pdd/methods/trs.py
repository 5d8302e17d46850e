"""TRS (Yang et al., NeurIPS 2021): L_ECE + scale * (coeff * gradient similarity + lamda * smoothness).

The smoothness term is measured on a batch whose second half is replaced by PGD examples that maximise
the members' input-gradient norms (eps growing linearly over the epochs), as the authors' `--plus-adv`.
"""

from __future__ import annotations

import torch

from pdd.gradients import linf_step, member_input_gradients, replicate
from pdd.losses import trs_similarity, trs_smoothness
from pdd.methods.base import TrainingMethod
from pdd.models import Ensemble, eval_mode
from pdd.settings.methods import LossSettings


def gradient_norm_pgd(model: Ensemble, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """L-inf PGD (uniform random start, `steps` sign steps of eps/3, clipped to [0, 1]) that MAXIMISES
    the TRS smoothness term, i.e. the members' per-sample input-gradient norms.

    Batch norm runs in eval mode (the authors' loop ran it in train mode, updating the running statistics).
    """
    k, step_size = model.num_members, eps / 3
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    with eval_mode(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            _, _, grads = member_input_gradients(model, x_adv.unsqueeze(0).expand(k, *x.shape), y)
            (ascent,) = torch.autograd.grad(trs_smoothness(grads), x_adv)
            x_adv = linf_step(x_adv, ascent, step_size, x, eps)
    return x_adv.detach()


def trs_epsilon(epoch: int, epochs: int, init_eps: float, adv_eps: float) -> float:
    """The gradient-norm PGD budget of epoch `epoch` (0-based): init_eps first, adv_eps in the last epoch."""
    return init_eps + (adv_eps - init_eps) * epoch / max(epochs - 1, 1)


class TRS(TrainingMethod):
    """Transferability Reduced Smooth ensemble: |cos| between members' input gradients + gradient norms."""

    settings_used = ("trs_coeff", "trs_lamda", "trs_scale", "trs_init_eps", "trs_adv_eps", "trs_steps")

    def __init__(self, settings: LossSettings | None = None, pdd: bool = False):
        super().__init__(settings, pdd)
        self.eps = self.settings.trs_init_eps

    def start_epoch(self, model: Ensemble, epoch: int, epochs: int, seed: int) -> None:
        """The gradient-norm PGD budget grows linearly from trs_init_eps to trs_adv_eps."""
        self.eps = trs_epsilon(epoch, epochs, self.settings.trs_init_eps, self.settings.trs_adv_eps)

    def backward(self, model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        s, k, b = self.settings, model.num_members, len(y)
        logits, total, grads = member_input_gradients(model, replicate(x, k), y)
        ece = total / (k * b)
        similarity = trs_similarity(grads)
        half = b // 2
        smooth_x = torch.cat([x[:half], gradient_norm_pgd(model, x[half:], y[half:], self.eps, s.trs_steps)])
        _, _, smooth_grads = member_input_gradients(model, replicate(smooth_x, k), y)
        loss = ece + s.trs_scale * (s.trs_coeff * similarity + s.trs_lamda * trs_smoothness(smooth_grads))
        loss.backward()
        return loss.item(), logits.detach()
