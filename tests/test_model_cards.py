"""RobustBench-shaped results: `pdd.api.benchmark` (their arguments and return value, our strong worst case) and
the model cards in their `model_info` format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pdd.api import benchmark, evaluate
from pdd.data import get_dataset
from pdd.evaluation.attacks import select_images
from pdd.plan.cards import CARD, card_source, cards
from pdd.reports.model_cards import ROBUSTBENCH_FIELDS, card, card_name, threat_model, write_card

from conftest import REPO, tiny_config

FAST = {"apgd_iterations": 5, "apgd_restarts": 1, "pgd_steps": (5, 10), "pgd_restarts": 2, "transfer_steps": 5,
        "diagnostic_steps": 10, "apgd_targets": 2, "mora_iterations": 5, "mora_mixes": (0.0, 1.0),
        "square_queries": 20}


class NearestMean(nn.Module):
    """A nearest-class-mean classifier of the digits (logits x.m_c - |m_c|^2 / 2): a real, untrained model
    with ~90% clean accuracy that PGD can break, built in milliseconds."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        x, y = select_images(get_dataset("digits", "train", "unused"), None, 0)
        means = torch.stack([x[y == c].flatten(1).mean(0) for c in range(10)])
        self.register_buffer("means", means)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x.flatten(1) @ self.means.T - 0.5 * (self.means ** 2).sum(1))


def test_benchmark_returns_the_strong_evaluations_fractions(capsys, tmp_path: Path) -> None:
    model = NearestMean()
    clean, robust = benchmark(model, n_examples=60, dataset="digits", threat_model="Linf", eps=0.1, strong=FAST,
                              to_disk=True, model_name="ncm", cards_dir=str(tmp_path), log_path=str(tmp_path / "log"))
    records = evaluate(model, "digits", attacks={}, strong={"eps": [0.1], **FAST}, num_images=60)
    counts = {r["attack"]: r for r in records if r["param"] in (None, 0.1) and r["threat"] == "whitebox"}
    # Fractions of all 60 images, as RobustBench returns them (not % of the initially correct).
    assert clean == counts["none"]["n_clean_correct"] / 60 and robust == counts["worst_case"]["n_robust"] / 60
    assert 0.5 < clean <= 1 and 0 <= robust < clean  # ~90% clean; eps 0.1 breaks some images
    assert robust <= min(r["n_robust"] for r in counts.values()) / 60
    out = capsys.readouterr().out
    assert f"Clean accuracy: {100 * clean:.2f}%" in out and f"{100 * robust:.2f}%" in out
    assert (tmp_path / "log").read_text().splitlines() == out.splitlines()
    info = json.loads((tmp_path / "digits" / "Linf" / "ncm.json").read_text())
    assert float(info["clean_acc"]) == pytest.approx(100 * clean, abs=0.005)
    assert float(info["external"]) == pytest.approx(100 * robust, abs=0.005)
    assert info["number_forward_passes"] == 1 and info["eps"] == "0.1" and list(info)[0] == "link"
    assert info["name"] == "ncm"  # the user's model, named as the user named it (not "... reproduced")
    assert f"Model card: {tmp_path / 'digits' / 'Linf' / 'ncm.json'}" in out.splitlines()


def test_benchmark_at_l2_writes_an_l2_card(tmp_path: Path) -> None:
    """RobustBench's L2 threat model runs the L2 twin and files its card under L2 (it raised 'no L2 worst case'
    when the strong evaluation's records did not say their norm)."""
    clean, robust = benchmark(NearestMean(), n_examples=20, dataset="digits", threat_model="L2", eps=0.5,
                              strong=FAST, to_disk=True, model_name="ncm",
                              cards_dir=str(tmp_path))
    info = json.loads((tmp_path / "digits" / "L2" / "ncm.json").read_text())
    assert info["threat_model"] == "L2" and info["eps"] == "0.5" and 0 <= robust <= clean
    assert float(info["external"]) == pytest.approx(100 * robust, abs=0.005)


def test_benchmark_prints_the_masking_warnings(capsys) -> None:
    """Logits x 1e4 saturate the softmax: zero gradients almost everywhere, so PGD cannot reach the ball's edge
    and the large-eps check warns; benchmark must say so, not just return a high robust accuracy."""
    benchmark(NearestMean(scale=1e4), n_examples=40, dataset="digits", eps=0.1, strong=FAST)
    out = capsys.readouterr().out
    assert "WARNING: possible gradient masking: eps_growth" in out


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": None}, "`eps` must be specified"),
    ({"eps": math.nan}, "eps: must be a finite number"),
    ({"eps": math.inf}, "eps: must be a finite number"),
    ({"eps": 1.5}, "eps: must be"),
    ({"eps": 0.1, "threat_model": "linf"}, "RobustBench's names"),
    ({"eps": -1.0, "threat_model": "L2"}, "eps: must be"),
    ({"eps": 0.1, "n_examples": 0}, "n_examples"),
    ({"eps": 0.1, "to_disk": True}, "model_name"),
])
def test_benchmark_refuses_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        benchmark(NearestMean(), n_examples=kwargs.pop("n_examples", 10), **kwargs)


