"""Projected model image-passes of a whole config run (default: the paper's, config/config.yaml), per rule.

Run by hand (not collected by pytest), e.g.

    python benchmarks/project_cost.py                      # the paper config: 4.5 min, 257 CPU-s, peak 3 GB
    python benchmarks/project_cost.py --config config/demo.yaml --images 4

What is measured and how is `pdd.plan.projection`'s docstring; every setting comes from `pdd.plan.config`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import yaml

from pdd.plan import config as plan
from pdd.plan.projection import Bench, markdown, project

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--images", type=int, default=2, help="images per measurement (even: TRS halves the batch)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.images < 2 or args.images % 2:
        parser.error("--images must be even and at least 2")
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    start = time.perf_counter()
    bench = Bench(config, args.images)
    rows = project(config, bench)
    print(f"# Projected image-passes of {os.path.relpath(args.config, REPO)}\n")
    surrogates = ", ".join(f"{s['arch']} {plan.width(config, s['arch'])}" for s in config["surrogates"].values())
    print(f"Measured on {args.images} synthetic images per measurement at paper width (model width "
          f"{plan.width(config, plan.defended_arch(config))}; surrogates {surrogates}), random initial weights, "
          f"{args.threads} torch thread(s); {len(bench.cache)} measurements in {time.perf_counter() - start:.0f} s "
          f"(load average {os.getloadavg()[0]:.1f}).")
    print(markdown(rows))


if __name__ == "__main__":
    main()
