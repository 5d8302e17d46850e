"""The paper config's dry run plans every attack and diversity job of the tables and figures."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO, snakemake

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture(scope="module")
def planned(tmp_path_factory) -> str:
    workdir = tmp_path_factory.mktemp("paper")
    return snakemake(workdir, "all", "-n", "-p", "--configfile", str(REPO / "config" / "config.yaml")).stdout


def _evaluations(planned: str) -> set[tuple[str, ...]]:
    return set(re.findall(r"results/eval/(\w+)/resnet18/K(\d+)/(\w+)/seed0/(\w+)/(\w+)\.json", planned))


def test_white_box_attacks_of_tables_2_and_3(planned: str) -> None:
    jobs = _evaluations(planned)
    for table, ks in (("table2_whitebox_k3", ["3"]), ("table3_whitebox_k5", ["5"])):
        spec = CONFIG["tables"][table]
        for dataset in spec["datasets"]:
            for k in ks:
                for method in spec["methods"]:
                    assert (dataset, k, method, "whitebox", "none") in jobs
                    for attack in CONFIG["attacks"][dataset]:
                        assert (dataset, k, method, "whitebox", attack) in jobs, (dataset, k, method, attack)


def test_every_attack_parameter_reaches_its_job(planned: str) -> None:
    """The C&W jobs of CIFAR-100 carry the paper's settings and the table's constant: 1000 iterations in the
    white-box suite, 2000 in the stronger-attack table's own suite."""
    cw = [line for line in planned.splitlines()
          if "pdd attack" in line and "--attack cw=" in line and "cifar100" in line]
    stronger = [c for c in cw if "/table_stronger_attacks/cw.json" in c]
    whitebox = [c for c in cw if "/whitebox/cw.json" in c]
    assert whitebox and stronger and len(whitebox) + len(stronger) == len(cw)
    assert all("--cw-max-iter 1000" in c and "--cw-binary-search-steps 5" in c and "--attack cw=0.01 " in c
               for c in whitebox)
    assert all("--cw-max-iter 2000" in c and "--steps 30" in c and "--attack cw=0.01 " in c for c in stronger)
    pgd = [line for line in planned.splitlines()
           if "--attack pgd=" in line and "fashion_mnist" in line and "/whitebox/pgd.json" in line]
    assert pgd and all("--attack pgd=0.01,0.02 " in p and "--steps 10" in p for p in pgd)


def test_black_box_table_uses_both_surrogate_families(planned: str) -> None:
    spec = CONFIG["tables"]["table4_blackbox"]
    jobs = _evaluations(planned)
    transfers = [line for line in planned.splitlines() if "pdd transfer" in line]
    for method in spec["methods"]:
        for threat in ("blackbox_oblivious", "blackbox_adaptive"):
            for attack in spec["attacks"]:
                assert ("cifar100", "5", method, threat, attack) in jobs
        assert any(f"resnet34/K5/{method}/seed0/ensemble.pt" in t and "blackbox_adaptive" in t for t in transfers)
    oblivious = [t for t in transfers if "blackbox_oblivious" in t]
    assert oblivious and all("--surrogate results/models/cifar100/vgg16/K5/baseline/seed0/ensemble.pt" in t
                             for t in oblivious)


def test_figure_4_sweeps_and_diversity_jobs(planned: str) -> None:
    jobs = _evaluations(planned)
    fig = CONFIG["figures"]["figure4_pgd_strength"]
    for method in fig["methods"]:
        for attack in ("pgd", "pgd_l2"):
            assert (fig["dataset"], str(fig["K"]), method, "figure4_pgd_strength", attack) in jobs
    sweep = [line for line in planned.splitlines()
             if "figure4_pgd_strength/pgd_l2.json" in line and "pdd attack" in line]
    params = [re.search(r"--attack pgd_l2=([\d.,]+)", s) for s in sweep]
    assert sweep and all(p and {"0.1", "6.4"} <= set(p.group(1).split(",")) for p in params)
    diversity = set(re.findall(r"results/eval/(\w+)/resnet18/K(\d+)/(\w+)/seed0/diversity/entropy.json", planned))
    for dataset in CONFIG["tables"]["table1_entropy"]["datasets"]:
        for k in CONFIG["tables"]["table1_entropy"]["K"]:
            for method in CONFIG["tables"]["table1_entropy"]["methods"]:
                assert (dataset, str(k), method) in diversity


def test_ablation_and_adversarial_training_models(planned: str) -> None:
    models = set(re.findall(r"results/models/cifar100/resnet18/K3/(\w+)/seed0/ensemble.pt", planned))
    assert {"pdd", "deg", "pdd_deg", "advt_fgsm", "advt_fgsm_pdd", "advt_pgd", "advt_pgd_pdd"} <= models
    advt = [line for line in planned.splitlines() if "pdd train" in line and "--method advt_pgd_pdd" in line]
    assert advt and "--adv-eps 0.02 --adv-steps 10" in advt[0] and "--pdd-intervals 10" in advt[0]
