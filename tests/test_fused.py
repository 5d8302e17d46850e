"""The K members run as one grouped network (`Ensemble.fuse_members`, pdd.fused) against the loop over members.

Exactness is checked in float64: both paths compute the same sums in another order (one grouped convolution
instead of K), so they differ by rounding, ~1e-16 relative per operation and ~1e-13 through a ResNet-34 and a
second-order backward; 1e-9 leaves a wide margin while any real difference (a member's weights, statistics or
random draws mixed up) is of order 1e-2 and up.
"""

from __future__ import annotations

import copy

import pytest
import torch

from pdd.dropout import keep_probabilities
from pdd.gradients import member_input_gradients, replicate
from pdd.losses import gradient_dispersion
from pdd.methods import LossSettings, get_method
from pdd.models import ARCHITECTURES, Ensemble, EnsembleSpec, checkpoint, ensemble_from_checkpoint, read_checkpoint
from pdd.training import TrainConfig, train

TOL = {"rtol": 1e-9, "atol": 1e-11}


def pair(arch: str, k: int, pdd: bool = True) -> tuple[Ensemble, Ensemble]:
    """The same float64 ensemble twice (tiny width, PDD layer with M = 2K), the second one fused, in train mode."""
    torch.manual_seed(k)
    spec = EnsembleSpec(arch, k, 5, 3, 2, {"num_intervals": 2 * k, "alpha": 0.9, "beta": 0.1} if pdd else {})
    loop = Ensemble(spec).double().train()
    fused = copy.deepcopy(loop)
    fused.fuse_members = True
    return loop, fused


def batch(k: int, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + k)
    return torch.rand(n, 3, 8, 8, generator=gen, dtype=torch.float64), torch.randint(5, (n,), generator=gen)


CASES = [(arch, k) for arch in ARCHITECTURES for k in (2, 3, 5)]


@pytest.mark.parametrize(("arch", "k"), CASES)
def test_member_logits_and_pdd_draws_match(arch, k):
    loop, fused = pair(arch, k)
    x, _ = batch(k)
    for inputs in (x, torch.rand(k, *x.shape, dtype=x.dtype)):  # shared, and one input per member (DEG, DVERGE)
        for mode in (True, False):
            loop.train(mode), fused.train(mode)
            torch.manual_seed(1)  # PDD's Bernoulli draws: the same stream for both
            expected = loop(inputs)
            torch.manual_seed(1)
            got = fused(inputs)
            assert got.shape == (k, len(x), 5)
            assert torch.allclose(got, expected, **TOL), (mode, inputs.dim())
            assert torch.allclose(fused.features(inputs), loop.features(inputs), **TOL)


@pytest.mark.parametrize(("arch", "k"), CASES)
def test_pdd_masks_match_given_the_same_features_and_draws(arch, k):
    loop, fused = pair(arch, k)
    x, _ = batch(k, 8)
    member = loop.features(x)                                      # [K, B, C], K separate members
    concatenated = member.transpose(0, 1).reshape(len(x), -1)      # PDD's [B, K*C]
    features = fused.fused_features(x)
    assert torch.allclose(features, concatenated, **TOL)
    masks = []
    for f in (concatenated, features):
        torch.manual_seed(2)
        masks.append(torch.bernoulli(keep_probabilities(f, k, 2 * k, 0.9, 0.1)))
    assert torch.equal(masks[0], masks[1])
    assert 0 < masks[0].mean() < 1  # a real draw, neither all kept nor all dropped


@pytest.mark.parametrize(("arch", "k"), CASES)
def test_deg_loss_and_input_gradients_match(arch, k):
    loop, fused = pair(arch, k, pdd=False)
    x, y = batch(k)
    results = []
    for model in (loop, fused):
        xs = replicate(x, k)
        logits, total, grads = member_input_gradients(model, xs, y)
        penalty = gradient_dispersion(grads)
        (total + penalty).backward()  # second order, as DEG
        results.append((total, grads, penalty, [p.grad for p in model.parameters()]))
    (ta, ga, pa, wa), (tb, gb, pb, wb) = results
    assert torch.allclose(tb, ta, **TOL) and torch.allclose(pb, pa, **TOL)
    assert torch.allclose(gb, ga, **TOL)
    assert all(torch.allclose(b, a, **TOL) for a, b in zip(wa, wb, strict=True))
    assert ga.abs().max() > 0 and pa != 0


