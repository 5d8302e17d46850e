"""Paper-scale figures on one device: training-step seconds per method at K = 3 and 5, attack images per second
at 100 classes, and peak memory, on CIFAR-100-shaped synthetic data (3x32x32, ResNet-18 width 64 by default).

Run by hand on a GPU (not collected by pytest), e.g.

    python benchmarks/bench_gpu.py --device cuda            # a few minutes on a modern card
    python benchmarks/bench_gpu.py --device cpu --width 8 --reps 2 --images 16 --cw-iterations 2   # smoke run

Training steps are timed with `pdd.step_timing.time_methods` (methods interleaved, median); attacks run through
`pdd.evaluation.attacks.generate` (ART on log(mean softmax), our one-backward class_gradient) with the paper's settings
except the iteration counts of JSMA and C&W, which are scaled down and reported per iteration. Peak memory is
`pdd.evaluation.cost_meter.CostMeter`'s (GPU: torch.cuda.max_memory_allocated; CPU: process RSS).

Efficiency: each step's and each attack's FLOPs (`pdd.evaluation.flops`, counted on the same code) over its time,
as GFLOP/s and as a fraction of the card's measured peak: a large matmul timed in the same run under the same
numerics as the job (training: TF32 allowed; attacks: full fp32, `pdd.devices.configure_backends`). The members fused
and not, in every training precision the device supports, and channels-last, are timed per method
(`bench_step.time_options`, interleaved); speed-ups are over the member loop in fp32.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import torch

from pdd.devices import configure_backends
from pdd.evaluation.attacks import AttackSettings, generate
from pdd.evaluation.cost_meter import CostMeter
from pdd.evaluation.flops import count_flops, measured_peak, train_step_flops
from pdd.methods import LossSettings
from pdd.models import Ensemble, EnsembleSpec
from pdd.step_timing import time_methods

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_step import print_throughput, time_options, variants  # noqa: E402

METHODS = ("baseline", "adp", "pdd", "deg", "pdd_deg", "gal", "trs", "dverge")
ATTACKS = {"fgsm": 0.02, "bim": 0.02, "pgd": 0.02, "pgd_l2": 0.4, "jsma": 0.01, "cw": 0.01}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="training batch (the paper's 64)")
    parser.add_argument("--reps", type=int, default=10, help="timed steps per method")
    parser.add_argument("--images", type=int, default=500, help="attacked images (the paper's batch of 500)")
    parser.add_argument("--cw-iterations", type=int, default=20, help="C&W iterations (paper 1000)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput options' table")
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{date.today()}, {name}, torch {torch.__version__}, ResNet-18 width {args.width}, 3x32x32, 100 classes\n")

    configure_backends(device, training=True)
    train_peak = measured_peak(device, torch.float32)
    print(f"measured matmul peak, training numerics (TF32 allowed on a GPU): {train_peak / 1e12:.2f} TFLOP/s\n")
    print("| K | method | s/step | ratio | GFLOP/step | TFLOP/s | of peak | peak memory (MB) |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|")
    for k in (3, 5):
        configure_backends(device, training=True)
        spec = EnsembleSpec("resnet18", k, 100, 3, args.width)
        x = torch.rand(args.batch, 3, 32, 32, generator=gen).to(device)
        y = torch.randint(0, 100, (args.batch,), generator=gen).to(device)
        pdd = {"num_intervals": 10 if k == 3 else 20, "alpha": 0.9, "beta": 0.1}
        with CostMeter(device=device) as cost:
            medians = time_methods(args.methods, spec, pdd, LossSettings(), x, y, warmup=2, reps=args.reps)
        memory = cost["peak_gpu_mb"] if cost["peak_gpu_mb"] is not None else cost["peak_rss_mb"]
        for method, seconds in medians.items():
            flops = train_step_flops(method, spec, 32) * args.batch
            print(f"| {k} | {method} | {seconds:.4f} | {seconds / medians[args.methods[0]]:.2f} | {flops / 1e9:.1f} "
                  f"| {flops / seconds / 1e12:.2f} | {flops / seconds / train_peak:.3f} | {memory:.0f} |")
        if not args.no_throughput:
            options = variants(device, channels_last=True)
            med = time_options(args.methods, spec, x, y, 2, args.reps, options)
            print(f"\nK = {k}, members fused or not, per precision: s/step and speed-up over the loop in fp32\n")
            print_throughput(args.methods, med, options)

    configure_backends(device, training=False)
    attack_peak = measured_peak(device, torch.float32)
    print(f"\nmeasured matmul peak, attack numerics (full fp32): {attack_peak / 1e12:.2f} TFLOP/s")
    print("\n| attack | param | images/s | iterations | TFLOP/s | of peak | peak memory (MB) |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    model = Ensemble(EnsembleSpec("resnet18", 3, 100, 3, args.width)).to(device).eval()
    x = torch.rand(args.images, 3, 32, 32, generator=gen)
    y = torch.randint(0, 100, (args.images,), generator=gen)
    for attack, param in ATTACKS.items():
        settings = AttackSettings(batch_size=args.images, cw_max_iter=args.cw_iterations, cw_binary_search_steps=1)
        flops = count_flops(lambda: generate(model, x, y, attack, param, settings, device))  # also the warm-up
        with CostMeter(model) as cost:
            start = time.perf_counter()
            generate(model, x, y, attack, param, settings, device)
            seconds = time.perf_counter() - start
        iterations = {"fgsm": 1, "bim": 10, "pgd": 10, "pgd_l2": 10, "cw": args.cw_iterations}.get(attack, "-")
        memory = cost["peak_gpu_mb"] if cost["peak_gpu_mb"] is not None else cost["peak_rss_mb"]
        print(f"| {attack} | {param} | {args.images / seconds:.1f} | {iterations} | {flops / seconds / 1e12:.3f} "
              f"| {flops / seconds / attack_peak:.3f} | {memory:.0f} |")


if __name__ == "__main__":
    main()
