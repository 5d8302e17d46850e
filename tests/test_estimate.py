"""The projection's FLOPs and hours (`pdd estimate`): FLOPs counted with the passes against hand-worked counts and
against `pdd.evaluation.flops` on the same code, hours by hand, the stored measurements and the command."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import nn

import pdd.estimate as P
from pdd.cli import main
from pdd.evaluation import flops as F
from pdd.evaluation.attacks import predict
from pdd.plan import config as plan
from pdd.training import ensemble_spec

from conftest import REPO

DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def test_measure_counts_flops_of_a_tiny_model_by_hand():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    linear = nn.Linear(5, 4)
    x, z = torch.rand(2, 2, 4, 4), torch.rand(2, 5)
    # conv: each of the 3*4*4 outputs sums 2*3*3 products: 2 FLOPs x 2*3*9*16 = 1,728 per image
    assert P.measure(lambda: conv(x), images=2) == P.Passes(0, 0, 0, 1728)
    # linear 5 -> 4: 2 x 5*4 = 40 forward; backward to the weights only (z needs no gradient) 40 more: 80 per
    # image; the bias and the sum are not counted (elementwise).
    assert P.measure(lambda: linear(z).sum().backward(), images=2).flops == 80


def test_passes_arithmetic_and_line_carry_flops():
    a, b = P.Passes(1, 2, 0.5, 100), P.Passes(3, 4, 0, 10)
    assert a + b == P.Passes(4, 6, 0.5, 110) and b - a == P.Passes(2, 2, -0.5, -90)
    assert a * 3 == P.Passes(3, 6, 1.5, 300)
    # passes and FLOPs 7 + 5 s at s iterations: the line through s = 1 and 2 gives back 7 and 5
    intercept, slope = P.line(lambda s: P.Passes(2 + 2 * s, 1 + s, 0, 7 + 5 * s))
    assert intercept == P.Passes(2, 1, 0, 7) and slope == P.Passes(2, 1, 0, 5)


def test_bench_flops_equal_flops_module_on_the_same_code():
    """Two independent counts of one job kind: the projection's (with the passes, through the config's
    mapping) and `pdd.evaluation.flops`' (its own model and images) of a baseline step and of a prediction."""
    torch.set_num_threads(1)
    bench = P.Bench(DEMO, 2)
    step = bench.train_step("digits", "resnet18", 3, "baseline", None)
    spec = ensemble_spec(plan.train_config(DEMO, "digits", 3, "baseline", 0, "resnet18"))
    assert (step.flops, step.total) == F.train_step_measure("baseline", spec, 8)
    model = bench.model("digits", "resnet18", 3)
    x, _ = bench.batch("digits")
    assert P.measure(lambda: predict(model, x, P.CPU), 2).flops == F.forward_flops(spec, 8)


def test_train_row_flops_follow_the_passes_arithmetic():
    class Stub:
        def train(self, dataset, arch, k, method):
            return P.Passes(1, 1, 0, 300.0), P.Passes(1, 0, 0, 100.0), "measured", None

    cfg = plan.train_config(DEMO, "digits", 3, "baseline", 0, "resnet18")
    (row,) = P.train_rows(Stub(), DEMO, [{"dataset": "digits", "arch": "resnet18", "K": 3, "method": "baseline"}] * 2)
    per_epoch = 1437 // cfg.batch_size * cfg.batch_size  # digits: 1,437 training images, the last batch dropped
    assert row.jobs == 2 and row.flops_per_job == cfg.epochs * (per_epoch * 300 + 360 * 100)
    assert row.flops == 2 * row.flops_per_job and row.total == 2 * cfg.epochs * (per_epoch * 2 + 360)


