"""The README's demo tables come from one command over a results directory, with machine, torch and date."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pdd.reports.readme import BEGIN, END, block, machine, main, markers, update

from conftest import REPO

DEFENCES = """# Beyond the paper: ensemble-diversity defences

Accuracy (%) of the initially correct images.

| Method | Clean | Worst case |
|---|---|---|
| Baseline | 95.00 | 55.79 |
| DVERGE | **99.00** | **68.69** |

## Second grid

| a | b |
|---|---|
| 1 | 2 |
"""


@pytest.fixture
def results(tmp_path: Path) -> Path:
    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    (tables / "table_ensemble_defences.md").write_text(DEFENCES)
    os.utime(tables / "table_ensemble_defences.md", (1764676800, 1764676800))  # 2025-12-02 12:00 UTC
    return tmp_path / "results"


def test_block_is_the_tables_markdown_with_provenance(results: Path) -> None:
    text = block(results)
    lines = text.splitlines()
    assert lines[0].startswith("<!-- readme-tables: begin") and lines[-1] == END
    assert "Tables of 2025-12-02 (UTC)" in text and f"torch {torch.__version__}" in text and machine() in text
    assert "**Beyond the paper: ensemble-diversity defences**" in text and "# Beyond" not in text.replace("**", "")
    for row in ("| Baseline | 95.00 | 55.79 |", "| DVERGE | **99.00** | **68.69** |", "#### Second grid", "| 1 | 2 |"):
        assert row in lines
    assert "cores)" in machine()


def test_update_replaces_only_the_block(results: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    old = BEGIN.format(command="x") + "\n| old | table |\n" + END
    readme.write_text(f"# Title\n\nbefore\n\n{old}\n\nafter\n")
    assert main(["--results", str(results), "--update", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n\n") and text.endswith(f"{END}\n\nafter\n")
    assert "| old | table |" not in text and "| Baseline | 95.00 | 55.79 |" in text
    assert f"--results {results}" in text
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="expected one block"):
        update(readme, "x")


def test_a_named_block_is_replaced_beside_the_demo_block(results: Path, tmp_path: Path) -> None:
    begin, end = markers("fashion_mnist")
    assert begin.startswith("<!-- readme-tables fashion_mnist: begin")
    assert end == "<!-- readme-tables fashion_mnist: end -->"
    readme = tmp_path / "README.md"
    demo = BEGIN.format(command="x") + "\n| demo | table |\n" + END
    named = begin.format(command="y") + "\n| old | table |\n" + end
    readme.write_text(f"{demo}\n\nmiddle\n\n{named}\n")
    assert main(["--results", str(results), "--block", "fashion_mnist", "--update", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(f"{demo}\n\nmiddle\n\n") and "| old | table |" not in text  # the demo block untouched
    assert "--block fashion_mnist" in text and "| Baseline | 95.00 | 55.79 |" in text and text.endswith(f"{end}\n")
    assert main(["--results", str(results), "--block", "a b"]) == 1  # a name that cannot be a marker


def test_missing_results_are_an_error_not_an_empty_block(tmp_path: Path, capsys) -> None:
    assert main(["--results", str(tmp_path)]) == 1
    assert "run the workflow first" in capsys.readouterr().err


def test_readme_holds_one_block_and_states_the_spread() -> None:
    text = (REPO / "README.md").read_text()
    assert text.count(END) == 1 and text.count(BEGIN.split("{command}")[0]) == 1
    assert "python -m pdd.reports.readme --results results --update README.md" in text
    assert "differs by a few images" in text  # the spread between CPUs, stated; its measurement is history:
    assert "AMD EPYC" in (REPO / "CHANGELOG.md").read_text()


def test_update_keeps_the_tables_the_block_names(results: Path, tmp_path: Path) -> None:
    """`--update` without `--table` refreshes the tables the block's marker names, not the default list; a list
    that leaves one out is refused unless `--drop` names it."""
    tables = results / "tables"
    (tables / "table_claims.md").write_text("# Claims\n\n| claim | verdict |\n|---|---|\n| a | holds |\n")
    readme = tmp_path / "README.md"
    both = "--table table_ensemble_defences --table table_claims"
    readme.write_text(BEGIN.format(command=f"python -m pdd.reports.readme --results results {both}") + "\nold\n" + END)
    assert main(["--results", str(results), "--update", str(readme)]) == 0
    text = readme.read_text()
    assert "| Baseline | 95.00 | 55.79 |" in text and "| a | holds |" in text and both in text
    assert main(["--results", str(results), "--table", "table_claims", "--update", str(readme)]) == 1
    assert readme.read_text() == text  # refused: nothing written
    assert main(["--results", str(results), "--table", "table_claims", "--drop", "table_ensemble_defences",
                 "--update", str(readme)]) == 0
    assert "| Baseline |" not in readme.read_text() and "| a | holds |" in readme.read_text()
