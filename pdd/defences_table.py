"""Registry builder of `table_ensemble_defences`: every ensemble-diversity defence (the paper's and its peers'),
trained and evaluated the same way, side by side."""

from __future__ import annotations

import math

import pandas as pd

from pdd.io import write_text
from pdd.tables import read_results

COLUMNS = {  # column -> (title, where it comes from)
    "clean": "Clean",
    "pgd_10": "PGD-10 (paper protocol)",
    "worst_case": "Worst case",
    "transfer": "Type I transfer",
    "entropy": "Entropy E",
    "cosine": "Mean gradient cosine",
}


def collect(inputs: list[str]) -> pd.DataFrame:
    """One row per (dataset, K, method, seed, eps) with every COLUMNS value."""
    strong = read_results([p for p in inputs if p.endswith("/strong/evaluation.json")])
    strong = strong[strong["metric"] == "accuracy_pct"]
    entropy = read_results([p for p in inputs if p.endswith("/diversity/entropy.json")])
    per_image = pd.concat([pd.read_csv(p) for p in inputs if p.endswith("/diversity/per_image.csv")],
                          ignore_index=True)
    cosine = per_image.groupby(["dataset", "K", "method", "seed"])["cosine"].mean()
    entropy = entropy.set_index(["dataset", "K", "method", "seed"])["value"]
    rows = []
    for (dataset, k, method, seed), group in strong.groupby(["dataset", "K", "method", "seed"], sort=False):
        clean = group.loc[group["attack"] == "none", "value"]
        for eps in sorted(group["param"].dropna().unique()):
            at = group[group["param"] == eps].set_index("attack")["value"]
            rows.append({"dataset": dataset, "K": k, "method": method, "seed": seed, "eps": eps,
                         "clean": clean.iloc[0] if len(clean) else math.nan, "pgd_10": at.get("pgd_10", math.nan),
                         "worst_case": at.get("worst_case", math.nan), "transfer": at.get("transfer", math.nan),
                         "entropy": entropy.get((dataset, k, method, seed), math.nan),
                         "cosine": cosine.get((dataset, k, method, seed), math.nan)})
    return pd.DataFrame(rows)


def summarise(rows: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Mean over seeds (std in `<column>_std`), methods in the spec's order."""
    keys = ["dataset", "K", "eps", "method"]
    mean = rows.groupby(keys, sort=False)[list(COLUMNS)].mean()
    std = rows.groupby(keys, sort=False)[list(COLUMNS)].std(ddof=1).add_suffix("_std")
    out = mean.join(std).reset_index()
    out["n_seeds"] = rows.groupby(keys, sort=False)["seed"].nunique().to_numpy()
    order = {m: i for i, m in enumerate(methods)}
    return out.sort_values(["dataset", "K", "eps", "method"], key=lambda c: c.map(order) if c.name == "method" else c)


def markdown(df: pd.DataFrame) -> str:
    lines = ["# Beyond the paper: ensemble-diversity defences under one protocol", "",
             "Accuracies (%) over the test images each ensemble classifies correctly before the attack (Clean: over "
             "all of them), all on the strong evaluation's images: PGD-10 is the paper's protocol, the worst case "
             "an image's survival of every white-box attack (APGD-CE/DLR, PGD with restarts), Type I transfer PGD "
             "crafted on the independent baseline VGG-16 surrogate. Entropy E: eq. 5 (higher = members disagree "
             "more); gradient cosine: mean over test images and member pairs of the cosine between the members' "
             "input gradients (lower = more dispersed).", "",
             "| Dataset | K | L-inf eps | Method | " + " | ".join(COLUMNS.values()) + " |",
             "|---" * (4 + len(COLUMNS)) + "|"]
    for r in df.itertuples():
        cells = []
        for column in COLUMNS:
            value, std = getattr(r, column), getattr(r, f"{column}_std")
            digits = 4 if column in ("entropy", "cosine") else 2
            text = "-" if pd.isna(value) else f"{value:.{digits}f}"
            cells.append(text + ("" if pd.isna(std) else f" ± {std:.{digits}f}"))
        lines.append(f"| {r.dataset} | {r.K} | {r.eps:g} | {r.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """Write `<out>.csv` (one row per dataset, K, eps and method) and `<out>.md`."""
    df = summarise(collect(inputs), spec["methods"])
    df.insert(0, "table", "table_ensemble_defences")
    write_text(f"{out}.csv", df.to_csv(index=False))
    write_text(f"{out}.md", markdown(df))
