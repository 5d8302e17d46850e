"""Registry builder of `table_ensemble_defences`: every ensemble-diversity defence (the paper's and its peers'),
trained and evaluated the same way, side by side."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from pdd.reports.display import Grid, best_mask, dataset_name, fmt, method_name, param_label, write_table
from pdd.reports.tables import read_results

if TYPE_CHECKING:  # the registry names the builders; they only read their entry
    from pdd.plan.outputs import Output

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
        for eps in sorted(group.loc[group["attack"] == "worst_case", "param"].unique()):  # not the diagnostics' eps
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


NOTE = ("Accuracies (%) over the test images each ensemble classifies correctly before the attack (Clean: over "
        "all of them), all on the strong evaluation's images: PGD-10 is the paper's protocol, the worst case an "
        "image's survival of every attack of the strong evaluation (APGD-CE/-DLR/-T, MORA, Square, PGD with "
        "restarts), Type I transfer PGD crafted "
        "on the independent baseline VGG-16 surrogate. Entropy E: eq. 5 (higher = members disagree more); gradient "
        "cosine: mean over test images and member pairs of the cosine between the members' input gradients (lower "
        "= more dispersed). Bold: the best method per column within each dataset, K and eps (for the gradient "
        "cosine, the lowest).")


def grid(df: pd.DataFrame) -> Grid:
    """Rows per dataset, K, eps and method (display names), the COLUMNS as columns; best per column in bold."""
    index = pd.MultiIndex.from_tuples(
        [(dataset_name(r.dataset), str(r.K), param_label("pgd", r.eps), method_name(r.method))
         for r in df.itertuples()],
        names=["Dataset", "K", "Budget", "Method"])
    cells = pd.DataFrame([[fmt(getattr(r, c), 4 if c in ("entropy", "cosine") else 2, getattr(r, f"{c}_std"))
                           for c in COLUMNS] for r in df.itertuples()], index=index, columns=list(COLUMNS.values()))
    groups = list(df.reset_index(drop=True).groupby(["dataset", "K", "eps"], sort=False).indices.values())
    values = df[list(COLUMNS)].reset_index(drop=True)
    bold = pd.concat([best_mask(values[[c]], "column", [list(g) for g in groups], higher=c != "cosine")
                      for c in COLUMNS], axis=1)
    bold.index, bold.columns = index, cells.columns
    return Grid(cells, bold=bold)


def build(inputs: list[str], spec: dict, out: str, paper_csv: str, output: Output) -> None:
    """Write `<out>.csv` (one row per dataset, K, eps and method, code names), `<out>.md` and `<out>.tex`."""
    df = summarise(collect(inputs), spec["methods"])
    shown = grid(df)
    df.insert(0, "table", "table_ensemble_defences")
    write_table(f"{out}.csv", f"{out}.md", f"{out}.tex", df, "table_ensemble_defences",
                output.title, [NOTE], [shown])
