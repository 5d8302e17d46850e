"""Peer defences GAL, TRS and DVERGE: feature layers, distillation, the cross-member loss, the gradient-norm
attack, two training steps for several K, and DVERGE's start from a baseline with per-member optimisers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from pdd.cli import main as cli
from pdd.gradients import member_input_gradients
from pdd.losses import ensemble_cross_entropy, gal_penalty, trs_smoothness
from pdd.methods import LossSettings, get_method
from pdd.methods.dverge import (
    DVERGE,
    cross_member_losses,
    distill,
    draw_layer,
    target_indices,
)
from pdd.methods.trs import gradient_norm_pgd, trs_epsilon
from pdd.models import Ensemble, EnsembleSpec, read_checkpoint
from pdd.training import TrainConfig, train


def tiny(k: int = 3, arch: str = "resnet18", seed: int = 0, width: int = 2) -> Ensemble:
    torch.manual_seed(seed)
    return Ensemble(EnsembleSpec(arch, k, 10, 3, width=width))


def batch(n: int = 6, seed: int = 1, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=gen, dtype=dtype), torch.randint(0, 10, (n,), generator=gen)


def buffers(model: Ensemble) -> dict:
    return {n: b.clone() for n, b in model.named_buffers()}


# --- feature layers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch, layers", [("resnet18", 18), ("resnet34", 34), ("vgg16", 14)])
def test_member_feature_layers_and_logits(arch, layers):
    model = tiny(2, arch).eval()
    x, _ = batch(3)
    assert model.num_feature_layers() == layers      # ResNet: stem + 2 per block + logits; VGG: 13 BN + logits
    logits = model(x)
    for k in range(2):
        torch.testing.assert_close(model.member_feature(k, x, layers - 1), logits[k])
    first = model.member_feature(1, x, 0)
    assert first.shape[:2] == (3, 2) and (first < 0).any()        # width-2 first layer, pre-ReLU: negatives
    with pytest.raises(ValueError, match="out of range"):
        model.member_feature(0, x, layers)


def test_resnet_feature_layers_follow_the_blocks():
    model = tiny(2).eval()
    x, _ = batch(3)
    member = model.members[1]
    h = member.stem(x)
    torch.testing.assert_close(F.relu(model.member_feature(1, x, 0)), h)                     # stem, pre-ReLU
    for index, block in enumerate(member.layers):
        mid = model.member_feature(1, x, 1 + 2 * index)
        torch.testing.assert_close(mid, block.bn1(block.conv1(h)))                          # inside the block
        out = block(h)
        torch.testing.assert_close(F.relu(model.member_feature(1, x, 2 + 2 * index)), out)  # block output
        h = out
    # member 0's features are its own, not member 1's
    assert not torch.allclose(model.member_feature(0, x, 5), model.member_feature(1, x, 5))


# --- DVERGE ----------------------------------------------------------------------------------------------

def test_target_indices_are_a_derangement():
    torch.manual_seed(0)
    for b in (2, 3, 7, 64):
        t = target_indices(b)
        assert sorted(t.tolist()) == list(range(b))                    # a permutation: each image a target once
        assert (t != torch.arange(b)).all()                            # no image is its own target
    assert target_indices(1).tolist() == [0]
    seen = {tuple(target_indices(4).tolist()) for _ in range(200)}      # all 3! = 6 four-cycles occur
    assert len(seen) == 6


def test_draw_layer_is_seeded_per_epoch_and_uniformish():
    draws = [draw_layer(18, 0, e) for e in range(400)]
    assert draws == [draw_layer(18, 0, e) for e in range(400)]          # reproducible on resume
    assert set(draws) == set(range(18))
    assert draws != [draw_layer(18, 1, e) for e in range(400)]          # another seed, another sequence


@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("layer", [0, 7, 17])
def test_distillation_stays_in_the_ball_and_approaches_the_target_feature(layer, fuse):
    model = tiny(2).eval()
    model.fuse_members = fuse  # all members' distillation as one grouped network
    x, _ = batch(6)
    x_t = x[target_indices(6)]
    before = buffers(model)
    calls = []
    original = model.member_features
    model.member_features = lambda *a: calls.append(torch.is_grad_enabled()) or original(*a)
    eps, steps = 0.07, 10
    x_d = distill(model, layer, x, x_t, eps, 0.007, steps)
    del model.member_features
    assert calls == [False] + [True] * steps                            # target features once, without a graph
    assert x_d.shape == (2, *x.shape)                                   # one distilled batch per member
    assert (x_d - x).abs().max() <= eps + 1e-6 and x_d.min() >= 0 and x_d.max() <= 1
    assert not x_d.requires_grad
    with torch.no_grad():
        for k in range(2):
            wanted = model.member_feature(k, x_t, layer)
            dist = lambda z, k=k, wanted=wanted: (model.member_feature(k, z, layer) - wanted).square().flatten(1).sum(1)
            assert (dist(x_d[k]) < dist(x)).all()                       # every image moved towards its target
    assert all(p.grad is None for p in model.parameters())              # only the input gradient
    for n, b in buffers(model).items():
        assert torch.equal(b, before[n]), n                             # batch-norm statistics untouched


def reference_cross_member_losses(model: Ensemble, distilled: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The authors' loop: member i's loss = sum over j != i of CE(f_i(x'_j), y), one forward per (i, j)."""
    losses = []
    for i in range(model.num_members):
        loss = 0
        for j in range(model.num_members):
            if i != j:
                loss = loss + F.cross_entropy(model.heads[i](model.members[i](distilled[j])), y)
        losses.append(loss)
    return losses


