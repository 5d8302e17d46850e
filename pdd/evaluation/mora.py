"""MORA, the model-reweighing attack on ensembles (Yu, Gao & Xu, NeurIPS 2022), in torch on the model's device.

Attacks on log(mean softmax) flatter ensembles: a member whose softmax saturates contributes no gradient
through the average, and members already fooled keep steering it. MORA instead, per iteration and image,
takes cross-entropy on a surrogate output that mixes, with weight `mix` = s,

    (1 - s) * log P / margin(log P)  +  s * sum_k w_k c_k z_k / sigma  /  (1e-8 + sum_k w_k c_k)

where z_k are member k's logits, P the ensemble's mean softmax, margin the gap between its two largest
log-probabilities, sigma = (largest top-2 logit gap over the members) / 10 when that exceeds 10, else 1
(so no member's softmax stays saturated), c_k = 1 when member k still predicts the true class y, and
w_k = q_k[j] * (q_k[y] / Q[y] + (1 - q_k[j]) / Q[j]) with q_k = softmax(z_k / sigma), Q their mean and j
the ensemble's runner-up class: K times d(log Q_j - log Q_y) / d(z_k[j] / sigma), i.e. how much member k
holds up the decision. Weights, masks, sigma and margin are constants of the step (no gradient through
them). Steps are APGD-like: initial step 2 eps decayed linearly to 0, momentum 0.75 (none at the first
step), sign (L-inf) or normalised (L2) gradient, projection onto the eps-ball and [0, 1], one random start
on the ball's surface. An image leaves the batch at the first point where the ensemble misclassifies it
and that point is returned; the mixes run in turn, each only on the images still robust.

Choices that differ from the authors' code (lafeat/mora, `mora_attack.py` / `mora.py`), read, not copied:
- Q averages the softmax of all K scaled members; theirs averages the first K - 1 (a loop bound one short)
  and divides by K, and takes q_k from the unscaled logits, which gives a saturated member the weight 0 and
  so leaves exactly the member that holds the decision out of the attack.
- Temperature 1 in the weights' softmax (their `float_dis`: default 1, 0.2 in their evaluation script).
- Step decay linear (their default; their script uses cosine). Mixes in the order given (default
  0, .25, .5, .75, 1); their standard version runs 0.5 first. No targeted variant (their 'standard-t-pre'
  adds one run at s = 0.5 against the top classes): not run here.
- log P through a stable log-sum-exp instead of log(clamp(mean softmax, 1e-80)); the margin is clamped to
  >= 1e-12 (theirs divides by it unguarded); eps is not shrunk by 1.9e-8 (budgets are checked with a 1e-5
  tolerance downstream).
- One forward per iteration: the check whether an image is fooled uses the next iteration's forward (theirs
  runs a second forward per step); same examples, iterations + 1 forwards and `iterations` backwards per
  image at most.
- Images are batched in index order (theirs sorts the robust images by the ensemble's margin first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pdd.settings.strong import MIXES, NORMS

MOMENTUM = 0.75


def check_mora_args(eps: float, norm: str, iterations: int, mixes: Sequence[float]) -> None:
    """Refuse budgets, norms, iteration counts and mixes MORA cannot run with (NaN and infinities by name)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if not mixes or any(not math.isfinite(s) or not 0 <= s <= 1 for s in mixes):
        raise ValueError(f"mixes must be a non-empty list of numbers in [0, 1], got {list(mixes)}")


def log_mean_softmax(z: torch.Tensor) -> torch.Tensor:
    """log of the mean member softmax [B, L] from member logits [K, B, L] (stable: log-sum-exp)."""
    return torch.logsumexp(F.log_softmax(z, dim=-1), dim=0) - math.log(z.shape[0])


