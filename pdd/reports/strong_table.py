"""`table_strong_evaluation` and its L2 twin `table_strong_evaluation_l2`: the paper's PGD-10 beside APGD, APGD-T,
MORA, Square and PGD with restarts on the same images, and the gradient-masking diagnostics (one builder, the norm
read from the output's name)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pdd.reports.display import (
    HEADERS,
    Grid,
    attack_name,
    best_mask,
    dataset_name,
    fmt,
    label,
    method_name,
    param_label,
    param_legend,
    write_table,
)
from pdd.reports.tables import (
    KEYS,
    _param,
    add_uncertainty,
    aggregate,
    attach_paper,
    paper_grid,
    read_results,
    settings,
    settings_line,
    stand_in_note,
    stand_ins,
)

if TYPE_CHECKING:  # the registry names the builders; they only read their entry
    from pdd.plan.outputs import Output

STRONG_TABLE = "table_strong_evaluation"
STRONG_TABLES = {"linf": STRONG_TABLE, "l2": "table_strong_evaluation_l2"}
NORM_NAMES = {"linf": "L-inf", "l2": "L2"}
PROTOCOL_ATTACK = {"linf": "pgd", "l2": "pgd_l2"}  # the attack whose parameter labels each norm's rows
DIAGNOSTIC_TITLES = {
    "eps_growth": "(a) large eps: accuracy ~0",
    "unbounded": "(b) unbounded eps: 0 robust",
    "transfer": "(c) transfer <= white-box",
    "convergence": "(d) more steps never help",
    "gradient_free": "(e) Square <= gradient attacks",
    "zero_gradients": "(f) no zero gradients",
    "deterministic": "(g) deterministic outputs",
}
MASKING_WARNING = "WARNING: possible gradient masking"


def strong_attack_title(attack: str) -> str:
    """Column title of a strong-evaluation attack: pgd_200x5 -> 'PGD-200 x5', apgd_dlr -> 'APGD-DLR'."""
    return {"none": "Clean", "pgd": "Paper protocol (PGD-10)"}.get(attack) or attack_name(attack)


def _strong_order(attack: str) -> tuple:
    """Column order: APGD-CE, -DLR, -T, MORA, then PGD by steps and restarts, then Square, then transfer."""
    match = re.fullmatch(r"pgd_(\d+)(?:x(\d+))?", attack)
    if match:
        return (1, int(match[1]), int(match[2] or 1))
    first = {"apgd_ce": 0, "apgd_dlr": 1, "apgd_t": 2, "mora": 3}
    if attack in first:
        return (0, first[attack], 0)
    return ({"square": 2, "transfer": 3}.get(attack, 4), 0, attack)


def _paper_pgd(paper_csv: str | Path) -> pd.DataFrame:
    """The paper's clean and PGD accuracies (Tables 2, 3, 5), one value per key."""
    paper = pd.read_csv(paper_csv, dtype={"param": str})
    paper = paper[paper["table"].isin(["table2", "table3", "table5"]) & paper["attack"].isin(["none", "pgd"])].copy()
    paper["param"] = paper["param"].map(_param)
    return paper.rename(columns={"value": "paper"}).drop_duplicates(KEYS)[KEYS + ["paper"]]


def aggregate_strong(results: pd.DataFrame) -> pd.DataFrame:
    """Over seeds: accuracies as mean and std; a diagnostic passes only if it passes for every seed."""
    is_diag = results["metric"] == "passed"
    accuracies = aggregate(results[~is_diag].drop(columns=["measure"], errors="ignore"))
    rows = []
    for key, group in results[is_diag].groupby(KEYS, dropna=False, sort=False):
        ran, failed = group["value"].dropna(), group[group["value"] == 0]
        several = group["seed"].nunique() > 1
        details = [(f"seed {s}: " if several else "") + d for s, d in zip(failed["seed"], failed["detail"])]
        rows.append({**dict(zip(KEYS, key)), "value": ran.min() if len(ran) else math.nan, "std": math.nan,
                     "n_seeds": group["seed"].nunique(), "measure": pd.to_numeric(group["measure"]).max(),
                     "detail": "; ".join(details) if details else group["detail"].iloc[0]})
    return pd.concat([accuracies, pd.DataFrame(rows)], ignore_index=True)


