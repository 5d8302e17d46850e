"""The config's jobs, as Snakemake plans them, turned into rows: image-passes and FLOPs per group of jobs."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from pdd import data
from pdd.estimate.bench import Bench, strong_formula
from pdd.estimate.passes import CLEAN_ERROR, TEST_IMAGES, TRAIN_IMAGES, Passes
from pdd.evaluation.attacks import ATTACKS, AttackSettings
from pdd.plan import config as plan
from pdd.plan.dag import benchmarks, snakemake_dag
from pdd.plan.outputs import requested
from pdd.plan.paths import ATTACK_RULES, ATTACK_SEP, STRONG_NORMS, job_of, parse_path


@dataclass
class Row:
    """One group of identical jobs: how many, what one unit costs (measured), units per job, the arithmetic;
    `flops_per_job` is the FLOPs the same arithmetic gives from the FLOPs measured with the passes. An attack row
    counts the runs of one attack, and `job_ids` names the jobs they run in (a job runs several attacks)."""

    rule: str
    label: str
    jobs: int
    per_job: float
    arithmetic: str
    note: str = ""
    flops_per_job: float = 0.0
    saving_per_job: float = 0.0  # expected passes not spent on misclassified images (clean error x crafted passes)
    abort_flops_per_job: float = 0.0  # FLOPs C&W's early abort saves (the run without it: flops + this)
    job_ids: frozenset = frozenset()

    @property
    def total(self) -> float:
        return self.jobs * self.per_job

    @property
    def flops(self) -> float:
        return self.jobs * self.flops_per_job

    @property
    def saving(self) -> float:
        return self.jobs * self.saving_per_job


def sci(value: float) -> str:
    """A count as people write it: 240,000 below a million, 3.15e7 above."""
    if abs(value) < 1e6:
        return f"{value:,.0f}" if value == round(value) else f"{value:,.4g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{float(mantissa):.3g}e{int(exponent)}"


def jobs_of(config: dict) -> dict[str, list[dict]]:
    """Every job of the config's run that computes (has a benchmark file), as Snakemake plans it in the working
    directory (pdd.plan.dag), parsed, per rule."""
    with tempfile.TemporaryDirectory() as tmp:
        configfile = Path(tmp, "config.json")
        configfile.write_text(json.dumps(config))
        jobs = sorted(job_of(bench) for bench in benchmarks(snakemake_dag(configfile)))
    found: dict[str, list[dict]] = {}
    for rule, path in jobs:
        fields = parse_path(path)
        if rule in ATTACK_RULES:  # one entry per attack the job runs, each naming its job
            found.setdefault(rule, []).extend({**fields, "attack": attack, "job": path}
                                              for attack in fields["attack"].split(ATTACK_SEP))
        else:
            found.setdefault(rule, []).append(fields)
    return found


def job_count(rows: list[Row]) -> int:
    """Jobs behind `rows`: attack rows share jobs (their `job_ids`), the others count their own."""
    return len({j for r in rows for j in r.job_ids}) + sum(r.jobs for r in rows if not r.job_ids)


def group(items: Iterable[dict], keys: tuple[str, ...]) -> dict[tuple, int]:
    counted: dict[tuple, int] = {}
    for item in items:
        key = tuple(item.get(k) for k in keys)
        counted[key] = counted.get(key, 0) + 1
    return counted


def eval_images(config: dict, dataset: str, section: str = "evaluation") -> int:
    """Test images an evaluation job of `section` attacks (its num_images, at most the test set)."""
    n = plan.num_images(config, section)
    return min(n, TEST_IMAGES[dataset]) if n else TEST_IMAGES[dataset]


def train_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    rows = []
    for (dataset, arch, k, method), count in sorted(group(jobs, ("dataset", "arch", "K", "method")).items()):
        step, evaluation, how, _ = bench.train(dataset, arch, k, method)
        cfg = plan.train_config(config, dataset, k, method, 0, arch)
        batch, epochs, n_train, n_test = cfg.batch_size, cfg.epochs, TRAIN_IMAGES[dataset], TEST_IMAGES[dataset]
        per_epoch = n_train // batch * batch if n_train > batch else n_train
        per_job = epochs * (per_epoch * step.total + n_test * evaluation.total)
        flops = epochs * (per_epoch * step.flops + n_test * evaluation.flops)
        arithmetic = (f"{epochs} epochs x ({per_epoch:,} train images x {step.total:.4g} + {n_test:,} test images x "
                      f"{evaluation.total:.4g}) = {sci(per_job)}")
        note = "" if how == "measured" else how
        if step.extra:
            note += f" = {sci(epochs * per_epoch * step.extra)} per job"
        rows.append(Row("train", f"{dataset} {arch} K={k} {method}", count, per_job, arithmetic, note, flops))
    return rows


def attack_passes(bench: Bench, dataset: str, k: int, attack: str, param: float | None, settings: AttackSettings,
                  surrogate_arch: str | None = None) -> tuple[Passes, str, str]:
    """(passes per image of one attack run at `param`, its arithmetic, a note on data dependence)."""
    c, cost = bench.attack(dataset, k, attack, surrogate_arch), ATTACKS[attack].cost
    if cost == "fixed":
        return c["fixed"], f"{c['fixed'].total:.4g}", ""
    steps = settings.steps
    if cost == "per_step":
        return (c["a"] + c["per_step"] * steps,
                f"({c['a'].total:.4g} + {steps} steps x {c['per_step'].total:.4g})", "")
    if cost == "per_iteration":
        info = data.info(dataset)
        features = info.in_channels * info.image_size**2
        iterations = math.floor(param * features / 2) + 1
        return (c["a"] + c["per_iteration"] * iterations,
                f"({c['a'].total:.4g} + {iterations} iterations x {c['per_iteration'].total:.4g})",
                f"JSMA iterations = floor(gamma x {features:,} features / 2) + 1, the budget with two new features "
                "per iteration (fewer if the target is reached, more if theta re-picks a feature)")
    bss, iterations = settings.cw_binary_search_steps, settings.cw_max_iter
    rest = CW_ABORT_REST if settings.cw_abort_early else 1.0
    expected = iterations * rest
    shown = f"{iterations:,} iterations" + (f" x {rest:.3f} (early abort)" if rest < 1 else "")
    note = (f"C&W per iteration: {c['per_iteration'].backward:.4g} backward (2 class gradients) + "
            f"{c['per_iteration'].forward:.4g} forward measured (the line search's forwards are data-dependent)")
    if rest < 1:
        note += (f"; early abort: {rest:.1%} of the passes left, the largest share measured by "
                 f"`{CW_ABORT_MEASURED['command']}` ({CW_ABORT_MEASURED['measured']})")
    return (c["c0"] + (c["per_search"] + c["per_iteration"] * expected) * bss,
            f"({c['c0'].total:.4g} + {bss} x ({c['per_search'].total:.4g} + {shown} x "
            f"{c['per_iteration'].total:.4g}))", note)


def _cw_abort_rest() -> tuple[float, dict]:
    """The share of C&W's passes left with the early abort (evaluation.cw.abort_early): the largest on/off ratio
    that `benchmarks/bench_cw_abort.py` measured (cw_abort.json beside this module: command, date, passes)."""
    measured = json.loads((Path(__file__).parent / "cw_abort.json").read_text())
    return max(p["on"] / p["off"] for p in measured["passes"].values()), measured


CW_ABORT_REST, CW_ABORT_MEASURED = _cw_abort_rest()


def clean_saving(dataset: str, crafted_passes: float, scope: str = "") -> tuple[float, str]:
    """(expected passes saved per job, a note) when the share CLEAN_ERROR[dataset] of the images is not crafted on:
    `crafted_passes` = the job's passes that scale with the crafted images, at clean error 0."""
    if dataset not in CLEAN_ERROR:
        return 0.0, f"{dataset}: no clean error in the paper, no saving projected"
    e = CLEAN_ERROR[dataset]
    return e * crafted_passes, (f"misclassified images skipped: saves {e:.1%} (paper's baseline clean error) x "
                                f"{sci(round(crafted_passes))}{scope} = {sci(round(e * crafted_passes))} per job")


