"""The strong evaluation: worst case per image, APGD's strength, the paper protocol inside it, and the four
gradient-masking diagnostics on an ordinary ensemble and on ensembles built to mask gradients."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from pdd.data import get_dataset
from pdd.evaluation.attacks import AttackSettings, predict, run_attack, select_images
from pdd.evaluation.strong import StrongSettings, apgd, attack_eps, diagnose, evaluate
from pdd.models import Ensemble, load_ensemble
from pdd.reports.model_cards import card
from pdd.reports.strong_table import MASKING_WARNING, build_strong_table
from pdd.reports.tables import read_results
from pdd.training import TrainConfig, train

from conftest import REPO

CPU = torch.device("cpu")
FAST = StrongSettings(apgd_iterations=10, apgd_restarts=2, pgd_steps=(10, 30), pgd_restarts=2, transfer_steps=10,
                      diagnostic_steps=30, batch_size=200, apgd_targets=2, mora_iterations=10, mora_mixes=(0.0, 1.0),
                      square_queries=100)
EPS = 0.2  # on 2-epoch digits models PGD-10 leaves ~15%, transfer ~70%: room for every check to fail


class SaturatedEnsemble(nn.Module):
    """Member logits scaled by 1e4: the float32 softmax saturates to exactly one-hot, so log(mean softmax)
    has zero input gradient almost everywhere (CE and DLR alike); the prediction becomes the members' vote."""

    def __init__(self, base: Ensemble, scale: float = 1e4):
        super().__init__()
        self.base, self.spec, self.scale = base, base.spec, scale

    @property
    def num_members(self) -> int:
        return self.base.num_members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) * self.scale

    def log_mean_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(x), dim=-1).mean(0).clamp_min(1e-30).log()


