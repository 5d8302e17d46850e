"""Table assembly from hand-written result files: paper column, mean and std over seeds, timing ratios."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from pdd.tables import build_table, read_results, timing_results

PAPER = REPO / "config" / "paper_results.csv"


def _record(seed: int, value: float, attack: str = "none", param=None, dataset: str = "fashion_mnist", **kw) -> dict:
    return {"dataset": dataset, "K": 3, "method": "baseline", "seed": seed, "threat": "whitebox", "attack": attack,
            "param": param, "metric": "accuracy_pct", "value": value, "accuracy_all": value - 5, **kw}


def _write(tmp_path: Path, name: str, records: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_mean_std_over_seeds_and_paper_column(tmp_path: Path) -> None:
    files = [_write(tmp_path, "s0.json", [_record(0, 80.0), _record(0, 60.0, "pgd", 0.02)]),
             _write(tmp_path, "s1.json", [_record(1, 90.0), _record(1, 70.0, "pgd", 0.02)])]
    df = build_table("table2_whitebox_k3", read_results(files), PAPER, {}, tmp_path / "t.csv", tmp_path / "t.md")
    clean = df[df["attack"] == "none"].iloc[0]
    assert clean["value"] == pytest.approx(85.0)
    assert clean["std"] == pytest.approx(7.0710678)        # sample std of 80, 90
    assert clean["n_seeds"] == 2
    assert clean["paper"] == pytest.approx(94.37)          # Table 2, Fashion-MNIST, baseline, no attack
    assert clean["accuracy_all"] == pytest.approx(80.0)
    pgd = df[df["attack"] == "pgd"].iloc[0]
    assert pgd["paper"] == pytest.approx(63.4)             # Table 2, Fashion-MNIST, baseline, PGD 0.02
    md = (tmp_path / "t.md").read_text()
    assert "| 85.00 ± 7.07 (94.37) |" in md and "| 65.00 ± 7.07 (63.40) |" in md
    written = pd.read_csv(tmp_path / "t.csv")
    assert list(written["table"].unique()) == ["table2_whitebox_k3"] and len(written) == 2


def test_single_seed_has_no_std_and_stand_in_reference(tmp_path: Path) -> None:
    files = [_write(tmp_path, "r.json", [_record(0, 97.5, dataset="digits"), _record(0, 50.0, "jsma", 0.1, "digits")])]
    df = build_table("table2_whitebox_k3", read_results(files), PAPER, {"digits": "fashion_mnist"},
                     tmp_path / "t.csv", tmp_path / "t.md")
    assert df["std"].isna().all()
    assert df.set_index("attack")["paper"].to_dict() == pytest.approx({"none": 94.37, "jsma": 62.17})
    md = (tmp_path / "t.md").read_text()
    assert "digits -> fashion_mnist" in md and "| 97.50 (94.37) |" in md


def test_row_without_paper_value(tmp_path: Path) -> None:
    files = [_write(tmp_path, "r.json", [_record(0, 40.0, "fgsm", 0.3)])]
    df = build_table("table2_whitebox_k3", read_results(files), PAPER, {}, tmp_path / "t.csv", tmp_path / "t.md")
    assert df["paper"].isna().all()


def test_timing_from_training_logs(tmp_path: Path) -> None:
    logs = []
    for method, seconds in [("baseline", [3.0, 2.0, 2.0, 9.0]), ("deg", [5.0, 5.0, 6.0, 5.0])]:
        path = tmp_path / f"{method}.csv"
        pd.DataFrame({"dataset": "cifar100", "arch": "resnet18", "K": 3, "method": method, "seed": 0,
                      "epoch": range(1, 5), "seconds": seconds}).to_csv(path, index=False)
        logs.append(path)
    df = build_table("timing", timing_results(logs), PAPER, {}, tmp_path / "t.csv", tmp_path / "t.md")
    by = df.set_index("method")
    assert by.loc["baseline", "value"] == pytest.approx(2.5)      # median of 2, 2, 3, 9
    assert by.loc["deg", "value"] == pytest.approx(5.0)
    assert by.loc["deg", "ratio"] == pytest.approx(2.0)
    assert by.loc["deg", "paper"] == pytest.approx(703) and by.loc["deg", "paper_ratio"] == pytest.approx(703 / 54)
    assert "| cifar100 | 3 | deg | 5.00 | 2.00 | 703 | 13.02 |" in (tmp_path / "t.md").read_text()


def test_entropy_table_uses_four_decimals(tmp_path: Path) -> None:
    rec = {"dataset": "cifar100", "K": 3, "method": "pdd", "seed": 0, "threat": "none", "attack": "none",
           "param": None, "metric": "entropy", "value": 0.25}
    df = build_table("table1_entropy", read_results([_write(tmp_path, "e.json", [rec])]), PAPER, {},
                     tmp_path / "t.csv", tmp_path / "t.md")
    assert df["paper"].iloc[0] == pytest.approx(0.2429)
    assert "0.2500 (0.2429)" in (tmp_path / "t.md").read_text()
