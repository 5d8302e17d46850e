"""What every training method shares: the `TrainingMethod` interface (the loss settings live in
`pdd.settings.methods`, free of torch)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from pdd.models import Ensemble
from pdd.settings.methods import LossSettings


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
