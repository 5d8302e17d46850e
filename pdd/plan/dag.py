"""Snakemake's own DAG of a config's run, read back where the package needs a job list (the cost table's jobs per
output, the cost estimate's jobs): Snakemake owns the DAG, so nothing here says which rule writes which file.

`python -m pdd.plan.dag --configfile CONFIG --output NAME=FILE ... --out JSON` (or `--config-json JSON`) writes
{output: the benchmark files of the jobs it needs}; the workflow's `jobs_per_output` rule runs it once every output
exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SNAKEFILE = Path(__file__).resolve().parents[2] / "Snakefile"  # the workflow beside the package (a source checkout)


def snakemake_dag(configfile: str | Path, workdir: str | Path = ".", targets: Iterable[str] = ("all",),
                  snakefile: str | Path = SNAKEFILE) -> Any:
    """Snakemake's DAG (snakemake.dag.DAG) of every job `targets` need under `configfile`, as if nothing had run
    yet (forceall), from a dry run in this process: no job runs, no lock is taken, nothing is written."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
        StorageSettings,
    )

    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1),
                                config_settings=ConfigSettings(configfiles=[Path(configfile).resolve()]),
                                storage_settings=StorageSettings(), snakefile=Path(snakefile).resolve(),
                                workdir=Path(workdir).resolve())
        dag_api = workflow.dag(dag_settings=DAGSettings(targets=set(targets), forceall=True))
        dag_api.execute_workflow(executor="dryrun",  # Snakemake 9's dry-run executor (what -n runs)
                                 execution_settings=ExecutionSettings(lock=False, ignore_incomplete=True))
        return dag_api.workflow_api._workflow.dag  # the API returns nothing from a dry run; its workflow keeps it


def benchmarks(dag: Any) -> list[str]:
    """The benchmark file of every job of `dag` that has one (every job that computes: not tables or figures)."""
    return sorted(str(job.benchmark) for job in dag.jobs if job.benchmark)


def jobs_per_output(dag: Any, outputs: Mapping[str, str]) -> dict[str, list[str]]:
    """{output name: the benchmark files of every job it needs, trainings and data preparation included}, from the
    job that writes its file (`outputs`: {name: one file of it}) back through Snakemake's dependencies."""
    writer = {str(file): job for job in dag.jobs for file in job.output}
    found = {}
    for name, file in outputs.items():
        todo, seen = [writer[file]], set()
        while todo:
            job = todo.pop()
            if job not in seen:
                seen.add(job)
                todo += list(dag.dependencies[job])
        found[name] = sorted(str(job.benchmark) for job in seen if job.benchmark)
    return found


def main(argv: list[str] | None = None) -> int:
    """Write the jobs-per-output file of a config's run (the `jobs_per_output` rule's command)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--configfile", help="the run's config file")
    given.add_argument("--config-json", help="the run's config as JSON (the workflow passes its own)")
    parser.add_argument("--snakefile", default=str(SNAKEFILE))
    parser.add_argument("--output", action="append", default=[], metavar="NAME=FILE",
                        help="a requested output and one file of it; repeatable")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from pdd.io import write_json

    outputs = dict(item.split("=", 1) for item in args.output)
    with tempfile.TemporaryDirectory() as tmp:
        configfile = args.configfile or Path(tmp, "config.json")
        if args.config_json:
            configfile.write_text(args.config_json)
        per_output = jobs_per_output(snakemake_dag(configfile, snakefile=args.snakefile), outputs)
    write_json(args.out, per_output)
    print(json.dumps({name: len(jobs) for name, jobs in per_output.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
