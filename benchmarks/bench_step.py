"""Seconds per training step of each method, and the vectorised PDD keep rates vs a per-sample loop.

Run by hand (not collected by pytest), e.g.

    python benchmarks/bench_step.py --threads 2 --reps 20 --warmup 2   # ~90 s on 2 idle CPU cores

One training step = the method's `step` (zero_grad, loss + backward, optimizer step; SGD with the
official recipe's lr / momentum / weight decay; DVERGE one optimiser per member), timed by the same
`pdd.step_timing.time_methods` as the workflow's timing table: all methods train their own copy of the
SAME initial ensemble on the SAME batch, alternated round-robin after warm-up so that drifts of the
machine hit all alike; each round is an "epoch" for the methods' per-epoch state (untimed: DVERGE draws
a new distillation layer, whose depth sets its cost). Reported: median s/step, the ratio to baseline, and
the achieved FLOP/s: the step's FLOPs (`pdd.evaluation.flops`, counted on the same code; DVERGE's the mean
over its distillation layers) over its median time, also as a fraction of the machine's measured peak (a
2048^3 fp32 matmul timed in the same run, `pdd.evaluation.flops.measured_peak`).

    python benchmarks/bench_step.py --threads 2 --throughput --preset demo   # the training options

--throughput times every method in every variant, interleaved round by round on copies of the same ensemble:
the members in a loop and fused (`--fuse-members`: one grouped network, pdd.fused), each in every training
precision the device supports (CPU: fp32, bf16 autocast; tf32 is fp32 there; GPU: fp32, tf32, bf16), and with
`--channels-last` the loop with channels-last weights too. `--preset fashion_mnist` is Fashion-MNIST's step
(28x28x1, width 8, batch 128, as config/fashion_mnist_cpu.yaml trains).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pdd.devices import configure_backends
from pdd.dropout import keep_probabilities
from pdd.evaluation.flops import measured_peak, train_step_flops
from pdd.methods import LossSettings, get_method
from pdd.models import Ensemble, EnsembleSpec
from pdd.precision import PRECISIONS, training_autocast
from pdd.step_timing import sync, time_methods

METHOD_NAMES = ("baseline", "adp", "pdd", "deg", "pdd_deg", "gal", "trs", "dverge")
PRESETS = {
    # name: (description, width, channels, size, classes, members, batch)
    "cifar": ("ResNet-18 w16, 3x32x32, 100 classes", 16, 3, 32, 100, 3, 64),
    "demo": ("demo: ResNet-18 w8, 1x8x8, 10 classes", 8, 1, 8, 10, 3, 64),
    "fashion_mnist": ("Fashion-MNIST: ResNet-18 w8, 1x28x28, 10 classes", 8, 1, 28, 10, 3, 128),
}
PDD = {"num_intervals": 10, "alpha": 0.9, "beta": 0.1}


def time_preset(width, channels, size, classes, members, batch, device, warmup, reps, names, seed=0):
    """Median seconds per step of each method on one random batch (`pdd.step_timing.time_methods`)."""
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(batch, channels, size, size, generator=gen).to(device)
    y = torch.randint(0, classes, (batch,), generator=gen).to(device)
    spec = EnsembleSpec("resnet18", members, classes, channels, width=width)
    return time_methods(list(names), spec, PDD, LossSettings(), x, y, warmup, reps, seed=seed)


def precisions(device: torch.device) -> list[str]:
    """The training precisions `device` runs differently: tf32 only on a GPU (on a CPU it is fp32), bf16 where
    autocast supports it."""
    if device.type == "cuda":
        return ["fp32", "tf32"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    return ["fp32", "bf16"]


def variants(device: torch.device, channels_last: bool, only: list[str] | None = None) -> dict[str, dict]:
    """{label: TrainConfig-like flags} of every timed way to run a step (in the precisions `only`, else all)."""
    found = {}
    for precision in only or precisions(device):
        found[f"loop {precision}"] = {"fuse_members": False, "precision": precision}
        found[f"fused {precision}"] = {"fuse_members": True, "precision": precision}
        if channels_last:
            found[f"channels-last {precision}"] = {"fuse_members": False, "channels_last": True,
                                                   "precision": precision}
    return found


def time_options(names, spec, x, y, warmup, reps, options, seed=0) -> dict[tuple[str, str], float]:
    """Median s/step of every (option, method) of `options` x `names`, all from the same initial ensemble and
    batch, alternated round-robin (as `time_methods` alternates methods) so drifts of the machine hit all alike."""
    device = x.device
    torch.manual_seed(seed)
    initial = Ensemble(spec).state_dict()
    runs = {}
    for option, flags in options.items():
        for name in names:
            method = get_method(name, LossSettings())
            model = Ensemble(EnsembleSpec(**{**spec.__dict__, "pdd": dict(PDD) if method.uses_pdd else {}}))
            model.load_state_dict(initial)
            model.to(device).train()
            if flags.get("channels_last"):
                model.to(memory_format=torch.channels_last)
            model.fuse_members = flags["fuse_members"]
            optimizers = [torch.optim.SGD(g, lr=0.02, momentum=0.9, weight_decay=5e-4)
                          for g in method.parameter_groups(model)]
            runs[option, name] = (model, method, optimizers, flags["precision"])
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for round_ in range(warmup + reps):
        for key, (model, method, optimizers, precision) in runs.items():
            method.start_epoch(model, round_, warmup + reps, seed)
            configure_backends(device, training=True, precision=precision)
            sync(device)
            start = time.perf_counter()
            with training_autocast(device, precision):
                method.step(model, optimizers, x, y)
            sync(device)
            if round_ >= warmup:
                times[key].append(time.perf_counter() - start)
    return {key: statistics.median(t) for key, t in times.items()}


def print_throughput(names, med, options) -> None:
    """One row per method: s/step of every variant, and each variant's speed-up over the loop in fp32."""
    labels = list(options)
    print("| method | " + " | ".join(f"{o} s/step" for o in labels) + " | "
          + " | ".join(f"{o} speed-up" for o in labels[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(labels) - 1))
    for name in names:
        secs = [med[o, name] for o in labels]
        cells = [f"{t:.4f}" for t in secs] + [f"{secs[0] / t:.2f}x" for t in secs[1:]]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def keep_probabilities_loop(features: torch.Tensor, k: int, m: int, alpha: float, beta: float) -> torch.Tensor:
    """Eq. 2 with a Python loop over samples (and members / intervals inside), as the official code does."""
    b, kc = features.shape
    c = kc // k
    out = torch.empty_like(features)
    for i in range(b):
        row = features[i]
        u, v = row.min().item(), row.max().item()
        if v == u:
            bins = torch.zeros(kc, dtype=torch.long, device=row.device)
        else:
            bins = ((row - u) * m / (v - u)).floor().long().clamp(0, m - 1)
        counts = torch.bincount(bins, minlength=m).tolist()
        priority = sorted(range(m), key=lambda n: (-counts[n], n))[:k]
        for member in range(k):
            own = bins[member * c:(member + 1) * c]
            keep = torch.empty(c, dtype=features.dtype, device=features.device)
            for n in range(m):
                sel = own == n
                keep[sel] = alpha if n == priority[member] else beta * (1 - sel.sum().item() / c)
            out[i, member * c:(member + 1) * c] = keep
    return out


def time_keep_probabilities(batch, members, feature_dim, m, device, reps):
    gen = torch.Generator().manual_seed(3)
    f = torch.randn(batch, members * feature_dim, generator=gen).relu().to(device)
    fast = keep_probabilities(f, members, m, 0.9, 0.1)
    slow = keep_probabilities_loop(f, members, m, 0.9, 0.1)
    if not torch.allclose(fast, slow):
        raise RuntimeError("vectorised keep_probabilities disagrees with the per-sample loop")

    def med(fn, n):
        t = []
        for _ in range(n):
            sync(device)
            t0 = time.perf_counter()
            fn(f, members, m, 0.9, 0.1)
            sync(device)
            t.append(time.perf_counter() - t0)
        return statistics.median(t)

    return med(keep_probabilities, max(20, reps * 10)), med(keep_probabilities_loop, max(3, reps // 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=[*PRESETS, "all"], default="all")
    parser.add_argument("--width", type=int, help="override the preset's ResNet-18 width")
    parser.add_argument("--channels", type=int, help="override the preset's input channels")
    parser.add_argument("--size", type=int, help="override the preset's input height = width")
    parser.add_argument("--classes", type=int, help="override the preset's number of classes")
    parser.add_argument("--members", "-k", type=int, help="override the preset's K")
    parser.add_argument("--batch", type=int, help="override the preset's batch size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=7, help="timed round-robin rounds per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed round-robin rounds first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (0: leave as is)")
    parser.add_argument("--skip-dropout", action="store_true", help="skip the keep_probabilities timing")
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=list(METHOD_NAMES),
                        help="methods to time (baseline is always included: the ratios are to it)")
    parser.add_argument("--throughput", action="store_true",
                        help="time the members fused and not, in every precision the device supports")
    parser.add_argument("--channels-last", action="store_true", help="with --throughput: channels-last too")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS,
                        help="with --throughput: only these precisions (default: all the device supports)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    presets = list(PRESETS) if args.preset == "all" else [args.preset]
    options = variants(device, args.channels_last, args.precisions)
    peak = measured_peak(device, torch.float32)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"reps {args.reps} (after {args.warmup} warm-up rounds), PDD M={PDD['num_intervals']} "
          f"alpha={PDD['alpha']} beta={PDD['beta']}; measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s\n")

    for preset in presets:
        _, width, channels, size, classes, members, batch = PRESETS[preset]
        width = args.width or width
        channels = args.channels or channels
        size = args.size or size
        classes = args.classes or classes
        members = args.members or members
        batch = args.batch or batch
        title = (f"{preset}: ResNet-18 width {width}, {channels}x{size}x{size}, {classes} classes, "
                 f"batch {batch}, K={members}")
        start = time.perf_counter()
        names = ("baseline", *[n for n in args.methods if n != "baseline"])
        spec = EnsembleSpec("resnet18", members, classes, channels, width=width)
        if args.throughput:
            gen = torch.Generator().manual_seed(1)
            x = torch.rand(batch, channels, size, size, generator=gen).to(device)
            y = torch.randint(0, classes, (batch,), generator=gen).to(device)
            med = time_options(names, spec, x, y, args.warmup, args.reps, options)
            print(f"### {title}, members fused or not, per precision  ({time.perf_counter() - start:.0f} s)\n")
            print_throughput(names, med, options)
            continue
        step_flops = {name: train_step_flops(name, spec, size) * batch for name in names}
        med = time_preset(width, channels, size, classes, members, batch, device, args.warmup, args.reps, names)
        print(f"### {title}  ({time.perf_counter() - start:.0f} s)\n")
        print("| method | median s/step | ratio to baseline | GFLOP/step | GFLOP/s | fraction of peak |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in names:
            rate = step_flops[name] / med[name]
            print(f"| {name} | {med[name]:.4f} | {med[name] / med['baseline']:.2f} | {step_flops[name] / 1e9:.2f} "
                  f"| {rate / 1e9:.1f} | {rate / peak:.2f} |")
        print()

    if not args.skip_dropout:
        members = args.members or 3
        feature_dim = 512
        fast, slow = time_keep_probabilities(64, members, feature_dim, PDD["num_intervals"], device, args.reps)
        print(f"### PDD keep rates, features [64, {members}*{feature_dim}], M={PDD['num_intervals']}\n")
        print("| implementation | median s/call | speed-up |")
        print("|---|---:|---:|")
        print(f"| per-sample Python loop | {slow:.5f} | 1.0 |")
        print(f"| pdd.dropout.keep_probabilities (vectorised) | {fast:.5f} | {slow / fast:.0f}x |")


if __name__ == "__main__":
    main()
