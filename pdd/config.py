"""Checks of a workflow config that a JSON schema cannot express (run before any job)."""

from __future__ import annotations

from pdd.methods import get_method

OWN_ATTACKS = ("table4_blackbox", "table5_ablation", "table6_adversarial_training", "figure4_pgd_strength")
STRONG_TABLE = "table_strong_evaluation"


def intervals_for(config: dict, k: int) -> int | None:
    """PDD's number of intervals M for ensemble size K (YAML keys may be int or str)."""
    intervals = config["pdd"]["intervals"]
    return intervals.get(k, intervals.get(str(k)))


def outputs(config: dict) -> dict[str, dict]:
    """Every requested table and figure as {name: {datasets, K, methods, ...}} (figures name one of each)."""
    found = dict(config["tables"])
    for name, fig in config.get("figures", {}).items():
        found[name] = {**fig, "datasets": [fig["dataset"]], "K": [fig["K"]]}
    return found


def problems(config: dict) -> list[str]:
    """Every cross-key inconsistency of `config`, each naming the key; empty when fine."""
    found = []
    if config["training"]["lr_min"] > config["training"]["lr"]:
        found.append("training.lr_min must not exceed training.lr")
    for name, spec in outputs(config).items():
        section = "tables" if name in config["tables"] else "figures"
        if name in OWN_ATTACKS and not spec.get("attacks"):
            found.append(f"{section}.{name}.attacks: this output needs its own attack list")
        for dataset in spec["datasets"]:
            if dataset not in config["datasets"]:
                found.append(f"{section}.{name}: dataset {dataset!r} has no recipe under 'datasets'")
            if name in ("table2_whitebox_k3", "table3_whitebox_k5") and dataset not in config["attacks"]:
                found.append(f"{section}.{name}: dataset {dataset!r} has no attack list under 'attacks'")
        uses_pdd = any(get_method(m).pdd for m in spec["methods"])
        for k in spec["K"] if uses_pdd else []:
            m = intervals_for(config, k)
            if m is None:
                found.append(f"pdd.intervals: no number of intervals for K={k} (needed by {section}.{name})")
            elif m <= k:
                found.append(f"pdd.intervals: M={m} for K={k} must exceed K (PDD needs M > K)")
    if STRONG_TABLE in config["tables"]:
        found += strong_problems(config)
    return found


def strong_problems(config: dict) -> list[str]:
    """What `table_strong_evaluation` needs: its config section, eps values that the white-box suite also
    attacks (the paper-protocol column), a coherent diagnostic setup and an independent surrogate."""
    spec, key = config["tables"][STRONG_TABLE], f"tables.{STRONG_TABLE}"
    strong = config.get("strong_evaluation")
    if strong is None:
        return [f"strong_evaluation: missing; {key} needs it (eps, apgd, pgd, transfer_steps, diagnostics)"]
    found = []
    if "attacks" in spec:
        found.append(f"{key}.attacks: not used; the strong evaluation's attacks are set under strong_evaluation")
    for dataset in spec["datasets"]:
        eps_values = strong["eps"].get(dataset)
        if not eps_values:
            found.append(f"strong_evaluation.eps: no eps list for dataset {dataset!r} (needed by {key})")
            continue
        protocol = {round(float(e), 6) for e in config["attacks"].get(dataset, {}).get("pgd", [])}
        missing = [e for e in eps_values if round(float(e), 6) not in protocol]
        if missing:
            found.append(f"strong_evaluation.eps.{dataset}: {missing} not among attacks.{dataset}.pgd, so the "
                         "paper-protocol column would have no result; add them there")
        if max(eps_values) >= strong["diagnostics"]["eps"]:
            found.append(f"strong_evaluation.diagnostics.eps must exceed every eps of strong_evaluation.eps.{dataset}")
    steps = strong["pgd"]["steps"]
    if steps != sorted(steps):
        found.append(f"strong_evaluation.pgd.steps must be increasing, got {steps}")
    if strong["diagnostics"]["unbounded_eps"] <= strong["diagnostics"]["eps"]:
        found.append("strong_evaluation.diagnostics.unbounded_eps must exceed strong_evaluation.diagnostics.eps")
    oblivious = config["surrogates"]["oblivious"]
    if (oblivious["arch"], oblivious["width"]) == (config["model"]["arch"], config["model"]["width"]):
        found.append("surrogates.oblivious: same architecture and width as model; the transfer check of "
                     f"{key} needs an independent surrogate")
    return found