@pytest.mark.parametrize(("arch", "k"), CASES)
def test_batchnorm_statistics_and_weights_after_a_training_step(arch, k):
    loop, fused = pair(arch, k)
    x, y = batch(k)
    method = get_method("pdd_deg")
    states = []
    for model in (loop, fused):
        optimizers = [torch.optim.SGD(g, lr=0.1, momentum=0.9) for g in method.parameter_groups(model)]
        torch.manual_seed(3)
        method.step(model, optimizers, x, y)
        states.append(model.state_dict())
    for key, value in states[0].items():
        assert torch.allclose(states[1][key].double(), value.double(), **TOL), key
    means = [states[1][f"members.{i}.{'stem.1' if arch != 'vgg16' else 'layers.1'}.running_mean"] for i in range(k)]
    assert not torch.equal(means[0], means[1]) and means[0].abs().max() > 0  # each member's own, and updated
    assert all(states[1][f"members.{i}.{'stem.1' if arch != 'vgg16' else 'layers.1'}.num_batches_tracked"] == 1
               for i in range(k))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_dverge_layer_features_match(arch):
    loop, fused = pair(arch, 3)
    loop.eval(), fused.eval()  # as DVERGE distils
    xs = torch.rand(3, *batch(3)[0].shape, dtype=torch.float64)
    last = loop.num_feature_layers() - 1
    for layer in sorted({0, 1, 2, last // 2, last - 1, last}):
        expected = loop.member_features(xs, layer)
        assert torch.allclose(fused.member_features(xs, layer), expected, **TOL), layer
        assert torch.allclose(expected[1], loop.member_feature(1, xs[1], layer), **TOL)
    with pytest.raises(ValueError, match="out of range"):
        fused.member_features(xs, last + 1)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_fused_model_saves_and_loads_as_the_per_member_one(arch):
    loop, fused = pair(arch, 3)
    x, y = batch(3)
    method = get_method("pdd")
    optimizers = [torch.optim.SGD(fused.parameters(), lr=0.1)]
    method.step(fused, optimizers, x, y)  # trained fused: weights and statistics moved
    saved = checkpoint(fused)
    assert list(saved["state_dict"]) == list(loop.state_dict())   # the per-member layout, key for key
    loaded = ensemble_from_checkpoint(saved).eval()  # float32, as every checkpoint loads
    assert loaded.fuse_members is False
    # float32 weights on both sides, one fused, one a loop: rounding ~1e-7 of logits of order 0.1-1
    expected = copy.deepcopy(fused).float().eval()(x.float())
    assert torch.allclose(loaded(x.float()), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(loaded(x.float()), loop.float().eval()(x.float()), rtol=1e-3)  # the step is in it


SETTINGS = LossSettings(trs_steps=2, dverge_steps=3, adv_steps=2)  # the inner loops shortened: seconds per run
# Loop vs fused after these 3 epochs, measured: deg 0.0, pdd_deg 0.3, baseline 0.6, pdd 0.8, dverge 0.8, adp 1.1,
# gal 2.2, advt_pgd_pdd 5.0, trs 6.7 points. Another CPU's kernels round differently, so the margin is set by
# how far another seed lands (the float32 trajectories part as seeds do): baseline 92.2-93.3%, gal 91.9-94.4% over
# seeds 0-2, but TRS 58.6-80.0% and PGD training 68.1-81.4%, still far from converged after 3 short epochs.
MARGIN = {"trs": 0.25, "advt_pgd_pdd": 0.25}
DEFAULT_MARGIN = 0.08


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Test accuracy after 3 demo-style epochs (digits, width 4, K = 2, lr 0.1, batch 128), loop and fused."""
    root = tmp_path_factory.mktemp("fused_training")

    def run(method: str, fuse: bool, seed: int = 0) -> float:
        start = str(root / "baseline_False_0.pt") if method == "dverge" else None
        cfg = TrainConfig("digits", method, 2, width=4, epochs=3, lr=0.1, batch_size=128, seed=seed,
                          loss_settings=SETTINGS, fuse_members=fuse, init_from=start)
        out = root / f"{method}_{fuse}_{seed}.pt"
        if not out.exists():
            train(cfg, root, out, out.with_suffix(".csv"))
        return read_checkpoint(out)["log"][-1]["test_accuracy"]

    return run


@pytest.mark.parametrize("name", ["baseline", "pdd", "adp", "deg", "pdd_deg", "gal", "trs", "dverge", "advt_pgd_pdd"])
def test_fused_training_reaches_the_loops_accuracy(trained, name):
    # In float32 the two paths' rounding (1e-7) is amplified by ReLU kinks and PDD's intervals into another
    # trajectory (like another seed), so the comparison is of accuracy within a margin, not of weights.
    loop, fused = trained(name, False), trained(name, True)
    assert loop > 0.5  # trained: chance is 0.1
    assert abs(fused - loop) <= MARGIN.get(name, DEFAULT_MARGIN), (loop, fused)