def _status(value: float) -> str:
    return "n/a" if pd.isna(value) else ("pass" if value == 1 else "warn")


def _strong_grid(acc: pd.DataFrame, columns: list[str], norm: str = "linf") -> Grid:
    """Rows per ensemble and eps: clean, the paper's protocol, the worst case, the drop and every attack; the
    paper's value in parentheses for the paper's own datasets; bold: the highest worst case among the methods of
    each dataset, K and eps (a lone method's too: it is the table's headline)."""
    constant = settings(acc, ["dataset", "K"])
    keys = [k for k in ("dataset", "K") if k not in constant] + ["method", "param"]
    header = ["Clean", strong_attack_title("pgd"), "Worst case", "Drop"] + [strong_attack_title(a) for a in columns]
    index, text, suffix, worst, groups = [], [], [], [], {}
    for (dataset, k, method), mine in acc.groupby(["dataset", "K", "method"], sort=False):
        whitebox = mine[mine["threat"] != "diagnostic"]
        cell = {(r.attack, r.param): r for r in whitebox.itertuples()}
        clean = next((r for r in whitebox.itertuples() if r.attack == "none"), None)
        for eps in sorted(p for p in whitebox.loc[whitebox["attack"] == "worst_case", "param"].unique()):
            found = [clean, cell.get(("pgd", eps)), cell.get(("worst_case", eps)), None] + \
                [cell.get((a, eps)) for a in columns]
            protocol, worst_case = found[1], found[2]
            row = ["-" if r is None else fmt(r.value, 2, r.std) for r in found]
            row[3] = "-" if protocol is None or worst_case is None else f"{worst_case.value - protocol.value:+.2f}"
            text.append(row)
            suffix.append(["" if r is None or pd.isna(getattr(r, "paper", math.nan)) or r.paper_dataset != r.dataset
                           else f" ({r.paper:.2f})" for r in found[:2]] + [""] * (len(found) - 2))
            worst.append(math.nan if worst_case is None else round(worst_case.value, 2))
            groups.setdefault((dataset, k, eps), []).append(len(index))
            index.append(tuple({"dataset": dataset, "K": k, "method": method, "param": eps}[n] for n in keys))
    labels = pd.MultiIndex.from_tuples([tuple(param_label(PROTOCOL_ATTACK[norm], v) if n == "param" else label(n, v)
                                              for n, v in zip(keys, key)) for key in index],
                                       names=[HEADERS[n] for n in keys])
    bold = np.zeros((len(index), len(header)), dtype=bool)
    bold[:, 2] = best_mask(pd.DataFrame({"worst": worst}), "column", list(groups.values()), min_count=1)["worst"]
    grid = Grid(pd.DataFrame(text, index=labels, columns=header), caption="", notes=[settings_line(constant)],
                suffix=pd.DataFrame(suffix, index=labels, columns=header))
    grid.bold = pd.DataFrame(bold, index=labels, columns=header)
    return grid


