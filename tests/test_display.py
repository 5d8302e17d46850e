"""Display names, parameter labels, best-value masks and the Markdown / LaTeX rendering of one table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pdd.reports.display import (
    Grid,
    attack_name,
    best_mask,
    dataset_name,
    document_latex,
    document_markdown,
    grid_latex,
    grid_markdown,
    method_name,
    param_label,
    param_legend,
    threat_name,
)


@pytest.mark.parametrize("code, shown", [
    ("baseline", "Baseline"), ("adp", "ADP"), ("pdd", "PDD"), ("deg", "DEG"), ("pdd_deg", "PDD+DEG"),
    ("advt_fgsm", "AdvT-FGSM"), ("advt_fgsm_pdd", "AdvT-FGSM+PDD"), ("advt_pgd", "AdvT-PGD"),
    ("advt_pgd_pdd", "AdvT-PGD+PDD"), ("gal", "GAL"), ("trs", "TRS"), ("dverge", "DVERGE"),
    ("pdd-M20", "PDD (M=20)"), ("pdd_deg-M4", "PDD+DEG (M=4)"), ("my_method", "my_method")])
def test_method_names(code: str, shown: str) -> None:
    assert method_name(code) == shown


def test_threat_dataset_and_attack_names() -> None:
    assert [threat_name(t) for t in ("whitebox", "blackbox_oblivious", "blackbox_adaptive")] == \
        ["White-box", "Type I (oblivious)", "Type II (adaptive)"]
    assert [dataset_name(d) for d in ("digits", "fashion_mnist", "cifar10", "cifar100", "tiny_imagenet")] == \
        ["Digits (8x8)", "Fashion-MNIST", "CIFAR-10", "CIFAR-100", "Tiny-ImageNet"]
    assert [attack_name(a) for a in ("none", "cw", "pgd_l2", "pgd_200x5", "pgd_50", "apgd_dlr")] == \
        ["No attack", "C&W", "PGD (L2)", "PGD-200 x5", "PGD-50", "APGD-DLR"]


@pytest.mark.parametrize("attack, value, shown", [
    ("pgd", 0.02, "L-inf eps 0.02 (= 5.1/255)"),       # 0.02 * 255 = 5.1
    ("fgsm", 0.04, "L-inf eps 0.04 (= 10.2/255)"),
    ("bim", 0.01, "L-inf eps 0.01 (= 2.6/255)"),        # 2.55 -> 2.6 (one decimal)
    ("pgd_50", "0.1", "L-inf eps 0.1 (= 25.5/255)"),    # the strong evaluation's PGD is L-inf too
    ("pgd_l2", 0.4, "L2 eps 0.4"),
    ("jsma", 0.1, "gamma 0.1"),
    ("cw", 0.01, "c 0.01"),
    ("none", None, ""), ("pgd", math.nan, ""), ("mystery", 3.0, "3")])
def test_param_label(attack: str, value, shown: str) -> None:
    assert param_label(attack, value) == shown


def test_param_legend_explains_only_the_parameters_shown() -> None:
    legend = param_legend(["none", "fgsm", "pgd", "cw"])
    assert legend.startswith("Parameters: L-inf eps = ") and "c = C&W's initial constant" in legend
    assert "gamma" not in legend and "L2 eps" not in legend
    assert param_legend(["none"]) == ""


def test_best_mask_rows_columns_ties_groups_and_missing() -> None:
    values = pd.DataFrame([[1.0, 3.0, 3.0, 0.5], [2.0, np.nan, 1.0, 4.0], [np.nan, np.nan, 7.0, np.nan]])
    rows = best_mask(values)
    assert rows.values.tolist() == [[False, True, True, False], [False, False, False, True],
                                    [False, False, False, False]]     # a lone value is no comparison
    grouped = best_mask(values, "row", [[0, 1], [2, 3]])
    assert grouped.values.tolist() == [[False, True, True, False], [False, False, False, True],
                                       [False, False, False, False]]  # 2.0 is alone in its group
    columns = best_mask(values, "column", higher=False)
    assert columns.values.tolist() == [[True, False, False, True], [False, False, True, False],
                                       [False, False, False, False]]
    assert best_mask(values, "column", [[0], [1, 2]], min_count=1).values.tolist() == [
        [True, True, True, True], [True, False, False, True], [False, False, True, False]]


def _grid() -> Grid:
    index = pd.MultiIndex.from_tuples([("C&W", "c 0.01"), ("PGD", "L-inf eps 0.02 (= 5.1/255)")],
                                      names=["Attack", "Parameter"])
    cells = pd.DataFrame([["0.38 ± 0.10", "53.63"], ["2.88", "-"]], index=index, columns=["Baseline", "PDD+DEG"])
    bold = pd.DataFrame([[False, True], [True, True]], index=index, columns=cells.columns)
    suffix = pd.DataFrame([[" (0.38)", ""], ["", ""]], index=index, columns=cells.columns)
    return Grid(cells, bold, caption="Table 9: 100% made_up", suffix=suffix)


def test_grid_markdown_bolds_values_not_suffixes_or_missing_cells() -> None:
    assert grid_markdown(_grid()) == [
        "| Attack | Parameter | Baseline | PDD+DEG |", "|---|---|---|---|",
        "| C&W | c 0.01 | 0.38 ± 0.10 (0.38) | **53.63** |",
        "| PGD | L-inf eps 0.02 (= 5.1/255) | **2.88** | - |"]


def test_grid_latex_is_booktabs_with_escaped_text_and_textbf() -> None:
    tex = grid_latex(_grid(), "Table 9: 100% made_up", "tab:t9")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\caption{Table 9: 100\\% made\\_up}" in tex and "\\label{tab:t9}" in tex
    assert "C\\&W & c 0.01 & 0.38 $\\pm$ 0.10 (0.38) & \\textbf{53.63} \\\\" in tex
    assert "\\textbf{2.88} & - \\\\" in tex and "\\textbf{-}" not in tex
    assert "$\\leq$" in grid_latex(Grid(pd.DataFrame({"transfer <= white-box": ["pass"]})), "c", "tab:c")


def test_documents_put_the_title_first_and_number_the_tables() -> None:
    first, second = _grid(), _grid()
    second.notes = ["A note."]
    md = document_markdown("Table 9: a title", ["Settings line."], [first, second])
    assert md.startswith("# Table 9: a title\n\nSettings line.\n\n| Attack |")
    assert "## Table 9: 100% made_up\n\nA note.\n\n| Attack |" in md
    tex = document_latex("Table 9: a title", "table9", [first, second])
    assert "\\caption{Table 9: a title}" in tex and "\\label{tab:table9}" in tex and "\\label{tab:table9-2}" in tex
