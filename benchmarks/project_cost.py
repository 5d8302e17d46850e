"""Projected model image-passes, FLOPs and hours of a whole config run (default: the paper's, config/config.yaml),
per rule; `pdd estimate` prints the same totals (without the per-group tables unless --details).

Run by hand (not collected by pytest), e.g.

    python benchmarks/project_cost.py                      # the paper config (a narrow width, FLOPs scaled)
    python benchmarks/project_cost.py --full-width         # every measurement at width 64: about 27 min here
    python benchmarks/project_cost.py --config config/demo.yaml --images 4
    python benchmarks/project_cost.py --device a100 --dtype bf16 --utilisation 0.4

What is measured and how is `pdd.estimate`'s docstring; every setting comes from `pdd.plan.config`.
Without --cache every measurement runs afresh (the benchmark); with it, `pdd estimate`'s stored ones are reused.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import yaml

from pdd.estimate import Rate, report
from pdd.evaluation.peaks import PEAKS, PRECISIONS

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--images", type=int, default=2, help="images per measurement (even: TRS halves the batch)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1, help="measurements taken at once, one process each")
    parser.add_argument("--device", choices=list(PEAKS), default="h200")
    parser.add_argument("--dtype", choices=list(PRECISIONS), default="tf32")
    parser.add_argument("--utilisation", type=float, help="also hours at this fraction of the peak")
    parser.add_argument("--rate", type=float, help="also hours at this measured rate, FLOP/s")
    parser.add_argument("--cache", help="JSON file of stored measurements to reuse and extend")
    parser.add_argument("--full-width", action="store_true",
                        help="measure at the config's widths instead of once at a narrow width with the FLOPs scaled")
    args = parser.parse_args(argv)
    if args.images < 2 or args.images % 2:
        parser.error("--images must be even and at least 2")
    torch.set_num_threads(args.threads)
    rates = [Rate(args.device, args.dtype)]
    if args.utilisation is not None:
        rates.append(Rate(args.device, args.dtype, args.utilisation))
    if args.rate is not None:
        rates.append(Rate(rate=args.rate))
    config = yaml.safe_load(Path(args.config).read_text())
    print(report(config, os.path.relpath(args.config, REPO), rates, args.images, args.cache, show_details=True,
                 narrow=not args.full_width, processes=args.processes))
    print(f"\n(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
