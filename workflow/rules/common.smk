# Derives, from the config, every model and evaluation that each requested output needs.

import os

import pdd
from pdd.config import intervals_for, outputs, problems
from pdd.methods import get_method

_problems = problems(config)
if _problems:
    raise ValueError("invalid config:\n  " + "\n  ".join(_problems))

VERSION = pdd.__version__
OUTPUTS = outputs(config)
RESULTS = "results"
MODEL_DIR = RESULTS + "/models/{dataset}/{arch}/K{K}/{method}/seed{seed}"
EVAL_DIR = RESULTS + "/eval/{dataset}/{arch}/K{K}/{method}/seed{seed}"
TABLES = RESULTS + "/tables"
FIGURES = RESULTS + "/figures"
LOGS = RESULTS + "/logs"
PAPER_RESULTS = os.path.join(workflow.basedir, "config", "paper_results.csv")
SUITES = ["whitebox", *[name for name, spec in OUTPUTS.items() if "attacks" in spec and name != "table4_blackbox"]]


wildcard_constraints:
    dataset=r"[a-z0-9_]+",
    arch=r"[a-z0-9]+",
    K=r"\d+",
    method=r"[a-z_]+",
    seed=r"\d+",
    attack=r"[a-z_0-9]+",
    threat=r"blackbox_(oblivious|adaptive)",
    suite="|".join(SUITES),


def model(dataset, K, method, seed, arch=None):
    """Path of a trained ensemble (the defended architecture unless `arch` is given)."""
    arch = arch or config["model"]["arch"]
    return MODEL_DIR.format(dataset=dataset, arch=arch, K=K, method=method, seed=seed) + "/ensemble.pt"


def evaluation(kind, dataset, K, method, seed, name):
    """Path of one evaluation of a defended ensemble: kind is an attack suite, a black-box threat, or 'diversity'."""
    base = EVAL_DIR.format(dataset=dataset, arch=config["model"]["arch"], K=K, method=method, seed=seed)
    return f"{base}/{kind}/{name}"


def grid(name):
    """(dataset, K, method, seed) of every defended ensemble an output reports."""
    spec = OUTPUTS[name]
    return [(d, k, m, s) for d in spec["datasets"] for k in spec["K"] for m in spec["methods"] for s in config["seeds"]]


def suite_attacks(suite, dataset):
    """{attack: [params]} of an attack suite: the dataset's list ('whitebox') or an output's own list."""
    return config["attacks"][dataset] if suite == "whitebox" else OUTPUTS[suite]["attacks"]


def width(arch):
    """Member width of an architecture: the defended model's or a surrogate's."""
    for spec in [config["model"], *config["surrogates"].values()]:
        if spec["arch"] == arch:
            return spec["width"]
    raise ValueError(f"architecture {arch!r} is neither config.model nor a surrogate")


def surrogate(threat, dataset, K, method, seed):
    """The surrogate ensemble of a black-box threat: Type I a fixed baseline, Type II the target's method."""
    if threat == "blackbox_oblivious":
        s = config["surrogates"]["oblivious"]
        return model(dataset, K, s["method"], seed, s["arch"])
    return model(dataset, K, method, seed, config["surrogates"]["adaptive"]["arch"])


def references(name):
    return " ".join(f"--reference {ours}={paper}" for ours, paper in OUTPUTS[name].get("reference", {}).items())
