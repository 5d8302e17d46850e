"""Which model cards the workflow writes: one per strongly evaluated ensemble, threat model and eps.

A card (`pdd.reports.model_cards`) is written for every ensemble of a requested output that needs a strong
evaluation, at every eps that evaluation runs, under `results/model_cards/<dataset>/<threat>/<name>.json`
(RobustBench's `model_info/<dataset>/<threat>/<name>.json` layout).
"""

from __future__ import annotations

from pdd.plan.config import strong_eps
from pdd.plan.outputs import OUTPUTS, ensembles, requested, seed_wanted
from pdd.plan.paths import EVAL_DIR

CARD = "results/model_cards/{dataset}/{threat_model}/{method}_{arch}_K{K}_seed{seed}_eps{eps}.json"

# Per evaluation need: (RobustBench threat model, the evaluation's folder and file under EVAL_DIR, our norm).
SOURCES = {
    "strong": ("Linf", "strong/evaluation.json", "linf"),
    "strong_l2": ("L2", "strong_l2/evaluation.json", "l2"),
}


def cards(config: dict) -> list[str]:
    """Paths of every model card the requested outputs imply, in a stable order without repeats."""
    found: list[str] = []
    for name in requested(config):
        for need in OUTPUTS[name].needs:
            if need not in SOURCES:
                continue
            threat, _, norm = SOURCES[need]
            for dataset, k, method, seed in ensembles(config, name):
                if not seed_wanted(config, name, method, need, seed):
                    continue
                found += [CARD.format(dataset=dataset, threat_model=threat, method=method, arch=config["model"]["arch"],
                                      K=k, seed=seed, eps=f"{eps:g}") for eps in strong_eps(config, dataset, norm)]
    return list(dict.fromkeys(found))


def card_source(dataset: str, arch: str, k: int | str, method: str, seed: int | str, threat: str) -> str:
    """The evaluation file a card of `threat` ('Linf' / 'L2') is written from."""
    folder = [file for t, file, _ in SOURCES.values() if t == threat]
    if not folder:
        raise ValueError(f"no strong evaluation writes {threat} results; known: {[t for t, _, _ in SOURCES.values()]}")
    return f"{EVAL_DIR.format(dataset=dataset, arch=arch, K=k, method=method, seed=seed)}/{folder[0]}"
