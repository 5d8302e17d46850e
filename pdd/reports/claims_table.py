"""`table_claims`: the paper's claims as testable rows, each with the paper's value, ours under the paper's protocol
and under the strong worst case (L-inf, and L2 where that evaluation ran), the difference at two levels of evidence
(these trained models: per image, pooled over seeds; the method: between seeds, `claims_stats`) and verdicts.

Claims (per dataset and K of the config entry, each where its methods were evaluated):
- robustness: PDD+DEG more robust than the baseline and than ADP, and DEG alone than the baseline (Table 5), at each
  L-inf eps of the paper-protocol PGD and of the strong evaluation (and each L2 eps of the L2 strong evaluation);
- stronger attacks: PDD+DEG's gain over the baseline and ADP under `table_stronger_attacks`' own attacks;
- Table 1's ordering: the ambiguity entropy E of PDD and PDD+DEG above the baseline's and ADP's.

One row per claim and piece of evidence ('paper protocol', 'worst case L-inf', 'worst case L2', 'stronger attack',
'entropy'). The config names the primary rows (default: PDD+DEG vs the baseline under the worst case); Holm runs over
them only, the rest are exploratory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pdd.plan.outputs import DEFAULT_PRIMARY, primary_claims
from pdd.reports.claims_stats import NO_METHOD_TEST, accuracy_levels, entropy_levels, judge
from pdd.reports.display import Grid, dataset_name, method_name, write_table
from pdd.reports.tables import _param

DEFAULT_LEVEL = 0.05
ROBUSTNESS = (("pdd_deg", "baseline"), ("pdd_deg", "adp"), ("deg", "baseline"))
ENTROPY = (("pdd", "baseline"), ("pdd_deg", "baseline"), ("pdd", "adp"), ("pdd_deg", "adp"))
PAPER_ACCURACY = ("table2", "table3", "table5", "figure5_text")  # where the paper states PGD accuracies
PAPER_GAIN = {"baseline": "+14 to +50", "adp": "+13 to +48"}     # "Increasing Attack Strength", points
STRONGER = "table_stronger_attacks"
EVIDENCE_COLUMNS = {"paper protocol": "Ours: paper protocol", "stronger attack": "Ours: paper protocol",
                    "entropy": "Ours: paper protocol", "worst case L-inf": "Ours: worst case (L-inf)",
                    "worst case L2": "Ours: worst case (L2)"}
# (a) these models: ci_low/ci_high/p_models; (b) the method: *_method, seed_sd; JUDGED: added by claims_stats.judge
JUDGED = ["role", "p_models_adjusted", "verdict_models", "p_method_adjusted", "verdict_method", "verdict",
          "seeds_needed"]
COLUMNS = ["claim", "dataset", "K", "method", "versus", "evidence", "attack", "param", "norm", "role",
           "paper_dataset", "paper_param", "paper_method_value", "paper_versus_value", "paper_difference", "ours",
           "ours_versus", "n_images", "n_seeds", "difference", "ci_low", "ci_high", "p_models", "p_models_adjusted",
           "verdict_models", "seed_sd", "ci_low_method", "ci_high_method", "p_method", "p_method_adjusted",
           "verdict_method", "verdict", "seeds_needed", "level"]


def is_l2(record: dict, source: str) -> bool:
    """A record of an L2 attack: its `norm` says so, its attack is an L2 one, or its file is an L2 evaluation's."""
    return str(record.get("norm", "")).lower() in ("l2", "2") or str(record.get("attack", "")).endswith("_l2") \
        or "l2" in source.lower()


def read_records(paths: list[str]) -> pd.DataFrame:
    """Every accuracy and entropy record of the result JSONs with `suite` (the folder it came from: whitebox,
    strong, table_stronger_attacks, ...) and `l2`; cost records are left out."""
    rows = []
    for path in (p for p in paths if str(p).endswith(".json")):
        suite = Path(path).parent.name
        for r in json.loads(Path(path).read_text()):
            if r.get("metric") in ("accuracy_pct", "entropy"):
                rows.append({**r, "suite": suite, "l2": is_l2(r, suite)})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["param"] = df["param"].map(_param)
    return df