def attack_rows(bench: Bench, config: dict, rule: str, jobs: list[dict]) -> list[Row]:
    rows = []
    for (dataset, k, suite, attack), count in sorted(group(jobs, ("dataset", "K", "suite", "attack")).items()):
        job_ids = frozenset(j["job"] for j in jobs if (j["dataset"], j["K"], j["suite"], j["attack"]) ==
                            (dataset, k, suite, attack))
        if rule == "transfer":
            params = plan.transfer_params(config, attack)
            settings, surrogate_arch = plan.attack_settings(config), plan.surrogate_arch(config, suite)
        else:
            params = plan.suite_params(config, suite, dataset, attack)
            settings, surrogate_arch = plan.attack_settings(config, plan.suite_protocol(config, suite)), None
        n = eval_images(config, dataset)
        terms, per_job, flops, notes, crafted, aborted = [], 0.0, 0.0, [], 0.0, 0.0
        predict_ = bench.predict(dataset, k)
        for param in params or [None]:
            passes, text, note = attack_passes(bench, dataset, k, attack, param, settings, surrogate_arch)
            per_job += n * passes.total
            flops += n * passes.flops
            if attack == "cw" and settings.cw_abort_early:
                full = attack_passes(bench, dataset, k, attack, param, replace(settings, cw_abort_early=False),
                                     surrogate_arch)[0]
                aborted += n * (full.flops - passes.flops)
            crafted += n * (passes - predict_).total  # all but the clean classification of the N images
            terms.append(text)
            if note and note not in notes:
                notes.append(note)
        label = f"{dataset} K={k} {suite}/{attack}"
        if params:
            label += f" (params {', '.join(f'{p:g}' for p in params)})"
        arithmetic = f"{n:,} images x [{' + '.join(terms)}] = {sci(per_job)}"
        saving, note = clean_saving(dataset, crafted)
        rows.append(Row(rule, label, count, per_job, arithmetic, "; ".join([*notes, note]), flops, saving, aborted,
                        job_ids))
    return rows


