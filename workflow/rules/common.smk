# Derives, from the config and the output registry (pdd/plan/outputs.py), every model and evaluation that each
# requested output needs. Input functions are named get_<what>, as in the Snakemake workflow template.

import os
from types import SimpleNamespace

import json

from pdd.fingerprint import fingerprint
from pdd.plan import config as plan
from pdd.plan import figure_jobs
from pdd.plan import outputs as registry
from pdd.plan import paths
from pdd.plan.checks import problems
from pdd.plan.jobs import attack_jobs

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
    "strong": fingerprint("pdd.evaluation.strong", "pdd.evaluation.mora", "pdd.evaluation.attacks", *JOB),
    "time_steps": fingerprint("pdd.step_timing", "pdd.evaluation.attacks", *JOB),
    "member_transfer": fingerprint("pdd.evaluation.member_transfer", *JOB),
    "gradcam": fingerprint("pdd.evaluation.figure1", "pdd.evaluation.figure_files", *JOB),
    "examples": fingerprint("pdd.evaluation.figure5", "pdd.evaluation.figure_files", *JOB),
}
OUTPUTS = registry.requested(config)
ATTACK_JOBS = attack_jobs(config)
MODEL_DIR = paths.MODEL_DIR
EVAL_DIR = paths.EVAL_DIR
FIGURE_DATA = paths.FIGURE_DATA.format(name="{name}")
TABLES = "results/tables"
FIGURES = "results/figures"
LOGS = "results/logs"
PAPER_RESULTS = os.path.join(workflow.basedir, "config", "paper_results.csv")
if os.path.exists("config/paper_results.csv") and os.path.samefile("config/paper_results.csv", PAPER_RESULTS):
    PAPER_RESULTS = (
        "config/paper_results.csv"  # run from the project folder: relative, so a moved project reruns nothing
    )


wildcard_constraints:
    dataset=r"[a-z0-9_]+",
    arch=r"[a-z0-9]+",
    K=r"\d+",
    method=r"[a-z_]+(-M\d+)?",
    seed=r"\d+",


def model(dataset, K, method, seed, arch=None):
    """Path of a trained ensemble (the defended architecture unless `arch` is given)."""
    return paths.model_path(config, dataset, K, method, seed, arch)


RUNTIME = plan.runtime(config)  # data root, device, threads, workers: the same for every job


def get_model_input(w):
    """What an evaluation job reads: the trained checkpoint, or an external model's weights and factory module."""
    return plan.external_inputs(config, w.method) or model(w.dataset, w.K, w.method, w.seed, w.arch)


def get_model_args(w, flag="--model"):
    """The evaluated ensemble's flags (`--model CHECKPOINT` or an external model's factory options), quoted."""
    return plan.model_args(config, w.dataset, int(w.K), w.method, int(w.seed), w.arch, flag)


def get_surrogate(threat, dataset, K, method, seed):
    """The surrogate ensemble of a black-box threat: Type I a fixed baseline, Type II the target's method."""
    return plan.surrogate_path(config, threat, dataset, int(K), method, int(seed))


def get_train_params(w):
    """Every setting that determines the trained ensemble (a change reruns it), quoted (pdd.plan.config)."""
    return plan.train_args(config, w.dataset, int(w.K), w.method, int(w.seed), w.arch)


def get_train_start(w):
    """The trained ensemble a method starts from (DVERGE: the baseline of the same dataset, K, arch, seed)."""
    start = plan.train_start(config, w.dataset, int(w.K), w.method, int(w.seed), w.arch)
    return [start] if start else []


def get_train_code(w):
    """The code a training job runs: the package's, and a user method's own source files (pdd.plan.config)."""
    return CODE["train"] + plan.method_code(config, [w.method])


def get_timing_code(w):
    """The code the timing job runs: the package's, and the timed user methods' own source files."""
    return CODE["time_steps"] + plan.method_code(config, plan.timing_methods(config))


def get_timing_args(w):
    """The interleaved step timing's flags: the timing table's methods, each with its own config settings."""
    return plan.timing_args(config, int(w.K), w.arch)