class _NoGradient(torch.autograd.Function):
    """Identity forward, zero backward: gradients vanish by construction, the scores do not."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad)


class ZeroGradientEnsemble(nn.Module):
    """The base ensemble's outputs with exactly zero input gradients: gradient attacks only get their random start;
    a score-based attack (Square) sees the real decision."""

    def __init__(self, base: Ensemble):
        super().__init__()
        self.base, self.spec = base, base.spec

    @property
    def num_members(self) -> int:
        return self.base.num_members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(_NoGradient.apply(x))

    def log_mean_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.log_mean_prob(_NoGradient.apply(x))


class TurncoatEnsemble(nn.Module):
    """A stateful defence: honest gradients for the first `honest` gradient queries after any prediction
    query, reversed afterwards, so a longer attack undoes what its first steps did."""

    def __init__(self, base: Ensemble, honest: int = 10):
        super().__init__()
        self.base, self.spec, self.honest, self.queries = base, base.spec, honest, 0

    @property
    def num_members(self) -> int:
        return self.base.num_members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    def log_mean_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = self.base.log_mean_prob(x)
        if not torch.is_grad_enabled():  # a prediction query: a new attack starts
            self.queries = 0
            return z

        def turn(grad: torch.Tensor) -> torch.Tensor:
            self.queries += 1
            return grad if self.queries <= self.honest else -grad

        z.register_hook(turn)
        return z


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Ensemble, Ensemble]:
    """(target, surrogate): a ResNet-18 and an independent VGG-16 digits ensemble, a few seconds each."""
    root = tmp_path_factory.mktemp("strong")
    train(TrainConfig("digits", "baseline", 2, width=4, epochs=4), root, root / "m.pt", root / "m.csv")
    train(TrainConfig("digits", "baseline", 2, arch="vgg16", width=4, epochs=4, seed=1), root, root / "s.pt",
          root / "s.csv")
    return load_ensemble(root / "m.pt"), load_ensemble(root / "s.pt")


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    return select_images(get_dataset("digits", "test", "."), 60, seed=0)


def _by_name(records: list[dict]) -> dict[tuple[str, object], dict]:
    return {(r["attack"], r["param"]): r for r in records}


@pytest.fixture(scope="module")
def ordinary(models, images) -> list[dict]:
    return evaluate(models[0], *images, [0.1, EPS], FAST, CPU, models[1])


@pytest.fixture(scope="module")
def saturated(models, images) -> list[dict]:
    return evaluate(SaturatedEnsemble(models[0]), *images, [EPS], FAST, CPU, models[1])


@pytest.fixture(scope="module")
def zero_gradient(models, images) -> list[dict]:
    return evaluate(ZeroGradientEnsemble(models[0]), *images, [EPS], FAST, CPU, models[1])


@pytest.fixture(scope="module")
def turncoat(models, images) -> list[dict]:
    return evaluate(TurncoatEnsemble(models[0]), *images, [EPS], FAST, CPU, models[1])


def test_worst_case_is_every_attack_at_once(models, images) -> None:
    x, y = images
    clean = predict(models[0], x, CPU) == y
    results = attack_eps(models[0], x, y, clean, 0.1, FAST, CPU, models[1])
    whitebox = {k: r["robust"] for k, r in results.items() if k not in ("worst_case", "transfer")}
    assert set(whitebox) == {"pgd_10", "pgd_30", "pgd_30x2", "apgd_ce", "apgd_dlr", "apgd_t", "mora", "square"}
    worst = results["worst_case"]["robust"]
    expected = clean.clone()
    for robust in whitebox.values():
        assert not (worst & ~robust).any()           # robust in the worst case -> robust under each attack
        assert not (robust & ~clean).any()           # robust implies initially correct
        expected &= robust
    assert torch.equal(worst, expected)
    assert not (whitebox["pgd_30x2"] & ~whitebox["pgd_30"]).any()  # restarts keep the first run's successes
    assert int(worst.sum()) < int(whitebox["pgd_10"].sum())         # the paper's attack is not the worst case


def test_worst_case_record_never_above_any_single_attack(ordinary) -> None:
    for eps in (0.1, EPS):
        attacks = [r for r in ordinary if r["param"] == eps and r["threat"] == "whitebox"]
        worst = next(r for r in attacks if r["attack"] == "worst_case")
        assert len(attacks) == 9
        assert all(worst["value"] <= r["value"] and worst["n_robust"] <= r["n_robust"] for r in attacks)


def test_pgd_10_inside_the_strong_evaluation_is_the_paper_protocol(models, images, ordinary) -> None:
    """Same images, seed and ART attack: the strong table's PGD-10 equals the white-box suite's number."""
    x, y = images
    protocol = run_attack(models[0], x, y, "pgd", EPS, AttackSettings(batch_size=200), CPU)
    assert _by_name(ordinary)[("pgd_10", EPS)]["value"] == pytest.approx(protocol["accuracy_on_correct"])


@pytest.mark.parametrize("loss", ["cross_entropy", "difference_logits_ratio"])
def test_apgd_reaches_near_zero_accuracy_at_a_large_eps_within_its_budget(models, images, loss: str) -> None:
    x, y = images
    clean = predict(models[0], x, CPU) == y
    x_adv = apgd(models[0], x, y, 0.3, loss, StrongSettings(apgd_iterations=20, apgd_restarts=1), CPU)
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    robust = clean & (predict(models[0], x_adv, CPU) == y)
    assert clean.sum() > 50 and robust.sum() <= 0.05 * clean.sum()


def test_saturated_ensemble_really_has_no_gradient(models, images) -> None:
    """The masked fixture does what it claims: still accurate, zero gradient for nearly every image."""
    x, y = images
    masked = SaturatedEnsemble(models[0])
    xg = x.clone().requires_grad_(True)
    loss = nn.functional.nll_loss(masked.log_mean_prob(xg), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xg)
    assert (grad.flatten(1).abs().sum(1) == 0).float().mean() > 0.8
    assert (predict(masked, x, CPU) == y).float().mean() > 0.8


def _diagnostics(records: list[dict]) -> dict[str, dict]:
    return {r["attack"]: r for r in records if r["metric"] == "passed"}


def test_ordinary_ensemble_passes_every_diagnostic(ordinary) -> None:
    found = _diagnostics(ordinary)
    assert set(found) == {"eps_growth", "unbounded", "transfer", "convergence", "gradient_free", "zero_gradients",
                          "deterministic"}
    assert all(r["value"] == 1.0 for r in found.values()), found


@pytest.mark.parametrize("masked, check", [
    ("saturated", "eps_growth"), ("saturated", "unbounded"),
    ("saturated", "zero_gradients"), ("zero_gradient", "gradient_free"), ("zero_gradient", "zero_gradients"),
    ("turncoat", "eps_growth"), ("turncoat", "unbounded"), ("turncoat", "convergence"),
])
def test_each_diagnostic_flags_an_ensemble_built_to_mask_gradients(request, masked: str, check: str) -> None:
    found = _diagnostics(request.getfixturevalue(masked))[check]
    assert found["value"] == 0.0 and found["detail"]


def test_masked_ensembles_look_more_robust_under_pgd_than_the_ordinary_one(ordinary, saturated, turncoat) -> None:
    """Why the diagnostics matter: the masked ensembles' PGD numbers are inflated."""
    base = _by_name(ordinary)[("pgd_30", EPS)]["value"]
    assert _by_name(saturated)[("pgd_30", EPS)]["value"] > base + 30
    assert _by_name(turncoat)[("pgd_30", EPS)]["value"] > base + 30


