"""Shared fixtures: the repository paths and a tiny workflow config derived from the demo."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

# One torch thread in the test process: the tests' models are tiny, and on a shared 2-core machine thread
# hand-offs cost more than they give (a tiny forward + backward measured 0.02 s on one thread, 1.5 s on two).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    """Back to one thread after every test: in-process CLI calls (`--threads`) may have changed it."""
    yield
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"


def tiny_config() -> dict:
    """The demo config cut down to minutes: K=2, two epochs, 40 images, one parameter per attack, a short
    strong evaluation."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["datasets"]["digits"]["epochs"] = 2
    cfg["model"]["width"] = 4
    cfg["surrogates"]["oblivious"]["width"] = 2
    cfg["surrogates"]["adaptive"]["width"] = 2
    cfg["pdd"]["intervals"] = {2: 5}
    cfg["evaluation"].update(num_images=40, cw={"confidence": 0.01, "learning_rate": 0.01, "max_iter": 2,
                                                "binary_search_steps": 1})
    cfg["attacks"] = {"digits": {"fgsm": [0.1], "pgd": [0.3], "cw": [0.1]}}
    cfg["tables"] = {
        "table1_entropy": {"datasets": ["digits"], "K": [2], "methods": ["baseline", "pdd"]},
        "table2_whitebox_k3": {"datasets": ["digits"], "K": [2], "methods": ["baseline", "pdd"],
                               "reference": {"digits": "fashion_mnist"}},
        "table4_blackbox": {"datasets": ["digits"], "K": [2], "methods": ["baseline"],
                            "attacks": {"fgsm": [0.1]}},
        "table5_ablation": {"datasets": ["digits"], "K": [2], "methods": ["pdd"], "attacks": {"pgd": [0.3]}},
        "table6_adversarial_training": {"datasets": ["digits"], "K": [2], "methods": ["advt_fgsm"],
                                        "attacks": {"fgsm": [0.1]}},
        "timing": {"datasets": ["digits"], "K": [2], "methods": ["baseline", "pdd", "gal"]},
        "table_strong_evaluation": {"datasets": ["digits"], "K": [2], "methods": ["baseline", "pdd"],
                                    "reference": {"digits": "fashion_mnist"}},
        "table_stronger_attacks": {"datasets": ["digits"], "K": [2], "methods": ["baseline", "pdd"],
                                   "attacks": {"pgd": [0.3]}, "protocol": {"steps": 15}},
        "table_figure1_distance": {"datasets": ["digits"], "K": [2], "methods": ["baseline", "pdd"], "image": 0,
                                   "num_images": 20},
        "table_ensemble_defences": {"datasets": ["digits"], "K": [2], "methods": ["baseline", "gal", "dverge", "trs"]},
        "cost": {},
    }
    # Strong evaluation at the white-box PGD eps, on the same 40 images, with every attack a few steps long.
    cfg["strong_evaluation"].update(num_images=40, eps={"digits": [0.3]}, apgd={"iterations": 5, "restarts": 1,
                                                                               "targets": 2},
                                    pgd={"steps": [10, 20], "restarts": 2}, transfer_steps=5,
                                    mora={"iterations": 5, "mixes": [0, 1]}, square={"queries": 20})
    cfg["strong_evaluation"]["diagnostics"].update(steps=20)
    two = {"dataset": "digits", "K": 2, "methods": ["baseline", "pdd"]}
    cfg["figures"] = {
        "figure2_discrimination": {**two, "num_images": 50},
        "figure3_gradient_angles": {**two, "num_images": 50},
        "figure4_pgd_strength": {**two, "attacks": {"pgd": [0.1, 0.3], "pgd_l2": [1.0]}},
        "figure1_gradcam": {**two, "image": 0},
        "figure5_examples": {**two, "image": 0, "eps": {"pgd": 0.1, "pgd_l2": 1.0}},
        "figure_intervals": {"dataset": "digits", "K": 2, "intervals": [3, 5], "attacks": {"pgd": [0.3]}},
        "figure_member_transfer": {"dataset": "digits", "K": 2, "methods": ["baseline", "dverge"], "eps": 0.3},
    }
    cfg["timing"] = {"steps": 3, "warmup": 1, "batch_size": 32}
    return cfg


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the workflow in `workdir` (outputs land there), capturing its output."""
    cmd = ["snakemake", "-s", str(SNAKEFILE), "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture
def tiny_workdir(tmp_path: Path) -> Path:
    """A working directory and a data root whose names hold a space and a `;`: every path reaches the jobs'
    shell commands quoted (an unquoted one would split, or run `x` as a command)."""
    work = tmp_path / "work dir"
    work.mkdir()
    cfg = tiny_config()
    cfg["data_root"] = "my data;x"
    (work / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return work
