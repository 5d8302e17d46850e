"""The one mapping from a workflow config to every job's settings.

The workflow's params, `benchmarks/project_cost.py` and the tests ask this module; nothing else reads the
config's setting keys. Each setting's default lives in its dataclass (`TrainConfig`, `LossSettings`,
`AttackSettings`, `StrongSettings`, `TimingSettings`): a key absent from the config takes it. Jobs receive
their settings as command-line arguments built here from the dataclasses and quoted with `shlex`, so no
user-supplied path or value reaches a shell unquoted.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, fields, replace
from typing import Any

from pdd.fingerprint import file_fingerprint
from pdd.plan.outputs import OUTPUTS, THREATS, intervals_for, requested, suite_attacks, variant
from pdd.plan.outputs import methods as output_methods
from pdd.plan.paths import model_path
from pdd.settings.attacks import AttackSettings, settings_read
from pdd.settings.methods import BUILTIN, METHOD_INFO, LossSettings, MethodInfo
from pdd.settings.strong import StrongSettings
from pdd.settings.timing import TimingSettings
from pdd.settings.training import THROUGHPUT_FIELDS, TrainConfig

Path = tuple[str, ...]

# Where each dataclass field lives in the config (a path of keys); fields not listed keep their default.
TRAINING_KEYS: dict[str, Path] = {
    "batch_size": ("training", "batch_size"), "lr": ("training", "lr"), "momentum": ("training", "momentum"),
    "weight_decay": ("training", "weight_decay"), "lr_min": ("training", "lr_min"),
    "pdd_alpha": ("pdd", "alpha"), "pdd_beta": ("pdd", "beta"),
    "channels_last": ("training", "channels_last"), "fuse_members": ("training", "fuse_members"),
    "precision": ("training", "precision"),
}
ATTACK_KEYS: dict[str, Path] = {
    "steps": ("evaluation", "steps"), "jsma_theta": ("evaluation", "jsma_theta"),
    "cw_confidence": ("evaluation", "cw", "confidence"), "cw_learning_rate": ("evaluation", "cw", "learning_rate"),
    "cw_max_iter": ("evaluation", "cw", "max_iter"),
    "cw_binary_search_steps": ("evaluation", "cw", "binary_search_steps"),
    "cw_abort_early": ("evaluation", "cw", "abort_early"),
    "batch_size": ("evaluation", "batch_size"), "seed": ("evaluation", "seed"),
}
STRONG_KEYS: dict[str, Path] = {
    "apgd_iterations": ("strong_evaluation", "apgd", "iterations"),
    "apgd_restarts": ("strong_evaluation", "apgd", "restarts"),
    "pgd_steps": ("strong_evaluation", "pgd", "steps"), "pgd_restarts": ("strong_evaluation", "pgd", "restarts"),
    "transfer_steps": ("strong_evaluation", "transfer_steps"),
    "diagnostic_eps": ("strong_evaluation", "diagnostics", "eps"),
    "diagnostic_max_accuracy": ("strong_evaluation", "diagnostics", "max_accuracy_pct"),
    "unbounded_eps": ("strong_evaluation", "diagnostics", "unbounded_eps"),
    "diagnostic_steps": ("strong_evaluation", "diagnostics", "steps"),
    "noise_images": ("strong_evaluation", "diagnostics", "noise_images"),
    "batch_size": ("strong_evaluation", "batch_size"),
    "seed": ("evaluation", "seed"),  # the same image subset and random starts as the paper-protocol attacks
    "apgd_targets": ("strong_evaluation", "apgd", "targets"),
    "mora_iterations": ("strong_evaluation", "mora", "iterations"),
    "mora_mixes": ("strong_evaluation", "mora", "mixes"),
    "square_queries": ("strong_evaluation", "square", "queries"),
}
# The L2 twin reads its own diagnostic budgets; everything else is shared with the L-inf evaluation.
STRONG_KEYS_BY_NORM: dict[str, dict[str, Path]] = {
    "linf": STRONG_KEYS,
    "l2": {**STRONG_KEYS, "diagnostic_eps": ("strong_evaluation", "diagnostics", "eps_l2"),
           "unbounded_eps": ("strong_evaluation", "diagnostics", "unbounded_eps_l2")},
}
STRONG_EPS_KEYS = {"linf": "eps", "l2": "eps_l2"}  # strong_evaluation.<key>.<dataset>: the budgets of each norm
TIMING_KEYS: dict[str, Path] = {
    "steps": ("timing", "steps"), "warmup": ("timing", "warmup"), "batch_size": ("timing", "batch_size"),
}


def config_fields() -> dict[str, tuple[Any, str]]:
    """{'a.b.c' config key: (its default, its help)} of every key this mapping reads, taken from the dataclass
    fields, so the config reference shows each default from the one place it lives."""
    loss_keys = [(f.name, ("adversarial_training", attack, f.name[4:]) if f.name.startswith("adv_")
                  else tuple(f.name.split("_", 1))) for f in fields(LossSettings) for attack in ("fgsm", "pgd")]
    found: dict[str, tuple[Any, str]] = {}
    for cls, keys in ((TrainConfig, TRAINING_KEYS.items()), (AttackSettings, ATTACK_KEYS.items()),
                      (TimingSettings, TIMING_KEYS.items()), (LossSettings, loss_keys),
                      *((StrongSettings(norm=norm), keys.items()) for norm, keys in STRONG_KEYS_BY_NORM.items())):
        helps = {f.name: f.metadata.get("help", "") for f in fields(cls)}
        for name, path in keys:
            default = getattr(cls, name)  # an instance's (the per-norm budgets) or the class's default
            found.setdefault(".".join(path), (list(default) if isinstance(default, tuple) else default, helps[name]))
    return found


def lookup(config: Mapping, path: Path, default: Any = MISSING) -> Any:
    """The config value at `path`, or `default` where a key on the way is absent (KeyError without one)."""
    node: Any = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            if default is MISSING:
                raise KeyError(".".join(path))
            return default
        node = node[key]
    return node


def _values(config: Mapping, keys: Mapping[str, Path]) -> dict[str, Any]:
    """{field: config value} of the fields whose key is present (absent keys keep the dataclass default)."""
    found = {name: lookup(config, path, None) for name, path in keys.items()}
    return {name: tuple(v) if isinstance(v, list) else v for name, v in found.items() if v is not None}


def user_methods(config: Mapping) -> dict[str, dict]:
    """The config's own training methods: {name: entry} (`module`, or `file` + `class`, and `settings`)."""
    return {name: dict(spec or {}) for name, spec in (config.get("methods") or {}).items()}


