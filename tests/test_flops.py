"""FLOPs per pass, counted on the real code path, against hand formulas; hours and the projection rows."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pdd.evaluation import flops as F
from pdd.models import Ensemble, EnsembleSpec


def conv(cin: int, cout: int, k: int, h: int, w: int) -> int:
    """2 FLOPs per multiply-add: each of the cout*h*w outputs sums cin*k*k products."""
    return 2 * cin * cout * k * k * h * w


def resnet18_member(width: int, channels: int, size: int, classes: int) -> int:
    """One CIFAR-style ResNet-18 member's forward FLOPs per image, written out from the architecture: a 3x3
    stem, four stages of two BasicBlocks (the first block of stages 2-4 halves the side and has a 1x1
    projection shortcut), global pooling, a linear head."""
    total = conv(channels, width, 3, size, size)
    cin, side = width, size
    for stage in range(4):
        cout = width * 2**stage
        for block in range(2):
            stride = 2 if (stage > 0 and block == 0) else 1
            side_out = -(-side // stride)
            total += conv(cin, cout, 3, side_out, side_out) + conv(cout, cout, 3, side_out, side_out)
            if stride != 1 or cin != cout:
                total += conv(cin, cout, 1, side_out, side_out)
            cin, side = cout, side_out
    return total + 2 * cin * classes


def test_one_conv_layer_matches_the_hand_formula():
    layer = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    x = torch.rand(2, 16, 10, 10)
    assert F.count_flops(lambda: layer(x)) == 2 * conv(16, 32, 3, 10, 10)  # 2 images
    # 2*16*32*9*100 = 921,600 per image, by hand
    assert conv(16, 32, 3, 10, 10) == 921_600


@pytest.mark.parametrize("k,width,channels,size,classes", [(3, 4, 3, 32, 100), (5, 8, 1, 28, 10), (2, 4, 3, 9, 7)])
def test_ensemble_forward_is_k_members_written_out(k, width, channels, size, classes):
    spec = EnsembleSpec("resnet18", k, classes, channels, width)
    assert F.forward_flops(spec, size) == k * resnet18_member(width, channels, size, classes)


def test_counter_agrees_with_torchs_flop_counter_mode():
    # FlopCounterMode runs where no autograd.grad on a leaf is involved: a forward and a baseline step.
    spec = EnsembleSpec("resnet18", 2, 10, 3, 4)
    model = Ensemble(spec).train()
    x, y = torch.rand(2, 3, 12, 12), torch.randint(10, (2,))

    def step():
        nn.functional.cross_entropy(model(x).flatten(0, 1), y.repeat(2)).backward()

    with FlopCounterMode(display=False) as reference:
        step()
    assert F.count_flops(step) == reference.get_total_flops() > 0


@pytest.mark.parametrize("spec,size,gflop", [
    # the issue's sanity figures, printed to three significant figures: equal within half a unit of the last digit
    (EnsembleSpec("resnet18", 3, 100, 3, 64), 32, 3.33),
    (EnsembleSpec("resnet18", 5, 100, 3, 64), 32, 5.55),
    (EnsembleSpec("resnet18", 3, 200, 3, 64), 64, 13.3),
    (EnsembleSpec("resnet18", 3, 10, 1, 64), 28, 2.73),
    (EnsembleSpec("vgg16", 3, 100, 3, 64), 32, 1.88),
])
def test_paper_scale_forward_reproduces_the_issues_figures(spec, size, gflop):
    half_unit = 0.5 * 10 ** (math.floor(math.log10(gflop)) - 2)
    assert abs(F.forward_flops(spec, size) / 1e9 - gflop) <= half_unit


SMALL = EnsembleSpec("resnet18", 3, 10, 3, 4)


def stem(spec: EnsembleSpec, size: int) -> int:
    return spec.num_members * conv(spec.in_channels, spec.width, 3, size, size)


def test_attack_iteration_and_training_step_by_hand():
    fwd = F.forward_flops(SMALL, 12)
    # ART's loss_gradient: forward, then a backward filling the input's gradient (as costly as the forward)
    # and the weights' (as costly again): 3x the forward.
    assert F.attack_iteration_flops(SMALL, 12, "loss") == 3 * fwd
    # the class gradient takes the input gradient only: 2x.
    assert F.attack_iteration_flops(SMALL, 12, "class") == 2 * fwd
    # a baseline step: 3x the forward less the stem's input gradient (the images do not require grad);
    # the ledger counts one forward and one backward pass per image.
    flops, passes = F.train_step_measure("baseline", SMALL, 12)
    assert flops == 3 * fwd - stem(SMALL, 12) and passes == 2
    assert F.flops_per_pass("train:baseline", SMALL, 12) == flops / 2
    assert F.flops_per_pass("attack", SMALL, 12) == 1.5 * fwd
    # DEG differentiates its input gradients again: it costs more than a baseline step.
    assert F.train_step_flops("deg", SMALL, 12) > 1.5 * flops


def test_pdd_settings_do_not_change_the_count():
    with_pdd = EnsembleSpec("resnet18", 3, 10, 3, 4, {"num_intervals": 10, "alpha": 0.9, "beta": 0.1})
    assert F.forward_flops(with_pdd, 12) == F.forward_flops(SMALL, 12)


def test_peaks_and_hours_by_hand():
    assert F.peak("h200", "tf32") == 494.5e12  # the data sheet's 989 TFLOPS with sparsity, halved
    assert F.peak("a100", "bf16") == 312e12
    # 1e18 FLOPs at 494.5 TFLOP/s: 2022.245 s = 0.561735 h; at 40% utilisation 2.5x that.
    assert F.hours(1e18, "h200", "tf32") == pytest.approx(0.561735, rel=1e-5)
    assert F.hours(1e18, "h200", "tf32", utilisation=0.4) == pytest.approx(1.404338, rel=1e-5)
    assert F.hours(3.6e15, rate=1e12) == pytest.approx(1.0)
    assert F.passes_to_hours(1e6, 3.6e9, rate=1e12) == pytest.approx(1.0)
    assert set(F.PEAK_SOURCES) == set(F.PEAKS)
    for bad in [dict(device="v100", precision="tf32"), dict(device="tpu"), dict(precision="fp8"),
                dict(utilisation=0.0), dict(utilisation=1.5), dict(utilisation=math.nan), dict(rate=math.inf)]:
        with pytest.raises(ValueError):
            F.hours(1e15, **bad)
    with pytest.raises(ValueError):
        F.hours(math.nan)


def test_estimate_rows_and_total():
    rows = [F.CostRow("forward", 1000, SMALL, 12, "accuracy"), F.CostRow("attack", 500, SMALL, 12),
            F.CostRow("train:baseline", 200, SMALL, 12)]
    fwd = F.forward_flops(SMALL, 12)
    table = F.estimate(rows, "a100", "fp32")
    expected = [1000 * fwd, 500 * 1.5 * fwd, 200 * (3 * fwd - stem(SMALL, 12)) / 2]
    assert [r["name"] for r in table] == ["accuracy", "attack", "train:baseline", "total"]
    assert [r["flops"] for r in table[:3]] == pytest.approx(expected)
    assert table[-1]["flops"] == pytest.approx(sum(expected)) and table[-1]["image_passes"] == 1700
    assert table[-1]["hours"] == pytest.approx(sum(expected) / 19.5e12 / 3600)
    for kind, passes in [("train", 1), ("train:nope", 1), ("whitebox", 1), ("forward", math.nan), ("forward", -1)]:
        with pytest.raises(ValueError):
            F.CostRow(kind, passes, SMALL, 12)


def test_measured_peak_is_a_rate():
    rate = F.measured_peak("cpu", n=64, reps=2)
    assert math.isfinite(rate) and rate > 0
