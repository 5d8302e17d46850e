"""Every table and figure the pipeline builds, declared once: its kind, title, what it needs and its builder.

The workflow (input functions, target rules), the config checks, the CLI (`pdd table` / `pdd figure`) and
the report captions all read `OUTPUTS`. Adding an output = one `Output` here + one builder + its config entry.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Callable

from pdd.plan.paths import FIGURE_DATA, TIMING, eval_path, model_path

THREATS = ("blackbox_oblivious", "blackbox_adaptive")
VARIANT = re.compile(r"(?P<base>[a-z_]+)-M(?P<intervals>\d+)")

# What an output can need, per defended ensemble (dataset, K, method, seed):
NEEDS = {
    "clean": "clean accuracy (the white-box job 'none')",
    "whitebox": "the dataset's white-box attacks (only those the output lists, if it has a list)",
    "own_attacks": "the output's own attack list, in jobs of its own (its `protocol` overrides apply)",
    "transfer": "the output's attacks crafted on both black-box surrogates (Type I and II)",
    "entropy": "the diversity job's ensemble record (eq. 5)",
    "per_image": "the diversity job's per-image CSV (L_F, S_b, S_w, gradient angle)",
    "strong": "the strong evaluation (L-inf)",
    "strong_l2": "the strong evaluation's L2 twin (the same attacks and checks at L2 budgets)",
    "train_log": "the training log",
    "gradcam": "Grad-CAM of the output's ensembles (one job per output: the image's maps; a table also the distance "
               "over the commonly correct test images)",
    "examples": "PGD examples of one test image crafted on each of the output's ensembles (one job per output)",
    "step_timing": "the interleaved training-step timing of the (dataset, K)",
    "member_transfer": "PGD crafted on each member, scored on every member (the output's `eps`)",
    "jobs": "every job of every other requested output: its benchmark file and its cost record",
    "whitebox_pgd": "the dataset's white-box PGD attacks only (L-inf 'pgd' and L2 'pgd_l2')",
    "stronger": "table_stronger_attacks' own attack jobs of the ensemble (when that table is requested)",
    "l2_twin": "the L2 strong evaluation of the ensemble (table_strong_evaluation_l2's files, when that is requested)",
}
# What an external model (your own, evaluated with our jobs, nothing trained) cannot give: these need a
# checkpoint of ours, a training run or a surrogate trained with the model's own method.
TRAINED_ONLY = ("transfer", "train_log", "gradcam", "examples", "step_timing", "member_transfer")
PER_OUTPUT = ("gradcam", "examples")  # needs served by one evaluation job of the whole output (pdd.plan.figure_jobs)
# Outputs whose files of an ensemble another output reads (need -> output).
BORROWED = {"stronger": "table_stronger_attacks", "l2_twin": "table_strong_evaluation_l2"}


@dataclass(frozen=True)
class Output:
    """One table or figure: how the workflow plans it and which function builds it."""

    name: str
    kind: str                          # "table" (csv + md) or "figure" (png)
    title: str                         # human title: the paper's caption where it has one
    needs: tuple[str, ...]             # keys of NEEDS
    builder: str                       # "module:function", called as f(inputs, spec, out_stem, paper_csv); writes
                                       # <out>.csv/.md/.tex (table) or <out>.png/.pdf (figure)
    paper_table: str | None = None     # `table` key of paper_results.csv
    own_attacks: bool = False          # its config entry must carry an `attacks` list
    follows: str | None = None         # a figure drawn from this table's config entry and ensembles
    only: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (need, methods): that need only for those methods
    reads: tuple[str, ...] = ()        # run-wide settings its builder reads from its spec: "pdd" (alpha, the
                                       # intervals), "standard" (the protocol's iteration counts); none else enter
    caption: str = ""

    def build(self) -> Callable:
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)

    def run(self, inputs: list[str], spec: dict, out: str, paper_csv: str) -> None:
        """Call the builder; one that takes `output` receives this entry (its title, caption), so no builder
        imports the registry that names it."""
        builder = self.build()
        extra = {"output": self} if "output" in inspect.signature(builder).parameters else {}
        builder(inputs, spec, out, paper_csv, **extra)


_ACC = ("Accuracy (%) over the test images the ensemble classifies correctly before the attack; ours first, "
        "the paper's in parentheses; ± = std over seeds.")

OUTPUTS: dict[str, Output] = {o.name: o for o in (
    Output("table1_entropy", "table", "Table 1: ambiguity entropy E of the ensembles' outputs (eq. 5)",
           ("entropy",), "pdd.reports.tables:build_paper_table", "table1",
           caption="Entropy E of eq. 5 over the test set; higher = members disagree more often."),
    Output("table2_whitebox_k3", "table", "Table 2: white-box attacks, K = 3", ("clean", "whitebox"),
           "pdd.reports.tables:build_paper_table", "table2", caption=_ACC),
    Output("table3_whitebox_k5", "table", "Table 3: white-box attacks, K = 5", ("clean", "whitebox"),
           "pdd.reports.tables:build_paper_table", "table3", caption=_ACC),
    Output("table4_blackbox", "table", "Table 4: black-box attacks (Type I oblivious, Type II adaptive)",
           ("clean", "transfer"), "pdd.reports.tables:build_paper_table", "table4", own_attacks=True,
           caption=_ACC + " Type I: crafted on a baseline VGG-16 ensemble; Type II: on a ResNet-34 ensemble "
                          "trained with the target's method."),
    Output("table5_ablation", "table", "Table 5: ablation of PDD and DEG", ("own_attacks",),
           "pdd.reports.tables:build_paper_table", "table5", own_attacks=True, caption=_ACC),
    Output("table6_adversarial_training", "table", "Table 6: adversarial training with and without PDD",
           ("clean", "own_attacks"), "pdd.reports.tables:build_paper_table", "table6", own_attacks=True, caption=_ACC),
    Output("timing", "table", "Training cost: seconds per training step and ratio to the baseline",
           ("step_timing", "train_log"), "pdd.reports.tables:build_timing_table", "timing",
           caption="Seconds per training step of each method, timed interleaved in one process (median), and "
                   "the ratio to the baseline; training-log seconds per epoch beside it; the paper's V100 "
                   "seconds per epoch."),
    Output("table_strong_evaluation", "table", "Honest robustness: the paper's PGD-10 beside a strong evaluation",
           ("strong",), "pdd.reports.strong_table:build",
           caption="Per ensemble and L-inf eps: the paper's protocol (PGD-10 on log(mean softmax), on the same "
                   "images) beside APGD-CE, APGD-DLR, APGD-T, MORA, Square and PGD with restarts; the worst case "
                   "counts an image as robust only if it survives every attack. Below: seven gradient-masking "
                   "diagnostics."),
    Output("table_strong_evaluation_l2", "table", "Honest robustness at L2: the paper's PGD-10 (L2) beside a "
           "strong L2 evaluation", ("strong_l2",), "pdd.reports.strong_table:build",
           caption="The L2 twin of table_strong_evaluation: per ensemble and L2 eps, PGD-10 (L2, the paper's Figure 4 "
                   "attack) beside APGD-CE, APGD-DLR, APGD-T, MORA, Square and PGD with restarts, all at L2; the "
                   "worst case and the same gradient-masking diagnostics."),
    Output("table_stronger_attacks", "table", "Stronger attacks: BIM / PGD at 30 iterations, C&W at 2000",
           ("clean", "whitebox", "own_attacks"), "pdd.reports.stronger_table:build_stronger_table", own_attacks=True,
           reads=("standard",),
           caption="Table 2's ensembles under the paper's iteration counts and the stronger ones of the section "
                   "'Increasing Attack Strength'; PDD+DEG's gain over the baseline and ADP, in points."),
    Output("table_figure1_distance", "table", "Figure 1's number: distance between the members' Grad-CAM centres",
           ("gradcam",), "pdd.reports.figure1:build_distance_table",
           caption="Mean pairwise Euclidean distance (pixels) between the centres of the members' Grad-CAM "
                   "pixels above 0.9, for the chosen image beside the paper's, and mean ± std over test images "
                   "classified correctly by every ensemble."),
    Output("figure1_gradcam", "figure", "Figure 1: Grad-CAM of each member", ("gradcam",),
           "pdd.reports.figure1:build_figure",
           caption="Grad-CAM of each member's true-class score on its last convolutional feature maps with "
                   "spatial extent, for one test image; rows: methods, columns: members."),
    Output("figure2_discrimination", "figure", "Figure 2: discrimination score L_F (eq. 6)", ("per_image",),
           "pdd.reports.figures:build_diversity_figure",
           caption="Per test image, L_F of eq. 6 between the members' activated penultimate units, one box per "
                   "method (outliers drawn), over the test images every method classifies correctly."),
    Output("figure3_gradient_angles", "figure", "Figure 3: angles between the members' input gradients",
           ("per_image",), "pdd.reports.figures:build_diversity_figure",
           caption="Per test image, the mean pairwise angle (degrees) between the members' input gradients of "
                   "their cross-entropy, one box per method (outliers drawn)."),
    Output("figure4_pgd_strength", "figure", "Figure 4: accuracy against the PGD budget", ("clean", "own_attacks"),
           "pdd.reports.figures:build_strength_figure", "figure5_text", own_attacks=True,
           caption="Accuracy (% of initially correct test images) under 10-step PGD against eps, L-inf and L2, "
                   "log2 axis; dotted: each method's clean accuracy; crosses: the paper's reported points."),
    Output("figure5_examples", "figure", "Figure 5: PGD examples on the baseline and PDD+DEG", ("examples",),
           "pdd.reports.figure5:build_figure",
           caption="One test image and its PGD examples at L-inf and L2 budgets, crafted on each ensemble, with "
                   "the ensemble's prediction."),
    Output("figure_strong_steps", "figure", "Strong evaluation: accuracy against PGD steps", ("strong",),
           "pdd.reports.figures:build_strong_steps_figure", follows="table_strong_evaluation",
           caption="Accuracy against PGD steps per method; diamonds: restarts; dashed: the worst case."),
    Output("table_ensemble_defences", "table", "Beyond the paper: ensemble-diversity defences under one protocol",
           ("strong", "entropy", "per_image"), "pdd.reports.defences_table:build",
           caption="Every method trained with the same members, recipe and data: clean accuracy, the paper's PGD-10, "
                   "the strong evaluation's worst case and Type I transfer (on the same images), the ambiguity "
                   "entropy E (eq. 5) and the mean pairwise cosine between the members' input gradients."),
    Output("figure_member_transfer", "figure", "Transfer between members (DVERGE's diversity measure)",
           ("member_transfer",), "pdd.reports.member_transfer_figure:build",
           caption="Per method, the K x K matrix of fooling rates: PGD crafted on member i (row) scored on member j "
                   "(column), % of member j's correctly classified test images; low off-diagonal = diverse."),
    Output("cost", "table", "What the run cost: wall seconds, image-passes and peak memory per rule and output",
           ("jobs",), "pdd.reports.cost_table:build",
           caption="Every job of the requested outputs: Snakemake's benchmark (wall seconds, peak RSS) and the "
                   "job's own count of model image-passes (forward, backward) and peak GPU memory, summed per rule "
                   "and per output (an output's jobs include the trainings of the ensembles it reports)."),
    Output("figure_intervals", "figure", "The effect of M: PDD ensembles over the number of intervals",
           ("clean", "own_attacks", "per_image"), "pdd.reports.figures:build_intervals_figure", own_attacks=True,
           reads=("pdd",),
           caption="PDD ensembles trained with several M: between- and within-member scatter S_b, S_w and L_F "
                   "(eq. 6, means over test images), clean and PGD accuracy."),
    Output("table_claims", "table", "The paper's claims, one verdict each",
           ("clean", "whitebox_pgd", "strong", "entropy", "per_image", "stronger", "l2_twin"),
           "pdd.reports.claims_table:build",
           only=tuple((need, ("baseline", "adp", "deg", "pdd_deg"))
                      for need in ("clean", "whitebox_pgd", "strong", "stronger", "l2_twin"))
           + tuple((need, ("baseline", "adp", "pdd", "pdd_deg")) for need in ("entropy", "per_image")),
           caption="Each claim of the paper (PDD+DEG more robust than the baseline and ADP, DEG alone than the "
                   "baseline, the gain under stronger attacks, Table 1's entropy ordering) tested on the same images: "
                   "the paper's values, ours under the paper protocol and the strong worst case, the difference with "
                   "its 95% interval, the exact McNemar (or sign) test Holm-corrected across the table, and a "
                   "verdict: holds, reversed or not significant."),
)}


def tables_and_figures(kind: str) -> list[str]:
    return [name for name, o in OUTPUTS.items() if o.kind == kind]


def intervals_for(config: dict, k: int) -> int | None:
    """PDD's number of intervals M for ensemble size K (YAML keys may be int or str)."""
    intervals = config["pdd"]["intervals"]
    return intervals.get(k, intervals.get(str(k)))


