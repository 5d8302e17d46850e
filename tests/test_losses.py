"""L_ECE, DEG's gradient dispersion (eq. 3), ADP and the GAL / TRS penalties against hand values and slow
references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pdd.losses import (
    adp_loss,
    ensemble_cross_entropy,
    gal_penalty,
    gradient_dispersion,
    pair_cosines,
    trs_similarity,
    trs_smoothness,
)


def reference_dispersion(grads: torch.Tensor) -> torch.Tensor:
    """sum_{i<j} mean_b cos(g_i[b], g_j[b]) with explicit loops; cos = 0 when either vector is zero."""
    k, b = grads.shape[:2]
    g = grads.reshape(k, b, -1)
    total = grads.new_zeros(())
    for i in range(k):
        for j in range(i + 1, k):
            per_sample = []
            for s in range(b):
                ni, nj = g[i, s].norm(), g[j, s].norm()
                if ni == 0 or nj == 0:
                    per_sample.append(grads.new_zeros(()))
                else:
                    per_sample.append((g[i, s] * g[j, s]).sum() / (ni * nj))
            total = total + torch.stack(per_sample).mean()
    return total


def polar(deg: float, r: float = 1.0) -> list[float]:
    return [r * math.cos(math.radians(deg)), r * math.sin(math.radians(deg))]


def test_gradient_dispersion_hand_values():
    # K = 3, B = 2, 2-D vectors.
    # sample 0: members at 0, 90, 180 degrees -> cos pairs (0,1)=0, (0,2)=-1, (1,2)=0
    # sample 1: members at 0 (length 3), 60 (length 2), zero vector -> (0,1)=0.5, (0,2)=0, (1,2)=0
    # pair (0,1): mean(0, 0.5) = 0.25; pair (0,2): mean(-1, 0) = -0.5; pair (1,2): 0 -> total -0.25
    grads = torch.tensor([
        [polar(0), polar(0, 3.0)],
        [polar(90), polar(60, 2.0)],
        [polar(180), [0.0, 0.0]],
    ], dtype=torch.float64)
    value = gradient_dispersion(grads)
    assert value.shape == ()
    assert value.item() == pytest.approx(-0.25, abs=1e-12)
    # two members only: pair (0,1) -> mean(0, 0.5) = 0.25
    assert gradient_dispersion(grads[:2]).item() == pytest.approx(0.25, abs=1e-12)
    # identical directions: every pair has cos 1 -> K(K-1)/2
    same = torch.tensor([[[1.0, 2.0]], [[2.0, 4.0]], [[0.5, 1.0]], [[3.0, 6.0]]], dtype=torch.float64)
    assert gradient_dispersion(same).item() == pytest.approx(6.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_gradient_dispersion_matches_reference_value_and_gradient(k):
    gen = torch.Generator().manual_seed(k)
    base = torch.randn(k, 4, 2, 3, 3, generator=gen, dtype=torch.float64)  # [K, B, C, H, W]
    g1 = base.clone().requires_grad_(True)
    g2 = base.clone().requires_grad_(True)
    value = gradient_dispersion(g1)
    expected = reference_dispersion(g2)
    torch.testing.assert_close(value, expected)
    # flattening [K, B, C, H, W] -> [K, B, C*H*W] gives the same value
    torch.testing.assert_close(gradient_dispersion(base.reshape(k, 4, -1)), expected)
    value.backward()
    expected.backward()
    torch.testing.assert_close(g1.grad, g2.grad)


def test_gradient_dispersion_zero_vectors_first_and_second_order_no_nan():
    # g = d/dtheta sum(theta^3)/3 = theta^2 (elementwise), built with create_graph like DEG's input gradients
    theta = torch.randn(3, 4, 5, dtype=torch.float64)
    theta[0, 1] = 0.0       # member 0, sample 1: zero gradient
    theta[2] = 0.0          # member 2: zero gradient on every sample
    theta.requires_grad_(True)
    (g,) = torch.autograd.grad((theta ** 3).sum() / 3, theta, create_graph=True)
    assert (g.reshape(3, 4, -1).norm(dim=-1) == 0).sum() == 5
    value = gradient_dispersion(g)
    assert torch.isfinite(value)
    torch.testing.assert_close(value.detach(), reference_dispersion(g.detach()))
    value.backward()
    assert theta.grad is not None and torch.isfinite(theta.grad).all()
    # an all-zero input: value 0, finite gradient
    z = torch.zeros(2, 3, 4, requires_grad=True)
    v0 = gradient_dispersion(z)
    assert v0.item() == 0.0
    v0.backward()
    assert torch.isfinite(z.grad).all()


def test_gradient_dispersion_second_order_through_network_with_zero_gradients():
    # g_k = d CE_k / dx through a ReLU layer; a dead member (zero weights) has g = 0 exactly.
    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (6,))
    weights = [torch.randn(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    with torch.no_grad():
        weights[1].zero_()
    grads = []
    for w in weights:
        (gx,) = torch.autograd.grad(F.cross_entropy(torch.tanh(x @ w), y), x, create_graph=True)
        grads.append(gx)
    value = gradient_dispersion(torch.stack(grads))
    assert torch.isfinite(value)
    value.backward()
    for w in weights:
        assert w.grad is not None and torch.isfinite(w.grad).all()
    assert weights[0].grad.abs().sum() > 0


def test_ensemble_cross_entropy_is_mean_of_member_ce():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, 7, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 7, (5,), generator=gen)
    expected = sum(F.cross_entropy(logits[k], y) for k in range(3)) / 3
    torch.testing.assert_close(ensemble_cross_entropy(logits, y), expected)
    # hand value: all-zero logits -> each CE = log(7)
    assert ensemble_cross_entropy(torch.zeros(2, 4, 7), y[:4]).item() == pytest.approx(math.log(7), rel=1e-6)


def reference_adp(logits: torch.Tensor, y: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """ADP per sample in a Python loop (Pang et al. 2019 / the seed's authors' code)."""
    k, b, l = logits.shape
    ce = sum(F.cross_entropy(logits[i], y) for i in range(k)) / k
    entropies, log_dets = [], []
    for s in range(b):
        probs = [logits[i, s].softmax(-1) for i in range(k)]
        mean = sum(probs) / k
        entropies.append(-(mean * torch.log(mean + 1e-20)).sum())
        keep = [c for c in range(l) if c != int(y[s])]
        cols = []
        for p in probs:
            v = p[keep]
            cols.append(v / v.norm())
        m = torch.stack(cols, dim=1)                       # [L-1, K]
        gram = m.T @ m + 1e-6 * torch.eye(k, dtype=logits.dtype)
        log_dets.append(torch.logdet(gram))
    return ce - alpha * torch.stack(entropies).mean() - beta * torch.stack(log_dets).mean()


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("alpha, beta", [(2.0, 0.5), (0.7, 1.3)])
def test_adp_loss_matches_reference(k, alpha, beta):
    gen = torch.Generator().manual_seed(10 * k)
    base = 2 * torch.randn(k, 6, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=gen)
    a = base.clone().requires_grad_(True)
    r = base.clone().requires_grad_(True)
    got = adp_loss(a, y, alpha, beta)
    expected = reference_adp(r, y, alpha, beta)
    torch.testing.assert_close(got, expected)
    got.backward()
    expected.backward()
    torch.testing.assert_close(a.grad, r.grad)


def test_adp_with_zero_weights_is_ece():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 5, 2, 5])
    torch.testing.assert_close(adp_loss(logits, y, 0.0, 0.0), ensemble_cross_entropy(logits, y))


def test_adp_hand_value_identical_members():
    # identical members -> Gram = all-ones (K x K) + 1e-6 I: eigenvalues K + 1e-6 and 1e-6 (K-1 times),
    # log det = log(K + 1e-6) + (K-1) log(1e-6). Uniform logits -> entropy log(L), CE log(L).
    k, l = 3, 5
    logits = torch.zeros(k, 2, l, dtype=torch.float64)
    y = torch.tensor([1, 4])
    log_det = math.log(k + 1e-6) + (k - 1) * math.log(1e-6)
    expected = math.log(l) - 2.0 * math.log(l) - 0.5 * log_det
    assert adp_loss(logits, y, 2.0, 0.5).item() == pytest.approx(expected, rel=1e-6)


def hand_grads() -> torch.Tensor:
    """K = 3, B = 2, 2-D: sample 0 at 0, 90, 180 degrees (unit length); sample 1 at 0 (length 3), 60 (length 2)
    and a zero vector. Cosines (0,1), (0,2), (1,2): sample 0 -> 0, -1, 0; sample 1 -> 0.5, 0, 0."""
    return torch.tensor([
        [polar(0), polar(0, 3.0)],
        [polar(90), polar(60, 2.0)],
        [polar(180), [0.0, 0.0]],
    ], dtype=torch.float64)


def test_pair_cosines_hand_values():
    cos = pair_cosines(hand_grads())
    torch.testing.assert_close(cos, torch.tensor([[0.0, 0.5], [-1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))


def test_gal_penalty_hand_values():
    # sample 0: log(e^0 + e^-1 + e^0); sample 1: log(e^0.5 + e^0 + e^0); mean of the two
    expected = (math.log(2 + math.exp(-1)) + math.log(2 + math.exp(0.5))) / 2
    value = gal_penalty(hand_grads())
    assert value.shape == ()
    assert value.item() == pytest.approx(expected, abs=1e-12)                 # ~1.078148
    # two members: one pair, log(exp cos) = cos: mean(0, 0.5)
    assert gal_penalty(hand_grads()[:2]).item() == pytest.approx(0.25, abs=1e-12)
    # the sign matters (GAL uses the signed cosine): opposite gradients -> log(e^-1) = -1
    opposite = torch.tensor([[[1.0, 0.0]], [[-2.0, 0.0]]], dtype=torch.float64)
    assert gal_penalty(opposite).item() == pytest.approx(-1.0, abs=1e-12)


def test_trs_similarity_hand_values():
    # |cos| per pair, batch mean: (0,1) -> mean(0, 0.5) = 0.25, (0,2) -> mean(1, 0) = 0.5, (1,2) -> 0; mean 0.25
    assert trs_similarity(hand_grads()).item() == pytest.approx(0.25, abs=1e-12)
    # the absolute value: opposite gradients are as similar as aligned ones
    opposite = torch.tensor([[[1.0, 0.0]], [[-2.0, 0.0]]], dtype=torch.float64)
    assert trs_similarity(opposite).item() == pytest.approx(1.0, abs=1e-12)


def test_trs_smoothness_hand_values():
    # squared norms: member 0 -> 1, 9; member 1 -> 1, 4; member 2 -> 1, 0; 2 * batch mean -> 10, 5, 1; mean 16/3
    assert trs_smoothness(hand_grads()).item() == pytest.approx(16 / 3, abs=1e-12)


def reference_pair_terms(grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(GAL penalty, TRS similarity) with explicit loops; cos = 0 when either vector is zero."""
    k, b = grads.shape[:2]
    g = grads.reshape(k, b, -1)
    gal, similarity = [], []
    for s in range(b):
        row = []
        for i in range(k):
            for j in range(i + 1, k):
                ni, nj = g[i, s].norm(), g[j, s].norm()
                row.append(grads.new_zeros(()) if ni == 0 or nj == 0 else (g[i, s] * g[j, s]).sum() / (ni * nj))
        row = torch.stack(row)
        gal.append(torch.log(row.exp().sum() + 1e-20))
        similarity.append(row.abs())
    return torch.stack(gal).mean(), torch.stack(similarity).mean()


