"""The paper's figures: box plots of diversity per method (Figures 2, 3) and accuracy vs attack
strength (Figure 4)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pdd.io import atomic_path, write_text  # noqa: E402
from pdd.reports.display import attack_name, method_name, norm_tex, param_label, where  # noqa: E402

DIVERSITY_LABELS = {
    "fisher": ("figure2_discrimination", "discrimination score $L_F$ (eq. 6)"),
    "angle": ("figure3_gradient_angles", "mean angle between member input gradients (degrees)"),
}


def save_figure(fig: plt.Figure, out: str | Path) -> None:
    """Write the figure as PNG at `out` and as PDF beside it (same stem), atomically; every figure goes through it."""
    out = Path(out)
    for path, fmt in ((out, "png"), (out.with_suffix(".pdf"), "pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)


def seed_spread(std: pd.Series):
    """Error-bar lengths from a std over seeds: None (no bars) where no point has two or more seeds."""
    return None if std.isna().all() else std.fillna(0).to_numpy()


def common_correct(per_image: pd.DataFrame, num_images: int | None, seed: int = 0) -> pd.DataFrame:
    """Rows of the images that every method's ensemble classifies correctly (per seed), at most
    `num_images` of them drawn with a fixed seed."""
    methods = per_image["method"].nunique()
    ok = per_image[per_image["correct"]].groupby(["seed", "image"])["method"].nunique()
    keep = ok[ok == methods].reset_index()[["seed", "image"]]
    if num_images is not None:
        keep = keep.sample(frac=1.0, random_state=seed).groupby("seed").head(num_images)
    return per_image.merge(keep, on=["seed", "image"])


def seed_medians(rows: pd.DataFrame, measure: str, methods: list[str]) -> pd.DataFrame:
    """Per method and seed the median of `measure` over the images, with the method's box position (1-based)."""
    medians = rows[rows["method"].isin(methods)].groupby(["method", "seed"], as_index=False)[measure].median()
    return medians.assign(position=medians["method"].map({m: i + 1 for i, m in enumerate(methods)}))


def diversity_boxplot(per_image: pd.DataFrame, measure: str, methods: list[str], num_images: int | None,
                      out: str | Path, title: str = "") -> pd.DataFrame:
    """Figure 2 (measure 'fisher') or 3 ('angle'): one box per method over the commonly correct images
    (pooled over seeds; the title gives the image and seed counts); with several seeds each seed's median beside."""
    rows = common_correct(per_image, num_images)
    fig, ax = plt.subplots(figsize=(max(1.4 * len(methods) + 2, 6.5), 4))
    data = [rows.loc[rows["method"] == m, measure].to_numpy() for m in methods]
    ax.boxplot(data, showfliers=True, flierprops={"markersize": 3, "alpha": 0.5})
    medians = seed_medians(rows, measure, methods)
    if rows["seed"].nunique() > 1:  # the seed spread: each seed's median as a diamond beside its box
        ax.scatter(medians["position"] + 0.3, medians[measure], marker="d", s=25, color="C3", zorder=3,
                   label="median of each seed")
        ax.legend(fontsize=8, loc="best")
    ax.set_xticks(range(1, len(methods) + 1), [method_name(m) for m in methods])
    ax.set_ylabel(textwrap.fill(DIVERSITY_LABELS[measure][1], 36))  # two lines: one would overrun the title
    seeds = rows["seed"].nunique()
    ax.set_title(f"{title}{len(rows) // max(len(methods), 1)} test images correct for every method, {seeds} seed(s)")
    save_figure(fig, out)
    return rows


