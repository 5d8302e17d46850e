"""An external model in the workflow: listed under `external`, named in a table, evaluated beside the paper's
methods with the same protocol; the same weights give the same numbers as the pipeline's own checkpoint."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from pdd.models import load_ensemble

from conftest import REPO, SNAKEFILE, tiny_config

pytestmark = pytest.mark.slow


def _run(work: Path, cfg: dict) -> None:
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(["snakemake", "-s", str(SNAKEFILE), "--cores", "2", "all_tables", "--configfile", "c.yaml"],
                          cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_external_model_beside_the_methods(tmp_path: Path) -> None:
    cfg = tiny_config()
    cfg["attacks"] = {"digits": {"pgd": [0.1]}}
    cfg["tables"] = {"table2_whitebox_k3": {"datasets": ["digits"], "K": [2], "methods": ["baseline"]}}
    cfg.pop("figures")
    _run(tmp_path, cfg)  # trains the baseline and attacks it
    model = load_ensemble(tmp_path / "results/models/digits/resnet18/K2/baseline/seed0/ensemble.pt")
    torch.save(model.state_dict(), tmp_path / "mine.pt")  # the same weights, as a user's state_dict

    cfg["external"] = {"mine": {"factory": "external_models:pdd_ensemble", "weights": "mine.pt",
                                "source": str(REPO / "tests" / "external_models.py")}}
    cfg["tables"]["table2_whitebox_k3"]["methods"] = ["baseline", "mine"]
    _run(tmp_path, cfg)
    table = pd.read_csv(tmp_path / "results/tables/table2_whitebox_k3.csv")
    values = table.set_index(["attack", "param", "method"])["value"].unstack("method")
    assert set(values.columns) == {"baseline", "mine"} and len(values) == 2  # clean and PGD 0.1
    assert (values["mine"] == values["baseline"]).all()
    assert not (tmp_path / "results/models/digits/resnet18/K2/mine").exists()  # nothing trained for it
