# Derives, from the config and the output registry (pdd/plan/outputs.py), every model and evaluation that each
# requested output needs. Input functions are named get_<what>, as in the Snakemake workflow template.

import json
import os
import shlex

from pdd.plan import outputs as registry
from pdd.plan.checks import problems
from pdd.fingerprint import fingerprint
from pdd.io import write_json
from pdd.plan.jobs import cost_inputs, jobs_per_output
from pdd.methods import get_method

_problems = problems(config)
if _problems:
    raise ValueError("invalid config:\n  " + "\n  ".join(_problems))

# The code each rule's command runs (pdd.fingerprint): a change in it reruns exactly those jobs.
JOB = (
    "pdd.data",
    "pdd.devices",
    "pdd.evaluation.records",
    "pdd.evaluation.cost_meter",
    "pdd.evaluation.external",
)  # shared by every evaluation job
CODE = {
    "prepare_data": fingerprint("pdd.data"),
    "train": fingerprint("pdd.training", "pdd.devices", "pdd.evaluation.cost_meter"),
    "attack": fingerprint("pdd.evaluation.attacks", *JOB),
    "diversity": fingerprint("pdd.evaluation.diversity", "pdd.evaluation.attacks", *JOB),
    "strong": fingerprint("pdd.evaluation.strong", "pdd.evaluation.attacks", *JOB),
    "time_steps": fingerprint("pdd.step_timing", "pdd.evaluation.attacks", *JOB),
    "member_transfer": fingerprint("pdd.evaluation.member_transfer", *JOB),
}
OUTPUTS = registry.requested(config)
MODEL_DIR = registry.MODEL_DIR
EVAL_DIR = registry.EVAL_DIR
TABLES = "results/tables"
FIGURES = "results/figures"
LOGS = "results/logs"
PAPER_RESULTS = os.path.join(workflow.basedir, "config", "paper_results.csv")


wildcard_constraints:
    dataset=r"[a-z0-9_]+",
    arch=r"[a-z0-9]+",
    K=r"\d+",
    method=r"[a-z_]+(-M\d+)?",
    seed=r"\d+",
    attack=r"[a-z_0-9]+",
    threat="|".join(registry.THREATS),
    suite="|".join(registry.suites(config)),


def model(dataset, K, method, seed, arch=None):
    """Path of a trained ensemble (the defended architecture unless `arch` is given)."""
    return registry.model_path(config, dataset, K, method, seed, arch)


EXTERNAL = config.get("external", {})


def get_model_input(w):
    """What an evaluation job reads: the trained checkpoint, or an external model's weights and factory module."""
    if w.method in EXTERNAL:
        e = EXTERNAL[w.method]
        return [e["weights"]] + ([e["source"]] if "source" in e else [])
    return model(w.dataset, w.K, w.method, w.seed, w.arch)


def get_model_args(w, flag="--model"):
    """CLI flags naming the evaluated ensemble: `--model CHECKPOINT`, or an external model's factory options."""
    if w.method in EXTERNAL:
        e = EXTERNAL[w.method]
        return (
            f"--factory {e['factory']} --weights {e['weights']} --dataset {w.dataset} --name {w.method}"
            f" --model-seed {w.seed}"
        )
    return f"{flag} {model(w.dataset, w.K, w.method, w.seed, w.arch)}"


def width(arch):
    """Member width of an architecture: the defended model's or a surrogate's."""
    for spec in [config["model"], *config["surrogates"].values()]:
        if spec["arch"] == arch:
            return spec["width"]
    raise ValueError(f"architecture {arch!r} is neither config.model nor a surrogate")


def get_surrogate(threat, dataset, K, method, seed):
    """The surrogate ensemble of a black-box threat: Type I a fixed baseline, Type II the target's method."""
    if threat == "blackbox_oblivious":
        s = config["surrogates"]["oblivious"]
        return model(dataset, K, s["method"], seed, s["arch"])
    return model(dataset, K, method, seed, config["surrogates"]["adaptive"]["arch"])


def get_train_params(w):
    """Every config value that determines the trained ensemble (a change reruns it): the recipe, PDD's settings
    if the method uses PDD, and the loss settings the method declares (`settings_used`, e.g. gal_lambda ->
    config gal.lambda; adv_* -> adversarial_training.<attack>.*)."""
    recipe, t = config["datasets"][w.dataset], config["training"]
    name, intervals = registry.variant(w.method)
    method, k = get_method(name), int(w.K)
    args = {
        "method": name,
        "epochs": recipe["epochs"],
        "batch-size": t["batch_size"],
        "lr": t["lr"],
        "momentum": t["momentum"],
        "weight-decay": t["weight_decay"],
        "lr-min": t["lr_min"],
        "width": width(w.arch),
    }
    if method.uses_pdd:
        args.update(
            {
                "pdd-intervals": intervals or registry.intervals_for(config, k),
                "pdd-alpha": config["pdd"]["alpha"],
                "pdd-beta": config["pdd"]["beta"],
            }
        )
    for field in method.settings_used:
        section, key = field.split("_", 1)
        if section == "adv":
            value = config["adversarial_training"][method.adversarial].get(key, 1)
        else:
            value = config[section][key]
        args[field.replace("_", "-")] = value
    if method.starts_from:
        args["init-from"] = get_train_start(w)[0]
    flags = " ".join(f"--{key} {value}" for key, value in args.items())
    return flags + (" --augment" if recipe["augment"] else " --no-augment")


def get_train_throughput(w):
    """`pdd train`'s throughput flags (config training.channels_last, training.fuse_members): how a step is
    computed, not what it computes."""
    t = config["training"]
    return " ".join(f"--{key.replace('_', '-')}" for key in ("channels_last", "fuse_members") if t.get(key, False))


