"""The jobs behind each output (for the cost ledger): which rule writes a file, and what that job reads."""

from __future__ import annotations

from pdd.methods import get_method
from pdd.plan.outputs import THREATS, benchmark, cost_sources, inputs, job_of, model_path, requested, variant


def producer(path: str) -> tuple[str, str] | None:
    """(rule, main output) of the job writing `path`; None for files no job writes (external weights)."""
    parts = path.split("/")
    if path.startswith("results/models/"):
        return ("train", "/".join(parts[:-1] + ["ensemble.pt"]))
    if path.startswith("results/data/"):
        return ("prepare_data", path)
    if not path.startswith("results/eval/"):
        return None
    if parts[5] == "timing":
        return ("time_steps", path)
    kind = parts[7]
    if kind == "diversity":
        return ("diversity", "/".join(parts[:-1] + ["per_image.csv"]))
    rules = {"strong": "strong", "strong_l2": "strong", "member_transfer": "member_transfer"}
    rule = rules.get(kind, "transfer" if kind in THREATS else "whitebox")
    return (rule, path)


def upstream(config: dict, rule: str, path: str) -> list[str]:
    """Files a job reads that other jobs write: the data manifest, the ensemble(s) it evaluates or starts from."""
    parts = path.split("/")
    dataset = parts[2]
    if rule == "prepare_data":
        return []
    if rule == "time_steps":
        return [f"results/data/{dataset}.json"]
    arch, k, method, seed = parts[3], int(parts[4][1:]), parts[5], int(parts[6][4:])
    if rule == "train":
        start = get_method(variant(method)[0]).starts_from
        return [f"results/data/{dataset}.json"] + ([model_path(config, dataset, k, start, seed, arch)] if start else [])
    found = [] if method in config.get("external", {}) else [model_path(config, dataset, k, method, seed)]
    if rule == "transfer" or rule == "strong":
        threat = parts[7] if rule == "transfer" else "blackbox_oblivious"
        s = config["surrogates"]["oblivious" if threat == "blackbox_oblivious" else "adaptive"]
        found.append(model_path(config, dataset, k, s.get("method", method), seed, s["arch"]))
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

