"""`snakemake --lint` on the workflow (demo config): every rule has a log and a conda env under envs/,
and no Snakefile has a finding (absolute paths, paths glued with '+', functions mixed with rules)."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import REPO, SNAKEFILE

SNAKEFILES = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk"))]


@pytest.fixture(scope="module")
def lint(tmp_path_factory) -> subprocess.CompletedProcess:
    cwd = tmp_path_factory.mktemp("lint")
    return subprocess.run(["snakemake", "-s", str(SNAKEFILE), "--lint",
                           "--configfile", str(REPO / "config" / "demo.yaml")],
                          cwd=cwd, capture_output=True, text=True)


def _findings(proc: subprocess.CompletedProcess) -> dict[str, list[str]]:
    """'snakefile <path>' or 'rule <name>' -> the titles of its lints, from the text report."""
    found: dict[str, list[str]] = {}
    for section in re.split(r"^(?=Lints for )", proc.stdout + proc.stderr, flags=re.M)[1:]:
        kind, name = re.match(r"Lints for (snakefile|rule) (\S+)", section).groups()
        key = f"{kind} {name.rstrip(':')}"
        found[key] = re.findall(r"^    \* (.+)$", section, re.M)
    return found


def test_lint_ran(lint: subprocess.CompletedProcess) -> None:
    out = lint.stdout + lint.stderr
    assert "Traceback" not in out and ("Lints for" in out or "Congratulations" in out), out[-3000:]


def test_every_rule_has_a_log_and_a_conda_env(lint: subprocess.CompletedProcess) -> None:
    rules = {key: titles for key, titles in _findings(lint).items() if key.startswith("rule ")}
    assert rules == {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().parent == REPO / "envs" and (smk.parent / env).resolve().exists()


@pytest.mark.parametrize("snakefile", SNAKEFILES)
def test_snakefile_has_no_findings(lint: subprocess.CompletedProcess, snakefile: str) -> None:
    assert _findings(lint).get(f"snakefile {REPO / snakefile}", []) == []


def test_lint_is_clean(lint: subprocess.CompletedProcess) -> None:
    assert lint.returncode == 0 and (
        "Congratulations, your workflow is in a good condition!" in lint.stdout + lint.stderr
    )