def get_train_start(w):
    """The trained ensemble a method starts from (DVERGE: the baseline of the same dataset, K, arch, seed)."""
    start = get_method(registry.variant(w.method)[0]).starts_from
    return [model(w.dataset, w.K, start, w.seed, w.arch)] if start else []


def get_timing_args(w):
    """Flags of the interleaved step timing: the timing table's methods with every loss setting and PDD's M."""
    k, t = int(w.K), config.get("timing", {"steps": 20, "warmup": 2, "batch_size": config["training"]["batch_size"]})
    names = OUTPUTS["timing"]["methods"]
    flags = [f"--method {m}" for m in names] + [
        f"--width {width(w.arch)}",
        f"--batch-size {t['batch_size']}",
        f"--steps {t['steps']}",
        f"--warmup {t['warmup']}",
        f"--pdd-intervals {registry.intervals_for(config, k)}",
        f"--pdd-alpha {config['pdd']['alpha']}",
        f"--pdd-beta {config['pdd']['beta']}",
        f"--deg-lambda {config['deg']['lambda']}",
        f"--adp-alpha {config['adp']['alpha']}",
        f"--adp-beta {config['adp']['beta']}",
    ]
    return " ".join(flags)


def get_attack_args(params, protocol=None):
    """CLI flags of the attack protocol (config.evaluation, with an output's `protocol` overrides) and the
    attack's parameters."""
    e = {**config["evaluation"], **(protocol or {})}
    cw = {**config["evaluation"]["cw"], **{k[3:]: v for k, v in (protocol or {}).items() if k.startswith("cw_")}}
    flags = (
        f"--batch-size {e['batch_size']} --seed {e['seed']} --steps {e['steps']}"
        f" --jsma-theta {e['jsma_theta']} --cw-confidence {cw['confidence']}"
        f" --cw-learning-rate {cw['learning_rate']} --cw-max-iter {cw['max_iter']}"
        f" --cw-binary-search-steps {cw['binary_search_steps']}"
    )
    if e["num_images"]:
        flags += f" --num-images {e['num_images']}"
    return flags + "".join(f" --param {p}" for p in params)


def get_suite_args(w):
    """Attack flags of one job of an attack suite ('none' = clean accuracy only)."""
    if w.attack == "none":
        return get_attack_args([])
    protocol = None if w.suite == "whitebox" else OUTPUTS[w.suite].get("protocol")
    return get_attack_args(registry.suite_attacks(config, w.suite, w.dataset)[w.attack], protocol)


def get_member_transfer_args(w):
    """Flags of the member-transfer job: figure_member_transfer's eps and the attack protocol's images and steps."""
    e = config["evaluation"]
    flags = (
        f"--eps {OUTPUTS['figure_member_transfer']['eps']} --steps {e['steps']} --batch-size {e['batch_size']}"
        f" --seed {e['seed']}"
    )
    return flags + (f" --num-images {e['num_images']}" if e["num_images"] else "")


def get_strong_args(w):
    """CLI flags of the strong evaluation (config.strong_evaluation) for one dataset's ensembles."""
    s, d = config["strong_evaluation"], config["strong_evaluation"]["diagnostics"]
    flags = [f"--eps {eps}" for eps in s["eps"][w.dataset]]
    flags += [f"--apgd-iterations {s['apgd']['iterations']}", f"--apgd-restarts {s['apgd']['restarts']}"]
    flags += [f"--pgd-steps {n}" for n in s["pgd"]["steps"]] + [f"--pgd-restarts {s['pgd']['restarts']}"]
    flags += [
        f"--transfer-steps {s['transfer_steps']}",
        f"--diagnostic-eps {d['eps']}",
        f"--diagnostic-max-accuracy {d['max_accuracy_pct']}",
        f"--unbounded-eps {d['unbounded_eps']}",
        f"--diagnostic-steps {d['steps']}",
        f"--noise-images {d['noise_images']}",
        f"--batch-size {s['batch_size']}",
        f"--seed {config['evaluation']['seed']}",
    ]
    if s["num_images"]:
        flags.append(f"--num-images {s['num_images']}")
    return " ".join(flags)


def get_output_code(w):
    """Fingerprint of the code that builds output `w.name` (its builder module and what that imports)."""
    return fingerprint(registry.OUTPUTS[w.name].builder.split(":")[0])


def get_output_inputs(w):
    """Every file output `w.name` is built from (pdd.plan.outputs.inputs; the cost table: the jobs-per-output file,
    which rule jobs_per_output writes once every job has run)."""
    if "jobs" in registry.OUTPUTS[w.name].needs:
        return [registry.JOBS_PER_OUTPUT]
    return registry.inputs(config, w.name)


def cost_output():
    """The name of the requested cost table (the output that needs every job)."""
    return next(name for name in OUTPUTS if "jobs" in registry.OUTPUTS[name].needs)


def get_cost_files(w):
    """Every job's benchmark file and cost record: the jobs-per-output file is written after all of them."""
    return cost_inputs(jobs_per_output(config, cost_output()))


def get_output_spec(w):
    """The output's config entry, completed with what its builder reads, as shell-quoted JSON (a change
    rebuilds the output)."""
    spec = OUTPUTS[w.name]
    spec = {
        **spec,
        "name": w.name,
        "data_root": config["data_root"],
        "seeds": config["seeds"],
        "methods": registry.methods(config, w.name, spec) if "methods" in spec or "intervals" in spec else None,
        "pdd_intervals": {str(k): m for k, m in config["pdd"]["intervals"].items()},
        "alpha": config["pdd"]["alpha"],
        "standard": {"steps": config["evaluation"]["steps"], "cw_max_iter": config["evaluation"]["cw"]["max_iter"]},
    }
    return shlex.quote(json.dumps(spec, sort_keys=True))
