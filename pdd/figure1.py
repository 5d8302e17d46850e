"""Registry builders of Figure 1 (`figure1_gradcam`) and its number (`table_figure1_distance`) from the
trained ensembles: Grad-CAM per member, the distance between the members' hot-pixel centres."""

from __future__ import annotations

import pandas as pd
import torch

from pdd import data
from pdd.attacks import select_images
from pdd.figure_gradcam import draw
from pdd.gradcam import centre_distance, default_layer, distances_over_images, gradcam
from pdd.io import write_text
from pdd.models import Ensemble, load_ensemble

# The paper's text, section "Diversified Feature Learning": one Tiny-ImageNet test image ("meatloaf").
PAPER_DISTANCES = {"tiny_imagenet": {"pdd": 24.68, "baseline": 8.8, "adp": 14.34}}


def load_ensembles(inputs: list[str], methods: list[str]) -> dict[str, Ensemble]:
    """{method: ensemble} from checkpoint paths (one per method, the first seed's), in the spec's order."""
    found = {}
    for method in methods:
        path = next(p for p in inputs if f"/{method}/seed" in p)
        found[method] = load_ensemble(path)
    return found


def _layer(spec: dict, ensembles: dict[str, Ensemble], image_size: int) -> str:
    """The configured Grad-CAM layer, else the last stage output with spatial extent at this image size."""
    return spec.get("layer") or default_layer(next(iter(ensembles.values())).spec.arch, image_size)


def _image(spec: dict) -> tuple[torch.Tensor, int]:
    dataset = data.get_dataset(spec["datasets"][0], "test", spec["data_root"])
    x, y = dataset[spec.get("image", 0)]
    return x, int(y)


def image_distances(ensembles: dict[str, Ensemble], x: torch.Tensor, y: int, layer: str,
                    threshold: float) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Per method: the members' Grad-CAM maps [K, H, W] of the true class, and their centre distance."""
    maps = {m: gradcam(model, x[None], torch.tensor([y]), layer)[:, 0] for m, model in ensembles.items()}
    return maps, {m: centre_distance(v, threshold) for m, v in maps.items()}


def build_figure(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """figure1_gradcam: the methods x members Grad-CAM grid of the configured test image."""
    ensembles = load_ensembles(inputs, spec["methods"])
    x, y = _image(spec)
    layer = _layer(spec, ensembles, x.shape[-1])
    maps, distances = image_distances(ensembles, x, y, layer, spec.get("threshold", 0.9))
    title = (f"{spec['datasets'][0]}, K = {spec['K'][0]}: Grad-CAM per member, test image {spec.get('image', 0)} "
             f"(class {y}), layer {layer}")
    draw(x, maps, distances, f"{out}.png", title, spec.get("threshold", 0.9))


def distance_table(one: dict[str, float], many: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Rows per method: the configured image's distance, the paper's (where the dataset is the paper's), and
    mean / std / count over the commonly correct test images."""
    paper = PAPER_DISTANCES.get(spec.get("reference", {}).get(spec["datasets"][0], spec["datasets"][0]), {})
    stats = many.groupby("method")["distance"].agg(["mean", "std", "count"])
    rows = [{"dataset": spec["datasets"][0], "K": spec["K"][0], "method": m, "image": spec.get("image", 0),
             "distance": one[m], "paper": paper.get(m), "mean": stats["mean"].get(m), "std": stats["std"].get(m),
             "n_images": int(stats["count"].get(m, 0))} for m in one]
    return pd.DataFrame(rows)


def distance_markdown(df: pd.DataFrame, layer: str, threshold: float) -> str:
    lines = ["# Figure 1's number: distance between the members' Grad-CAM centres", "",
             f"Mean Euclidean distance (input pixels) between the centres of each pair of members' Grad-CAM pixels "
             f"above {threshold} (layer {layer}); larger = members look at different parts of the image. The "
             "paper reports one Tiny-ImageNet image (64x64); distances on other image sizes compare only in order.",
             "", "| Method | This image | Paper (one image) | Mean over images | Std | Images |", "|---" * 6 + "|"]
    for r in df.itertuples():
        paper = "-" if pd.isna(r.paper) else f"{r.paper:.2f}"
        lines.append(f"| {r.method} | {r.distance:.2f} | {paper} | {r.mean:.2f} | {r.std:.2f} | {r.n_images} |")
    return "\n".join(lines) + "\n"


def build_distance_table(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """table_figure1_distance: the configured image's distances beside the paper's, and over `num_images` test
    images classified correctly by every ensemble."""
    ensembles = load_ensembles(inputs, spec["methods"])
    x, y = _image(spec)
    layer, threshold = _layer(spec, ensembles, x.shape[-1]), spec.get("threshold", 0.9)
    _, one = image_distances(ensembles, x, y, layer, threshold)
    dataset = data.get_dataset(spec["datasets"][0], "test", spec["data_root"])
    xs, ys = select_images(dataset, spec.get("num_images"), seed=0)
    df = distance_table(one, distances_over_images(ensembles, xs, ys, layer, threshold), spec)
    df.insert(0, "table", "table_figure1_distance")
    write_text(f"{out}.csv", df.to_csv(index=False))
    write_text(f"{out}.md", distance_markdown(df, layer, threshold))
