"""Priority Diversified Dropouts (eq. 2): hand-worked keep rates, a per-sample loop reference, the module."""

from __future__ import annotations

import math

import pytest
import torch

from pdd.dropout import PriorityDiversifiedDropout, keep_probabilities

ALPHA, BETA = 0.8, 0.3  # distinct from the paper's 0.9 / 0.1 so a swapped alpha/beta cannot pass

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def reference_keep(features: torch.Tensor, k: int, m: int, alpha: float, beta: float) -> torch.Tensor:
    """Eq. 2, one sample and one unit at a time in plain Python (the official code's approach)."""
    b, kc = features.shape
    c = kc // k
    out = torch.empty(b, kc, dtype=torch.float64)
    for i in range(b):
        row = features[i].tolist()
        u, v = min(row), max(row)
        bins = [0 if v == u else min(int(math.floor((f - u) * m / (v - u))), m - 1) for f in row]
        counts = [bins.count(n) for n in range(m)]
        t = sorted(range(m), key=lambda n: (-counts[n], n))[:k]  # descending count, ties -> lower index
        for member in range(k):
            own = bins[member * c:(member + 1) * c]
            for j, n in enumerate(own):
                out[i, member * c + j] = alpha if n == t[member] else beta * (1 - own.count(n) / c)
    return out


# K = 2, C = 3, M = 3; member 0 owns columns 0-2, member 1 columns 3-5. a = ALPHA, b = BETA.
HAND_ROWS_K2 = [
    # u=0, v=3, m = floor(f*3/3) = floor(f), clamped: bins [0,1,2,2,0,2] (3 -> interval M-1 = 2).
    # counts [2,1,3] -> t_1 = 2, t_2 = 0. Member 0: bins [0,1,2], N = 1 each -> [b*2/3, b*2/3, a].
    # Member 1: bins [2,0,2], N_2 = 2, N_0 = 1, t_2 = 0 -> [b*(1-2/3), a, b*(1-2/3)].
    ([0.0, 1.0, 2.0, 3.0, 0.5, 2.5], [BETA * 2 / 3, BETA * 2 / 3, ALPHA, BETA / 3, ALPHA, BETA / 3]),
    # All counts tied: bins [0,0,1,1,2,2], counts [2,2,2] -> t_1 = 0, t_2 = 1 (lower index first).
    # Member 0: bins [0,0,1] -> [a, a, b*(1-1/3)]. Member 1: bins [1,2,2] -> [a, b*(1-2/3), b*(1-2/3)].
    ([0.0, 0.0, 1.0, 1.0, 2.0, 3.0], [ALPHA, ALPHA, BETA * 2 / 3, ALPHA, BETA / 3, BETA / 3]),
    # Tie for second place: bins [0,0,0,0,1,2], counts [4,1,1] -> t_1 = 0, t_2 = 1 (not 2).
    # Member 0: all in t_1 -> a. Member 1: bins [0,1,2], N = 1 each -> [b*2/3, a, b*2/3].
    ([0.0, 0.0, 0.0, 0.0, 1.0, 3.0], [ALPHA, ALPHA, ALPHA, BETA * 2 / 3, ALPHA, BETA * 2 / 3]),
    # Constant row (v == u): every unit in interval 0, counts [6,0,0] -> t_1 = 0, t_2 = 1.
    # Member 0 -> a; member 1 (N_0 = 3 = C, not in t_2) -> b*(1 - 3/3) = 0.
    ([5.0] * 6, [ALPHA, ALPHA, ALPHA, 0.0, 0.0, 0.0]),
    # Negative values, u = -1, v = 2: m = floor((f+1)*3/3) -> bins [0,2(clamped),1,0,0,2].
    # counts [3,1,2] -> t_1 = 0, t_2 = 2. Member 0: bins [0,2,1] -> [a, b*2/3, b*2/3].
    # Member 1: bins [0,0,2], N_0 = 2 -> [b/3, b/3, a].
    ([-1.0, 2.0, 0.5, -1.0, -1.0, 1.0], [ALPHA, BETA * 2 / 3, BETA * 2 / 3, BETA / 3, BETA / 3, ALPHA]),
]

# K = 3, C = 2, M = 4: only 2 intervals occupied (< K).
# u=0, v=1: m = floor(f*4) -> bins [0,0,0,3,3,3] (1 -> 4 clamped to 3). counts [3,0,0,3] ->
# t_1 = 0, t_2 = 3, t_3 = 1 (tie of empty intervals 1, 2 -> 1). Member 0: bins [0,0] -> [a, a].
# Member 1: bins [0,3], N = 1 each of C = 2 -> [b*(1-1/2), a]. Member 2: bins [3,3], t_3 = 1 -> b*(1-2/2) = 0.
HAND_ROW_K3 = ([0.0, 0.0, 0.0, 1.0, 1.0, 1.0], [ALPHA, ALPHA, BETA / 2, ALPHA, 0.0, 0.0])


