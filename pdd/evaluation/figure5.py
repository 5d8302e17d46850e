"""Figure 5's evaluation job (`pdd examples`): one test image and its PGD examples at an L-inf and an L2 budget,
crafted on each ensemble, with the ensemble's prediction of each. pdd.reports.figure5 draws what this writes."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pdd.evaluation.attacks import AttackSettings, generate, predict
from pdd.models import Ensemble


def examples(ensembles: Mapping[str, Ensemble], x: torch.Tensor, y: int, eps: Mapping[str, float], seed: int,
             device: torch.device) -> dict[str, list[tuple[str, float | None, torch.Tensor, int]]]:
    """{method: [(attack, eps, image [C,H,W], predicted class)]}: the clean image ('none', no eps), then one PGD
    example per attack of `eps` ({'pgd': L-inf eps, 'pgd_l2': L2 eps})."""
    settings = AttackSettings(seed=seed, batch_size=1)
    rows = {}
    for method, model in ensembles.items():
        cells = [("none", None, x, int(predict(model, x[None], device)[0]))]
        for attack, value in eps.items():
            adv = generate(model, x[None], torch.tensor([y]), attack, float(value), settings, device)
            cells.append((attack, float(value), adv[0].cpu(), int(predict(model, adv, device)[0])))
        rows[method] = cells
    return rows


def figure5_data(rows: Mapping[str, list[tuple[str, float | None, torch.Tensor, int]]], image: int,
                 y: int) -> tuple[dict, dict]:
    """(record, arrays) of Figure 5: per method its cells' attack, eps and prediction; the images by cell."""
    cells = {m: [{"attack": a, "eps": e, "predicted": p} for a, e, _, p in found] for m, found in rows.items()}
    record = {"image": image, "label": y, "methods": list(rows), "cells": cells}
    arrays = {f"{m}/{i}": img.detach().cpu().numpy() for m, cells in rows.items() for i, (_, _, img, _) in
              enumerate(cells)}
    return record, arrays
