"""Registry builders of Figure 1 (`figure1_gradcam`) and its number (`table_figure1_distance`) from the Grad-CAM
job's files (`pdd gradcam`, pdd.evaluation.figure1): the members' maps, the distance between their hot-pixel
centres."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from pdd.evaluation.figure_files import read_figure_data
from pdd.reports.display import Grid, best_mask, dataset_name, fmt, method_name, where, write_table
from pdd.reports.gradcam_figure import draw
from pdd.reports.tables import stand_in_note

if TYPE_CHECKING:  # the registry names the builders; they only read their entry
    from pdd.plan.outputs import Output

# The paper's text, section "Diversified Feature Learning": one Tiny-ImageNet test image ("meatloaf").
PAPER_DISTANCES = {"tiny_imagenet": {"pdd": 24.68, "baseline": 8.8, "adp": 14.34}}
TABLE = "table_figure1_distance"


def record_of(inputs: list[str]) -> str:
    """The Grad-CAM job's record among an output's inputs (its NPZ lies beside it)."""
    return next(p for p in inputs if p.endswith(".json"))


def build_figure(inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
    """figure1_gradcam: the methods x members Grad-CAM grid of the configured test image."""
    record, arrays = read_figure_data(record_of(inputs))
    methods = record["methods"]
    title = (f"{where(spec['datasets'][0], spec['K'][0])}: Grad-CAM per member, test image {record['image']} "
             f"(class {record['label']}), layer {record['layer']}")
    draw(arrays["image"], {m: arrays[f"maps/{m}"] for m in methods}, {m: arrays[f"centres/{m}"] for m in methods},
         record["distances"], f"{out}.png", title)


def distance_table(one: dict[str, float], many: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Rows per method: the configured image's distance, the paper's (where the dataset is the paper's), and
    mean / std / count over the commonly correct test images."""
    paper = PAPER_DISTANCES.get(spec.get("reference", {}).get(spec["datasets"][0], spec["datasets"][0]), {})
    stats = many.groupby("method")["distance"].agg(["mean", "std", "count"])
    rows = [{"dataset": spec["datasets"][0], "K": spec["K"][0], "method": m, "image": spec.get("image", 0),
             "distance": one[m], "paper": paper.get(m), "mean": stats["mean"].get(m), "std": stats["std"].get(m),
             "n_images": int(stats["count"].get(m, 0))} for m in one]
    return pd.DataFrame(rows)


def distance_grid(df: pd.DataFrame, own_paper: bool) -> Grid:
    """Rows per method: this image's distance, the paper's (only where the dataset is the paper's own), mean, std
    and count over images; bold: the largest distance per column (members looking at the most different places)."""
    columns = {"distance": "This image", **({"paper": "Paper (one image)"} if own_paper else {}),
               "mean": "Mean over images", "std": "Std", "n_images": "Images"}
    index = pd.Index([method_name(m) for m in df["method"]], name="Method")
    text = pd.DataFrame({title: [str(v) if c == "n_images" else fmt(v) for v in df[c]] for c, title in columns.items()},
                        index=index)
    ranked = [title for c, title in columns.items() if c in ("distance", "paper", "mean")]
    values = pd.DataFrame({title: df[c].to_numpy(dtype=float).round(2) for c, title in columns.items()
                           if title in ranked}, index=index)
    bold = best_mask(values, "column").reindex(columns=text.columns, fill_value=False)
    return Grid(text, bold)


def distance_document(df: pd.DataFrame, spec: dict, layer: str, threshold: float) -> tuple[list[str], list[Grid]]:
    """Notes and grids of table_figure1_distance; a stand-in dataset's paper numbers in a table of their own."""
    dataset = spec["datasets"][0]
    paper_dataset = spec.get("reference", {}).get(dataset, dataset)
    notes = [f"{where(dataset, spec['K'][0])}; test image {spec.get('image', 0)}.",
             f"Mean Euclidean distance (input pixels) between the centres of each pair of members' Grad-CAM pixels "
             f"above {threshold} (layer {layer}); larger = members look at different parts of the image. The "
             "paper reports one Tiny-ImageNet image (64x64); distances on other image sizes compare only in order. "
             "Bold: the largest distance per column."]
    grids = [distance_grid(df, paper_dataset == dataset and df["paper"].notna().any())]
    if paper_dataset != dataset and df["paper"].notna().any():
        notes.append(stand_in_note(dataset, paper_dataset, "Figure 1 text"))
        paper = df[df["paper"].notna()]
        values = pd.DataFrame({"Paper (one image)": paper["paper"].to_numpy(dtype=float)},
                              index=pd.Index([method_name(m) for m in paper["method"]], name="Method"))
        grids.append(Grid(values.map(fmt), best_mask(values, "column"),
                          caption=f"The paper's Figure 1 text: {dataset_name(paper_dataset)} "
                                  f"(what {dataset_name(dataset)} stands in for)"))
    return notes, grids


def build_distance_table(inputs: list[str], spec: dict, out: str, paper_csv: str, output: Output) -> None:
    """table_figure1_distance: the configured image's distances beside the paper's, and over the test images
    classified correctly by every ensemble (the Grad-CAM job's `per_image` rows)."""
    record, _ = read_figure_data(record_of(inputs))
    many = pd.DataFrame(record["per_image"], columns=["method", "image", "distance"])
    df = distance_table(record["distances"], many, spec)
    notes, grids = distance_document(df, spec, record["layer"], record["threshold"])
    df.insert(0, "table", TABLE)
    write_table(f"{out}.csv", f"{out}.md", f"{out}.tex", df, TABLE, output.title, notes, grids)
