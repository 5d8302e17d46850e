"""The one mapping from the config to every job's settings (pdd.plan.config)."""

from __future__ import annotations

import copy
import shlex

import pytest
import yaml
from click.testing import CliRunner

import pdd.step_timing
from pdd.cli import main
from pdd.methods import LossSettings, get_method
from pdd.plan import config as plan
from pdd.plan.outputs import ensembles, requested
from pdd.settings.timing import TimingSettings
from pdd.training import TrainConfig

from conftest import REPO

DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def test_train_config_reads_the_recipe_pdd_and_the_methods_own_settings() -> None:
    cfg = plan.train_config(DEMO, "digits", 5, "pdd_deg", 0)
    # demo.yaml by hand: digits 3 epochs, no augmentation; training lr 0.1 ... batch 128; width 8; M = 20 at K = 5
    assert (cfg.epochs, cfg.augment, cfg.lr, cfg.lr_min, cfg.batch_size, cfg.width) == (3, False, 0.1, 1e-4, 128, 8)
    assert (cfg.pdd_intervals, cfg.pdd_alpha, cfg.pdd_beta) == (20, 0.9, 0.1)
    assert cfg.loss_settings.deg_lambda == 0.01
    assert plan.train_config(DEMO, "digits", 3, "pdd-M40", 0).pdd_intervals == 40   # figure_intervals' variant
    advt = plan.train_config(DEMO, "digits", 3, "advt_fgsm", 0).loss_settings
    assert advt.adv_eps == 0.1 and advt.adv_steps == LossSettings.adv_steps         # fgsm has no steps key
    assert plan.train_config(DEMO, "digits", 3, "advt_pgd", 0).loss_settings.adv_steps == 3
    dverge = plan.train_config(DEMO, "digits", 3, "dverge", 0, "resnet18")
    assert dverge.init_from == "results/models/digits/resnet18/K3/baseline/seed0/ensemble.pt"


def test_absent_keys_take_the_dataclass_default_once() -> None:
    cfg = copy.deepcopy(DEMO)
    del cfg["pdd"]["alpha"], cfg["gal"], cfg["timing"]
    assert plan.train_config(cfg, "digits", 3, "pdd", 0).pdd_alpha == TrainConfig.pdd_alpha
    assert plan.loss_settings(cfg, ["gal"]).gal_lambda == LossSettings.gal_lambda
    assert plan.timing_settings(cfg).steps == TimingSettings.steps
    assert plan.timing_settings(cfg).batch_size == cfg["training"]["batch_size"]


def test_strong_and_attack_settings_map_every_key() -> None:
    s = plan.strong_settings(DEMO)
    assert (s.apgd_iterations, s.apgd_restarts, s.pgd_steps, s.pgd_restarts) == (8, 1, (10, 20), 2)
    assert (s.diagnostic_eps, s.diagnostic_max_accuracy, s.unbounded_eps, s.diagnostic_steps) == (0.5, 5.0, 1.0, 10)
    assert (s.norm, s.apgd_targets, s.mora_iterations, s.mora_mixes, s.square_queries) == (
        "linf", 3, 8, (0.0, 0.25, 0.5, 0.75, 1.0), 20)
    l2 = plan.strong_settings(DEMO, "l2")  # the L2 twin: its own diagnostic budgets, the rest shared
    assert (l2.norm, l2.diagnostic_eps, l2.unbounded_eps, l2.mora_iterations) == ("l2", 4.0, 1000.0, 8)
    assert plan.strong_eps(DEMO, "digits", "l2") == [0.5] and plan.strong_eps(DEMO, "digits") == [0.1]
    args = plan.strong_args(DEMO, "digits", "l2")
    assert "--norm l2" in args and "--eps 0.5" in args
    a = plan.attack_settings(DEMO, {"steps": 30, "cw_max_iter": 6})
    assert (a.steps, a.cw_max_iter, a.cw_binary_search_steps, a.jsma_theta) == (30, 6, 2, 0.1)


def _train_args(cfg: dict) -> dict[tuple, str]:
    jobs = {(d, k, m, s) for name in requested(cfg) for d, k, m, s in ensembles(cfg, name)}
    return {job: plan.train_args(cfg, job[0], job[1], job[2], job[3], "resnet18") for job in jobs}


