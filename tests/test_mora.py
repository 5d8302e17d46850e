"""MORA (pdd.evaluation.mora, pdd.api.mora): its weights and surrogate against hand-worked numbers, its budget, and
the point of the method: it breaks an ensemble whose deciding member's softmax saturates, where APGD-CE on
log(mean softmax) gets no gradient from that member."""

import math

import pytest
import torch
from torch import nn

from pdd import api
from pdd.evaluation.external import as_ensemble
from pdd.evaluation.mora import member_weights, mora, surrogate_logits
from pdd.evaluation.strong import StrongSettings, apgd, still_correct

CPU = torch.device("cpu")


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    member = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0]))
    with torch.no_grad():
        member[1].weight.copy_(weight)
        member[1].bias.copy_(bias)
    return member


def saturated_ensemble(n: int = 60, scale: float = 1000.0):
    """Member A: template matching on 4x4 images scaled by `scale` (top-2 logit gaps in the hundreds, so its
    float32 softmax is exactly one-hot and passes no gradient through the mean softmax); members B and C: weak
    (logits ~0.01) and biased to class 3, which no image has, so they are wrong everywhere and only A holds the
    decision. Images: class template * 0.05 around 0.5, labels 0-2."""
    g = torch.Generator().manual_seed(0)
    templates = torch.randint(0, 2, (4, 16), generator=g).float() * 2 - 1
    y = torch.arange(n) % 3
    x = (0.5 + 0.05 * templates[y] + 0.01 * torch.randn(n, 16, generator=g)).view(n, 1, 4, 4)
    deciding = _linear(scale * templates, -scale * 0.5 * templates.sum(1))
    weak = [_linear(0.01 * torch.randn(4, 16, generator=g), torch.tensor([0.0, 0.0, 0.0, 1.0])) for _ in range(2)]
    return as_ensemble([deciding, *weak], x[:2], 4), x, y


def test_mora_breaks_a_saturated_member_that_apgd_ce_cannot_see():
    model, x, y = saturated_ensemble()
    assert still_correct(model, x, y, CPU, 500).all()
    z = model(x)
    assert (z[0].softmax(1).amax(1) == 1).all()  # A's softmax saturates: its gradient through the mean vanishes
    eps = 0.06
    x_mora = mora(model, x, y, eps, iterations=20)
    x_apgd = apgd(model, x, y, eps, "cross_entropy", StrongSettings(apgd_iterations=20, apgd_restarts=1), CPU)
    fooled_mora = int((~still_correct(model, x_mora, y, CPU, 500)).sum())
    fooled_apgd = int((~still_correct(model, x_apgd, y, CPU, 500)).sum())
    assert fooled_mora >= 0.9 * len(y) > fooled_apgd + 0.5 * len(y), (fooled_mora, fooled_apgd)
    assert (x_mora - x).abs().amax() <= eps + 1e-6 and x_mora.min() >= 0 and x_mora.max() <= 1
    # the ensemble term alone (mix 0) is as blind as APGD-CE here: the member term is what breaks it
    x_blind = mora(model, x, y, eps, iterations=20, mixes=(0,))
    assert int((~still_correct(model, x_blind, y, CPU, 500)).sum()) <= fooled_apgd + 0.1 * len(y)


def _small_ensemble():
    torch.manual_seed(1)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(27, 16), nn.ReLU(), nn.Linear(16, 5)) for _ in range(3)]
    x = torch.rand(40, 3, 3, 3)
    x[:10] = x[:10].round()  # pixels at 0 and 1: projection must clip to [0, 1] there
    return as_ensemble(members, x[:2], 5), x


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 0.5)])
def test_mora_stays_in_budget_and_leaves_misclassified_images_alone(norm, eps):
    model, x = _small_ensemble()
    with torch.no_grad():
        pred = model.log_mean_prob(x).argmax(1)
    y = pred.clone()
    y[::4] = (pred[::4] + 1) % 5  # every fourth image misclassified before the attack
    x_adv = api.mora(list(model.members), x, y, eps, norm=norm, iterations=10, seed=3)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert size.max() <= eps * (1 + 1e-5) and x_adv.min() >= 0 and x_adv.max() <= 1
    assert torch.equal(x_adv[::4], x[::4])
    fooled = ~still_correct(model, x_adv, y, CPU, 500)
    assert fooled[1::4].any()  # it does attack the others
    moved = size > 0
    assert not (moved & ~fooled).any()  # an image it could not fool comes back as given


