"""The paper's white-box attacks as a registry: each attack's name, parameter, norm and cost kind, and the
protocol's fixed settings. No torch, numpy or ART here: the plan, the tables and the figures read the registry
without them; `pdd.evaluation.art_attacks` builds each attack and `pdd.evaluation.attacks` runs them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pdd.validation import CW_CONSTANT, JSMA_GAMMA, L2_EPS, LINF_EPS, Bound, InvalidValue, check_fields, setting


@dataclass(frozen=True)
class AttackSettings:
    """Fixed parameters of the paper's protocol; the varied one (eps, gamma or c) is passed separately."""

    steps: int = setting(10, "BIM / PGD iterations.")
    step_fraction: float = setting(0.1, "BIM / PGD step size / eps.")
    random_starts: int = setting(1, "PGD random starts.")
    jsma_theta: float = setting(0.1, "JSMA's perturbation per feature.")
    cw_confidence: float = setting(0.01, "C&W confidence.")
    cw_learning_rate: float = setting(0.01, "C&W learning rate.")
    cw_max_iter: int = setting(1000, "C&W iterations per binary-search step.")
    cw_binary_search_steps: int = setting(5, "C&W binary-search steps over the constant.")
    cw_abort_early: bool = setting(False, "C&W: end an image's binary-search step once its loss has stopped falling "
                                          "(checked every max_iter // 10 iterations, as Carlini and Wagner's code "
                                          "does); off: ART's CarliniL2Method, every iteration.")
    batch_size: int = setting(500, "Images per attack batch.")
    seed: int = setting(0, "Seed of JSMA's target classes and PGD's random start.")

    def __post_init__(self) -> None:
        check_fields(self)  # finite numbers in their ranges (pdd.validation)


@dataclass(frozen=True)
class Attack:
    """One attack of the paper's protocol: what its parameter means and how its cost grows.

    Adding an attack = one entry in `ATTACKS` and its builder in `pdd.evaluation.art_attacks.BUILDERS` (and its
    parameters in the config's attack lists); the CLI, the API, the config checks, the tables' labels and the cost
    projection read the entry.
    """

    name: str
    display: str                      # its name in tables and figures
    norm: str | None                  # the norm its budget is measured in: 'L-inf', 'L2', 'L0'; None: no budget
    param: str | None                 # what its parameter is called in tables ('L-inf eps', 'gamma', 'c'); None: none
    bound: Bound | None = None        # the meaningful values of its parameter (pdd.validation); None: takes none
    iterations: str | None = None     # the AttackSettings field counting its iterations (stronger-attack tables)
    cost: str = "fixed"               # how the projection counts its passes: fixed, per_step, per_iteration, cw
    targeted: bool = False            # crafted towards random target classes from the seed
    reads: tuple[str, ...] = ()       # the AttackSettings fields its builder reads (beyond SHARED_SETTINGS)

    def check(self, params: Iterable[float], name: str = "param") -> None:
        """'none' takes no parameter and the others at least one, each finite inside `bound` (InvalidValue, a
        ValueError naming `name`, otherwise)."""
        params = list(params)
        if (self.bound is None) != (not params):
            raise InvalidValue(name, params, f"{self.name} " + ("takes no parameter" if self.bound is None else
                                                                f"needs at least one parameter ({self.param})"))
        for value in params:
            if problem := self.bound.problem(value):
                raise InvalidValue(name, value, f"{self.name}: {problem}")


SHARED_SETTINGS = ("batch_size", "seed")  # every attack job reads these: its batches, and which images it attacks
_STEPS = ("steps", "step_fraction")
_PGD = (*_STEPS, "random_starts")
_CW = ("cw_confidence", "cw_learning_rate", "cw_max_iter", "cw_binary_search_steps", "cw_abort_early")

ATTACKS: dict[str, Attack] = {a.name: a for a in (
    Attack("none", "No attack", None, None),
    Attack("fgsm", "FGSM", "L-inf", "L-inf eps", LINF_EPS),
    Attack("bim", "BIM", "L-inf", "L-inf eps", LINF_EPS, "steps", "per_step", reads=_STEPS),
    Attack("pgd", "PGD", "L-inf", "L-inf eps", LINF_EPS, "steps", "per_step", reads=_PGD),
    Attack("pgd_l2", "PGD (L2)", "L2", "L2 eps", L2_EPS, "steps", "per_step", reads=_PGD),
    Attack("jsma", "JSMA", "L0", "gamma", JSMA_GAMMA, cost="per_iteration", targeted=True, reads=("jsma_theta",)),
    Attack("cw", "C&W", "L2", "c", CW_CONSTANT, "cw_max_iter", "cw", reads=_CW),
)}


def settings_read(attacks: Iterable[str]) -> tuple[str, ...]:
    """The AttackSettings fields a job running `attacks` reads, in field order: what its params hold, so a setting
    reruns only the jobs whose attacks read it."""
    read = set(SHARED_SETTINGS).union(*(check_attack(a).reads for a in attacks))
    return tuple(f for f in AttackSettings.__dataclass_fields__ if f in read)


def check_attack(name: str) -> Attack:
    """The registry entry of attack `name`, or a clear error listing the known ones."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; expected one of {', '.join(ATTACKS)}")
    return ATTACKS[name]


def check_param(attack: str, param: Any, name: str = "param") -> Any:
    """`param` of `attack` (bounded by its registry entry), or InvalidValue naming `name` and the attack."""
    bound = check_attack(attack).bound
    if bound is None:
        raise InvalidValue(name, param, f"attack {attack!r} takes no parameter")
    problem = bound.problem(param)
    if problem:
        raise InvalidValue(name, param, f"{attack}: {problem}")
    return param
