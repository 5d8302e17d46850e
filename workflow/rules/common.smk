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
MODEL_DIR = "results/models/{dataset}/{arch}/K{K}/{method}/seed{seed}"
EVAL_DIR = "results/eval/{dataset}/{arch}/K{K}/{method}/seed{seed}"
TABLES = "results/tables"
FIGURES = "results/figures"
LOGS = "results/logs"
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
    return f"{MODEL_DIR}/ensemble.pt".format(dataset=dataset, arch=arch, K=K, method=method, seed=seed)


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


def train_params(w):
    """Every config value that determines the trained ensemble (a change reruns it)."""
    recipe, t = config["datasets"][w.dataset], config["training"]
    method, k = get_method(w.method), int(w.K)
    adv = config["adversarial_training"].get(method.adversarial or "", {})
    args = {
        "epochs": recipe["epochs"], "batch-size": t["batch_size"], "lr": t["lr"], "momentum": t["momentum"],
        "weight-decay": t["weight_decay"], "lr-min": t["lr_min"], "width": width(w.arch),
    }
    if method.pdd:
        args.update({"pdd-intervals": intervals_for(config, k), "pdd-alpha": config["pdd"]["alpha"],
                     "pdd-beta": config["pdd"]["beta"]})
    if method.deg:
        args["deg-lambda"] = config["deg"]["lambda"]
    if method.adp:
        args.update({"adp-alpha": config["adp"]["alpha"], "adp-beta": config["adp"]["beta"]})
    if method.adversarial:
        args.update({"adv-eps": adv["eps"], "adv-steps": adv.get("steps", 1)})
    flags = " ".join(f"--{key} {value}" for key, value in args.items())
    return flags + (" --augment" if recipe["augment"] else " --no-augment")


def attack_args(params):
    """CLI flags of the attack protocol (config.evaluation) and the attack's parameters."""
    e = config["evaluation"]
    flags = (f"--batch-size {e['batch_size']} --seed {e['seed']} --steps {e['steps']}"
             f" --jsma-theta {e['jsma_theta']} --cw-confidence {e['cw']['confidence']}"
             f" --cw-learning-rate {e['cw']['learning_rate']} --cw-max-iter {e['cw']['max_iter']}"
             f" --cw-binary-search-steps {e['cw']['binary_search_steps']}")
    if e["num_images"]:
        flags += f" --num-images {e['num_images']}"
    return flags + "".join(f" --param {p}" for p in params)


def strong_args(dataset):
    """CLI flags of the strong evaluation (config.strong_evaluation) for one dataset's ensembles."""
    s, d = config["strong_evaluation"], config["strong_evaluation"]["diagnostics"]
    flags = [f"--eps {eps}" for eps in s["eps"][dataset]]
    flags += [f"--apgd-iterations {s['apgd']['iterations']}", f"--apgd-restarts {s['apgd']['restarts']}"]
    flags += [f"--pgd-steps {n}" for n in s["pgd"]["steps"]] + [f"--pgd-restarts {s['pgd']['restarts']}"]
    flags += [f"--transfer-steps {s['transfer_steps']}", f"--diagnostic-eps {d['eps']}",
              f"--diagnostic-max-accuracy {d['max_accuracy_pct']}", f"--unbounded-eps {d['unbounded_eps']}",
              f"--diagnostic-steps {d['steps']}", f"--noise-images {d['noise_images']}",
              f"--batch-size {s['batch_size']}", f"--seed {config['evaluation']['seed']}"]
    if s["num_images"]:
        flags.append(f"--num-images {s['num_images']}")
    return " ".join(flags)


STRONG_TABLE = "table_strong_evaluation"


STRONG_FIGURE = "figure_strong_steps"  # drawn whenever the strong table is requested


def table_inputs(name):
    """Result files of a table: per defended ensemble, clean accuracy plus the table's attacks."""
    files = []
    for dataset, k, method, seed in grid(name):
        def result(kind, file):
            return evaluation(kind, dataset, k, method, seed, file)

        if name == "timing":
            files.append(model(dataset, k, method, seed).replace("ensemble.pt", "train_log.csv"))
        elif name == STRONG_TABLE:  # the strong evaluation beside the paper protocol's PGD (white-box suite)
            files += [result("strong", "evaluation.json"), result("whitebox", "pgd.json")]
        elif name == "table1_entropy":
            files.append(result("diversity", "entropy.json"))
        elif name == "table4_blackbox":
            files.append(result("whitebox", "none.json"))
            for threat in ("blackbox_oblivious", "blackbox_adaptive"):
                files += [result(threat, f"{a}.json") for a in OUTPUTS[name]["attacks"]]
        else:
            suite = name if "attacks" in OUTPUTS[name] else "whitebox"
            clean = [] if name == "table5_ablation" else [result("whitebox", "none.json")]
            files += clean + [result(suite, f"{a}.json") for a in suite_attacks(suite, dataset)]
    return files


def figure_spec(name):
    """An output's config entry; the strong figure follows the strong table's."""
    return OUTPUTS[STRONG_TABLE] if name == STRONG_FIGURE else OUTPUTS[name]


def figure_inputs(name):
    if name == STRONG_FIGURE:
        return [evaluation("strong", *key, "evaluation.json") for key in grid(STRONG_TABLE)]
    if name == "figure4_pgd_strength":
        return [evaluation(name, *key, f"{a}.json") for key in grid(name) for a in OUTPUTS[name]["attacks"]]
    return [evaluation("diversity", *key, "per_image.csv") for key in grid(name)]