def register_methods(config: Mapping) -> None:
    """Make the config's own training methods known to `pdd.methods` (this imports, so runs, their code, and
    torch with it; a `PluginError` if one cannot be used: `pdd.plan.checks` reports it as a config problem first)."""
    from pdd.methods import register  # only for the config's own methods: a built-in method needs no torch

    for name, spec in user_methods(config).items():
        register(name, spec)


def method_class(config: Mapping, name: str) -> type:
    """The class of a user's method `name` (config entry or installed entry point), registered first."""
    from pdd.methods import get_method  # a user's method is torch code

    register_methods(config)
    return type(get_method(variant(name)[0]))


def method_of(config: Mapping, name: str) -> MethodInfo:
    """What the plan needs to know of method `name` (of a PDD variant's base): a built-in method's facts from
    `pdd.settings.methods` (no torch), a user's method's from an instance of its class."""
    base = variant(name)[0]
    if base in METHOD_INFO:
        return METHOD_INFO[base]
    from pdd.methods import get_method  # a user's method is torch code

    register_methods(config)
    return MethodInfo.of(get_method(base))


def loss_key(field: str, method: MethodInfo) -> Path:
    """Where `LossSettings` field `field` of `method` lives: adv_* under adversarial_training.<fgsm|pgd>, the
    others under the section named by the field's prefix (gal_lambda -> gal.lambda)."""
    section, key = field.split("_", 1)
    if section == "adv":
        return ("adversarial_training", method.adversarial or "pgd", key)
    return (section, key)


def loss_settings(config: Mapping, methods: Iterable[str]) -> LossSettings:
    """The loss settings `methods` use (their `settings_used`), from the config; the rest keep the defaults.
    Several adversarial-training methods read adversarial_training.pgd (its steps set the step's cost)."""
    instances = [method_of(config, m) for m in methods]
    adversarial = next((m for m in instances if m.adversarial == "pgd"), None)
    values = {}
    for instance in instances:
        for field in instance.settings_used:
            source = adversarial if field.startswith("adv_") and adversarial else instance
            value = lookup(config, loss_key(field, source), None)
            if value is not None:
                values[field] = value
    return LossSettings(**values)


def width(config: Mapping, arch: str) -> int:
    """Member width of an architecture: the defended model's or a surrogate's."""
    for spec in [config["model"], *config["surrogates"].values()]:
        if spec["arch"] == arch:
            return spec["width"]
    raise ValueError(f"architecture {arch!r} is neither config.model nor a surrogate")


