"""The tiny config (.test/config/config.yaml) end to end: every job of `all`, then the report, the model cards
and the README's tables from the same results (its own file so that `pytest -n 2 --dist loadfile` runs it beside
the rest)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from html import escape
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pdd.plan.outputs import OUTPUTS, requested

from conftest import snakemake, tiny_config


@pytest.mark.slow
def test_tiny_workflow_end_to_end(tmp_path: Path) -> None:
    """The catalog's `snakemake --directory .test`: .test/config/config.yaml as the working directory's default
    config (no --configfile), every job run; then the report, the model cards and the README's tables. The
    working directory and the data root have a space and a `;` in their names: every path reaches the jobs'
    shell commands quoted (an unquoted one would split, or run `x` as a command)."""
    tiny_workdir = tmp_path / "work dir"
    (tiny_workdir / "config").mkdir(parents=True)
    cfg = tiny_config()
    cfg["data_root"] = "my data;x"
    (tiny_workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(tiny_workdir, "all")
    tables = tiny_workdir / "results" / "tables"
    t2 = pd.read_csv(tables / "table2_whitebox_k3.csv")
    clean = t2[t2["attack"] == "none"].set_index("method")
    assert set(clean.index) == {"baseline", "pdd"}
    assert (clean["value"] > 50).all() and (clean["value"] <= 100).all()  # 2 epochs on digits
    assert clean["paper"].isna().all()                                    # the paper has no K=2 rows
    attacked = t2[t2["attack"] != "none"]
    assert set(attacked["attack"]) == {"fgsm", "pgd", "cw"}
    assert attacked["value"].between(0, 100).all()
    pgd = attacked[attacked["attack"] == "pgd"].set_index("method")["value"]
    assert (pgd < clean["value"]).all()                                     # eps 0.3 must hurt
    t4 = pd.read_csv(tables / "table4_blackbox.csv")
    assert {"blackbox_oblivious", "blackbox_adaptive"} <= set(t4["threat"])
    t5 = pd.read_csv(tables / "table5_ablation.csv")
    assert list(t5["attack"]) == ["pgd"] and list(t5["method"]) == ["pdd"]
    timing = pd.read_csv(tables / "timing.csv").set_index("method")
    assert timing.loc["baseline", "ratio"] == pytest.approx(1.0)
    assert (timing["value"] > 0).all()
    assert "| Baseline |" in (tables / "timing.md").read_text()  # display names
    assert "No attack" in (tables / "table2_whitebox_k3.md").read_text()
    entropy = pd.read_csv(tables / "table1_entropy.csv").set_index("method")["value"]
    assert set(entropy.index) == {"baseline", "pdd"} and entropy.between(0, 1).all()
    t6 = pd.read_csv(tables / "table6_adversarial_training.csv")
    assert set(t6["attack"]) == {"none", "fgsm"} and set(t6["method"]) == {"advt_fgsm"}
    _check_strong_table(tables, t2)
    _check_new_outputs(tables)
    _check_peers_and_cost(tables)
    for name in ("figure2_discrimination", "figure3_gradient_angles", "figure4_pgd_strength", "figure_strong_steps",
                 "figure1_gradcam", "figure5_examples", "figure_intervals", "figure_member_transfer"):
        png = tiny_workdir / "results" / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert png.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
    for name in pd.read_csv(tables / "table2_whitebox_k3.csv")["table"].unique():
        assert (tables / f"{name}.tex").stat().st_size > 0
    # Nothing left to do: a second run plans no job.
    assert "Nothing to be done" in snakemake(tiny_workdir, "all", "-n").stdout
    _check_model_cards(tiny_workdir)
    _check_report(tiny_workdir)
    readme = subprocess.run([sys.executable, "-m", "pdd.reports.readme", "--results", "results"], cwd=tiny_workdir,
                            capture_output=True, text=True, check=True).stdout
    assert "| Baseline |" in readme and "| DVERGE |" in readme and "torch " in readme


def _check_model_cards(workdir: Path) -> None:
    """One RobustBench-format card per strongly evaluated ensemble, matching the strong table's worst case."""
    cards = sorted((workdir / "results" / "model_cards" / "digits" / "Linf").glob("*.json"))
    assert [c.stem for c in cards] == sorted(f"{m}_resnet18_K2_seed0_eps0.3"
                                             for m in ("baseline", "pdd", "gal", "dverge", "trs"))
    strong = pd.read_csv(workdir / "results" / "tables" / "table_strong_evaluation.csv")
    for path in cards:
        info = json.loads(path.read_text())
        assert info["number_forward_passes"] == info["K"] == 2 and info["eps"] == "0.3"
        assert float(info["external"]) <= float(info["reported"]) <= float(info["clean_acc"])
        assert set(info["masking_checks"]) == {"eps_growth", "unbounded", "transfer", "convergence", "gradient_free",
                                               "zero_gradients", "deterministic"}
        row = strong[(strong["method"] == info["method"]) & (strong["attack"] == "worst_case")]
        if len(row):  # the strong table reports % of the initially correct images
            assert float(info["worst_case_of_correct"]) == pytest.approx(row["value"].iloc[0], abs=0.005)