def read_entropy_terms(paths: list[str]) -> pd.DataFrame:
    """Per image, its term of eq. 5, min(l, K - l) / (K - ceil(K/2)) with l = members correct, from the diversity
    jobs' per-image CSVs (columns dataset, K, method, seed, image, e)."""
    frames = [pd.read_csv(p) for p in paths if str(p).endswith("per_image.csv")]
    if not frames:
        return pd.DataFrame(columns=["dataset", "K", "method", "seed", "image", "e"])
    df = pd.concat(frames, ignore_index=True)
    k, votes = df["K"].astype(int), df["members_correct"].astype(int)
    df["e"] = np.minimum(votes, k - votes) / (k - np.ceil(k / 2))
    return df[["dataset", "K", "method", "seed", "image", "e"]]


def read_paper(paper_csv: str | Path) -> pd.DataFrame:
    """The paper's accuracies (Tables 2, 3, 5 and the Figure 5 text) and entropies (Table 1), one value per key."""
    paper = pd.read_csv(paper_csv, dtype={"param": str})
    paper = paper[paper["table"].isin(PAPER_ACCURACY + ("table1",))].copy()
    paper["param"] = paper["param"].map(_param)
    return paper.drop_duplicates(["dataset", "K", "attack", "param", "method", "metric"])


@dataclass
class Evidence:
    """One tested comparison: what the claim says, which records test it, and what the paper reported."""

    claim: str
    dataset: str
    k: int
    method: str
    versus: str
    evidence: str
    attack: str
    param: float
    norm: str
    first: pd.DataFrame          # the method's records (one per seed)
    second: pd.DataFrame         # the compared method's records
    paper: tuple = (None, math.nan, math.nan, math.nan)  # (paper dataset, param, method's value, versus's value)


def paper_values(paper: pd.DataFrame, dataset: str, k: int, attack: str, param: float, method: str, versus: str,
                 metric: str = "accuracy_pct", exact_only: bool = True) -> tuple[float, float, float]:
    """(param, method's value, versus's value) the paper reports for `dataset`, K, attack and param; for a stand-in
    (`exact_only` False) the paper's largest parameter of that attack where it reports both methods."""
    rows = paper[(paper["dataset"] == dataset) & (paper["K"] == k) & (paper["attack"] == attack)
                 & (paper["metric"] == metric)]
    both = rows[rows["method"].isin([method, versus])].groupby("param", dropna=False)["method"].nunique()
    params = [p for p, n in both.items() if n == 2]
    exact = [p for p in params if (pd.isna(p) and pd.isna(param)) or p == param]
    chosen = exact[0] if exact else (None if exact_only or not params else max(params))
    if chosen is None:
        return math.nan, math.nan, math.nan
    at = rows[(rows["param"] == chosen) | (rows["param"].isna() & pd.isna(chosen))]
    value = dict(zip(at["method"], at["value"]))
    return chosen, value[method], value[versus]


def _records(df: pd.DataFrame, **match) -> pd.DataFrame:
    """The rows of `df` equal to every keyword (NaN param matches NaN)."""
    mask = pd.Series(True, index=df.index)
    for key, value in match.items():
        mask &= df[key].isna() if isinstance(value, float) and math.isnan(value) else df[key] == value
    return df[mask]