def train_start(config: Mapping, dataset: str, k: int, method: str, seed: int, arch: str) -> str | None:
    """The trained ensemble a method starts from (DVERGE: the baseline of the same dataset, K, arch, seed)."""
    start = method_of(config, method).starts_from
    return model_path(config, dataset, k, start, seed, arch) if start else None


def pdd_settings(config: Mapping, k: int, intervals: int | None = None) -> dict[str, Any]:
    """PDD's `TrainConfig` fields for ensemble size K: M (`intervals`, else pdd.intervals of K), alpha, beta."""
    values = _values(config, {f: TRAINING_KEYS[f] for f in ("pdd_alpha", "pdd_beta")})
    return {"pdd_intervals": intervals or intervals_for(config, k) or TrainConfig.pdd_intervals,
            "pdd_alpha": values.get("pdd_alpha", TrainConfig.pdd_alpha),
            "pdd_beta": values.get("pdd_beta", TrainConfig.pdd_beta)}


def train_config(config: Mapping, dataset: str, k: int, method: str, seed: int, arch: str | None = None) -> TrainConfig:
    """Everything that determines the trained ensemble (dataset, K, method, seed, architecture) under `config`;
    `method` may be a PDD variant with its own M ('pdd-M20')."""
    arch = arch or defended_arch(config)
    name, intervals = variant(method)
    recipe = config["datasets"][dataset]
    return TrainConfig(**{**_values(config, TRAINING_KEYS), **pdd_settings(config, k, intervals)},
                       dataset=dataset, method=name, members=k, arch=arch, width=width(config, arch), seed=seed,
                       epochs=recipe["epochs"], augment=recipe["augment"], loss_settings=loss_settings(config, [name]),
                       init_from=train_start(config, dataset, k, method, seed, arch))


def defended_arch(config: Mapping) -> str:
    """The architecture of the defended ensembles' members."""
    return config["model"]["arch"]


def surrogate_arch(config: Mapping, threat: str) -> str:
    """The members' architecture of a black-box threat's surrogate (Type I oblivious, Type II adaptive)."""
    if threat not in THREATS:
        raise ValueError(f"unknown threat {threat!r}; expected one of {THREATS}")
    return config["surrogates"]["oblivious" if threat == "blackbox_oblivious" else "adaptive"]["arch"]


def surrogate_path(config: Mapping, threat: str, dataset: str, k: int, method: str, seed: int) -> str:
    """The surrogate ensemble of a black-box threat: Type I a fixed baseline, Type II the target's method."""
    if threat == "blackbox_oblivious":
        method = config["surrogates"]["oblivious"]["method"]
    return model_path(config, dataset, k, method, seed, surrogate_arch(config, threat))


def attack_settings(config: Mapping, protocol: Mapping | None = None) -> AttackSettings:
    """The paper-protocol attack settings (config.evaluation), with an output's `protocol` overrides (fields of
    `AttackSettings`, e.g. steps, cw_max_iter)."""
    return replace(AttackSettings(**_values(config, ATTACK_KEYS)), **(protocol or {}))


def suite_protocol(config: Mapping, suite: str) -> dict:
    """An attack suite's overrides of the protocol: none for the white-box suite, an output's `protocol`."""
    return {} if suite == "whitebox" else dict(requested(config)[suite].get("protocol", {}))


def strong_settings(config: Mapping, norm: str = "linf") -> StrongSettings:
    """The strong evaluation's attacks and diagnostics (config.strong_evaluation) in threat model `norm`."""
    return StrongSettings(**_values(config, STRONG_KEYS_BY_NORM[norm]), norm=norm)


def timing_settings(config: Mapping) -> TimingSettings:
    """The interleaved step timing's steps, warm-up and batch (config.timing; batch: training.batch_size)."""
    values = _values(config, TIMING_KEYS)
    values.setdefault("batch_size", lookup(config, ("training", "batch_size"), TimingSettings.batch_size))
    return TimingSettings(**values)


def num_images(config: Mapping, section: str) -> int | None:
    """The number of test images of an evaluation section (None: the whole test set)."""
    return lookup(config, (section, "num_images"), None)


def runtime(config: Mapping) -> dict:
    """Where and how every job runs: data root, device, CPU threads, data-loader workers, and the training's
    throughput options as `pdd train` arguments (`throughput`: the rule's command reads it outside its params,
    so flipping one, or its per-device default, reruns nothing)."""
    values = _values(config, {f: TRAINING_KEYS[f] for f in THROUGHPUT_FIELDS})
    throughput = [f"--{'' if on else 'no-'}{name.replace('_', '-')}" for name, on in values.items()]
    return {"data_root": config["data_root"], "device": config["device"], "threads": config["threads"],
            "workers": lookup(config, ("training", "workers"), 0), "throughput": quoted(throughput)}


