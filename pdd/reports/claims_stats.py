"""The two levels of evidence behind each row of `table_claims` (docs/statistics.md).

(a) these trained models: per image, pooled over seeds (exact McNemar, or the sign test for entropy), with
    Newcombe's paired interval (entropy: a normal interval);
(b) the method: per-seed paired differences combined by a random-effects meta-analysis with the HKSJ t-interval
    (`pdd.evaluation.between_seeds`); NaN with one seed.
Holm runs over the primary rows only; the others keep their unadjusted p-values and are marked exploratory.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pdd.evaluation.between_seeds import random_effects, seeds_needed
from pdd.evaluation.statistics import holm
from pdd.reports.tables import per_seed_flags

ONE_SEED_VERDICT = "one seed: these models only"
NO_METHOD_TEST = {"ci_low_method": math.nan, "ci_high_method": math.nan, "p_method": math.nan, "seed_sd": math.nan}


def method_level(differences: np.ndarray, variances: np.ndarray, level: float) -> dict:
    """Level (b) from per-seed differences and their sampling variances (same units): HKSJ interval, p, seed sd."""
    if len(differences) < 2:
        return dict(NO_METHOD_TEST)
    found = random_effects(differences, variances, level)
    return {"ci_low_method": float(found["low"]), "ci_high_method": float(found["high"]),
            "p_method": float(found["p"]), "seed_sd": float(np.std(differences, ddof=1))}


def accuracy_levels(first: pd.DataFrame, second: pd.DataFrame, level: float) -> dict:
    """Both levels for two methods' accuracy records (one per seed) with per-image flags on the same images, in
    points of the images kept robust; None where flags are missing or the images differ."""
    from pdd.evaluation.between_seeds import discordant_counts, paired_difference, pooled_mcnemar_p
    from pdd.evaluation.statistics import discordant, paired_difference_interval

    flags = per_seed_flags(first, second)
    if flags is None:
        return None
    a, b = flags
    both, only_first, only_second, neither = discordant(np.concatenate(a), np.concatenate(b))
    diff, low, high = paired_difference_interval(both, only_first, only_second, neither, 1 - level)
    found = {"difference": diff, "ci_low": low, "ci_high": high, "n_images": len(a[0])}
    if len({len(x) for x in a}) > 1:  # seeds scored on different numbers of images: per image only
        return {**found, "p_models": float(pooled_mcnemar_p(only_first, only_second)), **NO_METHOD_TEST}
    b_counts, c_counts, n = discordant_counts(np.stack(a), np.stack(b))
    d, var = paired_difference(b_counts, c_counts, n)
    return {**found, "p_models": float(pooled_mcnemar_p(b_counts, c_counts)),
            **{k: 100 * v if k != "p_method" else v for k, v in method_level(d, var, level).items()}}


def entropy_levels(both: pd.DataFrame, level: float) -> dict:
    """Both levels for Table 1's entropy from per-image eq. 5 terms paired within each seed (columns seed, e_a,
    e_b): the method level on the per-seed mean differences, each with the variance of its mean (floored at one
    image's worth, 1 / n^2, like the robust flags)."""
    from pdd.evaluation.statistics import mcnemar_p, paired_mean_difference

    diff, low, high = paired_mean_difference(both["e_a"].tolist(), both["e_b"].tolist(), 1 - level)
    found = {"difference": diff, "ci_low": low, "ci_high": high, "n_images": len(both),
             "p_models": mcnemar_p(int((both["e_a"] > both["e_b"]).sum()), int((both["e_a"] < both["e_b"]).sum()))}
    per_seed = (both["e_a"] - both["e_b"]).groupby(both["seed"])
    n = per_seed.size().to_numpy()
    variances = np.maximum(per_seed.var(ddof=1).fillna(0).to_numpy() / n, 1.0 / n ** 2)
    return {**found, **method_level(per_seed.mean().to_numpy(), variances, level)}


def verdict(difference: float, p: float, level: float) -> str:
    """'holds' / 'reversed' when p is below `level` (by the sign of the difference, the claim being method >
    versus), 'not significant' otherwise, 'no test' without a p-value."""
    if pd.isna(p):
        return "no test"
    if p >= level or difference == 0:
        return "not significant"
    return "holds" if difference > 0 else "reversed"


def is_primary(rows: pd.DataFrame, primary: list[dict]) -> pd.Series:
    """Whether each row (method, versus, evidence) is one of the primary claims."""
    keys = {(p["method"], p["versus"], p["evidence"]) for p in primary}
    return pd.Series([(m, v, e) in keys for m, v, e in zip(rows["method"], rows["versus"], rows["evidence"])],
                     index=rows.index, dtype=bool)


def holm_levels(pvalues: list[float], level: float) -> list[float]:
    """The level Holm's step-down compares each p with: level / (m - rank), rank from the smallest; NaN untested."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    found = [math.nan] * len(pvalues)
    for rank, (_, i) in enumerate(tested):
        found[i] = level / (len(tested) - rank)
    return found


def judge(df: pd.DataFrame, primary: list[dict], level: float) -> pd.DataFrame:
    """Adjusted p-values (Holm over the primary rows; the others unadjusted), both verdicts, the headline verdict
    ((b) with two or more seeds, else 'one seed: these models only'), the role and, for each primary row, the
    number of seeds its observed difference and seed spread would need at its Holm level."""
    df = df.copy()
    df["role"] = np.where(is_primary(df, primary), "primary", "exploratory")
    main = df["role"] == "primary"
    for p in ("p_models", "p_method"):
        df[f"{p}_adjusted"] = df[p].astype(float)
        df.loc[main, f"{p}_adjusted"] = holm(df.loc[main, p].astype(float).tolist())
    df["verdict_models"] = [verdict(d, p, level) for d, p in zip(df["difference"], df["p_models_adjusted"])]
    df["verdict_method"] = [verdict(d, p, level) for d, p in zip(df["difference"], df["p_method_adjusted"])]
    df["verdict"] = np.where(df["n_seeds"] >= 2, df["verdict_method"], ONE_SEED_VERDICT)
    df["seeds_needed"] = math.nan
    if main.any():
        levels = holm_levels(df.loc[main, "p_method"].astype(float).tolist(), level)
        df.loc[main, "seeds_needed"] = [seeds_needed(d, s, a) for d, s, a in
                                        zip(df.loc[main, "difference"], df.loc[main, "seed_sd"], levels)]
    return df
