"""Assemble result files into the paper's tables: long-format CSV with a `paper` column, and Markdown."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from pdd.io import write_text

PAPER_TABLE = {
    "table1_entropy": "table1",
    "table2_whitebox_k3": "table2",
    "table3_whitebox_k5": "table3",
    "table4_blackbox": "table4",
    "table5_ablation": "table5",
    "table6_adversarial_training": "table6",
    "timing": "timing",
}
KEYS = ["dataset", "K", "threat", "attack", "param", "method", "metric"]
ATTACK_TITLES = {"none": "No attack", "fgsm": "FGSM", "bim": "BIM", "pgd": "PGD", "pgd_l2": "PGD-L2",
                 "jsma": "JSMA", "cw": "C&W"}


def _param(value) -> float:
    """Attack parameters as floats (NaN for none) so '0.10' and 0.1 match."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    return round(float(value), 6)


def read_results(paths: list[str | Path]) -> pd.DataFrame:
    """One row per record of the result JSON files (each a list of records with KEYS, `seed`, `value`)."""
    df = pd.DataFrame([record for p in paths for record in json.loads(Path(p).read_text())])
    df["param"] = df["param"].map(_param)
    return df


def read_paper(path: str | Path, table: str) -> pd.DataFrame:
    """The paper's numbers for one of our tables, keyed like our rows."""
    paper = pd.read_csv(path, dtype={"param": str})
    paper = paper[paper["table"] == PAPER_TABLE[table]].copy()
    paper["param"] = paper["param"].map(_param)
    paper["metric"] = paper["metric"].replace({"seconds_per_epoch_v100": "seconds_per_epoch"})
    return paper.rename(columns={"value": "paper"})[KEYS + ["paper"]]


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (NaN for one seed) and count over seeds of every numeric column."""
    numeric = [c for c in df.columns if c not in KEYS + ["seed"] and pd.api.types.is_numeric_dtype(df[c])]
    grouped = df.groupby(KEYS, dropna=False, sort=False)
    out = grouped[numeric].mean()
    out["std"] = grouped["value"].std(ddof=1)
    out["n_seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def attach_paper(df: pd.DataFrame, paper: pd.DataFrame, reference: dict[str, str]) -> pd.DataFrame:
    """Add the paper's value; `reference` maps a dataset of ours to the paper dataset it stands in for."""
    df = df.copy()
    df["paper_dataset"] = df["dataset"].map(lambda d: reference.get(d, d))
    merged = df.merge(paper.rename(columns={"dataset": "paper_dataset"}),
                      on=["paper_dataset"] + [k for k in KEYS if k != "dataset"], how="left")
    return merged


def timing_results(logs: list[str | Path]) -> pd.DataFrame:
    """Median training seconds per epoch of every training log, as result rows."""
    rows = []
    for path in logs:
        log = pd.read_csv(path)
        first = log.iloc[0]
        rows.append({"dataset": first["dataset"], "K": int(first["K"]), "threat": "none", "attack": "none",
                     "param": math.nan, "method": first["method"], "metric": "seconds_per_epoch",
                     "seed": int(first["seed"]), "value": float(log["seconds"].median())})
    return pd.DataFrame(rows)


def add_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """Timing: ratio of every method's seconds per epoch to the baseline's (ours and the paper's)."""
    df = df.copy()
    for col, out in (("value", "ratio"), ("paper", "paper_ratio")):
        base = df[df["method"] == "baseline"].set_index(["dataset", "K"])[col]
        df[out] = [v / base.get((d, k), math.nan) for v, d, k in zip(df[col], df["dataset"], df["K"])]
    return df


def _cell(value: float, std: float, paper: float, digits: int) -> str:
    text = "-" if pd.isna(value) else f"{value:.{digits}f}"
    if not pd.isna(std):
        text += f" ± {std:.{digits}f}"
    return text + ("" if pd.isna(paper) else f" ({paper:.{digits}f})")


