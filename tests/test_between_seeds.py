"""pdd.api.compare_seeds and pdd.evaluation.between_seeds: hand-worked cases, HKSJ against statsmodels'
combine_effects, and the calibration of both levels of evidence by simulation (issue 33, items 4 and 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects

from pdd.api import compare_seeds
from pdd.evaluation.between_seeds import (
    ONE_SEED,
    discordant_counts,
    paired_difference,
    pooled_mcnemar_p,
    random_effects,
    seeds_needed,
)
from pdd.evaluation.statistics import mcnemar_p

LEVEL = 0.05
SIMULATIONS = 2000


def flags(b: int, c: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """One seed's flags with the given paired 2x2 counts."""
    first = np.array([True] * b + [False] * c + [True] * both + [False] * neither)
    second = np.array([False] * b + [True] * c + [True] * both + [False] * neither)
    return first, second


def seeds_of(*counts: tuple[int, int, int, int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    pairs = [flags(*c) for c in counts]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_identical_flags_give_no_difference_and_p_one():
    first, _ = seeds_of((30, 10, 40, 20), (5, 25, 50, 20), (10, 10, 60, 20))
    result = compare_seeds(first, [f.copy() for f in first])
    assert result["difference"] == 0 and result["per_seed"] == [0.0, 0.0, 0.0]
    assert result["p_value"] == 1.0 and result["p_models"] == 1.0
    assert result["ci_low"] == result["ci_high"] == 0.0


def test_one_seed_tests_only_these_models():
    first, second = seeds_of((30, 10, 40, 20))
    result = compare_seeds(first, second)
    assert math.isnan(result["p_value"]) and math.isnan(result["ci_low"]) and math.isnan(result["ci_high"])
    assert result["message"] == ONE_SEED and "one seed" in result["message"]
    assert result["difference"] == pytest.approx(20.0)  # (30 - 10) / 100 images
    assert result["p_models"] == pytest.approx(mcnemar_p(30, 10))


def test_hand_worked_three_seeds():
    """Seeds (b, c) = (30, 10), (30, 10), (10, 30) on 100 images: d = +20, +20, -20 points, all with variance
    (0.4 - 0.04) / 100, so the weights are equal and HKSJ is the one-sample t-test: mean 20/3, sd 40/sqrt(3),
    t = (20/3) / (40/3) = 0.5 on 2 df, and t(2)'s tail is 1/2 - t / (2 sqrt(2 + t^2)), so p = 2/3 exactly."""
    first, second = seeds_of((30, 10, 30, 30), (30, 10, 30, 30), (10, 30, 30, 30))
    result = compare_seeds(first, second)
    assert result["per_seed"] == pytest.approx([20.0, 20.0, -20.0])
    assert result["difference"] == pytest.approx(20 / 3)
    assert result["p_value"] == pytest.approx(2 / 3, rel=1e-9)
    t975 = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))  # t(2) quantile in closed form: 4.3027
    assert result["ci_high"] - result["difference"] == pytest.approx(t975 * 40 / 3, rel=1e-9)
    assert result["sd"] == pytest.approx(40 / math.sqrt(3))
    assert result["p_models"] == pytest.approx(mcnemar_p(70, 50))  # pooled discordant counts


