"""The package's shape: the workflow plans without torch, the wings import only what their rules allow, and no
module imports itself back through others (docs/architecture.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pdd.methods import METHODS, get_method
from pdd.plan.dag import jobs_per_output, snakemake_dag
from pdd.plan.outputs import OUTPUTS, main_file, requested
from pdd.plan.paths import job_of
from pdd.settings.methods import BUILTIN, METHOD_INFO, MethodInfo

from conftest import REPO

PACKAGE = REPO / "pdd"
NEW_RULES: set[str] = set()  # rules added after tests/data/jobs_per_output_demo.json was recorded
BLOCK = 'raise ImportError("blocked by tests/test_architecture.py: the workflow must plan without {name}")\n'


def blocked_path(tmp_path: Path, *names: str) -> str:
    """A PYTHONPATH whose first directory holds packages `names` that raise ImportError on import, then the repo."""
    for name in names:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text(BLOCK.format(name=name))
    return os.pathsep.join([str(tmp_path), str(REPO)])


def test_blocked_torch_really_raises(tmp_path: Path) -> None:
    """The stand-in below works: `import torch` fails in such a process (else the next test proves nothing)."""
    env = {**os.environ, "PYTHONPATH": blocked_path(tmp_path, "torch")}
    proc = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked by tests/test_architecture.py" in proc.stderr


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/demo.yaml"])
def test_snakemake_plans_without_torch(tmp_path: Path, configfile: str) -> None:
    """`snakemake -n all` plans the paper's and the demo's DAG in a process where importing torch raises."""
    env = {**os.environ, "PYTHONPATH": blocked_path(tmp_path / "path", "torch")}
    proc = subprocess.run(["snakemake", "-n", "all", "--configfile", str(REPO / configfile), "-s",
                           str(REPO / "Snakefile"), "-d", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "This was a dry-run" in proc.stdout


def test_snakemake_lints_without_torch(tmp_path: Path) -> None:
    """`snakemake --lint` loads the workflow without torch too."""
    env = {**os.environ, "PYTHONPATH": blocked_path(tmp_path / "path", "torch")}
    proc = subprocess.run(["snakemake", "--lint", "--configfile", str(REPO / "config" / "demo.yaml"), "-s",
                           str(REPO / "Snakefile"), "-d", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]


def test_method_info_describes_each_method() -> None:
    """The torch-free facts of every built-in method (pdd.settings.methods) are those of the method itself."""
    assert set(METHODS) >= BUILTIN and set(METHOD_INFO) == BUILTIN
    for name in BUILTIN:
        assert MethodInfo.of(get_method(name)) == METHOD_INFO[name], name


def test_cost_table_jobs_are_those_recorded_before_snakemake_owned_the_dag(tmp_path: Path) -> None:
    """The cost table's jobs per output, read from Snakemake's DAG (pdd.plan.dag), equal the list the package's own
    second DAG (pdd.plan.jobs before this change) gave on the demo: tests/data/jobs_per_output_demo.json, recorded
    by running that code. Jobs of rules added since (NEW_RULES) are left out of the comparison."""
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    names = [n for n in requested(demo) if "jobs" not in OUTPUTS[n].needs]
    found = jobs_per_output(snakemake_dag(REPO / "config" / "demo.yaml", tmp_path), {n: main_file(n) for n in names})
    recorded = json.loads((REPO / "tests" / "data" / "jobs_per_output_demo.json").read_text())
    assert {n: [b for b in jobs if job_of(b)[0] not in NEW_RULES] for n, jobs in found.items()} == recorded