@pytest.mark.parametrize("k", [2, 3, 4])
def test_member_never_trains_on_its_own_distilled_images(k):
    model = tiny(k).double().train()
    x, y = batch(5, dtype=torch.float64)
    distilled = torch.stack([(x + 0.01 * j).clamp(0, 1) for j in range(k)]).requires_grad_(True)
    reference = reference_cross_member_losses(copy.deepcopy(model), distilled.detach(), y)
    losses = cross_member_losses(model, distilled, y)
    torch.testing.assert_close(losses, torch.stack(reference).detach())
    for i in range(k):
        (grad,) = torch.autograd.grad(losses[i], distilled, retain_graph=True)
        per_source = grad.flatten(1).abs().sum(1)
        assert per_source[i] == 0                                       # x'_i never reaches member i's loss
        assert all(per_source[j] > 0 for j in range(k) if j != i)      # every other x'_j does


def test_dverge_trains_each_member_with_its_own_optimiser():
    k = 3
    model = tiny(k).train()
    method = get_method("dverge", LossSettings(dverge_steps=3))
    groups = method.parameter_groups(model)
    assert len(groups) == k
    ids = [id(p) for g in groups for p in g]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())     # a partition of the parameters
    assert {id(p) for p in groups[1]} == {id(p) for p in [*model.members[1].parameters(), *model.heads[1].parameters()]}
    x, y = batch(6)
    with pytest.raises(RuntimeError, match="start_epoch"):
        method.backward(model, x, y)
    method.start_epoch(model, 0, 10, seed=0)
    assert method.layer == draw_layer(18, 0, 0)
    # member 1's optimiser alone: only member 1 moves
    start = copy.deepcopy(model.state_dict())
    optimisers = [torch.optim.SGD(g, lr=0.1) for g in groups]
    for o in optimisers:
        o.zero_grad(set_to_none=True)
    method.backward(model, x, y)
    optimisers[1].step()
    moved = {n for n, v in model.state_dict().items() if v.is_floating_point() and "running" not in n
             and not torch.equal(v, start[n])}
    assert moved and all(n.startswith(("members.1.", "heads.1.")) for n in moved)