def variant(method: str) -> tuple[str, int | None]:
    """('pdd', 20) for 'pdd-M20' (a PDD ensemble with its own M); (method, None) otherwise."""
    match = VARIANT.fullmatch(method)
    return (match["base"], int(match["intervals"])) if match else (method, None)


def requested(config: dict) -> dict[str, dict]:
    """Every requested output as {name: spec} with `datasets` and `K` lists (figures name one of each)."""
    found = {}
    for name, spec in config.get("tables", {}).items():
        found[name] = dict(spec)
    for name, spec in config.get("figures", {}).items():
        found[name] = {**spec, "datasets": [spec["dataset"]], "K": [spec["K"]]} if "dataset" in spec else dict(spec)
    for name, o in OUTPUTS.items():
        if o.follows and o.follows in found and name not in found:
            found[name] = found[o.follows]
    return found


def methods(config: dict, name: str, spec: dict) -> list[str]:
    """The ensembles' method names: figure_intervals trains PDD at each M (the config's M keeps the name 'pdd')."""
    if name != "figure_intervals":
        return list(spec["methods"])
    default = intervals_for(config, spec["K"][0])
    return ["pdd" if m == default else f"pdd-M{m}" for m in spec["intervals"]]


# table_claims' primary claims (Holm runs over these rows only) unless its config entry names its own `primary`.
DEFAULT_PRIMARY = ({"method": "pdd_deg", "versus": "baseline", "evidence": "worst case L-inf"},
                   {"method": "pdd_deg", "versus": "baseline", "evidence": "worst case L2"})