def _records(norm: str | None = None) -> list[dict]:
    """A strong evaluation's records of a K=3 ensemble on 10 images, 8 of them initially correct."""
    key = {"dataset": "digits", "K": 3, "method": "pdd_deg", "arch": "resnet18", "seed": 0, "model": "m.pt"}
    extra = {} if norm is None else {"norm": norm}

    def acc(attack: str, n_robust: int, threat: str = "whitebox", **more) -> dict:
        return {**key, **extra, "threat": threat, "attack": attack, "param": 0.1, "metric": "accuracy_pct",
                "value": 100 * n_robust / 8, "accuracy_all": 100 * n_robust / 10, "n_robust": n_robust,
                "n_clean_correct": 8, "n_images": 10, **more}

    return [
        {**key, "threat": "whitebox", "attack": "none", "param": None, "metric": "accuracy_pct", "value": 80.0,
         "accuracy_all": 80.0, "n_robust": 8, "n_clean_correct": 8, "n_images": 10},
        acc("pgd_10", 5, steps=10, restarts=1), acc("apgd_ce", 4, steps=100, restarts=1),
        acc("worst_case", 3, steps=None, restarts=None), acc("transfer", 6, threat="blackbox_oblivious"),
        {**key, **extra, "threat": "diagnostic", "attack": "eps_growth", "param": 0.5, "metric": "passed",
         "value": 1.0, "detail": "fine"},
        {**key, **extra, "threat": "diagnostic", "attack": "convergence", "param": None, "metric": "passed",
         "value": 0.0, "detail": "PGD-50 leaves more"},
        {**key, "threat": "cost", "attack": "strong", "param": None, "metric": "cost", "value": 3.0},
    ]


def test_card_has_robustbenchs_fields_and_hand_worked_numbers() -> None:
    info = card(_records(), 0.1, "Linf", width=8, source="e.json")
    assert list(info)[:len(ROBUSTBENCH_FIELDS)] == list(ROBUSTBENCH_FIELDS)
    # 8 of 10 clean -> "80.00"; worst case 3 of 10 -> "30.00" (3 of the 8 correct -> 37.50); PGD-10 5 of 10.
    assert (info["clean_acc"], info["external"], info["reported"]) == ("80.00", "30.00", "50.00")
    assert info["worst_case_of_correct"] == "37.50" and info["autoattack_acc"] is None
    assert info["number_forward_passes"] == 3 and info["architecture"] == "3 x resnet18 (width 8)"
    assert (info["K"], info["method"], info["seed"], info["eps"], info["dataset"]) == (3, "pdd_deg", 0, "0.1", "digits")
    assert [a["attack"] for a in info["attacks"]] == ["pgd_10", "apgd_ce", "transfer"]
    assert info["attacks"][2]["robust_acc"] == "60.00"
    assert info["masking_checks"]["convergence"]["passed"] is False and info["unreliable"] is True
    assert info["masking_checks_passed"] is False and "convergence" in info["footnote"]
    passing = [r for r in _records() if r["attack"] != "convergence"]
    assert card(passing, 0.1)["masking_checks_passed"] is True and card(passing, 0.1)["unreliable"] is False


def test_card_threat_comes_from_the_records_norm() -> None:
    assert threat_model({}) == "Linf" and threat_model({"norm": "l2"}) == "L2"
    l2 = _records("l2")
    assert card(l2, 0.1, "L2")["external"] == "30.00"
    with pytest.raises(ValueError, match="no Linf worst case"):
        card(l2, 0.1, "Linf")
    with pytest.raises(ValueError, match="eps evaluated"):
        card(_records(), 0.2, "Linf")
    with pytest.raises(ValueError, match="unknown norm"):
        threat_model({"norm": "l1"})


def test_write_card_reads_a_strong_evaluation_file(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(_records()))
    write_card(path, 0.1, "Linf", tmp_path / "card.json", width=4)
    assert json.loads((tmp_path / "card.json").read_text()) == card(_records(), 0.1, width=4, source=str(path))
    assert list(json.loads((tmp_path / "card.json").read_text()))[:len(ROBUSTBENCH_FIELDS)] == list(ROBUSTBENCH_FIELDS)


def test_workflow_plans_one_card_per_strongly_evaluated_ensemble_and_eps() -> None:
    cfg = tiny_config()
    cfg["strong_evaluation"]["eps"]["digits"] = [0.1, 0.3]
    found = cards(cfg)
    # table_strong_evaluation: baseline, pdd; table_ensemble_defences: baseline (again), gal, dverge, trs; 2 eps.
    methods = ["baseline", "pdd", "gal", "dverge", "trs"]
    assert sorted(found) == sorted(CARD.format(dataset="digits", threat_model="Linf", method=m, arch="resnet18", K=2,
                                               seed=0, eps=eps) for m in methods for eps in ("0.1", "0.3"))
    assert Path(found[0]).stem == card_name("baseline", "resnet18", 2, 0, 0.1)
    assert card_source("digits", "resnet18", 2, "pdd", 0, "Linf") == \
        "results/eval/digits/resnet18/K2/pdd/seed0/strong/evaluation.json"
    assert card_source("digits", "resnet18", 2, "pdd", 0, "L2") == \
        "results/eval/digits/resnet18/K2/pdd/seed0/strong_l2/evaluation.json"
    cfg["tables"]["table_strong_evaluation_l2"] = {"datasets": ["digits"], "K": [2], "methods": ["pdd"]}
    cfg["strong_evaluation"]["eps_l2"] = {"digits": [0.5]}
    assert CARD.format(dataset="digits", threat_model="L2", method="pdd", arch="resnet18", K=2, seed=0,
                       eps="0.5") in cards(cfg)
    assert (REPO / "workflow" / "rules" / "model_cards.smk").exists()