def strong_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    """The strong evaluation (folder 'strong') and its L2 twin ('strong_l2'); the twin's passes are measured at
    L-inf: ART's and MORA's L2 steps run the same forward and backward passes."""
    rows = []
    for index, ((dataset, k, suite), count) in enumerate(sorted(group(jobs, ("dataset", "K", "suite")).items())):
        norm = STRONG_NORMS[suite]
        settings = plan.strong_settings(config, norm)
        blocks = bench.strong_blocks(dataset, k, check=bench.check_formula and index == 0)  # one check suffices
        classes = data.info(dataset).num_classes
        losses = 2 if classes >= 3 else 1
        eps_count = len(plan.strong_eps(config, dataset, norm))
        per_image = strong_formula(blocks, settings, eps_count, losses, classes)
        n = eval_images(config, dataset, "strong_evaluation")
        (pa, pb), (ta, tb), pr = blocks["pgd"], blocks["transfer"], blocks["predict"]
        c0, per_restart, per_iteration = blocks["apgd"]
        t0, per_target, t_iteration = blocks["apgd_t"]
        m0, per_mix, m_iteration = blocks["mora"]
        sq_a, sq_b = blocks["square"]
        arithmetic = (f"{n:,} images x {per_image.total:.5g} = {sci(n * per_image.total)}; per image: "
                      f"{pr.total:.3g} + {eps_count} eps x [PGD steps {list(settings.pgd_steps)} + "
                      f"{settings.pgd_restarts - 1} restarts x {settings.pgd_steps[-1]} (PGD(s) = {pa.total:.3g} + "
                      f"s x {pb.total:.3g}, + {pr.total:.3g} predict each) + {losses} APGD x ({c0.total:.3g} + "
                      f"{settings.apgd_restarts} restarts x ({per_restart.total:.3g} + {settings.apgd_iterations} "
                      f"iterations x {per_iteration.total:.3g}) + {pr.total:.3g}) + APGD-T ({t0.total:.3g} + "
                      f"{min(settings.apgd_targets, classes - 1)} targets x ({per_target.total:.3g} + "
                      f"{settings.apgd_iterations} x {t_iteration.total:.3g})) + MORA ({m0.total:.3g} + "
                      f"{len(settings.mora_mixes)} mixes x ({per_mix.total:.3g} + {settings.mora_iterations} x "
                      f"{m_iteration.total:.3g})) + Square ({sq_a.total:.3g} + {settings.square_queries} x "
                      f"{sq_b.total:.3g}) + 3 x {pr.total:.3g} + transfer ({ta.total:.3g} + "
                      f"{settings.transfer_steps} x {tb.total:.3g} + {pr.total:.3g})] + 2 diagnostics x "
                      f"(PGD({settings.diagnostic_steps}) + {pr.total:.3g}) + flags {blocks['flags'].total:.3g}")
        note = ("upper bound: every restart, target and mix on every image (they run only on images still "
                "unbroken)")
        if blocks["check"]:
            composed, direct = blocks["check"]
            note += (f"; the formula checked against evaluate() itself at 1-2 steps, restarts, targets, mixes and "
                     f"queries: {composed.total:.4g} composed vs {direct.total:.4g} measured per image")
        saving, saving_note = clean_saving(dataset, n * (per_image - pr - blocks["change"]).total,
                                           " (all but the clean classification and the determinism check)")
        rows.append(Row("strong", f"{dataset} K={k} {norm}", count, n * per_image.total, arithmetic,
                        f"{note}; {saving_note}", n * per_image.flops, saving))
    return rows


