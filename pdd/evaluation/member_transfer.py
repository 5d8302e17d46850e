"""Transfer between the members of one ensemble (DVERGE's diversity measure): PGD examples crafted on member i,
scored on member j, as a K x K matrix of fooling rates."""

from __future__ import annotations

import torch
from torch import nn

from pdd.evaluation.attacks import AttackSettings, generate, predict
from pdd.models import Ensemble


class Member(nn.Module):
    """Member `index` of an ensemble as a one-member ensemble (log_mean_prob = its log-softmax), so the
    project's ART path attacks it exactly as it attacks a whole ensemble."""

    def __init__(self, ensemble: Ensemble, index: int):
        super().__init__()
        self.ensemble, self.index = ensemble, index
        self.spec = ensemble.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Member logits [1, B, L]: only this member runs (PDD is the identity in eval mode, where attacks run)."""
        ensemble, i = self.ensemble, self.index
        return ensemble.heads[i](ensemble.members[i](x)).unsqueeze(0)

    def log_mean_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)[0].log_softmax(-1)


def fooling_matrix(model: Ensemble, x: torch.Tensor, y: torch.Tensor, eps: float, settings: AttackSettings,
                   device: torch.device) -> torch.Tensor:
    """[K, K] percentages: entry (i, j) = share of the images member j classifies correctly that PGD crafted on
    member i makes member j misclassify (the diagonal is each member's white-box fooling rate).

    PGD is crafted only on the images at least one member classifies correctly: an image no member gets right
    enters no entry of the matrix, so passes on it could change nothing (PGD runs its full steps, as the paper's)."""
    model.eval()
    k = model.num_members
    members = [Member(model, i).eval() for i in range(k)]
    correct = torch.stack([predict(m, x, device, settings.batch_size) == y for m in members])  # [K, N]
    anyone = correct.any(0)
    matrix = torch.zeros(k, k)
    for i, source in enumerate(members):
        x_adv = generate(source, x, y, "pgd", eps, settings, device, only=anyone)[anyone]
        for j, target in enumerate(members):
            fooled = correct[j][anyone] & (predict(target, x_adv, device, settings.batch_size) != y[anyone])
            matrix[i, j] = 100.0 * fooled.sum() / correct[j].sum().clamp(min=1)
    return matrix
