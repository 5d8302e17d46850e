"""Assemble result files into the paper's tables: long-format CSV with a `paper` column, and Markdown."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from pdd.io import write_text
from pdd.outputs import OUTPUTS

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


# The paper's orientation of each table: row keys and column keys (the rest of KEYS is constant in a table).
LAYOUTS = {
    "table1_entropy": (["dataset", "K"], ["method"]),
    "table2_whitebox_k3": (["K", "attack", "param"], ["dataset", "method"]),
    "table3_whitebox_k5": (["K", "attack", "param"], ["dataset", "method"]),
    "table4_blackbox": (["dataset", "K", "threat", "attack", "param"], ["method"]),
    "table5_ablation": (["dataset", "K", "attack", "param"], ["method"]),
    "table6_adversarial_training": (["dataset", "K", "method"], ["attack", "param"]),
}
THREAT_TITLES = {"whitebox": "White-box", "blackbox_oblivious": "Type I (oblivious)",
                 "blackbox_adaptive": "Type II (adaptive)", "none": ""}
CLEAN_LABEL = "Clean accuracy (% of all attacked images)"


def _label(key: str, value) -> str:
    """A row or column key as shown: attacks by title, 'none' as the clean-accuracy row, params compact."""
    if key == "attack":
        return CLEAN_LABEL if value == "none" else ATTACK_TITLES.get(value, value)
    if key == "param":
        return "" if pd.isna(value) else f"{value:g}"
    if key == "threat":
        return THREAT_TITLES.get(value, value)
    return str(value)


def pivot_markdown(df: pd.DataFrame, rows: list[str], columns: list[str], digits: int) -> list[str]:
    """Markdown lines: one row per distinct `rows` key, one column per distinct `columns` key (first-seen order);
    each cell looked up by its own keys, so a missing result is '-' in its own column only."""
    row_keys = list(dict.fromkeys(tuple(r) for r in df[rows].itertuples(index=False)))
    col_keys = list(dict.fromkeys(tuple(c) for c in df[columns].itertuples(index=False)))
    cells = {(tuple(r[rows]), tuple(r[columns])): _cell(r["value"], r["std"], r["paper"], digits)
             for _, r in df.iterrows()}
    if columns == ["attack", "param"]:  # the clean row becomes a column
        header_cols = [" ".join(x for x in (_label(k, v) for k, v in zip(columns, key)) if x) for key in col_keys]
    else:
        header_cols = [" ".join(_label(k, v) for k, v in zip(columns, key)) for key in col_keys]
    header = [{"attack": "Attack", "param": "Param", "dataset": "Dataset", "K": "K", "threat": "Threat",
               "method": "Method"}[k] for k in rows]
    lines = ["| " + " | ".join(header + header_cols) + " |", "|---" * (len(header) + len(col_keys)) + "|"]
    for key in row_keys:
        labels = [_label(k, v) for k, v in zip(rows, key)]
        lines.append("| " + " | ".join(labels + [cells.get((key, c), "-") for c in col_keys]) + " |")
    return lines


def markdown(df: pd.DataFrame, name: str, reference: dict[str, str]) -> str:
    """The table in the paper's orientation (LAYOUTS), our value first and the paper's in parentheses."""
    digits = 4 if name == "table1_entropy" else 2
    rows, columns = LAYOUTS.get(name, (["dataset", "K", "threat", "attack", "param"], ["method"]))
    lines = pivot_markdown(df, rows, columns, digits)
    if name == "table1_entropy":
        unit = "entropy E (eq. 5) over the test set"
    else:
        unit = ("accuracy (%) over the test images the ensemble classifies correctly before the attack, except the "
                f"row or column '{CLEAN_LABEL}'")
    title = OUTPUTS[name].title
    notes = [f"# {title}", "", f"Values: {unit}; ours first, the paper's in parentheses; ± = std over seeds."]
    stand_ins = {d: p for d, p in reference.items() if d != p and d in set(df["dataset"])}
    if stand_ins:
        notes.append("Paper values shown for stand-in datasets: "
                     + ", ".join(f"{d} -> {p}" for d, p in stand_ins.items()) + ".")
    return "\n".join(notes + [""] + lines) + "\n"


def timing_markdown(df: pd.DataFrame) -> str:
    """Timing: interleaved step seconds and ratio, training-log seconds per epoch, the paper's V100 figures."""
    lines = ["| Dataset | K | Method | s/step (interleaved) | ratio | s/epoch (training log) | ratio | "
             "s/epoch (paper, V100) | ratio (paper) |", "|---" * 9 + "|"]
    for r in df.itertuples():
        lines.append(f"| {r.dataset} | {r.K} | {r.method} | {_cell(r.step_seconds, math.nan, math.nan, 4)} | "
                     f"{_cell(r.step_ratio, math.nan, math.nan, 2)} | {_cell(r.value, r.std, math.nan, 2)} | "
                     f"{_cell(r.ratio, math.nan, math.nan, 2)} | {_cell(r.paper, math.nan, math.nan, 0)} | "
                     f"{_cell(r.paper_ratio, math.nan, math.nan, 2)} |")
    notes = [f"# {OUTPUTS['timing'].title}", "",
             "s/step: median seconds per training step (loss, backward, SGD step) of every method timed in one "
             "process, methods interleaved, so concurrent jobs cannot favour one method; s/epoch: median of the "
             "training logs (jobs may have shared the machine). Ratios are to the baseline."]
    return "\n".join(notes + [""] + lines) + "\n"


