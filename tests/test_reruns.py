"""Reruns after a change: `snakemake -n` on a finished tiny run plans exactly the affected jobs.

One real run (module fixture) of a tiny grid: baseline and PDD ensembles, two white-box attacks,
the clean evaluation, Table 2, timing and Figure 4 of the PDD ensemble (its own PGD attack job).
Each test changes one thing and compares the planned jobs with the set it must be.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SNAKEFILE, copy_of_repository, snakemake, tiny_config

pytestmark = pytest.mark.slow

Job = tuple[str, str]  # (rule, first output)


def _config() -> dict:
    cfg = tiny_config()
    cfg["attacks"] = {"digits": {"fgsm": [0.1], "pgd": [0.3]}}
    two = {"datasets": ["digits"], "K": [2], "methods": ["baseline", "pdd"]}
    cfg["tables"] = {"table2_whitebox_k3": dict(two), "timing": dict(two)}
    cfg["figures"] = {"figure4_pgd_strength": {"dataset": "digits", "K": 2, "methods": ["pdd"],
                                               "attacks": {"pgd": [0.1]}}}
    return cfg


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("reruns")
    (work / "tiny.yaml").write_text(yaml.safe_dump(_config()))
    snakemake(work, "all", "--configfile", "tiny.yaml")
    return work


def _planned(stdout: str) -> set[Job]:
    """(rule, first output) of every job a dry run plans."""
    jobs = set()
    for block in re.split(r"\n(?=\[[^\]]+\]\n)", stdout):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if rule:
            output = re.search(r"^\s+output: ([^,\s]+)", block, re.M)
            jobs.add((rule.group(1), output.group(1) if output else ""))
    return jobs


def _dry_run(work: Path, cfg: dict, *extra: str, python_prelude: str | None = None) -> set[Job]:
    (work / "changed.yaml").write_text(yaml.safe_dump(cfg))
    args = ["-s", str(SNAKEFILE), "--cores", "2", "all", "-n", *extra, "--configfile", "changed.yaml"]
    if python_prelude is None:
        proc = subprocess.run(["snakemake", *args], cwd=work, capture_output=True, text=True)
    else:  # the same snakemake CLI, after `python_prelude` ran in its process
        code = f"{python_prelude}\nimport sys\nfrom snakemake.cli import main\nsys.exit(main())"
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _planned(proc.stdout)


@pytest.fixture(scope="module")
def everything(finished_run: Path) -> set[Job]:
    """Every job of the DAG (a forced dry run)."""
    return _dry_run(finished_run, _config(), "--forceall")


def test_nothing_to_do_after_the_run(finished_run: Path, everything: set[Job]) -> None:
    assert _dry_run(finished_run, _config()) == set()
    assert len(everything) == 11  # the full DAG, for the comparisons below: one white-box job per model and suite


def test_pdd_alpha_reruns_only_pdd_models_and_what_reads_them(finished_run: Path, everything: set[Job]) -> None:
    cfg = _config()
    cfg["pdd"]["alpha"] = 0.8
    planned = _dry_run(finished_run, cfg)
    pdd = {job for job in everything if "/pdd/" in job[1]}
    # train; none, fgsm and pgd in one job; Figure 4's pgd in its own suite's job
    assert {rule for rule, _ in pdd} == {"train", "whitebox_fgsm_none_pgd", "whitebox_figure4_pgd_strength_pgd"}
    assert len(pdd) == 3
    assert planned == pdd | {
        ("table", "results/tables/table2_whitebox_k3.csv"),
        ("table", "results/tables/timing.csv"),
        ("figure", "results/figures/figure4_pgd_strength.png"),
        ("time_steps", "results/eval/digits/resnet18/K2/timing/seed0.json"),  # times PDD with the new alpha
        ("all", ""),
    }
    assert not any("/baseline/" in output for _, output in planned)


def test_one_attack_eps_reruns_only_the_jobs_running_it_and_its_table(finished_run: Path) -> None:
    cfg = _config()
    cfg["attacks"]["digits"]["fgsm"] = [0.2]
    assert _dry_run(finished_run, cfg) == {
        ("whitebox_fgsm_none_pgd", "results/eval/digits/resnet18/K2/baseline/seed0/whitebox/fgsm.json"),
        ("whitebox_fgsm_none_pgd", "results/eval/digits/resnet18/K2/pdd/seed0/whitebox/fgsm.json"),
        ("table", "results/tables/table2_whitebox_k3.csv"),
        ("figure", "results/figures/figure4_pgd_strength.png"),
        ("all", ""),
    }  # each model's white-box job (its suite's attacks run in one job, and it writes the clean accuracy Figure 4
    # draws, so the figure is redrawn); no training, no timing table, and Figure 4's own PGD job untouched


def _edited(module: str, line: str = "EDITED = 1") -> str:
    """A prelude that makes pdd.fingerprint read `module` as if `line` had been added to it."""
    return ("import pdd.fingerprint as f\n_read = f.source\n"
            f"f.source = lambda path: _read(path) + ('\\n{line}' if path == f.module_file({module!r}) else '')")


def test_loss_code_change_reruns_trainings_and_what_depends_on_them(finished_run: Path, everything: set[Job]) -> None:
    planned = _dry_run(finished_run, _config(), python_prelude=_edited("pdd.losses"))
    assert planned == {job for job in everything if job[0] != "prepare_data"}  # all but the data preparation


def test_table_code_change_reruns_only_tables_and_figures(finished_run: Path, everything: set[Job]) -> None:
    planned = _dry_run(finished_run, _config(), python_prelude=_edited("pdd.reports.tables"))
    assert planned == {job for job in everything if job[0] in ("table", "figure", "all")}
    planned = _dry_run(finished_run, _config(), python_prelude=_edited("pdd.reports.stronger_table"))
    assert planned == set()  # no requested output is built by that module


def test_a_comment_reruns_nothing(finished_run: Path) -> None:
    assert _dry_run(finished_run, _config(), python_prelude=_edited("pdd.losses", "# a comment")) == set()


def test_new_package_version_reruns_nothing(finished_run: Path) -> None:
    assert _dry_run(finished_run, _config(), python_prelude="import pdd; pdd.__version__ = '9.9.9'") == set()
    # and the same wrapper without any change plans nothing (the wrapper itself changes nothing)
    assert _dry_run(finished_run, _config(), python_prelude="import pdd") == set()


def test_attack_code_change_retrains_nothing(finished_run: Path, everything: set[Job]) -> None:
    """A statement in the attack code reran every job, trainings included (training reached attack code through a
    lazy import in pdd.validation); now the attack jobs and what reads them only."""
    planned = _dry_run(finished_run, _config(), python_prelude=_edited("pdd.evaluation.attacks"))
    assert planned and not any(rule in ("train", "prepare_data") for rule, _ in planned)
    assert {rule for rule, _ in planned} >= {"whitebox_fgsm_none_pgd", "whitebox_figure4_pgd_strength_pgd"}


def test_a_copied_project_reruns_nothing(tmp_path: Path) -> None:
    """A project folder (code, config, results and .snakemake) copied elsewhere plans nothing: no job's inputs,
    params or outputs hold an absolute path (config/paper_results.csv entered the tables as one)."""
    first = copy_of_repository(tmp_path / "first")
    cfg = tiny_config()
    cfg["attacks"] = {"digits": {"fgsm": [0.1]}}
    cfg["tables"] = {"table2_whitebox_k3": {"datasets": ["digits"], "K": [2], "methods": ["baseline"]}}
    cfg.pop("figures", None)
    (first / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    run = ["snakemake", "--cores", "2", "all", "--configfile", "tiny.yaml"]
    proc = subprocess.run(run, cwd=first, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(first, moved, symlinks=True)  # as `cp -a`: contents and times
    proc = subprocess.run([*run, "-n"], cwd=moved, capture_output=True, text=True)
    assert proc.returncode == 0 and _planned(proc.stdout) == set(), proc.stdout[-3000:]


def test_a_setting_reruns_only_the_jobs_whose_attacks_read_it(finished_run: Path) -> None:
    """Every attack job got every attack setting, so a C&W or JSMA setting reran FGSM and PGD, and every report's
    spec carried the protocol's iteration counts; now a job's params hold the settings its attacks read
    (`pdd.settings.attacks.settings_read`) and a report's what its builder reads (`Output.reads`), and this run has
    neither attack nor the stronger-attacks table."""
    cfg = _config()
    cfg["evaluation"]["cw"]["max_iter"] += 1
    cfg["evaluation"]["jsma_theta"] = 0.2
    assert _dry_run(finished_run, cfg) == set()
    cfg["evaluation"]["steps"] += 1  # PGD reads it: every job that runs PGD, and what reads them
    planned = _dry_run(finished_run, cfg)
    assert {rule for rule, _ in planned} == {"whitebox_fgsm_none_pgd", "whitebox_figure4_pgd_strength_pgd", "table",
                                              "figure", "all"}

