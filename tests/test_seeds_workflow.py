"""Seeds through the workflow (issue 33): the tiny config with table_claims asking for its own two seeds trains
both seeds of the primary claims' methods only, and its claims table fills both levels of evidence, Holm over
the primary rows, the rest exploratory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from pdd.evaluation.statistics import holm

from conftest import REPO, snakemake, tiny_config


def seeds_config() -> dict:
    """The tiny config cut to table_claims (seeds 0 and 1 for its primary claims) and the L2 strong table it
    borrows the L2 worst case from (seed 0 only: seed 1's L2 jobs come from table_claims' seeds)."""
    cfg = tiny_config()
    ensemble = {"datasets": ["digits"], "K": [2], "methods": ["baseline", "pdd_deg"]}
    cfg["tables"] = {"table_claims": {**ensemble, "seeds": [0, 1]}, "table_strong_evaluation_l2": dict(ensemble)}
    cfg.pop("figures", None)
    cfg.pop("timing", None)
    return cfg


def test_claims_seeds_plan_only_the_primary_claims_second_seed() -> None:
    from pdd.plan.outputs import inputs

    files = inputs(seeds_config(), "table_claims")
    seed1 = {f.split("/seed1/")[1] for f in files if "/seed1/" in f}
    assert seed1 == {"whitebox/none.json", "strong/evaluation.json", "strong_l2/evaluation.json"}
    assert any("/seed0/whitebox/pgd.json" in f for f in files)             # the paper protocol: seed 0 only
    assert any("/seed0/diversity/per_image.csv" in f for f in files)       # the entropy rows: seed 0 only


def test_an_output_with_its_own_seeds_reads_every_need_at_them() -> None:
    from pdd.plan.outputs import ensembles, inputs

    cfg = seeds_config()
    cfg["tables"]["table_strong_evaluation_l2"]["seeds"] = [3, 4]
    assert {s for *_, s in ensembles(cfg, "table_strong_evaluation_l2")} == {3, 4}
    files = inputs(cfg, "table_strong_evaluation_l2")
    assert files and all("/seed3/" in f or "/seed4/" in f for f in files)
    # table_claims borrows the L2 worst case of seeds 0 and 1 from it, moved to its own seeds
    claims = inputs(cfg, "table_claims")
    assert {f for f in claims if "strong_l2" in f} == {
        f"results/eval/digits/resnet18/K2/{m}/seed{s}/strong_l2/evaluation.json"
        for m in ("baseline", "pdd_deg") for s in (0, 1)}


def test_primary_claims_must_name_the_tables_methods() -> None:
    from pdd.plan.checks import problems, schema_problems

    cfg = seeds_config()
    assert problems(cfg) == []
    cfg["tables"]["table_claims"]["primary"] = [{"method": "adp", "versus": "baseline", "evidence": "entropy"}]
    assert problems(cfg) == ["tables.table_claims.primary: ['adp'] not among the table's methods "
                             "['baseline', 'pdd_deg']"]
    cfg["tables"]["table_claims"]["primary"][0]["evidence"] = "worst case L3"
    found = schema_problems(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml")
    assert len(found) == 1 and "tables.table_claims.primary" in found[0] and "worst case L3" in found[0], found


@pytest.mark.slow
def test_two_seeds_through_the_workflow(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(seeds_config()))
    snakemake(tmp_path, "all")
    models = tmp_path / "results" / "models" / "digits" / "resnet18" / "K2"
    trained = sorted(str(p.relative_to(models).parent) for p in models.glob("*/seed*/ensemble.pt"))
    assert trained == ["baseline/seed0", "baseline/seed1", "pdd_deg/seed0", "pdd_deg/seed1"]
    claims = pd.read_csv(tmp_path / "results" / "tables" / "table_claims.csv")
    primary = claims[claims["role"] == "primary"]
    assert sorted(primary["evidence"]) == ["worst case L-inf", "worst case L2"]
    assert (primary["n_seeds"] == 2).all()
    assert primary[["p_models", "p_method", "ci_low_method", "ci_high_method", "seed_sd"]].notna().all().all()
    assert list(primary["p_method_adjusted"]) == pytest.approx(holm(list(primary["p_method"])))
    assert set(primary["verdict"]) <= {"holds", "reversed", "not significant"}
    exploratory = claims[claims["role"] == "exploratory"]
    assert set(exploratory["evidence"]) == {"paper protocol", "entropy"} and (exploratory["n_seeds"] == 1).all()
    assert (exploratory["verdict"] == "one seed: these models only").all()
    assert list(exploratory["p_models_adjusted"]) == pytest.approx(list(exploratory["p_models"]))
    md = (tmp_path / "results" / "tables" / "table_claims.md").read_text()
    assert "(exploratory)" in md and "(Holm)" in md
