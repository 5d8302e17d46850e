"""Registry builder of Figure 5 (`figure5_examples`) from the examples job's files (`pdd examples`,
pdd.evaluation.figure5): one test image and its PGD examples at an L-inf and an L2 budget, crafted on each ensemble,
with the ensemble's prediction."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pdd.evaluation.figure_files import read_figure_data  # noqa: E402
from pdd.reports.display import method_name, pgd_label, where  # noqa: E402
from pdd.reports.figures import save_figure  # noqa: E402


def _show(ax, image: np.ndarray) -> None:
    img = np.clip(image, 0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def build_figure(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """figure5_examples: rows = methods, columns = clean and one PGD example per configured norm."""
    record, arrays = read_figure_data(next(p for p in inputs if p.endswith(".json")))
    y, index = record["label"], record["image"]
    rows = {m: [("clean" if c["attack"] == "none" else pgd_label(c["attack"], c["eps"]), arrays[f"{m}/{i}"],
                 c["predicted"]) for i, c in enumerate(record["cells"][m])] for m in record["methods"]}
    ncols = max(len(cells) for cells in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.4 * ncols, 2.6 * len(rows)), squeeze=False)
    for r, (method, cells) in enumerate(rows.items()):
        for c, (label, image, pred) in enumerate(cells):
            _show(axes[r][c], image)
            colour = "green" if pred == y else "red"
            axes[r][c].set_title(f"{label}\npredicted {pred}", fontsize=8, color=colour)
        axes[r][0].set_ylabel(method_name(method))
    fig.suptitle(f"{where(spec['datasets'][0], spec['K'][0])}: test image {index} (class {y}), PGD 10 steps "
                 "crafted on each ensemble", fontsize=9)
    save_figure(fig, f"{out}.png")
