"""Strong ('honest') white-box evaluation of an ensemble, beside the paper's 10-step protocol.

The paper scores 10-step PGD on log(mean softmax). Diversity defences judged that way can look more
robust than they are (ADP fell to converged attacks, Tramer et al. 2020). Here, per eps (L-inf):
APGD-CE and APGD-DLR (ART, with restarts) and PGD at several step counts with restarts, all on
log(mean softmax) through `pdd.evaluation.attacks.art_classifier`. An image counts as robust only if the
ensemble classifies it correctly before the attack and after every attack (worst case per image).
Four gradient-masking diagnostics (Carlini et al. 2019, "On evaluating adversarial robustness")
each give pass / warn:

- eps_growth:  accuracy at a large eps (default 0.5) is at most a few % of the initially correct;
- unbounded:   at an unbounded eps (1.0 on [0, 1] inputs) PGD succeeds on every image;
- transfer:    examples crafted on an independent surrogate do not beat the white-box worst case;
- convergence: more PGD steps never raise accuracy (10 >= 50 >= 200 steps, up to `noise_images`);
- gradient_free: Square (score-based, no gradients) never beats the gradient-based worst case by more than
  `noise_images` images (Athalye et al. 2018: a black-box attack beating white-box ones means masked gradients);
- zero_gradients and deterministic: AutoAttack's flags (Croce & Hein 2020, `checks.py`): no correctly classified
  image has an exactly zero input gradient of the CE on log(mean softmax), and two forward passes agree.

Since issue 19 also: APGD-T (ART, targeted, DLR loss, the top `apgd_targets` other classes as AutoAttack's
standard version), MORA (`pdd.evaluation.mora`, the model-reweighing attack on ensembles) and Square (ART, score
based, `square_queries` queries) join the worst case. `norm` ('linf' or 'l2') sets the threat model of every
attack and diagnostic: the L2 twin runs the same evaluation at L2 budgets.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from pdd.evaluation.attacks import AttackSettings, art_generate, generate, one_hot, predict
from pdd.evaluation.mora import mora
from pdd.evaluation.records import pack_flags
from pdd.models import Ensemble
from pdd.settings.strong import StrongSettings

APGD_LOSSES = {"apgd_ce": "cross_entropy", "apgd_dlr": "difference_logits_ratio"}
GRADIENT_FREE = ("square",)  # attacks that read only the model's scores (check (e) compares them with the rest)
DETERMINISM_TOLERANCE = 1e-5  # log-probabilities; float kernels are deterministic on one input within this
ART_NORMS = {"linf": np.inf, "l2": 2}


def _pgd_settings(s: StrongSettings, steps: int, seed: int) -> AttackSettings:
    return AttackSettings(steps=steps, step_fraction=s.step_fraction, random_starts=1, batch_size=s.batch_size,
                          seed=seed)


def pgd(model: Ensemble, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, seed: int, s: StrongSettings,
        device: torch.device) -> torch.Tensor:
    """PGD in `s.norm` (ART, one random start, step eps * step_fraction): with steps=10 the paper's attack."""
    return generate(model, x, y, "pgd" if s.norm == "linf" else "pgd_l2", eps, _pgd_settings(s, steps, seed), device)


def apgd(model: Ensemble, x: torch.Tensor, y: torch.Tensor, eps: float, loss: str, s: StrongSettings,
         device: torch.device) -> torch.Tensor:
    """ART's AutoPGD in `s.norm` with `loss` ('cross_entropy' or 'difference_logits_ratio') on log(mean softmax);
    initial step 2 * eps as in AutoAttack, `apgd_restarts` random starts (later ones only on unbroken images)."""
    return _apgd(model, x, one_hot(y, model.spec.num_classes), eps, loss, s, device, targeted=False,
                 restarts=s.apgd_restarts)


def _apgd(model: Ensemble, x: torch.Tensor, labels: np.ndarray, eps: float, loss: str, s: StrongSettings,
          device: torch.device, targeted: bool, restarts: int) -> torch.Tensor:
    from art.attacks.evasion import AutoProjectedGradientDescent

    if len(x) == 0 or eps == 0:
        return x.clone()

    def make_attack(classifier):
        return AutoProjectedGradientDescent(
            classifier, norm=ART_NORMS[s.norm], eps=eps, eps_step=2 * eps, max_iter=s.apgd_iterations,
            targeted=targeted, nb_random_init=restarts, batch_size=s.batch_size, loss_type=loss, verbose=False)

    return art_generate(model, x, labels, make_attack, s.seed, device)