def _diagnostics_grid(diag: pd.DataFrame, ensembles: list[tuple], keys: list[str], norm: str = "linf"
                      ) -> tuple[Grid, list[str]]:
    """One row per ensemble (labelled by `keys`), one column per diagnostic ('pass', 'WARN' in bold, 'n/a', '-' if
    not run), and a WARNING line per failed diagnostic."""
    text, suffix, bold, warnings = [], [], [], []
    for dataset, k, method in ensembles:
        mine = diag[(diag["dataset"] == dataset) & (diag["K"] == k) & (diag["method"] == method)].set_index("attack")
        row_text, row_suffix, row_bold = [], [], []
        for name, title in DIAGNOSTIC_TITLES.items():
            if name not in mine.index:
                row_text.append("-"), row_suffix.append(""), row_bold.append(False)
                continue
            r = mine.loc[name]
            if isinstance(r, pd.DataFrame):  # several rows (a table built from both norms' files): the first
                r = r.iloc[0]
            status = _status(r["value"])
            shown = "" if pd.isna(r["measure"]) or name not in ("eps_growth", "unbounded") else \
                f" ({r['measure']:.1f}% at {NORM_NAMES[norm]} eps {r['param']:g})"
            row_text.append(status.upper() if status == "warn" else status)
            row_suffix.append(shown)
            row_bold.append(status == "warn")
            if status == "warn":
                warnings.append(f"{MASKING_WARNING}: {dataset_name(dataset)} K={k} {method_name(method)}: {title}: "
                                f"{r['detail']}")
        text.append(row_text), suffix.append(row_suffix), bold.append(row_bold)
    index = pd.MultiIndex.from_tuples([tuple(label(n, {"dataset": d, "K": k, "method": m}[n]) for n in keys)
                                       for d, k, m in ensembles], names=[HEADERS[n] for n in keys])
    header = list(DIAGNOSTIC_TITLES.values())
    grid = Grid(pd.DataFrame(text, index=index, columns=header), pd.DataFrame(bold, index=index, columns=header),
                caption="Gradient-masking diagnostics", suffix=pd.DataFrame(suffix, index=index, columns=header))
    return grid, warnings


def strong_document(df: pd.DataFrame, reference: dict[str, str], paper: pd.DataFrame | None = None,
                    norm: str = "linf") -> tuple[list[str], list[Grid]]:
    """Notes and grids: per ensemble and eps the paper's protocol beside the worst case and every attack; the
    paper's numbers of a stand-in dataset in a table of their own; then the diagnostics, with a WARNING line for
    each failed one."""
    acc = df[df["metric"] == "accuracy_pct"]
    diag = df[df["metric"] == "passed"]
    columns = sorted(set(acc.loc[acc["attack"].str.match(r"(pgd_|apgd_|transfer|mora|square)")
                                 & (acc["threat"] != "diagnostic"), "attack"]), key=_strong_order)
    main = _strong_grid(acc, columns, norm)
    name = NORM_NAMES[norm]
    steps = sorted({int(m[1]) for m in (re.fullmatch(r"pgd_(\d+)", a) for a in columns) if m})
    chain = " >= ".join(f"PGD-{n}" for n in steps) + " accuracy"
    own = "; the paper's reported value in parentheses" if (
        (acc["paper_dataset"] == acc["dataset"]) & acc["paper"].notna()).any() else ""
    protocol = "PGD, 10 steps of eps/10, one random start, on log(mean softmax)" + (
        "" if norm == "linf" else ", here at L2 budgets (the paper's Figure 4 attack)")
    notes = main.notes + [
        f"Honest robustness: the paper's protocol ({protocol}, run by the strong evaluation on the same images) "
        f"beside a strong {name} evaluation of the same ensembles. Values: accuracy (%) over the test images "
        f"classified correctly before the attack (Clean: over all attacked images); mean over seeds, ± = std over "
        f"seeds{own}.",
        "Worst case: an image counts as robust only if it is classified correctly after every white-box "
        "attack of the row (APGD-CE, APGD-DLR, APGD-T over the top target classes, MORA (the model-reweighing "
        "attack on the members, Yu et al. 2022), PGD at each step count and with restarts, and the gradient-free "
        "Square attack). Drop = worst case minus paper protocol. Transfer (Type I): PGD crafted on the independent "
        "baseline-trained surrogate ensemble (config `surrogates.oblivious`) of the same dataset and K. Bold: the "
        "highest worst case among the methods at each dataset, K and eps (the honest ranking; the other columns "
        "can reward gradient masking, so they are not ranked).",
        param_legend([PROTOCOL_ATTACK[norm]])]
    main.notes = []
    grids = [main]
    for ours, theirs in (stand_ins(acc, reference) if norm == "linf" else {}).items():
        notes.append(stand_in_note(ours, theirs, "Tables 2, 3, 5", attacks=True))
        extra = None if paper is None else paper_grid(paper, acc, ours, theirs, "table2", ["dataset", "K", "method"],
                                                      ["attack", "param"], 2)
        if extra is not None:
            extra.caption = (f"The paper's clean and PGD-10 accuracy (Tables 2, 3, 5): {dataset_name(theirs)} "
                             f"(what {dataset_name(ours)} stands in for)")
            grids.append(extra)
    ensembles = list(dict.fromkeys(zip(acc["dataset"], acc["K"], acc["method"])))
    keys = [k for k in ("dataset", "K") if k not in settings(acc, ["dataset", "K"])] + ["method"]
    diagnostics, warnings = _diagnostics_grid(diag, ensembles, keys, norm)
    diagnostics.notes = [
        "(a) PGD at a large eps leaves at most the allowed accuracy; (b) PGD at an unbounded eps breaks every "
        "image; (c) the transfer attack never beats the white-box worst case; (d) PGD with more steps never "
        f"leaves more images correct ({chain}); (e) the gradient-free Square attack never leaves fewer images "
        "correct than every gradient-based attack together ((c), (d) and (e) allow `noise_images` images of "
        "noise); (f) no correctly classified image has an exactly zero input gradient and (g) two forward passes "
        "give the same output (AutoAttack's flags: a zero gradient stalls every gradient attack, a randomised "
        "output needs EOT). Bold WARN: a failed diagnostic. Details of every warning in the CSV (`detail`) and "
        "below.",
        "\n\n".join(warnings) or "All diagnostics pass for every ensemble: no sign of gradient masking at this "
                                 "attack strength."]
    grids.append(diagnostics)
    return notes, grids


