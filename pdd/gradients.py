"""What the gradient-based methods and measures share: the batch copied once per member, every member's input
gradient of its own cross-entropy, and the projected L-inf sign step of the inner attacks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pdd.models import Ensemble


def replicate(x: torch.Tensor, k: int) -> torch.Tensor:
    """x [B, ...] copied once per member, [K, B, ...], as a leaf that requires grad: one backward of the
    summed member losses then yields every member's input gradient of its own loss."""
    return x.unsqueeze(0).expand(k, *x.shape).clone().requires_grad_(True)


def summed_cross_entropy(member_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over members and samples of the cross-entropy; its input gradient is per sample (no 1/B)."""
    k, b, num_classes = member_logits.shape
    return F.cross_entropy(member_logits.reshape(k * b, num_classes), targets.repeat(k), reduction="sum")


def member_input_gradients(model: Ensemble, xs: torch.Tensor, y: torch.Tensor, create_graph: bool = True
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(member logits [K, B, L], summed CE, g [K, B, ...]) with g_k[b] = d CE(f_k(x_b), y_b) / d x_b, from one
    backward pass; xs [K, B, ...] holds one copy of the batch per member (`replicate`); `create_graph` keeps
    the gradients differentiable for a second-order loss."""
    logits = model(xs)
    total = summed_cross_entropy(logits, y)
    (grads,) = torch.autograd.grad(total, xs, create_graph=create_graph)
    return logits, total, grads


def linf_step(x_adv: torch.Tensor, direction: torch.Tensor, step: float, x: torch.Tensor,
              eps: float) -> torch.Tensor:
    """x_adv + step * sign(direction), projected onto the L-inf ball of radius eps around x and onto [0, 1]."""
    return torch.min(torch.max(x_adv.detach() + step * direction.sign(), x - eps), x + eps).clamp(0, 1)