# What each piece of evidence of table_claims reads (its per-output `seeds` reach only the primary claims' needs).
CLAIM_NEEDS = {"paper protocol": ("clean", "whitebox_pgd"), "worst case L-inf": ("clean", "strong"),
               "worst case L2": ("clean", "l2_twin"), "stronger attack": ("clean", "stronger"),
               "entropy": ("entropy", "per_image")}


def primary_claims(spec: dict) -> list[dict]:
    """table_claims' primary claims: {method, versus, evidence} each."""
    return [dict(p) for p in spec.get("primary", DEFAULT_PRIMARY)]


def output_seeds(config: dict, spec: dict) -> list[int]:
    """The seeds an output asks for: its own `seeds`, else the config's."""
    return list(spec.get("seeds", config["seeds"]))


def seed_wanted(config: dict, name: str, method: str, need: str, seed: int) -> bool:
    """Whether output `name` reads `need` of `method` at `seed`. An output's own `seeds` replace the config's;
    table_claims' own seeds reach only its primary claims' methods and evidence (the rest keep the config's)."""
    spec = requested(config)[name]
    if name != "table_claims" or "seeds" not in spec:
        return seed in output_seeds(config, spec)
    if seed in config["seeds"]:
        return True
    return seed in spec["seeds"] and any(method in (p["method"], p["versus"]) and need in CLAIM_NEEDS[p["evidence"]]
                                         for p in primary_claims(spec))