def test_mora_sees_through_the_saturated_ensemble(saturated) -> None:
    """Saturation hides the gradient of log(mean softmax) from PGD, not from MORA, which attacks the members'
    rescaled logits: the worst case is no longer inflated (so the transfer check (c) no longer fires here)."""
    found = _by_name(saturated)
    assert found[("mora", EPS)]["value"] < found[("pgd_30", EPS)]["value"] - 30


def test_square_beats_a_model_without_gradients(models, images, zero_gradient) -> None:
    """Square breaks most images that the gradient attacks (random starts only) leave, and check (e) says so."""
    found = _by_name(zero_gradient)
    assert found[("square", EPS)]["n_robust"] + 10 < found[("apgd_ce", EPS)]["n_robust"]
    assert found[("worst_case", EPS)]["n_robust"] <= found[("square", EPS)]["n_robust"]
    assert "square leaves" in found[("gradient_free", None)]["detail"]


@pytest.mark.parametrize("norm, eps", [("linf", EPS), ("l2", 1.0)])
def test_square_gives_the_same_examples_on_every_run(models, images, norm: str, eps: float) -> None:
    """ART's L2 Square also draws from Python's `random` (which way each initial stripe turns), not only numpy's:
    the attack is seeded through both, so the same call gives the same examples whatever ran before it (the
    demo's L2 Square column moved by 2-4 points between runs of the same code)."""
    import random

    from pdd.evaluation.strong import square

    settings = StrongSettings(norm=norm, square_queries=5)
    x, y = images[0][:20], images[1][:20]
    random.seed(1)
    first = square(models[0], x, y, eps, settings, CPU)
    random.seed(2)
    assert torch.equal(square(models[0], x, y, eps, settings, CPU), first)


def test_nondeterministic_outputs_are_flagged(models, images) -> None:
    class Noisy(ZeroGradientEnsemble):
        def log_mean_prob(self, x: torch.Tensor) -> torch.Tensor:
            return self.base.log_mean_prob(x + 0.01 * torch.randn_like(x))

    from pdd.evaluation.strong import output_change
    assert output_change(models[0], images[0], CPU, 200) <= 1e-5
    assert output_change(Noisy(models[0]), images[0], CPU, 200) > 1e-3


