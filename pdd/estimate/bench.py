"""The bench: paper-scale ensembles on synthetic images, each job kind's measurement cached."""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch.utils.data import TensorDataset

from pdd import data
from pdd.estimate.passes import CPU, TINY_EPS, Passes, line, measure
from pdd.estimate.store import Missing, Store
from pdd.estimate.width import NARROW_FROM, WidthDependent, WidthScale, parameter_shapes
from pdd.evaluation.attacks import ATTACKS, AttackSettings, predict, run_attack
from pdd.evaluation.diversity import diversity_per_image
from pdd.evaluation.member_transfer import Member, fooling_matrix
from pdd.evaluation.mora import mora
from pdd.evaluation.strong import (
    StrongSettings,
    apgd,
    apgd_targeted,
    evaluate,
    output_change,
    pgd,
    square,
    zero_gradient_images,
)
from pdd.methods import LossSettings, get_method
from pdd.models import Ensemble, EnsembleSpec
from pdd.plan import config as plan
from pdd.plan.outputs import variant
from pdd.step_timing import time_methods
from pdd.training import accuracy, ensemble_spec


@dataclass
class Bench:
    """Builds paper-scale ensembles and synthetic images, and caches each measurement (in memory, and in
    `store` across runs when given); with `narrow`, measures at a narrow width and scales the FLOPs (module doc)."""

    config: dict
    images: int
    seed: int = 0
    cache: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    store: Store | None = None
    reused: int = 0
    narrow: bool = True
    narrow_from: int = NARROW_FROM
    full_width: list = field(default_factory=list)  # measurements that had to run at the real widths
    _step_at: int | None = None  # the width step being measured (None: the real widths)
    _scale: WidthScale | None = None  # how the FLOPs counted at `_step_at` become the real widths' ones
    _steps: dict = field(default_factory=dict)  # dataset -> (narrow step, its WidthScale) or None
    probing: bool = False  # cached() raises Missing instead of measuring (`prefetch`)
    names: dict = field(default_factory=dict)  # key -> the name it is stored under
    processes_used: int = 1  # how many processes `prefetch` measured in
    check_formula: bool = False  # also measure `evaluate` itself beside the strong evaluation's formula (once)

    @property
    def width_step(self) -> int:
        """The configured widths' greatest common divisor: each arch's width is a whole number of steps."""
        return math.gcd(*(spec["width"] for spec in [self.config["model"], *self.config["surrogates"].values()]))

    @property
    def narrows(self) -> bool:
        """Whether measurements run at a narrow width step, the FLOPs scaled (allowed, and wide enough to gain)."""
        return self.narrow and self.width_step >= self.narrow_from

    def narrow_step(self, dataset: str) -> tuple[int, WidthScale] | None:
        """The smallest width step at which every arch's weight shapes and channel counts name their real ones
        unambiguously and every channel count exceeds the images per measurement (so no activation's or
        gradient's shape can pass for a weight's), with its WidthScale; None if no step below the real one does.
        With 2 images: step 3 for 1-channel images, 4 for 3-channel ones."""
        if dataset not in self._steps:
            archs = list(dict.fromkeys([plan.defended_arch(self.config),
                                        *(s["arch"] for s in self.config["surrogates"].values())]))
            real = [s for arch in archs for s in parameter_shapes(dataset, arch, plan.width(self.config, arch))]
            self._steps[dataset] = None
            for step in range(self.images + 1, self.width_step):
                narrow = [s for arch in archs for s in parameter_shapes(
                    dataset, arch, plan.width(self.config, arch) // self.width_step * step)]
                scale = WidthScale.between(narrow, real)
                if scale is not None:
                    self._steps[dataset] = step, scale
                    break
        return self._steps[dataset]

    def measure(self, run: Callable[[], object], images: int, model: Ensemble | None = None) -> Passes:
        """`measure` with the FLOPs scaled to the real widths when measuring at a narrow step."""
        return measure(run, images, model, self._scale)

    def width(self, arch: str) -> int:
        """The width an arch is built at now: the config's, or `_step_at` steps of `width_step` as many."""
        real = plan.width(self.config, arch)
        return real if self._step_at is None else real // self.width_step * self._step_at

    def model(self, dataset: str, arch: str, k: int, pdd: dict | None = None) -> Ensemble:
        info = data.info(dataset)
        torch.manual_seed(self.seed)
        spec = EnsembleSpec(arch, k, info.num_classes, info.in_channels, self.width(arch), pdd or {})
        return Ensemble(spec).eval()

    def _run(self, name: str, dataset: str, compute: Callable[[], object]) -> object:
        """compute() once at the dataset's narrow step with the FLOPs scaled to the real widths (module doc),
        else, or where an operator cannot be scaled, at the real widths."""
        narrow = self.narrow_step(dataset) if self.narrows else None
        if narrow is None:
            return compute()
        self._step_at, self._scale = narrow
        try:
            return compute()
        except WidthDependent as err:
            print(f"  {name}: {err}; measuring at the real widths", file=sys.stderr)
            self.full_width.append(name)
        finally:
            self._step_at, self._scale = None, None
        return compute()

    def batch(self, dataset: str, model: Ensemble | None = None, n: int | None = None):
        """n random images; labels = the model's own predictions (every image starts correctly classified,
        so loops over still-correct images run on all of them), else random."""
        info, n = data.info(dataset), n or self.images
        generator = torch.Generator().manual_seed(self.seed + 1)
        x = torch.rand(n, info.in_channels, info.image_size, info.image_size, generator=generator)
        y = torch.randint(info.num_classes, (n,), generator=generator)
        return x, (predict(model, x, CPU).clone() if model is not None else y)  # clone: not an inference tensor

    def cached(self, key: tuple, compute: Callable[[], object], inputs: tuple = ()):
        """compute(), once per key; `inputs`: the config's settings it reads (part of the stored key)."""
        if key not in self.cache:
            digest = hashlib.sha256(repr((inputs, self.images, self.seed)).encode()).hexdigest()[:16]
            name = self.names[key] = f"{' '.join(map(str, key))} | {digest}"
            stored = self.store.get(name) if self.store is not None else None
            if stored is not None:
                self.cache[key], self.reused = stored, self.reused + 1
                return stored
            if self.probing:
                raise Missing(key)
            start, label = time.perf_counter(), " ".join(map(str, key))
            self.cache[key] = self._run(label, key[1], compute)
            self.seconds[key] = time.perf_counter() - start
            print(f"  measured {label}: {self.seconds[key]:.1f} s", file=sys.stderr)
            if self.store is not None:
                self.store.put(name, self.cache[key])
        return self.cache[key]

    def arch_width(self, arch: str) -> tuple[str, int]:
        return arch, plan.width(self.config, arch)

    # --- training -------------------------------------------------------------------------------------------

    def loss_settings(self, method: str, **steps: int) -> LossSettings:
        """The config's settings of a method (as its training job gets them), inner steps overridden."""
        return replace(plan.loss_settings(self.config, [method]), **steps)

    def train_step(self, dataset: str, arch: str, k: int, method: str, intervals: int | None,
                   **steps: int) -> Passes:
        """Passes per training image of one `TrainingMethod.step` (train mode, the config's settings)."""
        m = get_method(method, self.loss_settings(method, **steps))
        cfg = plan.train_config(self.config, dataset, k, f"{method}-M{intervals}" if intervals else method, 0, arch)
        model = self.model(dataset, arch, k, ensemble_spec(cfg).pdd).train()
        m.start_epoch(model, 0, cfg.epochs, self.seed)
        optimizers = [torch.optim.SGD(group, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
                      for group in m.parameter_groups(model)]
        x, y = self.batch(dataset)
        return self.measure(lambda: m.step(model, optimizers, x, y), len(y), model)

    def train(self, dataset: str, arch: str, k: int, method: str) -> tuple[Passes, Passes, str, int | None]:
        """(passes per training image at the config's inner steps, passes per test image of the epoch's
        evaluation, how the first was measured, the inner step count or None)."""
        base, intervals = variant(method)
        m = get_method(base)
        inner = next((name for name in ("adv_steps", "trs_steps", "dverge_steps") if name in m.settings_used), None)
        key = ("train", dataset, arch, k, base)

        def compute():
            if inner is None:
                step, how, count = self.train_step(dataset, arch, k, base, intervals), "measured", None
            else:
                count = getattr(self.loss_settings(base), inner)
                a, b = line(lambda s: self.train_step(dataset, arch, k, base, intervals, **{inner: s}))
                step = a + b * count
                how = (f"{a.total:.4g} + {count} {inner} x {b.total:.4g} per train image (measured at 1 and 2 "
                       f"{inner})")
                if step.extra:
                    how += (f"; outside the ledger: {a.extra:.4g} + {count} x {b.extra:.4g} single-member "
                            "distillation passes (forward + backward, in ensemble passes) per train image")
            return step, how, count

        cfg = plan.train_config(self.config, dataset, k, method, 0, arch)
        step, how, count = self.cached(key, compute, (ensemble_spec(cfg), cfg.epochs, self.loss_settings(base)))
        return step, self.evaluation(dataset, arch, k), how, count

    def evaluation(self, dataset: str, arch: str, k: int) -> Passes:
        """Passes per test image of a training job's end-of-epoch evaluation (the same for every method)."""
        def compute():
            model = self.model(dataset, arch, k)
            x, y = self.batch(dataset)
            return self.measure(lambda: accuracy(model, TensorDataset(x, y), CPU), len(y))

        return self.cached(("evaluation", dataset, arch, k), compute, self.arch_width(arch))

    # --- attacks --------------------------------------------------------------------------------------------

    def attack_settings(self, **changes: float) -> AttackSettings:
        """The config's attack protocol, with `changes` (fewer steps, iterations) applied."""
        return replace(plan.attack_settings(self.config), **changes)

    def attack(self, dataset: str, k: int, attack: str, surrogate_arch: str | None = None) -> dict:
        """Per attacked image and parameter, the passes of `run_attack` (crafting on the surrogate when given,
        scoring on the target) as a formula's coefficients: {"fixed"}; {"a", "per_step"}; JSMA {"a",
        "per_iteration"}; C&W {"c0", "per_search", "per_iteration"} (passes = c0 + bss * (per_search +
        iterations * per_iteration))."""
        key = ("attack", dataset, k, attack, surrogate_arch or "")

        def compute():
            target = self.model(dataset, plan.defended_arch(self.config), k)
            surrogate = self.model(dataset, surrogate_arch, k) if surrogate_arch else None
            x, y = self.batch(dataset, target)  # every image correct for the TARGET: all of them are crafted

            def run(param: float, **settings) -> Passes:
                s = self.attack_settings(**settings)
                return self.measure(lambda: run_attack(target, x, y, attack, param, s, CPU, surrogate), len(y))

            features = x[0].numel()
            cost = ATTACKS[attack].cost
            if cost == "fixed":
                return {"fixed": run(0.0 if attack == "none" else 0.02)}
            if cost == "per_step":
                a, b = line(lambda s: run(0.02, steps=s))
                return {"a": a, "per_step": b}
            if cost == "per_iteration":  # JSMA, theta 1: a changed feature saturates, so gamma = i / features
                # runs i iterations
                a, b = line(lambda i: run(i / features, jsma_theta=1.0))
                return {"a": a, "per_iteration": b}
            if cost == "cw":
                # the full loop (no early abort: at 1-2 iterations it would stop at once); the abort's share is
                # applied by the rows (`rows.CW_ABORT_REST`)
                full = {"cw_abort_early": False}
                p11 = run(0.01, cw_max_iter=1, cw_binary_search_steps=1, **full)
                p12 = run(0.01, cw_max_iter=2, cw_binary_search_steps=1, **full)
                p21 = run(0.01, cw_max_iter=1, cw_binary_search_steps=2, **full)
                per_iteration = p12 - p11
                per_search = p21 - p11 - per_iteration
                return {"c0": p11 - per_search - per_iteration, "per_search": per_search,
                        "per_iteration": per_iteration}
            raise ValueError(attack)

        surrogate = self.arch_width(surrogate_arch) if surrogate_arch else None
        return self.cached(key, compute, (self.arch_width(plan.defended_arch(self.config)), surrogate,
                                          self.attack_settings()))

    # --- strong evaluation, diversity, member transfer, timing --------------------------------------------------

    def strong_blocks(self, dataset: str, k: int, check: bool) -> dict:
        """Per image: PGD (intercept, per step) on the target and on the oblivious surrogate, APGD (c0, per
        restart, per iteration), one prediction; with `check`, the composed formula beside `evaluate` itself at
        1-2 steps (measured), as "check" (a measurement of its own: --details asks for it)."""
        key = ("strong", dataset, k, *(["checked"] if check else []))

        def compute():
            arch = plan.defended_arch(self.config)
            surrogate_arch = plan.surrogate_arch(self.config, "blackbox_oblivious")
            target, surrogate = self.model(dataset, arch, k), self.model(dataset, surrogate_arch, k)
            x, y = self.batch(dataset, target)
            n = len(y)

            def settings(**changes: object) -> StrongSettings:
                return StrongSettings(**{"apgd_iterations": 1, "apgd_restarts": 1, "pgd_steps": (1,),
                                         "pgd_restarts": 1, "transfer_steps": 1, "diagnostic_steps": 1,
                                         "apgd_targets": 1, "mora_iterations": 1, "mora_mixes": (0.5,),
                                         "square_queries": 1, **changes})

            def pgd_on(model: Ensemble) -> tuple[Passes, Passes]:
                return line(lambda s: self.measure(lambda: pgd(model, x, y, TINY_EPS, s, 0, settings(), CPU), n))

            blocks = {"pgd": pgd_on(target), "transfer": pgd_on(surrogate),
                      "predict": self.measure(lambda: predict(target, x, CPU), n), "check": None}

            def grid(run: Callable[[int, int], object]) -> tuple[Passes, Passes, Passes]:
                """(c0, per outer unit, per iteration) of passes c0 + outer x (per outer + iterations x per
                iteration), from runs at (iterations, outer) = (1, 1), (2, 1), (1, 2)."""
                at = {(i, o): self.measure(lambda: run(i, o), n) for i, o in ((1, 1), (2, 1), (1, 2))}
                per_iteration = at[2, 1] - at[1, 1]
                per_outer = at[1, 2] - at[1, 1] - per_iteration
                return at[1, 1] - per_outer - per_iteration, per_outer, per_iteration

            blocks["apgd"] = grid(lambda i, r: apgd(target, x, y, TINY_EPS, "cross_entropy",
                                                   settings(apgd_iterations=i, apgd_restarts=r), CPU))
            blocks["apgd_t"] = grid(lambda i, t: apgd_targeted(target, x, y, TINY_EPS,
                                                               settings(apgd_iterations=i, apgd_targets=t), CPU))
            blocks["mora"] = grid(lambda i, m: mora(target, x, y, TINY_EPS, "linf", i, (0.5,) * m, 0, len(y)))
            blocks["square"] = line(lambda q: self.measure(
                lambda: square(target, x, y, TINY_EPS, settings(square_queries=q), CPU), n))
            blocks["flags"] = self.measure(lambda: (zero_gradient_images(target, x, y, CPU, n),
                                                    output_change(target, x, CPU, n)), n)
            blocks["change"] = self.measure(lambda: output_change(target, x, CPU, n), n)  # runs on every image
            if check:
                small = settings(apgd_iterations=2, apgd_restarts=2, pgd_steps=(1, 2), pgd_restarts=2,
                                 transfer_steps=2, diagnostic_steps=2, apgd_targets=2, mora_iterations=2,
                                 mora_mixes=(0.0, 1.0), square_queries=2)
                losses = 2 if data.info(dataset).num_classes >= 3 else 1
                composed = strong_formula(blocks, small, eps_count=1, apgd_losses=losses,
                                          classes=data.info(dataset).num_classes)
                direct = self.measure(lambda: evaluate(target, x, y, [TINY_EPS], small, CPU, surrogate), n)
                blocks["check"] = (composed, direct)
            return blocks

        return self.cached(key, compute, (self.arch_width(plan.defended_arch(self.config)),
                                          self.arch_width(plan.surrogate_arch(self.config, "blackbox_oblivious"))))

    def predict(self, dataset: str, k: int) -> Passes:
        """Passes per image of classifying the images once (what every evaluation job spends on all of them)."""
        def compute():
            target = self.model(dataset, plan.defended_arch(self.config), k)
            x, _ = self.batch(dataset)
            return self.measure(lambda: predict(target, x, CPU), len(x))

        return self.cached(("predict", dataset, k), compute, self.arch_width(plan.defended_arch(self.config)))

    def diversity(self, dataset: str, k: int) -> Passes:
        def compute():
            model = self.model(dataset, plan.defended_arch(self.config), k)
            x, y = self.batch(dataset)
            return self.measure(lambda: diversity_per_image(model, x, y, CPU), len(y), model)

        return self.cached(("diversity", dataset, k), compute, self.arch_width(plan.defended_arch(self.config)))

    def member_transfer(self, dataset: str, k: int, eps: float) -> tuple[Passes, Passes]:
        def compute():
            model = self.model(dataset, plan.defended_arch(self.config), k)
            x, y = self.batch(dataset, Member(model, 0))  # member 0 correct on every image: all are crafted
            return line(lambda s: self.measure(
                lambda: fooling_matrix(model, x, y, eps, self.attack_settings(steps=s), CPU), len(y)))

        return self.cached(("member_transfer", dataset, k), compute,
                           (self.arch_width(plan.defended_arch(self.config)), eps, self.attack_settings()))

    def time_steps(self, dataset: str, arch: str, k: int, methods: list[str]) -> Passes:
        """Passes per batch image of one interleaved round (one step of every method)."""
        def compute():
            info = data.info(dataset)
            spec = EnsembleSpec(arch, k, info.num_classes, info.in_channels, self.width(arch))
            p = plan.pdd_settings(self.config, k)
            pdd = {"num_intervals": p["pdd_intervals"], "alpha": p["pdd_alpha"], "beta": p["pdd_beta"]}
            settings = plan.loss_settings(self.config, methods)  # every method as its timing job runs it
            x, y = self.batch(dataset)
            return self.measure(lambda: time_methods(methods, spec, pdd, settings, x, y, 0, 1, seed=self.seed), len(y))

        return self.cached(("time_steps", dataset, k), compute,
                           (self.arch_width(arch), methods, plan.pdd_settings(self.config, k),
                            plan.loss_settings(self.config, methods)))


def strong_formula(blocks: dict, s: StrongSettings, eps_count: int, apgd_losses: int, classes: int) -> Passes:
    """Passes per image of `pdd.evaluation.strong.evaluate` if no image ever breaks (every restart, APGD-T target
    and MORA mix runs on every image; Square never stops early)."""
    (pgd_a, pgd_b), (tr_a, tr_b), predict_ = blocks["pgd"], blocks["transfer"], blocks["predict"]
    c0, per_restart, per_iteration = blocks["apgd"]

    def pgd_(steps: int) -> Passes:
        return pgd_a + pgd_b * steps

    per_eps = Passes(0, 0)
    for steps in s.pgd_steps:
        per_eps = per_eps + pgd_(steps) + predict_
    per_eps = per_eps + (pgd_(s.pgd_steps[-1]) + predict_) * (s.pgd_restarts - 1)
    one_apgd = c0 + (per_restart + per_iteration * s.apgd_iterations) * s.apgd_restarts + predict_
    per_eps = per_eps + one_apgd * apgd_losses
    t0, per_target, t_iteration = blocks["apgd_t"]
    per_eps = per_eps + t0 + (per_target + t_iteration * s.apgd_iterations) * min(s.apgd_targets, classes - 1)
    m0, per_mix, m_iteration = blocks["mora"]
    per_eps = per_eps + m0 + (per_mix + m_iteration * s.mora_iterations) * len(s.mora_mixes)
    sq_a, sq_b = blocks["square"]
    per_eps = per_eps + sq_a + sq_b * s.square_queries + predict_ * 3  # APGD-T, MORA, Square each scored
    per_eps = per_eps + tr_a + tr_b * s.transfer_steps + predict_
    diagnostics = (pgd_(s.diagnostic_steps) + predict_) * 2 + blocks["flags"]
    return predict_ + per_eps * eps_count + diagnostics
