"""The attack jobs: which attacks run together on one model (one process per model and folder). Snakemake owns the
rest of the DAG (pdd.plan.dag reads it back)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pdd.plan.outputs import THREATS, inputs, requested
from pdd.plan.paths import ATTACK_SEP, OTHER_SUITES, parse_path


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
            kind = attack_kind(path)
            if kind:
                model, folder, file = path.removeprefix("results/eval/").rsplit("/", 2)
                wanted.setdefault((kind, model, folder), set()).add(file.removesuffix(".json"))
    groups: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for (kind, model, folder), attacks in wanted.items():
        groups.setdefault((kind, folder, tuple(sorted(attacks))), []).append(model)
    return [AttackJobs(kind, folder, attacks, tuple(sorted(models)))
            for (kind, folder, attacks), models in sorted(groups.items())]


def attack_kind(path: str) -> str | None:
    """The kind of attack job whose result `path` is, by the result-path layout (pdd.plan.paths): 'transfer' for a
    black-box threat's folder, 'whitebox' for an attack suite's, None for any other file."""
    if not path.startswith("results/eval/"):
        return None
    fields = parse_path(path)
    if "method" not in fields or fields["suite"] in OTHER_SUITES:  # the timing file; diversity, strong, ...
        return None
    return "transfer" if fields["suite"] in THREATS else "whitebox"