def target_classes(model: Ensemble, x: torch.Tensor, count: int, device: torch.device, batch_size: int
                   ) -> torch.Tensor:
    """[N, T] the classes ranked 2nd .. (T+1)th by the ensemble's clean output, T = min(count, L - 1): APGD-T's
    targets, as AutoAttack picks them (for a correctly classified image, the most likely wrong classes)."""
    with torch.inference_mode():
        scores = torch.cat([model.log_mean_prob(b.to(device)).cpu() for b in x.split(batch_size)])
    return scores.argsort(dim=1, descending=True)[:, 1:1 + min(count, scores.shape[1] - 1)]


def apgd_targeted(model: Ensemble, x: torch.Tensor, y: torch.Tensor, eps: float, s: StrongSettings,
                  device: torch.device) -> torch.Tensor:
    """APGD-T: ART's targeted AutoPGD with the DLR loss, one start per target class (`target_classes`), each run
    only on the images no earlier target broke; a broken image keeps the example that broke it.

    ART's targeted DLR is -(z_t - z_i) / (z_1 - z_3) (i: the largest class other than t), AutoAttack's divides by
    z_1 - (z_3 + z_4) / 2; with fewer than 3 classes (where DLR is undefined) the loss is cross-entropy."""
    x_adv = x.clone()
    if len(x) == 0 or eps == 0:
        return x_adv
    loss = "difference_logits_ratio" if model.spec.num_classes >= 3 else "cross_entropy"
    targets = target_classes(model, x, s.apgd_targets, device, s.batch_size)
    robust = still_correct(model, x, y, device, s.batch_size)
    for rank in range(targets.shape[1]):
        index = robust.nonzero().flatten()
        if len(index) == 0:
            break
        found = _apgd(model, x[index], one_hot(targets[index, rank], model.spec.num_classes), eps, loss, s, device,
                      targeted=True, restarts=1)
        broken = ~still_correct(model, found, y[index], device, s.batch_size)
        x_adv[index[broken]] = found[broken]
        robust[index[broken]] = False
    return x_adv


def square(model: Ensemble, x: torch.Tensor, y: torch.Tensor, eps: float, s: StrongSettings,
           device: torch.device) -> torch.Tensor:
    """ART's Square attack (Andriushchenko et al. 2020) in `s.norm`: random square updates accepted when they lower
    the margin of log(mean softmax); no gradients, `square_queries` iterations, one start, p_init 0.8 (AutoAttack)."""
    from art.attacks.evasion import SquareAttack

    if len(x) == 0 or eps == 0:
        return x.clone()

    def make_attack(classifier):
        return SquareAttack(classifier, norm=ART_NORMS[s.norm], max_iter=s.square_queries, eps=eps, p_init=0.8,
                            nb_restarts=1, batch_size=s.batch_size, verbose=False)

    return art_generate(model, x, one_hot(y, model.spec.num_classes), make_attack, s.seed, device)


def still_correct(model: Ensemble, x_adv: torch.Tensor, y: torch.Tensor, device: torch.device,
                  batch_size: int) -> torch.Tensor:
    """bool [N]: the ensemble classifies each (adversarial) image correctly."""
    return predict(model, x_adv, device, batch_size) == y


def _check_budget(name: str, x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str = "linf") -> None:
    """An attack that leaves its L-inf / L2 ball or [0, 1], or returns NaN or infinite pixels (which every comparison
    below would let through), would make every number here meaningless."""
    if not len(x):
        return
    if not torch.isfinite(x_adv).all():
        raise RuntimeError(f"{name} at eps {eps} returned non-finite pixels")
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax() if norm == "linf" else delta.norm(dim=1).amax()
    if size > eps * (1 + 1e-5) + 1e-5 or x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"{name} at eps {eps} left its {norm} ball or [0, 1]")


def _apgd_losses(num_classes: int) -> dict[str, str]:
    """APGD variants that apply: DLR needs at least three classes."""
    return {k: v for k, v in APGD_LOSSES.items() if num_classes >= 3 or k == "apgd_ce"}


