"""Every training method by its config name: one module per method, one registry line each.

To add a method: write `pdd/methods/<name>.py` with a `TrainingMethod` subclass (its `backward`, and if
needed `parameter_groups`, `start_epoch`, `starts_from`), add its settings to `LossSettings` (and a
`pdd train` option of the same name), and add one line to `METHODS` below.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from pdd.methods.adp import ADP
from pdd.methods.adversarial_training import AdversarialTraining
from pdd.methods.base import LossSettings, TrainingMethod
from pdd.methods.deg import DEG
from pdd.methods.dverge import DVERGE
from pdd.methods.ece import CrossEntropy
from pdd.methods.gal import GAL
from pdd.methods.trs import TRS

METHODS: dict[str, Callable[[LossSettings], TrainingMethod]] = {
    "baseline": CrossEntropy,
    "adp": ADP,
    "pdd": partial(CrossEntropy, pdd=True),
    "deg": DEG,
    "pdd_deg": partial(DEG, pdd=True),
    "advt_fgsm": partial(AdversarialTraining, attack="fgsm"),
    "advt_fgsm_pdd": partial(AdversarialTraining, attack="fgsm", pdd=True),
    "advt_pgd": partial(AdversarialTraining, attack="pgd"),
    "advt_pgd_pdd": partial(AdversarialTraining, attack="pgd", pdd=True),
    "gal": GAL,
    "trs": TRS,
    "dverge": DVERGE,
}


def get_method(name: str, settings: LossSettings | None = None) -> TrainingMethod:
    """A fresh `TrainingMethod` called `name` with `settings` (defaults if None), or a clear error."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[name](settings or LossSettings())


__all__ = ["METHODS", "LossSettings", "TrainingMethod", "get_method"]