# --- TRS -------------------------------------------------------------------------------------------------

def smoothness_at(model: Ensemble, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    xs = x.unsqueeze(0).expand(model.num_members, *x.shape).clone().requires_grad_(True)
    _, _, grads = member_input_gradients(model, xs, y)
    return trs_smoothness(grads).item()


def test_trs_gradient_norm_attack_raises_the_gradient_norm():
    model = tiny(3).train()
    x, y = batch(8)
    before = buffers(model)
    torch.manual_seed(5)
    eps = 0.1
    x_adv = gradient_norm_pgd(model, x, y, eps, steps=6)
    assert model.training                                               # mode restored
    for n, b in buffers(model).items():
        assert torch.equal(b, before[n]), n                             # crafted in eval mode
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    torch.manual_seed(5)
    noise = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)  # the attack's random start alone
    clean, start, attacked = smoothness_at(model, x, y), smoothness_at(model, noise, y), smoothness_at(model, x_adv, y)
    assert attacked > 1.2 * max(clean, start)


def test_trs_epsilon_grows_linearly_to_adv_eps():
    assert trs_epsilon(0, 5, 0.01, 0.03) == pytest.approx(0.01)
    assert trs_epsilon(2, 5, 0.01, 0.03) == pytest.approx(0.02)
    assert trs_epsilon(4, 5, 0.01, 0.03) == pytest.approx(0.03)
    assert trs_epsilon(0, 1, 0.01, 0.03) == pytest.approx(0.01)
    method = get_method("trs", LossSettings(trs_init_eps=0.02, trs_adv_eps=0.06))
    method.start_epoch(tiny(2), 3, 7, seed=0)
    assert method.eps == pytest.approx(0.04)


def test_trs_with_zero_scale_is_the_ensemble_cross_entropy():
    model = tiny(3).double().train()
    ref = copy.deepcopy(model)
    x, y = batch(6, dtype=torch.float64)
    loss, _ = get_method("trs", LossSettings(trs_scale=0.0)).backward(model, x, y)
    objective = ensemble_cross_entropy(ref(x), y)
    objective.backward()
    assert loss == pytest.approx(objective.item(), rel=1e-12)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=n)


# --- GAL -------------------------------------------------------------------------------------------------

def test_gal_backward_matches_a_per_member_reference():
    lam = 0.5
    model = tiny(3).double().train()
    ref = copy.deepcopy(model)
    x, y = batch(6, dtype=torch.float64)
    loss, _ = get_method("gal", LossSettings(gal_lambda=lam)).backward(model, x, y)
    xr = x.clone().requires_grad_(True)
    logits = ref(xr)
    grads = torch.stack(
        [torch.autograd.grad(F.cross_entropy(logits[i], y), xr, create_graph=True)[0] for i in range(3)]
    )
    expected = ensemble_cross_entropy(logits, y) + lam * gal_penalty(grads)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-10)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-7, atol=1e-10, msg=n)


# --- every new method trains -----------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("name", ["gal", "trs", "dverge"])
def test_new_methods_train_two_steps(name, k):
    method = get_method(name, LossSettings(dverge_steps=2, trs_steps=2))
    model = tiny(k).train()
    start = copy.deepcopy(model.state_dict())
    optimisers = [torch.optim.SGD(g, lr=0.02, momentum=0.9, weight_decay=5e-4) for g in method.parameter_groups(model)]
    x, y = batch(6)
    method.start_epoch(model, 0, 2, seed=0)
    for _ in range(2):
        loss, logits = method.step(model, optimisers, x, y)
        assert isinstance(loss, float) and torch.isfinite(torch.tensor(loss))
        assert logits.shape == (k, 6, 10) and not logits.requires_grad and torch.isfinite(logits).all()
    assert model.training
    for n, p in model.named_parameters():
        assert torch.isfinite(p).all(), n
    for i in range(k):  # every member learned
        assert not torch.equal(model.state_dict()[f"heads.{i}.weight"], start[f"heads.{i}.weight"])


