"""Which model cards the workflow writes: one per strongly evaluated ensemble, threat model and eps.

A card (`pdd.reports.model_cards`) is written for every ensemble of a requested output that needs a strong
evaluation, at every eps that evaluation runs, under `results/model_cards/<dataset>/<threat>/<name>.json`
(RobustBench's `model_info/<dataset>/<threat>/<name>.json` layout).
"""

from __future__ import annotations

from pdd.plan.outputs import EVAL_DIR, OUTPUTS, ensembles, requested

CARD = "results/model_cards/{dataset}/{threat_model}/{method}_{arch}_K{K}_seed{seed}_eps{eps}.json"


def _linf_eps(config: dict, dataset: str) -> list[float]:
    return list(config["strong_evaluation"]["eps"].get(dataset, []))


# Per evaluation need: (RobustBench threat model, the evaluation's folder and file under EVAL_DIR, its eps list).
# An L2 strong evaluation adds one line here.
SOURCES = {
    "strong": ("Linf", "strong/evaluation.json", _linf_eps),
}


def cards(config: dict) -> list[str]:
    """Paths of every model card the requested outputs imply, in a stable order without repeats."""
    found: list[str] = []
    for name in requested(config):
        for need in OUTPUTS[name].needs:
            if need not in SOURCES:
                continue
            threat, _, eps_of = SOURCES[need]
            for dataset, k, method, seed in ensembles(config, name):
                found += [CARD.format(dataset=dataset, threat_model=threat, method=method, arch=config["model"]["arch"],
                                      K=k, seed=seed, eps=f"{eps:g}") for eps in eps_of(config, dataset)]
    return list(dict.fromkeys(found))


def card_source(dataset: str, arch: str, k: int | str, method: str, seed: int | str, threat: str) -> str:
    """The evaluation file a card of `threat` ('Linf' / 'L2') is written from."""
    folder = [file for t, file, _ in SOURCES.values() if t == threat]
    if not folder:
        raise ValueError(f"no strong evaluation writes {threat} results; known: {[t for t, _, _ in SOURCES.values()]}")
    return f"{EVAL_DIR.format(dataset=dataset, arch=arch, K=k, method=method, seed=seed)}/{folder[0]}"
