"""Training throughput options (channels-last, fused members): the same training as the default, to float rounding."""

from __future__ import annotations

import copy

import pytest
import torch

from pdd.devices import fuse_by_default
from pdd.methods import get_method
from pdd.models import Ensemble, EnsembleSpec, read_checkpoint
from pdd.training import TrainConfig, same_training, train

PDD = {"num_intervals": 10, "alpha": 0.9, "beta": 0.1}
METHODS = ["baseline", "pdd", "adp", "deg", "pdd_deg", "gal", "trs", "advt_pgd_pdd", "dverge"]


def run_steps(name: str, initial: Ensemble, x: torch.Tensor, y: torch.Tensor, channels_last: bool = False,
              fuse_members: bool = False, steps: int = 2) -> tuple[list[float], dict]:
    """`steps` training steps of `name` from `initial` (train mode, SGD of the recipe); losses and final state."""
    method = get_method(name)
    model = copy.deepcopy(initial)
    if method.uses_pdd:
        model.feature_dropout = Ensemble(EnsembleSpec(**{**initial.spec.__dict__, "pdd": PDD})).feature_dropout
    model.train()
    if channels_last:
        model.to(memory_format=torch.channels_last)  # as `train` does: the weights (images stay as loaded)
    model.fuse_members = fuse_members
    optimizers = [torch.optim.SGD(g, lr=0.02, momentum=0.9, weight_decay=5e-4) for g in method.parameter_groups(model)]
    torch.manual_seed(7)  # PDD's masks, PGD's random start, DVERGE's targets: the same draws in every run
    losses = []
    for epoch in range(steps):
        method.start_epoch(model, epoch, steps, 0)
        losses.append(method.step(model, optimizers, x, y)[0])
    return losses, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = Ensemble(EnsembleSpec("resnet18", 3, 10, 3, 4)).double()
    x, y = torch.rand(6, 3, 8, 8, dtype=torch.float64), torch.randint(10, (6,))
    return model, x, y


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("option", ["channels_last", "fuse_members"])
def test_option_trains_like_the_default(setup, name, option):
    # float64: both paths compute the same sums in another order (a grouped convolution instead of K, another
    # memory layout), so they differ by rounding, ~1e-16 relative per operation; 1e-9 after two steps with
    # second-order terms leaves a wide margin while any real difference (a member's weights or batch
    # statistics mixed up, a missed running-stat update) is of order 1.
    model, x, y = setup
    ref_losses, ref_state = run_steps(name, model, x, y)
    losses, state = run_steps(name, model, x, y, **{option: True})
    assert losses == pytest.approx(ref_losses, rel=1e-9)
    for key, value in ref_state.items():
        assert torch.allclose(state[key].to(value.dtype), value, rtol=1e-9, atol=1e-12), key


def test_fused_features_match_members_and_update_each_members_statistics(setup):
    model, x, _ = setup
    a, b = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    b.fuse_members = True
    per_member = torch.rand(3, *x.shape, dtype=x.dtype)
    for inputs in (x, per_member):
        assert torch.allclose(b.features(inputs), a.features(inputs), rtol=1e-12, atol=1e-12)
    # each member's own statistics moved, and differently (each saw its own features)
    means = [m.stem[1].running_mean for m in b.members]
    assert not torch.equal(means[0], means[1]) and not torch.equal(means[0], torch.zeros_like(means[0]))
    for ma, mb in zip(a.members, b.members, strict=True):
        for (name, ba), bb in zip(ma.named_buffers(), mb.buffers(), strict=True):
            assert torch.allclose(ba.to(torch.float64), bb.to(torch.float64), rtol=1e-12), name


def test_train_passes_the_options_to_the_model(tmp_path, monkeypatch):
    # The real `train` (digits, 1 epoch, width 2): the options reach the model, unset fuse_members means the
    # device's default, and the saved config records them. Whether the trained weights agree is not checked here:
    # in float32 a tiny member's ReLU kinks turn the paths' rounding (1e-7) into 1e-4 in one step and 0.3 after
    # an epoch (measured), for channels-last alone too; the float64 steps above and tests/test_fused.py's
    # accuracy comparison check the training itself.
    fused_calls = []
    original = Ensemble.fused_features
    monkeypatch.setattr(Ensemble, "fused_features", lambda self, x: fused_calls.append(1) or original(self, x))
    base = TrainConfig("digits", "baseline", 2, width=2, epochs=1, fuse_members=False)
    train(base, tmp_path, tmp_path / "a.pt", tmp_path / "a.csv")
    assert not fused_calls
    fast = TrainConfig(**{**base.__dict__, "channels_last": True, "fuse_members": True})
    train(fast, tmp_path, tmp_path / "b.pt", tmp_path / "b.csv")
    assert fused_calls  # the option reached the model
    b = read_checkpoint(tmp_path / "b.pt")
    assert b["train_config"]["fuse_members"] is True and b["train_config"]["channels_last"] is True
    assert set(b["state_dict"]) == set(read_checkpoint(tmp_path / "a.pt")["state_dict"])  # one checkpoint format
    fused_calls.clear()
    train(TrainConfig(**{**base.__dict__, "fuse_members": None}), tmp_path, tmp_path / "c.pt", tmp_path / "c.csv")
    assert bool(fused_calls) == fuse_by_default(torch.device("cpu"))  # unset: the device's default


def test_throughput_options_do_not_block_a_resume():
    cfg = TrainConfig("digits", "baseline", 2).__dict__
    assert same_training({**cfg, "fuse_members": True}, cfg)
    old = {k: v for k, v in cfg.items() if k not in ("channels_last", "fuse_members")}  # saved before they existed
    assert same_training(old, cfg)
    assert not same_training({**cfg, "lr": 0.1}, cfg) and not same_training(None, cfg)
    # precision changes the result: another one is another training; states saved before it existed were tf32
    assert not same_training({**cfg, "precision": "bf16"}, cfg)
    before = {k: v for k, v in cfg.items() if k != "precision"}
    assert same_training(before, cfg) and not same_training(before, {**cfg, "precision": "fp32"})
