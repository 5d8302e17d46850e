"""`table_strong_evaluation`: the paper's PGD-10 beside APGD / PGD with restarts on the same images, and the
gradient-masking diagnostics."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from pdd.io import write_text
from pdd.tables import KEYS, _cell, _param, aggregate, attach_paper, read_results

STRONG_TABLE = "table_strong_evaluation"
DIAGNOSTIC_TITLES = {
    "eps_growth": "(a) large eps: accuracy ~0",
    "unbounded": "(b) unbounded eps: 0 robust",
    "transfer": "(c) transfer <= white-box",
    "convergence": "(d) more steps never help",
}
MASKING_WARNING = "WARNING: possible gradient masking"


def strong_attack_title(attack: str) -> str:
    """Column title of a strong-evaluation attack: pgd_200x5 -> 'PGD-200 x5', apgd_dlr -> 'APGD-DLR'."""
    match = re.fullmatch(r"pgd_(\d+)(?:x(\d+))?", attack)
    if match:
        return f"PGD-{match[1]}" + (f" x{match[2]}" if match[2] else "")
    return {"none": "Clean", "pgd": "Paper protocol (PGD-10)", "worst_case": "Worst case", "apgd_ce": "APGD-CE",
            "apgd_dlr": "APGD-DLR", "transfer": "Transfer (Type I)"}.get(attack, attack)


def _strong_order(attack: str) -> tuple:
    """Column order: APGD, then PGD by steps and restarts, then transfer."""
    match = re.fullmatch(r"pgd_(\d+)(?:x(\d+))?", attack)
    if match:
        return (1, int(match[1]), int(match[2] or 1))
    return ({"apgd_ce": 0, "apgd_dlr": 0, "transfer": 2}.get(attack, 3), 0, attack)


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


def strong_markdown(df: pd.DataFrame, reference: dict[str, str]) -> str:
    """Per ensemble and eps: the paper's protocol beside the worst case and every attack; then the diagnostics,
    and a WARNING line for each failed one."""
    acc = df[df["metric"] == "accuracy_pct"]
    diag = df[df["metric"] == "passed"]
    columns = sorted(set(acc.loc[acc["attack"].str.match(r"(pgd_|apgd_|transfer)") & (acc["threat"] != "diagnostic"),
                                 "attack"]), key=_strong_order)
    header = ["Dataset", "K", "Method", "Clean", "eps", strong_attack_title("pgd"), "Worst case", "Drop"]
    lines = ["| " + " | ".join(header + [strong_attack_title(a) for a in columns]) + " |",
             "|---" * (len(header) + len(columns)) + "|"]
    ensembles = list(dict.fromkeys(zip(acc["dataset"], acc["K"], acc["method"])))
    for dataset, k, method in ensembles:
        mine = acc[(acc["dataset"] == dataset) & (acc["K"] == k) & (acc["method"] == method)]
        whitebox = mine[mine["threat"] != "diagnostic"]
        cell = {(r.attack, r.param): r for r in whitebox.itertuples()}
        clean = next((r for r in whitebox.itertuples() if r.attack == "none"), None)
        for eps in sorted(p for p in whitebox.loc[whitebox["attack"] == "worst_case", "param"].unique()):
            def text(attack: str) -> str:
                r = cell.get((attack, eps))
                return "-" if r is None else _cell(r.value, r.std, getattr(r, "paper", math.nan), 2)
            paper_protocol, worst = cell.get(("pgd", eps)), cell.get(("worst_case", eps))
            drop = "-" if paper_protocol is None or worst is None else f"{worst.value - paper_protocol.value:+.2f}"
            clean_text = "-" if clean is None else _cell(clean.value, clean.std, getattr(clean, "paper", math.nan), 2)
            lines.append(f"| {dataset} | {k} | {method} | {clean_text} | {eps:g} | {text('pgd')} | **{text('worst_case')}**"
                         f" | {drop} | " + " | ".join(text(a) for a in columns) + " |")
    steps = sorted({int(m[1]) for m in (re.fullmatch(r"pgd_(\d+)", a) for a in columns) if m})
    chain = " >= ".join(f"PGD-{n}" for n in steps) + " accuracy"
    notes = [f"# {STRONG_TABLE}", "",
             "Honest robustness: the paper's protocol (PGD, 10 steps of eps/10, one random start, on log(mean "
             "softmax), run by the strong evaluation on the same images) beside a strong L-inf evaluation of the same "
             "ensembles. Values: accuracy (%) over the test images classified correctly before the attack "
             "(Clean: over all attacked images); ours first, the paper's reported value in parentheses; ± = std over seeds.",
             "Worst case: an image counts as robust only if it is classified correctly after every white-box "
             "attack of the row (APGD-CE, APGD-DLR, PGD at each step count and with restarts). Drop = worst case "
             "minus paper protocol. Transfer (Type I): PGD crafted on the independent baseline-trained surrogate "
             "ensemble (config `surrogates.oblivious`) of the same dataset and K."]
    stand_ins = {d: p for d, p in reference.items() if d != p and d in set(df["dataset"])}
    if stand_ins:
        notes.append("Paper values shown for stand-in datasets: " + ", ".join(f"{d} -> {p}" for d, p in stand_ins.items()) + ".")
    notes += ["", *lines, "", "## Gradient-masking diagnostics", "",
              "(a) PGD at a large eps leaves at most the allowed accuracy; (b) PGD at an unbounded eps breaks every "
              "image; (c) the transfer attack never beats the white-box worst case; (d) PGD with more steps never "
              f"leaves more images correct ({chain}; (c) and (d) allow `noise_images` images of noise). "
              "Details of every warning in the CSV (`detail`).", "",
              "| Dataset | K | Method | " + " | ".join(DIAGNOSTIC_TITLES.values()) + " |",
              "|---" * (3 + len(DIAGNOSTIC_TITLES)) + "|"]
    warnings = []
    for dataset, k, method in ensembles:
        mine = diag[(diag["dataset"] == dataset) & (diag["K"] == k) & (diag["method"] == method)].set_index("attack")
        cells = []
        for name, title in DIAGNOSTIC_TITLES.items():
            if name not in mine.index:
                cells.append("-")
                continue
            r = mine.loc[name]
            status = _status(r["value"])
            shown = {"eps_growth": f" ({r['measure']:.1f}% at eps {r['param']:g})",
                     "unbounded": f" ({r['measure']:.1f}% at eps {r['param']:g})"}.get(name, "")
            cells.append(("**WARN**" if status == "warn" else status) + ("" if pd.isna(r["measure"]) else shown))
            if status == "warn":
                warnings.append(f"{MASKING_WARNING}: {dataset} K={k} {method}: {title}: {r['detail']}")
        notes.append(f"| {dataset} | {k} | {method} | " + " | ".join(cells) + " |")
    notes.append("")
    notes += warnings or ["All diagnostics pass for every ensemble: no sign of gradient masking at this attack strength."]
    return "\n".join(notes) + "\n"


def paper_protocol(results: pd.DataFrame) -> pd.DataFrame:
    """The paper's protocol column: the strong evaluation's own PGD-10 (one random start, step eps/10) on the
    same images as every other attack of the row, renamed 'pgd' so the paper's PGD value attaches to it."""
    pgd10 = results[(results["attack"] == "pgd_10") & (results["threat"] == "whitebox")
                    & (results["metric"] == "accuracy_pct")].copy()
    pgd10["attack"] = "pgd"
    return pgd10


def build_strong_table(results: pd.DataFrame, paper_csv: str | Path, reference: dict[str, str],
                       out_csv: str | Path, out_md: str | Path) -> pd.DataFrame:
    """`table_strong_evaluation` from strong-evaluation records (`pdd strong`); the paper-protocol column is their
    PGD-10 on the same images, so Drop compares like with like."""
    strong = results[results["attack"] != "pgd"]
    df = attach_paper(aggregate_strong(pd.concat([strong, paper_protocol(strong)], ignore_index=True)),
                      _paper_pgd(paper_csv), reference)
    df["status"] = [_status(v) if m == "passed" else "" for v, m in zip(df["value"], df["metric"])]
    df.insert(0, "table", STRONG_TABLE)
    write_text(out_csv, df.to_csv(index=False))
    write_text(out_md, strong_markdown(df, reference))
    return df


def build(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """Registry builder: `pdd strong` result JSONs -> `<out>.csv` and `<out>.md`."""
    build_strong_table(read_results(inputs), paper_csv, spec.get("reference", {}), f"{out}.csv", f"{out}.md")
