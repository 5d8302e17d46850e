"""Where results live: the path of every model, evaluation, benchmark and cost record, and back from a path
to the fields it encodes (the workflow's outputs and the job lists read both directions)."""

from __future__ import annotations

MODEL_DIR = "results/models/{dataset}/{arch}/K{K}/{method}/seed{seed}"
EVAL_DIR = "results/eval/{dataset}/{arch}/K{K}/{method}/seed{seed}"
TIMING = "results/eval/{dataset}/{arch}/K{K}/timing/seed{seed}.json"
FIGURE_DATA = "results/figure_data/{name}"  # a figure's own evaluation job (gradcam, examples): <job>.json and .npz
JOBS_PER_OUTPUT = "results/benchmarks/jobs_per_output.json"  # the cost table's input: {output: benchmark files}
STRONG_NORMS = {"strong": "linf", "strong_l2": "l2"}  # the strong evaluation's folder of each threat model
ATTACK_SEP = "+"  # joins the attacks of one attack job in its benchmark and log names ("fgsm+pgd")
ATTACK_RULES = ("whitebox", "transfer")  # the rule kinds whose jobs run several attacks (pdd.plan.jobs.AttackJobs)
OTHER_SUITES = ("diversity", "strong", "strong_l2", "member_transfer")  # evaluation folders no attack job writes


def model_path(config: dict, dataset: str, k: int, method: str, seed: int, arch: str | None = None) -> str:
    """Path of a trained ensemble (the defended architecture unless `arch` is given)."""
    return f"{MODEL_DIR}/ensemble.pt".format(dataset=dataset, arch=arch or config["model"]["arch"], K=k,
                                             method=method, seed=seed)


def eval_path(config: dict, kind: str, dataset: str, k: int, method: str, seed: int, file: str) -> str:
    """Path of one evaluation of a defended ensemble: kind is an attack suite, a threat, 'diversity' or 'strong'."""
    base = EVAL_DIR.format(dataset=dataset, arch=config["model"]["arch"], K=k, method=method, seed=seed)
    return f"{base}/{kind}/{file}"


def parse_path(path: str) -> dict:
    """The fields of a result path (the inverse of the layout above): dataset; for models and evaluations also
    arch, K, method (not for the timing file), seed; for evaluations `suite` (an attack suite, a threat,
    'diversity', 'strong', 'member_transfer') and `attack` (the file's stem); for a figure's own evaluation job
    the `output` it serves and the `job`."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "results":
        raise ValueError(f"not a result path: {path!r}")
    if parts[1] == "data":
        return {"dataset": parts[2].removesuffix(".json")}
    if parts[1] == "figure_data":  # a figure's own evaluation job: the output it serves
        return {"output": parts[2], "job": parts[3].rsplit(".", 1)[0]}
    found = {"dataset": parts[2], "arch": parts[3], "K": int(parts[4][1:])}
    if parts[1] == "eval" and parts[5] == "timing":
        return {**found, "seed": int(parts[6].removeprefix("seed").removesuffix(".json"))}
    found.update(method=parts[5], seed=int(parts[6][4:]))
    if parts[1] == "models":
        return found
    return {**found, "suite": parts[7], "attack": parts[8].rsplit(".", 1)[0]}


def benchmark(rule: str, path: str) -> str:
    """Snakemake benchmark file of the job of `rule` that writes `path` (see the rules' `benchmark:`)."""
    return f"results/benchmarks/{rule}/{path.removeprefix('results/')}.tsv"


def job_of(benchmark_file: str) -> tuple[str, str]:
    """(rule, main output) of a benchmark file: the inverse of `benchmark`."""
    rule, rest = benchmark_file.removeprefix("results/benchmarks/").split("/", 1)
    return rule, "results/" + rest.removesuffix(".tsv")


def cost_sources(rule: str, path: str) -> list[str]:
    """The files holding a job's own cost record (image-passes, GPU memory): its result, or training's cost.json."""
    if rule == "train":
        return [path.replace("ensemble.pt", "cost.json")]
    if rule == "diversity":
        return [path.replace("per_image.csv", "entropy.json")]
    if rule in ATTACK_RULES:  # one file per attack of the job, each with that attack's cost record
        folder, stem = path.removesuffix(".json").rsplit("/", 1)
        return [f"{folder}/{attack}.json" for attack in stem.split(ATTACK_SEP)]
    return [] if rule == "prepare_data" else [path]
