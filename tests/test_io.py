"""Atomic writes: an interrupted job leaves neither a half-written output nor a temporary file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pdd.io import atomic_path, write_text


def test_failed_block_leaves_nothing(tmp_path: Path) -> None:
    write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert (tmp_path / "out.txt").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_sigterm_during_a_pdd_command_removes_the_temporary_file(tmp_path: Path) -> None:
    """The `pdd` entry point turns SIGTERM into an exit through Python (Snakemake and SLURM cancel with it)."""
    script = f"""
import os, signal
from pdd.cli import main
from pdd.io import atomic_path
@main.command("hang")
def hang():
    with atomic_path({str(tmp_path / "out.txt")!r}) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pause()
main(["hang"])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert list(tmp_path.iterdir()) == []  # neither the output nor `.out.txt.*.tmp`