def robustness_evidence(records: pd.DataFrame, paper: pd.DataFrame, reference: dict[str, str]) -> list[Evidence]:
    """The robustness claims of every dataset and K: each pair of ROBUSTNESS, at each eps, under the paper protocol
    and the strong worst case (L-inf; L2 where it ran), and under `table_stronger_attacks`' own attacks."""
    found: list[Evidence] = []
    acc = records[(records["metric"] == "accuracy_pct") & (records["threat"] == "whitebox")]
    for (dataset, k), mine in acc.groupby(["dataset", "K"], sort=False):
        theirs = reference.get(dataset, dataset)
        methods = set(mine["method"])
        protocol = mine[(mine["suite"] == "whitebox") & mine["attack"].isin(["pgd", "pgd_l2"])]
        worst = mine[mine["attack"] == "worst_case"]
        settings = sorted({("l2" if a == "pgd_l2" else "linf", p) for a, p in zip(protocol["attack"],
                                                                                   protocol["param"])}
                          | {("l2" if x else "linf", p) for x, p in zip(worst["l2"], worst["param"])})
        for method, versus in ROBUSTNESS:
            if method not in methods or versus not in methods:
                continue
            for norm, eps in settings:
                attack = "pgd_l2" if norm == "l2" else "pgd"
                text = (f"{method_name(method)} more robust than {method_name(versus)} at "
                        f"{'L2' if norm == 'l2' else 'L-inf'} eps {eps:g}"
                        + (" (Table 5: DEG alone)" if method == "deg" else ""))
                p_param, p_a, p_b = paper_values(paper, theirs, k, attack, eps, method, versus,
                                                 exact_only=theirs == dataset)
                sources = [("paper protocol", protocol[protocol["attack"] == attack]),
                           (f"worst case {'L2' if norm == 'l2' else 'L-inf'}", worst[worst["l2"] == (norm == "l2")])]
                for evidence, pool in sources:
                    first = _records(pool, method=method, param=eps)
                    second = _records(pool, method=versus, param=eps)
                    if len(first) and len(second):
                        found.append(Evidence(text, dataset, k, method, versus, evidence, attack, eps, norm, first,
                                              second, (theirs, p_param, p_a, p_b)))
        stronger = mine[mine["suite"] == STRONGER]
        for versus in ("baseline", "adp"):
            if "pdd_deg" not in methods or versus not in methods:
                continue
            for (attack, param), pool in stronger.groupby(["attack", "param"], sort=False):
                first, second = _records(pool, method="pdd_deg"), _records(pool, method=versus)
                if len(first) and len(second):
                    text = (f"PDD+DEG's gain over {method_name(versus)} under the stronger {attack.upper()} "
                            f"({param:g})")
                    found.append(Evidence(text, dataset, k, "pdd_deg", versus, "stronger attack", attack, param,
                                          "", first, second, (theirs, math.nan, math.nan, math.nan)))
    return found


def entropy_evidence(records: pd.DataFrame, paper: pd.DataFrame, reference: dict[str, str]) -> list[Evidence]:
    """Table 1's ordering: E of PDD and PDD+DEG above the baseline's and ADP's, per dataset and K."""
    found: list[Evidence] = []
    if records.empty or "entropy" not in set(records["metric"]):
        return found
    ent = records[records["metric"] == "entropy"]
    for (dataset, k), mine in ent.groupby(["dataset", "K"], sort=False):
        theirs = reference.get(dataset, dataset)
        for method, versus in ENTROPY:
            first, second = _records(mine, method=method), _records(mine, method=versus)
            if len(first) and len(second):
                _, p_a, p_b = paper_values(paper, theirs, k, "none", math.nan, method, versus, "entropy")
                text = f"E({method_name(method)}) higher than E({method_name(versus)}) (Table 1)"
                found.append(Evidence(text, dataset, k, method, versus, "entropy", "none", math.nan, "", first,
                                      second, (theirs, math.nan, p_a, p_b)))
    return found


def _pooled(df: pd.DataFrame, success: str, trials: str) -> tuple[int, int] | None:
    """Counts summed over seeds, or None where a record lacks them."""
    if success not in df or trials not in df or df[[success, trials]].isna().any().any():
        return None
    return int(df[success].sum()), int(df[trials].sum())


