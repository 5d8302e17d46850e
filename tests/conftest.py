"""Shared fixtures: the repository paths and a tiny workflow config derived from the demo."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

# One torch thread in the test process: the tests' models are tiny, and on a shared 2-core machine thread
# hand-offs cost more than they give (a tiny forward + backward measured 0.02 s on one thread, 1.5 s on two).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    """Back to one thread after every test: in-process CLI calls (`--threads`) may have changed it."""
    yield
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow (workflow) test files first: `pytest -n 2` hands out whole files in this order, so the longest start
    first and the two workers finish together instead of one running the end-to-end file alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order kept otherwise


REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"


def tiny_config() -> dict:
    """The tiniest config (`.test/config/config.yaml`: the demo cut down to minutes, K=2, two epochs, 40 images,
    one parameter per attack, a short strong evaluation), as a fresh dict."""
    return yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow in `workdir` (outputs land there), capturing its output."""
    cmd = ["snakemake", "-s", str(SNAKEFILE), "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def copy_of_repository(dest: Path) -> Path:
    """The tracked files and the untracked ones git does not ignore (a fresh clone of this working tree)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    return dest
