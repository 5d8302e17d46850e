"""The output registry: every output declared once, planned from its config entry, built by its builder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pdd.plan import outputs
from pdd.plan.checks import problems
from pdd.plan.outputs import OUTPUTS
from pdd.reports.strong_table import build_strong_table
from pdd.reports.stronger_table import gain_ranges, gains
from pdd.reports.tables import read_results

from conftest import REPO, snakemake

PAPER = REPO / "config" / "paper_results.csv"
DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
PAPER_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_every_output_has_a_builder_and_known_needs() -> None:
    for name, output in outputs.OUTPUTS.items():
        assert output.kind in ("table", "figure")
        assert callable(output.build()), name
        assert set(output.needs) <= set(outputs.NEEDS), name
        assert output.title and output.caption, name


@pytest.mark.parametrize("config", [DEMO, PAPER_CONFIG], ids=["demo", "paper"])
def test_configs_request_every_output(config: dict) -> None:
    """The demo and the paper config build every output of the registry (the paper's and the pipeline's own)."""
    assert problems(config) == []
    assert set(outputs.requested(config)) == set(outputs.OUTPUTS)


def test_unknown_output_names_are_one_clear_problem() -> None:
    bad = {**DEMO, "tables": {**DEMO["tables"], "table9_magic": DEMO["tables"]["table1_entropy"]}}
    found = problems(bad)
    assert len(found) == 1 and "tables.table9_magic: unknown table" in found[0]
    figure_as_table = {**DEMO, "tables": {"figure1_gradcam": DEMO["tables"]["table1_entropy"]}}
    assert "tables.figure1_gradcam: unknown table" in problems(figure_as_table)[0]


def test_each_problem_is_reported_once() -> None:
    """M <= K touches several outputs but is one problem."""
    bad = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    bad["pdd"]["intervals"][5] = 4
    found = problems(bad)
    assert found == ["pdd.intervals: PDD needs more intervals than members (M > K), got M=4, K=5"]


def test_intervals_figure_trains_one_pdd_ensemble_per_m() -> None:
    ensembles = outputs.ensembles(DEMO, "figure_intervals")
    assert [m for _, _, m, _ in ensembles] == ["pdd-M4", "pdd-M6", "pdd", "pdd-M20", "pdd-M40"]  # M=10 is 'pdd'
    assert outputs.variant("pdd-M20") == ("pdd", 20) and outputs.variant("pdd_deg") == ("pdd_deg", None)
    files = outputs.inputs(DEMO, "figure_intervals")
    assert "results/eval/digits/resnet18/K3/pdd-M4/seed0/figure_intervals/pgd.json" in files
    assert "results/eval/digits/resnet18/K3/pdd-M4/seed0/diversity/per_image.csv" in files


def test_stronger_table_reads_both_iteration_counts() -> None:
    files = outputs.inputs(DEMO, "table_stronger_attacks")
    for attack in ("bim", "pgd", "cw"):
        assert f"results/eval/digits/resnet18/K3/pdd_deg/seed0/whitebox/{attack}.json" in files
        assert f"results/eval/digits/resnet18/K3/pdd_deg/seed0/table_stronger_attacks/{attack}.json" in files
    assert "results/eval/digits/resnet18/K3/pdd_deg/seed0/whitebox/fgsm.json" not in files  # not in its list


def _records(path: Path, method: str, attack: str, param, value: float) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"dataset": "digits", "K": 3, "method": method, "seed": 0, "threat": "whitebox",
                                 "attack": attack, "param": param, "metric": "accuracy_pct", "value": value}]))
    return str(path)


def test_stronger_gain_range_by_hand(tmp_path: Path) -> None:
    """PDD+DEG 60 / 40 under PGD / BIM at 30 steps, baseline 30 / 35, ADP 50 / 20: gains over the baseline
    +30 and +5 points (range 5 to 30), over ADP +10 and +20 (range 10 to 20); relative +100% over the baseline."""
    values = {("pdd_deg", "pgd"): 60, ("pdd_deg", "bim"): 40, ("baseline", "pgd"): 30, ("baseline", "bim"): 35,
              ("adp", "pgd"): 50, ("adp", "bim"): 20}
    files = []
    for (method, attack), v in values.items():
        files.append(_records(tmp_path / method / "table_stronger_attacks" / f"{attack}.json", method, attack, 0.1, v))
        files.append(_records(tmp_path / method / "whitebox" / f"{attack}.json", method, attack, 0.1, v + 10))
    spec = {"name": "table_stronger_attacks", "methods": ["baseline", "adp", "pdd_deg"],
            "protocol": {"steps": 30}, "standard": {"steps": 10}}
    OUTPUTS["table_stronger_attacks"].run(files, spec, str(tmp_path / "t"), str(PAPER))
    df = pd.read_csv(tmp_path / "t.csv")
    ranges = df[(df["kind"] == "gain_range") & (df["strength"] == "stronger")].set_index("over")
    assert (ranges.loc["baseline", "min"], ranges.loc["baseline", "max"]) == (5, 30)
    assert (ranges.loc["adp", "min"], ranges.loc["adp", "max"]) == (10, 20)
    assert (ranges.loc["baseline", "paper_min"], ranges.loc["baseline", "paper_max"]) == (14, 50)
    g = df[(df["kind"] == "gain") & (df["over"] == "baseline") & (df["attack"] == "pgd")
           & (df["strength"] == "stronger")]
    assert g["gain_relative_pct"].iloc[0] == pytest.approx(100.0)
    acc = df[(df["kind"] == "accuracy") & (df["attack"] == "pgd") & (df["method"] == "adp")].set_index("strength")
    assert acc.loc["stronger", "iterations"] == 30 and acc.loc["standard", "iterations"] == 10
    md = (tmp_path / "t.md").read_text()
    assert "+5.00 to +30.00 | 14 to 50" in md


def test_gains_skip_missing_methods() -> None:
    df = pd.DataFrame([{"dataset": "d", "K": 3, "attack": "pgd", "param": 0.1, "strength": "stronger",
                        "method": "pdd_deg", "value": 50.0}])
    assert gains(df).empty and gain_ranges(gains(df)).empty


def test_strong_table_drop_compares_the_same_images(tmp_path: Path) -> None:
    """The paper-protocol column is the strong run's own PGD-10 (same images), not a result over other images."""
    base = {"dataset": "digits", "K": 3, "method": "baseline", "seed": 0, "metric": "accuracy_pct",
            "threat": "whitebox"}
    records = [{**base, "attack": "none", "param": None, "value": 98.0},
               {**base, "attack": "pgd_10", "param": 0.1, "value": 80.0, "steps": 10, "restarts": 1},
               {**base, "attack": "pgd_50", "param": 0.1, "value": 60.0, "steps": 50, "restarts": 1},
               {**base, "attack": "worst_case", "param": 0.1, "value": 55.0}]
    path = tmp_path / "strong.json"
    path.write_text(json.dumps(records))
    df = build_strong_table(read_results([path]), PAPER, {}, tmp_path / "s.csv", tmp_path / "s.md")
    protocol = df[(df["attack"] == "pgd") & (df["metric"] == "accuracy_pct")]
    assert protocol["value"].tolist() == [80.0]
    md = (tmp_path / "s.md").read_text()
    assert "| 80.00 | **55.00** | -25.00 |" in md


def test_one_table_config_plans_only_its_own_jobs(tmp_path: Path) -> None:
    """A --configfile defines the run by itself: one table on digits plans its 3 trainings, nothing of the paper."""
    cfg = {k: DEMO[k] for k in ("data_root", "device", "seeds", "threads", "training", "datasets", "model",
                                "surrogates", "pdd", "deg", "adp", "adversarial_training", "evaluation",
                                "diversity")}
    cfg["attacks"] = {"digits": {"pgd": [0.1]}}
    cfg["tables"] = {
        "table2_whitebox_k3": {"datasets": ["digits"], "K": [3], "methods": ["baseline", "adp", "pdd_deg"]}
    }
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = snakemake(tmp_path, "all", "-n", "--configfile", str(path)).stdout
    models = {line.strip() for line in out.splitlines() if "ensemble.pt" in line and "output:" in line}
    assert len(models) == 3 and all("digits/resnet18/K3" in m for m in models)
    assert "cifar100" not in out and "tiny_imagenet" not in out and "fashion_mnist" not in out
