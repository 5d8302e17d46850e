"""What every training method shares: the loss settings and the `TrainingMethod` interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from pdd.models import Ensemble
from pdd.validation import check_fields, setting


@dataclass(frozen=True)
class LossSettings:
    """Loss weights and inner-attack budgets of every method (paper / authors' defaults; CIFAR eps)."""

    deg_lambda: float = setting(0.01, "DEG's weight of the gradient dispersion L_g (eq. 4).")
    adp_alpha: float = setting(2.0, "ADP's weight of the ensemble entropy.")
    adp_beta: float = setting(0.5, "ADP's weight of the log-determinant.")
    adv_eps: float = setting(0.02, "Adversarial training L-inf budget.")
    adv_steps: int = setting(10, "PGD steps of adversarial training.")
    gal_lambda: float = setting(0.5, "GAL's weight of the coherence penalty.")
    trs_coeff: float = setting(2.0, "TRS's weight of the gradient similarity.")
    # TRS's weight of the smoothness term (the authors' spelling). The authors' 2.0 multiplied gradients of the
    # batch-MEAN loss, i.e. per-sample gradient norms^2 / B^2 at their batch 128; ours are per sample, so the
    # same effective weight is 2 / 128^2 (2.0 on per-sample norms diverges within three SGD steps).
    trs_lamda: float = setting(2 / 128**2, "TRS's weight of the per-sample smoothness term (the authors' 2.0 at "
                               "batch-mean gradients, batch 128).")
    trs_scale: float = setting(5.0, "TRS's weight of both terms.")
    trs_init_eps: float = setting(0.01, "TRS gradient-norm PGD eps, first epoch.")
    trs_adv_eps: float = setting(0.03, "TRS gradient-norm PGD eps, last epoch.")
    trs_steps: int = setting(6, "TRS gradient-norm PGD steps (each eps/3).")
    dverge_eps: float = setting(0.07, "DVERGE feature-distillation L-inf budget.")
    dverge_step: float = setting(0.007, "DVERGE distillation step size.")
    dverge_steps: int = setting(10, "DVERGE distillation steps.")

    def __post_init__(self) -> None:
        check_fields(self)  # finite numbers in their ranges (pdd.validation)
        if self.trs_init_eps > self.trs_adv_eps:
            raise ValueError(f"trs_init_eps ({self.trs_init_eps}) must not exceed trs_adv_eps ({self.trs_adv_eps})")


class TrainingMethod:
    """One training method: its loss for a mini-batch, its optimisers' parameter groups, per-epoch state.

    Subclasses implement `backward`; `uses_pdd`, `deg`, `adp` and `adversarial` say which of the paper's
    ingredients the method uses (`uses_pdd` decides whether the ensemble gets the PDD layer), `settings_used`
    which `LossSettings` fields change its result, `starts_from` the method whose trained ensemble it starts
    from (or None).
    """

    deg: ClassVar[bool] = False
    adp: ClassVar[bool] = False
    adversarial: str | None = None  # 'fgsm' / 'pgd' for adversarial training (set per instance)
    settings_used: tuple[str, ...] = ()
    starts_from: ClassVar[str | None] = None

    def __init__(self, settings: LossSettings | None = None, pdd: bool = False):
        self.settings = settings or LossSettings()
        self.pdd = pdd

    @property
    def uses_pdd(self) -> bool:
        """Whether the ensemble gets the Priority Diversified Dropout layer on its penultimate features."""
        return self.pdd

    def parameter_groups(self, model: Ensemble) -> list[list[nn.Parameter]]:
        """One list of parameters per optimiser: by default a single optimiser over the whole ensemble."""
        return [list(model.parameters())]

    def start_epoch(self, model: Ensemble, epoch: int, epochs: int, seed: int) -> None:
        """Set per-epoch state before epoch `epoch` (0-based) of `epochs`; derived from (seed, epoch) so a
        resumed run redraws it identically. Nothing by default."""

    def backward(self, model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Compute the loss on (x, y) and leave its gradient in `.grad`; return (loss value, clean member
        logits [K, B, L], detached)."""
        raise NotImplementedError

    def step(self, model: Ensemble, optimizers: list[torch.optim.Optimizer], x: torch.Tensor,
             y: torch.Tensor) -> tuple[float, torch.Tensor]:
        """One training step: zero the gradients, `backward`, step every optimiser; returns `backward`'s."""
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss, logits = self.backward(model, x, y)
        for optimizer in optimizers:
            optimizer.step()
        return loss, logits

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pdd={self.pdd}, settings={self.settings})"