def attack_eps(model: Ensemble, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor, eps: float,
               s: StrongSettings, device: torch.device, surrogate: Ensemble | None = None) -> dict[str, dict]:
    """Every attack at one eps: {name: {robust: bool [N], steps, restarts, seconds}}, plus 'worst_case'
    (robust iff robust under every white-box attack) and, with a surrogate, 'transfer'.

    `clean` is the bool [N] of images the ensemble classifies correctly without attack; robust implies clean.
    Every attack runs on those images only (a misclassified image is its own adversarial example: no passes on
    it), and the flags come back over all N."""
    out: dict[str, dict] = {}
    crafted = clean.nonzero().flatten()
    x, y = x[crafted], y[crafted]

    def record(name: str, robust: torch.Tensor, steps: int, restarts: int, start: float) -> None:
        full = torch.zeros_like(clean)
        full[crafted] = robust
        out[name] = {"robust": full & clean, "steps": steps, "restarts": restarts,
                     "seconds": time.perf_counter() - start}

    for steps in s.pgd_steps:  # the convergence check; PGD-10 is the paper's protocol on these images
        start = time.perf_counter()
        x_adv = pgd(model, x, y, eps, steps, s.seed, s, device)
        _check_budget(f"pgd_{steps}", x, x_adv, eps, s.norm)
        record(f"pgd_{steps}", still_correct(model, x_adv, y, device, s.batch_size), steps, 1, start)
    if s.pgd_restarts > 1:  # more random starts at the largest step count, only on the images still unbroken
        start, steps = time.perf_counter(), s.pgd_steps[-1]
        robust = out[f"pgd_{steps}"]["robust"][crafted]
        for restart in range(1, s.pgd_restarts):
            index = robust.nonzero().flatten()
            if len(index) == 0:
                break
            x_adv = pgd(model, x[index], y[index], eps, steps, s.seed + restart, s, device)
            _check_budget(s.restarts_name, x[index], x_adv, eps, s.norm)
            robust[index] &= still_correct(model, x_adv, y[index], device, s.batch_size)
        record(s.restarts_name, robust, steps, s.pgd_restarts, start)
    for name, loss in _apgd_losses(model.spec.num_classes).items():
        start = time.perf_counter()
        x_adv = apgd(model, x, y, eps, loss, s, device)
        _check_budget(name, x, x_adv, eps, s.norm)
        record(name, still_correct(model, x_adv, y, device, s.batch_size), s.apgd_iterations, s.apgd_restarts, start)
    start = time.perf_counter()
    x_adv = apgd_targeted(model, x, y, eps, s, device)
    _check_budget("apgd_t", x, x_adv, eps, s.norm)
    record("apgd_t", still_correct(model, x_adv, y, device, s.batch_size), s.apgd_iterations,
           min(s.apgd_targets, model.spec.num_classes - 1), start)
    start = time.perf_counter()
    x_adv = mora(model, x, y, eps, s.norm, s.mora_iterations, s.mora_mixes, s.seed, s.batch_size) if len(x) else x
    _check_budget("mora", x, x_adv, eps, s.norm)
    record("mora", still_correct(model, x_adv, y, device, s.batch_size), s.mora_iterations, len(s.mora_mixes), start)
    start = time.perf_counter()
    x_adv = square(model, x, y, eps, s, device)
    _check_budget("square", x, x_adv, eps, s.norm)
    record("square", still_correct(model, x_adv, y, device, s.batch_size), s.square_queries, 1, start)
    worst = clean.clone()
    for result in out.values():
        worst &= result["robust"]
    out["worst_case"] = {"robust": worst, "steps": None, "restarts": None,
                         "seconds": sum(r["seconds"] for r in out.values())}
    if surrogate is not None:
        start = time.perf_counter()
        x_adv = pgd(surrogate, x, y, eps, s.transfer_steps, s.seed, s, device)
        _check_budget("transfer", x, x_adv, eps, s.norm)
        record("transfer", still_correct(model, x_adv, y, device, s.batch_size), s.transfer_steps, 1, start)
    return out


def percent(robust: torch.Tensor, clean: torch.Tensor) -> float:
    """Robust accuracy in % of the initially correct images (the paper's convention)."""
    return 100.0 * int(robust.sum()) / max(int(clean.sum()), 1)


def _never_beaten(gaps: list[int], lines: list[str], passed: str, not_run: str) -> dict:
    """A check that another attack never leaves fewer images than the reference (checks (c) and (e)): its record
    from the per-eps gaps (reference minus other) and the lines of the eps where it did; None when not run."""
    return {"passed": (not lines) if gaps else None, "param": None,
            "value": float(max(gaps)) if gaps else float("nan"),
            "detail": "; ".join(lines) if lines else (passed if gaps else not_run)}


