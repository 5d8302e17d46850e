"""The strong evaluation's settings: its attacks' budgets and iterations, and the thresholds of its gradient-masking
diagnostics (`pdd.evaluation.strong` runs it)."""

from __future__ import annotations

from dataclasses import dataclass

from pdd.validation import LINF_EPS, check_fields, setting

NORMS = ("linf", "l2")  # the threat models of the strong evaluation and MORA
MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)  # MORA's mixing weights s, run in turn
# Budgets of diagnostics (a) eps growth and (b) unbounded, per norm: L-inf 0.5 and 1 (half and all of [0, 1]);
# L2 4 (8x CIFAR-10's 0.5) and 1000 (beyond any two images' distance in [0, 1]^(3x64x64), about 110).
DIAGNOSTIC_EPS = {"linf": (0.5, 1.0), "l2": (4.0, 1000.0)}


@dataclass(frozen=True)
class StrongSettings:
    """The strong evaluation's attacks and the thresholds of its diagnostics."""

    apgd_iterations: int = setting(100, "APGD iterations.")
    apgd_restarts: int = setting(5, "APGD random restarts.")
    pgd_steps: tuple[int, ...] = setting(
        (10, 50, 200), "PGD step counts of the convergence check, one random start each; repeatable.")
    pgd_restarts: int = setting(5, "Random starts at the largest step count.")
    step_fraction: float = setting(0.1, "PGD step size / eps (the paper's eps / 10).")
    transfer_steps: int = setting(50, "PGD steps on the surrogate.")
    diagnostic_eps: float | None = setting(
        None, "Large eps of the eps-growth check (default by norm: L-inf 0.5, L2 4).")
    diagnostic_max_accuracy: float = setting(5.0, "Accuracy (% of initially correct) allowed at --diagnostic-eps.")
    unbounded_eps: float | None = setting(
        None, "Eps of the unbounded-attack check (default by norm: L-inf 1, L2 1000).")
    diagnostic_steps: int = setting(200, "PGD steps at the diagnostic eps values.")
    noise_images: int = setting(1, "Tolerance of the transfer, convergence and gradient-free checks.")
    batch_size: int = setting(500, "Images per attack batch.")
    seed: int = setting(0, "Seed of the random starts and of Square's random squares.")
    norm: str = setting("linf", "Threat model of every attack and diagnostic: linf or l2.")
    apgd_targets: int = setting(
        9, "APGD-T target classes (the top ones after the true class; fewer if the dataset has fewer).")
    mora_iterations: int = setting(100, "MORA iterations per mixing weight.")
    mora_mixes: tuple[float, ...] = setting(MIXES, "MORA mixing weights s in [0, 1], run in turn; repeatable.")
    square_queries: int = setting(5000, "Square attack queries (iterations).")

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        for name, default in zip(("diagnostic_eps", "unbounded_eps"), DIAGNOSTIC_EPS[self.norm], strict=True):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        # Step counts in increasing order and mixing weights as floats, however given (a config's or the
        # CLI's list, the API's tuple): every caller builds the settings through here.
        object.__setattr__(self, "pgd_steps", tuple(sorted(self.pgd_steps)))
        object.__setattr__(self, "mora_mixes", tuple(float(m) for m in self.mora_mixes))
        check_fields(self)  # finite numbers in their ranges (pdd.validation)
        if not self.pgd_steps or len(set(self.pgd_steps)) != len(self.pgd_steps):
            raise ValueError(f"pgd_steps must be distinct, got {self.pgd_steps}")
        if self.norm == "linf":
            LINF_EPS.check("diagnostic_eps", self.diagnostic_eps)
        if not self.mora_mixes:
            raise ValueError("mora_mixes: give at least one mixing weight")

    @property
    def restarts_name(self) -> str:
        """Name of the PGD run with restarts (the largest step count)."""
        return f"pgd_{self.pgd_steps[-1]}x{self.pgd_restarts}"
