"""Eq. 5, eq. 6 and the gradient angles against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from pdd.evaluation.diversity import (
    ambiguity_entropy,
    fisher_discrimination,
    input_gradients,
    pairwise_angles,
    scatter,
)
from pdd.models import Ensemble, EnsembleSpec


@pytest.mark.parametrize("correct, expected", [
    # K=3: l = 3, 1, 1, 0 -> min(l, 3-l) = 0, 1, 1, 0; K - ceil(K/2) = 1 -> mean 0.5
    ([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]], 0.5),
    # K=2: l = 2, 1, 0 -> 0, 1, 0; denominator 1 -> 1/3
    ([[1, 1, 0], [1, 0, 0]], 1 / 3),
    # K=5: l = 5, 4, 3, 2, 0 -> 0, 1, 2, 2, 0; denominator 5 - 3 = 2 -> (0 + .5 + 1 + 1 + 0) / 5
    ([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], 0.5),
])
def test_ambiguity_entropy_by_hand(correct, expected) -> None:
    assert ambiguity_entropy(torch.tensor(correct, dtype=torch.bool)) == pytest.approx(expected)


def test_ambiguity_entropy_extremes() -> None:
    assert ambiguity_entropy(torch.ones(3, 10, dtype=torch.bool)) == 0.0
    split = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=torch.bool)  # K=4: always 2 vs 2
    assert ambiguity_entropy(split) == pytest.approx(1.0)


def test_fisher_discrimination_by_hand() -> None:
    # member 0 activated {1, 3}: mu 2, var 1; member 1 activated {5, 7}: mu 6, var 1 -> (2-6)^2 / (1+1) = 8
    f = torch.tensor([[[1.0, 3.0, -1.0, 0.0]], [[5.0, 0.0, -2.0, 7.0]]])
    assert fisher_discrimination(f).tolist() == pytest.approx([8.0])
    # a third member with no activated unit adds no pair
    silent = torch.tensor([[[-1.0, 0.0, -3.0, 0.0]]])
    assert fisher_discrimination(torch.cat([f, silent])).tolist() == pytest.approx([8.0])
    # a third member {2, 4, 6}: mu 4, var 8/3 -> pairs (0,2): 4 / (1 + 8/3), (1,2): 4 / (1 + 8/3)
    third = torch.tensor([[[2.0, 4.0, 6.0, 0.0]]])
    assert fisher_discrimination(torch.cat([f, third])).item() == pytest.approx(8 + 2 * 4 / (1 + 8 / 3))


def test_fisher_discrimination_matches_a_loop_for_k5() -> None:
    torch.manual_seed(0)
    f = torch.randn(5, 6, 12, dtype=torch.float64)
    f[2, 3] = -1.0  # member 2 silent on image 3
    expected = []
    for n in range(6):
        total = 0.0
        for i in range(5):
            for j in range(i + 1, 5):
                a, b = f[i, n][f[i, n] > 0], f[j, n][f[j, n] > 0]
                if len(a) and len(b):
                    total += ((a.mean() - b.mean()) ** 2 / (a.var(unbiased=False) + b.var(unbiased=False))).item()
        expected.append(total)
    assert fisher_discrimination(f).tolist() == pytest.approx(expected)


def test_pairwise_angles_known_vectors() -> None:
    g = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])        # K=3, one image
    assert pairwise_angles(g)[:, 0].tolist() == pytest.approx([90.0, 45.0, 45.0])
    opposite = torch.tensor([[[1.0, 2.0]], [[-2.0, -4.0]]])
    assert pairwise_angles(opposite).item() == pytest.approx(180.0, abs=1e-3)
    zero = torch.tensor([[[0.0, 0.0]], [[3.0, 1.0]]])
    assert pairwise_angles(zero).item() == pytest.approx(90.0)
    v = torch.tensor([math.cos(math.radians(30)), math.sin(math.radians(30))])
    assert pairwise_angles(torch.stack([torch.tensor([[1.0, 0.0]]), v.view(1, 2)])).item() == pytest.approx(
        30.0, abs=1e-3
    )


def test_member_input_gradients_match_autograd_per_member() -> None:
    torch.manual_seed(0)
    model = Ensemble(EnsembleSpec("resnet18", 3, 10, 1, width=2)).eval()
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    grads = input_gradients(model, x, y)
    for k in range(3):
        xk = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xk)[k], y, reduction="sum")
        (expected,) = torch.autograd.grad(loss, xk)
        assert torch.allclose(grads[k], expected, atol=1e-6)


def test_scatter_by_hand() -> None:
    """Two members, one image: member 0 activated units (1, 3), member 1 (2, 6): mu 2 and 4, var 1 and 4, so
    S_b = (2 - 4)^2 = 4 and S_w = 1 + 4 = 5; a third member with no activated unit leaves its pairs out."""
    features = torch.tensor([[[1.0, 3.0, -1.0]], [[2.0, 6.0, 0.0]], [[-1.0, 0.0, -2.0]]])
    between, within = scatter(features)
    assert between.tolist() == pytest.approx([4.0]) and within.tolist() == pytest.approx([5.0])
    assert fisher_discrimination(features).tolist() == pytest.approx([0.8])
    none_valid = torch.tensor([[[-1.0]], [[-2.0]]])
    assert torch.isnan(scatter(none_valid)[0]).all()
