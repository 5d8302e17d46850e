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