@pytest.mark.parametrize("square, passed", [(6, True), (5, True), (4, False)])
def test_gradient_free_check_by_hand(square: int, passed: bool) -> None:
    """Six images survive every gradient attack; Square may leave one fewer (noise_images = 1), not two fewer."""
    s = StrongSettings(pgd_steps=(10,))
    per_eps = _per_eps({"pgd_10": 7, "apgd_ce": 6, "square": square, "worst_case": min(6, square)})
    assert diagnose(per_eps, _mask(18), None, None, s)["gradient_free"]["passed"] is passed


def _mask(n_true: int, n: int = 20) -> torch.Tensor:
    return torch.arange(n) < n_true


def _per_eps(counts: dict[str, int]) -> dict[float, dict[str, dict]]:
    return {0.1: {name: {"robust": _mask(c)} for name, c in counts.items()}}


@pytest.mark.parametrize("counts, passed", [
    ({"pgd_10": 8, "pgd_50": 9, "pgd_200": 9}, True),    # one image of noise is tolerated
    ({"pgd_10": 8, "pgd_50": 8, "pgd_200": 10}, False),  # two are not
    ({"pgd_10": 8, "pgd_50": 5, "pgd_200": 2}, True),
])
def test_convergence_check_by_hand(counts: dict[str, int], passed: bool) -> None:
    s = StrongSettings(pgd_steps=(10, 50, 200))
    found = diagnose(_per_eps({**counts, "worst_case": 2}), _mask(18), None, None, s)["convergence"]
    assert found["passed"] is passed


@pytest.mark.parametrize("transfer, passed", [(6, True), (5, True), (4, False)])
def test_transfer_check_by_hand(transfer: int, passed: bool) -> None:
    s = StrongSettings(pgd_steps=(10,))
    per_eps = _per_eps({"pgd_10": 6, "worst_case": 6, "transfer": transfer})
    assert diagnose(per_eps, _mask(18), None, None, s)["transfer"]["passed"] is passed


def test_transfer_check_without_surrogate_is_not_run() -> None:
    s = StrongSettings(pgd_steps=(10,))
    found = diagnose(_per_eps({"pgd_10": 6, "worst_case": 6}), _mask(18), None, None, s)["transfer"]
    assert found["passed"] is None and "no surrogate" in found["detail"]


@pytest.mark.parametrize("left, passed", [(1, True), (2, False)])
def test_large_eps_and_unbounded_checks_by_hand(left: int, passed: bool) -> None:
    """20 initially correct images, limit 5%: one left (5%) passes, two (10%) warn; unbounded wants none."""
    s = StrongSettings(pgd_steps=(10,), diagnostic_max_accuracy=5.0)
    found = diagnose(_per_eps({"pgd_10": 3, "worst_case": 3}), _mask(20), _mask(left), _mask(left - 1), s)
    assert found["eps_growth"]["passed"] is passed
    assert found["eps_growth"]["value"] == pytest.approx(5.0 * left)
    assert found["unbounded"]["passed"] is (left == 1)


def _write(path: Path, records: list[dict], method: str) -> Path:
    key = {"dataset": "digits", "K": 3, "method": method, "seed": 0}  # K=3: the paper has a row
    path.write_text(json.dumps([{**key, **r} for r in records]))
    return path


