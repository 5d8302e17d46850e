"""Training methods: DEG's fused backward against a straightforward reference; every method runs."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pdd.losses import ensemble_cross_entropy
from pdd.methods import METHODS, Hyper, backward_step, get_method
from pdd.models import Ensemble, EnsembleSpec


def tiny_ensemble(k: int, pdd: dict | None = None, seed: int = 0, num_classes: int = 10) -> Ensemble:
    torch.manual_seed(seed)
    return Ensemble(EnsembleSpec("resnet18", k, num_classes, 3, width=2, pdd=pdd or {}))


def batch(n: int = 6, seed: int = 1, dtype=torch.float32, num_classes: int = 10):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=gen, dtype=dtype), torch.randint(0, num_classes, (n,), generator=gen)


def reference_deg_grads(model: Ensemble, lam: float, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict]:
    """Eq. 3-4 the plain way: shared x, one input gradient per member (summed CE), explicit cosines."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    logits = model(x)                                                      # [K, B, L], normal forward
    k = logits.shape[0]
    grads = [
        torch.autograd.grad(F.cross_entropy(logits[i], y, reduction="sum"), x, create_graph=True)[0].flatten(1)
        for i in range(k)
    ]
    penalty = 0
    for i in range(k):
        for j in range(i + 1, k):
            cos = (grads[i] * grads[j]).sum(1) / (grads[i].norm(dim=1) * grads[j].norm(dim=1))
            penalty = penalty + cos.mean()
    loss = ensemble_cross_entropy(logits, y) + lam * penalty
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def method_grads(model: Ensemble, name: str, hyper: Hyper, x, y) -> tuple[float, torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    loss, logits = backward_step(model, get_method(name), hyper, x, y)
    return loss, logits, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("lam", [0.01, 1.0])
def test_deg_backward_matches_reference(k, lam):
    model = tiny_ensemble(k).double()
    ref_model = copy.deepcopy(model)
    x, y = batch(dtype=torch.float64)
    loss, logits, got = method_grads(model, "deg", Hyper(deg_lambda=lam), x, y)
    ref_loss, expected = reference_deg_grads(ref_model, lam, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-12)
    assert logits.shape == (k, len(y), 10) and not logits.requires_grad
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-7, atol=1e-10), name


def test_deg_penalty_reaches_every_member_and_lambda_zero_is_baseline():
    k = 3
    model = tiny_ensemble(k).double()
    x, y = batch(dtype=torch.float64)
    _, _, g0 = method_grads(copy.deepcopy(model), "deg", Hyper(deg_lambda=0.0), x, y)
    _, _, g1 = method_grads(copy.deepcopy(model), "deg", Hyper(deg_lambda=1.0), x, y)
    _, _, gb = method_grads(copy.deepcopy(model), "baseline", Hyper(), x, y)
    for name in gb:  # lambda = 0 -> exactly the L_ECE gradient
        assert torch.allclose(g0[name], gb[name], rtol=1e-9, atol=1e-12), name
    for i in range(k):  # the penalty changes the gradient of each member's convolution weights and head
        conv = [n for n in g1 if n.startswith(f"members.{i}.") and n.endswith("conv1.weight")]
        assert conv and any(not torch.allclose(g1[n], g0[n], rtol=1e-6, atol=1e-10) for n in conv)
        head = f"heads.{i}.weight"
        assert not torch.allclose(g1[head], g0[head], rtol=1e-6, atol=1e-10)


def test_deg_reference_and_fused_agree_with_pdd_off_in_float32():
    model = tiny_ensemble(2)
    ref_model = copy.deepcopy(model)
    x, y = batch()
    _, _, got = method_grads(model, "deg", Hyper(deg_lambda=0.5), x, y)
    _, expected = reference_deg_grads(ref_model, 0.5, x, y)
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-3, atol=1e-5), name


def test_pdd_deg_matches_reference_with_the_same_dropout_mask():
    # same RNG state before the forward -> same features -> same Bernoulli draws in both computations
    k = 3
    model = tiny_ensemble(k, {"num_intervals": 10, "alpha": 0.9, "beta": 0.1}).double()
    ref_model = copy.deepcopy(model)
    x, y = batch(dtype=torch.float64)
    torch.manual_seed(77)
    loss, _, got = method_grads(model, "pdd_deg", Hyper(deg_lambda=1.0), x, y)
    torch.manual_seed(77)
    ref_loss, expected = reference_deg_grads(ref_model, 1.0, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-12)
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-7, atol=1e-10), name


def pdd_config(k: int) -> dict:
    return {"num_intervals": 10 if k < 5 else 20, "alpha": 0.9, "beta": 0.1}


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_one_step(name, k):
    method = METHODS[name]
    model = tiny_ensemble(k, pdd_config(k) if method.pdd else None).train()
    x, y = batch(n=4)
    model.zero_grad(set_to_none=True)
    loss, logits = backward_step(model, method, Hyper(adv_steps=2), x, y)
    assert isinstance(loss, float) and torch.isfinite(torch.tensor(loss))
    assert logits.shape == (k, 4, 10) and not logits.requires_grad and torch.isfinite(logits).all()
    assert model.training  # adversarial crafting must restore train mode
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n
    assert any(p.grad.abs().sum() > 0 for p in model.heads.parameters())


def test_unknown_method_raises():
    with pytest.raises(ValueError):
        get_method("nope")
