"""How outputs name things and lay out tables: display names of methods, threats, datasets and attacks, attack
parameters named with their norm, the best value per comparison in bold, and one table as Markdown and LaTeX.

The CSVs keep the code names (pdd_deg, blackbox_oblivious, digits); everything a reader sees goes through here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pdd.io import write_text
from pdd.plan.outputs import variant
from pdd.settings.attacks import ATTACKS as ATTACK_REGISTRY

METHODS = {
    "baseline": "Baseline", "adp": "ADP", "pdd": "PDD", "deg": "DEG", "pdd_deg": "PDD+DEG",
    "advt_fgsm": "AdvT-FGSM", "advt_fgsm_pdd": "AdvT-FGSM+PDD", "advt_pgd": "AdvT-PGD", "advt_pgd_pdd": "AdvT-PGD+PDD",
    "gal": "GAL", "trs": "TRS", "dverge": "DVERGE",
}
THREATS = {"whitebox": "White-box", "blackbox_oblivious": "Type I (oblivious)",
           "blackbox_adaptive": "Type II (adaptive)", "none": ""}
DATASETS = {"digits": "Digits (8x8)", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100",
            "tiny_imagenet": "Tiny-ImageNet"}
# The paper-protocol attacks' names and norms come from their registry; these are the strong evaluation's
# (its pgd_<steps>[x<restarts>] are L-inf too).
STRONG_ATTACKS = {"apgd_ce": "APGD-CE", "apgd_dlr": "APGD-DLR", "apgd_t": "APGD-T",
                  "mora": "MORA", "square": "Square", "worst_case": "Worst case",
                  "transfer": "Transfer (Type I)"}
ATTACKS = {**{name: a.display for name, a in ATTACK_REGISTRY.items()}, **STRONG_ATTACKS}
NORMS = {**{name: a.norm for name, a in ATTACK_REGISTRY.items() if a.norm}, **dict.fromkeys(STRONG_ATTACKS, "L-inf")}
NORMS_TEX = {"L-inf": "$L_\\infty$", "L2": "$L_2$", "L0": "$L_0$"}
PARAM_MEANINGS = {
    "L-inf eps": "L-inf eps = the largest change of any pixel, inputs in [0, 1] (n/255 = the same in 8-bit levels)",
    "L2 eps": "L2 eps = the L2 norm of the whole perturbation, inputs in [0, 1]",
    "gamma": "gamma = the fraction of input features JSMA may change (L0; theta 0.1 per change)",
    "c": "c = C&W's initial constant (L2 attack, confidence 0.01, found by binary search from there)",
}
_STRONG_PGD = re.compile(r"pgd_(\d+)(?:x(\d+))?")


def method_name(method: str) -> str:
    """'pdd_deg' -> 'PDD+DEG'; a PDD variant 'pdd-M20' -> 'PDD (M=20)'; unknown names unchanged."""
    base, intervals = variant(method)
    name = METHODS.get(base, base)
    return name if intervals is None else f"{name} (M={intervals})"


def threat_name(threat: str) -> str:
    """'blackbox_oblivious' -> 'Type I (oblivious)'."""
    return THREATS.get(threat, threat)


def dataset_name(dataset: str) -> str:
    """'fashion_mnist' -> 'Fashion-MNIST'."""
    return DATASETS.get(dataset, dataset)


def attack_name(attack: str) -> str:
    """'cw' -> 'C&W'; the strong evaluation's 'pgd_200x5' -> 'PGD-200 x5'."""
    match = _STRONG_PGD.fullmatch(attack)
    if match:
        return f"PGD-{match[1]}" + (f" x{match[2]}" if match[2] else "")
    return ATTACKS.get(attack, attack)


def norm(attack: str) -> str | None:
    """The norm an attack's budget is measured in ('L-inf', 'L2', 'L0'), None if unknown."""
    return "L-inf" if _STRONG_PGD.fullmatch(attack) else NORMS.get(attack)


def norm_tex(attack: str) -> str:
    """The norm as matplotlib mathtext, for figure labels."""
    found = norm(attack)
    return NORMS_TEX.get(found, found or "")


