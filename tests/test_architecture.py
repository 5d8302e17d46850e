"""The package's shape: the workflow plans without torch, the wings import only what their rules allow, and no
module imports itself back through others (docs/architecture.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pdd.methods import METHODS, get_method
from pdd.settings.methods import BUILTIN, METHOD_INFO, MethodInfo

from conftest import REPO

PACKAGE = REPO / "pdd"
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
