"""Uncertainty of every accuracy and every comparison: Wilson score intervals, the exact McNemar test on the same
images, Newcombe's intervals for a difference of proportions, and Holm's step-down correction.

Accuracies are counts of images: a Wilson interval says how far a count of `n` images can move by chance; two
ensembles scored on the same images are compared on the images where they disagree (McNemar), which is far
sharper than comparing two intervals. Pure Python (math, statistics): no SciPy needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

EXACT_LIMIT = 5000  # discordant pairs up to which the binomial tail is summed in exact integers


def _count(name: str, value) -> int:
    """A count as an int; NaN, infinities, negatives and fractions are refused by name."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or int(value) != value:
        raise ValueError(f"{name} must be a non-negative whole number, got {value!r}")
    return int(value)


def z_value(level: float) -> float:
    """The two-sided standard normal quantile of a confidence level (1.959964 for 0.95)."""
    if not isinstance(level, (int, float)) or not math.isfinite(level) or not 0 < level < 1:
        raise ValueError(f"level must be a number strictly between 0 and 1, got {level!r}")
    return NormalDist().inv_cdf(1 - (1 - level) / 2)


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of successes / n as fractions; (0, 1) when n is 0 (no information)."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion successes / n, in percent: (low, high); (0, 100) for n = 0.

    Unlike the normal (Wald) interval it stays inside [0, 100] and is not empty at 0 or n successes."""
    successes, n = _count("successes", successes), _count("n", n)
    if successes > n:
        raise ValueError(f"successes ({successes}) exceed n ({n})")
    low, high = _wilson(successes, n, z_value(level))
    return 100.0 * low, 100.0 * high


def _lower_tail_exact(k: int, n: int) -> float:
    """P(X <= k) for X ~ Bin(n, 1/2), summed in exact integers."""
    term, total = 1, 1
    for i in range(k):
        term = term * (n - i) // (i + 1)
        total += term
    return total / 2 ** n


def _lower_tail_log(k: int, n: int) -> float:
    """P(X <= k) for X ~ Bin(n, 1/2) by a log-sum-exp of lgamma terms (large n; relative error ~1e-12)."""
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    return math.exp(top) * math.fsum(math.exp(v - top) for v in logs)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts b, c (images only the first, only the second
    ensemble keeps): min(1, 2 P(X <= min(b, c))), X ~ Bin(b + c, 1/2); 1.0 when there are none."""
    b, c = _count("b", b), _count("c", c)
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = _lower_tail_exact(k, n) if n <= EXACT_LIMIT else _lower_tail_log(k, n)
    return min(1.0, 2.0 * tail)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest of m is multiplied by m - i + 1,
    then made non-decreasing; NaN (no test) stays NaN and does not count in m."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    for p, _ in tested:
        if not 0 <= p <= 1:
            raise ValueError(f"p-values must lie in [0, 1], got {p}")
    adjusted = [math.nan] * len(pvalues)
    running, m = 0.0, len(tested)
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _newcombe(p1: float, w1: tuple[float, float], p2: float, w2: tuple[float, float], phi: float
              ) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 - p2 from the two Wilson intervals (fractions), with correlation phi
    between the paired outcomes (0 for independent samples)."""
    (l1, u1), (l2, u2) = w1, w2
    down = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    up = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, p1 - p2 - down), min(1.0, p1 - p2 + up)


def difference_interval(s1: int, n1: int, s2: int, n2: int, level: float = 0.95) -> tuple[float, float, float]:
    """(difference, low, high) of s1/n1 - s2/n2 in percentage points, for independent samples (Newcombe 1998,
    method 10: from the two Wilson intervals); NaN when either sample is empty."""
    s1, n1, s2, n2 = (_count(k, v) for k, v in (("s1", s1), ("n1", n1), ("s2", s2), ("n2", n2)))
    if s1 > n1 or s2 > n2:
        raise ValueError(f"successes exceed n: {s1}/{n1}, {s2}/{n2}")
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan, math.nan
    z = z_value(level)
    low, high = _newcombe(s1 / n1, _wilson(s1, n1, z), s2 / n2, _wilson(s2, n2, z), 0.0)
    return 100.0 * (s1 / n1 - s2 / n2), 100.0 * low, 100.0 * high


def paired_difference_interval(both: int, only_first: int, only_second: int, neither: int, level: float = 0.95
                               ) -> tuple[float, float, float]:
    """(difference, low, high) in percentage points of the first minus the second success rate on the same n
    images, from the paired 2x2 counts (Newcombe 1998, paired method 10; phi is the plain phi coefficient, 0
    where a margin is empty); NaN when n is 0."""
    a, b, c, d = (_count(k, v) for k, v in (("both", both), ("only_first", only_first),
                                             ("only_second", only_second), ("neither", neither)))
    n = a + b + c + d
    if n == 0:
        return math.nan, math.nan, math.nan
    z = z_value(level)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(margins) if margins else 0.0
    low, high = _newcombe((a + b) / n, _wilson(a + b, n, z), (a + c) / n, _wilson(a + c, n, z), phi)
    return 100.0 * (b - c) / n, 100.0 * low, 100.0 * high


def paired_mean_difference(first: Sequence[float], second: Sequence[float], level: float = 0.95
                           ) -> tuple[float, float, float]:
    """(mean difference, low, high) of paired per-image values (first - second): normal interval mean ± z sd/sqrt(n)
    with the sample sd of the differences; NaN with fewer than two pairs."""
    if len(first) != len(second):
        raise ValueError(f"paired values differ in length: {len(first)} and {len(second)}")
    diffs = [float(a) - float(b) for a, b in zip(first, second)]
    if any(not math.isfinite(v) for v in diffs):
        raise ValueError("paired values must be finite")
    n = len(diffs)
    if n < 2:
        return (diffs[0] if n else math.nan), math.nan, math.nan
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in diffs) / (n - 1))
    half = z_value(level) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def discordant(first: Sequence[bool], second: Sequence[bool]) -> tuple[int, int, int, int]:
    """Paired 2x2 counts of two outcome vectors on the same images: (both, only first, only second, neither)."""
    a, b = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in shape: {a.shape} and {b.shape}")
    return int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum())
