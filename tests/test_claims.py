"""`table_claims` on result records built here: a difference built to be significant reads `holds`, one built to be
noise `not significant`, one built the other way `reversed`; files without per-image flags read `no test`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pdd.evaluation.records import image_fields, pack_flags
from pdd.plan import outputs
from pdd.reports.claims_table import build

from conftest import REPO

PAPER = REPO / "config" / "paper_results.csv"
N = 100
IMAGES = image_fields(range(N), 10_000)


def _record(method: str, robust: list[bool], attack: str = "pgd", param=0.02, flags: bool = True, **kw) -> dict:
    """An attack record of `method` on the same N images, all classified correctly before the attack."""
    record = {"dataset": "fashion_mnist", "K": 3, "method": method, "arch": "resnet18", "seed": 0, "model": "m",
              "surrogate": None, "threat": "whitebox", "attack": attack, "param": param, "metric": "accuracy_pct",
              "value": 100.0 * sum(robust) / N, "n_images": N, "n_clean_correct": N, "n_robust": sum(robust), **kw}
    if flags:
        record.update(robust_flags=pack_flags(robust), **IMAGES)
    return record


def _first(k: int) -> list[bool]:
    return [i < k for i in range(N)]


def _build(tmp_path: Path, files: dict[str, list[dict]], spec: dict | None = None) -> pd.DataFrame:
    paths = []
    for name, records in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records))
        paths.append(str(path))
    build(paths, {"name": "table_claims", **(spec or {})}, str(tmp_path / "claims"), str(PAPER),
          output=outputs.OUTPUTS["table_claims"])
    return pd.read_csv(tmp_path / "claims.csv")


def test_significant_noise_and_reversed_differences(tmp_path: Path) -> None:
    noise = [i < 68 or i in (70, 71) for i in range(N)]   # vs PDD+DEG's first 70: 2 and 2 discordant
    df = _build(tmp_path, {"whitebox/pgd.json": [
        _record("baseline", _first(30)),
        _record("pdd_deg", _first(70)),      # keeps 40 more images than the baseline, loses none
        _record("adp", noise),
        _record("deg", _first(5)),           # loses 25 of the baseline's images, keeps none more
    ]})
    rows = df.set_index(["method", "versus"])
    assert rows.loc[("pdd_deg", "baseline"), "verdict"] == "holds"
    assert rows.loc[("pdd_deg", "adp"), "verdict"] == "not significant"
    assert rows.loc[("deg", "baseline"), "verdict"] == "reversed"
    # exact McNemar: b = 40, c = 0 -> 2 / 2^40; Holm over 3 tests: the smallest times 3
    assert rows.loc[("pdd_deg", "baseline"), "p_value"] == pytest.approx(2 / 2 ** 40)
    assert rows.loc[("pdd_deg", "baseline"), "p_holm"] == pytest.approx(3 * 2 / 2 ** 40)
    assert rows.loc[("pdd_deg", "adp"), "p_value"] == 1.0                     # b = c = 2
    assert rows.loc[("pdd_deg", "baseline"), "difference"] == pytest.approx(40.0)   # points of the N images
    low, high = rows.loc[("pdd_deg", "baseline"), ["ci_low", "ci_high"]]
    assert 0 < low < 40 < high
    # the paper's Table 2 (Fashion-MNIST, PGD 0.02): PDD+DEG 69.92, baseline 63.40
    assert rows.loc[("pdd_deg", "baseline"), "paper_difference"] == pytest.approx(69.92 - 63.40)
    assert set(df["evidence"]) == {"paper protocol"}
    md = (tmp_path / "claims.md").read_text()
    assert "The paper's claims" in md and "**holds**" in md and "reversed" in md and "not significant" in md


def test_a_significance_level_is_applied_after_holm(tmp_path: Path) -> None:
    # b = 6, c = 0: p = 2 / 64 = 0.03125 < 0.05, but Holm over the two tests gives 0.0625 >= 0.05
    records = [_record("baseline", _first(30)), _record("pdd_deg", _first(36)), _record("adp", _first(36))]
    df = _build(tmp_path, {"whitebox/pgd.json": records})
    assert list(df["p_value"]) == pytest.approx([0.03125, 1.0])
    assert list(df["verdict"]) == ["not significant", "not significant"]
    df = _build(tmp_path, {"whitebox/pgd.json": records}, {"level": 0.1})
    assert list(df["verdict"]) == ["holds", "not significant"]


def test_worst_case_and_stronger_evidence_and_old_files(tmp_path: Path) -> None:
    strong = [_record(m, _first(k), "worst_case") for m, k in (("baseline", 10), ("pdd_deg", 50))]
    stronger = [_record(m, _first(k), "bim") for m, k in (("baseline", 20), ("pdd_deg", 21))]
    old = [_record(m, _first(k), flags=False) for m, k in (("baseline", 30), ("pdd_deg", 70))]
    twin = [_record(m, _first(k), "worst_case", 0.5) for m, k in (("baseline", 40), ("pdd_deg", 20))]
    df = _build(tmp_path, {"whitebox/pgd.json": old, "strong/evaluation.json": strong,
                           "table_stronger_attacks/bim.json": stronger, "strong_l2/evaluation.json": twin})
    by = df.set_index("evidence")
    assert by.loc["worst case L-inf", "verdict"] == "holds"
    assert by.loc["worst case L2", "verdict"] == "reversed"                  # the L2 twin's file: an L2 row
    assert by.loc["worst case L2", "claim"] == "PDD+DEG more robust than Baseline at L2 eps 0.5"
    assert by.loc["stronger attack", "verdict"] == "not significant"        # b = 1, c = 0: p = 1
    assert by.loc["paper protocol", "verdict"] == "no test"                 # no per-image flags: interval only
    assert by.loc["paper protocol", "ci_low"] > 0 and pd.isna(by.loc["paper protocol", "p_value"])
    md = (tmp_path / "claims.md").read_text()
    assert "+14 to +50" in md and "Ours: worst case (L2)" in md


def test_entropy_ordering_from_per_image_terms(tmp_path: Path) -> None:
    records = [{"dataset": "digits", "K": 3, "method": m, "seed": 0, "threat": "none", "attack": "none",
                "param": None, "metric": "entropy", "value": v, "n_images": N} for m, v in (("baseline", 0.0),
                                                                                            ("pdd", 0.5))]
    for name, method, correct in (("b", "baseline", [3] * N), ("p", "pdd", [2] * 50 + [3] * 50)):
        pd.DataFrame({"dataset": "digits", "K": 3, "method": method, "seed": 0, "image": range(N),
                      "members_correct": correct}).to_csv(tmp_path / f"{name}_per_image.csv", index=False)
    path = tmp_path / "diversity" / "entropy.json"
    path.parent.mkdir()
    path.write_text(json.dumps(records))
    build([str(path), str(tmp_path / "b_per_image.csv"), str(tmp_path / "p_per_image.csv")],
          {"name": "table_claims", "reference": {"digits": "cifar100"}}, str(tmp_path / "claims"), str(PAPER))
    df = pd.read_csv(tmp_path / "claims.csv")
    row = df.iloc[0]
    # eq. 5 terms: PDD min(2, 1) / (3 - 2) = 1 on 50 images, 0 elsewhere; baseline 0: mean difference 0.5;
    # sign test b = 50, c = 0
    assert (row["method"], row["versus"], row["verdict"]) == ("pdd", "baseline", "holds")
    assert row["difference"] == pytest.approx(0.5)
    assert row["p_value"] == pytest.approx(2 / 2 ** 50)
    assert row["paper_method_value"] == pytest.approx(0.2429)      # Table 1, CIFAR-100, K = 3
    assert "stands in for the paper's CIFAR-100" in (tmp_path / "claims.md").read_text()


def test_demo_plans_the_claims_from_the_registry() -> None:
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    files = outputs.inputs(config, "table_claims")
    assert any("/pdd_deg/seed0/table_stronger_attacks/" in f for f in files)   # borrowed from the stronger table
    assert any("/deg/seed0/strong/evaluation.json" in f for f in files)
    assert not any("/pdd/seed0/strong/" in f for f in files)                  # PDD only enters the entropy claims
    assert any("/pdd/seed0/diversity/per_image.csv" in f for f in files)
    assert not any("/deg/seed0/whitebox/fgsm.json" in f for f in files)       # only the PGD attacks