def _missing(value) -> bool:
    """None, NaN or an empty string: no value to show."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value)


def param_name(attack: str) -> str | None:
    """What an attack's table parameter is: 'L-inf eps', 'L2 eps', 'gamma' (JSMA) or 'c' (C&W)."""
    if attack in ATTACK_REGISTRY:
        return ATTACK_REGISTRY[attack].param
    found = norm(attack)
    return f"{found} eps" if found in ("L-inf", "L2") else None


def param_label(attack: str, value) -> str:
    """The parameter named per attack with its norm: ('pgd', 0.02) -> 'L-inf eps 0.02 (= 5.1/255)',
    ('pgd_l2', 0.4) -> 'L2 eps 0.4', ('jsma', 0.1) -> 'gamma 0.1', ('cw', 0.01) -> 'c 0.01'; '' for no attack."""
    if attack == "none" or _missing(value):
        return ""
    value = float(value)
    name = param_name(attack)
    if name == "L-inf eps":
        return f"L-inf eps {value:g} (= {value * 255:.1f}/255)"
    return f"{value:g}" if name is None else f"{name} {value:g}"


def pgd_label(attack: str, eps: float) -> str:
    """'PGD $L_\\infty$ eps 0.02 (= 5.1/255)' or 'PGD $L_2$ eps 0.4' (attack 'pgd' / 'pgd_l2'), for figures."""
    levels = f" (= {eps * 255:.1f}/255)" if attack == "pgd" else ""
    return f"PGD {norm_tex(attack)} eps {eps:g}{levels}"


def param_legend(attacks) -> str:
    """One sentence saying what each parameter shown for `attacks` means ('' if none has one)."""
    names = list(dict.fromkeys(n for n in (param_name(a) for a in attacks) if n))
    return ("Parameters: " + "; ".join(PARAM_MEANINGS[n] for n in names) + ".") if names else ""


def where(dataset: str, k) -> str:
    """'Digits (8x8), K = 3': the setting a figure or table shows."""
    return f"{dataset_name(dataset)}, K = {k}"