def test_totals_and_hours_by_hand():
    """Training at the training precision's peak, every other job at the FP32 peak (attacks run in full fp32)."""
    hour_at_peak = 494.5e12 * 3600  # one hour of the H200's dense TF32 peak (989 TFLOP/s with sparsity, halved)
    fp32_hour = 67e12 * 3600  # one hour of its FP32 peak (67 TFLOP/s, data sheet)
    rows = [P.Row("train", "a", 2, 10, "", flops_per_job=hour_at_peak),
            P.Row("whitebox", "b", 1, 30, "", flops_per_job=2 * fp32_hour, saving_per_job=6)]
    rates = [P.Rate(), P.Rate("h200", "tf32", 0.25), P.Rate(rate=1e12)]
    table = P.totals(rows, rates)
    assert [t["rule"] for t in table] == ["train", "whitebox", "all"]
    assert [t["image_passes"] for t in table] == [20, 30, 50] and [t["jobs"] for t in table] == [2, 1, 3]
    flops = 2 * hour_at_peak + 2 * fp32_hour
    assert [t["share"] for t in table] == pytest.approx([2 * hour_at_peak / flops, 2 * fp32_hour / flops, 1.0])
    # train 2 h at TF32, white-box 2 h at FP32, all 4 h; a quarter of the peaks: 16 h; at 1 TFLOP/s all FLOPs
    assert table[-1]["hours"] == pytest.approx([4, 16, flops / 1e12 / 3600])
    assert table[0]["hours"] == pytest.approx([2, 8, 989]) and table[1]["hours"] == pytest.approx([2, 8, 134])
    text = P.markdown(rows, rates)
    # 6 of the 50 passes expected to be skipped: 44, -12.0%
    assert "| **all** | **3** | **50** | **44 (-12.0%)** | **4.04e18** | **100.0%** | **4** | **16** | **1.12e+03** |" \
        in text
    assert "at 0.25 x the H200 peaks (training TF32 494.5, the rest FP32 67 TFLOP/s)" in text
    assert "at a measured 1,000 GFLOP/s" in text
    assert P.Rate("h200", "bf16").hours(hour_at_peak, "train") == pytest.approx(989 / 1979)  # the BF16 peak
    assert P.Rate("h200", "bf16").hours(fp32_hour, "strong") == pytest.approx(1)
    for bad in [dict(device="tpu"), dict(device="v100", precision="tf32"), dict(utilisation=math.nan),
                dict(utilisation=1.5), dict(rate=0.0), dict(rate=math.inf)]:
        with pytest.raises(ValueError):
            P.Rate(**bad)


def test_narrow_measurements_equal_the_real_width_ones():
    """Measured once at width 3 with every operator's FLOPs scaled to the real width 8, every kind of
    measurement (a plain step; second-order steps (DEG, TRS); inner steps and uncounted distillation passes
    (DVERGE); ADP's Gram matrix; an attack through a surrogate; the strong evaluation's blocks; diversity; the
    timing round) equals the measurement at width 8 exactly. C&W's line search depends on the model: its FLOPs
    agree per pass, its passes are the narrow model's."""
    torch.set_num_threads(1)
    config = copy.deepcopy(DEMO)
    config["surrogates"]["adaptive"]["width"] = 8  # every arch at width 8: one width step of 8 (the demo's is 4)
    narrow, full = P.Bench(config, 2, narrow_from=4), P.Bench(config, 2, narrow=False)
    assert narrow.width_step == 8 and narrow.narrow_step("digits")[0] == 3  # 1 channel
    plan.register_methods(config)
    for measure in (lambda b: b.train("digits", "resnet18", 3, "baseline"),
                    lambda b: b.train("digits", "resnet18", 2, "deg"),
                    lambda b: b.train("digits", "resnet18", 2, "trs"),
                    lambda b: b.train("digits", "resnet18", 2, "dverge"),
                    lambda b: b.train("digits", "resnet18", 3, "adp"),
                    lambda b: b.attack("digits", 2, "pgd", "vgg16"),
                    lambda b: b.strong_blocks("digits", 2, False),
                    lambda b: b.diversity("digits", 2),
                    lambda b: b.time_steps("digits", "resnet18", 2, ["baseline", "pdd_deg"])):
        assert measure(narrow) == measure(full)
    assert narrow.full_width == [] and full.full_width == []
    cw_narrow, cw_full = narrow.attack("digits", 2, "cw"), full.attack("digits", 2, "cw")
    for part in ("c0", "per_search", "per_iteration"):
        assert cw_narrow[part].backward == cw_full[part].backward
    step = narrow.train("digits", "resnet18", 3, "baseline")[0]
    narrow._step_at = 3
    assert narrow.model("digits", "resnet18", 3).spec.width == 3 and narrow.width("vgg16") == 3
    assert step.flops > 0


