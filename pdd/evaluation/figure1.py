"""Figure 1's evaluation job (`pdd gradcam`): Grad-CAM of every member of several ensembles on one test image, the
centres of each map's hot pixels and their mean pairwise distance, and (with `num_images`) that distance over the
test images every ensemble classifies correctly. pdd.reports.figure1 draws and tabulates what this writes."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pdd.evaluation.gradcam import centre_distance, default_layer, distances_over_images, gradcam, map_centres
from pdd.models import Ensemble, load_ensemble


def load_ensembles(models: Mapping[str, str], device: torch.device) -> dict[str, Ensemble]:
    """{method: ensemble in eval mode} from {method: checkpoint path}, in the given order."""
    return {method: load_ensemble(path, device) for method, path in models.items()}


def layer_of(ensembles: Mapping[str, Ensemble], layer: str | None, image_size: int) -> str:
    """The configured Grad-CAM layer, else the last stage output with spatial extent at this image size."""
    return layer or default_layer(next(iter(ensembles.values())).spec.arch, image_size)


def one_image(ensembles: Mapping[str, Ensemble], x: torch.Tensor, y: int, layer: str, threshold: float) -> dict:
    """Per method: the members' Grad-CAM maps [K, H, W] of the true class, their hot-pixel centres [K, 2] and the
    centres' mean pairwise distance, as {"maps", "centres", "distances"}."""
    found: dict[str, dict] = {"maps": {}, "centres": {}, "distances": {}}
    for method, model in ensembles.items():
        device = next(model.parameters()).device
        maps = gradcam(model, x[None].to(device), torch.tensor([y], device=device), layer)[:, 0].cpu()
        found["maps"][method] = maps
        found["centres"][method] = map_centres(maps.double(), threshold)
        found["distances"][method] = centre_distance(maps, threshold)
    return found


def figure1_data(ensembles: Mapping[str, Ensemble], x: torch.Tensor, y: int, image: int, layer: str | None,
                 threshold: float, many: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[dict, dict]:
    """(record, arrays) of Figure 1: the image's maps, centres and distances, and with `many` = (images, labels)
    one row (method, image, distance) per commonly correct image."""
    layer = layer_of(ensembles, layer, x.shape[-1])
    found = one_image(ensembles, x, y, layer, threshold)
    record = {"image": image, "label": y, "layer": layer, "threshold": threshold, "methods": list(ensembles),
              "distances": found["distances"], "per_image": []}
    if many is not None:
        record["per_image"] = distances_over_images(dict(ensembles), *many, layer, threshold).to_dict("records")
    arrays = {"image": x.numpy()}
    for method in ensembles:
        arrays[f"maps/{method}"] = found["maps"][method].numpy()
        arrays[f"centres/{method}"] = found["centres"][method].numpy()
    return record, arrays