def label(key: str, value) -> str:
    """A table key as shown: methods, threats, datasets and attacks by display name, K as a number."""
    if _missing(value):
        return ""
    shown = {"method": method_name, "threat": threat_name, "dataset": dataset_name, "attack": attack_name,
             "over": method_name}.get(key)
    if shown:
        return shown(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


HEADERS = {"dataset": "Dataset", "K": "K", "threat": "Threat", "attack": "Attack", "param": "Parameter",
           "method": "Method", "over": "Over", "strength": "Strength", "iterations": "Iterations"}


def fmt(value, digits: int = 2, std=math.nan, paper=math.nan) -> str:
    """'85.00 ± 7.07 (94.37)': the value, its std over seeds and the paper's value, each where present."""
    if _missing(value):
        return "-"
    text = f"{value:.{digits}f}"
    if not _missing(std):
        text += f" ± {std:.{digits}f}"
    return text + ("" if _missing(paper) else f" ({paper:.{digits}f})")


def best_mask(values: pd.DataFrame, along: str = "row", groups: list[list] | None = None, higher: bool = True,
              min_count: int = 2) -> pd.DataFrame:
    """True where a value is the best of its comparison: along 'row' = best in its row among the columns of its
    group (`groups` partitions the columns), along 'column' = best in its column among the rows of its group;
    ties are all best, NaN never; a comparison of fewer than `min_count` values marks nothing."""
    frame = values.apply(pd.to_numeric, errors="coerce")
    if along == "column":
        return best_mask(frame.T, "row", groups, higher, min_count).T
    mask = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for group in groups or [list(frame.columns)]:
        part = frame[group]
        best = part.max(axis=1) if higher else part.min(axis=1)
        enough = part.notna().sum(axis=1) >= min_count
        mask[group] = part.eq(best, axis=0) & np.asarray(enough)[:, None]
    return mask


@dataclass
class Grid:
    """One displayed table: cell text (index and columns are the row and column labels), which cells are bold,
    text after a cell's (possibly bold) value such as the paper's ' (94.37)', and an optional caption and notes
    shown above it (the document's first grid takes the document's title)."""

    cells: pd.DataFrame
    bold: pd.DataFrame | None = None
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    suffix: pd.DataFrame | None = None

    def bold_array(self) -> np.ndarray:
        """The bold flags as a boolean array of the cells' shape (all False when none are given)."""
        if self.bold is None:
            return np.zeros(self.cells.shape, dtype=bool)
        return np.asarray(self.bold, dtype=bool)

    def suffix_array(self) -> np.ndarray:
        """The suffixes as an object array of the cells' shape ('' when none are given)."""
        if self.suffix is None:
            return np.full(self.cells.shape, "", dtype=object)
        return np.asarray(self.suffix, dtype=object)


def _flat(label) -> str:
    """A (possibly multi-level) column label as one Markdown header cell: non-empty levels joined by ': '."""
    parts = label if isinstance(label, tuple) else (label,)
    return ": ".join(str(p) for p in parts if str(p))


def grid_markdown(grid: Grid) -> list[str]:
    """The grid as Markdown table lines; bold cells as **text**."""
    index = grid.cells.index
    row_names = [n or "" for n in index.names] if any(index.names) else []
    header = row_names + [_flat(c) for c in grid.cells.columns]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    bold, suffix = grid.bold_array(), grid.suffix_array()
    for i, (key, row) in enumerate(grid.cells.iterrows()):
        labels = (list(key) if isinstance(key, tuple) else [key]) if row_names else []
        cells = [(f"**{c}**" if bold[i, j] and c not in ("", "-") else str(c)) + suffix[i, j]
                 for j, c in enumerate(row)]
        lines.append("| " + " | ".join([str(x) for x in labels] + cells) + " |")
    return lines


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text (captions)."""
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(specials.get(c, c) for c in text)


def grid_latex(grid: Grid, caption: str, label: str) -> str:
    """The grid as a booktabs LaTeX table via pandas' Styler, bold cells' values in \\textbf."""
    bold, suffix = grid.bold_array(), grid.suffix_array()
    text = np.vectorize(lambda c: latex_escape(str(c)), otypes=[object])(grid.cells.to_numpy(dtype=object))
    text = np.where(bold & (text != "-") & (text != ""), "\\textbf{" + text + "}", text) + \
        np.vectorize(latex_escape, otypes=[object])(suffix)
    cells = pd.DataFrame(text, index=grid.cells.index, columns=grid.cells.columns)
    styler = cells.style.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    if not any(grid.cells.index.names):
        styler = styler.hide(axis="index")
    n_index = grid.cells.index.nlevels if any(grid.cells.index.names) else 0
    tex = styler.to_latex(hrules=True, caption=latex_escape(caption), label=label, position_float="centering",
                          environment="table", multicol_align="c", multirow_align="t",
                          column_format="l" * n_index + "r" * grid.cells.shape[1])
    for text_form, math_form in (("±", r"$\pm$"), ("<=", r"$\leq$"), (">=", r"$\geq$")):
        tex = tex.replace(text_form, math_form)   # text-mode < and > print as other glyphs in LaTeX
    return tex


def document_markdown(title: str, notes: list[str], grids: list[Grid]) -> str:
    """'# title', the notes as paragraphs, then every grid ('## caption' and its notes above all but the first)."""
    parts = [f"# {title}", ""]
    for note in notes:
        if note:
            parts += [note, ""]
    for i, grid in enumerate(grids):
        if i and grid.caption:
            parts += [f"## {grid.caption}", ""]
        for note in grid.notes:
            if note:
                parts += [note, ""]
        parts += grid_markdown(grid) + [""]
    return "\n".join(parts).rstrip("\n") + "\n"


def document_latex(title: str, name: str, grids: list[Grid]) -> str:
    """Every grid as a LaTeX table (the first captioned with the title); needs booktabs and multirow."""
    tables = [grid_latex(g, title if i == 0 else g.caption or title, f"tab:{name}" + (f"-{i + 1}" if i else ""))
              for i, g in enumerate(grids)]
    return f"% {name}: generated by pdd; needs \\usepackage{{booktabs,multirow}}\n" + "\n".join(tables)


def write_table(out_csv: str | Path, out_md: str | Path, out_tex: str | Path | None, long: pd.DataFrame, name: str,
                title: str, notes: list[str], grids: list[Grid]) -> None:
    """Write the long-format CSV (code names), the Markdown and the LaTeX of one table, each atomically;
    `out_tex` defaults to the Markdown path with the suffix .tex."""
    write_text(out_csv, long.to_csv(index=False))
    write_text(out_md, document_markdown(title, notes, grids))
    write_text(out_tex or Path(out_md).with_suffix(".tex"), document_latex(title, name, grids))