def member_weights(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """w [K, B]: K * d(log Q_j - log Q_y) / d(logit_k[j]) for member softmaxes q [K, B, L], Q = mean_k q_k and
    j the ensemble's runner-up class (its largest class other than y): how much member k holds up Q's decision."""
    big_q = q.mean(0)
    j = big_q.scatter(1, y[:, None], -1.0).argmax(1)
    q_y, q_j = q.gather(2, y.expand(q.shape[0], -1)[..., None])[..., 0], q.gather(2, j.expand(q.shape[0], -1)[
        ..., None])[..., 0]
    return q_j * (q_y / big_q.gather(1, y[:, None])[:, 0] + (1 - q_j) / big_q.gather(1, j[:, None])[:, 0])


def surrogate_logits(z: torch.Tensor, y: torch.Tensor, mix: float) -> torch.Tensor:
    """MORA's surrogate output [B, L] from member logits z [K, B, L] (module docstring); gradients flow
    through z only."""
    log_p = log_mean_softmax(z)
    with torch.no_grad():
        top = log_p.topk(2, dim=1).values
        margin = (top[:, 0] - top[:, 1]).clamp_min(1e-12)
        member_top = z.topk(2, dim=2).values
        gap = (member_top[..., 0] - member_top[..., 1]).amax(0)
        sigma = torch.where(gap > 10, gap / 10, torch.ones_like(gap))
        scaled = z / sigma[None, :, None]
        correct = (scaled.argmax(2) == y).to(z.dtype)
        held = member_weights(scaled.softmax(2), y) * correct  # [K, B]
    ensemble_term = log_p / margin[:, None]
    member_term = (held[..., None] * z / sigma[None, :, None]).sum(0) / (1e-8 + held.sum(0))[:, None]
    return (1 - mix) * ensemble_term + mix * member_term


def project(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """x_adv projected onto the eps-ball around x (L-inf or L2) and then into [0, 1] (which keeps it in the ball:
    clipping only moves coordinates towards x, itself in [0, 1])."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        length = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / length).clamp(max=1.0).view(-1, *[1] * (x.dim() - 1))
    return (x + delta).clamp(0.0, 1.0)


def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator) -> torch.Tensor:
    """A random point on the surface of the eps-ball (L-inf: uniform noise rescaled to sup-norm eps), in [0, 1]."""
    noise = torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1 if norm == "linf" else \
        torch.randn(x.shape, generator=generator, device=x.device)
    size = noise.flatten(1).abs().amax(1) if norm == "linf" else noise.flatten(1).norm(dim=1)
    return (x + eps * noise / size.clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))).clamp(0.0, 1.0)


def mora_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, iterations: int,
             mix: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One MORA run at mixing weight `mix` on images the ensemble classifies correctly (x, y on the model's device):
    (x_adv, fooled bool [B]); a fooled image's x_adv is its first misclassified point, the others' the last one."""
    x_adv = _random_start(x, eps, norm, generator)
    result, fooled = x_adv.clone(), torch.zeros(len(y), dtype=torch.bool, device=x.device)
    active = torch.arange(len(y), device=x.device)
    previous = x_adv
    for i in range(iterations + 1):
        x_adv = x_adv.detach().requires_grad_(True)
        z = model(x_adv)
        hit = log_mean_softmax(z.detach()).argmax(1) != y[active]
        if hit.any():
            result[active[hit]], fooled[active[hit]] = x_adv.detach()[hit], True
        if i == iterations or hit.all():
            if not hit.all():
                result[active[~hit]] = x_adv.detach()[~hit]
            break
        keep = ~hit
        loss = F.cross_entropy(surrogate_logits(z[:, keep], y[active][keep], mix), y[active][keep], reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            active, x_now, previous, grad = active[keep], x_adv[keep], previous[keep], grad[keep]
            x_orig = x[active]
            step = 2 * eps * (1 - i / iterations)
            a = 1.0 if i == 0 else MOMENTUM
            x_step = project(x_orig, x_now + step * _direction(grad, norm), eps, norm)
            x_adv = project(x_orig, x_now + a * (x_step - x_now) + (1 - a) * (x_now - previous), eps, norm)
            previous = x_now
    return result, fooled


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([log_mean_softmax(model(xb)).argmax(1) == yb for xb, yb in zip(x.split(batch_size),
                                                                                  y.split(batch_size))])


def mora(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf", iterations: int = 100,
         mixes: Sequence[float] = MIXES, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """MORA adversarial examples [N, C, H, W] in [0, 1] within `eps` (L-inf or L2) of x, on the device of `model`
    (an ensemble whose forward returns member logits [K, B, L]); returned where x was. Images the ensemble already
    misclassifies are returned unchanged; each mix runs on the images no earlier mix fooled."""
    check_mora_args(eps, norm, iterations, mixes)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(iter([*model.parameters(), *model.buffers()]), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        xd, yd = x.to(device), y.to(device)
        x_adv = xd.clone()
        robust = _correct(model, xd, yd, batch_size) if len(yd) else torch.zeros(0, dtype=torch.bool, device=device)
        if eps == 0:
            return x_adv.to(x.device)
        generator = torch.Generator(device=device).manual_seed(seed)
        for mix in mixes:
            index = robust.nonzero().flatten()
            for chunk in index.split(batch_size):
                found, fooled = mora_run(model, xd[chunk], yd[chunk], eps, norm, iterations, float(mix), generator)
                x_adv[chunk[fooled]] = found[fooled]
                robust[chunk[fooled]] = False
        return x_adv.to(x.device)
    finally:
        model.train(was_training)