def test_prefetch_takes_every_measurement_in_worker_processes(tmp_path):
    """`requests` lists every measurement the rows take (after `prefetch` in 2 processes, `project` measures
    nothing more), the rows equal those measured one after another here, and the store keeps each one."""
    torch.set_num_threads(1)  # the workers' thread count: the same float kernels, the same data-dependent loops
    config = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    plan.register_methods(config)
    serial = P.Bench(config, 2)
    expected = P.project(config, serial)
    parallel = P.Bench(config, 2, store=P.Store(tmp_path / "m.json"))
    P.prefetch(parallel, config, P.jobs_of(config), 2)
    assert parallel.processes_used == 2 and set(parallel.cache) == set(serial.cache)
    parallel.seconds.clear()
    assert P.project(config, parallel, 2) == expected and not parallel.seconds  # nothing measured again
    assert len(P.Store(tmp_path / "m.json").entries) == len(serial.cache)
    again = P.Bench(config, 2, store=P.Store(tmp_path / "m.json"))
    P.prefetch(again, config, P.jobs_of(config), 2)  # all stored: nothing to measure, no process started
    assert again.processes_used == 1 and again.reused == len(serial.cache) and not again.seconds


def test_strong_formula_equals_the_strong_evaluation_itself():
    """The strong evaluation's passes and FLOPs composed from its measured blocks (`strong_formula`) equal what
    `evaluate` itself spends at 1-2 steps, restarts, targets, mixes and queries (the check --details prints)."""
    torch.set_num_threads(1)
    composed, direct = P.Bench(DEMO, 2).strong_blocks("digits", 3, True)["check"]
    assert composed.forward == direct.forward and composed.backward == direct.backward
    assert composed.flops == pytest.approx(direct.flops, rel=1e-12) and direct.total > 0