def pgd_strength(results: pd.DataFrame, methods: list[str], out: str | Path, paper: pd.DataFrame | None = None,
                 title: str = "") -> None:
    """Figure 4: accuracy against eps (log2 axis) for L-inf and L2 PGD; mean over seeds, band = std; a dotted
    line per method at its clean accuracy; `paper` points (method, attack, param, value) as crosses; L-inf ticks also
    in 8-bit levels (n/255)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    clean = results[results["attack"] == "none"].groupby("method")["value"].mean()
    for ax, attack in zip(axes, ["pgd", "pgd_l2"]):
        norm = norm_tex(attack)
        part = results[results["attack"] == attack]
        for i, method in enumerate(methods):
            curve = part[part["method"] == method].groupby("param")["value"].agg(["mean", "std"]).reset_index()
            if curve.empty:
                continue
            ax.plot(curve["param"], curve["mean"], marker="o", color=f"C{i}", label=method_name(method))
            ax.fill_between(curve["param"], curve["mean"] - curve["std"].fillna(0),
                            curve["mean"] + curve["std"].fillna(0), color=f"C{i}", alpha=0.2)
            if method in clean:
                ax.axhline(clean[method], linestyle=":", color=f"C{i}", alpha=0.7)
            if paper is not None:
                points = paper[(paper["method"] == method) & (paper["attack"] == attack)]
                ax.scatter(points["param"], points["value"], marker="x", s=70, color=f"C{i}", zorder=3)
        ax.set_xscale("log", base=2)
        eps = sorted(part["param"].dropna().unique())
        if eps:
            ax.set_xticks(eps, [f"{e:g}\n({e * 255:.1f}/255)" if attack == "pgd" else f"{e:g}" for e in eps])
            ax.minorticks_off()
        meaning = "largest change per pixel, inputs in [0, 1]" if attack == "pgd" else "L2 norm of the perturbation"
        ax.set_xlabel(f"PGD {norm} eps ({meaning}; 10 steps of eps/10)")
        ax.set_ylabel("accuracy (%) on initially correct images")
        ax.set_ylim(0, 100)
        ax.set_title(f"{title}PGD {norm}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], linestyle=":", color="gray"),
                plt.Line2D([], [], marker="x", linestyle="none", color="gray")]
    labels += ["clean accuracy", "paper (Figure 5 text)"]
    axes[0].legend(handles, labels, fontsize=8)
    save_figure(fig, out)


def strong_steps(results: pd.DataFrame, methods: list[str], out: str | Path) -> None:
    """Strong evaluation: accuracy against PGD steps (log axis), one line per method and one panel per
    (dataset, K, eps); a diamond = PGD with restarts at the largest step count; dashed = the worst case
    over every white-box attack. Mean over seeds, error bars = std over seeds (with two or more)."""
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
            single = runs[runs["restarts"] == 1].groupby("steps")["value"].agg(["mean", "std"])
            if single.empty:
                continue
            ax.errorbar(single.index, single["mean"], yerr=seed_spread(single["std"]), marker="o", color=f"C{i}",
                        capsize=3, label=method_name(method))
            restarts = runs[runs["restarts"] > 1].groupby("steps")["value"].agg(["mean", "std"])
            ax.errorbar(restarts.index, restarts["mean"], yerr=seed_spread(restarts["std"]), marker="D",
                        markersize=7, markerfacecolor="none", linestyle="none", color=f"C{i}", capsize=3)
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
        ax.set_title(f"{where(dataset, k)}, PGD {param_label('pgd', eps)}", fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [plt.Line2D([], [], marker="D", linestyle="none", markerfacecolor="none", color="gray"),
                plt.Line2D([], [], linestyle="--", color="gray")]
    labels += ["PGD with restarts", "worst case (all attacks)"]
    axes[0][-1].legend(handles, labels, fontsize=8, loc="best")
    save_figure(fig, out)


# --- Registry builders (pdd.plan.outputs): input files + the output's config entry -> the figure ----------------

def _where(spec: dict) -> str:
    """'Digits (8x8), K = 3: ' for titles."""
    return f"{where(spec['datasets'][0], spec['K'][0])}: "


def build_diversity_figure(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """Figures 2 and 3 from the diversity jobs' per-image CSVs."""
    per_image = pd.concat([pd.read_csv(p) for p in inputs], ignore_index=True)
    measure = "fisher" if spec["name"] == "figure2_discrimination" else "angle"
    diversity_boxplot(per_image, measure, spec["methods"], spec.get("num_images"), f"{out}.png", _where(spec))


