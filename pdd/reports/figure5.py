"""Registry builder of Figure 5 (`figure5_examples`): one test image and its PGD examples at an L-inf and an
L2 budget, crafted on each ensemble, with the ensemble's prediction."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pdd import data  # noqa: E402
from pdd.evaluation.attacks import AttackSettings, generate, predict  # noqa: E402
from pdd.reports.display import method_name, pgd_label, where  # noqa: E402
from pdd.reports.figure1 import load_ensembles  # noqa: E402
from pdd.reports.figures import save_figure  # noqa: E402


def examples(ensembles: dict, x: torch.Tensor, y: int, eps: dict[str, float], seed: int) -> dict:
    """{method: [(label, image [C,H,W], predicted class)]}: the clean image, then one PGD example per norm."""
    settings = AttackSettings(seed=seed, batch_size=1)
    device = torch.device("cpu")
    rows = {}
    for method, model in ensembles.items():
        cells = [("clean", x, int(predict(model, x[None], device)[0]))]
        for attack, value in eps.items():
            adv = generate(model, x[None], torch.tensor([y]), attack, float(value), settings, device)
            cells.append((pgd_label(attack, float(value)), adv[0], int(predict(model, adv, device)[0])))
        rows[method] = cells
    return rows


def _show(ax, image: torch.Tensor) -> None:
    img = image.detach().cpu().clamp(0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img.permute(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def build_figure(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """figure5_examples: rows = methods, columns = clean and one PGD example per configured norm."""
    ensembles = load_ensembles(inputs, spec["methods"])
    index = spec.get("image", 0)
    x, y = data.get_dataset(spec["datasets"][0], "test", spec["data_root"])[index]
    rows = examples(ensembles, x, int(y), spec.get("eps", {"pgd": 0.02, "pgd_l2": 0.4}), seed=0)
    ncols = max(len(cells) for cells in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.4 * ncols, 2.6 * len(rows)), squeeze=False)
    for r, (method, cells) in enumerate(rows.items()):
        for c, (label, image, pred) in enumerate(cells):
            _show(axes[r][c], image)
            colour = "green" if pred == int(y) else "red"
            axes[r][c].set_title(f"{label}\npredicted {pred}", fontsize=8, color=colour)
        axes[r][0].set_ylabel(method_name(method))
    fig.suptitle(f"{where(spec['datasets'][0], spec['K'][0])}: test image {index} (class {int(y)}), PGD 10 steps "
                 "crafted on each ensemble", fontsize=9)
    save_figure(fig, f"{out}.png")