def markdown(df: pd.DataFrame, name: str, reference: dict[str, str]) -> str:
    """The table in the paper's shape: one row per (dataset, K, threat, attack, parameter), one column per method."""
    digits = 4 if name == "table1_entropy" else 2
    if name == "timing":
        lines = ["| Dataset | K | Method | s/epoch (ours) | ratio | s/epoch (paper, V100) | ratio (paper) |",
                 "|---|---|---|---|---|---|---|"]
        for r in df.itertuples():
            lines.append(f"| {r.dataset} | {r.K} | {r.method} | {_cell(r.value, r.std, math.nan, 2)} | "
                         f"{r.ratio:.2f} | {_cell(r.paper, math.nan, math.nan, 0)} | {_cell(r.paper_ratio, math.nan, math.nan, 2)} |")
    else:
        methods = list(dict.fromkeys(df["method"]))
        lines = ["| Dataset | K | Threat | Attack | Param | " + " | ".join(methods) + " |",
                 "|---" * (5 + len(methods)) + "|"]
        for (dataset, k, threat, attack, param), group in df.groupby(
                ["dataset", "K", "threat", "attack", "param"], dropna=False, sort=False):
            cells = {r.method: _cell(r.value, r.std, r.paper, digits) for r in group.itertuples()}
            lines.append(f"| {dataset} | {k} | {threat} | {ATTACK_TITLES.get(attack, attack)} | "
                         f"{'' if pd.isna(param) else f'{param:g}'} | " + " | ".join(cells.get(m, "") for m in methods) + " |")
    unit = "entropy E (eq. 5)" if name == "table1_entropy" else (
        "seconds per training epoch" if name == "timing" else
        "accuracy (%) over the test images classified correctly before the attack")
    notes = [f"# {name}", "", f"Values: {unit}; ours first, the paper's in parentheses; ± = std over seeds."]
    stand_ins = {d: p for d, p in reference.items() if d != p and d in set(df["dataset"])}
    if stand_ins:
        notes.append("Paper values shown for stand-in datasets: "
                     + ", ".join(f"{d} -> {p}" for d, p in stand_ins.items()) + ".")
    return "\n".join(notes + [""] + lines) + "\n"


def build_table(name: str, results: pd.DataFrame, paper_csv: str | Path, reference: dict[str, str],
                out_csv: str | Path, out_md: str | Path) -> pd.DataFrame:
    """Aggregate over seeds, attach the paper's numbers and write `<name>.csv` and `.md` atomically."""
    if name not in PAPER_TABLE:
        raise ValueError(f"unknown table {name!r}; expected one of {sorted(PAPER_TABLE)}")
    df = attach_paper(aggregate(results), read_paper(paper_csv, name), reference)
    if name == "timing":
        df = add_ratio(df)
    df.insert(0, "table", name)
    write_text(out_csv, df.to_csv(index=False))
    write_text(out_md, markdown(df, name, reference))
    return df


# --- The strong evaluation (issue 7): the paper's protocol beside APGD / PGD with restarts ----------------

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
             "softmax); from this pipeline's white-box results) beside a strong L-inf evaluation of the same "
             "ensembles. Values: accuracy (%) over the test images classified correctly before the attack "
             "(Clean: over all images); ours first, the paper's reported value in parentheses; ± = std over seeds.",
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


def build_strong_table(results: pd.DataFrame, paper_csv: str | Path, reference: dict[str, str],
                       out_csv: str | Path, out_md: str | Path) -> pd.DataFrame:
    """`table_strong_evaluation`: strong-evaluation records (`pdd strong`) and the paper-protocol PGD records
    (white-box suite); the latter only at the eps values the strong evaluation covers."""
    strong = results[results["attack"] != "pgd"]
    covered = set(zip(strong["dataset"], strong["K"], strong["method"], strong["seed"], strong["param"]))
    protocol = results[(results["attack"] == "pgd") & (results["threat"] == "whitebox")]
    protocol = protocol[[key in covered for key in zip(protocol["dataset"], protocol["K"], protocol["method"],
                                                       protocol["seed"], protocol["param"])]]
    df = attach_paper(aggregate_strong(pd.concat([strong, protocol], ignore_index=True)), _paper_pgd(paper_csv),
                      reference)
    df["status"] = [_status(v) if m == "passed" else "" for v, m in zip(df["value"], df["metric"])]
    df.insert(0, "table", STRONG_TABLE)
    write_text(out_csv, df.to_csv(index=False))
    write_text(out_md, strong_markdown(df, reference))
    return df