def test_keep_probabilities_hand_worked_k2():
    x = torch.tensor([r for r, _ in HAND_ROWS_K2], dtype=torch.float64)
    expected = torch.tensor([e for _, e in HAND_ROWS_K2], dtype=torch.float64)
    got = keep_probabilities(x, 2, 3, ALPHA, BETA)
    assert got.shape == (len(HAND_ROWS_K2), 6)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # the hand values also pin down the loop reference used below
    torch.testing.assert_close(reference_keep(x, 2, 3, ALPHA, BETA), expected, rtol=0, atol=1e-12)


def test_keep_probabilities_hand_worked_fewer_occupied_than_k():
    x = torch.tensor([HAND_ROW_K3[0]], dtype=torch.float64)
    expected = torch.tensor([HAND_ROW_K3[1]], dtype=torch.float64)
    torch.testing.assert_close(keep_probabilities(x, 3, 4, ALPHA, BETA), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(reference_keep(x, 3, 4, ALPHA, BETA), expected, rtol=0, atol=1e-12)


def test_keep_probabilities_rows_are_independent_and_shift_invariant():
    # each row alone gives the same answer as inside the batch; adding a constant changes nothing
    x = torch.tensor([r for r, _ in HAND_ROWS_K2], dtype=torch.float64)
    batch = keep_probabilities(x, 2, 3, ALPHA, BETA)
    for i in range(len(x)):
        torch.testing.assert_close(keep_probabilities(x[i:i + 1], 2, 3, ALPHA, BETA), batch[i:i + 1])
    torch.testing.assert_close(keep_probabilities(x + 10.0, 2, 3, ALPHA, BETA), batch)


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("m", [10, 20])
@pytest.mark.parametrize("kind", ["normal", "relu", "coarse"])
def test_keep_probabilities_matches_loop_reference(k, m, kind):
    gen = torch.Generator().manual_seed(1000 * k + m)
    c = 16
    x = torch.randn(7, k * c, generator=gen, dtype=torch.float64)
    if kind == "relu":  # like real penultimate features: many exact zeros -> interval 0 dominates
        x = x.relu()
    elif kind == "coarse":  # few distinct values -> many tied counts
        x = torch.randint(0, 4, (7, k * c), generator=gen).double()
        x[0] = 2.0  # a constant row
    got = keep_probabilities(x, k, m, 0.9, 0.1)
    torch.testing.assert_close(got, reference_keep(x, k, m, 0.9, 0.1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("k, m", [(3, 3), (3, 2), (5, 5), (2, 1)])
def test_m_not_greater_than_k_raises(k, m):
    x = torch.randn(4, k * 8)
    with pytest.raises(ValueError):
        keep_probabilities(x, k, m, 0.9, 0.1)
    with pytest.raises(ValueError):
        PriorityDiversifiedDropout(k, m, 0.9, 0.1)


def test_module_eval_mode_is_identity():
    drop = PriorityDiversifiedDropout(3, 10, 0.9, 0.1).eval()
    x = torch.randn(5, 3 * 8)
    assert torch.equal(drop(x), x)


def test_module_train_mode_zero_or_input_and_gradient_is_mask():
    torch.manual_seed(0)
    drop = PriorityDiversifiedDropout(3, 10, 0.9, 0.1).train()
    x = (torch.rand(50, 3 * 16) + 0.5).requires_grad_(True)  # no zeros, so the mask is readable
    out = drop(x)
    assert out.shape == x.shape
    assert ((out == 0) | (out == x)).all()        # no rescaling
    mask = (out != 0).to(x.dtype)
    assert 0 < mask.mean() < 1                    # really random, not all kept / all dropped
    out.sum().backward()
    torch.testing.assert_close(x.grad, mask, rtol=0, atol=0)


def test_module_mask_frequencies_match_keep_rates():
    torch.manual_seed(1234)
    n = 20000
    rows = torch.tensor([r for r, _ in HAND_ROWS_K2], dtype=torch.float32) + 10.0  # shift: same bins, no zeros
    expected = torch.tensor([e for _, e in HAND_ROWS_K2], dtype=torch.float64)
    x = rows.repeat_interleave(n, dim=0)                                         # [5n, 6]
    drop = PriorityDiversifiedDropout(2, 3, ALPHA, BETA).train()
    out = drop(x)
    assert ((out == 0) | (out == x)).all()
    freq = (out != 0).double().view(len(rows), n, 6).mean(1)                     # [5, 6]
    tol = 5 * (expected * (1 - expected) / n).sqrt()
    assert ((freq - expected).abs() <= tol + 1e-12).all(), (freq, expected)
    assert (freq[expected == 0] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_are_kept(device, dtype):
    x = torch.tensor([r for r, _ in HAND_ROWS_K2], dtype=dtype, device=device)
    keep = keep_probabilities(x, 2, 3, ALPHA, BETA)
    assert keep.dtype == dtype and keep.device == x.device
    expected = torch.tensor([e for _, e in HAND_ROWS_K2], dtype=dtype, device=device)
    torch.testing.assert_close(keep, expected)
    drop = PriorityDiversifiedDropout(2, 3, ALPHA, BETA).train()
    out = drop(x + 10.0)
    assert out.dtype == dtype and out.device == x.device
