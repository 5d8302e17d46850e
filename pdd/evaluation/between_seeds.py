"""Two methods compared over training seeds, at two levels of evidence.

(a) *These trained models*: the exact McNemar test on the per-image flags of all seeds pooled. Under the null each
seed's discordant count is Bin(b + c, 1/2), so pooling the counts is the test stratified by seed; it holds the
trained ensembles fixed and says nothing about a fresh training run.
(b) *The method*: a random-effects meta-analysis of the per-seed paired differences (DerSimonian-Laird tau^2,
Hartung-Knapp-Sidik-Jonkman t-interval with k - 1 degrees of freedom), which treats the seed as random. With equal
per-seed variances it is the one-sample t-test of the per-seed differences.

Every function is vectorised over leading axes ([..., seeds] or [..., seeds, images]), so the calibration tests run
thousands of simulated comparisons in one call.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ONE_SEED = "one seed: these models only (the between-seed test needs two or more seeds)"


def discordant_counts(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(b, c, n) of boolean flags [..., seeds, images]: images only the first / only the second keeps, per seed."""
    b = (first & ~second).sum(axis=-1)
    c = (~first & second).sum(axis=-1)
    return b, c, first.shape[-1]


def paired_difference(b: np.ndarray, c: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(difference, variance) of a paired difference of proportions on the same n images, as fractions.

    d = (b - c) / n; var = ((b + c) / n - d^2) / n, the variance of the mean of the per-image differences in
    {-1, 0, 1}; floored at 1 / n^2 (one discordant image's worth) so that a seed with no discordant image keeps a
    finite weight."""
    d = (b - c) / n
    return d, np.maximum(((b + c) / n - d * d) / n, 1.0 / (n * n))


def random_effects(effects: np.ndarray, variances: np.ndarray, level: float = 0.05) -> dict[str, np.ndarray]:
    """Random-effects mean of per-seed effects [..., k] with its HKSJ interval at 1 - `level` and two-sided p.

    tau^2 is DerSimonian-Laird's moment estimate truncated at 0; the mean is weighted by 1 / (v + tau^2) and its
    variance is the weighted residual variance sum w (y - mu)^2 / ((k - 1) sum w) (Hartung-Knapp; Sidik-Jonkman),
    referred to t(k - 1). Where every effect is equal the residual variance is 0: p is 1 for a zero mean, 0
    otherwise. With k < 2 the interval and p are NaN."""
    y, v = np.asarray(effects, dtype=float), np.asarray(variances, dtype=float)
    k = y.shape[-1]
    if k < 2:
        nan = np.full(y.shape[:-1], np.nan)
        return {"mean": y[..., 0], "low": nan, "high": nan, "p": nan, "tau2": nan, "se": nan}
    w = 1.0 / v
    fixed = (w * y).sum(-1, keepdims=True) / w.sum(-1, keepdims=True)
    q = (w * (y - fixed) ** 2).sum(-1)
    c = w.sum(-1) - (w * w).sum(-1) / w.sum(-1)
    tau2 = np.maximum(0.0, (q - (k - 1)) / c)
    wr = 1.0 / (v + tau2[..., None])
    mean = (wr * y).sum(-1) / wr.sum(-1)
    se = np.sqrt((wr * (y - mean[..., None]) ** 2).sum(-1) / ((k - 1) * wr.sum(-1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(mean) / se, np.where(mean == 0, 0.0, np.inf))
    half = stats.t.isf(level / 2, k - 1) * se
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": 2 * stats.t.sf(t, k - 1), "tau2": tau2,
            "se": se}


def pooled_mcnemar_p(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Exact two-sided McNemar p of the discordant counts summed over seeds (the last axis): the test stratified by
    seed. min(1, 2 P(X <= min(b, c))), X ~ Bin(b + c, 1/2); 1 without discordant images."""
    b, c = np.asarray(b).sum(-1), np.asarray(c).sum(-1)
    return np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(b, c), b + c, 0.5))


def seeds_needed(difference: float, sd: float, level: float, most: int = 1000) -> float:
    """The smallest number of seeds k >= 2 with |d| sqrt(k) / s > t(1 - level/2, k - 1): how many seeds a one-sample
    t-test of the per-seed differences needs to call an effect of this size and spread at `level`. NaN where d or
    s is unknown, inf where d is 0 or more than `most` seeds would be needed."""
    if not (math.isfinite(difference) and math.isfinite(sd)):
        return math.nan
    if difference == 0:
        return math.inf
    if sd == 0:
        return 2
    k = np.arange(2, most + 1)
    ok = np.nonzero(abs(difference) * np.sqrt(k) / sd > stats.t.isf(level / 2, k - 1))[0]
    return int(k[ok[0]]) if len(ok) else math.inf


def seed_flags(first, second, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Two lists (one entry per seed) of boolean per-image flags as arrays [seeds, images]; every problem (other
    numbers of seeds or images, non-boolean values, NaN, a level outside (0, 1)) is one ValueError naming it."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level) \
            or not 0 < level < 1:
        raise ValueError(f"level must be a number strictly between 0 and 1, got {level!r}")
    arrays = {}
    for name, given in (("first", first), ("second", second)):
        if isinstance(given, (str, bytes)) or not hasattr(given, "__len__") or len(given) == 0:
            raise ValueError(f"{name} must be a non-empty list with one array of per-image flags per seed")
        seeds = [np.asarray(flags) for flags in given]
        for s, flags in enumerate(seeds):
            if flags.dtype.kind == "f" and np.isnan(flags).any():
                raise ValueError(f"{name}[{s}] holds NaN: the flags must be booleans (True = robust)")
            if flags.dtype != bool or flags.ndim != 1 or flags.size == 0:
                raise ValueError(f"{name}[{s}] must be a non-empty 1-D array of booleans (True = robust), got "
                                 f"dtype {flags.dtype} and shape {flags.shape}")
        sizes = {flags.size for flags in seeds}
        if len(sizes) > 1:
            raise ValueError(f"{name}'s seeds have different numbers of images {sorted(sizes)}: every seed must be "
                             "scored on the same images")
        arrays[name] = np.stack(seeds)
    a, b = arrays["first"], arrays["second"]
    if a.shape != b.shape:
        raise ValueError(f"first and second must have the same seeds and images: {a.shape[0]} seeds x "
                         f"{a.shape[1]} images against {b.shape[0]} x {b.shape[1]}")
    return a, b


def compare(first: np.ndarray, second: np.ndarray, level: float = 0.05) -> dict:
    """Both levels of evidence for boolean flags [seeds, images] of two methods on the same images (`seed_flags`):
    differences in points of the images, first minus second. `difference` is the plain mean over seeds, the
    interval is centred on the random-effects mean (equal when the seeds' variances are)."""
    b, c, n = discordant_counts(first, second)
    d, var = paired_difference(b, c, n)
    between = random_effects(d, var, level)
    seeds = len(d)
    return {
        "difference": float(100 * d.mean()),
        "ci_low": float(100 * between["low"]),
        "ci_high": float(100 * between["high"]),
        "p_value": float(between["p"]),
        "p_models": float(pooled_mcnemar_p(b, c)),
        "per_seed": [float(x) for x in 100 * d],
        "sd": float(100 * d.std(ddof=1)) if seeds > 1 else math.nan,
        "random_effects_mean": float(100 * between["mean"]),
        "tau2": float(1e4 * between["tau2"]),
        "n_seeds": seeds,
        "n_images": n,
        "level": level,
        "message": ONE_SEED if seeds < 2 else f"{seeds} seeds: the method (seed random, HKSJ t({seeds - 1}))",
    }