# ----------------------------------------------------------------------------- job arguments


def as_args(settings: Any, only: Iterable[str] | None = None, skip: Iterable[str] = ()) -> list[str]:
    """Command-line arguments of a settings dataclass, as `pdd`'s options read them (`--field-name value`;
    booleans `--x` / `--no-x`; tuples repeated; None left out)."""
    chosen = set(only) if only is not None else None
    args: list[str] = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if (chosen is not None and f.name not in chosen) or f.name in skip or value is None:
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{flag[2:]}")
        else:
            for item in value if isinstance(value, tuple) else (value,):
                args += [flag, str(item)]
    return args


def quoted(args: Iterable[Any]) -> str:
    """One shell-safe string of arguments."""
    return shlex.join(str(a) for a in args)


def train_args(config: Mapping, dataset: str, k: int, method: str, seed: int, arch: str) -> str:
    """`pdd train`'s settings: the recipe, PDD's settings when the method uses PDD, the loss settings the
    method declares (`settings_used`) and the ensemble it starts from; a change reruns the training."""
    cfg = train_config(config, dataset, k, method, seed, arch)
    m = method_of(config, cfg.method)
    skip = ("loss_settings",) + (() if m.uses_pdd else ("pdd_intervals", "pdd_alpha", "pdd_beta"))
    skip += THROUGHPUT_FIELDS  # how, not what: runtime()'s, outside the params
    skip += ("precision",) if cfg.precision == TrainConfig.precision else ()  # the default: commands as before
    return quoted(as_args(cfg, skip=skip) + as_args(cfg.loss_settings, only=m.settings_used)
                  + plugin_args(config, [method]))


def plugin_args(config: Mapping, methods: Iterable[str]) -> list[str]:
    """`--plugins JSON`: the config's entries of the user methods among `methods`, for the job's process to
    register; the entry (its settings included) is in the command, so a change reruns the job."""
    own = user_methods(config)
    chosen = {base: own[base] for base in (variant(m)[0] for m in methods) if base in own}
    return ["--plugins", json.dumps(chosen, sort_keys=True)] if chosen else []


def method_code(config: Mapping, methods: Iterable[str]) -> str:
    """Fingerprint of the user's source files behind `methods` (config entries and installed entry points; ''
    when all are built in): a job's `code` param adds it, so editing such a file reruns that method's jobs only."""
    users = [name for name in methods if variant(name)[0] not in BUILTIN]
    if not users:
        return ""
    from pdd.methods.plugins import source_files  # only for user methods, whose code imports torch anyway

    files = {file for name in users for file in source_files(method_class(config, name))}
    return file_fingerprint(tuple(sorted(files))) if files else ""


def model_args(config: Mapping, dataset: str, k: int, method: str, seed: int, arch: str, flag: str = "--model") -> str:
    """The evaluated ensemble: `--model CHECKPOINT`, or an external model's factory options."""
    external = config.get("external", {})
    if method in external:
        e = external[method]
        return quoted(["--factory", e["factory"], "--weights", e["weights"], "--dataset", dataset, "--name", method,
                       "--model-seed", seed, "--members", k])
    return quoted([flag, model_path(config, dataset, k, method, seed, arch)])


def external_inputs(config: Mapping, method: str) -> list[str] | None:
    """An external model's files (weights, and its factory's source when given); None for trained methods."""
    e = config.get("external", {}).get(method)
    return None if e is None else [e["weights"]] + ([e["source"]] if "source" in e else [])


def suite_params(config: Mapping, suite: str, dataset: str, attack: str) -> list[float]:
    """The parameters of one attack job of an attack suite (none for 'none', clean accuracy only)."""
    return [] if attack == "none" else list(suite_attacks(config, suite, dataset)[attack])


def transfer_params(config: Mapping, attack: str) -> list[float]:
    """The parameters of a black-box job: table4_blackbox's list for `attack`."""
    return list(requested(config)["table4_blackbox"]["attacks"][attack])


