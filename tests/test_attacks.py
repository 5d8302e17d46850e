"""The attack protocol: budgets, both accuracy conventions, strength ordering, and the transfer path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdd.data import get_dataset
from pdd.evaluation.attacks import (
    AttackSettings,
    art_classifier,
    build_attack,
    generate,
    jsma_targets,
    predict,
    run_attack,
    score,
    select_images,
)
from pdd.evaluation.cost_meter import CostMeter
from pdd.evaluation.records import unpack_flags
from pdd.models import Ensemble, EnsembleSpec, load_ensemble
from pdd.training import TrainConfig, train

CPU = torch.device("cpu")
FAST = AttackSettings(batch_size=200, cw_max_iter=5, cw_binary_search_steps=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Ensemble:
    """A small digits ensemble trained for a few epochs (clean accuracy well above 90%)."""
    root = tmp_path_factory.mktemp("model")
    train(TrainConfig("digits", "baseline", 2, width=4, epochs=4), root, root / "m.pt", root / "log.csv")
    return load_ensemble(root / "m.pt")


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    return select_images(get_dataset("digits", "test", "."), 120, seed=0)


def test_select_images_is_a_fixed_subset(images) -> None:
    x, y = images
    x2, y2 = select_images(get_dataset("digits", "test", "."), 120, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2) and x.shape == (120, 1, 8, 8)
    x3, _ = select_images(get_dataset("digits", "test", "."), 120, seed=1)
    assert not torch.equal(x, x3)
    assert len(select_images(get_dataset("digits", "test", "."), None)[1]) == 360


def test_score_both_conventions_by_hand() -> None:
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    clean = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 0, 0])   # 8 of 10 correct
    adv = torch.tensor([0, 1, 2, 0, 0, 0, 0, 0, 8, 0])     # robust: images 0,1,2; image 8 flips to correct
    s = score(y, clean, adv)
    assert (s["n_images"], s["n_clean_correct"], s["n_robust"], s["n_adv_correct"]) == (10, 8, 3, 4)
    assert s["clean_accuracy"] == pytest.approx(80.0)
    assert s["accuracy_on_correct"] == pytest.approx(100 * 3 / 8)   # the paper's convention
    assert s["accuracy_all"] == pytest.approx(40.0)                  # counts image 8 too


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd", "pgd_l2"])
def test_eps_zero_changes_nothing(trained, images, attack: str) -> None:
    x, y = images
    x_adv = generate(trained, x, y, attack, 0.0, FAST, CPU)
    assert torch.equal(x_adv, x)
    result = run_attack(trained, x, y, attack, 0.0, FAST, CPU)
    assert result["accuracy_on_correct"] == 100.0
    assert result["accuracy_all"] == pytest.approx(result["clean_accuracy"])


@pytest.mark.parametrize("attack, eps", [("fgsm", 0.1), ("bim", 0.1), ("pgd", 0.1), ("pgd_l2", 1.0)])
def test_adversarial_images_respect_the_budget(trained, images, attack: str, eps: float) -> None:
    x, y = images
    x_adv = generate(trained, x, y, attack, eps, FAST, CPU)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv - x).flatten(1)
    if attack == "pgd_l2":
        assert delta.norm(dim=1).max() <= eps + 1e-4
    else:
        assert delta.abs().max() <= eps + 1e-6
    assert delta.abs().max() > 0  # it did move


@pytest.mark.parametrize("attack, param", [("jsma", 0.1), ("cw", 0.1)])
def test_jsma_and_cw_stay_in_range(trained, images, attack: str, param: float) -> None:
    x, y = images[0][:20], images[1][:20]
    x_adv = generate(trained, x, y, attack, param, FAST, CPU)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    if attack == "jsma":  # gamma bounds the changed pixels; ART changes a pair per step, so one pair may overshoot
        assert ((x_adv != x).flatten(1).sum(1) <= 0.1 * 64 + 2).all()


def test_jsma_targets_are_other_classes_from_a_fixed_seed() -> None:
    labels = torch.arange(10).repeat(50)
    t = jsma_targets(labels, 10, seed=0)
    assert t.shape == (500, 10) and (t.sum(1) == 1).all()
    assert (t.argmax(1) != labels.numpy()).all()
    assert np.array_equal(t, jsma_targets(labels, 10, seed=0))
    assert not np.array_equal(t, jsma_targets(labels, 10, seed=1))
    assert len(set(t.argmax(1))) == 10


def test_pgd_drives_accuracy_down_and_beats_fgsm(trained, images) -> None:
    x, y = images
    clean = run_attack(trained, x, y, "none", 0.0, FAST, CPU)["clean_accuracy"]
    assert clean > 90
    pgd = run_attack(trained, x, y, "pgd", 0.3, FAST, CPU)
    fgsm = run_attack(trained, x, y, "fgsm", 0.3, FAST, CPU)
    assert pgd["accuracy_all"] < 0.3 * clean
    assert pgd["accuracy_all"] <= fgsm["accuracy_all"]


def test_transfer_scores_surrogate_examples_on_the_target(trained, images) -> None:
    x, y = images
    torch.manual_seed(3)
    surrogate = Ensemble(EnsembleSpec("resnet18", 2, 10, 1, width=2)).eval()
    result = run_attack(trained, x, y, "fgsm", 0.2, FAST, CPU, surrogate=surrogate)
    x_adv = generate(surrogate, x, y, "fgsm", 0.2, FAST, CPU)
    expected = score(y, predict(trained, x, CPU), predict(trained, x_adv, CPU))
    assert result["accuracy_on_correct"] == pytest.approx(expected["accuracy_on_correct"])
    white = run_attack(trained, x, y, "fgsm", 0.2, FAST, CPU)
    assert result["accuracy_all"] != white["accuracy_all"]  # crafted elsewhere: a different attack


@pytest.mark.parametrize("settings", [AttackSettings(), AttackSettings(steps=30, step_fraction=0.05, random_starts=3)])
def test_attacks_are_built_with_the_protocol_parameters(settings: AttackSettings) -> None:
    """BIM and PGD: step = eps * step_fraction (eps/10 by default), `steps` iterations; BIM has no random start,
    PGD `random_starts` (one by default); the fixed C&W and JSMA parameters as given."""
    model = Ensemble(EnsembleSpec("resnet18", 2, 10, 1, width=2))
    clf = art_classifier(model, (1, 8, 8), 10, CPU)
    eps = 0.2
    pgd_starts = settings.random_starts
    for name, norm, starts in [("bim", np.inf, 0), ("pgd", np.inf, pgd_starts), ("pgd_l2", 2, pgd_starts)]:
        attack = build_attack(name, eps, clf, settings)
        for a in (attack, attack._attack):               # the wrapper and the ART implementation that runs
            assert a.eps == eps and a.norm == norm, name
            assert a.eps_step == pytest.approx(eps * settings.step_fraction), name
            assert a.max_iter == settings.steps and a.num_random_init == starts, name
            assert not a.targeted, name
    fgsm = build_attack("fgsm", eps, clf, settings)
    assert (fgsm.eps, fgsm.norm, fgsm.num_random_init, fgsm.targeted, fgsm.minimal) == (eps, np.inf, 0, False, False)
    jsma = build_attack("jsma", 0.1, clf, settings)
    assert (jsma.theta, jsma.gamma) == (settings.jsma_theta, 0.1)
    cw = build_attack("cw", 0.5, clf, settings)
    assert (cw.initial_const, cw.confidence, cw.learning_rate, cw.max_iter, cw.binary_search_steps) == (
        0.5, settings.cw_confidence, settings.cw_learning_rate, settings.cw_max_iter, settings.cw_binary_search_steps)


@pytest.mark.parametrize("steps", [1, 3])
def test_bim_moves_one_step_of_eps_over_ten_per_iteration(images, steps: int) -> None:
    """BIM starts at x (no random start) and moves eps/10 per iteration: after `steps` iterations no pixel has
    moved more than steps * eps / 10, and some pixel has moved that far (sign gradient, no clipping at 0.5)."""
    torch.manual_seed(0)
    model = Ensemble(EnsembleSpec("resnet18", 2, 10, 1, width=2)).eval()
    x, y = images[0][:40], images[1][:40]
    x = 0.25 + 0.5 * x                                 # room to move eps in both directions
    eps = 0.2
    x_adv = generate(model, x, y, "bim", eps, AttackSettings(steps=steps, batch_size=200), CPU)
    moved = (x_adv - x).abs().amax()
    assert moved <= steps * eps / 10 + 1e-6
    assert moved >= steps * eps / 10 - 1e-6


def _crafted_on_every_image(model, x, y, attack: str, param: float, settings: AttackSettings) -> dict:
    """The scoring before issue 22: craft on all images, misclassified ones too, then score."""
    return score(y, predict(model, x, CPU), predict(model, generate(model, x, y, attack, param, settings, CPU), CPU))


@pytest.mark.parametrize("attack", ["fgsm", "bim"])
def test_deterministic_attacks_score_the_same_when_misclassified_images_are_skipped(trained, images, attack) -> None:
    """FGSM and BIM have no randomness and each image's example depends on that image alone (eval mode), so
    crafting on the initially correct images only changes no flag and no paper number."""
    x, y = images
    before = _crafted_on_every_image(trained, x, y, attack, 0.1, FAST)
    after = run_attack(trained, x, y, attack, 0.1, FAST, CPU)
    assert 0 < after["n_robust"] < after["n_clean_correct"] < len(y)  # some misclassified, some fooled
    for field in ("n_clean_correct", "n_robust", "accuracy_on_correct", "clean_flags", "robust_flags"):
        assert after[field] == before[field], field


def test_pgd_scores_within_a_few_images_when_misclassified_images_are_skipped(trained, images) -> None:
    """PGD's random starts are drawn per crafted batch, so skipping images changes the draws: the robust count
    moves like another seed's (seeds 0-25 on a 2-epoch digits model spread over 24-41 of 324 images)."""
    x, y = images
    before = _crafted_on_every_image(trained, x, y, "pgd", 0.1, FAST)
    after = run_attack(trained, x, y, "pgd", 0.1, FAST, CPU)
    assert after["n_clean_correct"] == before["n_clean_correct"]
    assert abs(after["n_robust"] - before["n_robust"]) <= 3