def diagnose(per_eps: dict[float, dict[str, dict]], clean: torch.Tensor, large: torch.Tensor | None,
             unbounded: torch.Tensor | None, s: StrongSettings, zero_gradients: torch.Tensor | None = None,
             output_change: float | None = None) -> dict[str, dict]:
    """The checks from the attack results: {name: {passed: bool | None, value, detail}}.

    `per_eps` is `attack_eps`'s result per eps; `large` and `unbounded` the robust masks of PGD at
    `diagnostic_eps` and `unbounded_eps`; `zero_gradients` (bool [N]) and `output_change` AutoAttack's flags
    (`zero_gradient_images`, `output_change`). passed is None where a check could not run (no surrogate)."""
    found: dict[str, dict] = {}
    n_clean = int(clean.sum())
    if large is not None:
        acc = percent(large, clean)
        found["eps_growth"] = {
            "passed": acc <= s.diagnostic_max_accuracy, "param": s.diagnostic_eps, "value": acc,
            "detail": f"PGD-{s.diagnostic_steps} at eps {s.diagnostic_eps:g} leaves {acc:.1f}% "
                      f"(limit {s.diagnostic_max_accuracy:g}%)"}
    if unbounded is not None:
        n = int(unbounded.sum())
        found["unbounded"] = {
            "passed": n == 0, "param": s.unbounded_eps, "value": percent(unbounded, clean),
            "detail": f"PGD-{s.diagnostic_steps} at eps {s.unbounded_eps:g} leaves {n} of {n_clean} images robust"}
    gaps, lines = [], []
    for eps, results in per_eps.items():
        if "transfer" in results:
            n_transfer, n_worst = int(results["transfer"]["robust"].sum()), int(results["worst_case"]["robust"].sum())
            gaps.append(n_worst - n_transfer)
            if n_transfer < n_worst - s.noise_images:
                lines.append(f"eps {eps:g}: transfer leaves {n_transfer} images, white-box {n_worst}")
    found["transfer"] = _never_beaten(gaps, lines, "transfer never beats the white-box worst case",
                                      "no surrogate: not checked")
    lines, rises = [], []
    for eps, results in per_eps.items():
        counts = [(steps, int(results[f"pgd_{steps}"]["robust"].sum())) for steps in s.pgd_steps]
        for (fewer, n_fewer), (more, n_more) in zip(counts, counts[1:]):
            rises.append(n_more - n_fewer)
            if n_more > n_fewer + s.noise_images:
                lines.append(f"eps {eps:g}: PGD-{more} leaves {n_more} images, PGD-{fewer} {n_fewer}")
    found["convergence"] = {
        "passed": not lines, "param": None, "value": float(max(rises)) if rises else 0.0,
        "detail": "; ".join(lines) if lines else "more PGD steps never raised accuracy"}
    lines, gaps = [], []
    for eps, results in per_eps.items():
        free = [name for name in GRADIENT_FREE if name in results]
        if not free:
            continue
        gradient = clean.clone()
        for name, r in results.items():
            if name not in (*GRADIENT_FREE, "transfer", "worst_case"):
                gradient &= r["robust"]
        n_gradient = int(gradient.sum())
        for name in free:
            n_free = int(results[name]["robust"].sum())
            gaps.append(n_gradient - n_free)
            if n_free < n_gradient - s.noise_images:
                lines.append(f"eps {eps:g}: {name} leaves {n_free} images, the gradient-based attacks {n_gradient}")
    found["gradient_free"] = _never_beaten(gaps, lines, "the gradient-free attack never beats the gradient-based "
                                           "worst case", "not run")
    if zero_gradients is not None:
        n = int((zero_gradients & clean).sum())
        found["zero_gradients"] = {
            "passed": n == 0, "param": None, "value": float(n),
            "detail": f"{n} of {n_clean} correctly classified images have an exactly zero input gradient"}
    if output_change is not None:
        found["deterministic"] = {
            "passed": output_change <= DETERMINISM_TOLERANCE, "param": None, "value": output_change,
            "detail": f"two forward passes differ by up to {output_change:.3g} (log-probabilities; tolerance "
                      f"{DETERMINISM_TOLERANCE:g})"}
    return found


