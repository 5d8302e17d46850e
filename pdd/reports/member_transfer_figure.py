"""Registry builder of `figure_member_transfer`: per method, the K x K matrix of PGD fooling rates between
members (crafted on member i, scored on member j)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pdd.io import write_text  # noqa: E402
from pdd.reports.display import method_name, pgd_label, where  # noqa: E402
from pdd.reports.figures import save_figure  # noqa: E402
from pdd.reports.tables import read_results  # noqa: E402


def matrices(results: pd.DataFrame, stat: str = "mean") -> dict[str, pd.DataFrame]:
    """{method: K x K fooling rate, `stat` ('mean' or 'std') over seeds}, rows = source member, columns = target."""
    return {method: group.groupby(["source", "target"])["value"].agg(stat).unstack("target")
            for method, group in results.groupby("method", sort=False)}


def build(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """One heat map per method in the spec's order (cells: mean over seeds, ± std with two or more); the records
    also go to `<out>.csv`."""
    results = read_results(inputs)
    found, spread = matrices(results), matrices(results, "std")
    methods = [m for m in spec["methods"] if m in found]
    write_text(f"{out}.csv", results.drop(columns=["model"], errors="ignore").to_csv(index=False))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.2 * len(methods) + 0.8, 3.4), squeeze=False)
    image = None
    for ax, method in zip(axes[0], methods):
        matrix = found[method]
        image = ax.imshow(matrix.to_numpy(), vmin=0, vmax=100, cmap="viridis")
        std = spread[method].to_numpy()
        for (i, j), value in pd.DataFrame(matrix.to_numpy()).stack().items():
            sd = "" if pd.isna(std[i, j]) else f"\n± {std[i, j]:.0f}"  # the seed spread, with two or more seeds
            ax.text(j, i, f"{value:.0f}{sd}", ha="center", va="center", fontsize=8,
                    color="white" if value < 50 else "black")
        ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns])
        ax.set_yticks(range(len(matrix.index)), [str(r) for r in matrix.index])
        ax.set_xlabel("scored on member j")
        ax.set_title(method_name(method))
    axes[0][0].set_ylabel("crafted on member i")
    fig.colorbar(image, ax=axes[0].tolist(), label="fooled (% of member j's correct images)")
    attack = pgd_label("pgd", float(spec["eps"]))
    fig.suptitle(f"{where(spec['datasets'][0], spec['K'][0])}: {attack} crafted on member i, scored on member j")
    save_figure(fig, f"{out}.png")
