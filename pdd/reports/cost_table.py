"""Registry builder of `cost`: what every job of the run cost (Snakemake's benchmark files for wall seconds and
peak RSS; the job's own cost record for model image-passes and peak GPU memory), summed per rule and per output."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pdd.plan.paths import cost_sources, job_of
from pdd.reports.display import Grid, write_table

if TYPE_CHECKING:  # the registry names the builders; they only read their entry
    from pdd.plan.outputs import Output

COLUMNS = {"jobs": "Jobs", "seconds": "Wall seconds", "max_rss_mb": "Peak RSS (MB)",
           "forward_images": "Forward image-passes", "backward_images": "Backward image-passes",
           "peak_gpu_mb": "Peak GPU memory (MB)"}


def own_cost(path: Path) -> dict:
    """A job's own cost record: training's cost.json, or the result file's record with metric 'cost'."""
    if not path.is_file():
        return {}
    found = json.loads(path.read_text())
    if isinstance(found, dict):
        return found
    return next((r for r in found if r.get("metric") == "cost"), {})


def job_costs(benchmarks: list[str], root: Path = Path(".")) -> pd.DataFrame:
    """One row per job: rule, benchmark file, wall seconds, peak RSS, image-passes, peak GPU memory."""
    rows = []
    for bench in benchmarks:
        rule, main = job_of(bench)
        tsv = pd.read_csv(root / bench, sep="\t")
        own = {}
        for source in cost_sources(rule, main):
            own.update({k: v for k, v in own_cost(root / source).items() if v is not None})
        rows.append({"rule": rule, "benchmark": bench, "seconds": float(tsv["s"].iloc[-1]),
                     "max_rss_mb": pd.to_numeric(tsv["max_rss"], errors="coerce").iloc[-1],
                     "forward_images": own.get("forward_images", math.nan),
                     "backward_images": own.get("backward_images", math.nan),
                     "peak_gpu_mb": own.get("peak_gpu_mb", math.nan)})
    return pd.DataFrame(rows, columns=["rule", "benchmark", "seconds", "max_rss_mb", "forward_images",
                                       "backward_images", "peak_gpu_mb"])


def summarise(jobs: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per group: number of jobs, summed seconds and image-passes, the largest peak memories."""
    grouped = jobs.groupby(by, sort=True)
    return pd.DataFrame({"jobs": grouped.size(), "seconds": grouped["seconds"].sum(),
                         "max_rss_mb": grouped["max_rss_mb"].max(),
                         "forward_images": grouped["forward_images"].sum(min_count=1),
                         "backward_images": grouped["backward_images"].sum(min_count=1),
                         "peak_gpu_mb": grouped["peak_gpu_mb"].max()}).reset_index()


def _grid(df: pd.DataFrame, key: str, title: str) -> Grid:
    def cell(column: str, value) -> str:
        if pd.isna(value):
            return "-"
        return f"{value:,.0f}" if column in ("jobs", "forward_images", "backward_images") else f"{value:,.1f}"

    cells = pd.DataFrame([[cell(c, r[c]) for c in COLUMNS] for _, r in df.iterrows()],
                         index=pd.Index(df[key], name=title), columns=list(COLUMNS.values()))
    return Grid(cells)


def build(inputs: list[str], spec: dict, out: str, paper_csv: str, output: Output) -> None:
    """`<out>.csv` (one row per job, code names), `<out>.md` / `.tex`: per rule, then per output. `inputs` is
    the jobs-per-output file (`pdd.plan.paths.JOBS_PER_OUTPUT`): {output: the benchmark files of its jobs}."""
    (manifest,) = inputs
    per_output_jobs = json.loads(Path(manifest).read_text())
    jobs = job_costs(sorted({bench for files in per_output_jobs.values() for bench in files}))
    per_rule = summarise(jobs, "rule")
    membership = [(name, bench) for name, files in per_output_jobs.items() for bench in files]
    per_output = summarise(pd.DataFrame(membership, columns=["output", "benchmark"]).merge(jobs, on="benchmark"),
                           "output") if membership else per_rule.iloc[0:0]
    notes = ["Wall seconds and peak RSS: Snakemake's `benchmark:` files (a job's whole process); image-passes: "
             "images through the ensemble's forward and backward, counted once per ensemble call by the job "
             "itself (DEG's double backward counts twice; DVERGE's feature distillation is not counted); peak GPU "
             "memory: torch.cuda.max_memory_allocated ('-' on the CPU). Per output: the jobs it needs, trainings "
             "included, so shared jobs count in every output that uses them."]
    long = pd.concat([jobs.assign(kind="job"), per_rule.assign(kind="rule"), per_output.assign(kind="output")],
                     ignore_index=True)
    long.insert(0, "table", "cost")
    write_table(f"{out}.csv", f"{out}.md", f"{out}.tex", long, "cost", output.title, notes,
                [_grid(per_rule, "rule", "Rule"), _grid(per_output, "output", "Output")])