def _write_table(df: pd.DataFrame, name: str, md: str, out_csv: str | Path, out_md: str | Path) -> pd.DataFrame:
    df.insert(0, "table", name)
    write_text(out_csv, df.to_csv(index=False))
    write_text(out_md, md)
    return df


def build_table(name: str, results: pd.DataFrame, paper_csv: str | Path, reference: dict[str, str],
                out_csv: str | Path, out_md: str | Path) -> pd.DataFrame:
    """Aggregate over seeds, attach the paper's numbers and write `<name>.csv` and `.md` atomically."""
    if name not in PAPER_TABLE or name == "timing":
        raise ValueError(f"unknown table {name!r}; expected one of {sorted(set(PAPER_TABLE) - {'timing'})}")
    df = attach_paper(aggregate(results), read_paper(paper_csv, name), reference)
    return _write_table(df, name, markdown(df, name, reference), out_csv, out_md)


def build_timing(step_files: list[str | Path], logs: list[str | Path], paper_csv: str | Path,
                 reference: dict[str, str], out_csv: str | Path, out_md: str | Path) -> pd.DataFrame:
    """The timing table: interleaved step seconds (and ratio) beside training-log seconds per epoch."""
    df = attach_paper(aggregate(timing_results(logs)), read_paper(paper_csv, "timing"), reference)
    df = add_ratio(df)
    steps = pd.DataFrame([r for p in step_files for r in json.loads(Path(p).read_text())])
    steps = steps.groupby(["dataset", "K", "method"], sort=False)["seconds"].mean().rename("step_seconds")
    df = df.join(steps, on=["dataset", "K", "method"])
    base = df[df["method"] == "baseline"].set_index(["dataset", "K"])["step_seconds"]
    df["step_ratio"] = [v / base.get((d, k), math.nan) for v, d, k in zip(df["step_seconds"], df["dataset"], df["K"])]
    return _write_table(df, "timing", timing_markdown(df), out_csv, out_md)


def build_paper_table(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """Registry builder of Tables 1-6: result JSONs -> `<out>.csv` and `<out>.md`."""
    build_table(spec["name"], read_results(inputs), paper_csv, spec.get("reference", {}), f"{out}.csv", f"{out}.md")


def build_timing_table(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """Registry builder of `timing`: step-timing JSONs and training logs."""
    steps = [p for p in inputs if p.endswith(".json")]
    logs = [p for p in inputs if p.endswith(".csv")]
    build_timing(steps, logs, paper_csv, spec.get("reference", {}), f"{out}.csv", f"{out}.md")
