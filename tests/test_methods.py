"""Training methods: the registry, DEG's fused backward against a straightforward reference, every method
runs, and the paper's methods train as their plain reference written in the test."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pdd.losses import adp_loss, ensemble_cross_entropy
from pdd.methods import METHODS, LossSettings, TrainingMethod, get_method
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


def method_grads(model: Ensemble, name: str, settings: LossSettings, x, y) -> tuple[float, torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    loss, logits = get_method(name, settings).backward(model, x, y)
    return loss, logits, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("lam", [0.01, 1.0])
def test_deg_backward_matches_reference(k, lam):
    model = tiny_ensemble(k).double()
    ref_model = copy.deepcopy(model)
    x, y = batch(dtype=torch.float64)
    loss, logits, got = method_grads(model, "deg", LossSettings(deg_lambda=lam), x, y)
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
    _, _, g0 = method_grads(copy.deepcopy(model), "deg", LossSettings(deg_lambda=0.0), x, y)
    _, _, g1 = method_grads(copy.deepcopy(model), "deg", LossSettings(deg_lambda=1.0), x, y)
    _, _, gb = method_grads(copy.deepcopy(model), "baseline", LossSettings(), x, y)
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
    _, _, got = method_grads(model, "deg", LossSettings(deg_lambda=0.5), x, y)
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
    loss, _, got = method_grads(model, "pdd_deg", LossSettings(deg_lambda=1.0), x, y)
    torch.manual_seed(77)
    ref_loss, expected = reference_deg_grads(ref_model, 1.0, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-12)
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-7, atol=1e-10), name


def pdd_config(k: int) -> dict:
    return {"num_intervals": 10 if k < 5 else 20, "alpha": 0.9, "beta": 0.1}


PAPER_METHODS = ("baseline", "adp", "pdd", "deg", "pdd_deg", "advt_fgsm", "advt_fgsm_pdd", "advt_pgd", "advt_pgd_pdd")


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("name", PAPER_METHODS)
def test_every_paper_method_runs_one_step(name, k):
    method = get_method(name, LossSettings(adv_steps=2))
    model = tiny_ensemble(k, pdd_config(k) if method.uses_pdd else None).train()
    x, y = batch(n=4)
    model.zero_grad(set_to_none=True)
    loss, logits = method.backward(model, x, y)
    assert isinstance(loss, float) and torch.isfinite(torch.tensor(loss))
    assert logits.shape == (k, 4, 10) and not logits.requires_grad and torch.isfinite(logits).all()
    assert model.training  # adversarial crafting must restore train mode
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n
    assert any(p.grad.abs().sum() > 0 for p in model.heads.parameters())


def test_registry_knows_all_twelve_methods_and_their_ingredients():
    assert list(METHODS) == [*PAPER_METHODS, "gal", "trs", "dverge"]
    flags = {name: (m.pdd, m.deg, m.adp, m.adversarial) for name in METHODS for m in [get_method(name)]}
    assert flags["baseline"] == (False, False, False, None)
    assert flags["pdd_deg"] == (True, True, False, None)
    assert flags["adp"] == (False, False, True, None)
    assert flags["advt_fgsm_pdd"] == (True, False, False, "fgsm")
    assert flags["advt_pgd"] == (False, False, False, "pgd")
    assert all(flags[n] == (False, False, False, None) for n in ("gal", "trs", "dverge"))
    assert [n for n in METHODS if get_method(n).uses_pdd] == ["pdd", "pdd_deg", "advt_fgsm_pdd", "advt_pgd_pdd"]
    assert [n for n in METHODS if get_method(n).starts_from] == ["dverge"]
    assert get_method("dverge").starts_from == "baseline"
    for name in METHODS:  # every setting a method names exists; fresh instances, settings passed through
        method = get_method(name, LossSettings(gal_lambda=0.25))
        assert isinstance(method, TrainingMethod) and method is not get_method(name)
        assert set(method.settings_used) <= set(LossSettings.__dataclass_fields__)
        assert method.settings.gal_lambda == 0.25


def test_unknown_method_raises_listing_the_names():
    with pytest.raises(ValueError, match="unknown method 'nope'.*baseline.*gal, trs, dverge"):
        get_method("nope")


def test_loss_settings_reject_bad_values():
    with pytest.raises(ValueError, match="dverge_steps"):
        LossSettings(dverge_steps=0)
    with pytest.raises(ValueError, match="gal_lambda"):
        LossSettings(gal_lambda=-1.0)
    with pytest.raises(ValueError, match="trs_init_eps"):
        LossSettings(trs_init_eps=0.2, trs_adv_eps=0.1)


def reference_craft(model: Ensemble, x, y, attack: str, eps: float, steps: int) -> torch.Tensor:
    """Adversarial training's examples the plain way: FGSM (one step of eps) or PGD (random start, steps of
    eps/4), L-inf, on log(mean softmax), batch norm in eval mode."""
    model.eval()
    if attack == "fgsm":
        x_adv, steps, step = x.clone(), 1, eps
    else:
        x_adv, step = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1), eps / 4
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        log_mean = torch.log(torch.softmax(model(x_adv), dim=-1).mean(0))
        (grad,) = torch.autograd.grad(F.nll_loss(log_mean, y), x_adv)
        x_adv = torch.clamp(torch.clamp(x_adv.detach() + step * grad.sign(), x - eps, x + eps), 0, 1)
    model.train()
    return x_adv.detach()


def reference_step(name: str, model: Ensemble, opt, x, y, adv_steps: int) -> tuple[float, torch.Tensor]:
    """One SGD step of each paper method written out without the registry: the objective of DESIGN.md 4."""
    opt.zero_grad(set_to_none=True)
    if name in ("deg", "pdd_deg"):
        loss, _ = reference_deg_grads(model, LossSettings().deg_lambda, x, y)  # leaves the gradients in .grad
        opt.step()
        return loss, None
    n = len(y)
    if name.startswith("advt_"):
        x_adv = reference_craft(model, x, y, name.split("_")[1], LossSettings().adv_eps, adv_steps)
        x, y = torch.cat([x, x_adv]), torch.cat([y, y])
    logits = model(x)
    if name == "adp":
        objective = adp_loss(logits, y, 2.0, 0.5)
    else:  # L_ECE: the mean over members of each member's mean cross-entropy
        objective = torch.stack([F.cross_entropy(member, y) for member in logits]).mean()
    objective.backward()
    opt.step()
    return objective.item(), logits.detach()[:, :n]


@pytest.mark.parametrize("name", PAPER_METHODS)
def test_paper_methods_train_like_their_plain_reference(name):
    # Both computations run here, in float64, from the same weights and RNG state, so they agree to rounding
    # (1e-9 relative on losses, 1e-7 on weights after two SGD steps); no float recorded on another CPU.
    method = get_method(name, LossSettings(adv_steps=2))
    model = tiny_ensemble(3, pdd_config(3) if method.uses_pdd else None).double().train()
    ref_model, start = copy.deepcopy(model), copy.deepcopy(model)
    x, y = batch(dtype=torch.float64)

    def sgd(m):
        return torch.optim.SGD(m.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)

    opt, ref_opt = sgd(model), sgd(ref_model)
    for step in range(2):
        torch.manual_seed(123 + step)
        loss, logits = method.step(model, [opt], x, y)
        torch.manual_seed(123 + step)
        ref_loss, ref_logits = reference_step(name, ref_model, ref_opt, x, y, adv_steps=2)
        assert loss == pytest.approx(ref_loss, rel=1e-9, abs=1e-12), step
        if ref_logits is not None:
            assert torch.allclose(logits, ref_logits, rtol=1e-9, atol=1e-12), step
    for (n, p), ref in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert torch.allclose(p, ref, rtol=1e-7, atol=1e-10), n
    for (n, b), ref in zip(model.named_buffers(), ref_model.buffers(), strict=True):
        assert torch.allclose(b.double(), ref.double(), rtol=1e-7, atol=1e-10), n
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), start.parameters()))  # it trained
