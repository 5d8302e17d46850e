"""Images per second of the paper's PGD-10 (through ART) on the demo ensemble; run by hand.

    python benchmarks/bench_attack.py --threads 2

The ensemble is the demo's (K = 3 ResNet-18 of width 8 on 1x8x8 digits); its weights do not
change the cost, so it is freshly initialised. The digits test set (360 images) is tiled to
`--images` images. The first call (ART set-up) is excluded; the median of `--reps` calls is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pdd.attacks import AttackSettings, generate, select_images
from pdd.data import get_dataset
from pdd.models import Ensemble, EnsembleSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1440)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = Ensemble(EnsembleSpec("resnet18", 3, 10, 1, width=8)).to(device).eval()
    x, y = select_images(get_dataset("digits", "test", "."), None)
    reps = -(-args.images // len(y))
    x, y = x.repeat(reps, 1, 1, 1)[: args.images], y.repeat(reps)[: args.images]
    settings = AttackSettings(batch_size=args.batch_size)
    generate(model, x[:10], y[:10], "pgd", 0.1, settings, device)  # warm-up
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        generate(model, x, y, "pgd", 0.1, settings, device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(f"PGD-10 (ART, L-inf, 1 random start), demo ensemble, {args.images} images, batch {args.batch_size}, "
          f"{device}, {args.threads} threads: {seconds:.2f} s, {args.images / seconds:.0f} images/s")


if __name__ == "__main__":
    main()
