# Derives, from the config, every model and evaluation that each requested output needs.

import os

import pdd
from pdd.config import intervals_for, problems
from pdd.methods import get_method

_problems = problems(config)
if _problems:
    raise ValueError("invalid config:\n  " + "\n  ".join(_problems))

VERSION = pdd.__version__
RESULTS = "results"
MODEL_DIR = RESULTS + "/models/{dataset}/{arch}/K{K}/{method}/seed{seed}"
EVAL_DIR = RESULTS + "/eval/{dataset}/{arch}/K{K}/{method}/seed{seed}"
TABLES = RESULTS + "/tables"
FIGURES = RESULTS + "/figures"
LOGS = RESULTS + "/logs"
PAPER_RESULTS = os.path.join(workflow.basedir, "config", "paper_results.csv")


wildcard_constraints:
    dataset=r"[a-z0-9_]+",
    arch=r"[a-z0-9]+",
    K=r"\d+",
    method=r"[a-z_]+",
    seed=r"\d+",
    attack=r"[a-z_0-9]+",
    threat=r"blackbox_(oblivious|adaptive)",


def model(dataset, K, method, seed, arch=None):
    """Path of a trained ensemble (the defended architecture unless `arch` is given)."""
    arch = arch or config["model"]["arch"]
    return MODEL_DIR.format(dataset=dataset, arch=arch, K=K, method=method, seed=seed) + "/ensemble.pt"


def train_log(dataset, K, method, seed):
    return model(dataset, K, method, seed).replace("ensemble.pt", "train_log.csv")


def evaluation(kind, dataset, K, method, seed, name):
    """Path of one evaluation result of a defended ensemble (kind: whitebox or a black-box threat)."""
    base = EVAL_DIR.format(dataset=dataset, arch=config["model"]["arch"], K=K, method=method, seed=seed)
    return f"{base}/{kind}/{name}.json"


def grid(table):
    """(dataset, K, method, seed) of every defended ensemble a table reports."""
    t = config["tables"][table]
    return [(d, k, m, s) for d in t["datasets"] for k in t["K"] for m in t["methods"] for s in config["seeds"]]


def table_attacks(table, dataset):
    """{attack: [params]} of a table: its own list, else the dataset's."""
    return config["tables"][table].get("attacks") or config["attacks"][dataset]


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


def references(table):
    return [f"--reference {ours}={paper}" for ours, paper in config["tables"][table].get("reference", {}).items()]
