"""Every training method by its config name: one module per method, one registry line each.

To add a built-in method: write `pdd/methods/<name>.py` with a `TrainingMethod` subclass (its `backward`, and if
needed `parameter_groups`, `start_epoch`, `starts_from`), add its settings to `LossSettings` and its facts to
`METHOD_INFO` (pdd/settings/methods.py, read by the torch-free plan), and add one line to `METHODS` below. A method
from outside the package (the user's module or file, or an installed package's `pdd.methods` entry point) is
registered by `register` (pdd.methods.plugins).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from pdd.methods.adp import ADP
from pdd.methods.adversarial_training import AdversarialTraining
from pdd.methods.base import TrainingMethod
from pdd.methods.deg import DEG
from pdd.methods.dverge import DVERGE
from pdd.methods.ece import CrossEntropy
from pdd.methods.gal import GAL
from pdd.methods.plugins import PluginError, entry_points, factory
from pdd.methods.trs import TRS
from pdd.settings.methods import BUILTIN, LossSettings

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
PLUGINS: dict[str, dict] = {}  # the registered user methods' config entries ({} for an entry point)


def register(name: str, spec: Mapping[str, Any] | None = None) -> None:
    """Make the user's method `name` known to `get_method`: its config entry `spec` (`module`, or `file` + `class`,
    and `settings`; none: the installed entry point `name`). Imports (runs) the user's code; registering the same
    entry again does nothing, another entry replaces it. A one-line `PluginError` if it cannot be used."""
    spec = dict(spec or {})
    if name in BUILTIN:
        raise PluginError(f"methods.{name}: {name!r} is a built-in method; give yours another name")
    if PLUGINS.get(name) == spec and name in METHODS:
        return
    METHODS[name] = factory(name, spec)
    PLUGINS[name] = spec


def available() -> list[str]:
    """Every method name: the built-in and registered ones, then the installed entry points' (not loaded yet)."""
    return list(METHODS) + sorted(set(entry_points()) - set(METHODS))


def get_method(name: str, settings: LossSettings | None = None) -> TrainingMethod:
    """A fresh `TrainingMethod` called `name` with `settings` (defaults if None), or a clear error; an installed
    package's entry point of that name is loaded on first use."""
    if name not in METHODS and name in entry_points():
        register(name)
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(available())}")
    return METHODS[name](settings or LossSettings())


__all__ = ["BUILTIN", "METHODS", "PLUGINS", "LossSettings", "PluginError", "TrainingMethod", "available",
           "get_method", "register"]