def test_width_scale_by_hand():
    """A 3x3 convolution 4 -> 8 channels (narrow) stands for 64 -> 128 (real): its FLOPs, forward and backward,
    times 64 * 128 / 32; a linear head 32 -> 10 for 512 -> 10: times 16; a product on no weight keeps its FLOPs;
    the narrow step is the first above the images per measurement with unambiguous shapes (3 for 1-channel
    images, 4 for 3-channel ones)."""
    scale = P.WidthScale.between([(8, 4, 3, 3), (10, 32)], [(128, 64, 3, 3), (10, 512)])
    conv, linear = torch.nn.Conv2d(4, 8, 3, stride=2, bias=False), torch.nn.Linear(32, 10)
    x, z = torch.rand(2, 4, 7, 7, requires_grad=True), torch.rand(2, 32)
    with F.FlopCounter(scale) as counter:
        conv(x).sum().backward()
    assert counter.total == 3 * (2 * 2 * 8 * 4 * 9 * 3 * 3) * 64 * 128 // 32  # forward, input and weight grads
    with F.FlopCounter(scale) as counter:  # a double backward: the weight gradient's convolution is [4, 8, 4, 4]
        (g,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
        g.square().sum().backward()
    with F.FlopCounter() as narrow:
        (g,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
        g.square().sum().backward()
    assert counter.total == narrow.total * 64 * 128 // 32
    with F.FlopCounter(scale) as counter:
        linear(z).sum().backward()
    assert counter.total == 2 * (2 * 2 * 32 * 10) * 16  # forward and weight grad (z needs no gradient)
    with F.FlopCounter(scale) as counter:
        torch.rand(2, 3, 9) @ torch.rand(2, 9, 3)
    assert counter.total == 2 * 2 * 3 * 9 * 3
    with pytest.raises(P.WidthDependent), F.FlopCounter(scale):
        torch.nn.functional.conv2d(torch.rand(1, 1, 5, 5), torch.rand(3, 1, 3, 3))
    wide = copy.deepcopy(DEMO)
    for spec in [wide["model"], *wide["surrogates"].values()]:
        spec["width"] = 64
    assert P.Bench(wide, 2).narrow_step("fashion_mnist")[0] == 3 and P.Bench(wide, 2).narrow_step("cifar10")[0] == 4
    # 4 images: from step 5, where 2 x 5 channels would pass for the 10 classes
    assert P.Bench(wide, 4).narrow_step("fashion_mnist")[0] == 6
    assert P.WidthScale.between(P.parameter_shapes("cifar10", "resnet18", 3),
                                P.parameter_shapes("cifar10", "resnet18", 64)) is None  # 3 channels in, 3 out


def test_store_keeps_measurements_for_the_same_code_and_inputs(tmp_path):
    path, calls = tmp_path / "m.json", []

    def compute():
        calls.append(1)
        return P.Passes(1, 2, 0, 3.0), {"pgd": (P.Passes(0, 1), P.Passes(2, 2, 0, 5.0))}, "measured", None

    first = P.Bench(DEMO, 2, store=P.Store(path)).cached(("train", "x"), compute, ("width", 8))
    again = P.Bench(DEMO, 2, store=P.Store(path))
    assert again.cached(("train", "x"), compute, ("width", 8)) == first and len(calls) == 1 and again.reused == 1
    P.Bench(DEMO, 2, store=P.Store(path)).cached(("train", "x"), compute, ("width", 16))  # other inputs: again
    P.Bench(DEMO, 4, store=P.Store(path)).cached(("train", "x"), compute, ("width", 8))  # other images: again
    assert len(calls) == 3
    stored = json.loads(path.read_text())
    stored["code"] = "other code"
    path.write_text(json.dumps(stored))
    assert P.Store(path).entries == {}  # another code version: nothing is reused
    path.write_text("not json")
    assert P.Store(path).entries == {}


@pytest.fixture
def captured(monkeypatch) -> dict:
    seen: dict = {}

    def report(config, name, rates, images, store, show_details, narrow, processes):
        seen.update(config=config, rates=list(rates), images=images, store=store, details=show_details,
                    narrow=narrow, processes=processes)
        return "the table"

    monkeypatch.setattr(P, "report", report)
    return seen


def test_estimate_command_builds_the_rates(captured, tmp_path):
    demo = str(REPO / "config" / "demo.yaml")
    result = CliRunner().invoke(main, ["estimate", "--configfile", demo, "--device", "a100", "--dtype", "bf16",
                                       "--utilisation", "0.4", "--rate", "2e13", "--cache", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "the table"
    assert captured["rates"] == [P.Rate("a100", "bf16"), P.Rate("a100", "bf16", 0.4), P.Rate(rate=2e13)]
    assert captured["store"] == str(tmp_path / "c.json") and captured["config"] == DEMO
    assert captured["narrow"] and 1 <= captured["processes"] <= 8
    result = CliRunner().invoke(main, ["estimate", "--configfile", demo, "--no-cache", "--details", "--full-width",
                                       "--processes", "3"])
    assert captured["store"] is None and captured["details"] and captured["rates"] == [P.Rate()]
    assert not captured["narrow"] and captured["processes"] == 3
    bf16 = tmp_path / "bf16.yaml"  # the training peak follows the config's training.precision unless given
    bf16.write_text(yaml.safe_dump({**DEMO, "training": {**DEMO["training"], "precision": "bf16"}}))
    assert CliRunner().invoke(main, ["estimate", "--configfile", str(bf16)]).exit_code == 0
    assert captured["rates"] == [P.Rate("h200", "bf16")]
    CliRunner().invoke(main, ["estimate", "--configfile", str(bf16), "--precision", "fp32"])
    assert captured["rates"] == [P.Rate("h200", "fp32")]


@pytest.mark.parametrize("args,message", [
    (["--device", "tpu"], "unknown device 'tpu'"), (["--dtype", "fp8"], "unknown precision 'fp8'"),
    (["--utilisation", "0"], "--utilisation"), (["--utilisation", "nan"], "got NaN"),
    (["--rate", "inf"], "got infinity"), (["--images", "3"], "must be even"), (["--processes", "0"], "--processes"),
    (["--configfile", "nowhere.yaml"], "nowhere.yaml"),
])
def test_estimate_command_refuses_bad_values(captured, args, message):
    result = CliRunner().invoke(main, ["estimate", "--configfile", str(REPO / "config" / "demo.yaml"), *args])
    assert result.exit_code == 2 and message in result.output and not captured


def test_estimate_command_refuses_an_invalid_config(captured, tmp_path):
    bad = dict(DEMO, model={"arch": "resnet18", "width": -1})
    path = Path(tmp_path / "bad.yaml")
    path.write_text(yaml.safe_dump(bad))
    result = CliRunner().invoke(main, ["estimate", "--configfile", str(path)])
    assert result.exit_code == 2 and "invalid config" in result.output and "width" in result.output


def test_cw_early_abort_scales_the_iterations_by_the_measured_share():
    """With `cw_abort_early` the C&W iterations' passes are the measured share of the full loop's (the largest
    on/off ratio in cw_abort.json, worked out here from its counts); the summary gives the hours without and
    with the abort at the H200's and the H100's peaks."""
    from pdd.estimate import render, rows
    from pdd.settings.attacks import AttackSettings

    measured = json.loads((REPO / "pdd" / "estimate" / "cw_abort.json").read_text())["passes"]
    rest = max(m["on"] / m["off"] for m in measured.values())
    assert rows.CW_ABORT_REST == rest and 0 < rest < 1

    class Stub:
        def attack(self, dataset, k, attack, surrogate=None):
            return {"c0": P.Passes(2, 0, 0, 20.0), "per_search": P.Passes(1, 0, 0, 10.0),
                    "per_iteration": P.Passes(3, 2, 0, 50.0)}

    off = AttackSettings(cw_max_iter=100, cw_binary_search_steps=5)
    on = AttackSettings(cw_max_iter=100, cw_binary_search_steps=5, cw_abort_early=True)
    full, _, _ = P.attack_passes(Stub(), "digits", 3, "cw", 0.1, off)
    aborted, text, note = P.attack_passes(Stub(), "digits", 3, "cw", 0.1, on)
    assert full.flops == 20 + 5 * (10 + 100 * 50) and full.total == 2 + 5 * (1 + 100 * 5)
    assert aborted.flops == pytest.approx(20 + 5 * (10 + 100 * rest * 50))
    assert "(early abort)" in text and "bench_cw_abort.py" in note
    hour = 67e12 * 3600  # an hour at the FP32 peak, where attacks run (H200 and H100 alike)
    table = [P.Row("whitebox", "cw", 1, 1, "", flops_per_job=hour, abort_flops_per_job=3 * hour)]
    summary = render.abort_summary(table, P.Rate())
    assert "75.0% saved" in summary and summary.count("4 h -> 1 h") == 2 and "H100" in summary
    assert render.abort_summary([P.Row("whitebox", "cw", 1, 1, "", flops_per_job=hour)], P.Rate()) == ""
