"""Model cards: one strongly evaluated ensemble at one eps in RobustBench's `model_info` JSON format.

RobustBench keeps one JSON per model under `model_info/<dataset>/<threat_model>/<name>.json` with the fields of
its `robustbench.utils.ModelInfo` (accuracies as percent strings with two decimals, eps as a string); its
leaderboard reads the robust accuracy from `external` when present, else `autoattack_acc`. Our robust accuracy
is the strong evaluation's worst case (APGD-CE, APGD-DLR, PGD at several step counts with restarts; not the
AutoAttack suite), so it goes to `external`, and `unreliable` is set when a gradient-masking check warned. Our own
fields follow RobustBench's: K, method, seed, arch, the attacks run and the masking checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pdd.io import write_text

# The norm a strong-evaluation record names (field `norm`; records without one are L-inf) -> RobustBench's
# threat-model name, which is also the card's folder.
THREAT_MODELS = {"linf": "Linf", "l-inf": "Linf", "inf": "Linf", "l2": "L2"}
ROBUSTBENCH_FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                      "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "external", "footnote",
                      "unreliable")
PAPER = "Adversarial Defense by Diversified Simultaneous Training of Deep Ensembles (AAAI 2021), reproduced"


def threat_model(record: Mapping) -> str:
    """RobustBench's threat model ('Linf' or 'L2') of a strong-evaluation record, from its `norm` (default L-inf)."""
    norm = str(record.get("norm") or "linf").lower()
    if norm not in THREAT_MODELS:
        raise ValueError(f"record with unknown norm {record.get('norm')!r}; known: {sorted(THREAT_MODELS)}")
    return THREAT_MODELS[norm]


def card_name(method: str, arch: str, k: int, seed: int, eps: float) -> str:
    """File stem of a card: 'pdd_deg_resnet18_K3_seed0_eps0.1' (RobustBench: one file per model and eps)."""
    return f"{method}_{arch}_K{k}_seed{seed}_eps{eps:g}"


def _pct(value: float) -> str:
    """RobustBench's accuracy format: percent with two decimals, as a string."""
    return f"{value:.2f}"


def _same(a: object, b: float) -> bool:
    return a is not None and abs(float(a) - b) <= 1e-9 * max(1.0, abs(b))


def card(records: Sequence[Mapping], eps: float, threat: str = "Linf", *, width: int | None = None,
         source: str | None = None, name: str | None = None) -> dict:
    """The model card of one ensemble's strong evaluation (`pdd.evaluation.strong.evaluate`'s records, keyed) at
    `eps` under `threat` ('Linf' / 'L2'): RobustBench's fields first, then ours. Accuracies in the RobustBench
    fields count all evaluated images (as RobustBench does); `worst_case_of_correct` the initially correct ones.
    name: the card's `name` as its owner calls the model (default: this project's reproduction of the method)."""
    if threat not in set(THREAT_MODELS.values()):
        raise ValueError(f"threat must be one of {sorted(set(THREAT_MODELS.values()))}, got {threat!r}")
    clean = [r for r in records if r.get("threat") == "whitebox" and r.get("attack") == "none"]
    if not clean:
        raise ValueError("no clean-accuracy record (attack 'none'): not a strong evaluation's result")
    clean = clean[0]
    mine = [r for r in records if r.get("metric") != "cost" and r.get("attack") != "none" and threat_model(r) == threat]
    at_eps = [r for r in mine if r.get("threat") in ("whitebox", "blackbox_oblivious") and _same(r.get("param"), eps)]
    worst = [r for r in at_eps if r["attack"] == "worst_case"]
    if not worst:
        found = sorted({r["param"] for r in mine if r.get("attack") == "worst_case"})
        raise ValueError(f"no {threat} worst case at eps {eps:g} in the records (eps evaluated: {found})")
    worst = worst[0]
    k, arch = int(clean["K"]), str(clean["arch"])
    checks = {r["attack"]: {"passed": None if r["value"] is None else bool(r["value"]), "detail": r.get("detail", "")}
              for r in mine if r.get("threat") == "diagnostic" and r.get("metric") == "passed"}
    warned = sorted(name for name, c in checks.items() if c["passed"] is False)
    attacks = [{"attack": r["attack"], "threat": r["threat"], "steps": r.get("steps"), "restarts": r.get("restarts"),
                "robust_acc": _pct(r["accuracy_all"])} for r in at_eps if r["attack"] != "worst_case"]
    paper_protocol = [r for r in at_eps if r["attack"] == "pgd_10"]
    size = f" (width {width})" if width else ""
    info = {
        "link": None,
        "name": name or f"{clean['method']} ensemble of {k} {arch}{size}: {PAPER}",
        "authors": None,
        "additional_data": False,
        "number_forward_passes": k,  # RobustBench counts each member of an ensemble (e.g. Chen2020Adversarial: 3)
        "dataset": str(clean["dataset"]),
        "venue": None,
        "architecture": f"{k} x {arch}{size}",
        "eps": f"{eps:g}",
        "clean_acc": _pct(clean["value"]),
        "reported": _pct(paper_protocol[0]["accuracy_all"]) if paper_protocol else None,
        "autoattack_acc": None,
        "external": _pct(worst["accuracy_all"]),
        "footnote": (f"Robust accuracy ('external') is the per-image worst case of this project's strong evaluation "
                     f"({', '.join(a['attack'] for a in attacks if a['threat'] == 'whitebox')}) on "
                     f"{worst['n_images']} test images, not AutoAttack; 'reported' is the paper's protocol (PGD-10). "
                     + (f"Gradient-masking checks warned: {', '.join(warned)}." if warned
                        else "No gradient-masking check warned.")),
        "unreliable": bool(warned),
    }
    ours = {
        "K": k, "method": str(clean["method"]), "seed": int(clean["seed"]), "arch": arch, "width": width,
        "threat_model": threat, "n_examples": int(worst["n_images"]), "n_clean_correct": int(worst["n_clean_correct"]),
        "worst_case_of_correct": _pct(worst["value"]), "attacks": attacks, "masking_checks": checks,
        "masking_checks_passed": not warned and all(c["passed"] for c in checks.values()), "source": source,
    }
    return {**info, **ours}


def read_records(paths: Iterable[str | Path]) -> list[dict]:
    """Every record of the result JSON files (each a list of records)."""
    return [r for p in paths for r in json.loads(Path(p).read_text())]


def write_card(evaluation: str | Path, eps: float, threat: str, out: str | Path, width: int | None = None) -> dict:
    """Write the card of the strong evaluation in `evaluation` (one ensemble's JSON) at `eps` to `out`."""
    info = card(read_records([evaluation]), eps, threat, width=width, source=str(evaluation))
    write_card_json(out, info)
    return info


def write_card_json(out: str | Path, info: Mapping) -> None:
    """Write a card atomically, fields in RobustBench's order (their files are not sorted)."""
    write_text(out, json.dumps(info, indent=2) + "\n")