def test_table_puts_the_protocol_beside_the_worst_case_and_warns(tmp_path: Path, ordinary, saturated) -> None:
    protocol = [{"dataset": "digits", "K": 3, "method": m, "seed": 0, "threat": "whitebox", "attack": "pgd",
                 "param": p, "metric": "accuracy_pct", "value": v} for m in ("baseline", "adp") for p, v in
                ((0.1, 61.0), (EPS, 14.0), (0.4, 0.0))]
    files = [_write(tmp_path / "o.json", ordinary, "baseline"), _write(tmp_path / "s.json", saturated, "adp")]
    (tmp_path / "p.json").write_text(json.dumps(protocol))
    df = build_strong_table(read_results(files + [tmp_path / "p.json"]), REPO / "config" / "paper_results.csv",
                            {"digits": "fashion_mnist"}, tmp_path / "t.csv", tmp_path / "t.md")
    pgd = df[df["attack"] == "pgd"]
    assert set(zip(pgd["method"], pgd["param"])) == {("baseline", 0.1), ("baseline", EPS), ("adp", EPS)}  # no 0.4
    clean = df[(df["attack"] == "none")].set_index("method")
    assert clean.loc["baseline", "paper"] == pytest.approx(94.37)  # Table 2, Fashion-MNIST stand-in
    md = (tmp_path / "t.md").read_text()
    warnings = [line for line in md.splitlines() if line.startswith(MASKING_WARNING)]
    assert warnings and all(" ADP: " in line for line in warnings)
    # (c) no longer fires for the saturated ensemble: MORA breaks it, so transfer cannot beat the worst case
    assert {"(a)", "(b)", "(f)"} <= {w.split(": ")[3].split()[0] for w in warnings}
    row = next(line for line in md.splitlines() if line.startswith("| Baseline | ") and f"eps {EPS:g} " in line)
    mine = df[(df["method"] == "baseline") & (df["param"] == EPS) & (df["metric"] == "accuracy_pct")]
    worst = mine[mine["attack"] == "worst_case"]["value"].iloc[0]
    protocol = mine[mine["attack"] == "pgd"]["value"].iloc[0]  # the strong run's own PGD-10, same images
    assert protocol == mine[mine["attack"] == "pgd_10"]["value"].iloc[0]
    assert f"| {protocol:.2f} | " in row and f"{worst:.2f}" in row and f"| {worst - protocol:+.2f} |" in row
    written = pd.read_csv(tmp_path / "t.csv")
    assert set(written.loc[written["metric"] == "passed", "status"]) == {"pass", "warn"}

    only_ordinary = build_strong_table(read_results(files[:1] + [tmp_path / "p.json"]),
                                       REPO / "config" / "paper_results.csv", {}, tmp_path / "u.csv", tmp_path / "u.md")
    assert (only_ordinary.loc[only_ordinary["metric"] == "passed", "status"] == "pass").all()
    assert MASKING_WARNING not in (tmp_path / "u.md").read_text()


def test_l2_twin_stays_in_its_l2_ball_and_builds_its_own_table(tmp_path: Path) -> None:
    """The L2 twin on tiny linear members: every attack's examples inside the L2 ball (the evaluation raises
    otherwise), rows labelled by L2 eps, no paper column, all seven checks; and the workflow plans it as a `strong`
    job of its own per ensemble."""
    from pdd.evaluation.external import as_ensemble
    from pdd.plan import outputs
    from pdd.plan.dag import snakemake_dag

    torch.manual_seed(0)
    x, y = select_images(get_dataset("digits", "test", "."), 30, seed=0)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(64, 10)) for _ in range(3)]
    model = as_ensemble(members, x[:2], 10)
    with torch.no_grad():
        y = model.log_mean_prob(x).argmax(1)  # every image correct: all of them attacked
    s = StrongSettings(norm="l2", apgd_iterations=3, apgd_restarts=1, pgd_steps=(10, 20), pgd_restarts=1,
                       transfer_steps=2, diagnostic_eps=4.0, unbounded_eps=1000.0, diagnostic_steps=5, apgd_targets=2,
                       mora_iterations=3, mora_mixes=(0.0, 1.0), square_queries=10)
    records = evaluate(model, x, y, [0.5], s, CPU)
    found = _by_name(records)
    assert found[("worst_case", 0.5)]["n_robust"] <= min(found[(a, 0.5)]["n_robust"] for a in
                                                        ("pgd_10", "apgd_ce", "apgd_t", "mora", "square"))
    assert found[("pgd_5", 1000.0)]["n_robust"] == 0  # unbounded L2 breaks everything
    # Every record says its threat model, and the L2 model card is built from them (it raised before).
    assert {r["norm"] for r in records} == {"l2"}
    key = {"K": 3, "arch": "linear", "dataset": "digits", "method": "baseline", "seed": 0}
    l2_card = card([{**key, **r} for r in records], 0.5, "L2")
    assert l2_card["eps"] == "0.5" and l2_card["external"] == f"{found[('worst_case', 0.5)]['accuracy_all']:.2f}"
    df = build_strong_table(read_results([_write(tmp_path / "l2.json", records, "baseline")]),
                            REPO / "config" / "paper_results.csv", {"digits": "fashion_mnist"}, tmp_path / "t.csv",
                            tmp_path / "t.md", norm="l2")
    md = (tmp_path / "t.md").read_text()
    assert "L2 eps 0.5" in md and "L-inf eps" not in md.split("Gradient-masking")[0]
    assert df["paper"].isna().all() and set(df["table"]) == {"table_strong_evaluation_l2"}
    header = next(line for line in md.splitlines() if "(a) large eps" in line)
    assert {"(e) Square <= gradient attacks", "(f) no zero gradients", "(g) deterministic outputs"} <= {
        cell.strip(" |") for cell in header.split(" | ")}
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    files = outputs.inputs(demo, "table_strong_evaluation_l2")
    assert files and all(f.endswith("/strong_l2/evaluation.json") for f in files)
    writer = {str(f): job.rule.name for job in snakemake_dag(REPO / "config" / "demo.yaml", tmp_path).jobs
              for f in job.output}  # Snakemake's own DAG says which rule writes each file
    assert {writer[f] for f in files} == {"strong"}


