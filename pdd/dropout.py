"""Priority Diversified Dropouts (PDD, Algorithm 1 and eq. 2 of the paper), vectorised over the batch."""

from __future__ import annotations

import torch
from torch import nn

from pdd.settings.training import intervals_problem


def interval_index(features: torch.Tensor, num_intervals: int) -> torch.Tensor:
    """Interval m = floor((f - u) * M / (v - u)) of every unit, per row, clamped to M - 1; 0 where v == u."""
    u = features.amin(dim=1, keepdim=True)
    span = features.amax(dim=1, keepdim=True) - u
    scaled = (features - u) * num_intervals / torch.where(span > 0, span, torch.ones_like(span))
    return scaled.floor().clamp_(0, num_intervals - 1).long()


def keep_probabilities(
    features: torch.Tensor, num_members: int, num_intervals: int, alpha: float, beta: float
) -> torch.Tensor:
    """Keep rates of eq. 2 for features [B, K*C] (member k owns columns k*C..(k+1)*C-1).

    Per sample, the K intervals with the most units over the whole ensemble (descending count,
    ties to the lower index) are t_1..t_K; unit j of member k in interval m is kept with rate
    alpha if m == t_k, else beta * (1 - N_m^(k) / C).
    """
    if problem := intervals_problem(num_members, num_intervals):
        raise ValueError(problem)
    b, kc = features.shape
    if kc % num_members:
        raise ValueError(f"feature width {kc} is not a multiple of K={num_members}")
    c = kc // num_members
    # intervals and counts in float32 at least: a bfloat16 count is inexact above 256
    work = torch.promote_types(features.dtype, torch.float32)
    bins = interval_index(features.detach().to(work), num_intervals)              # [B, K*C]
    ones = torch.ones_like(bins, dtype=work)
    counts = torch.zeros(b, num_intervals, dtype=work, device=features.device)
    counts.scatter_add_(1, bins, ones)                                             # [B, M]
    priority = counts.sort(dim=1, descending=True, stable=True).indices[:, :num_members]  # [B, K]: t_k
    member_bins = bins.view(b, num_members, c)
    member_counts = torch.zeros(b, num_members, num_intervals, dtype=work, device=features.device)
    member_counts.scatter_add_(2, member_bins, ones.view(b, num_members, c))      # [B, K, M]: N_m^(k)
    share = member_counts.gather(2, member_bins) / c                               # N^(k)_{m(j)} / C
    keep = torch.where(member_bins == priority.unsqueeze(2), torch.full_like(share, alpha), beta * (1 - share))
    return keep.view(b, kc).to(features.dtype)


class PriorityDiversifiedDropout(nn.Module):
    """Training: multiply [B, K*C] features by a Bernoulli(keep rate) mask, no rescaling (as the
    official code). Evaluation: identity."""

    def __init__(self, num_members: int, num_intervals: int, alpha: float, beta: float):
        super().__init__()
        if problem := intervals_problem(num_members, num_intervals):
            raise ValueError(problem)
        if not (0 <= alpha <= 1 and 0 <= beta <= 1):
            raise ValueError(f"PDD keep rates alpha={alpha}, beta={beta} must lie in [0, 1]")
        self.num_members, self.num_intervals, self.alpha, self.beta = num_members, num_intervals, alpha, beta

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return features
        keep = keep_probabilities(features, self.num_members, self.num_intervals, self.alpha, self.beta)
        return features * torch.bernoulli(keep)

    def extra_repr(self) -> str:
        return f"K={self.num_members}, M={self.num_intervals}, alpha={self.alpha}, beta={self.beta}"