def test_consistent_effect_with_many_images_is_significant_at_both_levels():
    counts = [(220, 20, 1500, 260), (230, 25, 1490, 255), (210, 15, 1510, 265), (225, 22, 1495, 258)]
    first, second = seeds_of(*counts)
    result = compare_seeds(first, second)
    by_hand = [100 * (b - c) / 2000 for b, c, _, _ in counts]
    assert result["per_seed"] == pytest.approx(by_hand)
    assert result["difference"] == pytest.approx(sum(by_hand) / 4)
    assert result["ci_low"] > 8 and result["ci_high"] < 12
    assert result["p_value"] < 1e-4 and result["p_models"] < 1e-100
    reversed_ = compare_seeds(second, first)
    assert reversed_["difference"] == pytest.approx(-result["difference"])
    assert reversed_["p_value"] == pytest.approx(result["p_value"])


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt")  # statsmodels' untruncated tau^2 < 0
@pytest.mark.parametrize("seed", range(6))
def test_hksj_matches_statsmodels_combine_effects(seed):
    """DerSimonian-Laird tau^2 + HKSJ against statsmodels (method_re='dl', use_t): the same random-effects mean,
    interval and t statistic. statsmodels does not truncate the DL tau^2 at 0, so where Q < k - 1 (tau^2 = 0) ours
    is compared with its fixed-effect WLS interval, which is what a zero tau^2 gives."""
    rng = np.random.default_rng(seed)
    k = 2 + seed % 4
    variances = rng.uniform(0.0005, 0.003, k)
    spread = 0.2 if seed % 2 == 0 else 0.001  # far above / below the sampling sd (0.02-0.055)
    effects = 0.05 + spread * rng.permutation(np.linspace(-1, 1, k)) + rng.normal(0, 0.001, k)
    ours = random_effects(effects, variances, LEVEL)
    res = combine_effects(effects, variances, method_re="dl", use_t=True)
    _, _, fixed_wls, random_wls = res.conf_int(alpha=LEVEL, use_t=True)
    heterogeneous = res.tau2 > 0
    assert heterogeneous == (seed % 2 == 0)  # both branches are exercised
    mean, var = (res.mean_effect_re, res.var_hksj_re) if heterogeneous else (res.mean_effect_fe, res.var_hksj_fe)
    interval = random_wls if heterogeneous else fixed_wls
    assert ours["mean"] == pytest.approx(mean, rel=1e-10)
    assert [ours["low"], ours["high"]] == pytest.approx(list(interval), rel=1e-10)
    assert ours["tau2"] == pytest.approx(max(res.tau2, 0.0), abs=1e-15)
    assert ours["p"] == pytest.approx(2 * stats.t.sf(abs(mean) / math.sqrt(var), k - 1), rel=1e-9)


def test_random_effects_is_vectorised_over_leading_axes():
    rng = np.random.default_rng(1)
    effects, variances = rng.normal(0, 0.05, (4, 3, 5)), rng.uniform(0.001, 0.002, (4, 3, 5))
    batch = random_effects(effects, variances)
    for i in range(4):
        for j in range(3):
            one = random_effects(effects[i, j], variances[i, j])
            assert batch["p"][i, j] == pytest.approx(float(one["p"]), rel=1e-12)


def test_paired_variance_is_the_variance_of_the_per_image_differences():
    first, second = flags(30, 10, 40, 20)
    b, c, n = discordant_counts(first[None], second[None])
    d, var = paired_difference(b, c, n)
    per_image = first.astype(int) - second.astype(int)
    assert d[0] == pytest.approx(per_image.mean())
    assert var[0] == pytest.approx(per_image.var() / n)  # population variance of the {-1, 0, 1} terms over n
    _, floor = paired_difference(np.array([0]), np.array([0]), 50)
    assert floor[0] == pytest.approx(1 / 50 ** 2)


