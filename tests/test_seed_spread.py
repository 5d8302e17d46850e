"""Figures with two seeds draw the seed spread, computed here by hand from the per-seed records (issue 33, item 1);
with one seed they draw none. Tables' mean ± std over seeds: tests/test_tables.py; table_claims: test_claims.py."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pdd.reports.figures as figures
import pdd.reports.member_transfer_figure as member_figure


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures passed to save_figure (still open), in order."""
    seen: list = []
    for module in (figures, member_figure):
        monkeypatch.setattr(module, "save_figure", lambda fig, out: seen.append(fig))
    return seen


def _bars(container) -> tuple[list[float], list[float], list[float] | None]:
    """(x, y, half-lengths of the error bars or None) of a matplotlib ErrorbarContainer."""
    line, _, bars = container.lines
    x, y = list(line.get_xdata()), list(line.get_ydata())
    if not bars:
        return x, y, None
    return x, y, [float(seg[1][1] - seg[0][1]) / 2 for seg in bars[0].get_segments()]


def _steps_records(values: dict[int, list[float]]) -> pd.DataFrame:
    """PGD-10 and PGD-20 accuracies of the baseline, one list (per step count) per seed."""
    rows = []
    for seed, (at10, at20) in values.items():
        for steps, value in ((10, at10), (20, at20)):
            rows.append({"dataset": "digits", "K": 3, "method": "baseline", "seed": seed, "threat": "whitebox",
                         "attack": f"pgd_{steps}", "param": 0.1, "metric": "accuracy_pct", "value": value,
                         "steps": steps, "restarts": 1})
    return pd.DataFrame(rows)


def test_strong_steps_draws_mean_and_seed_sd(drawn, tmp_path: Path) -> None:
    figures.strong_steps(_steps_records({0: [60.0, 50.0], 1: [70.0, 56.0]}), ["baseline"], tmp_path / "f.png")
    x, y, half = _bars(drawn[0].axes[0].containers[0])
    assert x == [10, 20] and y == pytest.approx([65.0, 53.0])
    assert half == pytest.approx([statistics.stdev([60, 70]), statistics.stdev([50, 56])])


def test_one_seed_draws_no_error_bars(drawn, tmp_path: Path) -> None:
    figures.strong_steps(_steps_records({0: [60.0, 50.0]}), ["baseline"], tmp_path / "f.png")
    assert _bars(drawn[0].axes[0].containers[0])[2] is None


def test_intervals_figure_draws_seed_sd(drawn, tmp_path: Path) -> None:
    inputs = []
    for seed, (fisher, pgd) in enumerate([(1.0, 40.0), (2.0, 50.0)]):
        folder = tmp_path / f"results/eval/digits/resnet18/K3/pdd-M4/seed{seed}"
        folder.mkdir(parents=True)
        pd.DataFrame({"between": [1.0, 3.0], "within": [1.0, 1.0], "fisher": [fisher, fisher + 2]}).to_csv(
            folder / "per_image.csv", index=False)
        (folder / "pgd.json").write_text(json.dumps([{
            "dataset": "digits", "K": 3, "method": "pdd-M4", "seed": seed, "threat": "whitebox", "attack": "pgd",
            "param": 0.1, "metric": "accuracy_pct", "value": pgd}]))
        inputs += [str(folder / "per_image.csv"), str(folder / "pgd.json")]
    figures.build_intervals_figure(inputs, {"datasets": ["digits"], "K": [3], "pdd_intervals": {"3": 10}},
                                   str(tmp_path / "f"), "")
    fisher_panel, accuracy_panel = drawn[0].axes[1], drawn[0].axes[2]
    _, y, half = _bars(fisher_panel.containers[0])               # per seed: mean L_F 2 and 3
    assert y == pytest.approx([2.5]) and half == pytest.approx([statistics.stdev([2.0, 3.0])])
    _, y, half = _bars(accuracy_panel.containers[0])
    assert y == pytest.approx([45.0]) and half == pytest.approx([statistics.stdev([40.0, 50.0])])
    written = pd.read_csv(tmp_path / "f.csv").set_index("measure")
    assert written.loc["fisher", "std"] == pytest.approx(statistics.stdev([2.0, 3.0]))


def test_diversity_boxes_show_each_seeds_median(drawn, tmp_path: Path) -> None:
    rows = [{"method": m, "seed": s, "image": i, "correct": True, "angle": v}
            for m, base in (("baseline", 10.0), ("pdd", 30.0)) for s in (0, 1) for i, v in
            enumerate(base + 5 * s + np.array([0.0, 1.0, 2.0]))]
    figures.diversity_boxplot(pd.DataFrame(rows), "angle", ["baseline", "pdd"], None, tmp_path / "f.png")
    points = drawn[0].axes[0].collections[0].get_offsets()
    medians = sorted((round(float(x)), float(y)) for x, y in points)
    assert medians == [(1, 11.0), (1, 16.0), (2, 31.0), (2, 36.0)]  # the median of 0, 1, 2 plus base + 5 * seed


def test_member_transfer_cells_show_seed_sd(drawn, tmp_path: Path) -> None:
    key = {"dataset": "digits", "K": 2, "threat": "member_transfer", "attack": "pgd", "param": 0.1,
           "metric": "fooling_pct", "method": "pdd_deg"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{**key, "seed": s, "source": i, "target": j, "value": 10.0 * (i + j) + 20 * s}
                                for s in (0, 1) for i in range(2) for j in range(2)]))
    member_figure.build([str(path)], {"datasets": ["digits"], "K": [2], "methods": ["pdd_deg"], "eps": 0.1},
                        str(tmp_path / "f"), "")
    texts = [t.get_text() for t in drawn[0].axes[0].texts]
    sd = statistics.stdev([0.0, 20.0])
    assert texts[0] == f"10\n± {sd:.0f}"  # source 0, target 0: mean of 0 and 20
