"""DVERGE's member-transfer matrix and the ensemble-defences table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from pdd.data import get_dataset
from pdd.evaluation.attacks import AttackSettings, select_images
from pdd.evaluation.member_transfer import Member, fooling_matrix
from pdd.models import Ensemble, load_ensemble
from pdd.plan.outputs import OUTPUTS
from pdd.training import TrainConfig, train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> Ensemble:
    """A trained K = 3 digits ensemble whose members 0 and 1 then get identical weights."""
    root = tmp_path_factory.mktemp("twins")
    train(TrainConfig("digits", "baseline", 3, width=4, epochs=2), root, root / "m.pt", root / "log.csv")
    model = load_ensemble(root / "m.pt")
    model.members[1].load_state_dict(model.members[0].state_dict())
    model.heads[1].load_state_dict(model.heads[0].state_dict())
    return model


def test_member_is_a_one_member_ensemble(twins: Ensemble) -> None:
    x = torch.rand(4, 1, 8, 8)
    member = Member(twins, 2)
    assert torch.allclose(member.log_mean_prob(x), twins(x)[2].log_softmax(-1))
    assert member(x).shape == (1, 4, 10)


def test_identical_members_fool_each_other_exactly_as_themselves(twins: Ensemble) -> None:
    x, y = select_images(get_dataset("digits", "test", "."), 40, seed=0)
    matrix = fooling_matrix(twins, x, y, 0.3, AttackSettings(steps=5, batch_size=40), CPU)
    assert matrix.shape == (3, 3) and ((matrix >= 0) & (matrix <= 100)).all()
    assert matrix[0, 1] == matrix[0, 0] and matrix[1, 0] == matrix[1, 1] and torch.equal(matrix[0], matrix[1])
    assert matrix[0, 0] > 50  # white-box PGD at eps 0.3 fools a member on most of its correct images


def _write(path: Path, records: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return str(path)


def test_defences_table_by_hand(tmp_path: Path) -> None:
    key = {"dataset": "digits", "K": 3, "seed": 0, "metric": "accuracy_pct"}
    inputs = []
    for method, (clean, pgd10, worst, transfer, entropy, cosines) in {
            "baseline": (98.0, 80.0, 50.0, 90.0, 0.1, [0.5, 0.3]),
            "gal": (97.0, 85.0, 52.0, 93.0, 0.2, [0.1, -0.1])}.items():
        base = tmp_path / method
        inputs.append(_write(base / "strong" / "evaluation.json", [
            {**key, "method": method, "threat": "whitebox", "attack": "none", "param": None, "value": clean},
            {**key, "method": method, "threat": "whitebox", "attack": "pgd_10", "param": 0.1, "value": pgd10},
            {**key, "method": method, "threat": "whitebox", "attack": "worst_case", "param": 0.1, "value": worst},
            {**key, "method": method, "threat": "blackbox_oblivious", "attack": "transfer", "param": 0.1,
             "value": transfer}]))
        inputs.append(_write(base / "diversity" / "entropy.json", [
            {**key, "method": method, "threat": "none", "attack": "none", "param": None, "metric": "entropy",
             "value": entropy}]))
        csv = base / "diversity" / "per_image.csv"
        pd.DataFrame({"dataset": "digits", "K": 3, "method": method, "seed": 0, "image": [0, 1],
                      "cosine": cosines}).to_csv(csv, index=False)
        inputs.append(str(csv))
    OUTPUTS["table_ensemble_defences"].run(inputs, {"methods": ["gal", "baseline"]}, str(tmp_path / "t"), "")
    df = pd.read_csv(tmp_path / "t.csv")
    assert list(df["method"]) == ["gal", "baseline"]  # the spec's order
    gal = df.set_index("method").loc["gal"]
    assert (gal["clean"], gal["pgd_10"], gal["worst_case"], gal["transfer"], gal["entropy"]) == (97, 85, 52, 93, 0.2)
    assert gal["cosine"] == pytest.approx(0.0)
    assert df.set_index("method").loc["baseline", "cosine"] == pytest.approx(0.4)
    md = (tmp_path / "t.md").read_text()
    assert ("| Digits (8x8) | 3 | L-inf eps 0.1 (= 25.5/255) | GAL | 97.00 | **85.00** | **52.00** | **93.00** | "
            "**0.2000** | **0.0000** |") in md  # bold: best per column (lowest cosine)
    assert "| Baseline | **98.00** | 80.00 |" in md
    assert "\\textbf{85.00}" in (tmp_path / "t.tex").read_text()


def test_member_transfer_figure_names_methods_dataset_and_budget(tmp_path: Path, monkeypatch) -> None:
    import pdd.reports.member_transfer_figure as figure

    key = {"dataset": "digits", "K": 2, "seed": 0, "threat": "member_transfer", "attack": "pgd", "param": 0.1,
           "metric": "fooling_pct"}
    inputs = [_write(tmp_path / f"{m}.json", [{**key, "method": m, "source": i, "target": j, "value": 10.0 * (i + j)}
                                              for i in range(2) for j in range(2)]) for m in ("pdd_deg", "dverge")]
    seen = {}
    save = figure.save_figure

    def spy(fig, out):
        seen.update(titles=[ax.get_title() for ax in fig.axes[:2]], suptitle=fig._suptitle.get_text(),
                    ylabels=[ax.get_ylabel() for ax in fig.axes[:2]])
        save(fig, out)

    monkeypatch.setattr(figure, "save_figure", spy)
    figure.build(inputs, {"datasets": ["digits"], "K": [2], "methods": ["dverge", "pdd_deg"], "eps": 0.1},
                 str(tmp_path / "f"), "")
    assert seen["titles"] == ["DVERGE", "PDD+DEG"] and seen["ylabels"] == ["crafted on member i", ""]
    assert seen["suptitle"].startswith("Digits (8x8), K = 2: PGD $L_\\infty$ eps 0.1 (= 25.5/255)")
    assert (tmp_path / "f.pdf").exists() and pd.read_csv(tmp_path / "f.csv")["value"].max() == 20.0


def test_images_no_member_gets_right_cost_no_passes(twins: Ensemble) -> None:
    """The ledger by hand, N images, K = 3, PGD of s steps: K x N forwards to classify every image by every
    member; per source member and crafted image s forward + s backward (one loss gradient per step) + 2 forwards
    (ART's success-rate log predicts x and x_adv), then K forwards to score it on every member. All N crafted:
    3N + 3N(2 + s) + 9N forward, 3Ns backward; with the second half labelled a class no member predicts, N/2
    crafted: 3N + 3(N/2)(2 + s) + 9(N/2) forward, 3(N/2)s backward."""
    from pdd.evaluation.attacks import predict
    from pdd.evaluation.cost_meter import CostMeter

    x, _ = select_images(get_dataset("digits", "test", "."), 20, seed=0)
    n, k, s = len(x), 3, 2
    preds = torch.stack([predict(Member(twins, i), x, CPU) for i in range(k)])  # [K, N]
    taken = torch.zeros(n, 10, dtype=torch.bool).scatter_(1, preds.T, True)
    nobody = (~taken).float().argmax(1)  # a class no member predicts
    half = torch.where(torch.arange(n) < n // 2, preds[0], nobody)
    counts = []
    for labels in (preds[0], half):
        with CostMeter() as cost:
            fooling_matrix(twins, x, labels, 0.3, AttackSettings(steps=s, batch_size=n), CPU)
        counts.append((cost["forward_images"], cost["backward_images"]))
    crafted = n, n // 2
    assert counts == [(k * n + k * c * (2 + s) + k * k * c, k * c * s) for c in crafted]