@pytest.mark.parametrize("k", [2, 3, 5])
def test_gal_and_trs_match_reference_value_and_gradient(k):
    gen = torch.Generator().manual_seed(20 + k)
    base = torch.randn(k, 4, 2, 3, 3, generator=gen, dtype=torch.float64)
    base[1, 2] = 0.0  # one zero gradient
    for ours, index in ((gal_penalty, 0), (trs_similarity, 1)):
        a, r = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
        value, expected = ours(a), reference_pair_terms(r)[index]
        torch.testing.assert_close(value, expected)
        value.backward()
        expected.backward()
        # the zero vector is a kink (cos undefined): ours gives a finite subgradient there, the loop 0
        keep = torch.ones_like(base, dtype=torch.bool)
        keep[1, 2] = False
        torch.testing.assert_close(a.grad[keep], r.grad[keep])
        assert torch.isfinite(a.grad).all()


def test_peer_penalties_zero_gradients_and_second_order():
    # g = theta^2 elementwise (built with create_graph, like input gradients); zero rows for member 0, sample 1
    # and all of member 2; every penalty stays finite through the second-order backward
    for penalty in (gal_penalty, trs_similarity, trs_smoothness):
        theta = torch.randn(3, 4, 5, dtype=torch.float64)
        theta[0, 1] = 0.0
        theta[2] = 0.0
        theta.requires_grad_(True)
        (g,) = torch.autograd.grad((theta ** 3).sum() / 3, theta, create_graph=True)
        value = penalty(g)
        assert torch.isfinite(value), penalty.__name__
        value.backward()
        assert torch.isfinite(theta.grad).all() and theta.grad.abs().sum() > 0, penalty.__name__
    z = torch.zeros(2, 3, 4, requires_grad=True)
    assert gal_penalty(z).item() == pytest.approx(0.0, abs=1e-7)  # log(e^0) with one pair
    assert trs_similarity(z).item() == 0.0 and trs_smoothness(z).item() == 0.0
    (gal_penalty(z) + trs_similarity(z) + trs_smoothness(z)).backward()
    assert torch.isfinite(z.grad).all()


def test_peer_penalties_second_order_through_a_network():
    # g_k = d CE_k / dx through tanh layers; each penalty's gradient reaches every member's weights
    torch.manual_seed(1)
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (6,))
    for penalty in (gal_penalty, trs_similarity, trs_smoothness):
        weights = [torch.randn(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
        grads = [torch.autograd.grad(F.cross_entropy(torch.tanh(x @ w), y, reduction="sum"), x, create_graph=True)[0]
                 for w in weights]
        penalty(torch.stack(grads)).backward()
        for w in weights:
            assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0, penalty.__name__
