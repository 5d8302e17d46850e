"""Assemble result files into the paper's tables: long-format CSV with a `paper` column, and Markdown."""

from __future__ import annotations

import json
import math
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
