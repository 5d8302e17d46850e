"""Training losses: the ensemble cross-entropy L_ECE, DEG's gradient dispersion (eq. 3) and ADP."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOG_OFFSET = 1e-20  # ADP's offset inside log(p)
DET_OFFSET = 1e-6   # ADP's ridge added before log det


def ensemble_cross_entropy(member_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_ECE: mean over members of each member's mean cross-entropy; logits [K, B, L]."""
    k, b, l = member_logits.shape
    return F.cross_entropy(member_logits.reshape(k * b, l), targets.repeat(k))


def gradient_dispersion(grads: torch.Tensor) -> torch.Tensor:
    """L_g of eq. 3: sum over member pairs i < j of the batch mean of cos(g_i, g_j); grads [K, B, ...].

    A zero gradient has cosine 0 with everything (no NaN, also in the second-order backward).
    """
    k, b = grads.shape[:2]
    g = grads.reshape(k, b, -1)
    norm = g.square().sum(-1, keepdim=True)
    unit = g * torch.where(norm > 0, norm, torch.ones_like(norm)).rsqrt()      # [K, B, D], zero rows stay 0
    total = unit.sum(0)                                                         # sum_k u_k, [B, D]
    # sum_{i<j} <u_i, u_j> = (|sum_k u_k|^2 - sum_k |u_k|^2) / 2
    pair_sum = (total.square().sum(-1) - unit.square().sum((0, 2))) / 2
    return pair_sum.mean()


def adp_loss(member_logits: torch.Tensor, targets: torch.Tensor, alpha: float = 2.0, beta: float = 0.5) -> torch.Tensor:
    """ADP (Pang et al. 2019): L_ECE - alpha * H(mean softmax) - beta * log det(M~^T M~ + 1e-6 I).

    M~ [B, L-1, K] holds each member's non-true-class probabilities, L2-normalised per member.
    """
    k, b, l = member_logits.shape
    probs = member_logits.softmax(-1)                                           # [K, B, L]
    mean = probs.mean(0)
    entropy = -(mean * torch.log(mean + LOG_OFFSET)).sum(-1)                   # [B]
    others = torch.arange(l - 1, device=targets.device).expand(b, l - 1)
    others = others + (others >= targets.unsqueeze(1)).long()                   # class indices != y, [B, L-1]
    non_true = probs.gather(2, others.expand(k, b, l - 1))                      # [K, B, L-1]
    m = F.normalize(non_true, dim=-1).permute(1, 2, 0)                          # [B, L-1, K]
    gram = m.transpose(1, 2) @ m + DET_OFFSET * torch.eye(k, device=m.device, dtype=m.dtype)
    log_det = torch.logdet(gram)                                                # [B]
    return ensemble_cross_entropy(member_logits, targets) - alpha * entropy.mean() - beta * log_det.mean()