def diversity_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    rows = []
    for (dataset, k), count in sorted(group(jobs, ("dataset", "K")).items()):
        passes = bench.diversity(dataset, k)
        n = eval_images(config, dataset, "diversity")
        note = (f"outside the ledger: {n:,} x {passes.extra:.4g} = {sci(n * passes.extra)} feature passes per job "
                "(Ensemble.features for L_F, called outside forward)" if passes.extra else "")
        rows.append(Row("diversity", f"{dataset} K={k}", count, n * passes.total,
                        f"{n:,} images x {passes.total:.4g} = {sci(n * passes.total)}", note, n * passes.flops))
    return rows


def member_transfer_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    rows, steps = [], plan.attack_settings(config).steps
    eps = requested(config)["figure_member_transfer"]["eps"]
    for (dataset, k), count in sorted(group(jobs, ("dataset", "K")).items()):
        a, b = bench.member_transfer(dataset, k, eps)
        n = eval_images(config, dataset)
        per_image = a + b * steps
        rows.append(Row("member_transfer", f"{dataset} K={k}", count, n * per_image.total,
                        f"{n:,} images x ({a.total:.4g} + {steps} steps x {b.total:.4g}) = {sci(n * per_image.total)}",
                        f"each member's PGD runs the whole ensemble (Member.forward): {k} x {steps} steps; images no "
                        "member classifies correctly are skipped: saving not projected (the paper gives no member "
                        "error)", n * per_image.flops))
    return rows


def time_steps_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    rows = []
    t = plan.timing_settings(config)
    methods = plan.timing_methods(config)
    for (dataset, arch, k), count in sorted(group(jobs, ("dataset", "arch", "K")).items()):
        per_image = bench.time_steps(dataset, arch, k, list(methods))
        rounds = t.warmup + t.steps
        per_job = rounds * t.batch_size * per_image.total
        rows.append(Row("time_steps", f"{dataset} K={k} ({', '.join(methods)})", count, per_job,
                        f"({t.warmup} warm-up + {t.steps} timed) rounds x {t.batch_size} images x "
                        f"{per_image.total:.4g} (one step of each method) = {sci(per_job)}", "",
                        rounds * t.batch_size * per_image.flops))
    return rows
