"""Assemble result files into the paper's tables: a long-format CSV (code names, a `paper` column), and Markdown and
LaTeX in the paper's shape (display names, parameters named per attack, the best method in bold)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pdd.reports.display import (
    HEADERS,
    Grid,
    best_mask,
    dataset_name,
    fmt,
    label,
    param_label,
    param_legend,
    write_table,
)

if TYPE_CHECKING:  # the registry names the builders; they only read their entry
    from pdd.plan.outputs import Output

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
# Keys a table may hold one value of: shown once above the table instead of in every row.
SETTING_KEYS = ("dataset", "K", "threat")
ACCURACY = ("Accuracy (%) over the test images the ensemble classifies correctly before the attack; No attack: clean "
            "accuracy over all evaluated test images.")
SEEDS = "Mean over seeds, ± = std over seeds"


def _param(value) -> float:
    """Attack parameters as floats (NaN for none) so '0.10' and 0.1 match."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    return round(float(value), 6)


def read_results(paths: list[str | Path]) -> pd.DataFrame:
    """One row per record of the result JSON files (each a list of records with KEYS, `seed`, `value`); a job's
    cost record (metric 'cost', read by the cost table) is left out."""
    df = pd.DataFrame([record for p in paths for record in json.loads(Path(p).read_text())
                       if record.get("metric") != "cost"])
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


GROUP = [k for k in KEYS if k != "method"]  # what two methods must share to be compared on the same images
CI_COLUMNS = ["ci_low", "ci_high", "p_vs_baseline", "baseline_method"]
MAX_INTERVAL_COLUMNS = 4  # a Markdown / LaTeX grid with more value columns shows the intervals in the CSV only
INTERVAL_NOTE = ("[low, high]: 95% Wilson interval of the count, pooled over seeds (p-values against the baseline: "
                 "CSV column `p_vs_baseline`).")


def counts(record: pd.Series) -> tuple[float, float]:
    """(successes, trials) behind an accuracy record: clean accuracy = correct of all images; an attack = robust of
    the initially correct (the paper's convention); NaN where the record lacks its counts (older files)."""
    if record.get("metric") != "accuracy_pct":
        return math.nan, math.nan
    names = ("n_clean_correct", "n_images") if record.get("attack") == "none" else ("n_robust", "n_clean_correct")
    found = [record.get(n, math.nan) for n in names]
    return (math.nan, math.nan) if any(pd.isna(v) for v in found) else (float(found[0]), float(found[1]))


def baseline_of(method: str, methods: set[str]) -> str | None:
    """The method a method is compared with on the same images: the baseline where the table has it, else the
    method without PDD (AdvT-FGSM for AdvT-FGSM+PDD, Table 6); None for the baseline itself or none found."""
    if method != "baseline" and "baseline" in methods:
        return "baseline"
    if method.endswith("_pdd") and method.removesuffix("_pdd") in methods:
        return method.removesuffix("_pdd")
    return None


def robust_flags(record: pd.Series):
    """The record's per-image robust flags (bool [n_images]), or None where it has none (files from before them)."""
    from pdd.evaluation.records import unpack_flags

    text, n = record.get("robust_flags"), record.get("n_images")
    if not isinstance(text, str) or pd.isna(n):
        return None
    return unpack_flags(text, int(n))


def per_seed_flags(first: pd.DataFrame, second: pd.DataFrame):
    """Per-image robust flags of two methods' records (one per seed), seed by seed on the same images, over the
    seeds both have: ([flags of first per seed], [flags of second per seed]), or None where any pair cannot be
    matched (no flags, other images, no common seed)."""
    seeds = sorted(set(first["seed"]) & set(second["seed"]))
    firsts, seconds = [], []
    for seed in seeds:
        a, b = first[first["seed"] == seed].iloc[0], second[second["seed"] == seed].iloc[0]
        fa, fb = robust_flags(a), robust_flags(b)
        same = all(a.get(k) == b.get(k) or (pd.isna(a.get(k)) and pd.isna(b.get(k))) for k in ("images", "n_images"))
        if fa is None or fb is None or not same:
            return None
        firsts.append(fa)
        seconds.append(fb)
    return (firsts, seconds) if firsts else None


def paired_flags(first: pd.DataFrame, second: pd.DataFrame):
    """`per_seed_flags` concatenated over the seeds: (flags of first, flags of second), or None."""
    import numpy as np

    found = per_seed_flags(first, second)
    return None if found is None else (np.concatenate(found[0]), np.concatenate(found[1]))


