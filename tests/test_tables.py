"""Table assembly from hand-written result files: paper column, mean and std over seeds, timing ratios."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pdd.plan.outputs import OUTPUTS
from pdd.reports.tables import build_table, build_timing, read_results

from conftest import REPO

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
    # A stand-in's cells show ours only; the paper's Fashion-MNIST numbers are a table of their own below.
    assert "Digits (8x8) stands in for the paper's Fashion-MNIST" in md and "| 97.50 |" in md
    assert "97.50 (94.37)" not in md and "## The paper's Table 2: Fashion-MNIST" in md


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
    steps = _write(tmp_path, "steps.json", [{"dataset": "cifar100", "K": 3, "method": m, "seconds": s}
                                            for m, s in (("baseline", 0.1), ("deg", 0.4))])
    df = build_timing([steps], logs, PAPER, {}, tmp_path / "t.csv", tmp_path / "t.md")
    by = df.set_index("method")
    assert by.loc["baseline", "value"] == pytest.approx(2.5)      # median of 2, 2, 3, 9
    assert by.loc["deg", "value"] == pytest.approx(5.0)
    assert by.loc["deg", "ratio"] == pytest.approx(2.0)
    assert by.loc["deg", "paper"] == pytest.approx(703) and by.loc["deg", "paper_ratio"] == pytest.approx(703 / 54)
    assert by.loc["deg", "step_ratio"] == pytest.approx(4.0)
    md = (tmp_path / "t.md").read_text()
    assert "| DEG | 0.4000 | 4.00 | 5.00 | 2.00 | 703 | 13.02 |" in md and "**" not in md  # a cost: no bold


def test_entropy_table_uses_four_decimals(tmp_path: Path) -> None:
    rec = {"dataset": "cifar100", "K": 3, "method": "pdd", "seed": 0, "threat": "none", "attack": "none",
           "param": None, "metric": "entropy", "value": 0.25}
    df = build_table("table1_entropy", read_results([_write(tmp_path, "e.json", [rec])]), PAPER, {},
                     tmp_path / "t.csv", tmp_path / "t.md")
    assert df["paper"].iloc[0] == pytest.approx(0.2429)
    assert "0.2500 (0.2429)" in (tmp_path / "t.md").read_text()


# --- Outputs ready for a paper: titles, display names, parameter labels, bold best values, LaTeX -----------------

def _acc(method: str, attack: str, param, value: float, dataset: str = "fashion_mnist", **kw) -> dict:
    return {"dataset": dataset, "K": 3, "method": method, "seed": 0, "threat": "whitebox", "attack": attack,
            "param": param, "metric": "accuracy_pct", "value": value, **kw}


def _row(md: str, start: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(start))


def test_whitebox_table_reads_like_the_paper(tmp_path: Path) -> None:
    """Heading = the registry title; methods by display name; parameters named per attack; per row the best
    method in bold (a tie bolds both); the paper's value after ours for the paper's own dataset; .tex beside."""
    values = {"baseline": (94.0, 60.0, 30.0, 50.0), "adp": (93.0, 70.0, 35.0, 55.0),
              "pdd_deg": (94.0, 80.0, 85.0, 40.0)}
    records = [r for m, (clean, pgd, cw, jsma) in values.items() for r in
               (_acc(m, "none", None, clean), _acc(m, "pgd", 0.02, pgd), _acc(m, "cw", 0.1, cw),
                _acc(m, "jsma", 0.1, jsma))]
    df = build_table("table2_whitebox_k3", read_results([_write(tmp_path, "r.json", records)]), PAPER, {},
                     tmp_path / "t.csv", tmp_path / "t.md", title=OUTPUTS["table2_whitebox_k3"].title)
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("# Table 2: white-box attacks, K = 3\n")
    assert "| Attack | Parameter | Baseline | ADP | PDD+DEG |" in md and "Dataset: Fashion-MNIST; K = 3." in md
    assert _row(md, "| PGD |") == ("| PGD | L-inf eps 0.02 (= 5.1/255) | 60.00 (63.40) | 70.00 (72.80) | "
                                   "**80.00** (69.92) |")
    assert _row(md, "| C&W |").startswith("| C&W | c 0.1 | 30.00 (34.10) | 35.00 (34.25) | **85.00** (89.60) |")
    assert _row(md, "| JSMA |").startswith("| JSMA | gamma 0.1 | 50.00 (62.17) | **55.00** (80.26) | 40.00 (77.37) |")
    assert _row(md, "| No attack |") == "| No attack |  | **94.00** (94.37) | 93.00 (93.91) | **94.00** (94.39) |"
    assert "pdd_deg" not in md and "blackbox" not in md
    assert set(pd.read_csv(tmp_path / "t.csv")["method"]) == {"baseline", "adp", "pdd_deg"}  # CSV: code names
    tex = (tmp_path / "t.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\caption{Table 2: white-box attacks, K = 3}" in tex
    assert "\\textbf{80.00} (69.92)" in tex and "\\textbf{70.00}" not in tex and "C\\&W" in tex
    assert len(df) == 12


def test_stand_in_paper_numbers_are_a_table_of_their_own(tmp_path: Path) -> None:
    """Digits stands in for Fashion-MNIST: no paper value in its cells, the paper's column as its own table with
    the paper's best in bold (C&W: PDD+DEG 89.60), the CSV still has the `paper` column."""
    records = [_acc(m, "cw", 0.1, v, "digits") for m, v in (("baseline", 10.0), ("adp", 20.0), ("pdd_deg", 15.0))]
    df = build_table("table2_whitebox_k3", read_results([_write(tmp_path, "r.json", records)]), PAPER,
                     {"digits": "fashion_mnist"}, tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    main, paper = md.split("## The paper's Table 2: Fashion-MNIST (what Digits (8x8) stands in for)")
    assert "| C&W | c 0.1 | 10.00 | **20.00** | 15.00 |" in main and "(34.10)" not in main
    assert "| C&W | c 0.1 | 34.10 | 34.25 | **89.60** |" in paper
    assert "| FGSM | L-inf eps 0.01 (= 2.6/255) | 82.36 | 86.86 | **89.85** |" in paper  # the paper's own params
    assert df.set_index("method")["paper"].to_dict() == pytest.approx({"baseline": 34.1, "adp": 34.25, "pdd_deg": 89.6})
    assert "\\textbf{89.60}" in (tmp_path / "t.tex").read_text()


def test_best_is_per_dataset_when_datasets_share_a_row(tmp_path: Path) -> None:
    """Table 2 with two datasets: methods compete within each dataset, not across."""
    records = [_acc("baseline", "pgd", 0.02, 50.0), _acc("pdd_deg", "pgd", 0.02, 40.0),
               _acc("baseline", "pgd", 0.02, 5.0, "cifar100"), _acc("pdd_deg", "pgd", 0.02, 30.0, "cifar100")]
    build_table("table2_whitebox_k3", read_results([_write(tmp_path, "r.json", records)]), PAPER, {},
                tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    assert "| Attack | Parameter | Fashion-MNIST: Baseline | Fashion-MNIST: PDD+DEG | CIFAR-100: Baseline | " \
           "CIFAR-100: PDD+DEG |" in md
    assert ("| PGD | L-inf eps 0.02 (= 5.1/255) | **50.00** (63.40) | 40.00 (69.92) | 5.00 (2.88) | "
            "**30.00** (29.88) |") in md
    assert "Bold: the highest value among the methods in each row (per dataset)." in md


def test_methods_as_rows_bold_the_best_per_column(tmp_path: Path) -> None:
    """Table 6 lists methods as rows: each attack column bolds its best method."""
    records = [_acc(m, a, p, v, "cifar100") for m, a, p, v in (
        ("advt_fgsm", "fgsm", 0.04, 41.0), ("advt_fgsm_pdd", "fgsm", 0.04, 60.0),
        ("advt_fgsm", "pgd", 0.02, 25.0), ("advt_fgsm_pdd", "pgd", 0.02, 20.0))]
    build_table("table6_adversarial_training", read_results([_write(tmp_path, "r.json", records)]), PAPER, {},
                tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    assert "| Method | FGSM: L-inf eps 0.04 (= 10.2/255) | PGD: L-inf eps 0.02 (= 5.1/255) |" in md
    assert "| AdvT-FGSM | 41.00 (41.06) | **25.00** (20.15) |" in md
    assert "| AdvT-FGSM+PDD | **60.00** (59.64) | 20.00 (38.17) |" in md


def test_blackbox_threats_and_entropy_by_display_name(tmp_path: Path) -> None:
    records = [{**_acc(m, "fgsm", 0.02, v, "cifar100"), "K": 5, "threat": t} for t, m, v in (
        ("blackbox_oblivious", "baseline", 40.0), ("blackbox_oblivious", "adp", 45.0),
        ("blackbox_adaptive", "baseline", 30.0), ("blackbox_adaptive", "adp", 20.0))]
    build_table("table4_blackbox", read_results([_write(tmp_path, "r.json", records)]), PAPER, {},
                tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    assert "| Type I (oblivious) | FGSM | L-inf eps 0.02 (= 5.1/255) | 40.00 (42.93) | **45.00** (46.25) |" in md
    assert "| Type II (adaptive) | FGSM | L-inf eps 0.02 (= 5.1/255) | **30.00** (31.73) | 20.00 (45.02) |" in md
    entropy = [{"dataset": "cifar100", "K": 3, "method": m, "seed": 0, "threat": "none", "attack": "none",
                "param": None, "metric": "entropy", "value": v} for m, v in (("pdd", 0.25), ("pdd_deg", 0.2))]
    OUTPUTS["table1_entropy"].run([str(_write(tmp_path, "e.json", entropy))], {"name": "table1_entropy"},
                                  str(tmp_path / "e"), str(PAPER))  # the registry's builder, title from its entry
    md = (tmp_path / "e.md").read_text()
    assert md.startswith("# Table 1: ambiguity entropy E")
    assert "| K | PDD | PDD+DEG |" in md and "| 3 | **0.2500** (0.2429) | 0.2000 (0.2277) |" in md


def test_timing_stand_in_moves_the_paper_seconds_out_of_the_rows(tmp_path: Path) -> None:
    logs = []
    for method, seconds in (("baseline", 2.0), ("deg", 6.0)):
        path = tmp_path / f"{method}.csv"
        pd.DataFrame({"dataset": "digits", "arch": "resnet18", "K": 3, "method": method, "seed": 0, "epoch": [1],
                      "seconds": [seconds]}).to_csv(path, index=False)
        logs.append(path)
    build_timing([], logs, PAPER, {"digits": "cifar100"}, tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    main, paper = md.split("## The paper's timing paragraph: CIFAR-100 on a V100")
    assert "703" not in main and "| DEG | - | - | 6.00 | 3.00 |" in main
    assert "| DEG | 703 | 13.02 |" in paper
    assert (tmp_path / "t.tex").read_text().count("\\begin{table}") == 2


def test_strong_table_bolds_the_most_robust_worst_case(tmp_path: Path) -> None:
    """Two methods at one eps: only the higher worst case is bold; names and the eps label for display."""
    from pdd.reports.strong_table import build_strong_table

    records = [{"dataset": "cifar100", "K": 3, "method": m, "seed": 0, "metric": "accuracy_pct",
                "threat": "whitebox", "attack": a, "param": p, "value": v}
               for m, worst in (("baseline", 10.0), ("pdd_deg", 25.0))
               for a, p, v in (("none", None, 80.0), ("pgd_10", 0.02, worst + 5), ("worst_case", 0.02, worst))]
    build_strong_table(read_results([_write(tmp_path, "s.json", records)]), PAPER, {}, tmp_path / "s.csv",
                       tmp_path / "s.md", title=OUTPUTS["table_strong_evaluation"].title)
    md = (tmp_path / "s.md").read_text()
    assert md.startswith("# Honest robustness")
    assert "| Baseline | L-inf eps 0.02 (= 5.1/255) | 80.00 (80.32) | 15.00 (2.88) | 10.00 | -5.00 |" in md
    assert "| PDD+DEG | L-inf eps 0.02 (= 5.1/255) | 80.00 (79.81) | 30.00 (29.88) | **25.00** | -5.00 |" in md
    assert "\\textbf{25.00}" in (tmp_path / "s.tex").read_text()


def test_figure_builder_writes_png_and_pdf_with_dataset_k_and_names(tmp_path: Path, monkeypatch) -> None:
    """Figure 2 from per-image rows: PNG and PDF, the title names dataset and K, ticks name the methods."""
    import pdd.reports.figures as figures

    per_image = pd.DataFrame([{"method": m, "seed": 0, "image": i, "correct": True, "fisher": i + j, "angle": 10.0 * j}
                              for j, m in enumerate(("baseline", "pdd_deg")) for i in range(6)])
    per_image.to_csv(tmp_path / "p.csv", index=False)
    seen = {}
    save = figures.save_figure

    def spy(fig, out):
        ax = fig.axes[0]
        seen.update(title=ax.get_title(), ticks=[t.get_text() for t in ax.get_xticklabels()])
        save(fig, out)

    monkeypatch.setattr(figures, "save_figure", spy)
    spec = {"name": "figure2_discrimination", "datasets": ["digits"], "K": [3], "methods": ["baseline", "pdd_deg"],
            "num_images": None}
    figures.build_diversity_figure([str(tmp_path / "p.csv")], spec, str(tmp_path / "f2"), str(PAPER))
    assert (tmp_path / "f2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "f2.pdf").read_bytes()[:4] == b"%PDF"
    assert seen["title"].startswith("Digits (8x8), K = 3: 6 test images") and seen["ticks"] == ["Baseline", "PDD+DEG"]


def test_strength_figure_names_the_norm_and_the_8_bit_levels(tmp_path: Path, monkeypatch) -> None:
    import pdd.reports.figures as figures

    records = [_acc(m, a, p, v, "cifar100") for m in ("baseline", "pdd_deg") for a, p, v in
               (("none", None, 80.0), ("pgd", 0.01, 40.0), ("pgd", 0.02, 20.0), ("pgd_l2", 0.4, 30.0))]
    seen = {}
    save = figures.save_figure

    def spy(fig, out):
        seen.update(xlabels=[ax.get_xlabel() for ax in fig.axes[:2]], titles=[ax.get_title() for ax in fig.axes[:2]],
                    ticks=[t.get_text() for t in fig.axes[0].get_xticklabels()],
                    legend=[t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        save(fig, out)

    monkeypatch.setattr(figures, "save_figure", spy)
    spec = {"name": "figure4_pgd_strength", "datasets": ["cifar100"], "K": [3], "methods": ["baseline", "pdd_deg"]}
    figures.build_strength_figure([str(_write(tmp_path, "r.json", records))], spec, str(tmp_path / "f4"), str(PAPER))
    assert (tmp_path / "f4.pdf").exists() and (tmp_path / "f4.png").exists()
    assert "$L_\\infty$" in seen["xlabels"][0] and "$L_2$" in seen["xlabels"][1]
    assert all(t.startswith("CIFAR-100, K = 3: ") for t in seen["titles"])
    assert seen["ticks"] == ["0.01\n(2.6/255)", "0.02\n(5.1/255)"]
    assert seen["legend"][:2] == ["Baseline", "PDD+DEG"]


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _markdown_cells(md: str) -> list[tuple[str, str, list[str]]]:
    """(column header, cell, row cells) of every body cell of every Markdown table in `md`."""
    out, lines = [], md.splitlines()
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line.startswith("|") and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in line.strip().strip("|").split("|")]
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip().strip("|").split("|")]
                assert len(cells) == len(header), f"{row!r} has {len(cells)} cells under {len(header)} headers"
                out += [(h, c, cells) for h, c in zip(header, cells)]
    return out


def test_markdown_cells_follow_the_header_not_the_record_order(tmp_path: Path) -> None:
    """Three methods; the records of each row come in a different order, and PGD has no ADP result: every value
    must land in its own method's column with its own paper value, and ADP's PGD cell must stay empty."""
    ours = {("none", None): [("baseline", 11.11), ("adp", 22.22), ("pdd_deg", 33.33)],
            ("pgd", 0.02): [("pdd_deg", 44.44), ("baseline", 55.55)],
            ("bim", 0.02): [("adp", 66.66), ("pdd_deg", 77.77), ("baseline", 88.88)]}
    paper = {("none", "baseline"): 94.37, ("none", "adp"): 93.91, ("none", "pdd_deg"): 94.39,  # Table 2, F-MNIST
             ("pgd", "baseline"): 63.4, ("pgd", "pdd_deg"): 69.92,
             ("bim", "baseline"): 58.4, ("bim", "adp"): 70.84, ("bim", "pdd_deg"): 66.54}
    records = [_record(0, value, attack, param, method=method)
               for (attack, param), row in ours.items() for method, value in row]
    df = build_table("table2_whitebox_k3", read_results([_write(tmp_path, "r.json", records)]), PAPER, {},
                     tmp_path / "t.csv", tmp_path / "t.md")
    got = {(r.attack, r.method): (r.value, r.paper) for r in df.itertuples()}
    assert got == {(a, m): pytest.approx((v, paper[a, m])) for (a, _), row in ours.items() for m, v in row}

    cells = _markdown_cells((tmp_path / "t.md").read_text())
    for (attack, _), row in ours.items():
        for method, value in row:
            (header, cell, _), = [c for c in cells if f"{value:.2f}" in c[1]]
            assert _norm(method) in _norm(header), f"{method}'s {value} is under {header!r}"
            assert f"({paper[attack, method]:.2f})" in cell, f"{method}'s {attack} cell {cell!r}"
    pgd_row = next(row for _, cell, row in cells if "55.55" in cell)
    headers = [h for h, _, r in cells if r is pgd_row]
    adp = next(i for i, h in enumerate(headers) if _norm(h) == "adp")
    assert not re.search(r"\d", pgd_row[adp]), f"ADP has no PGD result, but its cell is {pgd_row[adp]!r}"


def test_figure1_distance_paper_column_only_for_the_papers_dataset() -> None:
    """Tiny-ImageNet: the paper's one-image distances beside ours, the largest bold (PDD 24.68); a stand-in
    dataset keeps them out of its rows and in a table of their own."""
    from pdd.reports.display import document_markdown
    from pdd.reports.figure1 import distance_document, distance_table

    one = {"baseline": 3.0, "adp": 5.0, "pdd": 4.0}
    many = pd.DataFrame({"method": ["baseline", "adp", "pdd"] * 2, "distance": [1.0, 2.0, 6.0, 1.0, 2.0, 4.0]})
    own = {"datasets": ["tiny_imagenet"], "K": [3], "image": 0}
    md = document_markdown("t", *distance_document(distance_table(one, many, own), own, "layer4", 0.9))
    assert "| Method | This image | Paper (one image) | Mean over images | Std | Images |" in md
    assert "| PDD | 4.00 | **24.68** | **5.00** | 1.41 | 2 |" in md
    assert "| ADP | **5.00** | 14.34 | 2.00 | 0.00 | 2 |" in md
    stand_in = {**own, "datasets": ["digits"], "reference": {"digits": "tiny_imagenet"}}
    md = document_markdown("t", *distance_document(distance_table(one, many, stand_in), stand_in, "layer4", 0.9))
    main, paper = md.split("## The paper's Figure 1 text: Tiny-ImageNet (what Digits (8x8) stands in for)")
    assert "24.68" not in main and "| PDD | **24.68** |" in paper


def _flagged(method: str, attack: str, param, robust: list[bool], seed: int = 0, **kw) -> dict:
    """A record with its counts and packed per-image flags (all 20 images classified correctly before attack)."""
    from pdd.evaluation.records import pack_flags

    n_robust = sum(robust)
    return {**_record(seed, 100.0 * n_robust / len(robust), attack, param), "method": method, "n_images": len(robust),
            "n_clean_correct": len(robust), "n_robust": n_robust, "robust_flags": pack_flags(robust), **kw}


def test_intervals_and_paired_p_value_in_the_csv(tmp_path: Path) -> None:
    base = [True] * 5 + [False] * 15
    ours = [True] * 15 + [False] * 5          # keeps the baseline's 5 and 10 more: b = 10, c = 0
    files = [_write(tmp_path, "r.json", [
        _flagged("baseline", "pgd", 0.02, base), _flagged("pdd_deg", "pgd", 0.02, ours),
        _flagged("baseline", "none", None, [True] * 20), _flagged("pdd_deg", "none", None, [True] * 20)])]
    df = build_table("table2_whitebox_k3", read_results(files), PAPER, {}, tmp_path / "t.csv", tmp_path / "t.md")
    row = df[(df["attack"] == "pgd") & (df["method"] == "baseline")].iloc[0]
    # 5/20 Wilson: centre (0.25 + 0.0960365) / 1.192073 = 0.290281, half 1.644195 * sqrt(0.009375 + 0.0024009)
    # = 0.178423 -> (11.19, 46.87)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((11.19, 46.87), abs=0.01)
    assert pd.isna(row["p_vs_baseline"])                             # the baseline itself
    mine = df[(df["attack"] == "pgd") & (df["method"] == "pdd_deg")].iloc[0]
    assert mine["p_vs_baseline"] == pytest.approx(2 / 2 ** 10)       # exact McNemar, b = 10, c = 0
    assert mine["baseline_method"] == "baseline"
    clean = df[(df["attack"] == "none") & (df["method"] == "pdd_deg")].iloc[0]
    assert clean["p_vs_baseline"] == 1.0                            # no discordant image
    csv = pd.read_csv(tmp_path / "t.csv")
    assert {"ci_low", "ci_high", "p_vs_baseline"} <= set(csv.columns)
    assert "[11.2, 46.9]" in (tmp_path / "t.md").read_text()         # narrow table: intervals in the Markdown too


def test_old_results_without_flags_get_intervals_but_no_p_value(tmp_path: Path) -> None:
    old = [_flagged("baseline", "pgd", 0.02, [True] * 5 + [False] * 15),
           _flagged("pdd_deg", "pgd", 0.02, [True] * 15 + [False] * 5)]
    for r in old:
        del r["robust_flags"]
    files = [_write(tmp_path, "r.json", old + [_record(0, 90.0)])]  # and one record without counts at all
    df = build_table("table2_whitebox_k3", read_results(files), PAPER, {}, tmp_path / "t.csv", tmp_path / "t.md")
    mine = df[(df["attack"] == "pgd") & (df["method"] == "pdd_deg")].iloc[0]
    assert mine["ci_low"] < 75.0 < mine["ci_high"] and pd.isna(mine["p_vs_baseline"])
    assert pd.isna(df[df["attack"] == "none"].iloc[0]["ci_low"])


def test_paired_p_value_needs_the_same_images(tmp_path: Path) -> None:
    from pdd.evaluation.records import image_fields

    files = [_write(tmp_path, "r.json", [
        _flagged("baseline", "pgd", 0.02, [True] * 5 + [False] * 15, **image_fields(range(20), 40)),
        _flagged("pdd_deg", "pgd", 0.02, [True] * 15 + [False] * 5, **image_fields(range(20, 40), 40))])]
    df = build_table("table2_whitebox_k3", read_results(files), PAPER, {}, tmp_path / "t.csv", tmp_path / "t.md")
    assert df["p_vs_baseline"].isna().all()


def test_title_says_the_k_the_table_shows(tmp_path: Path) -> None:
    """A K = 2 config titled Table 2 'K = 3' (the registry's title); the title follows the records' K."""
    title = OUTPUTS["table2_whitebox_k3"].title
    assert "K = 3" in title
    files = [_write(tmp_path, "r.json", [_record(0, 90.0, K=2), _record(1, 92.0, K=2)])]
    build_table("table2_whitebox_k3", read_results(files), PAPER, {}, tmp_path / "t.csv", tmp_path / "t.md",
                title=title)
    assert (tmp_path / "t.md").read_text().splitlines()[0] == "# " + title.replace("K = 3", "K = 2")
    files = [_write(tmp_path, "s.json", [_record(0, 90.0)])]
    build_table("table2_whitebox_k3", read_results(files), PAPER, {}, tmp_path / "t.csv", tmp_path / "t.md",
                title=title)
    assert (tmp_path / "t.md").read_text().splitlines()[0] == "# " + title
