"""Checks of a workflow config that a JSON schema cannot express (run before any job)."""

from __future__ import annotations

from pdd.methods import get_method


def intervals_for(config: dict, k: int) -> int:
    """PDD's number of intervals M for ensemble size K (YAML keys may be int or str)."""
    intervals = config["pdd"]["intervals"]
    return intervals.get(k, intervals.get(str(k)))


def problems(config: dict) -> list[str]:
    """Every cross-key inconsistency of `config`, each naming the key; empty when fine."""
    found = []
    if config["training"]["lr_min"] > config["training"]["lr"]:
        found.append("training.lr_min must not exceed training.lr")
    for name, table in config["tables"].items():
        for dataset in table["datasets"]:
            if dataset not in config["datasets"]:
                found.append(f"tables.{name}: dataset {dataset!r} has no recipe under 'datasets'")
            if name != "timing" and "attacks" not in table and dataset not in config["attacks"]:
                found.append(f"tables.{name}: dataset {dataset!r} has no attack list under 'attacks'")
        uses_pdd = any(get_method(m).pdd for m in table["methods"])
        for k in table["K"] if uses_pdd else []:
            m = intervals_for(config, k)
            if m is None:
                found.append(f"pdd.intervals: no number of intervals for K={k} (needed by tables.{name})")
            elif m <= k:
                found.append(f"pdd.intervals: M={m} for K={k} must exceed K (PDD needs M > K)")
    return found