# --- DVERGE through train(): start from the baseline, resume with per-member optimisers ------------------

@pytest.fixture(scope="module")
def baseline_checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("baseline")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train(TrainConfig("digits", "baseline", 2, width=2, epochs=1), root, root / "base.pt", root / "log.csv")
    torch.set_num_threads(threads)
    return root / "base.pt"


def dverge_config(init_from: Path, **changes) -> TrainConfig:
    return TrainConfig("digits", "dverge", 2, width=2, epochs=2, init_from=str(init_from),
                       loss_settings=LossSettings(dverge_steps=2), **changes)


def test_dverge_config_needs_a_matching_baseline(baseline_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="give init_from"):
        TrainConfig("digits", "dverge", 2, width=2)
    with pytest.raises(ValueError, match="only for methods that start from"):
        TrainConfig("digits", "pdd", 2, width=2, init_from=str(baseline_checkpoint))
    with pytest.raises(ValueError, match=r"seed 0 \(need 3\)"):
        train(dverge_config(baseline_checkpoint, seed=3), tmp_path, tmp_path / "d.pt", tmp_path / "d.csv")
    result = CliRunner().invoke(cli, ["train", "--dataset", "digits", "--method", "dverge", "-k", "3", "--width", "2",
                                      "--epochs", "1", "--init-from", str(baseline_checkpoint), "--data-root",
                                      str(tmp_path), "--out", str(tmp_path / "c.pt"), "--log", str(tmp_path / "c.csv"),
                                      "--device", "cpu"])
    assert result.exit_code != 0 and "members 2 (need 3)" in result.output


def test_dverge_starts_from_the_baseline_and_resumes_to_the_same_result(baseline_checkpoint, tmp_path, monkeypatch):
    import pdd.training

    starts = []
    start_epoch = DVERGE.start_epoch

    def record_start(self, model, epoch, epochs, seed):
        starts.append(copy.deepcopy(model.state_dict()))
        start_epoch(self, model, epoch, epochs, seed)

    monkeypatch.setattr(DVERGE, "start_epoch", record_start)
    uninterrupted = train(dverge_config(baseline_checkpoint), tmp_path, tmp_path / "a.pt", tmp_path / "a.csv")
    monkeypatch.setattr(DVERGE, "start_epoch", start_epoch)
    assert uninterrupted["epoch"] == 2 and torch.isfinite(torch.tensor(uninterrupted["train_loss"]))
    base = read_checkpoint(baseline_checkpoint)["state_dict"]
    final = read_checkpoint(tmp_path / "a.pt")["state_dict"]
    assert len(starts) == 2 and all(torch.equal(starts[0][n], base[n]) for n in base)  # epoch 1 starts at the baseline
    assert any(not torch.equal(final[n], base[n]) for n in base)
    assert uninterrupted["test_accuracy"] > 0.5

    accuracy, calls = pdd.training.accuracy, []

    def interrupt_after_first_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return accuracy(*args, **kwargs)

    monkeypatch.setattr(pdd.training, "accuracy", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(dverge_config(baseline_checkpoint), tmp_path, tmp_path / "b.pt", tmp_path / "b.csv")
    state = read_checkpoint(tmp_path / "b.pt.state")
    assert len(state["log"]) == 1 and len(state["optimizer"]) == 2 and len(state["scheduler"]) == 2
    monkeypatch.setattr(pdd.training, "accuracy", accuracy)
    resumed = train(dverge_config(baseline_checkpoint), tmp_path, tmp_path / "b.pt", tmp_path / "b.csv")
    assert resumed["train_loss"] == uninterrupted["train_loss"]
    assert resumed["test_accuracy"] == uninterrupted["test_accuracy"]
    again = read_checkpoint(tmp_path / "b.pt")["state_dict"]
    for n in final:
        assert torch.equal(final[n], again[n]), n
