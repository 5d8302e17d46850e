"""Checks of a workflow config (run before any job): the JSON schema's, each problem one line and all of them at
once (an unknown key names the closest valid one), the values' ranges (pdd.validation, as the CLI checks them),
and what a schema cannot express."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pdd.plan.config import (
    STRONG_EPS_KEYS,
    STRONG_KEYS_BY_NORM,
    method_of,
    strong_eps,
    strong_settings,
    train_config,
    user_methods,
)
from pdd.plan.outputs import NEEDS, OUTPUTS, TRAINED_ONLY, intervals_for, requested
from pdd.settings.attacks import ATTACKS
from pdd.settings.datasets import DATASETS
from pdd.settings.methods import BUILTIN, entry_points
from pdd.settings.training import intervals_problem


def schema_problems(config: dict, schema: str | Path | dict) -> list[str]:
    """Every violation of the JSON `schema` (a path or a loaded schema) by `config`, one line each naming the key
    (an unknown key with the closest valid one), in config order; never the schema or the whole config."""
    import jsonschema
    import yaml

    if not isinstance(schema, dict):
        schema = yaml.safe_load(Path(schema).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return list(dict.fromkeys(line for err in errors for line in _schema_lines(err)))


def _schema_lines(err: Any) -> list[str]:
    """One schema error as lines naming the key (sub-errors of anyOf / oneOf: the most relevant one)."""
    import jsonschema

    if err.context:
        return _schema_lines(jsonschema.exceptions.best_match(err.context))
    where = _dotted(err.absolute_path)
    if err.validator == "additionalProperties" and err.validator_value is False and isinstance(err.instance, dict):
        known = sorted(err.schema.get("properties", {}))
        lines = []
        for key in err.instance:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(known)}"
            lines.append(f"{_dotted([*err.absolute_path, key])}: unknown key; {hint}")
        return lines
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        return [f"{where or '(top level)'}: missing key `{k}`" for k in missing]
    if err.validator in ("propertyNames",):
        return [f"{where}: {err.message[:200]}"]
    text = _short(err.instance)
    if err.validator == "type":
        return [f"{where}: must be of type {err.validator_value}, got {text}"]
    if err.validator == "enum":
        return [f"{where}: must be one of {', '.join(map(str, err.validator_value))}, got {text}"]
    if err.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[err.validator]
        return [f"{where}: must be {sign} {err.validator_value}, got {text}"]
    message = err.message if len(err.message) <= 200 else err.message[:200] + " ..."
    return [f"{where or '(top level)'}: {message}"]


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _leaves(obj: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(key path, value) of every number inside nested dicts and lists (a list's items share its path)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _leaves(v, path)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, obj


def value_problems(config: dict) -> list[str]:
    """Every number of `config` outside its range, with the CLI's ranges (pdd.validation): an attack list's
    parameters by attack (its registry entry's bound); a setting by its section and key (`deg.lambda` is the field
    deg_lambda, `evaluation.cw.confidence` is cw_confidence, `training.lr` is lr); any other NaN or infinity."""
    from pdd.validation import VALUE_BOUNDS, field_bound

    found = []
    for path, value in _leaves(config):
        key = ".".join(path)
        if len(path) >= 2 and "attacks" in path[:-1] and path[-1] in ATTACKS and ATTACKS[path[-1]].bound:
            problem = ATTACKS[path[-1]].bound.problem(value)
            found += [f"{key}: {path[-1]}: {problem}"] if problem else []
            continue
        if path[:2] == ("strong_evaluation", "eps"):
            bound = VALUE_BOUNDS["eps"]
        else:
            names = ["_".join(path[-2:])] if len(path) >= 2 else []
            bound = next((b for b in map(field_bound, [*names, path[-1]]) if b is not None), None)
        problem = bound.problem(value) if bound else (None if math.isfinite(value) else
                                                      f"must be a finite number, got {value}")
        if problem:
            found.append(f"{key}: {problem}")
    return list(dict.fromkeys(found))


def problems(config: dict) -> list[str]:
    """Every out-of-range value and cross-key inconsistency of `config`, each naming the key, each once; empty
    when fine (run after the schema's checks, `schema_problems`)."""
    found = value_problems(config)
    found += method_problems(config)
    found += [f"datasets.{d}: unknown dataset; known: {sorted(DATASETS)}" for d in config["datasets"]
              if d not in DATASETS]
    found += [f"stand_in_for.{ours}: unknown dataset {d!r}; known: {sorted(DATASETS)}"
              for ours, paper in (config.get("stand_in_for") or {}).items() for d in (ours, paper)
              if d not in DATASETS]
    if not found:
        recipe = train_config(config, next(iter(config["datasets"])), 2, "baseline", 0)
        if recipe.lr_min > recipe.lr:
            found.append("training.lr_min must not exceed training.lr")
    for section, kind in (("tables", "table"), ("figures", "figure")):
        for name in config.get(section, {}):
            if name not in OUTPUTS or OUTPUTS[name].kind != kind:
                known = sorted(n for n, o in OUTPUTS.items() if o.kind == kind)
                found.append(f"{section}.{name}: unknown {kind}; known: {known}")
    found += attack_problems(config)
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


def method_problems(config: dict) -> list[str]:
    """The config's own training methods (`methods`): each names an importable module or an existing file with
    the class, a `pdd.methods.TrainingMethod` subclass that takes its settings, under a name no built-in method
    or external model has. Those that pass are registered (their code runs: that is what loading them means)."""
    found = []
    external = config.get("external", {})
    for name, spec in (config.get("methods") or {}).items():
        if name in external:
            found.append(f"methods.{name}: also the name of an external model; give one of them another name")
            continue
        from pdd.methods import PluginError, register  # a user's method is torch code; built-in ones need none

        try:
            register(name, spec)
        except PluginError as err:
            found.append(str(err))
    return found


def known_methods(config: dict) -> list[str]:
    """Every method name a config may use: the built-in ones, the config's own, the installed entry points'."""
    own = [m for m in user_methods(config) if m not in BUILTIN]
    return sorted(BUILTIN) + own + sorted(set(entry_points()) - BUILTIN - set(own))


def attack_problems(config: dict) -> list[str]:
    """Every attack list (per dataset, per output) names registered attacks (their parameters are checked by
    `value_problems`)."""
    grids = {f"attacks.{d}": grid for d, grid in config["attacks"].items()}
    for section in ("tables", "figures"):
        grids.update({f"{section}.{n}.attacks": s["attacks"] for n, s in config.get(section, {}).items()
                      if "attacks" in s})
    return [f"{key}.{attack}: unknown attack; known: {', '.join(ATTACKS)}" for key, grid in grids.items()
            for attack in grid if attack not in ATTACKS]


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
    known = known_methods(config)
    unknown = [m for m in names if m not in known]
    if unknown:
        return found + [f"{key}.methods: unknown method(s) {unknown}; known: {sorted(known)} and the "
                        f"config's external models {sorted(external)}"]
    broken = []
    for m in names:
        if m not in BUILTIN and m not in user_methods(config):  # an installed entry point, loaded here: a broken
            from pdd.methods import PluginError, register  # one is one line, not a traceback

            try:
                register(m)
            except PluginError as err:
                broken.append(str(err))
    if broken:
        return found + broken
    outside = [m for m in spec.get("methods", []) if m in external]
    trained_only = [n for n in output.needs if n in TRAINED_ONLY]
    if outside and trained_only:
        found.append(f"{key}.methods: external model(s) {outside} cannot appear in {name}: it needs "
                     f"{NEEDS[trained_only[0]]}, which only an ensemble trained by the pipeline has")
    clash = sorted(set(external) & (BUILTIN | set(user_methods(config))))
    if clash:
        found.append(f"external: {clash} are names of training methods; give your models other names")
    if "primary" in spec and name != "table_claims":
        found.append(f"{key}.primary: only table_claims has primary claims")
    for claim in spec.get("primary", []) if name == "table_claims" else []:
        absent = [m for m in (claim["method"], claim["versus"]) if m not in spec["methods"]]
        if absent:
            found.append(f"{key}.primary: {absent} not among the table's methods {spec['methods']}")
    if name == "figure_member_transfer" and not spec.get("eps"):
        found.append(f"{key}.eps: the L-inf budget of the PGD crafted on each member is missing")
    if name == "figure_intervals":
        k = spec["K"][0]
        found += [f"{key}.intervals: {problem}" for m in spec["intervals"] if (problem := intervals_problem(k, m))]
        return found
    if "whitebox" in output.needs and not output.own_attacks:
        found += _whitebox_filter_problems(config, spec, key)
    if name == "table_stronger_attacks":
        for dataset in spec["datasets"]:
            standard = config["attacks"].get(dataset, {})
            for attack, params in spec["attacks"].items():
                missing = [p for p in params if float(p) not in map(float, standard.get(attack, []))]
                if missing:
                    found.append(f"{key}.attacks.{attack}: {missing} not among attacks.{dataset}.{attack}, so the "
                                 "standard-iteration column would have no result")
    uses_pdd = any(method_of(config, m).uses_pdd for m in names)
    for k in spec["K"] if uses_pdd else []:
        m = intervals_for(config, k)
        if m is None:
            found.append(f"pdd.intervals: no number of intervals for K={k} (needed by {key})")
        elif problem := intervals_problem(k, m):
            found.append(f"pdd.intervals: {problem}")
    return found


def _whitebox_filter_problems(config: dict, spec: dict, key: str) -> list[str]:
    """An output that shows the dataset's white-box attacks picks them by name only: parameters other than the
    dataset's (which it would silently not show) and attacks the dataset does not run are refused."""
    found = []
    for dataset in spec["datasets"]:
        standard = config["attacks"].get(dataset, {})
        for attack, params in spec.get("attacks", {}).items():
            if attack not in standard:
                found.append(f"{key}.attacks.{attack}: not among attacks.{dataset}, so there is nothing to show")
            elif params and sorted(map(float, params)) != sorted(map(float, standard[attack])):
                found.append(f"{key}.attacks.{attack}: {list(params)} differs from attacks.{dataset}.{attack} "
                             f"{list(standard[attack])}; this table shows the dataset's parameters and picks "
                             f"attacks by name (write {attack}: [] or change attacks.{dataset}.{attack})")
    return found


def strong_problems(config: dict, names: list[str]) -> list[str]:
    """What the outputs that read the strong evaluation need: its config section with eps for their datasets, a
    coherent diagnostic setup and an independent surrogate."""
    key = f"tables.{names[0]}"
    strong = config.get("strong_evaluation")
    if strong is None:
        return [f"strong_evaluation: missing; {key} needs it (eps, apgd, pgd, transfer_steps, diagnostics)"]
    found, norms = [], set()
    for name in names:
        spec = requested(config)[name]
        if "attacks" in spec:
            found.append(f"tables.{name}.attacks: not used; the strong evaluation's attacks are set under "
                         "strong_evaluation")
        norm = "l2" if "strong_l2" in OUTPUTS[name].needs else "linf"
        norms.add(norm)
        eps_key = STRONG_EPS_KEYS[norm]
        diagnostic_key = STRONG_KEYS_BY_NORM[norm]["diagnostic_eps"][-1]
        for dataset in spec["datasets"]:
            eps_values = strong_eps(config, dataset, norm)
            if not eps_values:
                found.append(f"strong_evaluation.{eps_key}: no eps list for dataset {dataset!r} (needed by "
                             f"tables.{name})")
            elif max(eps_values) >= strong_settings(config, norm).diagnostic_eps:
                found.append(f"strong_evaluation.diagnostics.{diagnostic_key} must exceed every eps of "
                             f"strong_evaluation.{eps_key}.{dataset}")
    steps = strong.get("pgd", {}).get("steps")
    if steps is not None and steps != sorted(steps):
        found.append(f"strong_evaluation.pgd.steps must be increasing, got {steps}")
        return found
    settings = strong_settings(config)
    if 10 not in settings.pgd_steps:
        found.append(f"strong_evaluation.pgd.steps must include 10 (the paper-protocol column), got {steps}")
    for norm in sorted(norms):
        settings = strong_settings(config, norm)
        if settings.unbounded_eps <= settings.diagnostic_eps:
            keys = STRONG_KEYS_BY_NORM[norm]
            found.append(f"strong_evaluation.diagnostics.{keys['unbounded_eps'][-1]} must exceed "
                         f"strong_evaluation.diagnostics.{keys['diagnostic_eps'][-1]}")
    oblivious = config["surrogates"]["oblivious"]
    if (oblivious["arch"], oblivious["width"]) == (config["model"]["arch"], config["model"]["width"]):
        found.append("surrogates.oblivious: same architecture and width as model; the transfer check of "
                     f"{key} needs an independent surrogate")
    return found