def test_accuracy(e: Evidence, level: float) -> dict:
    """Both levels of evidence (`claims_stats`) on the per-image flags of the same images; without flags,
    Newcombe's interval for independent samples and no test."""
    from pdd.evaluation.statistics import difference_interval

    found = accuracy_levels(e.first, e.second, level)
    if found is not None:
        return found
    a, b = _pooled(e.first, "n_robust", "n_images"), _pooled(e.second, "n_robust", "n_images")
    if a is None or b is None:
        return {"difference": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p_models": math.nan,
                "n_images": math.nan, **NO_METHOD_TEST}
    diff, low, high = difference_interval(*a, *b, 1 - level)
    return {"difference": diff, "ci_low": low, "ci_high": high, "p_models": math.nan, "n_images": a[1],
            **NO_METHOD_TEST}


def test_entropy(e: Evidence, terms: pd.DataFrame, level: float) -> dict:
    """Both levels on the per-image eq. 5 terms (images paired within each seed): the mean difference with a
    normal interval and the exact sign test pooled over seeds; the HKSJ test of the per-seed mean differences.
    Without per-image terms, no test."""
    def mine(method: str) -> pd.DataFrame:
        return terms[(terms["dataset"] == e.dataset) & (terms["K"] == e.k) & (terms["method"] == method)]

    both = mine(e.method).merge(mine(e.versus), on=["seed", "image"], suffixes=("_a", "_b"))
    if len(both) < 2:
        diff = float(e.first["value"].mean() - e.second["value"].mean())
        return {"difference": diff, "ci_low": math.nan, "ci_high": math.nan, "p_models": math.nan,
                "n_images": math.nan, **NO_METHOD_TEST}
    return entropy_levels(both, level)


def claims_frame(records: pd.DataFrame, terms: pd.DataFrame, paper: pd.DataFrame, reference: dict[str, str],
                 level: float = DEFAULT_LEVEL, primary: list[dict] | None = None) -> pd.DataFrame:
    """One row per claim and evidence (COLUMNS) with both levels of evidence, Holm over the `primary` rows only
    (default: PDD+DEG vs the baseline under the worst case, L-inf and L2), and the verdicts at `level`."""
    if not 0 < level < 1 or not math.isfinite(level):
        raise ValueError(f"table_claims.level must lie strictly between 0 and 1, got {level!r}")
    evidence = [] if records.empty else robustness_evidence(records, paper, reference)
    evidence += entropy_evidence(records, paper, reference)
    rows = []
    for e in evidence:
        tested = test_entropy(e, terms, level) if e.evidence == "entropy" else test_accuracy(e, level)
        paper_dataset, paper_param, p_a, p_b = e.paper
        seeds = sorted(set(e.first["seed"]) & set(e.second["seed"]))
        rows.append({"claim": e.claim, "dataset": e.dataset, "K": e.k, "method": e.method, "versus": e.versus,
                     "evidence": e.evidence, "attack": e.attack, "param": e.param, "norm": e.norm,
                     "paper_dataset": paper_dataset, "paper_param": paper_param, "paper_method_value": p_a,
                     "paper_versus_value": p_b, "paper_difference": p_a - p_b,
                     "ours": float(e.first["value"].mean()), "ours_versus": float(e.second["value"].mean()),
                     "n_seeds": len(seeds), "level": level, **tested})
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in JUDGED])
    return judge(df, list(DEFAULT_PRIMARY) if primary is None else primary, level)[COLUMNS]


def _number(value: float, digits: int) -> str:
    return "-" if pd.isna(value) else f"{value:.{digits}f}"


def _pair(a: float, b: float, digits: int) -> str:
    return "-" if pd.isna(a) or pd.isna(b) else f"{a:.{digits}f} vs {b:.{digits}f}"


