"""Checks of a workflow config that a JSON schema cannot express (run before any job)."""

from __future__ import annotations

from pdd.data import DATASETS
from pdd.methods import METHODS, get_method
from pdd.plan.outputs import OUTPUTS, intervals_for, requested, variant


def problems(config: dict) -> list[str]:
    """Every cross-key inconsistency of `config`, each naming the key, each once; empty when fine."""
    found = []
    if config["training"]["lr_min"] > config["training"]["lr"]:
        found.append("training.lr_min must not exceed training.lr")
    found += [f"datasets.{d}: unknown dataset; known: {sorted(DATASETS)}" for d in config["datasets"]
              if d not in DATASETS]
    for section, kind in (("tables", "table"), ("figures", "figure")):
        for name in config.get(section, {}):
            if name not in OUTPUTS or OUTPUTS[name].kind != kind:
                known = sorted(n for n, o in OUTPUTS.items() if o.kind == kind)
                found.append(f"{section}.{name}: unknown {kind}; known: {known}")
    if found:
        return found
    for name, spec in requested(config).items():
        found += output_problems(config, name, spec)
    strong_users = [
        n for n, spec in requested(config).items()
        if {"strong", "strong_l2"} & set(OUTPUTS[n].needs) and not OUTPUTS[n].follows
    ]
    if strong_users:
        found += strong_problems(config, strong_users)
    return list(dict.fromkeys(found))


def output_problems(config: dict, name: str, spec: dict) -> list[str]:
    """Problems of one output's config entry: datasets, methods, attack lists, PDD's M."""
    output, key = OUTPUTS[name], f"{'tables' if OUTPUTS[name].kind == 'table' else 'figures'}.{name}"
    found = []
    if output.follows or "jobs" in output.needs:
        return found
    missing = [k for k in ("datasets", "K") + (("methods",) if name != "figure_intervals" else ()) if k not in spec]
    if missing:
        return [f"{key}: missing {', '.join(missing)}"]
    if output.own_attacks and not spec.get("attacks"):
        found.append(f"{key}.attacks: this output needs its own attack list")
    for dataset in spec["datasets"]:
        if dataset not in config["datasets"]:
            found.append(f"{key}: dataset {dataset!r} has no recipe under 'datasets'")
        if "whitebox" in output.needs and not config["attacks"].get(dataset):
            found.append(f"{key}: dataset {dataset!r} has no attack list under 'attacks'")
    external = config.get("external", {})
    names = [m for m in spec.get("methods", []) if m not in external]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        return found + [f"{key}.methods: unknown method(s) {unknown}; known: {sorted(METHODS)} and the config's "
                        f"external models {sorted(external)}"]
    if "transfer" in output.needs and any(m in external for m in spec.get("methods", [])):
        found.append(f"{key}.methods: an external model has no Type II (adaptive) surrogate trained with its method")
    clash = sorted(set(external) & set(METHODS))
    if clash:
        found.append(f"external: {clash} are names of training methods; give your models other names")
    if name == "figure_member_transfer" and not spec.get("eps"):
        found.append(f"{key}.eps: the L-inf budget of the PGD crafted on each member is missing")
    if name == "figure_intervals":
        k = spec["K"][0]
        found += [f"{key}.intervals: M={m} must exceed K={k} (PDD needs M > K)" for m in spec["intervals"] if m <= k]
        return found
    if name == "table_stronger_attacks":
        for dataset in spec["datasets"]:
            standard = config["attacks"].get(dataset, {})
            for attack, params in spec["attacks"].items():
                missing = [p for p in params if float(p) not in map(float, standard.get(attack, []))]
                if missing:
                    found.append(f"{key}.attacks.{attack}: {missing} not among attacks.{dataset}.{attack}, so the "
                                 "standard-iteration column would have no result")
    for m in names:
        sections = {f.split("_", 1)[0] for f in get_method(variant(m)[0]).settings_used} - {"adv"}
        found += [f"{s}: missing; method {m!r} of {key} needs its settings there" for s in sorted(sections)
                  if s not in config]
    uses_pdd = any(get_method(variant(m)[0]).uses_pdd for m in names)
    for k in spec["K"] if uses_pdd else []:
        m = intervals_for(config, k)
        if m is None:
            found.append(f"pdd.intervals: no number of intervals for K={k} (needed by {key})")
        elif m <= k:
            found.append(f"pdd.intervals: M={m} for K={k} must exceed K (PDD needs M > K)")
    return found


def strong_problems(config: dict, names: list[str]) -> list[str]:
    """What the outputs that read the strong evaluation need: its config section with eps for their datasets, a
    coherent diagnostic setup and an independent surrogate."""
    key = f"tables.{names[0]}"
    strong = config.get("strong_evaluation")
    if strong is None:
        return [f"strong_evaluation: missing; {key} needs it (eps, apgd, pgd, transfer_steps, diagnostics)"]
    found = []
    for name in names:
        spec = requested(config)[name]
        if "attacks" in spec:
            found.append(f"tables.{name}.attacks: not used; the strong evaluation's attacks are set under "
                         "strong_evaluation")
        l2 = "strong_l2" in OUTPUTS[name].needs
        eps_key, diagnostic_key = ("eps_l2", "eps_l2") if l2 else ("eps", "eps")
        for dataset in spec["datasets"]:
            eps_values = strong.get(eps_key, {}).get(dataset)
            if not eps_values:
                found.append(f"strong_evaluation.{eps_key}: no eps list for dataset {dataset!r} (needed by "
                             f"tables.{name})")
            elif max(eps_values) >= strong["diagnostics"][diagnostic_key]:
                found.append(f"strong_evaluation.diagnostics.{diagnostic_key} must exceed every eps of "
                             f"strong_evaluation.{eps_key}.{dataset}")
    steps = strong["pgd"]["steps"]
    if steps != sorted(steps):
        found.append(f"strong_evaluation.pgd.steps must be increasing, got {steps}")
    if 10 not in steps:
        found.append(f"strong_evaluation.pgd.steps must include 10 (the paper-protocol column), got {steps}")
    d = strong["diagnostics"]
    for suffix in ("", "_l2") if any("strong_l2" in OUTPUTS[n].needs for n in names) else ("",):
        if d[f"unbounded_eps{suffix}"] <= d[f"eps{suffix}"]:
            found.append(f"strong_evaluation.diagnostics.unbounded_eps{suffix} must exceed "
                         f"strong_evaluation.diagnostics.eps{suffix}")
    oblivious = config["surrogates"]["oblivious"]
    if (oblivious["arch"], oblivious["width"]) == (config["model"]["arch"], config["model"]["width"]):
        found.append("surrogates.oblivious: same architecture and width as model; the transfer check of "
                     f"{key} needs an independent surrogate")
    return found
