"""The projection as Markdown: per-rule totals, hours at a rate, the per-group arithmetic."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from pdd.estimate.bench import Bench
from pdd.estimate.prefetch import project
from pdd.estimate.rows import Row, job_count, sci
from pdd.estimate.store import Store
from pdd.evaluation import flops as F
from pdd.plan import config as plan


def details(rows: list[Row]) -> str:
    """One table per rule: its groups of identical jobs, their arithmetic, image-passes and FLOPs."""
    out = []
    for rule in dict.fromkeys(r.rule for r in rows):
        mine = [r for r in rows if r.rule == rule]
        saved = sum(r.saving for r in mine)
        out += [f"\n### {rule}: {job_count(mine)} jobs, {sci(sum(r.total for r in mine))} image-passes, "
                f"{sci(sum(r.flops for r in mine))} FLOPs"
                + (f" ({sci(saved)} fewer passes expected: misclassified images skipped)" if saved else "") + "\n",
                "| jobs of | jobs (attacks: runs) | image-passes per job (arithmetic) | image-passes | FLOPs | note |",
                "|---|---:|---|---:|---:|---|"]
        out += [f"| {r.label} | {r.jobs} | {r.arithmetic} | {sci(r.total)} | {sci(r.flops)} | {r.note} |"
                for r in mine]
    return "\n".join(out)


TRAINING_RULES = ("train", "time_steps")  # run at training.precision; every other job in full fp32 (pdd.devices)


@dataclass(frozen=True)
class Rate:
    """What the hours are computed at: `device`'s dense data-sheet peaks (`pdd.evaluation.peaks.PEAKS`), the
    training jobs' at `precision` (training.precision) and every other job's at FP32 (attacks and evaluations run
    in full fp32), times `utilisation`; or a measured achieved `rate` in FLOP/s for every job."""

    device: str = "h200"
    precision: str = "tf32"
    utilisation: float = 1.0
    rate: float | None = None

    def __post_init__(self) -> None:
        F.hours(0.0, self.device, self.precision, self.utilisation, self.rate)  # the same checks

    def hours(self, value: float, rule: str = "train") -> float:
        """Hours of `value` FLOPs of `rule`'s jobs."""
        precision = self.precision if rule in TRAINING_RULES else "fp32"
        return F.hours(value, self.device, precision, self.utilisation, self.rate)

    def describe(self) -> str:
        if self.rate is not None:
            return f"at a measured {self.rate / 1e9:,.4g} GFLOP/s"
        train, full = F.peak(self.device, self.precision), F.peak(self.device, "fp32")
        text = (f"{self.device.upper()} peaks (training {self.precision.upper()} {train / 1e12:,.4g}, the rest "
                f"FP32 {full / 1e12:,.4g} TFLOP/s)")
        return f"at the {text}" if self.utilisation == 1 else f"at {self.utilisation:g} x the {text}"


def run_hours(rows: list[Row], rate: Rate) -> float:
    """Hours of every row's FLOPs, each at its rule's rate."""
    return sum(rate.hours(r.flops, r.rule) for r in rows)


def totals(rows: list[Row], rates: Iterable[Rate] = ()) -> list[dict]:
    """Per rule, then "all": jobs, image-passes, FLOPs, share of the FLOPs and hours at each of `rates` (each
    rule at its own peak, "all" their sum)."""
    rates, out = list(rates), []
    all_flops = sum(r.flops for r in rows)
    for rule in [*dict.fromkeys(r.rule for r in rows), "all"]:
        mine = [r for r in rows if rule in ("all", r.rule)]
        value = sum(r.flops for r in mine)
        out.append({"rule": rule, "jobs": job_count(mine), "image_passes": sum(r.total for r in mine),
                    "saving": sum(r.saving for r in mine),
                    "flops": value, "share": value / all_flops if all_flops else 0.0,
                    "hours": [run_hours(mine, rate) for rate in rates]})
    return out