def test_misclassified_images_cost_no_attack_passes(trained, images) -> None:
    """The ledger by hand, FGSM on N images: 1 forward each to classify them; then per crafted image 1 forward +
    1 backward (ART's FGSM: one loss gradient, no success check) and 1 forward to score it. All N correct:
    3N forward, N backward. Half misclassified: N + N/2 + N/2 = 2N forward, N/2 backward."""
    x, y = images
    n = len(y)
    pred = predict(trained, x, CPU)
    wrong = pred.clone()
    wrong[n // 2:] = (pred[n // 2:] + 1) % 10  # labels the model gets wrong on the second half
    with CostMeter(trained) as all_correct:
        run_attack(trained, x, pred, "fgsm", 0.1, FAST, CPU)
    with CostMeter(trained) as half:
        result = run_attack(trained, x, wrong, "fgsm", 0.1, FAST, CPU)
    assert (all_correct["forward_images"], all_correct["backward_images"]) == (3 * n, n)
    assert (half["forward_images"], half["backward_images"]) == (2 * n, n // 2)
    assert result["n_clean_correct"] == n // 2 and result["n_images"] == n  # records still cover every image
    assert not unpack_flags(result["robust_flags"], n)[n // 2:].any()


def test_each_attack_declares_the_settings_its_builder_reads() -> None:
    """A job's params hold only the settings its attacks read (`Attack.reads`): read from the builders' source
    (every `s.<field>` in each BUILDERS entry's function), so a builder that starts reading an undeclared setting
    fails here instead of missing its reruns."""
    import ast
    import inspect

    from pdd.evaluation import art_attacks
    from pdd.settings.attacks import ATTACKS, SHARED_SETTINGS, settings_read

    tree = ast.parse(inspect.getsource(art_attacks))
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    builders = next(n.value for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "BUILDERS")
    for key, value in zip(builders.keys, builders.values):
        function = functions[value.func.id if isinstance(value, ast.Call) else value.id]
        read = {n.attr for n in ast.walk(function) if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name) and n.value.id == "s"}
        assert read - set(SHARED_SETTINGS) == set(ATTACKS[key.value].reads), key.value
    assert set(builders_names := [k.value for k in builders.keys]) == set(ATTACKS) - {"none"}, builders_names
    assert settings_read(["none"]) == ("batch_size", "seed")
    assert settings_read(["cw", "fgsm"])[:2] == ("cw_confidence", "cw_learning_rate")
