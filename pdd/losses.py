"""Training losses: the ensemble cross-entropy L_ECE, DEG's gradient dispersion (eq. 3), ADP, and the
input-gradient penalties of the peer defences GAL and TRS."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOG_OFFSET = 1e-20  # ADP's offset inside log(p), GAL's inside log(sum exp cos)
DET_OFFSET = 1e-6   # ADP's ridge added before log det


def ensemble_cross_entropy(member_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_ECE: mean over members of each member's mean cross-entropy; logits [K, B, L]."""
    k, b, l = member_logits.shape
    return F.cross_entropy(member_logits.reshape(k * b, l), targets.repeat(k))


def unit_vectors(grads: torch.Tensor) -> torch.Tensor:
    """Each per-sample vector of grads [K, B, ...] scaled to length 1, flattened to [K, B, D].

    A zero vector stays zero (so its cosine with anything is 0), with finite first and second derivatives.
    """
    k, b = grads.shape[:2]
    g = grads.reshape(k, b, -1)
    norm = g.square().sum(-1, keepdim=True)
    return g * torch.where(norm > 0, norm, torch.ones_like(norm)).rsqrt()      # zero rows stay 0


def pair_cosines(grads: torch.Tensor) -> torch.Tensor:
    """cos(g_i[b], g_j[b]) for every member pair i < j (row-major pair order): [K(K-1)/2, B]; zero-safe."""
    unit = unit_vectors(grads)
    k = unit.shape[0]
    i, j = torch.triu_indices(k, k, offset=1, device=grads.device)
    return (unit[i] * unit[j]).sum(-1)


def gradient_dispersion(grads: torch.Tensor) -> torch.Tensor:
    """L_g of eq. 3: sum over member pairs i < j of the batch mean of cos(g_i, g_j); grads [K, B, ...].

    A zero gradient has cosine 0 with everything (no NaN, also in the second-order backward).
    """
    unit = unit_vectors(grads)                                                  # [K, B, D]
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


def gal_penalty(grads: torch.Tensor) -> torch.Tensor:
    """GAL's coherence (Kariyappa & Qureshi 2019): mean_b log(sum_{i<j} exp cos(g_i[b], g_j[b]) + 1e-20).

    Signed cosine; grads [K, B, ...] (each member's input gradient of its own CE); zero-safe.
    """
    return torch.log(pair_cosines(grads).exp().sum(0) + LOG_OFFSET).mean()


def trs_similarity(grads: torch.Tensor) -> torch.Tensor:
    """TRS's gradient similarity (Yang et al. 2021): mean over member pairs of mean_b |cos(g_i[b], g_j[b])|."""
    return pair_cosines(grads).abs().mean()


def trs_smoothness(grads: torch.Tensor) -> torch.Tensor:
    """TRS's smoothness term: mean over members of 2 * mean_b ||g_k[b]||^2; grads [K, B, ...] per sample.

    Per-sample means each g_k[b] is the gradient of sample b's own loss (differentiate the batch SUM):
    the authors' batch-mean loss scales every gradient by 1/B and so this term by 1/B^2.
    """
    k, b = grads.shape[:2]
    return 2 * grads.reshape(k, b, -1).square().sum(-1).mean()