def zero_gradient_images(model: Ensemble, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                         batch_size: int) -> torch.Tensor:
    """bool [N]: the input gradient of the cross-entropy on log(mean softmax) is exactly zero (AutoAttack's flag:
    no gradient-based attack can move such an image; a saturated softmax or a non-differentiable layer does it)."""
    found = []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb = xb.to(device).requires_grad_(True)
        loss = torch.nn.functional.nll_loss(model.log_mean_prob(xb), yb.to(device), reduction="sum")
        (grad,) = torch.autograd.grad(loss, xb)
        found.append((grad.flatten(1).abs().sum(1) == 0).cpu())
    return torch.cat(found) if found else torch.zeros(0, dtype=torch.bool)


@torch.inference_mode()
def output_change(model: Ensemble, x: torch.Tensor, device: torch.device, batch_size: int) -> float:
    """Largest difference between two forward passes' log(mean softmax) on the same images (AutoAttack's check for
    randomised defences: a model whose output changes between calls needs EOT, which none of these attacks use)."""
    change = 0.0
    for xb in x.split(batch_size):
        xb = xb.to(device)
        first, second = model.log_mean_prob(xb), model.log_mean_prob(xb)
        if not torch.equal(torch.isfinite(first), torch.isfinite(second)):
            return math.inf
        finite = torch.isfinite(first)
        if finite.any():
            change = max(change, float((first - second)[finite].abs().amax()))
    return change


def evaluate(model: Ensemble, x: torch.Tensor, y: torch.Tensor, eps_values: list[float], s: StrongSettings,
             device: torch.device, surrogate: Ensemble | None = None, diagnostics: bool = True) -> list[dict]:
    """The strong evaluation of one ensemble as result records (the shape `pdd.reports.tables.read_results` reads):
    clean accuracy, every attack and the worst case per eps, then one record per diagnostic."""
    model.eval()
    clean = still_correct(model, x, y, device, s.batch_size)
    n, n_clean = len(y), int(clean.sum())

    def accuracy(threat: str, attack: str, eps, robust: torch.Tensor, **extra) -> dict:
        return {"threat": threat, "attack": attack, "param": eps, "metric": "accuracy_pct",
                "value": percent(robust, clean), "accuracy_all": 100.0 * int(robust.sum()) / max(n, 1),
                "n_robust": int(robust.sum()), "n_clean_correct": n_clean, "n_images": n,
                "robust_flags": pack_flags(robust), **extra}

    records = [accuracy("whitebox", "none", None, clean, clean_accuracy=100.0 * n_clean / max(n, 1))]
    records[0]["value"] = 100.0 * n_clean / max(n, 1)  # clean accuracy over all images, as in Table 2
    per_eps = {}
    for eps in eps_values:
        per_eps[eps] = attack_eps(model, x, y, clean, eps, s, device, surrogate)
        for name, r in per_eps[eps].items():
            threat = "blackbox_oblivious" if name == "transfer" else "whitebox"
            records.append(accuracy(threat, name, eps, r["robust"], steps=r["steps"], restarts=r["restarts"],
                                    seconds=r["seconds"]))
    large = unbounded = None
    if diagnostics:
        for eps in (s.diagnostic_eps, s.unbounded_eps):
            start = time.perf_counter()
            robust = torch.zeros_like(clean)  # on the initially correct images only, as every attack here
            x_adv = pgd(model, x[clean], y[clean], eps, s.diagnostic_steps, s.seed, s, device)
            robust[clean] = still_correct(model, x_adv, y[clean], device, s.batch_size)
            records.append(accuracy("diagnostic", f"pgd_{s.diagnostic_steps}", eps, robust, steps=s.diagnostic_steps,
                                    restarts=1, seconds=time.perf_counter() - start))
            large, unbounded = (robust, unbounded) if eps == s.diagnostic_eps else (large, robust)
    flags = (None, None)
    if diagnostics:  # the zero-gradient flag counts initially correct images only, so only they are run
        zero = torch.zeros_like(clean)
        zero[clean] = zero_gradient_images(model, x[clean], y[clean], device, s.batch_size)
        flags = (zero, output_change(model, x, device, s.batch_size))
    for name, d in diagnose(per_eps, clean, large, unbounded, s, *flags).items():
        not_run = d["passed"] is None
        records.append({"threat": "diagnostic", "attack": name, "param": d["param"], "metric": "passed",
                        "value": None if not_run else float(d["passed"]), "measure": None if not_run else d["value"],
                        "detail": d["detail"]})
    return [{**r, "norm": s.norm} for r in records]  # the threat model of every number (model cards, claims)