def attack_job_args(config: Mapping, kind: str, folder: str, dataset: str, attacks: Iterable[str]) -> str:
    """`pdd attack` / `pdd transfer` flags of one job of `kind` ('whitebox' or 'transfer') running `attacks` into
    `folder` (an attack suite, or a threat): `--attack NAME=P1,P2` each ('none' bare), the protocol and the
    image count."""
    runs = []
    for attack in attacks:
        params = transfer_params(config, attack) if kind == "transfer" else suite_params(config, folder, dataset,
                                                                                          attack)
        runs += ["--attack", f"{attack}={','.join(map(str, params))}" if params else attack]
    n = num_images(config, "evaluation")
    protocol = suite_protocol(config, folder) if kind == "whitebox" else None
    settings = as_args(attack_settings(config, protocol), only=settings_read(attacks))  # only what its attacks read
    return quoted(runs + settings + (["--num-images", n] if n else []))


def strong_eps(config: Mapping, dataset: str, norm: str = "linf") -> list[float]:
    """The strong evaluation's budgets for `dataset` in `norm` (none if the config gives none)."""
    return list(lookup(config, ("strong_evaluation", STRONG_EPS_KEYS[norm], dataset), []))


def strong_args(config: Mapping, dataset: str, norm: str = "linf") -> str:
    """`pdd strong`'s settings for one dataset's ensembles in `norm`: its eps list and every StrongSettings field."""
    n = num_images(config, "strong_evaluation")
    eps = [a for e in strong_eps(config, dataset, norm) for a in ("--eps", e)]
    return quoted(eps + as_args(strong_settings(config, norm)) + (["--num-images", n] if n else []))


def diversity_args(config: Mapping) -> str:
    """`pdd diversity`'s image subset: config.diversity's count, the attacks' seed."""
    n = num_images(config, "diversity")
    return quoted((["--num-images", n] if n else []) + ["--seed", attack_settings(config).seed])


def member_transfer_args(config: Mapping) -> str:
    """`pdd member-transfer`: figure_member_transfer's eps and the protocol's steps, batch, seed and images."""
    n = num_images(config, "evaluation")
    return quoted(["--eps", requested(config)["figure_member_transfer"]["eps"]]
                  + as_args(attack_settings(config), only=("steps", "batch_size", "seed"))
                  + (["--num-images", n] if n else []))


def timing_methods(config: Mapping) -> list[str]:
    """The methods of the timing table."""
    return list(requested(config)["timing"]["methods"])


def timing_args(config: Mapping, k: int, arch: str) -> str:
    """`pdd time-steps`: the timing table's methods, the member width, PDD's settings for K and every timed
    method's own loss settings from the config (each method is timed as it trains)."""
    methods = timing_methods(config)
    args = [a for m in methods for a in ("--method", m)] + ["--width", width(config, arch)]
    args += [a for field, value in pdd_settings(config, k).items() for a in (f"--{field.replace('_', '-')}", value)]
    used = {f for m in methods for f in method_of(config, m).settings_used}
    return quoted(args + as_args(timing_settings(config)) + as_args(loss_settings(config, methods), only=used)
                  + plugin_args(config, methods))


def stand_ins(config: Mapping) -> dict[str, str]:
    """{our dataset: the paper's dataset it stands in for}, named once in the config for every table."""
    return dict(config.get("stand_in_for") or {})


def dag_config(config: Mapping) -> dict:
    """The config the cost table's job (jobs_per_output) replans the DAG from: all of it but the throughput
    options, which plan no other job, so flipping one reruns nothing there either."""
    training = {k: v for k, v in config.get("training", {}).items() if k not in THROUGHPUT_FIELDS}
    return {**config, "training": training} if "training" in config else dict(config)


def output_spec(config: Mapping, name: str) -> str:
    """An output's config entry completed with what its builder reads, as shell-quoted JSON (a change rebuilds
    the output)."""
    spec, reads = requested(config)[name], OUTPUTS[name].reads
    spec = {
        **spec,
        "name": name,
        "seeds": spec.get("seeds", config["seeds"]),
        "methods": output_methods(config, name, spec) if "methods" in spec or "intervals" in spec else None,
    }
    if "pdd" in reads:  # only the outputs whose builders read them: a change elsewhere rebuilds nothing else
        spec["pdd_intervals"] = {str(k): m for k, m in config["pdd"]["intervals"].items()}
        spec["alpha"] = lookup(config, TRAINING_KEYS["pdd_alpha"], TrainConfig.pdd_alpha)
    if "standard" in reads:
        attack = attack_settings(config)
        spec["standard"] = {"steps": attack.steps, "cw_max_iter": attack.cw_max_iter}
    if OUTPUTS[name].kind == "table":  # one stand-in per dataset for the whole run (`stand_in_for`)
        spec["reference"] = stand_ins(config)
    return shlex.quote(json.dumps(spec, sort_keys=True))