@pytest.mark.parametrize("b,c", [(0, 0), (3, 0), (7, 12), (40, 25), (300, 250)])
def test_pooled_mcnemar_equals_the_exact_mcnemar_of_the_summed_counts(b, c):
    split_b, split_c = np.array([b // 2, b - b // 2]), np.array([c - c // 3, c // 3])
    assert float(pooled_mcnemar_p(split_b, split_c)) == pytest.approx(mcnemar_p(b, c), rel=1e-9)


def test_seeds_needed_by_hand():
    """d = s: sqrt(k) > t(0.975, k - 1) first at k = 7 (sqrt 7 = 2.646 > 2.447; sqrt 6 = 2.449 < 2.571)."""
    assert seeds_needed(10.0, 10.0, 0.05) == 7
    assert seeds_needed(-10.0, 10.0, 0.05) == 7
    assert seeds_needed(10.0, 10.0, 0.01) > 7
    assert seeds_needed(0.0, 3.0, 0.05) == math.inf
    assert seeds_needed(2.0, 0.0, 0.05) == 2
    assert math.isnan(seeds_needed(2.0, math.nan, 0.05))


@pytest.mark.parametrize("first,second,match", [
    ([np.ones(5, bool)] * 2, [np.ones(5, bool)] * 3, "same seeds"),
    ([np.ones(5, bool)], [np.ones(6, bool)], "same seeds and images"),
    ([np.ones(5, bool), np.ones(4, bool)], [np.ones(5, bool)] * 2, "different numbers of images"),
    ([np.ones(5, int)], [np.ones(5, bool)], "booleans"),
    ([np.array([1.0, np.nan])], [np.ones(2, bool)], "NaN"),
    ([], [], "non-empty list"),
    ([np.ones((2, 2), bool)], [np.ones((2, 2), bool)], "1-D"),
])
def test_bad_input_is_one_clear_error(first, second, match):
    with pytest.raises(ValueError, match=match):
        compare_seeds(first, second)


@pytest.mark.parametrize("level", [0.0, 1.0, math.nan, math.inf, True, "0.05"])
def test_bad_level_is_refused(level):
    with pytest.raises(ValueError, match="level"):
        compare_seeds([np.ones(3, bool)] * 2, [np.ones(3, bool)] * 2, level)


def simulate(rng: np.random.Generator, seeds: int, images: int, mean: float, spread: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """SIMULATIONS comparisons [sims, seeds, images]: each seed's true difference (points) ~ N(mean, spread^2)
    (spread per simulation), both methods around 50% robust, their flags sharing the image's draw half the time."""
    delta = rng.normal(mean, spread[:, None, None], (SIMULATIONS, seeds, 1)) / 100
    shape = (SIMULATIONS, seeds, images)
    u = rng.random(shape)
    v = np.where(rng.random(shape) < 0.5, u, rng.random(shape))
    return u < np.clip(0.5 + delta / 2, 0, 1), v < np.clip(0.5 - delta / 2, 0, 1)


def rejection_rates(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """(between-seed HKSJ, pooled McNemar) rejection rates at LEVEL over the simulated comparisons."""
    b, c, n = discordant_counts(first, second)
    d, var = paired_difference(b, c, n)
    return (float((random_effects(d, var, LEVEL)["p"] < LEVEL).mean()),
            float((pooled_mcnemar_p(b, c) < LEVEL).mean()))


# One-sided binomial tolerance on a rejection rate of LEVEL over SIMULATIONS draws: three standard errors
# (sqrt(0.05 * 0.95 / 2000) = 0.0049), so a calibrated test exceeds it with probability about 0.001.
TOLERANCE = 3 * math.sqrt(LEVEL * (1 - LEVEL) / SIMULATIONS)


@pytest.mark.parametrize("seeds", [3, 5])
def test_null_between_seed_test_is_calibrated_and_pooled_mcnemar_is_not(seeds):
    """No true difference on average, seeds spread 5-8 points, 300 images: the between-seed test rejects at most
    about LEVEL; the per-image test pooled over seeds (these models, not the method) at least three times as
    often, which is why it cannot carry a claim about the method (and why this bound fails for it)."""
    rng = np.random.default_rng(33 + seeds)
    first, second = simulate(rng, seeds, 300, 0.0, rng.uniform(5, 8, SIMULATIONS))
    between, pooled = rejection_rates(first, second)
    assert between <= LEVEL + TOLERANCE, f"between-seed test rejects {between:.3f} of true nulls"
    assert pooled >= 3 * max(between, LEVEL), f"pooled McNemar rejects only {pooled:.3f}"
    assert pooled > LEVEL + TOLERANCE  # the first assertion would fail with the pooled test in (b)'s place


def test_between_seed_test_finds_a_consistent_effect():
    """+10 points on every seed with a spread of 2 points, 500 images, 5 seeds: rejected in at least 90%."""
    rng = np.random.default_rng(10)
    first, second = simulate(rng, 5, 500, 10.0, np.full(SIMULATIONS, 2.0))
    between, _ = rejection_rates(first, second)
    assert between >= 0.90, f"between-seed test finds the effect in only {between:.3f}"


def calibration_table() -> list[tuple[str, float, float]]:
    """The rejection rates docs/statistics.md prints: (case, between-seed test, pooled McNemar)."""
    rows = []
    for seeds in (3, 5):
        rng = np.random.default_rng(33 + seeds)
        rows.append((f"null, {seeds} seeds, spread 5-8 points, 300 images",
                     *rejection_rates(*simulate(rng, seeds, 300, 0.0, rng.uniform(5, 8, SIMULATIONS)))))
    rng = np.random.default_rng(10)
    rows.append(("+10 points, spread 2, 500 images, 5 seeds",
                 *rejection_rates(*simulate(rng, 5, 500, 10.0, np.full(SIMULATIONS, 2.0)))))
    return rows


if __name__ == "__main__":  # python tests/test_between_seeds.py: the calibration figures of docs/statistics.md
    print(f"Rejection rates at level {LEVEL} over {SIMULATIONS} simulated comparisons (tolerance for a calibrated "
          f"test: {LEVEL + TOLERANCE:.3f})\n")
    print("| case | (b) between seeds (HKSJ) | (a) pooled McNemar |\n|---|---|---|")
    for case, between, pooled in calibration_table():
        print(f"| {case} | {between:.3f} | {pooled:.3f} |")
