"""The projection's saving from skipping misclassified images: the paper's clean error times the crafted passes."""

from __future__ import annotations

import pytest

from pdd.estimate import CLEAN_ERROR, Row, clean_saving, markdown


def test_clean_error_is_the_papers_baseline_no_attack_row() -> None:
    # Table 2, "No Attack", Base.: 94.37 (Fashion-MNIST), 80.32 (CIFAR-100), 67.36 (Tiny-ImageNet).
    assert CLEAN_ERROR == pytest.approx({"fashion_mnist": 0.0563, "cifar100": 0.1968, "tiny_imagenet": 0.3264})


def test_saving_by_hand() -> None:
    # CIFAR-100: 19.68% of 1e6 crafted passes = 196,800; a dataset the paper reports no accuracy for saves nothing.
    saving, note = clean_saving("cifar100", 1e6)
    assert saving == pytest.approx(196_800)
    assert "19.7%" in note and "196,800" in note
    assert clean_saving("digits", 1e6)[0] == 0.0


def test_markdown_totals_subtract_the_saving() -> None:
    # 2 jobs x 1000 passes, 2 x 100 saved (-10%), plus 1 job x 1000 with none: 3000 -> 2800 (-6.7%).
    rows = [Row("whitebox", "a", 2, 1000.0, "", saving_per_job=100.0), Row("train", "b", 1, 1000.0, "")]
    text = markdown(rows)
    assert "| whitebox | 2 | 2,000 | 1,800 (-10.0%) |" in text
    assert "| train | 1 | 1,000 | 1,000 (-0.0%) |" in text
    assert "| **all** | **3** | **3,000** | **2,800 (-6.7%)** |" in text