def test_misclassified_images_cost_the_strong_evaluation_no_attack_passes(models, images) -> None:
    """At an eps no image breaks at (1e-5), every attack's passes are proportional to the images it runs on; with
    half the images misclassified (wrong labels on the second half) the attacks must cost exactly half (but for
    ART's fixed probes), and the flags of the misclassified images stay False."""
    from pdd.evaluation.cost_meter import CostMeter

    x = images[0][:40]
    pred = predict(models[0], x, CPU)
    wrong = pred.clone()
    wrong[20:] = (pred[20:] + 1) % 10
    tiny = StrongSettings(apgd_iterations=2, apgd_restarts=2, pgd_steps=(1, 2), pgd_restarts=2, transfer_steps=2,
                          apgd_targets=2, mora_iterations=2, mora_mixes=(0.5,), square_queries=2, batch_size=200)
    counts = []
    for labels in (pred, wrong):
        with CostMeter() as cost:
            results = attack_eps(models[0], x, labels, pred == labels, 1e-5, tiny, CPU, models[1])
        counts.append((cost["forward_images"], cost["backward_images"]))
    assert counts[0][0] > 0 and counts[0][1] > 0
    # ART's AutoPGD checks, once per construction, whether the classifier outputs probabilities: one forward on
    # one image of ones, whatever the batch. Constructions: APGD-CE, APGD-DLR, APGD-T x 2 targets = 4 forwards.
    probes = 4
    assert counts[1] == (probes + (counts[0][0] - probes) // 2, counts[0][1] // 2)
    assert all(not r["robust"][20:].any() and r["robust"][:20].all() for r in results.values())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_an_attack_returning_non_finite_pixels_is_refused(bad: float) -> None:
    """NaN compares false with every bound, so a NaN image would pass a plain range check and be scored."""
    from pdd.evaluation.strong import _check_budget

    x = torch.full((2, 1, 4, 4), 0.5)
    x_adv = x.clone()
    x_adv[1, 0, 2, 2] = bad
    with pytest.raises(RuntimeError, match="non-finite"):
        _check_budget("square", x, x_adv, 0.1, "linf")
    _check_budget("square", x, x.clone(), 0.1, "l2")  # a finite image within the ball passes
    x_adv[1, 0, 2, 2] = 0.7  # finite but outside the L-inf ball
    with pytest.raises(RuntimeError, match="left its linf ball"):
        _check_budget("square", x, x_adv, 0.1, "linf")