def _interval(difference: float, low: float, high: float, digits: int) -> str:
    if pd.isna(difference):
        return "-"
    return f"{difference:+.{digits}f}" + ("" if pd.isna(low) else f" [{low:+.{digits}f}, {high:+.{digits}f}]")


def _p(p: float, role: str) -> str:
    return "-" if pd.isna(p) else f"{p:.3g}" + (" (Holm)" if role == "primary" else "")


def _seeds_needed(r: pd.Series) -> str:
    if r["role"] != "primary" or pd.isna(r["seeds_needed"]):
        return "-"
    return "never (no difference)" if r["seeds_needed"] == math.inf else f"{int(r['seeds_needed'])}"


def claims_grid(df: pd.DataFrame) -> Grid:
    """One line per claim and evidence: the paper's values, ours under each evidence of the same claim (the tested
    one in bold; mean over seeds), the difference with both levels' intervals and p-values, the seed sd beside
    them, the headline verdict and, for primary rows, the seeds needed."""
    several = df[["dataset", "K"]].drop_duplicates().shape[0] > 1
    header = ["Claim", "Tested on", "Paper", "Ours: paper protocol", "Ours: worst case (L-inf)",
              "Ours: worst case (L2)", "Difference [95% CI], these models", "p, these models", "Seed sd",
              "95% CI, the method", "p, the method", "Verdict", "Seeds needed"]
    text, bold = [], []
    for _, r in df.iterrows():
        digits = 4 if r["evidence"] == "entropy" else 2
        siblings = df[(df["claim"] == r["claim"]) & (df["dataset"] == r["dataset"]) & (df["K"] == r["K"])]
        ours = {c: "-" for c in header[3:6]}
        for _, s in siblings.iterrows():
            ours[EVIDENCE_COLUMNS[s["evidence"]]] = _pair(s["ours"], s["ours_versus"], digits)
        if r["evidence"] == "stronger attack":
            paper = PAPER_GAIN.get(r["versus"], "-")
        else:
            paper = _pair(r["paper_method_value"], r["paper_versus_value"], digits)
            if paper != "-" and r["paper_dataset"] != r["dataset"]:
                at = "" if pd.isna(r["paper_param"]) else f" at {r['paper_param']:g}"
                paper += f" ({dataset_name(r['paper_dataset'])}{at})"
        method_ci = "-" if pd.isna(r["ci_low_method"]) else \
            f"[{r['ci_low_method']:+.{digits}f}, {r['ci_high_method']:+.{digits}f}]"
        claim = (f"{dataset_name(r['dataset'])}, K = {r['K']}: " if several else "") + r["claim"]
        verdict = r["verdict"] + (f" (these models: {r['verdict_models']})" if r["n_seeds"] < 2 else "") \
            + (" (exploratory)" if r["role"] == "exploratory" else "")
        row = [claim, r["evidence"], paper, *ours.values(), _interval(r["difference"], r["ci_low"], r["ci_high"],
                                                                    digits),
               _p(r["p_models_adjusted"], r["role"]), _number(r["seed_sd"], digits), method_ci,
               _p(r["p_method_adjusted"], r["role"]), verdict, _seeds_needed(r)]
        text.append(row)
        bold.append([c == EVIDENCE_COLUMNS[r["evidence"]] or (c == "Verdict" and r["verdict"] == "holds")
                     for c in header])
    cells = pd.DataFrame(text, columns=header)
    return Grid(cells, pd.DataFrame(bold, columns=header))


