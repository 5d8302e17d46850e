"""The evaluation jobs of the figures computed from models (Figure 1's Grad-CAM, Figure 5's PGD examples): one job
per output, reading the output's ensembles (the first seed's), so that the report builders read result files only."""

from __future__ import annotations

from pdd.plan.config import quoted
from pdd.plan.outputs import OUTPUTS, requested
from pdd.plan.paths import model_path

FIGURE5_EPS = {"pgd": 0.02, "pgd_l2": 0.4}  # the paper's Figure 5 budgets, where the output gives none


def figure_models(config: dict, name: str) -> dict[str, str]:
    """{method: checkpoint} of output `name`'s job: each method's ensemble of its dataset and K, first seed."""
    spec = requested(config)[name]
    return {m: model_path(config, spec["datasets"][0], spec["K"][0], m, config["seeds"][0]) for m in spec["methods"]}


def _model_args(config: dict, name: str) -> list[str]:
    return [a for method, path in figure_models(config, name).items() for a in ("--model", f"{method}={path}")]


def gradcam_args(config: dict, name: str) -> str:
    """`pdd gradcam`'s flags for output `name`: its ensembles, image, layer and threshold; a table (the distance
    over images) also --over-images and its image count."""
    spec = requested(config)[name]
    args = _model_args(config, name) + ["--image", spec.get("image", 0)]
    args += (["--layer", spec["layer"]] if spec.get("layer") else []) + (
        ["--threshold", spec["threshold"]] if "threshold" in spec else [])
    if OUTPUTS[name].kind == "table":
        args += ["--over-images"] + (["--num-images", spec["num_images"]] if spec.get("num_images") else [])
    return quoted(args)


def examples_args(config: dict, name: str) -> str:
    """`pdd examples`'s flags for output `name`: its ensembles, image and PGD budgets."""
    spec = requested(config)[name]
    eps = [a for attack, value in spec.get("eps", FIGURE5_EPS).items() for a in ("--eps", f"{attack}={value}")]
    return quoted(_model_args(config, name) + ["--image", spec.get("image", 0)] + eps)
