"""Training methods: the registry, DEG's fused backward against a straightforward reference, every method
runs, and the paper's methods train bit-identically to the code before the registry."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pdd.losses import ensemble_cross_entropy
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


# Recorded from the code before the method registry (commit 32b3787: `backward_step(model, Method, Hyper(adv_steps=2),
# x, y)` between SGD zero_grad / step), one CPU thread: per method, after two steps on the fixed tiny ensemble and
# batch below: (losses, sums of the returned clean logits, sum of all parameters, sum of all buffers,
# heads[0].weight[0, :3]). The registry must reproduce them exactly.
BEFORE_REGISTRY = {
    'baseline': (
        [2.5408897399902344, 2.435814380645752],
        [13.014161240309477, 18.125818978995085],
        464.725553014925,
        494.9831209311378,
        [-0.2208327203989029, 0.1746334582567215, -0.1532939374446869],
    ),
    'adp': (
        [-1.164963960647583, -1.010714054107666],
        [13.014161240309477, 14.593698490411043],
        465.68920713962507,
        495.1926395272603,
        [-0.22066856920719147, 0.1771644651889801, -0.15048642456531525],
    ),
    'pdd': (
        [2.208695411682129, 2.2208423614501953],
        [5.889565913937986, -0.2139906552620232],
        464.7247558332957,
        495.0550603852025,
        [-0.21858999133110046, 0.17690683901309967, -0.15157446265220642],
    ),
    'deg': (
        [2.5401802710443735, 2.443878670707345],
        [13.014161240309477, 17.9222107026726],
        464.9846423883526,
        494.9902903191396,
        [-0.2208571881055832, 0.1746109575033188, -0.15329505503177643],
    ),
    'pdd_deg': (
        [2.20898860136047, 2.2412425684928894],
        [5.889565913937986, -3.820020371116698],
        464.73288227808996,
        495.05807348061353,
        [-0.21858587861061096, 0.17690683901309967, -0.15157468616962433],
    ),
    'advt_fgsm': (
        [2.54526424407959, 2.54221510887146],
        [12.715516030788422, 14.678251698613167],
        463.18693528082883,
        494.09661903532105,
        [-0.2210925966501236, 0.17421595752239227, -0.15304742753505707],
    ),
    'advt_fgsm_pdd': (
        [2.2740659713745117, 2.3215529918670654],
        [6.636248290538788, 5.574899254832417],
        464.548298328668,
        494.2667154837982,
        [-0.21854813396930695, 0.17646992206573486, -0.15159720182418823],
    ),
    'advt_pgd': (
        [2.515911102294922, 2.2289628982543945],
        [13.956132307648659, 8.079899384640157],
        464.93484390791946,
        494.30800488499517,
        [-0.22099289298057556, 0.17439167201519012, -0.15336787700653076],
    ),
    'advt_pgd_pdd': (
        [2.2835195064544678, 2.339808702468872],
        [6.066096777096391, 2.4193403655663133],
        464.52037808954543,
        494.0492645158374,
        [-0.21889612078666687, 0.17654918134212494, -0.15160199999809265],
    ),
}


@pytest.mark.parametrize("name", PAPER_METHODS)
def test_paper_methods_are_bit_identical_to_before_the_registry(name):
    method = get_method(name, LossSettings(adv_steps=2))
    torch.manual_seed(0)
    model = tiny_ensemble(3, pdd_config(3) if method.uses_pdd else None).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    x, y = batch()
    torch.manual_seed(123)
    losses, logit_sums = [], []
    for _ in range(2):
        loss, logits = method.step(model, [opt], x, y)
        losses.append(loss)
        logit_sums.append(logits.double().sum().item())
    params = sum(p.double().sum() for p in model.parameters()).item()
    buffers = sum(b.double().sum() for b in model.buffers()).item()
    assert (losses, logit_sums, params, buffers, model.heads[0].weight[0, :3].tolist()) == BEFORE_REGISTRY[name]
