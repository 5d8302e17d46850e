"""The Snakemake workflow: config validation and the paper config's DAG (tiny end-to-end run: test_end_to_end.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, snakemake


def _dry_run(workdir: Path, config: Path, *targets: str) -> str:
    return snakemake(workdir, *(targets or ("all_tables",)), "-n", "-p", "--configfile", str(config)).stdout


def _jobs(dry_run_stdout: str) -> dict[str, int]:
    """Job counts per rule from the dry run's 'Job stats' table."""
    stats = dry_run_stdout.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def test_paper_config_plans_every_training_job(tmp_path: Path) -> None:
    out = _dry_run(tmp_path, REPO / "config" / "config.yaml")
    models = set(re.findall(r"results/models/(\w+)/(\w+)/K(\d+)/([\w-]+)/seed0/ensemble.pt", out))
    # Table 2: every dataset at K=3 with the three compared methods.
    for dataset in ("fashion_mnist", "cifar100", "tiny_imagenet"):
        for method in ("baseline", "adp", "pdd_deg"):
            assert (dataset, "resnet18", "3", method) in models
    # Table 3 (K=5), Table 5 ablation and timing on CIFAR-100, and both surrogate families of Table 4.
    for method in ("baseline", "adp", "pdd_deg"):
        assert ("cifar100", "resnet18", "5", method) in models
        assert ("cifar100", "resnet34", "5", method) in models
    for method in ("pdd", "deg"):
        assert ("cifar100", "resnet18", "3", method) in models
    assert ("cifar100", "vgg16", "5", "baseline") in models
    assert _jobs(out)["train"] == len(models)
    assert "--epochs 150" in out and "--epochs 40" in out and "--epochs 100" in out


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["tables"]["timing"].update(K=[1]), "K"),
    (lambda c: c["tables"]["timing"].update(methods=["magic"]), "methods"),
    (lambda c: c["datasets"].update(mnist={"epochs": 1, "augment": False}), "mnist"),
    (lambda c: c["datasets"]["cifar100"].update(epochs=0), "epochs"),
    (lambda c: c["training"].update(batch_size=-64), "batch_size"),
    (lambda c: c["model"].update(arch="resnet50"), "arch"),
    (lambda c: c["pdd"]["intervals"].update({5: 4}), "pdd.intervals"),
    (lambda c: c["strong_evaluation"]["eps"].update(cifar100=[0.6]), "strong_evaluation.eps.cifar100"),
    (lambda c: c["strong_evaluation"]["pgd"].update(steps=[200, 10]), "strong_evaluation.pgd.steps"),
    (lambda c: c["strong_evaluation"]["diagnostics"].update(max_accuracy_pct=150), "max_accuracy_pct"),
    (lambda c: c.pop("strong_evaluation"), "strong_evaluation"),
    (lambda c: c["surrogates"]["oblivious"].update(arch="resnet18"), "surrogates.oblivious"),
    (lambda c: c["training"].update(lr=float("nan")), "training.lr: must be a finite number > 0, got NaN"),
    (lambda c: c.update(seed=c.pop("seeds")), "seed: unknown key; did you mean `seeds`?"),
])
def test_bad_config_is_rejected_before_any_job(tmp_path: Path, edit, key: str) -> None:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "all_tables", "-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
