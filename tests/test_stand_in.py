"""One stand-in dataset per run: `stand_in_for` is named once in the config and every table reads it."""

from __future__ import annotations

import json
import shlex

import yaml

from pdd.data import DATASETS
from pdd.plan.checks import problems, schema_problems
from pdd.plan.config import output_spec
from pdd.plan.outputs import OUTPUTS, requested

from conftest import REPO, tiny_config

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _spec(config: dict, name: str) -> dict:
    return json.loads(shlex.split(output_spec(config, name))[0])


def test_every_table_of_the_demo_gets_the_one_stand_in() -> None:
    """The demo's claims table and its Table 2 / strong table once said different things (CIFAR-100 vs
    Fashion-MNIST) for the same digits: now every table's spec carries the config's one mapping."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    assert config["stand_in_for"] == {"digits": "cifar100"}
    tables = [n for n in requested(config) if OUTPUTS[n].kind == "table"]
    assert {"table2_whitebox_k3", "table_strong_evaluation", "table_claims"} <= set(tables)
    assert {n: _spec(config, n)["reference"] for n in tables} == {n: {"digits": "cifar100"} for n in tables}


def test_a_changed_stand_in_reaches_every_table_and_no_figure() -> None:
    config = {**tiny_config(), "stand_in_for": {"digits": "fashion_mnist"}}
    for name in requested(config):
        spec = _spec(config, name)
        if OUTPUTS[name].kind == "table":
            assert spec["reference"] == {"digits": "fashion_mnist"}, name
        else:  # a figure draws the paper's points only on the paper's own dataset
            assert "reference" not in spec, name
    none = {**config, "stand_in_for": {}}
    assert all(_spec(none, n).get("reference", {}) == {} for n in requested(none))


def test_a_per_output_stand_in_is_refused_by_the_schema() -> None:
    """A table cannot name a stand-in of its own: the run's one value is `stand_in_for`."""
    config = tiny_config()
    config["tables"]["table2_whitebox_k3"]["reference"] = {"digits": "fashion_mnist"}
    found = schema_problems(config, SCHEMA)
    assert found and any("reference" in line for line in found), found
    assert schema_problems(tiny_config(), SCHEMA) == []


def test_an_unknown_stand_in_dataset_is_one_line() -> None:
    config = {**tiny_config(), "stand_in_for": {"digits": "cifar1000"}}
    assert [p for p in problems(config) if p.startswith("stand_in_for")] == [
        f"stand_in_for.digits: unknown dataset 'cifar1000'; known: {sorted(DATASETS)}"]