def test_gal_lambda_reaches_exactly_the_gal_trainings_and_the_timing_job() -> None:
    changed = copy.deepcopy(DEMO)
    changed["gal"]["lambda"] = 0.25
    before, after = _train_args(DEMO), _train_args(changed)
    assert {job[2] for job in before if before[job] != after[job]} == {"gal"}  # Snakemake reruns what differs
    assert plan.timing_args(DEMO, 3, "resnet18") != plan.timing_args(changed, 3, "resnet18")

    seen = {}

    def record(methods, spec, pdd, settings, *args, **kwargs):
        seen.update(methods=methods, settings=settings)
        return {m: 0.01 for m in methods}

    args = shlex.split(plan.timing_args(changed, 3, "resnet18"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pdd.step_timing, "time_methods", record)
        result = CliRunner().invoke(main, ["time-steps", "--dataset", "digits", "--members", "3", *args,
                                           "--out", "/dev/null", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "gal" in seen["methods"]
    assert get_method("gal", seen["settings"]).settings.gal_lambda == 0.25  # the GAL step the timing job runs
    assert seen["settings"].trs_lamda == DEMO["trs"]["lamda"]
    assert seen["settings"].dverge_steps == DEMO["dverge"]["steps"]


def test_job_arguments_quote_user_paths() -> None:
    cfg = copy.deepcopy(DEMO)
    cfg["external"] = {"mine": {"factory": "m:build", "weights": "my weights; rm -rf x.pt"}}
    args = plan.model_args(cfg, "digits", 3, "mine", 0, "resnet18")
    assert shlex.split(args)[:4] == ["--factory", "m:build", "--weights", "my weights; rm -rf x.pt"]
    assert plan.as_args(TrainConfig("digits", "baseline", 3, augment=True), only=("augment", "lr")) == \
        ["--lr", "0.02", "--augment"]


@pytest.mark.parametrize("output, section", [("timing", "tables"), ("table4_blackbox", "tables"),
                                             ("figure1_gradcam", "figures"), ("figure5_examples", "figures"),
                                             ("figure_member_transfer", "figures"),
                                             ("table_figure1_distance", "tables")])
def test_external_models_are_refused_where_an_output_needs_training(output: str, section: str) -> None:
    from pdd.plan.checks import problems

    cfg = copy.deepcopy(DEMO)
    cfg["external"] = {"mine": {"factory": "m:build", "weights": "w.pt"}}
    cfg[section][output]["methods"] = [*cfg[section][output]["methods"], "mine"]
    found = problems(cfg)
    assert len(found) == 1 and found[0].startswith(f"{section}.{output}.methods: external model(s) ['mine']"), found
    cfg[section][output]["methods"].remove("mine")
    cfg["tables"]["table2_whitebox_k3"]["methods"].append("mine")  # evaluated like ours: fine
    assert problems(cfg) == []


def test_a_whitebox_table_refuses_parameters_it_would_not_show() -> None:
    """Table 2 shows the dataset's white-box attacks and picks them by name: `attacks: {fgsm: [0.2]}` was accepted
    while the table kept showing fgsm at the dataset's eps."""
    from pdd.plan.checks import problems

    cfg = copy.deepcopy(DEMO)
    table = cfg["tables"]["table2_whitebox_k3"]
    table["attacks"] = {"fgsm": []}  # a name: fine
    assert problems(cfg) == []
    table["attacks"] = {"fgsm": list(cfg["attacks"]["digits"]["fgsm"])[::-1]}  # the dataset's own eps: fine
    assert problems(cfg) == []
    table["attacks"] = {"fgsm": [0.2]}
    found = problems(cfg)
    assert len(found) == 1 and found[0].startswith("tables.table2_whitebox_k3.attacks.fgsm: [0.2] differs from "
                                                   "attacks.digits.fgsm"), found
    table["attacks"] = {"pgd_l2": [0.5]}
    assert problems(cfg) == ["tables.table2_whitebox_k3.attacks.pgd_l2: not among attacks.digits, so there is "
                             "nothing to show"]


def test_the_cost_tables_dag_config_leaves_out_the_throughput_options() -> None:
    """jobs_per_output replans the DAG from the config it is given: the throughput options (which plan nothing)
    are left out, so flipping training.fuse_members reruns no job at all."""
    flips = []
    for value in (True, False, None):
        cfg = copy.deepcopy(DEMO)
        if value is not None:
            cfg["training"]["fuse_members"] = value
            cfg["training"]["channels_last"] = value
        flips.append(plan.dag_config(cfg))
    assert flips[0] == flips[1] == flips[2] == {**DEMO, "training": DEMO["training"]}
    changed = copy.deepcopy(DEMO)
    changed["training"]["lr"] = 0.2
    assert plan.dag_config(changed) != flips[0]
