"""Every measurement the rows take, listed up front and taken in worker processes at once; the projection."""

from __future__ import annotations

import torch

from pdd.estimate.bench import Bench
from pdd.estimate.rows import (
    Row,
    attack_rows,
    diversity_rows,
    group,
    jobs_of,
    member_transfer_rows,
    strong_rows,
    time_steps_rows,
    train_rows,
)
from pdd.estimate.store import Missing
from pdd.plan import config as plan
from pdd.plan.outputs import requested, variant

REQUEST_ORDER = ("strong_blocks", "time_steps", "attack", "train", "member_transfer", "diversity", "predict",
                 "evaluation")


def requests(config: dict, jobs: dict[str, list[dict]], check: bool = False) -> list[tuple[str, tuple]]:
    """Every measurement the row builders below take, as (Bench method, arguments), longest kinds first (strong
    evaluation, timing, attacks with C&W first): what `prefetch` spreads over processes. A measurement missing
    here is still taken, by `project` itself, one after another (tests/test_estimate.py checks none is)."""
    found: list[tuple[str, tuple]] = []
    trained: dict[tuple, str] = {}  # PDD's M variants share one measurement (Bench.train's key): the first
    for (dataset, arch, k, method) in sorted(group(jobs.get("train", []), ("dataset", "arch", "K", "method"))):
        trained.setdefault((dataset, arch, k, variant(method)[0]), method)
    found += [("train", (dataset, arch, k, method)) for (dataset, arch, k, _), method in trained.items()]
    for rule in ("whitebox", "transfer"):
        for (dataset, k, suite, attack) in sorted(group(jobs.get(rule, []), ("dataset", "K", "suite", "attack"))):
            surrogate = plan.surrogate_arch(config, suite) if rule == "transfer" else None
            found += [("attack", (dataset, k, attack, surrogate)), ("predict", (dataset, k))]
    for index, (dataset, k, _) in enumerate(sorted(group(jobs.get("strong", []), ("dataset", "K", "suite")))):
        found.append(("strong_blocks", (dataset, k, check and index == 0)))
    for dataset, k in sorted(group(jobs.get("diversity", []), ("dataset", "K"))):
        found.append(("diversity", (dataset, k)))
    if jobs.get("member_transfer"):
        eps = requested(config)["figure_member_transfer"]["eps"]
        found += [("member_transfer", (dataset, k, eps))
                  for dataset, k in sorted(group(jobs["member_transfer"], ("dataset", "K")))]
    methods = list(plan.timing_methods(config)) if jobs.get("time_steps") else []
    for dataset, arch, k in sorted(group(jobs.get("time_steps", []), ("dataset", "arch", "K"))):
        found.append(("time_steps", (dataset, arch, k, methods)))
    unique = list({repr(r): r for r in found}.values())
    return sorted(unique, key=lambda r: (REQUEST_ORDER.index(r[0]), r[0] != "attack" or r[1][2] != "cw"))


_WORKER: list[Bench] = []  # the Bench of a prefetch worker process


def _start_worker(config: dict, images: int, seed: int, narrow: bool, narrow_from: int) -> None:
    torch.set_num_threads(1)  # the processes are the parallelism: tiny kernels gain nothing from threads
    plan.register_methods(config)
    _WORKER.append(Bench(config, images, seed, narrow=narrow, narrow_from=narrow_from))


def _take(request: tuple[str, tuple]) -> tuple[list[tuple], list[str]]:
    """One measurement in a worker: the blocks it measured, [(key, stored name, value, seconds)], and the ones
    run at the real widths (blocks it shares with an earlier request, e.g. a training job's evaluation, are
    reused from the worker's memory and not sent again)."""
    bench = _WORKER[0]
    before, bench.full_width = set(bench.cache), []
    kind, args = request
    getattr(bench, kind)(*args)
    return ([(key, bench.names[key], value, bench.seconds[key]) for key, value in bench.cache.items()
             if key not in before], bench.full_width)


def prefetch(bench: Bench, config: dict, jobs: dict[str, list[dict]], processes: int) -> None:
    """Take the measurements `project` will need and neither memory nor the store holds, in `processes` worker
    processes at once (one torch thread each), into `bench`'s cache and store."""
    if bench.narrows:  # each dataset's narrow step, for the report (shapes on the meta device: instant)
        for dataset in sorted({j["dataset"] for found in jobs.values() for j in found if "dataset" in j}):
            bench.narrow_step(dataset)
    wanted = requests(config, jobs, bench.check_formula)
    if not bench.cache and (bench.store is None or not bench.store.entries):
        missing = wanted  # cold: nothing to look up
    else:
        missing = []
        bench.probing = True
        try:
            for kind, args in wanted:
                try:
                    getattr(bench, kind)(*args)
                except Missing:
                    missing.append((kind, args))
        finally:
            bench.probing = False
    if processes < 2 or len(missing) < 2:
        return
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_all_start_methods, get_context

    # fork where there is one (Linux, as DataLoader workers): the workers start with torch and pdd imported
    context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    setup = (config, bench.images, bench.seed, bench.narrow, bench.narrow_from)
    bench.processes_used = min(processes, len(missing))
    with ProcessPoolExecutor(bench.processes_used, context, _start_worker, setup) as pool:
        for measured, full_width in pool.map(_take, missing):
            for key, name, value, seconds in measured:
                if key not in bench.cache:
                    bench.cache[key], bench.seconds[key], bench.names[key] = value, seconds, name
                    if bench.store is not None:
                        bench.store.put(name, value)
            bench.full_width += full_width


def project(config: dict, bench: Bench, processes: int = 1) -> list[Row]:
    """Every row of the config's jobs (its own training methods registered first, as the workflow does); the
    measurements taken in `processes` processes at once first (`prefetch`)."""
    plan.register_methods(config)
    jobs = jobs_of(config)
    prefetch(bench, config, jobs, processes)
    rows: list[Row] = []
    builders = {"train": lambda j: train_rows(bench, config, j),
                "whitebox": lambda j: attack_rows(bench, config, "whitebox", j),
                "transfer": lambda j: attack_rows(bench, config, "transfer", j),
                "strong": lambda j: strong_rows(bench, config, j),
                "diversity": lambda j: diversity_rows(bench, config, j),
                "member_transfer": lambda j: member_transfer_rows(bench, config, j),
                "time_steps": lambda j: time_steps_rows(bench, config, j)}
    order = ["train", "time_steps", "whitebox", "transfer", "strong", "diversity", "member_transfer", "gradcam",
             "examples", "prepare_data"]
    for rule, found in sorted(jobs.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99):
        if rule == "prepare_data":
            rows.append(Row(rule, ", ".join(j["dataset"] for j in found), len(found), 0.0, "no model passes"))
        elif rule in ("gradcam", "examples"):  # one image per ensemble (Figure 1's table: the test images)
            rows.append(Row(rule, ", ".join(j["output"] for j in found), len(found), 0.0, "not projected",
                            "a figure's few images per ensemble: not measured"))
        elif rule in builders:
            rows += builders[rule](found)
        else:
            raise ValueError(f"no projection for rule {rule!r}")
    return rows