def test_member_weights_by_hand():
    # q_1 = (.5, .3, .2), q_2 = (.6, .1, .3), y = 0: Q = (.55, .2, .25), runner-up j = 2;
    # w_1 = .2 * (.5 / .55 + .8 / .25) = .2 * 4.109091 = 0.8218182; w_2 = .3 * (.6 / .55 + .7 / .25) = 1.1672727
    q = torch.tensor([[[0.5, 0.3, 0.2]], [[0.6, 0.1, 0.3]]], dtype=torch.float64)
    w = member_weights(q, torch.tensor([0]))
    assert torch.allclose(w[:, 0], torch.tensor([0.8218182, 1.1672727], dtype=torch.float64), atol=1e-6)


def test_member_weights_are_the_sensitivity_of_the_ensemble_margin():
    z = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    q = z.softmax(2)
    log_q = q.mean(0).log()
    j = q.mean(0).detach().scatter(1, y[:, None], -1.0).argmax(1)
    margin = (log_q.gather(1, j[:, None]) - log_q.gather(1, y[:, None])).sum()
    (grad,) = torch.autograd.grad(margin, z)
    expected = 3 * grad.gather(2, j.expand(3, -1)[..., None])[..., 0]
    assert torch.allclose(member_weights(q.detach(), y), expected)


def test_surrogate_mixes_by_hand():
    # K = 2, L = 3, one image, y = 0. z_1 = (4, 0, 2): correct, top-2 gap 2; z_2 = (0, 40, 0): wrong, gap 40.
    # sigma = 40 / 10 = 4; member 1 alone still predicts y, with weight ~0.63 (>> the 1e-8 floor), so mix 1 gives
    # z_1 / 4 = (1, 0, 0.5), and mix 0.5 the mean of that and the ensemble term.
    z = torch.tensor([[[4.0, 0.0, 2.0]], [[0.0, 40.0, 0.0]]], dtype=torch.float64)
    y = torch.tensor([0])
    assert torch.allclose(surrogate_logits(z, y, 1.0), torch.tensor([[1.0, 0.0, 0.5]], dtype=torch.float64),
                          atol=1e-6)
    half = 0.5 * torch.tensor([[1.0, 0.0, 0.5]], dtype=torch.float64) + 0.5 * surrogate_logits(z, y, 0.0)
    assert torch.allclose(surrogate_logits(z, y, 0.5), half, atol=1e-6)
    # mix 0: log P / (gap between the two largest log P), P the mean softmax in double precision
    log_p = z.softmax(2).mean(0)[0].log()
    top = sorted(log_p.tolist(), reverse=True)
    gap = top[0] - top[1]
    assert torch.allclose(surrogate_logits(z, y, 0.0)[0], log_p / gap)


@pytest.mark.parametrize("bad", [{"eps": math.nan}, {"eps": math.inf}, {"eps": -0.1}, {"norm": "l1"},
                                 {"iterations": 0}, {"mixes": (0.5, 1.5)}, {"mixes": (math.nan,)}, {"mixes": ()}])
def test_mora_refuses_bad_arguments(bad):
    model, x = _small_ensemble()
    args = {"eps": 0.1, "norm": "linf", "iterations": 2, "mixes": (0, 1), **bad}
    with pytest.raises(ValueError):
        mora(model, x, torch.zeros(len(x), dtype=torch.long), **args)


def test_cost_meter_counts_every_mora_pass():
    """At a budget too small to fool anything (A's margin needs eps >= 0.04), each of N images takes one forward
    for the initial check, then per mix iterations + 1 forwards and `iterations` backwards."""
    from pdd.evaluation.cost_meter import CostMeter

    model, x, y = saturated_ensemble(n=12)
    with CostMeter(model) as cost:
        x_adv = mora(model, x, y, 0.01, iterations=4, mixes=(0.0, 1.0))
    assert still_correct(model, x_adv, y, CPU, 500).all()
    assert cost["forward_images"] == 12 + 2 * 5 * 12 and cost["backward_images"] == 2 * 4 * 12
