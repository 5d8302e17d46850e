"""Images per second of the paper's attacks through ART, per class count, stock ART vs pdd's classifier; by hand.

    python benchmarks/bench_attack.py --threads 2                 # pdd's classifier (one backward pass)
    python benchmarks/bench_attack.py --threads 2 --stock         # stock ART (one backward pass per label)
    python benchmarks/bench_attack.py --threads 2 --compare       # both, interleaved run by run, speed-up
    python benchmarks/bench_attack.py --threads 2 --demo          # PGD-10 on the demo ensemble (digits)

Paper-shaped inputs, random weights and images (the cost does not depend on them): 10 classes on
1x28x28 (Fashion-MNIST), 100 on 3x32x32 (CIFAR-100), 200 on 3x64x64 (Tiny-ImageNet); a K = 3 ensemble of
ResNet-18s of width `--width`. Attacks at the paper's settings except the iteration counts: C&W runs
`--cw-iterations` iterations of one binary-search step (the paper: 1000 x 5) and JSMA's gamma is set so that
it stops after about `--jsma-iterations` iterations (the paper's gamma runs hundreds). Each row reports
images/s for the whole attack and image-iterations/s (images x iterations / s; JSMA's iterations are
counted), plus the ensemble backward passes per image and iteration (CostMeter's backward images).
The first call of each configuration (ART set-up) is excluded; the median of `--reps` calls is reported.
That first call runs under `pdd.evaluation.flops.FlopCounter`: its FLOPs over the median time are the achieved
GFLOP/s, also as a fraction of the machine's measured peak (a fp32 matmul timed in the same run).
On a machine shared with other jobs, --threads 1 avoids torch's thread hand-offs stalling behind them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import statistics
import time

import torch

import pdd.evaluation.attacks
from pdd.devices import configure_backends
from pdd.evaluation.attacks import AttackSettings, art_classifier, generate, select_images
from pdd.evaluation.cost_meter import CostMeter
from pdd.evaluation.flops import count_flops, measured_peak
from pdd.models import Ensemble, EnsembleSpec

SHAPES = {10: (1, 28, 28), 100: (3, 32, 32), 200: (3, 64, 64)}
PARAMS = {"fgsm": 0.02, "bim": 0.02, "pgd": 0.02, "pgd_l2": 0.5, "cw": 0.1}  # eps / C&W initial constant


class GradientImages:
    """Images through the ensemble's forward passes that build a graph (one per attack gradient step)."""

    def __init__(self, model: Ensemble):
        self.images = 0
        self._handle = model.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output: torch.Tensor) -> None:
        if output.requires_grad:
            self.images += output.shape[1]

    def close(self) -> None:
        self._handle.remove()


def iterations(attack: str, settings: AttackSettings, gradient_images: float, num_images: int) -> float:
    """Iterations of one attack run: fixed by the settings, except JSMA's (one gradient per iteration, counted)."""
    fixed = {"fgsm": 1, "bim": settings.steps, "pgd": settings.steps, "pgd_l2": settings.steps,
             "cw": settings.cw_max_iter * settings.cw_binary_search_steps}
    return fixed[attack] if attack in fixed else gradient_images / num_images


CLASSIFIERS = {"stock": functools.partial(art_classifier, per_sample_gradients=False), "pdd": art_classifier}


@contextlib.contextmanager
def classifier(name: str):
    """Make `pdd.evaluation.attacks.generate` build classifier `name` (it looks up
    pdd.evaluation.attacks.art_classifier)."""
    saved = pdd.evaluation.attacks.art_classifier
    pdd.evaluation.attacks.art_classifier = CLASSIFIERS[name]
    try:
        yield
    finally:
        pdd.evaluation.attacks.art_classifier = saved


def run_once(model: Ensemble, x: torch.Tensor, y: torch.Tensor, attack: str, param: float,
             settings: AttackSettings, device: torch.device) -> tuple[dict, int]:
    """One attack run's CostMeter result and its images through gradient-building forwards."""
    counter = GradientImages(model)
    try:
        with CostMeter(model) as cost:
            generate(model, x, y, attack, param, settings, device)
    finally:
        counter.close()
    return cost, counter.images


def measure(model: Ensemble, x: torch.Tensor, y: torch.Tensor, attack: str, param: float,
            settings: AttackSettings, device: torch.device, reps: int, names: list[str]) -> dict[str, dict]:
    """Per classifier name: median seconds of `reps` runs, the classifiers interleaved run by run (so that a
    change in the machine's load hits both alike), after an untimed first run whose FLOPs are counted; passes
    of the last run."""
    runs: dict[str, list] = {name: [] for name in names}
    flops = {}
    for name in names:
        with classifier(name):
            flops[name] = count_flops(lambda: generate(model, x, y, attack, param, settings, device))
    for _ in range(reps):
        for name in names:
            with classifier(name):
                runs[name].append(run_once(model, x, y, attack, param, settings, device))
    results, n = {}, len(y)
    for name, done in runs.items():
        seconds = statistics.median(cost["seconds"] for cost, _ in done)
        cost, gradient_images = done[-1]
        iters = iterations(attack, settings, gradient_images, n)
        results[name] = {"seconds": seconds, "images_per_s": n / seconds, "iterations": iters,
                         "image_iterations_per_s": n * iters / seconds, "flops_per_s": flops[name] / seconds,
                         "backward_per_image_iteration": cost["backward_images"] / (n * iters)}
    return results


