"""One table of the values a user can type, shared by the CLI, the Python API and the config checks.

Each numeric field of the settings dataclasses (`TrainConfig`, `LossSettings`, `AttackSettings`,
`StrongSettings`) and each attack's varied parameter has a `Bound`: finite numbers only (NaN and infinities
are refused by name, since every comparison with NaN is false and so passes a plain range check) inside a
range that means something for images in [0, 1]. Deliberately free of torch: the CLI reads it at import.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


class InvalidValue(ValueError):
    """A value outside its `Bound`; `name` is the field, option or argument it was given to."""

    def __init__(self, name: str, value: Any, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name, self.value, self.problem = name, value, problem


@dataclass(frozen=True)
class Bound:
    """A finite number in [low, high] (either end open, either end absent); `integer` asks for an int."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    meaning: str = ""  # why the range, shown in the message (e.g. "eps of L-inf on [0, 1] images")

    def describe(self) -> str:
        """'an integer >= 1', 'a finite number in (0, 1]', ... as messages say it."""
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            text = f"{kind} in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}" \
                   f"{')' if self.high_open else ']'}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_num(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {_num(self.high)}"
        else:
            text = kind
        return f"{text} ({self.meaning})" if self.meaning else text

    def problem(self, value: Any) -> str | None:
        """None when `value` is inside the bound, else what is wrong with it (naming NaN and infinities)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {self.describe()}, got {value!r}"
        if isinstance(value, float) and math.isnan(value):
            return f"must be {self.describe()}, got NaN"
        if isinstance(value, float) and math.isinf(value):
            return f"must be {self.describe()}, got {'-' if value < 0 else ''}infinity"
        if self.integer and not isinstance(value, int):
            return f"must be {self.describe()}, got {value!r}"
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        return f"must be {self.describe()}, got {value!r}" if below or above else None

    def check(self, name: str, value: Any) -> Any:
        """`value`, or InvalidValue naming `name`."""
        problem = self.problem(value)
        if problem:
            raise InvalidValue(name, value, problem)
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


COUNT = Bound(1, integer=True)                        # steps, iterations, restarts, batch sizes, epochs
NON_NEGATIVE_COUNT = Bound(0, integer=True)
SEED = Bound(0, 2**32 - 1, integer=True)
WEIGHT = Bound(0)                                     # loss weights, weight decay
POSITIVE = Bound(0, low_open=True)
FRACTION = Bound(0, 1)
LINF_EPS = Bound(0, 1, low_open=True, meaning="an L-inf budget on [0, 1] images")
LINF_EPS_OR_ZERO = Bound(0, 1, meaning="an L-inf budget on [0, 1] images")
STEP_FRACTION = Bound(0, 1, low_open=True, meaning="step size / eps")

# Bounds of the dataclasses' numeric fields by name (a name means the same in every dataclass that has it).
FIELD_BOUNDS: dict[str, Bound] = {
    # TrainConfig
    "members": Bound(2, integer=True, meaning="an ensemble has K >= 2 members"),
    "width": COUNT, "seed": SEED, "epochs": COUNT, "batch_size": COUNT,
    "lr": POSITIVE, "momentum": Bound(0, 1, high_open=True), "weight_decay": WEIGHT, "lr_min": WEIGHT,
    "pdd_intervals": Bound(2, integer=True, meaning="PDD's M > K >= 2"),
    "pdd_alpha": FRACTION, "pdd_beta": FRACTION,
    # LossSettings
    "deg_lambda": WEIGHT, "adp_alpha": WEIGHT, "adp_beta": WEIGHT, "adv_eps": LINF_EPS, "adv_steps": COUNT,
    "gal_lambda": WEIGHT, "trs_coeff": WEIGHT, "trs_lamda": WEIGHT, "trs_scale": WEIGHT,
    "trs_init_eps": LINF_EPS_OR_ZERO, "trs_adv_eps": LINF_EPS_OR_ZERO, "trs_steps": COUNT,
    "dverge_eps": LINF_EPS, "dverge_step": LINF_EPS, "dverge_steps": COUNT,
    # AttackSettings
    "steps": COUNT, "step_fraction": STEP_FRACTION, "random_starts": COUNT,
    "jsma_theta": Bound(0, 1, low_open=True, meaning="JSMA's change of one feature of a [0, 1] image"),
    "cw_confidence": WEIGHT, "cw_learning_rate": POSITIVE, "cw_max_iter": COUNT, "cw_binary_search_steps": COUNT,
    # StrongSettings
    "apgd_iterations": COUNT, "apgd_restarts": COUNT, "pgd_steps": COUNT, "pgd_restarts": COUNT,
    "transfer_steps": COUNT, "diagnostic_eps": POSITIVE, "diagnostic_max_accuracy": Bound(0, 100),
    "unbounded_eps": POSITIVE, "diagnostic_steps": COUNT, "noise_images": NON_NEGATIVE_COUNT,
    "mora_mixes": Bound(0, 1, meaning="MORA's mixing weight s"),
}

# The varied parameter of each attack (`pdd attack --param`, the config's attack lists, the API's `attacks`)
# has its bound in the attack's registry entry (pdd.settings.attacks.ATTACKS), built from these.
L2_EPS = Bound(0, low_open=True, meaning="an L2 budget")
JSMA_GAMMA = Bound(0, 1, low_open=True, meaning="JSMA's gamma, the fraction of features it may change")
CW_CONSTANT = Bound(0, low_open=True, meaning="C&W's initial constant c")

# Other values that enter at more than one door.
VALUE_BOUNDS: dict[str, Bound] = {
    "eps": LINF_EPS,            # member transfer, the L-inf strong evaluation
    "strong_eps": L2_EPS,       # the strong evaluation in either norm (L-inf budgets are also checked as `eps`)
    "num_images": COUNT,
    "threads": COUNT,
    "workers": NON_NEGATIVE_COUNT,
    "warmup": NON_NEGATIVE_COUNT,
    "model_seed": SEED,
}


def setting(default: Any = MISSING, help: str = "") -> Any:
    """A settings dataclass field with its help, the one text the CLI's option, `pdd.api` and the config
    reference show (`dataclasses.field` with `metadata["help"]`)."""
    return field(default=default, metadata={"help": help})


def field_bound(name: str, default: Any = None) -> Bound | None:
    """The bound of a dataclass field or shared value `name`; a field the tables do not name gets one from its
    `default`: an int is a count >= 1, a float a finite number >= 0 (None: not a number)."""
    bound = FIELD_BOUNDS.get(name) or VALUE_BOUNDS.get(name)
    sample = default[0] if isinstance(default, tuple) and default else default
    if bound is None and not isinstance(sample, bool):
        bound = {int: COUNT, float: WEIGHT}.get(type(sample))
    return bound


def check_fields(settings: Any) -> None:
    """Check every numeric field of dataclass instance `settings` (each element of a tuple field) against
    `field_bound`; the first bad one raises InvalidValue naming the field. Called by the dataclasses."""
    for f in fields(settings):
        bound = field_bound(f.name, f.default)
        if bound is None:
            continue
        value = getattr(settings, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            bound.check(f.name, v)


def non_finite(obj: Any, path: str = "") -> list[str]:
    """The dotted paths of every NaN or infinity inside nested dicts and lists `obj` (a parsed config)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return [path]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite(v, f"{path}[{i}]")]
    return []