def build_strength_figure(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """Figure 4 with clean-accuracy lines and the paper's Figure 5 text points; those points, ours beside the
    paper's, also go to `<out>.csv`."""
    from pdd.reports.tables import _param, read_results

    results = read_results(inputs)
    dataset, k = spec["datasets"][0], spec["K"][0]
    paper_dataset = spec.get("reference", {}).get(dataset, dataset)
    paper = pd.read_csv(paper_csv, dtype={"param": str})
    paper = paper[(paper["table"] == "figure5_text") & (paper["dataset"] == paper_dataset) & (paper["K"] == k)].copy()
    paper["param"] = paper["param"].map(_param)
    ours = results.groupby(["method", "attack", "param"])["value"].mean().rename("ours").reset_index()
    points = paper.merge(ours, on=["method", "attack", "param"], how="left")
    points = points[["dataset", "K", "method", "attack", "param", "ours", "value"]].rename(columns={"value": "paper"})
    write_text(f"{out}.csv", points.to_csv(index=False))
    pgd_strength(results, spec["methods"], f"{out}.png", paper if paper_dataset == dataset else None, _where(spec))


def build_strong_steps_figure(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """figure_strong_steps from the strong-evaluation results of the strong table's ensembles."""
    from pdd.reports.tables import read_results

    strong_steps(read_results(inputs), spec["methods"], f"{out}.png")


def interval_of(path: str, default: int) -> int:
    """PDD's M of the ensemble a result file belongs to: from its 'pdd-M<m>' folder, else the config's M."""
    match = re.search(r"/pdd-M(\d+)/", path)
    return int(match[1]) if match else default


def intervals_summary(inputs: list[str], default: int) -> pd.DataFrame:
    """Per M: mean S_b, S_w and L_F over the test images, clean and PGD accuracy; mean and std over seeds (`std`
    NaN with one seed)."""
    from pdd.reports.tables import read_results

    rows = []
    for path in inputs:
        m, seed = interval_of(path, default), int(re.search(r"/seed(\d+)/", path)[1])
        if path.endswith(".csv"):
            df = pd.read_csv(path)
            rows += [{"M": m, "seed": seed, "measure": c, "value": df[c].mean()} for c in ("between", "within",
                                                                                          "fisher")]
        else:
            for r in read_results([path]).itertuples():
                measure = "clean" if r.attack == "none" else f"{r.attack} {r.param:g}"
                rows.append({"M": m, "seed": seed, "measure": measure, "value": r.value})
    summary = pd.DataFrame(rows).groupby(["M", "measure"])["value"].agg(["mean", "std"])
    return summary.rename(columns={"mean": "value"}).reset_index()


def measure_label(measure: str) -> str:
    """Legend text of an intervals_summary accuracy measure: 'pgd 0.1' -> 'PGD L-inf eps 0.1 (= 25.5/255) ...'."""
    if measure == "clean":
        return "clean (all attacked images)"
    attack, value = measure.rsplit(" ", 1)
    return f"{attack_name(attack)} {param_label(attack, value)} (initially correct images)"


def build_intervals_figure(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """figure_intervals: S_b, S_w, L_F and accuracies against M (error bars: std over seeds, with two or more);
    the numbers also go to `<out>.csv`."""
    k = spec["K"][0]
    intervals = spec.get("pdd_intervals", {})
    summary = intervals_summary(inputs, int(intervals.get(str(k), intervals.get(k, 0))))
    write_text(f"{out}.csv", summary.to_csv(index=False))
    wide = summary.pivot(index="M", columns="measure", values="value").sort_index()
    spread = summary.pivot(index="M", columns="measure", values="std").sort_index()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = [(["between", "within"], "scatter (mean over test images)", ["$S_b$ (between)", "$S_w$ (within)"]),
              (["fisher"], "$L_F$ (eq. 6, mean over test images)", ["$L_F$"]),
              ([c for c in wide.columns if c not in ("between", "within", "fisher")], "accuracy (%)", None)]
    for ax, (columns, ylabel, labels) in zip(axes, panels):
        for i, column in enumerate(columns):
            label = labels[i] if labels else measure_label(column)
            ax.errorbar(wide.index, wide[column], yerr=seed_spread(spread[column]), marker="o", capsize=3,
                        label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(wide.index), [str(m) for m in wide.index])
        ax.minorticks_off()
        ax.set_xlabel("number of intervals M")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))  # below: long labels hide no data
    fig.suptitle(f"{_where(spec)}PDD (alpha {spec.get('alpha', 0.9)}) trained with different M")
    save_figure(fig, f"{out}.png")
