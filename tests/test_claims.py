"""`table_claims` on result records built here: a difference built to be significant reads `holds`, one built to be
noise `not significant`, one built the other way `reversed`; files without per-image flags read `no test`; with two
seeds both levels of evidence are filled, the primary rows Holm-adjusted and the rest exploratory."""

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


def _record(method: str, robust: list[bool], attack: str = "pgd", param=0.02, flags: bool = True, seed: int = 0,
            **kw) -> dict:
    """An attack record of `method` on the same N images, all classified correctly before the attack."""
    record = {"dataset": "fashion_mnist", "K": 3, "method": method, "arch": "resnet18", "seed": seed, "model": "m",
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


PROTOCOL = [{"method": m, "versus": v, "evidence": "paper protocol"}
            for m, v in (("pdd_deg", "baseline"), ("pdd_deg", "adp"), ("deg", "baseline"))]


def test_significant_noise_and_reversed_differences(tmp_path: Path) -> None:
    noise = [i < 68 or i in (70, 71) for i in range(N)]   # vs PDD+DEG's first 70: 2 and 2 discordant
    df = _build(tmp_path, {"whitebox/pgd.json": [
        _record("baseline", _first(30)),
        _record("pdd_deg", _first(70)),      # keeps 40 more images than the baseline, loses none
        _record("adp", noise),
        _record("deg", _first(5)),           # loses 25 of the baseline's images, keeps none more
    ]}, {"primary": PROTOCOL})
    rows = df.set_index(["method", "versus"])
    assert rows.loc[("pdd_deg", "baseline"), "verdict_models"] == "holds"
    assert rows.loc[("pdd_deg", "adp"), "verdict_models"] == "not significant"
    assert rows.loc[("deg", "baseline"), "verdict_models"] == "reversed"
    assert set(df["verdict"]) == {"one seed: these models only"}             # no between-seed test with one seed
    assert df["p_method"].isna().all() and df["ci_low_method"].isna().all()
    # exact McNemar: b = 40, c = 0 -> 2 / 2^40; Holm over the 3 primary tests: the smallest times 3
    assert rows.loc[("pdd_deg", "baseline"), "p_models"] == pytest.approx(2 / 2 ** 40)
    assert rows.loc[("pdd_deg", "baseline"), "p_models_adjusted"] == pytest.approx(3 * 2 / 2 ** 40)
    assert rows.loc[("pdd_deg", "adp"), "p_models"] == 1.0                     # b = c = 2
    assert rows.loc[("pdd_deg", "baseline"), "difference"] == pytest.approx(40.0)   # points of the N images
    low, high = rows.loc[("pdd_deg", "baseline"), ["ci_low", "ci_high"]]
    assert 0 < low < 40 < high
    # the paper's Table 2 (Fashion-MNIST, PGD 0.02): PDD+DEG 69.92, baseline 63.40
    assert rows.loc[("pdd_deg", "baseline"), "paper_difference"] == pytest.approx(69.92 - 63.40)
    assert set(df["evidence"]) == {"paper protocol"}
    md = (tmp_path / "claims.md").read_text()
    assert "The paper's claims" in md and "one seed: these models only (these models: holds)" in md
    assert "these models: reversed" in md and "not significant" in md and "(Holm)" in md


def test_a_significance_level_is_applied_after_holm(tmp_path: Path) -> None:
    # b = 6, c = 0: p = 2 / 64 = 0.03125 < 0.05, but Holm over the two tests gives 0.0625 >= 0.05
    records = [_record("baseline", _first(30)), _record("pdd_deg", _first(36)), _record("adp", _first(36))]
    df = _build(tmp_path, {"whitebox/pgd.json": records}, {"primary": PROTOCOL})
    assert list(df["p_models"]) == pytest.approx([0.03125, 1.0])
    assert list(df["verdict_models"]) == ["not significant", "not significant"]
    df = _build(tmp_path, {"whitebox/pgd.json": records}, {"level": 0.1, "primary": PROTOCOL})
    assert list(df["verdict_models"]) == ["holds", "not significant"]
    df = _build(tmp_path, {"whitebox/pgd.json": records})                    # not primary: unadjusted, exploratory
    assert list(df["p_models_adjusted"]) == pytest.approx([0.03125, 1.0])
    assert list(df["verdict_models"]) == ["holds", "not significant"] and set(df["role"]) == {"exploratory"}


def test_worst_case_and_stronger_evidence_and_old_files(tmp_path: Path) -> None:
    strong = [_record(m, _first(k), "worst_case") for m, k in (("baseline", 10), ("pdd_deg", 50))]
    stronger = [_record(m, _first(k), "bim") for m, k in (("baseline", 20), ("pdd_deg", 21))]
    old = [_record(m, _first(k), flags=False) for m, k in (("baseline", 30), ("pdd_deg", 70))]
    twin = [_record(m, _first(k), "worst_case", 0.5) for m, k in (("baseline", 40), ("pdd_deg", 20))]
    df = _build(tmp_path, {"whitebox/pgd.json": old, "strong/evaluation.json": strong,
                           "table_stronger_attacks/bim.json": stronger, "strong_l2/evaluation.json": twin})
    by = df.set_index("evidence")
    assert by.loc["worst case L-inf", "verdict_models"] == "holds"
    assert by.loc["worst case L2", "verdict_models"] == "reversed"          # the L2 twin's file: an L2 row
    assert by.loc["worst case L2", "claim"] == "PDD+DEG more robust than Baseline at L2 eps 0.5"
    assert by.loc["stronger attack", "verdict_models"] == "not significant"  # b = 1, c = 0: p = 1
    assert by.loc["paper protocol", "verdict_models"] == "no test"          # no per-image flags: interval only
    assert by.loc["paper protocol", "ci_low"] > 0 and pd.isna(by.loc["paper protocol", "p_models"])
    # the default primary claims: PDD+DEG vs the baseline under the worst case, L-inf and L2
    assert sorted(df.loc[df["role"] == "primary", "evidence"]) == ["worst case L-inf", "worst case L2"]
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
    assert (row["method"], row["versus"], row["verdict_models"]) == ("pdd", "baseline", "holds")
    assert row["difference"] == pytest.approx(0.5)
    assert row["p_models"] == pytest.approx(2 / 2 ** 50)
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


def test_two_seeds_fill_both_levels_holm_over_primary_rows_only(tmp_path: Path) -> None:
    """Seeds 0 and 1: PDD+DEG keeps 40 and 30 more images of 100 than the baseline (no image the other way)."""
    import math

    from scipy import stats

    from pdd.api import compare_seeds
    from pdd.evaluation.statistics import holm, mcnemar_p

    kept = {("baseline", 0): 30, ("pdd_deg", 0): 70, ("baseline", 1): 30, ("pdd_deg", 1): 60,
            ("adp", 0): 32, ("adp", 1): 28}
    linf = [_record(m, _first(k), "worst_case", 0.02, seed=s) for (m, s), k in kept.items()]
    l2 = [_record(m, _first(k - 5), "worst_case", 0.5, seed=s) for (m, s), k in kept.items()]
    df = _build(tmp_path, {"strong/evaluation.json": linf, "strong_l2/evaluation.json": l2})
    rows = df.set_index(["method", "versus", "evidence"])
    main = rows.loc[("pdd_deg", "baseline", "worst case L-inf")]
    assert main["n_seeds"] == 2 and main["role"] == "primary"
    assert main["ours"] == pytest.approx((70 + 60) / 2) and main["ours_versus"] == pytest.approx(30)
    assert main["difference"] == pytest.approx(35.0)                              # mean of +40 and +30 points
    assert main["seed_sd"] == pytest.approx(10 / math.sqrt(2))                    # sd of (40, 30)
    assert main["p_models"] == pytest.approx(mcnemar_p(70, 0))                    # pooled discordant counts
    api = compare_seeds([_first(70), _first(60)], [_first(30), _first(30)])
    assert main["p_method"] == pytest.approx(api["p_value"])
    assert [main["ci_low_method"], main["ci_high_method"]] == pytest.approx([api["ci_low"], api["ci_high"]])
    primary = df[df["role"] == "primary"]
    assert sorted(primary["evidence"]) == ["worst case L-inf", "worst case L2"]
    assert list(primary["p_method_adjusted"]) == pytest.approx(holm(list(primary["p_method"])))
    assert list(primary["p_models_adjusted"]) == pytest.approx(holm(list(primary["p_models"])))
    exploratory = df[df["role"] == "exploratory"]
    assert set(exploratory["versus"]) == {"adp"} and len(exploratory) == 2
    assert list(exploratory["p_method_adjusted"]) == pytest.approx(list(exploratory["p_method"]))
    assert df["p_method"].notna().all() and df["p_models"].notna().all()        # both levels filled on every row
    assert set(df["verdict"]) <= {"holds", "reversed", "not significant"}      # the method's, with two seeds
    # seeds needed: the smallest k with 35 sqrt(k) / 7.07 > t(k - 1) at the row's Holm level (its rank among 2)
    rank = sorted(primary["p_method"]).index(main["p_method"])
    at = 0.05 / (2 - rank)
    k = next(k for k in range(2, 100) if 35 * math.sqrt(k) / (10 / math.sqrt(2)) > stats.t.isf(at / 2, k - 1))
    assert main["seeds_needed"] == k
    md = (tmp_path / "claims.md").read_text()
    assert "(exploratory)" in md and "Seeds needed" in md and "p, the method" in md and "p, these models" in md
