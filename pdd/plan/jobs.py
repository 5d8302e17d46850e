"""The jobs behind each output (for the cost ledger): which rule writes a file, and what that job reads."""

from __future__ import annotations

from pdd.plan.config import surrogate_path, train_start
from pdd.plan.outputs import THREATS, inputs, requested
from pdd.plan.paths import benchmark, cost_sources, job_of, model_path, parse_path


def producer(path: str) -> tuple[str, str] | None:
    """(rule, main output) of the job writing `path`; None for files no job writes (external weights)."""
    if path.startswith("results/models/"):
        return ("train", path.rsplit("/", 1)[0] + "/ensemble.pt")
    if path.startswith("results/data/"):
        return ("prepare_data", path)
    if not path.startswith("results/eval/"):
        return None
    fields = parse_path(path)
    if "method" not in fields:
        return ("time_steps", path)
    kind = fields["suite"]
    if kind == "diversity":
        return ("diversity", path.rsplit("/", 1)[0] + "/per_image.csv")
    rules = {"strong": "strong", "strong_l2": "strong", "member_transfer": "member_transfer"}
    rule = rules.get(kind, "transfer" if kind in THREATS else "whitebox")
    return (rule, path)


def upstream(config: dict, rule: str, path: str) -> list[str]:
    """Files a job reads that other jobs write: the data manifest, the ensemble(s) it evaluates or starts from."""
    if rule == "prepare_data":
        return []
    fields = parse_path(path)
    dataset = fields["dataset"]
    if rule == "time_steps":
        return [f"results/data/{dataset}.json"]
    arch, k, method, seed = fields["arch"], fields["K"], fields["method"], fields["seed"]
    if rule == "train":
        start = train_start(config, dataset, k, method, seed, arch)
        return [f"results/data/{dataset}.json"] + ([start] if start else [])
    found = [] if method in config.get("external", {}) else [model_path(config, dataset, k, method, seed)]
    if rule == "transfer" or rule == "strong":
        threat = fields["suite"] if rule == "transfer" else "blackbox_oblivious"
        found.append(surrogate_path(config, threat, dataset, k, method, seed))
    return found


def output_jobs(config: dict, name: str) -> set[tuple[str, str]]:
    """Every job (rule, main output) output `name` needs, trainings and data preparation included."""
    jobs: set[tuple[str, str]] = set()
    todo = list(inputs(config, name))
    while todo:
        job = producer(todo.pop())
        if job and job not in jobs:
            jobs.add(job)
            todo += upstream(config, *job)
    return jobs


def jobs_per_output(config: dict, name: str) -> dict[str, list[str]]:
    """{output: the benchmark files of its jobs} for every requested output but `name` (the cost table)."""
    return {other: sorted(benchmark(*job) for job in output_jobs(config, other))
            for other in requested(config) if other != name}


def cost_inputs(per_output: dict[str, list[str]]) -> list[str]:
    """What the cost table reads: every job's benchmark file and cost record (jobs from `jobs_per_output`)."""
    files = []
    for bench in sorted({b for benches in per_output.values() for b in benches}):
        files += [bench, *cost_sources(*job_of(bench))]
    return files

