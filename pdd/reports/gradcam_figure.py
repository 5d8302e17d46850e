"""Figure 1 of the paper: one image's Grad-CAM maps, one row per method and one column per member,
each row labelled with its mean pairwise centre distance."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pdd.reports.display import method_name  # noqa: E402
from pdd.reports.figures import save_figure  # noqa: E402


def _background(image: np.ndarray) -> tuple:
    """(array, colour map) to show a [C, H, W] image in [0, 1]: grayscale for one channel, RGB otherwise."""
    image = np.clip(np.asarray(image, dtype=float), 0, 1)
    if image.shape[0] == 1:
        return image[0], "gray"
    return image.transpose(1, 2, 0), None


def draw(image: np.ndarray, maps: dict[str, np.ndarray], centres: dict[str, np.ndarray], distances: dict[str, float],
         out: str | Path, title: str) -> None:
    """Draw the methods x members grid of 'jet' heat maps (alpha 0.5) over `image`, a cross at each map's
    hot-pixel centre (`centres`: [K, 2] rows and columns per method), rows labelled with the methods' display
    names; save a PNG at `out` and a PDF beside it."""
    methods = list(maps)
    k = max(m.shape[0] for m in maps.values())
    background, cmap = _background(image)
    fig, axes = plt.subplots(len(methods), k, figsize=(2.1 * k + 1.2, 2.1 * len(methods) + 0.6), squeeze=False)
    heat = None
    for row, method in enumerate(methods):
        member_maps, centre = np.asarray(maps[method], dtype=float), np.asarray(centres[method], dtype=float)
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= member_maps.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(background, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            heat = ax.imshow(member_maps[col], cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="nearest")
            ax.plot(centre[col, 1], centre[col, 0], marker="x", color="white", markersize=8, markeredgewidth=2)
            if row == 0:
                ax.set_title(f"member {col + 1}")
        name = method_name(method)
        label = f"{name}\nd = {distances[method]:.2f} px" if method in distances else name
        axes[row][0].set_ylabel(label)
    if heat is not None:
        fig.colorbar(heat, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="Grad-CAM")
    fig.suptitle(title)
    save_figure(fig, out)