def ensembles(config: dict, name: str) -> list[tuple[str, int, str, int]]:
    """(dataset, K, method, seed) of every defended ensemble output `name` reports (any of its needs)."""
    spec = requested(config)[name]
    if "datasets" not in spec:  # the cost table: no ensembles of its own
        return []
    seeds = sorted(set(output_seeds(config, spec)) | (set(config["seeds"]) if name == "table_claims" else set()))
    return [(d, k, m, s) for d in spec["datasets"] for k in spec["K"] for m in methods(config, name, spec)
            for s in seeds if any(seed_wanted(config, name, m, need, s) for need in OUTPUTS[name].needs)]


def borrowed_files(files: list[str], base: str) -> list[str]:
    """The lending output's files of the ensemble at `base` (its folder, ending in /seed<N>); where the lender
    does not run that seed, its files of the same ensemble at its first seed, moved to this seed (the same jobs,
    one more seed)."""
    mine = [f for f in files if f.startswith(base + "/")]
    if mine:
        return mine
    stem = base.rsplit("/seed", 1)[0]
    others = [f for f in files if f.startswith(stem + "/seed")]
    if not others:
        return []
    first = others[0][len(stem) + 1:].split("/", 1)[0]
    return [f"{base}/{f.split('/', len(base.split('/')))[-1]}" for f in others if f.startswith(f"{stem}/{first}/")]