def paper_protocol(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's protocol column: the strong evaluation's own PGD-10 (one random start, step eps/10) on the
    same images as every other attack of the row, renamed 'pgd' so the paper's PGD value attaches to it."""
    pgd10 = results[(results["attack"] == "pgd_10") & (results["threat"] == "whitebox")
                    & (results["metric"] == "accuracy_pct")].copy()
    pgd10["attack"] = "pgd"
    return pgd10


def build_strong_table(results: pd.DataFrame, paper_csv: str | Path, reference: dict[str, str],
                       out_csv: str | Path, out_md: str | Path, out_tex: str | Path | None = None,
                       norm: str = "linf", title: str | None = None) -> pd.DataFrame:
    """`table_strong_evaluation` (norm 'linf') or its L2 twin from strong-evaluation records (`pdd strong`); the
    paper-protocol column is their PGD-10 on the same images, so Drop compares like with like. The paper reports
    PGD at L-inf budgets only, so the L2 twin shows no paper values."""
    strong = results[results["attack"] != "pgd"]
    paper = _paper_pgd(paper_csv)
    if norm != "linf":
        paper, reference = paper.iloc[:0], {}
    both = pd.concat([strong, paper_protocol(strong)], ignore_index=True)
    df = attach_paper(add_uncertainty(aggregate_strong(both), both), paper, reference)
    df["status"] = [_status(v) if m == "passed" else "" for v, m in zip(df["value"], df["metric"])]
    notes, grids = strong_document(df, reference, paper if norm == "linf" else None, norm)
    name = STRONG_TABLES[norm]
    df.insert(0, "table", name)
    write_table(out_csv, out_md, out_tex, df, name, title or name, notes, grids)
    return df


def build(inputs: list[str], spec: dict, out: str, paper_csv: str, output: Output) -> None:
    """Registry builder of both norms' tables (the norm from the output's name): `pdd strong` result JSONs ->
    `<out>.csv`, `<out>.md` and `<out>.tex`."""
    norm = "l2" if spec.get("name") == STRONG_TABLES["l2"] else "linf"
    build_strong_table(read_results(inputs), paper_csv, spec.get("reference", {}), f"{out}.csv", f"{out}.md",
                       f"{out}.tex", norm, output.title)
