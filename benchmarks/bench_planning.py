"""Time and peak memory of planning the DAG: `snakemake -n all --configfile CONFIG` under `/usr/bin/time -v`.

    python benchmarks/bench_planning.py --configfile config/config.yaml --repeat 3
    python benchmarks/bench_planning.py --root /path/to/another/checkout      # the same for other code
    python benchmarks/bench_planning.py --block-torch                         # with `import torch` raising

Each run starts from a clean state (a fresh working directory, so no `.snakemake` of an earlier run) and uses the
checkout at --root (its Snakefile, and its `pdd` first on PYTHONPATH). Prints each run and the median wall seconds
and median peak RSS (MB), as docs/architecture.md quotes them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plan_once(root: Path, configfile: Path, block_torch: bool) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one `snakemake -n all` in a fresh working directory."""
    with tempfile.TemporaryDirectory() as tmp:
        path = [str(root)]
        if block_torch:
            (Path(tmp) / "blocked" / "torch").mkdir(parents=True)
            (Path(tmp) / "blocked" / "torch" / "__init__.py").write_text('raise ImportError("blocked")\n')
            path.insert(0, str(Path(tmp) / "blocked"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        cmd = ["/usr/bin/time", "-v", "snakemake", "-n", "all", "--configfile", str(configfile), "-s",
               str(root / "Snakefile"), "-d", str(Path(tmp) / "run")]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    hours, minutes, seconds = int(wall[1] or 0), int(wall[2]), float(wall[3])
    return hours * 3600 + minutes * 60 + seconds, int(rss[1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose Snakefile and pdd are timed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block-torch", action="store_true", help="make `import torch` raise")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    runs = [plan_once(root, (root / args.configfile).resolve(), args.block_torch) for _ in range(args.repeat)]
    for wall, rss in runs:
        print(f"{wall:6.2f} s  {rss:7.1f} MB")
    print(f"median: {statistics.median(w for w, _ in runs):.2f} s wall, "
          f"{statistics.median(r for _, r in runs):.0f} MB peak RSS ({root}, {args.configfile})")


if __name__ == "__main__":
    main()
