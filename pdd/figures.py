"""The paper's figures: box plots of diversity per method (Figures 2, 3) and accuracy vs attack
strength (Figure 4)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pdd.io import atomic_path  # noqa: E402

DIVERSITY_LABELS = {
    "fisher": ("figure2_discrimination", "discrimination score $L_F$ (eq. 6)"),
    "angle": ("figure3_gradient_angles", "mean angle between member input gradients (degrees)"),
}


def _save(fig: plt.Figure, out: str | Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)


def common_correct(per_image: pd.DataFrame, num_images: int | None, seed: int = 0) -> pd.DataFrame:
    """Rows of the images that every method's ensemble classifies correctly (per seed), at most
    `num_images` of them drawn with a fixed seed."""
    methods = per_image["method"].nunique()
    ok = per_image[per_image["correct"]].groupby(["seed", "image"])["method"].nunique()
    keep = ok[ok == methods].reset_index()[["seed", "image"]]
    if num_images is not None:
        keep = keep.sample(frac=1.0, random_state=seed).groupby("seed").head(num_images)
    return per_image.merge(keep, on=["seed", "image"])


def diversity_boxplot(per_image: pd.DataFrame, measure: str, methods: list[str], num_images: int | None,
                      out: str | Path) -> pd.DataFrame:
    """Figure 2 (measure 'fisher') or 3 ('angle'): one box per method over the commonly correct images
    (pooled over seeds; the title gives the image and seed counts)."""
    rows = common_correct(per_image, num_images)
    fig, ax = plt.subplots(figsize=(1.4 * len(methods) + 2, 4))
    data = [rows.loc[rows["method"] == m, measure].to_numpy() for m in methods]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(methods) + 1), methods)
    ax.set_ylabel(DIVERSITY_LABELS[measure][1])
    seeds = rows["seed"].nunique()
    ax.set_title(f"{len(rows) // max(len(methods), 1)} test images correct for every method, {seeds} seed(s)")
    _save(fig, out)
    return rows


def pgd_strength(results: pd.DataFrame, methods: list[str], out: str | Path) -> None:
    """Figure 4: accuracy against eps (log2 axis) for L-inf and L2 PGD; mean over seeds, band = std."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (attack, title) in zip(axes, [("pgd", "PGD $L_\\infty$"), ("pgd_l2", "PGD $L_2$")]):
        part = results[results["attack"] == attack]
        for method in methods:
            curve = part[part["method"] == method].groupby("param")["value"].agg(["mean", "std"]).reset_index()
            if curve.empty:
                continue
            ax.plot(curve["param"], curve["mean"], marker="o", label=method)
            ax.fill_between(curve["param"], curve["mean"] - curve["std"].fillna(0),
                            curve["mean"] + curve["std"].fillna(0), alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("eps")
        ax.set_ylabel("accuracy (%) on initially correct images")
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    _save(fig, out)


def strong_steps(results: pd.DataFrame, methods: list[str], out: str | Path) -> None:
    """Strong evaluation: accuracy against PGD steps (log axis), one line per method and one panel per
    (dataset, K, eps); a diamond = PGD with restarts at the largest step count; dashed = the worst case
    over every white-box attack. Mean over seeds."""
    whitebox = results[(results["threat"] == "whitebox") & (results["metric"] == "accuracy_pct")]
    pgd = whitebox[whitebox["attack"].str.match(r"pgd_\d+") & whitebox["steps"].notna()]
    panels = sorted(set(zip(pgd["dataset"], pgd["K"], pgd["param"])))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.8 * max(len(panels), 1), 4), squeeze=False)
    for ax, (dataset, k, eps) in zip(axes[0], panels):
        def select(df: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
            keep = (df["dataset"] == dataset) & (df["K"] == k) & (df["param"] == eps)
            return df[keep & (df["method"] == method)] if method else df[keep]

        steps = sorted(select(pgd)["steps"].unique())
        for i, method in enumerate(methods):
            mine, runs = select(whitebox, method), select(pgd, method)
            single = runs[runs["restarts"] == 1].groupby("steps")["value"].mean()
            if single.empty:
                continue
            ax.plot(single.index, single.to_numpy(), marker="o", color=f"C{i}", label=method)
            restarts = runs[runs["restarts"] > 1].groupby("steps")["value"].mean()
            ax.scatter(restarts.index, restarts.to_numpy(), marker="D", s=50, facecolors="none", color=f"C{i}")
            worst = mine.loc[mine["attack"] == "worst_case", "value"].mean()
            if not pd.isna(worst):
                ax.axhline(worst, linestyle="--", color=f"C{i}", alpha=0.6)
        if 10 in steps:
            ax.axvline(10, linestyle=":", color="gray")
            ax.annotate("paper protocol", (10, 0), xytext=(3, 3), textcoords="offset points", fontsize=7,
                        color="gray", ha="left", va="bottom")
        ax.set_xscale("log")
        ax.set_xticks(steps, [f"{s:g}" for s in steps])
        ax.minorticks_off()
        ax.set_xlabel("PGD steps (step = eps/10, one random start)")
        ax.set_ylabel("accuracy (%) on initially correct images")
        ax.set_ylim(-2, 102)
        ax.set_title(f"{dataset}, K={k}, $L_\\infty$ eps={eps:g}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], marker="D", linestyle="none", markerfacecolor="none", color="gray"),
                plt.Line2D([], [], linestyle="--", color="gray")]
    labels += ["PGD with restarts", "worst case (all attacks)"]
    axes[0][-1].legend(handles, labels, fontsize=8, loc="best")
    _save(fig, out)
