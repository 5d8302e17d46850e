"""How each attack of the registry (`pdd.settings.attacks.ATTACKS`) is built: ART's attack objects, and the
project's C&W loop (`pdd.evaluation.cw`). Evaluation code only: an edit here reruns attack jobs, never a training."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pdd.settings.attacks import AttackSettings


def _evasion():
    """ART's evasion attacks (imported on first use: importing ART is slow)."""
    from art.attacks import evasion

    return evasion


def _fgsm(eps: float, classifier, s: AttackSettings):
    return _evasion().FastGradientMethod(classifier, norm=math.inf, eps=eps, batch_size=s.batch_size)


def _bim(eps: float, classifier, s: AttackSettings):
    return _evasion().BasicIterativeMethod(classifier, eps=eps, eps_step=eps * s.step_fraction, max_iter=s.steps,
                                           batch_size=s.batch_size, verbose=False)


def _pgd(norm: float) -> Callable[[float, Any, AttackSettings], Any]:
    def build(eps: float, classifier, s: AttackSettings):
        return _evasion().ProjectedGradientDescent(
            classifier, norm=norm, eps=eps, eps_step=eps * s.step_fraction, max_iter=s.steps,
            num_random_init=s.random_starts, batch_size=s.batch_size, verbose=False)

    return build


def _jsma(gamma: float, classifier, s: AttackSettings):
    return _evasion().SaliencyMapMethod(classifier, theta=s.jsma_theta, gamma=gamma, batch_size=s.batch_size,
                                        verbose=False)


def _cw(c: float, classifier, s: AttackSettings):
    from pdd.evaluation.cw import CarliniL2  # ART's CarliniL2Method with the reference's early abort (imports ART)

    return CarliniL2(
        classifier, abort_early=s.cw_abort_early, confidence=s.cw_confidence, learning_rate=s.cw_learning_rate,
        binary_search_steps=s.cw_binary_search_steps, max_iter=s.cw_max_iter, initial_const=c,
        batch_size=s.batch_size, verbose=False)


BUILDERS: dict[str, Callable[[float, Any, AttackSettings], Any]] = {
    "fgsm": _fgsm, "bim": _bim, "pgd": _pgd(math.inf), "pgd_l2": _pgd(2), "jsma": _jsma, "cw": _cw,
}  # (param, ART classifier, settings) -> attack; 'none' has no builder