def uncertainty(results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per KEYS: the Wilson interval (`ci_low`, `ci_high`, percent) of the accuracy's counts pooled over seeds, and
    the exact McNemar p-value (`p_vs_baseline`) of the per-image robust flags against `baseline_method` on the
    same images (seeds paired); NaN where the records lack counts or flags."""
    from pdd.evaluation.statistics import discordant, mcnemar_p, wilson_interval

    rows = []
    for group_key, group in results.groupby(GROUP, dropna=False, sort=False):
        methods = set(group["method"])
        for method, mine in group.groupby("method", sort=False):
            found = [counts(r) for _, r in mine.iterrows()]
            s, n = sum(f[0] for f in found), sum(f[1] for f in found)
            low, high = (math.nan, math.nan) if pd.isna(s) or pd.isna(n) else wilson_interval(int(s), int(n), level)
            base, p = baseline_of(method, methods), math.nan
            paired = None if base is None else paired_flags(mine, group[group["method"] == base])
            if paired is not None:
                _, only_mine, only_base, _ = discordant(*paired)
                p = mcnemar_p(only_mine, only_base)
            rows.append({**dict(zip(GROUP, group_key)), "method": method, "ci_low": low, "ci_high": high,
                         "p_vs_baseline": p, "baseline_method": base})
    return pd.DataFrame(rows, columns=KEYS + CI_COLUMNS)


def add_uncertainty(df: pd.DataFrame, results: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """`df` (aggregated over seeds) with `uncertainty(results)`'s columns joined on KEYS."""
    if results.empty or "metric" not in results:
        return df.assign(**{c: math.nan for c in CI_COLUMNS})
    return df.merge(uncertainty(results, level), on=KEYS, how="left")


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


# The paper's orientation of each table: row keys and column keys (the rest of KEYS is constant in a table).
LAYOUTS = {
    "table1_entropy": (["dataset", "K"], ["method"]),
    "table2_whitebox_k3": (["K", "attack", "param"], ["dataset", "method"]),
    "table3_whitebox_k5": (["K", "attack", "param"], ["dataset", "method"]),
    "table4_blackbox": (["dataset", "K", "threat", "attack", "param"], ["method"]),
    "table5_ablation": (["dataset", "K", "attack", "param"], ["method"]),
    "table6_adversarial_training": (["dataset", "K", "method"], ["attack", "param"]),
}
DEFAULT_LAYOUT = (["dataset", "K", "threat", "attack", "param"], ["method"])


def _key(values) -> tuple:
    """A row's key values with every missing value as None, so keys with no parameter compare equal."""
    return tuple(None if isinstance(v, float) and math.isnan(v) else v for v in values)


def key_labels(names: list[str], key: tuple) -> tuple[str, ...]:
    """Display labels of one key: the parameter named after the attack in the same key (param_label)."""
    attack = dict(zip(names, key)).get("attack")
    return tuple(param_label(attack or "", v) if n == "param" else label(n, v) for n, v in zip(names, key))


def _index(names: list[str], keys: list[tuple]) -> pd.Index:
    """Row or column labels of `keys` for display, headed by the keys' names (one level per key name)."""
    labels = [key_labels(names, k) for k in keys]
    headers = [HEADERS.get(n, n) for n in names]
    if len(names) == 1:
        return pd.Index([lab[0] for lab in labels], name=headers[0])
    return pd.MultiIndex.from_tuples(labels, names=headers)


def settings(df: pd.DataFrame, keys: list[str]) -> dict[str, object]:
    """The setting keys (dataset, K, threat) among `keys` with one value in the whole table."""
    return {k: df[k].iloc[0] for k in SETTING_KEYS if k in keys and df[k].nunique(dropna=False) == 1}


def settings_line(constant: dict[str, object]) -> str:
    """'Dataset: Digits (8x8); K = 3.' for the keys shown once above a table."""
    parts = [f"K = {label('K', v)}" if k == "K" else f"{HEADERS[k]}: {label(k, v)}" for k, v in constant.items()
             if label(k, v)]
    return ("; ".join(parts) + ".") if parts else ""


def comparison(rows: list[str], columns: list[str]) -> str | None:
    """Where methods are compared: 'row' when methods are columns, 'column' when they are rows."""
    return "row" if "method" in columns else ("column" if "method" in rows else None)


def pivot_grid(df: pd.DataFrame, rows: list[str], columns: list[str], digits: int, show_paper: bool = True,
               higher: bool | None = True, intervals: bool = False) -> Grid:
    """One cell per distinct (`rows`, `columns`) key in first-seen order, looked up by its own keys (a missing
    result is '-' in its own cell only); setting keys with one value are left out of the labels. Bold: the best
    method among those compared on everything else (`higher`: best = highest; None: no bold). The paper's value
    goes in parentheses after ours where `show_paper` and the row's dataset is the paper's own (not a stand-in);
    with `intervals`, the 95% Wilson interval [ci_low, ci_high] after it."""
    constant = settings(df, rows + columns)
    shown_rows = [k for k in rows if k not in constant] or rows
    shown_cols = [k for k in columns if k not in constant] or columns
    row_keys = list(dict.fromkeys(_key(r) for r in df[rows].itertuples(index=False)))
    col_keys = list(dict.fromkeys(_key(c) for c in df[columns].itertuples(index=False)))
    records = {(_key(r[rows]), _key(r[columns])): r for _, r in df.iterrows()}
    text = np.full((len(row_keys), len(col_keys)), "-", dtype=object)
    suffix = np.full(text.shape, "", dtype=object)
    values = np.full(text.shape, np.nan)
    for i, rk in enumerate(row_keys):
        for j, ck in enumerate(col_keys):
            r = records.get((rk, ck))
            if r is None:
                continue
            text[i, j] = fmt(r["value"], digits, r.get("std", math.nan))
            paper = r.get("paper", math.nan)
            if show_paper and r.get("paper_dataset", r["dataset"]) == r["dataset"] and not pd.isna(paper):
                suffix[i, j] = f" ({paper:.{digits}f})"
            if intervals and not pd.isna(r.get("ci_low", math.nan)):
                suffix[i, j] += f" [{r['ci_low']:.1f}, {r['ci_high']:.1f}]"
            values[i, j] = round(r["value"], digits) if not pd.isna(r["value"]) else np.nan
    keep_r = [rows.index(k) for k in shown_rows]
    keep_c = [columns.index(k) for k in shown_cols]
    index = _index(shown_rows, [tuple(k[i] for i in keep_r) for k in row_keys])
    cols = _index(shown_cols, [tuple(k[i] for i in keep_c) for k in col_keys])
    cells = pd.DataFrame(text, index=index, columns=cols)
    suffix = pd.DataFrame(suffix, index=index, columns=cols)
    bold = None
    along = comparison(rows, columns)
    if higher is not None and along:
        frame = pd.DataFrame(values)
        other_names, other_keys = (columns, col_keys) if along == "row" else (rows, row_keys)
        context = [i for i, n in enumerate(other_names) if n != "method"]
        groups: dict[tuple, list[int]] = {}
        for pos, key in enumerate(other_keys):
            groups.setdefault(tuple(key[i] for i in context), []).append(pos)
        bold = best_mask(frame, along, list(groups.values()), higher=higher)
        bold = pd.DataFrame(bold.to_numpy(), index=index, columns=cols)
    return Grid(cells, bold, notes=[settings_line(constant)], suffix=suffix)


def bold_note(rows: list[str], columns: list[str], df: pd.DataFrame, what: str = "highest") -> str:
    """Says what the bold marks: the best method per row or per column, within each dataset / K where several."""
    along = comparison(rows, columns)
    if along is None:
        return ""
    other = columns if along == "row" else rows
    within = [HEADERS[k].lower() if k != "K" else "K" for k in other
              if k in SETTING_KEYS and df[k].nunique(dropna=False) > 1]
    return (f"Bold: the {what} value among the methods in each {along}"
            + (f" (per {' and '.join(within)})" if within else "") + ".")


def stand_ins(df: pd.DataFrame, reference: dict[str, str]) -> dict[str, str]:
    """{our dataset: the paper's dataset it stands in for} for the table's datasets that are not the paper's."""
    return {d: p for d, p in reference.items() if d != p and d in set(df["dataset"])}


def _paper_name(table: str) -> str:
    return {"timing": "timing paragraph"}.get(table, table.replace("table", "Table "))


def stand_in_note(ours: str, paper: str, table: str, attacks: bool = False) -> str:
    """Says that `ours` stands in for the paper's dataset and that the paper's numbers are a table of their own."""
    return (f"{dataset_name(ours)} stands in for the paper's {dataset_name(paper)} (config `reference`): its cells "
            f"show our numbers only, since the paper's are for another dataset; the paper's {dataset_name(paper)} "
            f"numbers ({_paper_name(table)}) are in the table below"
            + (", at the paper's own attack parameters." if attacks else "."))


def paper_rows(paper: pd.DataFrame, df: pd.DataFrame, ours: str, paper_dataset: str) -> pd.DataFrame:
    """The paper's rows for `paper_dataset` at our stand-in's K values and methods, as value rows (no std)."""
    mine = df[df["dataset"] == ours]
    rows = paper[(paper["dataset"] == paper_dataset) & paper["K"].isin(set(mine["K"]))
                 & paper["method"].isin(set(mine["method"]))]
    return rows.assign(value=rows["paper"], std=math.nan, paper=math.nan)


def paper_grid(paper: pd.DataFrame, df: pd.DataFrame, ours: str, paper_dataset: str, table: str,
               rows: list[str], columns: list[str], digits: int, higher: bool | None = True) -> Grid | None:
    """A small table of the paper's numbers for the dataset `ours` stands in for (None if the paper has none)."""
    found = paper_rows(paper, df, ours, paper_dataset)
    if found.empty:
        return None
    grid = pivot_grid(found, rows, columns, digits, show_paper=False, higher=higher)
    grid.caption = (f"The paper's {_paper_name(table)}: {dataset_name(paper_dataset)} "
                    f"(what {dataset_name(ours)} stands in for)")
    return grid


def table_notes(name: str, df: pd.DataFrame, rows: list[str], columns: list[str]) -> list[str]:
    """The paragraphs under a paper table's heading: what the values are, the bold, the parameters, stand-ins."""
    own = (df.get("paper_dataset", df["dataset"]) == df["dataset"]) & df["paper"].notna()
    paper = "; the paper's value in parentheses" if own.any() else ""
    if name == "table1_entropy":
        unit = f"Entropy E of eq. 5 over the test set (higher = the members disagree more often). {SEEDS}{paper}."
    else:
        unit = f"{ACCURACY} {SEEDS}{paper}."
    return [unit, bold_note(rows, columns, df), param_legend(df["attack"].unique())]


def paper_document(df: pd.DataFrame, name: str, reference: dict[str, str], paper: pd.DataFrame | None = None
             ) -> tuple[list[str], list[Grid]]:
    """Notes and grids of a paper table in its orientation (LAYOUTS); a stand-in dataset's paper numbers as a
    table of their own below (from `paper`, the paper's rows of this table)."""
    digits = 4 if name == "table1_entropy" else 2
    rows, columns = LAYOUTS.get(name, DEFAULT_LAYOUT)
    narrow = len(df[columns].drop_duplicates()) <= MAX_INTERVAL_COLUMNS
    shown = narrow and "ci_low" in df and df["ci_low"].notna().any()
    main = pivot_grid(df, rows, columns, digits, intervals=shown)
    notes, main.notes = main.notes + table_notes(name, df, rows, columns) + ([INTERVAL_NOTE] if shown else []), []
    grids = [main]
    for ours, theirs in stand_ins(df, reference).items():
        notes.append(stand_in_note(ours, theirs, PAPER_TABLE.get(name, name), name != "table1_entropy"))
        extra = None if paper is None else paper_grid(paper, df, ours, theirs, PAPER_TABLE.get(name, name), rows,
                                                      columns, digits)
        if extra is not None:
            grids.append(extra)
    return notes, grids


def _finish(df: pd.DataFrame, name: str) -> pd.DataFrame:
    df.insert(0, "table", name)
    return df


def build_table(name: str, results: pd.DataFrame, paper_csv: str | Path, reference: dict[str, str],
                out_csv: str | Path, out_md: str | Path, out_tex: str | Path | None = None,
                title: str | None = None) -> pd.DataFrame:
    """Aggregate over seeds, attach the paper's numbers and write `<name>.csv`, `.md` and `.tex` atomically
    (headed by `title`, else the name)."""
    if name not in PAPER_TABLE or name == "timing":
        raise ValueError(f"unknown table {name!r}; expected one of {sorted(set(PAPER_TABLE) - {'timing'})}")
    paper = read_paper(paper_csv, name)
    df = attach_paper(add_uncertainty(aggregate(results), results), paper, reference)
    notes, grids = paper_document(df, name, reference, paper)
    df = _finish(df, name)
    write_table(out_csv, out_md, out_tex, df, name, shown_title(title or name, results), notes, grids)
    return df


def shown_title(title: str, results: pd.DataFrame) -> str:
    """The title with its 'K = 3' saying the K the table shows ('Table 2: ..., K = 2' for a K = 2 config)."""
    ks = sorted({int(k) for k in results["K"].dropna()}) if "K" in results else []
    return re.sub(r"K = \d+", f"K = {', '.join(map(str, ks))}", title) if ks else title


TIMING_COLUMNS = {"step_seconds": ("s/step (interleaved)", 4), "step_ratio": ("ratio (s/step)", 2),
                  "value": ("s/epoch (training log)", 2), "ratio": ("ratio (s/epoch)", 2),
                  "paper": ("s/epoch (paper, V100)", 0), "paper_ratio": ("ratio (paper)", 2)}


def timing_grid(df: pd.DataFrame, columns: list[str]) -> Grid:
    """Rows per (dataset, K, method), one column per measurement in `columns` (keys of TIMING_COLUMNS); no bold:
    a cost, not a result to rank."""
    constant = settings(df, ["dataset", "K"])
    keys = [k for k in ("dataset", "K") if k not in constant] + ["method"]
    text = [[fmt(r[c], TIMING_COLUMNS[c][1], r["std"] if c == "value" else math.nan) for c in columns]
            for _, r in df.iterrows()]
    index = _index(keys, [tuple(r[k] for k in keys) for _, r in df.iterrows()])
    return Grid(pd.DataFrame(text, index=index, columns=[TIMING_COLUMNS[c][0] for c in columns]),
                notes=[settings_line(constant)])


def timing_document(df: pd.DataFrame, reference: dict[str, str]) -> tuple[list[str], list[Grid]]:
    """Timing: interleaved step seconds and ratio, training-log seconds per epoch, and the paper's V100 figures
    (inline for the paper's own datasets, in a table of their own for a stand-in)."""
    own = df["paper_dataset"] == df["dataset"]
    shown = df.assign(paper=df["paper"].where(own), paper_ratio=df["paper_ratio"].where(own))
    columns = ["step_seconds", "step_ratio", "value", "ratio"] + (["paper", "paper_ratio"] if own.any() else [])
    notes = ["s/step: median seconds per training step (loss, backward, SGD step) of every method timed in one "
             "process, methods interleaved, so concurrent jobs cannot favour one method; s/epoch: median of the "
             "training logs (jobs may have shared the machine; ± = std over seeds). Ratios are to the baseline. "
             "No bold: costs, not results to rank."]
    main = timing_grid(shown, columns)
    notes, main.notes, grids = main.notes + notes, [], [main]
    for ours, theirs in stand_ins(df, reference).items():
        notes.append(stand_in_note(ours, theirs, "timing"))
        mine = df[df["dataset"] == ours].drop_duplicates(["K", "method"])
        paper = mine[mine["paper"].notna()].assign(dataset=theirs, std=math.nan)
        if not paper.empty:
            grid = timing_grid(paper, ["paper", "paper_ratio"])
            grid.caption = (f"The paper's timing paragraph: {dataset_name(theirs)} on a V100 "
                            f"(what {dataset_name(ours)} stands in for)")
            grids.append(grid)
    return notes, grids


def build_timing(step_files: list[str | Path], logs: list[str | Path], paper_csv: str | Path,
                 reference: dict[str, str], out_csv: str | Path, out_md: str | Path,
                 out_tex: str | Path | None = None, title: str | None = None) -> pd.DataFrame:
    """The timing table: interleaved step seconds (and ratio) beside training-log seconds per epoch."""
    df = attach_paper(aggregate(timing_results(logs)), read_paper(paper_csv, "timing"), reference)
    df = add_ratio(df)
    steps = pd.DataFrame([r for p in step_files for r in json.loads(Path(p).read_text()) if r.get("metric") != "cost"],
                         columns=["dataset", "K", "method", "seconds"])
    steps = steps.groupby(["dataset", "K", "method"], sort=False)["seconds"].mean().rename("step_seconds")
    df = df.join(steps, on=["dataset", "K", "method"])
    base = df[df["method"] == "baseline"].set_index(["dataset", "K"])["step_seconds"]
    df["step_ratio"] = [v / base.get((d, k), math.nan) for v, d, k in zip(df["step_seconds"], df["dataset"], df["K"])]
    notes, grids = timing_document(df, reference)
    df = _finish(df, "timing")
    write_table(out_csv, out_md, out_tex, df, "timing", title or "timing", notes, grids)
    return df


def build_paper_table(inputs: list[str], spec: dict, out: str, paper_csv: str, output: Output) -> None:
    """Registry builder of Tables 1-6: result JSONs -> `<out>.csv`, `<out>.md` and `<out>.tex`."""
    build_table(spec["name"], read_results(inputs), paper_csv, spec.get("reference", {}), f"{out}.csv", f"{out}.md",
                f"{out}.tex", output.title)


def build_timing_table(inputs: list[str], spec: dict, out: str, paper_csv: str, output: Output) -> None:
    """Registry builder of `timing`: step-timing JSONs and training logs."""
    steps = [p for p in inputs if p.endswith(".json")]
    logs = [p for p in inputs if p.endswith(".csv")]
    build_timing(steps, logs, paper_csv, spec.get("reference", {}), f"{out}.csv", f"{out}.md", f"{out}.tex",
                 output.title)
