"""Ensemble diversity measures of the paper: output ambiguity (eq. 5), feature discrimination
(eq. 6) and the angles between members' input gradients (Figure 3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pdd.gradients import member_input_gradients, replicate
from pdd.losses import pair_cosines
from pdd.models import Ensemble


def ambiguity_entropy(correct: torch.Tensor) -> float:
    """E of eq. 5: mean over images of min(l, K - l) / (K - ceil(K/2)), l = members correct; correct [K, N] bool."""
    k = correct.shape[0]
    votes = correct.long().sum(0)
    return (torch.minimum(votes, k - votes).float() / (k - math.ceil(k / 2))).mean().item()


def _pair_scatter(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per member pair and image: S_b = (mu_i - mu_j)^2, S_w = var_i + var_j over each member's activated (> 0)
    units, and whether the pair is valid (both members have an activated unit and S_w > 0); each [P, N]."""
    active = features > 0
    count = active.sum(-1)                                                   # [K, N]
    safe = count.clamp(min=1).to(features.dtype)
    values = torch.where(active, features, torch.zeros_like(features))
    mean = values.sum(-1) / safe
    var = torch.where(active, (features - mean.unsqueeze(-1)) ** 2, torch.zeros_like(features)).sum(-1) / safe
    i, j = torch.triu_indices(len(features), len(features), offset=1)
    between = (mean[i] - mean[j]) ** 2                                        # [P, N]
    within = var[i] + var[j]
    valid = (count[i] > 0) & (count[j] > 0) & (within > 0)
    return between, within, valid


def fisher_discrimination(features: torch.Tensor) -> torch.Tensor:
    """L_F of eq. 6 per image: sum over member pairs of (mu_i - mu_j)^2 / (var_i + var_j), where mu and
    var are over the member's activated (> 0) units; features [K, N, C] -> [N].

    A pair is left out when a member has no activated unit or both variances are zero (ratio undefined).
    """
    between, within, valid = _pair_scatter(features)
    return torch.where(
        valid, between / torch.where(valid, within, torch.ones_like(within)), torch.zeros_like(within)
    ).sum(0)


def scatter(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6's between- and within-member scatter S_b, S_w per image, each the mean over the valid member
    pairs (NaN when no pair is valid); features [K, N, C] -> ([N], [N])."""
    between, within, valid = _pair_scatter(features)
    n = valid.sum(0).to(features.dtype)
    mean = lambda t: torch.where(n > 0, (t * valid).sum(0) / n.clamp(min=1), torch.full_like(n, float("nan")))  # noqa: E731
    return mean(between), mean(within)


def pairwise_angles(grads: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between every pair of members' vectors, per image; grads [K, N, ...] -> [P, N].

    Uses 2 atan2(|u - v|, |u + v|) of the unit vectors, accurate near 0 and 180 degrees where acos is not.
    A zero vector is taken as orthogonal to everything (90 degrees), as the DEG penalty treats it.
    """
    k, n = grads.shape[:2]
    unit = F.normalize(grads.reshape(k, n, -1), dim=-1)
    i, j = torch.triu_indices(k, k, offset=1)
    return torch.rad2deg(2 * torch.atan2((unit[i] - unit[j]).norm(dim=-1), (unit[i] + unit[j]).norm(dim=-1)))


def input_gradients(model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d CE(member k, y) / dx for every member and image, [K, B, C, H, W] (eval mode, one backward pass)."""
    return member_input_gradients(model, replicate(x, model.num_members), y, create_graph=False)[2]


@torch.no_grad()
def _features_and_logits(model: Ensemble, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = model.features(x)
    logits = torch.stack([head(features[i]) for i, head in enumerate(model.heads)])
    return features, logits


def per_image(model: Ensemble, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 250) -> dict:
    """Member correctness [K, N], ensemble correctness [N], L_F, S_b, S_w [N], mean pairwise gradient angle
    and cosine [N]."""
    model.eval()
    out: dict[str, list] = {"member_correct": [], "correct": [], "fisher": [], "between": [], "within": [],
                            "angle": [], "cosine": []}
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb, yb = xb.to(device), yb.to(device)
        features, logits = _features_and_logits(model, xb)
        out["member_correct"].append((logits.argmax(-1) == yb).cpu())
        out["correct"].append((logits.softmax(-1).mean(0).argmax(-1) == yb).cpu())
        out["fisher"].append(fisher_discrimination(features).cpu())
        between, within = scatter(features)
        out["between"].append(between.cpu())
        out["within"].append(within.cpu())
        grads = input_gradients(model, xb, yb)
        out["angle"].append(pairwise_angles(grads).mean(0).cpu())
        out["cosine"].append(pair_cosines(grads).mean(0).cpu())
    return {key: torch.cat(parts, dim=-1) for key, parts in out.items()}


FEATURE_MEASURES = ("fisher", "between", "within")  # per-image measures of pdd.evaluation.diversity read off features


class LogitsAsFeatures(nn.Module):
    """An ensemble without a feature split seen by `per_image`: its 'features' are the member
    logits and its heads the identity, so logits stay exact; the feature measures are then discarded."""

    def __init__(self, ensemble: nn.Module):
        super().__init__()
        self.ensemble = ensemble
        self.num_members = ensemble.num_members
        self.heads = [nn.Identity()] * ensemble.num_members

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble(x)


def diversity_per_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                        batch_size: int = 250) -> dict[str, torch.Tensor]:
    """`per_image` of any ensemble the pipeline evaluates; for a model without penultimate features (an external
    one) the feature measures (L_F, S_b, S_w) are NaN, member correctness and gradient angles measured as usual."""
    if getattr(model, "has_features", True):
        return per_image(model, x, y, device, batch_size)
    stats = per_image(LogitsAsFeatures(model), x, y, device, batch_size)
    return {**stats, **{key: torch.full_like(stats[key], float("nan")) for key in FEATURE_MEASURES}}