def _check_report(workdir: Path) -> None:
    """`snakemake --report report.zip`: every table and figure of the run inside, each with its caption."""
    snakemake(workdir, "--report", "report.zip")
    with zipfile.ZipFile(workdir / "report.zip") as archive:
        names = archive.namelist()
        html = "".join(archive.read(n).decode("utf-8", "replace") for n in names if n.endswith((".html", ".js")))
    for path in (workdir / "results" / "tables").glob("*.md"):
        assert any(n.endswith(f"/{path.name}") for n in names), path.name
    for path in (workdir / "results" / "figures").glob("*.png"):
        assert any(n.endswith(f"/{path.name}") for n in names), path.name
    for name in requested(yaml.safe_load((workdir / "config" / "config.yaml").read_text())):
        # Rendered from the caption templates (job params are listed in the report too, but not as <strong>/<p>).
        title, caption = (escape(text, quote=False) for text in (OUTPUTS[name].title, OUTPUTS[name].caption[:40]))
        assert f"<strong>{title}</strong>" in html and f"<p>{caption}" in html, name
    assert "Reproduction of" in html  # the front page (workflow/report/workflow.rst)


def _check_peers_and_cost(tables: Path) -> None:
    """The peer defences beside the baseline, and the cost ledger of every job of the run."""
    defences = pd.read_csv(tables / "table_ensemble_defences.csv").set_index("method")
    assert list(defences.index) == ["baseline", "gal", "dverge", "trs"]
    assert defences["clean"].between(0, 100).all() and defences["cosine"].between(-1, 1).all()
    assert (defences["worst_case"] <= defences["pgd_10"] + 1e-9).all()
    cost = pd.read_csv(tables / "cost.csv")
    rules = cost[cost["kind"] == "rule"].set_index("rule")
    assert {"train", "whitebox", "strong", "diversity", "member_transfer", "time_steps"} <= set(rules.index)
    assert (rules["seconds"] > 0).all()
    assert rules.loc["train", "forward_images"] > 0 and rules.loc["whitebox", "backward_images"] > 0
    per_output = cost[cost["kind"] == "output"].set_index("output")
    assert per_output.loc["table2_whitebox_k3", "jobs"] < per_output["jobs"].sum()


def _check_new_outputs(tables: Path) -> None:
    """Figure 1's distances, the stronger-attack table and the interleaved timing of the tiny run."""
    distance = pd.read_csv(tables / "table_figure1_distance.csv").set_index("method")
    assert set(distance.index) == {"baseline", "pdd"} and (distance["distance"] >= 0).all()
    assert (distance["n_images"] > 0).all() and distance["paper"].isna().all()  # digits: no paper value
    stronger = pd.read_csv(tables / "table_stronger_attacks.csv")
    acc = stronger[(stronger["kind"] == "accuracy") & (stronger["attack"] == "pgd")]
    assert set(zip(acc["strength"], acc["iterations"])) == {("standard", 10), ("stronger", 15)}
    timing = pd.read_csv(tables / "timing.csv").set_index("method")
    assert (timing["step_seconds"] > 0).all() and timing.loc["baseline", "step_ratio"] == pytest.approx(1.0)


def _check_strong_table(tables: Path, t2: pd.DataFrame) -> None:
    """The strong table: the paper protocol beside the worst case, for both ensembles, with its diagnostics."""
    strong = pd.read_csv(tables / "table_strong_evaluation.csv")
    acc = strong[(strong["metric"] == "accuracy_pct") & (strong["threat"] == "whitebox") & (strong["param"] == 0.3)]
    for method in ("baseline", "pdd"):
        mine = acc[acc["method"] == method].set_index("attack")["value"]
        assert {"pgd", "pgd_10", "pgd_20", "pgd_20x2", "apgd_ce", "apgd_dlr", "worst_case"} <= set(mine.index)
        assert (mine["worst_case"] <= mine.drop(["pgd", "worst_case"])).all()
        # Same images, seed and attack: the strong run's PGD-10 is the white-box suite's (Table 2) number.
        table2 = t2[(t2["attack"] == "pgd") & (t2["method"] == method)]["value"].iloc[0]
        assert mine["pgd_10"] == pytest.approx(table2) and mine["pgd"] == pytest.approx(table2)
    diagnostics = strong[strong["metric"] == "passed"]
    assert len(diagnostics) == 2 * 7 and set(diagnostics["status"]) <= {"pass", "warn"}
    md = (tables / "table_strong_evaluation.md").read_text()
    assert "| PDD |" in md and "## Gradient-masking diagnostics" in md
    warned = set(diagnostics.loc[diagnostics["status"] == "warn", "method"])
    assert ("WARNING: possible gradient masking" in md) == bool(warned)
