"""Wilson intervals, the exact McNemar test, Newcombe's difference intervals and Holm's correction against values
worked out by hand (z = 1.959964 for 95%, z^2 = 3.841459), and the packed per-image flags."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from pdd import api
from pdd.evaluation import statistics as st
from pdd.evaluation.records import image_fields, pack_flags, unpack_flags


def test_wilson_hand_computed() -> None:
    # 5/10: p = 0.5, centre = (0.5 + z^2/20) / (1 + z^2/10) = 0.5;
    # half = z / 1.3841459 * sqrt(0.025 + z^2/400) = 1.416009 * sqrt(0.0346036) = 1.416009 * 0.186020 = 0.263407
    low, high = api.wilson_interval(5, 10)
    assert (low, high) == pytest.approx((23.6593, 76.3407), abs=1e-3)
    # 0/10: low is exactly 0; high = 2 (z^2/20) / (1 + z^2/10) = 0.384146 / 1.384146 = 0.277533
    assert api.wilson_interval(0, 10) == pytest.approx((0.0, 27.7533), abs=1e-3)
    assert api.wilson_interval(0, 10)[0] == 0.0
    # n/n mirrors 0/n: (100 - 27.7533, 100), the high end exactly 100
    assert api.wilson_interval(10, 10) == pytest.approx((72.2467, 100.0), abs=1e-3)
    assert api.wilson_interval(10, 10)[1] == 100.0
    # Newcombe (1998a)'s example 81/263: score interval 0.2553 to 0.3662
    assert api.wilson_interval(81, 263) == pytest.approx((25.53, 36.62), abs=5e-3)
    # a lower level gives a narrower interval: 90% uses z = 1.644854;
    # 5/10: half = 1.644854 / (1 + 2.705543/10) * sqrt(0.025 + 2.705543/400) = 1.294597 * 0.178224 = 0.230727
    assert api.wilson_interval(5, 10, level=0.90) == pytest.approx((26.9273, 73.0727), abs=1e-3)
    assert api.wilson_interval(0, 0) == (0.0, 100.0)


@pytest.mark.parametrize("args", [(-1, 10), (11, 10), (1.5, 10), (float("nan"), 10), (1, float("inf")), (True, 3)])
def test_wilson_refuses_bad_counts(args) -> None:
    with pytest.raises(ValueError):
        api.wilson_interval(*args)


@pytest.mark.parametrize("level", [0.0, 1.0, float("nan"), 1.5])
def test_wilson_refuses_bad_level(level) -> None:
    with pytest.raises(ValueError, match="level"):
        api.wilson_interval(1, 2, level=level)


def test_mcnemar_hand_computed() -> None:
    # b = 10, c = 2: n = 12, P(X <= 2) = (C(12,0) + C(12,1) + C(12,2)) / 2^12 = (1 + 12 + 66) / 4096 = 79 / 4096;
    # p = 2 * 79 / 4096 = 0.03857421875 (exactly)
    assert api.mcnemar_p(10, 2) == 158 / 4096
    assert api.mcnemar_p(2, 10) == 158 / 4096                 # symmetric
    # b = 5, c = 0: p = 2 / 2^5 = 0.0625
    assert api.mcnemar_p(5, 0) == 0.0625
    # b = c = 3: 2 * (1 + 6 + 15 + 20) / 64 = 1.3125 -> capped at 1
    assert api.mcnemar_p(3, 3) == 1.0
    # b = 1, c = 0: 2 * 1/2 = 1
    assert api.mcnemar_p(1, 0) == 1.0
    # no discordant pairs: nothing to test
    assert api.mcnemar_p(0, 0) == 1.0
    # b = 1000, c = 0: 2 / 2^1000 (still a normal float)
    assert api.mcnemar_p(1000, 0) == pytest.approx(2.0 / 2.0 ** 1000, rel=1e-12)


def test_mcnemar_brute_force_and_large_counts() -> None:
    """The exact path against a sum of Fractions, and the lgamma path (large n) against the exact one."""
    for b, c in [(7, 3), (20, 9), (0, 4), (31, 30)]:
        n, k = b + c, min(b, c)
        brute = min(Fraction(1), 2 * sum(Fraction(math.comb(n, i), 2 ** n) for i in range(k + 1)))
        assert api.mcnemar_p(b, c) == pytest.approx(float(brute), rel=1e-15)
    assert st._lower_tail_log(1400, 3000) == pytest.approx(st._lower_tail_exact(1400, 3000), rel=1e-9)
    assert st.mcnemar_p(2700, 2500) == pytest.approx(2 * st._lower_tail_exact(2500, 5200), rel=1e-9)


def test_holm_hand_computed() -> None:
    # sorted: 0.005 * 4 = 0.02; 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> max(0.06, 0.04) = 0.06
    adjusted = st.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])                      # no test: stays NaN and does not count in m
    assert st.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])  # 0.5 * 2 = 1.0; then max(1.0, 0.6) capped at 1


def test_difference_intervals_hand_computed() -> None:
    # 50/100: Wilson (0.4038312, 0.5961688); 42/100: centre 0.4392073 / 1.0384146 = 0.4229597,
    # half 1.887464 * sqrt(0.002436 + 0.0000960) = 0.0949759 -> (0.3279838, 0.5179356).
    # Independent: low = 0.08 - sqrt(0.0961688^2 + 0.0979356^2) = 0.08 - 0.1372582 = -0.0572582;
    #              high = 0.08 + sqrt(0.0961688^2 + 0.0920162^2) = 0.08 + 0.1331007 = 0.2131007
    assert st.difference_interval(50, 100, 42, 100) == pytest.approx((8.0, -5.7258, 21.3101), abs=1e-3)
    # Paired, both = 40, only first = 10, only second = 2, neither = 48 (the same margins 50 and 42):
    # phi = (40*48 - 10*2) / sqrt(50*50*42*58) = 1900 / 2467.79 = 0.769920;
    # low = 0.08 - sqrt(0.0092484 - 2 phi 0.0961688 * 0.0979356 + 0.0095914) = 0.08 - sqrt(0.0043373) = 0.0141417
    # high = 0.08 + sqrt(0.0092484 - 2 phi 0.0961688 * 0.0920162 + 0.0084670) = 0.08 + sqrt(0.0040893) = 0.1439473
    assert st.paired_difference_interval(40, 10, 2, 48) == pytest.approx((8.0, 1.4142, 14.3947), abs=1e-3)
    # no data: no interval
    assert all(math.isnan(v) for v in st.paired_difference_interval(0, 0, 0, 0))


def test_paired_mean_difference_and_discordant() -> None:
    # differences 1, 0, 1, 0: mean 0.5, sd = sqrt(4 * 0.25 / 3) = 0.577350; half = z * 0.577350 / 2 = 0.565793
    assert st.paired_mean_difference([1, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx((0.5, -0.065793, 1.065793),
                                                                                    abs=1e-5)
    assert st.discordant([1, 1, 0, 0, 1], [1, 0, 1, 0, 0]) == (1, 2, 1, 1)


def test_flags_round_trip_and_length_check() -> None:
    flags = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1], dtype=bool)
    text = pack_flags(flags)
    assert text == "saA="            # bits 10110001 1010(0000) = 0xB1 0xA0 -> base64 "saA="
    assert bytes([0b10110001, 0b10100000]) == __import__("base64").b64decode(text)
    assert unpack_flags(text, 11).tolist() == flags.tolist()
    with pytest.raises(ValueError, match="expected 20 images"):
        unpack_flags(text, 20)
    fields = image_fields([0, 3, 9], 10)
    assert fields["split_size"] == 10
    assert np.flatnonzero(unpack_flags(fields["images"], 10)).tolist() == [0, 3, 9]


def test_score_keeps_per_image_flags() -> None:
    import torch

    from pdd.evaluation.attacks import score

    y = torch.tensor([0, 1, 2, 3, 4])
    result = score(y, clean_pred=torch.tensor([0, 1, 0, 3, 4]), adv_pred=torch.tensor([0, 0, 2, 3, 1]))
    # correct before: images 0, 1, 3, 4; robust = correct before and after: 0, 3 (image 2 is right only after)
    assert unpack_flags(result["clean_flags"], 5).tolist() == [True, True, False, True, True]
    assert unpack_flags(result["robust_flags"], 5).tolist() == [True, False, False, True, False]
    assert result["n_robust"] == 2