def dataset_attacks(config: dict, dataset: str) -> dict[str, list[float]]:
    return config["attacks"].get(dataset, {})


def inputs(config: dict, name: str) -> list[str]:
    """Every file output `name` is built from, in a stable order without repeats."""
    output, spec = OUTPUTS[name], requested(config)[name]
    files: list[str] = []
    borrowed = {need: inputs(config, other) for need, other in BORROWED.items()
                if need in output.needs and other in OUTPUTS and other in requested(config)}
    for dataset, k, method, seed in ensembles(config, name):
        def ev(kind: str, file: str) -> str:
            return eval_path(config, kind, dataset, k, method, seed, file)

        limited = dict(output.only)
        for need in output.needs:
            if need in limited and method not in limited[need] or not seed_wanted(config, name, method, need, seed):
                continue
            if need == "clean":
                files.append(ev("whitebox", "none.json"))
            elif need == "whitebox":
                listed = spec.get("attacks")
                files += [ev("whitebox", f"{a}.json") for a in dataset_attacks(config, dataset)
                          if listed is None or a in listed]
            elif need == "own_attacks":
                files += [ev(name, f"{a}.json") for a in spec["attacks"]]
            elif need == "transfer":
                files += [ev(t, f"{a}.json") for t in THREATS for a in spec["attacks"]]
            elif need == "entropy":
                files.append(ev("diversity", "entropy.json"))
            elif need == "per_image":
                files.append(ev("diversity", "per_image.csv"))
            elif need in ("strong", "strong_l2"):
                files.append(ev(need, "evaluation.json"))
            elif need == "train_log":
                files.append(model_path(config, dataset, k, method, seed).replace("ensemble.pt", "train_log.csv"))
            elif need in PER_OUTPUT:
                continue  # not per ensemble: the output's own evaluation job, below
            elif need == "member_transfer":
                files.append(ev("member_transfer", "pgd.json"))
            elif need == "whitebox_pgd":
                files += [ev("whitebox", f"{a}.json") for a in dataset_attacks(config, dataset)
                          if a in ("pgd", "pgd_l2")]
            elif need in BORROWED:  # the other output's files of this ensemble, if it is requested
                files += borrowed_files(borrowed.get(need, []), ev("", "").rstrip("/"))
            elif need == "jobs":
                continue  # not per ensemble: Snakemake's DAG (pdd.plan.dag.jobs_per_output)
            elif need == "step_timing":
                files.append(TIMING.format(dataset=dataset, arch=config["model"]["arch"], K=k, seed=seed))
            else:
                raise ValueError(f"output {name!r} needs unknown evaluation {need!r}; known: {sorted(NEEDS)}")
    for need in PER_OUTPUT:
        if need in output.needs:
            record = f"{FIGURE_DATA.format(name=name)}/{need}.json"
            files += [record, record.removesuffix(".json") + ".npz"]
    return list(dict.fromkeys(files))  # "jobs" (the cost table) reads JOBS_PER_OUTPUT (pdd.plan.dag)


def suite_attacks(config: dict, suite: str, dataset: str) -> dict[str, list[float]]:
    """{attack: [params]} of an attack suite: the dataset's list ('whitebox') or an output's own list."""
    return dataset_attacks(config, dataset) if suite == "whitebox" else requested(config)[suite]["attacks"]


def main_file(name: str) -> str:
    """One file of output `name` (its CSV or PNG): the file Snakemake's DAG knows the output's job by."""
    return f"results/tables/{name}.csv" if OUTPUTS[name].kind == "table" else f"results/figures/{name}.png"


def targets(config: dict, kind: str) -> list[str]:
    """The files of every requested output of `kind` ('table': csv, md, tex; 'figure': png, pdf)."""
    exts = ("csv", "md", "tex") if kind == "table" else ("png", "pdf")
    folder = "results/tables" if kind == "table" else "results/figures"
    return [f"{folder}/{name}.{ext}" for name in requested(config) if OUTPUTS[name].kind == kind for ext in exts]