def model_fields(w):
    """The fields of an attack job's `model` wildcard ("dataset/arch/K3/method/seed0"), as attributes."""
    return SimpleNamespace(**paths.parse_path(f"results/models/{w.model}/ensemble.pt"))


def attack_job_inputs(group):
    """An attack job's inputs: the evaluated model; for a transfer job also the threat's surrogate."""

    def inputs(w):
        m = model_fields(w)
        found = {"model": get_model_input(m)}
        if group.kind == "transfer":
            found["surrogate"] = get_surrogate(group.folder, m.dataset, m.K, m.method, m.seed)
        return found

    return inputs


def attack_job_command(group):
    """`attack --model ...` or `transfer --surrogate ... --target ... --threat ...` of an attack job, quoted."""

    def command(w):
        m = model_fields(w)
        if group.kind == "whitebox":
            return f"attack {get_model_args(m)}"
        surrogate = get_surrogate(group.folder, m.dataset, m.K, m.method, m.seed)
        return (
            f"transfer --surrogate {plan.quoted([surrogate])} {get_model_args(m, '--target')} --threat {group.folder}"
        )

    return command


def attack_job_args(group):
    """An attack job's flags: each attack with its parameters, the protocol, the image count."""
    return lambda w: plan.attack_job_args(config, group.kind, group.folder, model_fields(w).dataset, group.attacks)


def get_member_transfer_args(w):
    """Flags of the member-transfer job."""
    return plan.member_transfer_args(config)


def get_strong_args(w):
    """Flags of the strong evaluation of one dataset's ensembles, at L-inf (folder 'strong') or its L2 twin
    ('strong_l2')."""
    return plan.strong_args(config, w.dataset, paths.STRONG_NORMS[w.strong])


def get_figure_models(w):
    """The checkpoints a figure's own evaluation job reads: each method's ensemble of output `w.name`."""
    return list(figure_jobs.figure_models(config, w.name).values())


def get_gradcam_args(w):
    """Flags of Figure 1's Grad-CAM job for output `w.name` (pdd.plan.figure_jobs)."""
    return figure_jobs.gradcam_args(config, w.name)


def get_examples_args(w):
    """Flags of Figure 5's examples job for output `w.name` (pdd.plan.figure_jobs)."""
    return figure_jobs.examples_args(config, w.name)


def get_diversity_args(w):
    """Flags of the diversity job (image subset)."""
    return plan.diversity_args(config)


def get_output_code(w):
    """Fingerprint of the code that builds output `w.name` (its builder module and what that imports)."""
    return fingerprint(registry.OUTPUTS[w.name].builder.split(":")[0])


def get_output_inputs(w):
    """Every file output `w.name` is built from (pdd.plan.outputs.inputs; the cost table: the jobs-per-output file,
    which rule jobs_per_output writes once every other output is built)."""
    if "jobs" in registry.OUTPUTS[w.name].needs:
        return [paths.JOBS_PER_OUTPUT]
    return registry.inputs(config, w.name)


def cost_output():
    """The name of the requested cost table (the output that needs every job)."""
    return next(name for name in OUTPUTS if "jobs" in registry.OUTPUTS[name].needs)


def get_cost_outputs(w):
    """One file of every requested output but the cost table: once they exist, every job has run, and
    jobs_per_output reads each one's jobs from Snakemake's DAG (pdd.plan.dag)."""
    return {name: registry.main_file(name) for name in OUTPUTS if name != cost_output()}


def get_cost_args(w):
    """jobs_per_output's flags: the run's config (as JSON, so that Snakemake plans the same DAG) and the outputs."""
    outputs = [a for name, file in get_cost_outputs(w).items() for a in ("--output", f"{name}={file}")]
    return plan.quoted(["--config-json", json.dumps(plan.dag_config(config), sort_keys=True), *outputs])


def get_output_spec(w):
    """The output's config entry, completed with what its builder reads, as shell-quoted JSON (a change
    rebuilds the output)."""
    return plan.output_spec(config, w.name)
