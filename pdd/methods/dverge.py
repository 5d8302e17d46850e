"""DVERGE (Yang et al., NeurIPS 2020): each member learns to classify the other members' distilled
non-robust features, starting from a trained baseline ensemble.

Per epoch one feature layer is drawn; per batch each member k distils x'_k: from the source image x_s,
10 steps that pull its layer feature towards that of a target image x_t, and member i is then trained
with its own optimiser on sum_{j != i} CE(f_i(x'_j), y_s).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pdd.gradients import linf_step
from pdd.methods.base import TrainingMethod
from pdd.models import Ensemble, eval_mode
from pdd.settings.methods import LossSettings

LAYER_STREAM = 2**40  # offset of the per-epoch layer draw's seed from the data shuffle's (seed * 1_000_003 + epoch)


def draw_layer(num_layers: int, seed: int, epoch: int) -> int:
    """The epoch's distillation layer, uniform over 0..num_layers-1, reproducible from (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + LAYER_STREAM)
    return int(torch.randint(num_layers, (1,), generator=generator))


def target_indices(batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Index of each source image's target image within the batch: a uniformly random cyclic derangement
    (random order, each image's target is the next one), so no image is its own target when B > 1.

    The authors draw targets from a second, independently shuffled loader; a shuffle inside the batch
    gives the same distribution of (source, target) pairs without a second data pass. Global torch RNG.
    """
    order = torch.randperm(batch_size, device=device)
    target = torch.empty_like(order)
    target[order] = order.roll(-1)
    return target


def distill(model: Ensemble, layer: int, source: torch.Tensor, target: torch.Tensor, eps: float, step: float,
            steps: int) -> torch.Tensor:
    """x'_k near `source` (L-inf eps, [0, 1]) whose member-k feature at `layer` imitates `target`'s, for every
    member k at once: [K, B, ...] (each member's own, independent: member k's feature reads only x'_k).

    The authors' Linf_distillation: descend MSE(h(x'), h(x_t)) with sign steps of the momentum sum of
    per-sample L1-normalised gradients, no random start. Call in eval mode; the target features are
    computed once, and only the input gradient (no parameter gradients).
    """
    k = model.num_members
    with torch.no_grad():
        wanted = model.member_features(target.unsqueeze(0).expand(k, *target.shape), layer)
    x = source.unsqueeze(0).expand(k, *source.shape).clone()
    momentum = torch.zeros_like(x)
    shape = (k, -1) + (1,) * (source.dim() - 1)
    for _ in range(steps):
        x.requires_grad_(True)
        loss = (model.member_features(x, layer) - wanted).square().sum()
        (grad,) = torch.autograd.grad(loss, x)
        momentum = momentum + grad / grad.abs().flatten(2).sum(2).clamp_min(1e-12).view(shape)
        x = linf_step(x, -momentum, step, source, eps)
    return x.detach()


def member_cross_entropies(member_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each member's batch-mean cross-entropy, [K]."""
    k, b, l = member_logits.shape
    return F.cross_entropy(member_logits.reshape(k * b, l), targets.repeat(k), reduction="none").view(k, b).mean(1)


def cross_member_losses(model: Ensemble, distilled: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """DVERGE's per-member losses [K]: member i's is sum_{j != i} CE(f_i(x'_j), y); distilled [K, B, ...].

    One ensemble forward per shift d = 1..K-1 (member i sees x'_{(i+d) mod K}), so each member sees
    each other member's images as a batch of its own, as in the authors' per-member loop.
    """
    total = distilled.new_zeros(distilled.shape[0])
    for shift in range(1, distilled.shape[0]):
        total = total + member_cross_entropies(model(distilled.roll(-shift, 0)), targets)
    return total


class DVERGE(TrainingMethod):
    """Diversifying vulnerabilities by cross-member training on distilled features (eps 0.07, step 0.007)."""

    settings_used = ("dverge_eps", "dverge_step", "dverge_steps")
    starts_from = "baseline"

    def __init__(self, settings: LossSettings | None = None, pdd: bool = False):
        super().__init__(settings, pdd)
        self.layer: int | None = None

    def parameter_groups(self, model: Ensemble) -> list[list[nn.Parameter]]:
        """One optimiser per member (its feature extractor and head), as the authors'."""
        return [[*model.members[k].parameters(), *model.heads[k].parameters()] for k in range(model.num_members)]

    def start_epoch(self, model: Ensemble, epoch: int, epochs: int, seed: int) -> None:
        """Draw the epoch's distillation layer."""
        self.layer = draw_layer(model.num_feature_layers(), seed, epoch)

    def backward(self, model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Distil x'_k for every member (eval mode), then the cross-member loss (train mode); the clean
        logits for the training accuracy are the eval-mode ones (no extra batch-norm update)."""
        if self.layer is None:
            raise RuntimeError("DVERGE.start_epoch must draw the distillation layer before the first step")
        s = self.settings
        with eval_mode(model):
            with torch.no_grad():
                logits = model(x)
            x_t = x[target_indices(len(y), x.device)]
            distilled = distill(model, self.layer, x, x_t, s.dverge_eps, s.dverge_step, s.dverge_steps)
        losses = cross_member_losses(model, distilled, y)
        losses.sum().backward()
        return losses.mean().item(), logits