def markdown(rows: list[Row], rates: Iterable[Rate] = (Rate(),)) -> str:
    """The totals per rule and overall: jobs, image-passes (and those expected once misclassified images are
    skipped), FLOPs, share and hours at each of `rates`."""
    rates = list(rates)
    out = ["| rule | jobs | image-passes | expected, misclassified images skipped | FLOPs | share of FLOPs |"
           + "".join(f" hours {rate.describe()} |" for rate in rates),
           "|---|---:|---:|---:|---:|---:|" + "---:|" * len(rates)]
    for t in totals(rows, rates):
        bold = "**" if t["rule"] == "all" else ""
        value, saved = t["image_passes"], t["saving"]
        skipped = f"{sci(value - saved)} (-{100 * saved / value if value else 0:.1f}%)"
        cells = [t["rule"], str(t["jobs"]), sci(value), skipped, sci(t["flops"]), f"{100 * t['share']:.1f}%",
                 *(f"{h:,.3g}" for h in t["hours"])]
        out.append("| " + " | ".join(f"{bold}{c}{bold}" for c in cells) + " |")
    out.append("\nExpected, misclassified images skipped: the paper's baseline clean error (Table 2, K = 3) of each "
               "dataset times the passes that scale with the attacked images; the measured passes, FLOPs and hours "
               "assume every image correctly classified.")
    return "\n".join(out)


def report(config: dict, config_name: str, rates: Iterable[Rate] = (Rate(),), images: int = 2,
           store: Path | str | None = None, show_details: bool = False, narrow: bool = True,
           processes: int = 1) -> str:
    """The projection of `config` as markdown (what `pdd estimate` and `benchmarks/project_cost.py` print):
    how it was measured, the per-group tables if `show_details`, the totals with hours at each of `rates`;
    `narrow`: measure at a narrow width, the FLOPs scaled (the module doc), else at the real widths;
    `processes`: measurements taken at once."""
    start = time.perf_counter()
    bench = Bench(config, images, store=Store(store) if store is not None else None, narrow=narrow,
                  check_formula=show_details)  # the check is a note of the details
    rows = project(config, bench, processes)
    if bench.narrows:
        width = plan.width(config, plan.defended_arch(config))
        steps = {d: n[0] for d, n in bench._steps.items() if n is not None}
        at = ", ".join(f"{d} {width // bench.width_step * step}" for d, step in sorted(steps.items()))
        how = (f" Measured once at a narrow width (model width {at}; the surrogates' in proportion), each operator's "
               "FLOPs scaled exactly to the real widths (`WidthScale`)"
               + (f"; at the real widths, an operator not scalable: {', '.join(bench.full_width)}."
                  if bench.full_width else "."))
    else:
        how = ""
    surrogates = ", ".join(f"{s['arch']} {plan.width(config, s['arch'])}" for s in config["surrogates"].values())
    threads = (f"{bench.processes_used} processes of 1 torch thread" if bench.processes_used > 1 else
               f"{torch.get_num_threads()} torch thread(s)")
    measured = len(bench.cache) - bench.reused
    kept = f"; {bench.reused} reused from {store} (same code)" if bench.reused else ""
    out = [f"# Projected cost of {config_name}\n",
           f"Passes and FLOPs per unit measured on the job kinds' own code: {images} synthetic images per "
           f"measurement at paper scale (model width {plan.width(config, plan.defended_arch(config))}; surrogates "
           f"{surrogates}), random initial weights, {threads}; {measured} measurements run{kept}; "
           f"{time.perf_counter() - start:.0f} s. FLOPs: matrix products and convolutions, "
           "forward and backward (`pdd.evaluation.flops`). Hours = FLOPs / rate: at a peak, a floor no run beats; "
           "the strong evaluation's figures are upper bounds (restarts as if no image broke)." + how]
    if show_details:
        out.append(details(rows))
    out += ["\n### Total\n", markdown(rows, rates)]
    if abort := abort_summary(rows, rates[0] if (rates := list(rates)) else Rate()):
        out += ["", abort]
    return "\n".join(out)


def abort_summary(rows: list[Row], rate: Rate) -> str:
    """The run's FLOPs and hours without and with C&W's early abort (evaluation.cw.abort_early) at the H200's and
    the H100's data-sheet peaks in `rate`'s precision; "" when the config does not abort early."""
    saved = sum(r.jobs * r.abort_flops_per_job for r in rows)
    if not saved or rate.rate is not None:
        return ""
    after = sum(r.flops for r in rows)
    peaks = [Rate(device, rate.precision, rate.utilisation) for device in ("h200", "h100")]
    hours = "; ".join(f"{p.describe()}: {run_hours(rows, p) + p.hours(saved, 'whitebox'):,.3g} h -> "
                      f"{run_hours(rows, p):,.3g} h" for p in peaks)
    return (f"C&W's early abort (`evaluation.cw.abort_early`, on in this config) leaves {sci(after)} of the "
            f"{sci(after + saved)} FLOPs without it ({100 * saved / (after + saved):.1f}% saved); hours without -> "
            f"with: {hours}.")