def grid(args: argparse.Namespace, device: torch.device) -> None:
    """The attacks x class counts table of stock ART's classifier, pdd's, or both (--compare)."""
    names = ["stock", "pdd"] if args.compare else ["stock" if args.stock else "pdd"]
    peak = measured_peak(device, torch.float32)
    print(f"classifier: {' vs '.join(names)} (stock: ART's PyTorchClassifier; pdd: one backward pass per class "
          f"gradient); K = 3 ResNet-18 width {args.width}, {args.images} images in one batch, {device}, "
          f"{args.threads} threads, median of {args.reps}; C&W {args.cw_iterations} iterations, "
          f"JSMA gamma for ~{args.jsma_iterations}; measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    columns = ["s", "images/s", "image-iterations/s", "backward/(image*iter)", "GFLOP/s", "of peak"]
    header = ["classes", "input", "attack", "iterations"] + [f"{c} {n}" if args.compare else c
                                                            for c in columns for n in names]
    if args.compare:
        header.append("speed-up")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for num_classes in args.classes:
        shape = SHAPES[num_classes]
        torch.manual_seed(0)
        model = Ensemble(EnsembleSpec("resnet18", 3, num_classes, shape[0], width=args.width)).to(device).eval()
        x, y = torch.rand(args.images, *shape), torch.randint(num_classes, (args.images,))
        # JSMA changes two features per iteration and stops once more than gamma * features have changed
        # (a feature can be picked again, so it may run a little longer: its iterations are counted).
        gamma = (2 * args.jsma_iterations - 1) / math.prod(shape)
        settings = AttackSettings(batch_size=args.images, cw_max_iter=args.cw_iterations, cw_binary_search_steps=1)
        for attack in args.attacks:
            r = measure(model, x, y, attack, gamma if attack == "jsma" else PARAMS[attack], settings, device,
                        args.reps, names)
            cells = [str(num_classes), "x".join(map(str, shape)), attack, f"{r[names[-1]]['iterations']:.1f}"]
            for key, fmt in [("seconds", ".2f"), ("images_per_s", ".2f"), ("image_iterations_per_s", ".1f"),
                             ("backward_per_image_iteration", ".2f")]:
                cells += [format(r[n][key], fmt) for n in names]
            cells += [f"{r[n]['flops_per_s'] / 1e9:.1f}" for n in names]
            cells += [f"{r[n]['flops_per_s'] / peak:.2f}" for n in names]
            if args.compare:
                cells.append(f"{r['stock']['seconds'] / r['pdd']['seconds']:.2f}x")
            print("| " + " | ".join(cells) + " |", flush=True)


def demo(args: argparse.Namespace, device: torch.device) -> None:
    """PGD-10 (L-inf, one random start) on the demo ensemble (K = 3, width 8, 1x8x8 digits tiled to `--images`)."""
    from pdd.data import get_dataset

    model = Ensemble(EnsembleSpec("resnet18", 3, 10, 1, width=8)).to(device).eval()
    x, y = select_images(get_dataset("digits", "test", "."), None)
    reps = -(-args.images // len(y))
    x, y = x.repeat(reps, 1, 1, 1)[: args.images], y.repeat(reps)[: args.images]
    name = "stock" if args.stock else "pdd"
    r = measure(model, x, y, "pgd", 0.1, AttackSettings(batch_size=args.batch_size), device, args.reps, [name])[name]
    peak = measured_peak(device, torch.float32)
    print(f"PGD-10 (ART, L-inf, 1 random start), demo ensemble, {args.images} images, batch {args.batch_size}, "
          f"{device}, {args.threads} threads: {r['seconds']:.2f} s, {r['images_per_s']:.0f} images/s, "
          f"{r['flops_per_s'] / 1e9:.2f} GFLOP/s = {r['flops_per_s'] / peak:.3f} of the measured fp32 matmul peak "
          f"({peak / 1e9:.1f} GFLOP/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stock", action="store_true", help="stock ART's PyTorchClassifier (before)")
    parser.add_argument("--compare", action="store_true", help="stock ART and pdd's classifier, interleaved")
    parser.add_argument("--attacks", nargs="+", default=["fgsm", "bim", "pgd", "pgd_l2", "jsma", "cw"],
                        choices=["fgsm", "bim", "pgd", "pgd_l2", "jsma", "cw"])
    parser.add_argument("--classes", nargs="+", type=int, default=[10, 100, 200], choices=sorted(SHAPES))
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--images", type=int, default=None, help="default: 16 (grid), 1440 (--demo)")
    parser.add_argument("--cw-iterations", type=int, default=3)
    parser.add_argument("--jsma-iterations", type=int, default=3)
    parser.add_argument("--demo", action="store_true", help="the demo ensemble's PGD-10 only")
    parser.add_argument("--batch-size", type=int, default=500, help="--demo's attack batch")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    configure_backends(device, training=False)  # as an attack job: cuDNN autotuning, full fp32
    if args.images is None:
        args.images = 1440 if args.demo else 16
    start = time.perf_counter()
    (demo if args.demo else grid)(args, device)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