def claims_notes(df: pd.DataFrame, reference: dict[str, str], level: float) -> list[str]:
    """What the rows test, how, and (on a stand-in dataset) that they stand in for the paper's claims."""
    constant = df[["dataset", "K"]].drop_duplicates()
    where = (f"{dataset_name(constant.iloc[0]['dataset'])}, K = {constant.iloc[0]['K']}. "
             if len(constant) == 1 else "")
    seeds = sorted(set(df["n_seeds"]))
    notes = [
        where + "Each row tests one claim of the paper on one piece of evidence ('Tested on', its cell in bold): "
        "the paper protocol (PGD, 10 steps of eps/10, one random start), the strong evaluation's worst case "
        "(L-inf, and L2 where that evaluation ran), the stronger attacks of 'Increasing Attack Strength', or "
        "Table 1's entropy. Ours: the method's vs the compared method's accuracy (% of the test images classified "
        "correctly before the attack, mean over seeds) or entropy E. Seeds per row: "
        + ", ".join(str(s) for s in seeds) + ".",
        "Two levels of evidence (docs/statistics.md). These models: the difference in points of the N evaluated "
        "test images kept robust (correct before and after the attack; the same images for both methods) with "
        "Newcombe's paired 95% interval and the exact two-sided McNemar test pooled over seeds (= stratified by "
        "seed; entropy: per-image terms of eq. 5, normal interval, exact sign test); it holds the trained "
        "ensembles fixed. The method: a random-effects meta-analysis of the per-seed paired differences "
        "(DerSimonian-Laird, Hartung-Knapp-Sidik-Jonkman t-interval on seeds - 1 degrees of freedom): the seed is "
        "random, so it speaks for a fresh training run; Seed sd: the standard deviation of the per-seed "
        "differences. Verdict: the method's with two or more seeds; with one seed 'one seed: these models only' "
        "and the per-image verdict in brackets.",
        f"Primary rows ({', '.join(sorted(set(df.loc[df['role'] == 'primary', 'claim'])) or ['none'])}): p-values "
        "Holm-corrected over the primary rows only, and 'Seeds needed', the smallest number of seeds k with "
        "|d| sqrt(k) / s > t(k - 1) at the row's Holm level for the observed difference d and seed sd s (so 'not "
        f"significant' can be told from 'too few seeds'). Other rows: unadjusted p, exploratory. Level {level:g}: "
        "holds (significant, in the paper's direction), reversed (significant, the other way), not significant, "
        "or no test (result files without per-image flags).",
    ]
    stand_in = sorted({d for d in df["dataset"] if reference.get(d, d) != d})
    if stand_in:
        notes.append(
            "Stand-ins: " + ", ".join(f"{dataset_name(d)} stands in for the paper's "
                                      f"{dataset_name(reference[d])}" for d in stand_in)
            + ". Its rows run the paper's comparisons on this run's ensembles, not the paper's experiments: the "
            "paper's values beside them are for its own dataset (at the eps named), so the verdicts say nothing "
            "about the paper's claims.")
    return notes


def build_claims_table(records: pd.DataFrame, terms: pd.DataFrame, paper_csv: str | Path, spec: dict, title: str,
                       out_csv: str | Path, out_md: str | Path, out_tex: str | Path | None = None) -> pd.DataFrame:
    """Write `table_claims` (CSV long format with every number, Markdown, LaTeX) from result records."""
    reference, level = spec.get("reference", {}), spec.get("level", DEFAULT_LEVEL)
    df = claims_frame(records, terms, read_paper(paper_csv), reference, level, primary_claims(spec))
    notes = claims_notes(df, reference, level) if len(df) else ["No claim could be tested: none of its methods "
                                                                "were evaluated."]
    grids = [claims_grid(df)] if len(df) else []
    df.insert(0, "table", spec.get("name", "table_claims"))
    write_table(out_csv, out_md, out_tex, df, "table_claims", title, notes, grids)
    return df


def build(inputs: list[str], spec: dict, out: str, paper_csv: str, output=None) -> None:
    """Registry builder: result JSONs and per-image CSVs -> `<out>.csv`, `<out>.md` and `<out>.tex`; `output` is
    the registry entry (its title heads the table)."""
    title = output.title if output is not None else "The paper's claims, one verdict each"
    build_claims_table(read_records(inputs), read_entropy_terms(inputs), paper_csv, spec, title, f"{out}.csv",
                       f"{out}.md", f"{out}.tex")
