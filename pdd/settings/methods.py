"""Training methods as data: their loss settings and, for each built-in method, what the workflow needs to know
without importing it (the settings it reads, whether it uses PDD, the method it starts from, its inner attack).
`pdd.methods` holds the methods themselves; a test checks each entry against the method it describes."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any

from pdd.validation import check_fields, setting

ENTRY_POINT_GROUP = "pdd.methods"  # installed packages register their methods in this entry-point group


@dataclass(frozen=True)
class LossSettings:
    """Loss weights and inner-attack budgets of every method (paper / authors' defaults; CIFAR eps)."""

    deg_lambda: float = setting(0.01, "DEG's weight of the gradient dispersion L_g (eq. 4).")
    adp_alpha: float = setting(2.0, "ADP's weight of the ensemble entropy.")
    adp_beta: float = setting(0.5, "ADP's weight of the log-determinant.")
    adv_eps: float = setting(0.02, "Adversarial training L-inf budget.")
    adv_steps: int = setting(10, "PGD steps of adversarial training.")
    gal_lambda: float = setting(0.5, "GAL's weight of the coherence penalty.")
    trs_coeff: float = setting(2.0, "TRS's weight of the gradient similarity.")
    # TRS's weight of the smoothness term (the authors' spelling). The authors' 2.0 multiplied gradients of the
    # batch-MEAN loss, i.e. per-sample gradient norms^2 / B^2 at their batch 128; ours are per sample, so the
    # same effective weight is 2 / 128^2 (2.0 on per-sample norms diverges within three SGD steps).
    trs_lamda: float = setting(2 / 128**2, "TRS's weight of the per-sample smoothness term (the authors' 2.0 at "
                               "batch-mean gradients, batch 128).")
    trs_scale: float = setting(5.0, "TRS's weight of both terms.")
    trs_init_eps: float = setting(0.01, "TRS gradient-norm PGD eps, first epoch.")
    trs_adv_eps: float = setting(0.03, "TRS gradient-norm PGD eps, last epoch.")
    trs_steps: int = setting(6, "TRS gradient-norm PGD steps (each eps/3).")
    dverge_eps: float = setting(0.07, "DVERGE feature-distillation L-inf budget.")
    dverge_step: float = setting(0.007, "DVERGE distillation step size.")
    dverge_steps: int = setting(10, "DVERGE distillation steps.")

    def __post_init__(self) -> None:
        check_fields(self)  # finite numbers in their ranges (pdd.validation)
        if self.trs_init_eps > self.trs_adv_eps:
            raise ValueError(f"trs_init_eps ({self.trs_init_eps}) must not exceed trs_adv_eps ({self.trs_adv_eps})")


@dataclass(frozen=True)
class MethodInfo:
    """What the plan needs to know of a training method: the `LossSettings` fields that change its result, whether
    the ensemble gets the PDD layer, the method whose trained ensemble it starts from, its inner attack."""

    settings_used: tuple[str, ...] = ()
    uses_pdd: bool = False
    starts_from: str | None = None
    adversarial: str | None = None  # 'fgsm' / 'pgd' for adversarial training

    @classmethod
    def of(cls, method: Any) -> MethodInfo:
        """The facts of a `pdd.methods.TrainingMethod` instance (a user's method, or a check of an entry)."""
        return cls(tuple(method.settings_used), method.uses_pdd, method.starts_from, method.adversarial)


_TRS = ("trs_coeff", "trs_lamda", "trs_scale", "trs_init_eps", "trs_adv_eps", "trs_steps")
METHOD_INFO: dict[str, MethodInfo] = {
    "baseline": MethodInfo(),
    "adp": MethodInfo(("adp_alpha", "adp_beta")),
    "pdd": MethodInfo(uses_pdd=True),
    "deg": MethodInfo(("deg_lambda",)),
    "pdd_deg": MethodInfo(("deg_lambda",), uses_pdd=True),
    "advt_fgsm": MethodInfo(("adv_eps",), adversarial="fgsm"),
    "advt_fgsm_pdd": MethodInfo(("adv_eps",), uses_pdd=True, adversarial="fgsm"),
    "advt_pgd": MethodInfo(("adv_eps", "adv_steps"), adversarial="pgd"),
    "advt_pgd_pdd": MethodInfo(("adv_eps", "adv_steps"), uses_pdd=True, adversarial="pgd"),
    "gal": MethodInfo(("gal_lambda",)),
    "trs": MethodInfo(_TRS),
    "dverge": MethodInfo(("dverge_eps", "dverge_step", "dverge_steps"), starts_from="baseline"),
}
BUILTIN = frozenset(METHOD_INFO)  # names a user's method may not take


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """{method name: entry point} of the installed packages' `pdd.methods` group (nothing is imported yet)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
