"""The jobs behind each output (for the cost ledger): which rule writes a file, and what that job reads."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pdd.plan.config import surrogate_path, train_start
from pdd.plan.outputs import THREATS, inputs, requested
from pdd.plan.paths import ATTACK_RULES, ATTACK_SEP, benchmark, cost_sources, job_of, model_path, parse_path


@dataclass(frozen=True)
class AttackJobs:
    """The white-box or transfer jobs that run the same attacks into one folder (an attack suite or a threat),
    one job per model: a job runs its attacks on one loaded model and writes one result file per attack."""

    kind: str  # the rule kind: "whitebox" or "transfer"
    folder: str  # the suite or threat
    attacks: tuple[str, ...]  # sorted
    models: tuple[str, ...]  # "dataset/arch/K3/method/seed0", sorted

    @property
    def name(self) -> str:
        """A Snakemake rule name, unique in the workflow."""
        return "_".join([self.kind, *([self.folder] if self.folder != self.kind else []), *self.attacks])

    @property
    def stem(self) -> str:
        """The job's name among its results (benchmark and log file names): its attacks joined."""
        return ATTACK_SEP.join(self.attacks)

    @property
    def model_pattern(self) -> str:
        """A regular expression matching exactly these models (the rule's `model` wildcard)."""
        return "|".join(re.escape(m) for m in self.models)


def attack_jobs(config: dict) -> list[AttackJobs]:
    """Every attack job the requested outputs need, grouped by (rule, folder, attacks): a model's attacks in one
    folder run in one job, so a process start (torch, ART: seconds) is paid per model and folder, not per attack."""
    wanted: dict[tuple[str, str, str], set[str]] = {}
    for name in requested(config):
        for path in inputs(config, name):
            job = producer(path)
            if job and job[0] in ATTACK_RULES:
                model, folder, file = path.removeprefix("results/eval/").rsplit("/", 2)
                wanted.setdefault((job[0], model, folder), set()).add(file.removesuffix(".json"))
    groups: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for (kind, model, folder), attacks in wanted.items():
        groups.setdefault((kind, folder, tuple(sorted(attacks))), []).append(model)
    return [AttackJobs(kind, folder, attacks, tuple(sorted(models)))
            for (kind, folder, attacks), models in sorted(groups.items())]


def attack_job_index(config: dict) -> dict[str, str]:
    """{result file: its job's main output} for every attack job: the main output names the job's attacks
    (`AttackJobs.stem`) where its benchmark and log live."""
    index = {}
    for group in attack_jobs(config):
        for model in group.models:
            folder = f"results/eval/{model}/{group.folder}"
            for attack in group.attacks:
                index[f"{folder}/{attack}.json"] = f"{folder}/{group.stem}.json"
    return index


def producer(path: str, attack_index: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(rule, main output) of the job writing `path`; None for files no job writes (external weights).
    `attack_index` (`attack_job_index`) maps an attack's result to its job; without it, each attack is its own."""
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
    if kind in rules:
        return (rules[kind], path)
    return ("transfer" if kind in THREATS else "whitebox", (attack_index or {}).get(path, path))


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
    todo, index = list(inputs(config, name)), attack_job_index(config)
    while todo:
        job = producer(todo.pop(), index)
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

