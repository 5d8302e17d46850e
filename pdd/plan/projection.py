"""Projected model image-passes of a whole config run, per rule (`benchmarks/project_cost.py` prints it).

Image-passes are what the cost ledger counts (`pdd.evaluation.cost_meter.CostMeter`):
images through an ensemble's forward and
through a backward pass that reaches an ensemble output (a second-order loss counts each pass). Nothing here is
guessed: each job kind's passes per unit are MEASURED by running the job's own code (the training step, ART's
attacks through `pdd.evaluation.attacks.run_attack`, `pdd.evaluation.strong`, `pdd.evaluation.diversity`,
`pdd.evaluation.member_transfer`,
`pdd.step_timing`) on `--images` synthetic images at paper scale (real widths, K, image sizes and classes; random
initial weights), then multiplied by the counts the config implies:

- the jobs: the union of `pdd.plan.jobs.output_jobs` over every requested output (what Snakemake would run);
- images: the datasets' real sizes (TRAIN_IMAGES / TEST_IMAGES) or the config's `num_images`; per training
  epoch floor(N / batch) * batch images (the last partial batch is dropped) and one pass over the test set;
- iterations: where passes grow exactly linearly with an iteration count (PGD / BIM steps, adversarial
  training's PGD steps, TRS's and DVERGE's inner steps, C&W iterations and binary-search steps, APGD iterations
  and restarts, member-transfer PGD steps, timing steps), the passes are measured at two small counts and the
  line through them is evaluated at the config's count; the arithmetic is printed.

Widths: the passes do not depend on the members' width where no loop depends on the data, and every counted
operator's FLOPs are proportional to the product of one weight-shaped tensor's dimensions (`WidthScale`). So each
measurement runs once, at a narrow width step (a step of the configured widths' greatest common divisor: the
first above the images per measurement at which every weight shape names its real one unambiguously, 3 or 4 for
a width-64 config), and each operator's FLOPs are scaled to the real widths as counted (exact integers). Only
from a width step of NARROW_FROM = 16 up: below, a narrower run gains little. An operator that cannot be scaled
sends its measurement to the real widths (listed in the output). Data-dependent loops (C&W's line search) run
as often as on the narrow model; their count on random weights is an illustration either way.
`Bench(narrow=False)` measures everything at the real widths (`benchmarks/project_cost.py --full-width`).

Data-dependent loops are marked in the output: JSMA stops when an image reaches its target or its budget of
gamma * features changed features (projected at floor(gamma * features / 2) + 1 iterations: two new features
per iteration); C&W's line search runs 1-11 extra forwards per iteration (measured mean on these images); the
strong evaluation's restarts run only on images still unbroken (projected as if none broke: an upper bound).

Images the target misclassifies are not attacked (`run_attack`, the strong evaluation, member transfer craft only
on the initially correct ones). The synthetic images here are labelled with the model's own predictions, so every
image is correct and the passes above are those of an error-free model. The saving is reported beside them, not
measured: with a clean error e, a job saves e x (its passes that scale with the crafted images), e being the
paper's own baseline clean error (Table 2, K = 3: `CLEAN_ERROR`); a dataset the paper reports none for gets none.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from pdd import data
from pdd.evaluation import flops as F
from pdd.evaluation.attacks import ATTACKS, AttackSettings, predict, run_attack
from pdd.evaluation.cost_meter import CostMeter
from pdd.evaluation.diversity import diversity_per_image
from pdd.evaluation.flops import FlopCounter
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
from pdd.plan.jobs import output_jobs
from pdd.plan.outputs import requested, variant
from pdd.plan.paths import ATTACK_RULES, ATTACK_SEP, STRONG_NORMS, parse_path
from pdd.step_timing import time_methods
from pdd.training import accuracy, ensemble_spec

# The datasets' real split sizes (Tiny-ImageNet's test split is its labelled val split).
TRAIN_IMAGES = {"fashion_mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "tiny_imagenet": 100_000,
                "digits": 1_437}
TEST_IMAGES = {"fashion_mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000, "tiny_imagenet": 10_000,
               "digits": 360}
# Clean error of the paper's K = 3 baseline ("No Attack" row of Table 2: 94.37, 80.32, 67.36% accuracy): the share
# of test images an evaluation job skips. CIFAR-10 and digits: not in the paper, no saving projected.
CLEAN_ERROR = {"fashion_mnist": 1 - 0.9437, "cifar100": 1 - 0.8032, "tiny_imagenet": 1 - 0.6736}
CPU = torch.device("cpu")
TINY_EPS = 1e-5  # measuring restarts: an eps no image breaks at, so every restart runs on every image


# ----------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Passes:
    """Image-passes (forward, backward) per unit; `extra` counts single-member passes outside the ledger;
    `flops` is every FLOP of the unit (`pdd.evaluation.flops.FlopCounter`, the extra passes included)."""

    forward: float
    backward: float
    extra: float = 0.0
    flops: float = 0.0

    @property
    def total(self) -> float:
        return self.forward + self.backward

    def __add__(self, other: Passes) -> Passes:
        return Passes(self.forward + other.forward, self.backward + other.backward, self.extra + other.extra,
                      self.flops + other.flops)

    def __sub__(self, other: Passes) -> Passes:
        return Passes(self.forward - other.forward, self.backward - other.backward, self.extra - other.extra,
                      self.flops - other.flops)

    def __mul__(self, factor: float) -> Passes:
        return Passes(self.forward * factor, self.backward * factor, self.extra * factor, self.flops * factor)

    def show(self) -> str:
        text = f"{self.total:,.4g} ({self.forward:,.4g} fwd + {self.backward:,.4g} bwd)"
        return text + (f" + {self.extra:,.4g} uncounted member passes" if self.extra else "")


@contextmanager
def uncounted_member_passes(model: Ensemble) -> Iterator[list[float]]:
    """Count, in ensemble image-passes (member-images / K), the single-member passes that bypass
    `Ensemble.forward`, so CostMeter cannot see them: `member_feature` (DVERGE's distillation; forward, and
    backward where its output is differentiated) and `features` called from outside forward (diversity's L_F)."""
    found = [0.0]
    k, depth = model.num_members, [0]
    forward, features, member_feature = model.forward, model.features, model.member_feature

    def add(images: float) -> None:
        found[0] += images

    def counted_forward(x: torch.Tensor) -> torch.Tensor:
        depth[0] += 1
        try:
            return forward(x)
        finally:
            depth[0] -= 1

    def counted_features(x: torch.Tensor) -> torch.Tensor:
        if not depth[0]:
            add(x.shape[1] if x.dim() == 5 else x.shape[0])
        return features(x)

    def counted_member_feature(index: int, x: torch.Tensor, layer: int) -> torch.Tensor:
        out, images = member_feature(index, x, layer), x.shape[0] / k
        add(images)
        if out.requires_grad:
            out.register_hook(lambda grad: add(images))
        return out

    model.forward, model.features, model.member_feature = counted_forward, counted_features, counted_member_feature
    try:
        yield found
    finally:
        del model.forward, model.features, model.member_feature


def measure(run: Callable[[], object], images: int, model: Ensemble | None = None,
            scale: WidthScale | None = None) -> Passes:
    """Image-passes per image of `run()` (every ensemble it runs), plus the passes CostMeter cannot see, and
    its FLOPs per image counted in the same run (each operator's scaled by `scale` when given)."""
    extra = [0.0]
    with CostMeter() as cost, FlopCounter(scale) as counter:
        if model is not None:
            with uncounted_member_passes(model) as extra:
                run()
        else:
            run()
    return Passes(cost["forward_images"] / images, cost["backward_images"] / images, extra[0] / images,
                  counter.total / images)


def line(at: Callable[[int], Passes]) -> tuple[Passes, Passes]:
    """(intercept, slope) of passes that grow linearly with an iteration count, from the counts 1 and 2."""
    one, two = at(1), at(2)
    slope = two - one
    return one - slope, slope


NARROW_FROM = 16  # narrower configs are measured as they are: a narrower run gains little


class Missing(LookupError):
    """A measurement neither cached nor stored, met while probing (`prefetch`)."""


class WidthDependent(ValueError):
    """An operator's FLOPs cannot be scaled from the narrow widths: the measurement runs at the real widths."""


ATEN = torch.ops.aten
CONVOLUTIONS = (ATEN.convolution, ATEN._convolution, ATEN.convolution_backward)


def parameter_shapes(dataset: str, arch: str, width: int) -> list[tuple[int, ...]]:
    """The shapes of an ensemble member's convolution and linear weights (built on the meta device: no memory,
    no initialisation), in a fixed order."""
    info = data.info(dataset)
    with torch.device("meta"):
        model = Ensemble(EnsembleSpec(arch, 2, info.num_classes, info.in_channels, width))
    return [tuple(w.shape) for w in [*model.members[0].parameters(), model.heads[0].weight] if w.dim() >= 2]


class WidthScale:
    """The FLOPs an operator run on narrow models would have on the real ones.

    Every counted operator is a convolution or a matrix product (forward, backward, or of a second-order
    backward) whose FLOPs are proportional to the product of one weight-shaped tensor's dimensions (a layer's
    weight, its gradient, or a product shaped like it) times dimensions that do not depend on the width
    (images, spatial size, class scores). So real FLOPs = narrow FLOPs x prod(real shape) / prod(narrow shape),
    the shapes paired through `shapes` (every narrow weight shape -> its real one; a matrix also transposed, a
    convolution's first two dimensions also swapped). Which tensor: a convolution's weight slot; where that is
    not a weight (the weight gradient of a strided convolution's double backward: a convolution whose output is
    [C_in, C_out, k', k'] with k' >= k), its output's two channel dimensions through `channels`; a matrix
    product's operand or output of a weight's shape, and if none is (ADP's Gram matrix of class scores), its
    FLOPs unchanged. A convolution on neither raises WidthDependent."""

    def __init__(self, shapes: dict[tuple[int, ...], tuple[int, ...]], channels: dict[int, int]):
        self.shapes, self.channels = shapes, channels

    @classmethod
    def between(cls, narrow: list[tuple[int, ...]], real: list[tuple[int, ...]]) -> WidthScale | None:
        """The scale from paired weight shapes, or None where a narrow shape or channel count would stand for
        two real ones (e.g. at width 1 with 1-channel images: the first and an inner 3x3 convolution)."""
        shapes: dict[tuple, tuple] = {}
        channels: dict[int, int] = {}
        for small, big in zip(narrow, real):
            pairs = [(small, big)]
            if len(small) == 2:
                pairs.append((small[::-1], big[::-1]))
            if len(small) == 4:
                pairs.append(((small[1], small[0], *small[2:]), (big[1], big[0], *big[2:])))
            for a, b in pairs:
                if shapes.setdefault(a, b) != b:
                    return None
            for a, b in zip(small[:2], big[:2]):
                if channels.setdefault(a, b) != b:
                    return None
        return cls(shapes, channels)

    def _ratio(self, small: tuple[int, ...], big: tuple[int, ...], flops: int) -> int | float:
        scaled = Fraction(flops) * math.prod(big) / math.prod(small)
        return int(scaled) if scaled.denominator == 1 else float(scaled)

    def __call__(self, func, args: tuple, out: object, flops: int) -> int | float:
        outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]
        if func._overloadpacket in CONVOLUTIONS:
            weight = tuple(args[2 if func._overloadpacket is ATEN.convolution_backward else 1].shape)
            if weight in self.shapes:
                return self._ratio(weight, self.shapes[weight], flops)
            pair = tuple(outs[0].shape[:2]) if outs and outs[0].dim() == 4 else ()
            if len(pair) == 2 and all(c in self.channels for c in pair):
                return self._ratio(pair, tuple(self.channels[c] for c in pair), flops)
            shapes = [tuple(t.shape) for t in [*args, *outs] if isinstance(t, torch.Tensor)]
            raise WidthDependent(f"{func} on no weight-shaped tensor: {shapes}")
        for tensor in [*(a for a in reversed(args) if isinstance(a, torch.Tensor)), *outs]:
            shape = tuple(tensor.shape)
            if shape in self.shapes:
                return self._ratio(shape, self.shapes[shape], flops)
        return flops


def _encode(value: object) -> object:
    """A measurement (Passes, tuples and dicts of them, numbers, text, None) as JSON."""
    if isinstance(value, Passes):
        return {"passes": [value.forward, value.backward, value.extra, value.flops]}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": {key: _encode(v) for key, v in value.items()}}
    return value


def _decode(value: object) -> object:
    if isinstance(value, dict):
        if "passes" in value:
            return Passes(*value["passes"])
        if "tuple" in value:
            return tuple(_decode(v) for v in value["tuple"])
        return {key: _decode(v) for key, v in value["dict"].items()}
    return value


def code_version() -> str:
    """What a stored measurement is valid for: the projection's code (and every package module it imports,
    `pdd.fingerprint`), torch's (its FLOP formulas, autograd) and ART's (its attacks' passes)."""
    from importlib.metadata import version  # not `import art`: seconds, for its version string

    from pdd.fingerprint import fingerprint

    art = version("adversarial-robustness-toolbox")
    return f"{fingerprint('pdd.plan.projection')} torch {torch.__version__} art {art}"


class Store:
    """Measurements kept on disk between runs (a small JSON file), valid while `code_version()` is unchanged:
    a measurement depends only on the code and its inputs (the key and a digest of the settings it reads)."""

    def __init__(self, path: Path | str):
        self.path, self.version = Path(path), code_version()
        try:
            stored = json.loads(self.path.read_text())
        except (OSError, ValueError):
            stored = {}
        same = isinstance(stored, dict) and stored.get("code") == self.version
        self.entries: dict = stored.get("measurements", {}) if same else {}

    def get(self, name: str) -> object:
        return _decode(self.entries[name]) if name in self.entries else None

    def put(self, name: str, value: object) -> None:
        """Store and write at once (an interrupted run keeps what it measured); atomic replace."""
        self.entries[name] = _encode(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps({"code": self.version, "measurements": self.entries}, indent=0))
        os.replace(temporary, self.path)


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
                p11, p12 = run(0.01, cw_max_iter=1, cw_binary_search_steps=1), run(0.01, cw_max_iter=2,
                                                                                   cw_binary_search_steps=1)
                p21 = run(0.01, cw_max_iter=1, cw_binary_search_steps=2)
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


# ----------------------------------------------------------------------------- the config's jobs


@dataclass
class Row:
    """One group of identical jobs: how many, what one unit costs (measured), units per job, the arithmetic;
    `flops_per_job` is the FLOPs the same arithmetic gives from the FLOPs measured with the passes. An attack row
    counts the runs of one attack, and `job_ids` names the jobs they run in (a job runs several attacks)."""

    rule: str
    label: str
    jobs: int
    per_job: float
    arithmetic: str
    note: str = ""
    flops_per_job: float = 0.0
    saving_per_job: float = 0.0  # expected passes not spent on misclassified images (clean error x crafted passes)
    job_ids: frozenset = frozenset()

    @property
    def total(self) -> float:
        return self.jobs * self.per_job

    @property
    def flops(self) -> float:
        return self.jobs * self.flops_per_job

    @property
    def saving(self) -> float:
        return self.jobs * self.saving_per_job


def sci(value: float) -> str:
    """A count as people write it: 240,000 below a million, 3.15e7 above."""
    if abs(value) < 1e6:
        return f"{value:,.0f}" if value == round(value) else f"{value:,.4g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{float(mantissa):.3g}e{int(exponent)}"


def jobs_of(config: dict) -> dict[str, list[dict]]:
    """Every job the config's requested outputs need (deduplicated), parsed, per rule."""
    jobs: set[tuple[str, str]] = set()
    for name in requested(config):
        jobs |= output_jobs(config, name)
    found: dict[str, list[dict]] = {}
    for rule, path in sorted(jobs):
        fields = parse_path(path)
        if rule in ATTACK_RULES:  # one entry per attack the job runs, each naming its job
            found.setdefault(rule, []).extend({**fields, "attack": attack, "job": path}
                                              for attack in fields["attack"].split(ATTACK_SEP))
        else:
            found.setdefault(rule, []).append(fields)
    return found


def job_count(rows: list[Row]) -> int:
    """Jobs behind `rows`: attack rows share jobs (their `job_ids`), the others count their own."""
    return len({j for r in rows for j in r.job_ids}) + sum(r.jobs for r in rows if not r.job_ids)


def group(items: Iterable[dict], keys: tuple[str, ...]) -> dict[tuple, int]:
    counted: dict[tuple, int] = {}
    for item in items:
        key = tuple(item.get(k) for k in keys)
        counted[key] = counted.get(key, 0) + 1
    return counted


def eval_images(config: dict, dataset: str, section: str = "evaluation") -> int:
    """Test images an evaluation job of `section` attacks (its num_images, at most the test set)."""
    n = plan.num_images(config, section)
    return min(n, TEST_IMAGES[dataset]) if n else TEST_IMAGES[dataset]


def train_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    rows = []
    for (dataset, arch, k, method), count in sorted(group(jobs, ("dataset", "arch", "K", "method")).items()):
        step, evaluation, how, _ = bench.train(dataset, arch, k, method)
        cfg = plan.train_config(config, dataset, k, method, 0, arch)
        batch, epochs, n_train, n_test = cfg.batch_size, cfg.epochs, TRAIN_IMAGES[dataset], TEST_IMAGES[dataset]
        per_epoch = n_train // batch * batch if n_train > batch else n_train
        per_job = epochs * (per_epoch * step.total + n_test * evaluation.total)
        flops = epochs * (per_epoch * step.flops + n_test * evaluation.flops)
        arithmetic = (f"{epochs} epochs x ({per_epoch:,} train images x {step.total:.4g} + {n_test:,} test images x "
                      f"{evaluation.total:.4g}) = {sci(per_job)}")
        note = "" if how == "measured" else how
        if step.extra:
            note += f" = {sci(epochs * per_epoch * step.extra)} per job"
        rows.append(Row("train", f"{dataset} {arch} K={k} {method}", count, per_job, arithmetic, note, flops))
    return rows


def attack_passes(bench: Bench, dataset: str, k: int, attack: str, param: float | None, settings: AttackSettings,
                  surrogate_arch: str | None = None) -> tuple[Passes, str, str]:
    """(passes per image of one attack run at `param`, its arithmetic, a note on data dependence)."""
    c, cost = bench.attack(dataset, k, attack, surrogate_arch), ATTACKS[attack].cost
    if cost == "fixed":
        return c["fixed"], f"{c['fixed'].total:.4g}", ""
    steps = settings.steps
    if cost == "per_step":
        return (c["a"] + c["per_step"] * steps,
                f"({c['a'].total:.4g} + {steps} steps x {c['per_step'].total:.4g})", "")
    if cost == "per_iteration":
        info = data.info(dataset)
        features = info.in_channels * info.image_size**2
        iterations = math.floor(param * features / 2) + 1
        return (c["a"] + c["per_iteration"] * iterations,
                f"({c['a'].total:.4g} + {iterations} iterations x {c['per_iteration'].total:.4g})",
                f"JSMA iterations = floor(gamma x {features:,} features / 2) + 1, the budget with two new features "
                "per iteration (fewer if the target is reached, more if theta re-picks a feature)")
    bss, iterations = settings.cw_binary_search_steps, settings.cw_max_iter
    return (c["c0"] + (c["per_search"] + c["per_iteration"] * iterations) * bss,
            f"({c['c0'].total:.4g} + {bss} x ({c['per_search'].total:.4g} + {iterations:,} iterations x "
            f"{c['per_iteration'].total:.4g}))",
            f"C&W per iteration: {c['per_iteration'].backward:.4g} backward (2 class gradients) + "
            f"{c['per_iteration'].forward:.4g} forward measured (the line search's forwards are data-dependent)")


def clean_saving(dataset: str, crafted_passes: float, scope: str = "") -> tuple[float, str]:
    """(expected passes saved per job, a note) when the share CLEAN_ERROR[dataset] of the images is not crafted on:
    `crafted_passes` = the job's passes that scale with the crafted images, at clean error 0."""
    if dataset not in CLEAN_ERROR:
        return 0.0, f"{dataset}: no clean error in the paper, no saving projected"
    e = CLEAN_ERROR[dataset]
    return e * crafted_passes, (f"misclassified images skipped: saves {e:.1%} (paper's baseline clean error) x "
                                f"{sci(round(crafted_passes))}{scope} = {sci(round(e * crafted_passes))} per job")


def attack_rows(bench: Bench, config: dict, rule: str, jobs: list[dict]) -> list[Row]:
    rows = []
    for (dataset, k, suite, attack), count in sorted(group(jobs, ("dataset", "K", "suite", "attack")).items()):
        job_ids = frozenset(j["job"] for j in jobs if (j["dataset"], j["K"], j["suite"], j["attack"]) ==
                            (dataset, k, suite, attack))
        if rule == "transfer":
            params = plan.transfer_params(config, attack)
            settings, surrogate_arch = plan.attack_settings(config), plan.surrogate_arch(config, suite)
        else:
            params = plan.suite_params(config, suite, dataset, attack)
            settings, surrogate_arch = plan.attack_settings(config, plan.suite_protocol(config, suite)), None
        n = eval_images(config, dataset)
        terms, per_job, flops, notes, crafted = [], 0.0, 0.0, [], 0.0
        predict_ = bench.predict(dataset, k)
        for param in params or [None]:
            passes, text, note = attack_passes(bench, dataset, k, attack, param, settings, surrogate_arch)
            per_job += n * passes.total
            flops += n * passes.flops
            crafted += n * (passes - predict_).total  # all but the clean classification of the N images
            terms.append(text)
            if note and note not in notes:
                notes.append(note)
        label = f"{dataset} K={k} {suite}/{attack}"
        if params:
            label += f" (params {', '.join(f'{p:g}' for p in params)})"
        arithmetic = f"{n:,} images x [{' + '.join(terms)}] = {sci(per_job)}"
        saving, note = clean_saving(dataset, crafted)
        rows.append(Row(rule, label, count, per_job, arithmetic, "; ".join([*notes, note]), flops, saving, job_ids))
    return rows


def strong_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    """The strong evaluation (folder 'strong') and its L2 twin ('strong_l2'); the twin's passes are measured at
    L-inf: ART's and MORA's L2 steps run the same forward and backward passes."""
    rows = []
    for index, ((dataset, k, suite), count) in enumerate(sorted(group(jobs, ("dataset", "K", "suite")).items())):
        norm = STRONG_NORMS[suite]
        settings = plan.strong_settings(config, norm)
        blocks = bench.strong_blocks(dataset, k, check=bench.check_formula and index == 0)  # one check suffices
        classes = data.info(dataset).num_classes
        losses = 2 if classes >= 3 else 1
        eps_count = len(plan.strong_eps(config, dataset, norm))
        per_image = strong_formula(blocks, settings, eps_count, losses, classes)
        n = eval_images(config, dataset, "strong_evaluation")
        (pa, pb), (ta, tb), pr = blocks["pgd"], blocks["transfer"], blocks["predict"]
        c0, per_restart, per_iteration = blocks["apgd"]
        t0, per_target, t_iteration = blocks["apgd_t"]
        m0, per_mix, m_iteration = blocks["mora"]
        sq_a, sq_b = blocks["square"]
        arithmetic = (f"{n:,} images x {per_image.total:.5g} = {sci(n * per_image.total)}; per image: "
                      f"{pr.total:.3g} + {eps_count} eps x [PGD steps {list(settings.pgd_steps)} + "
                      f"{settings.pgd_restarts - 1} restarts x {settings.pgd_steps[-1]} (PGD(s) = {pa.total:.3g} + "
                      f"s x {pb.total:.3g}, + {pr.total:.3g} predict each) + {losses} APGD x ({c0.total:.3g} + "
                      f"{settings.apgd_restarts} restarts x ({per_restart.total:.3g} + {settings.apgd_iterations} "
                      f"iterations x {per_iteration.total:.3g}) + {pr.total:.3g}) + APGD-T ({t0.total:.3g} + "
                      f"{min(settings.apgd_targets, classes - 1)} targets x ({per_target.total:.3g} + "
                      f"{settings.apgd_iterations} x {t_iteration.total:.3g})) + MORA ({m0.total:.3g} + "
                      f"{len(settings.mora_mixes)} mixes x ({per_mix.total:.3g} + {settings.mora_iterations} x "
                      f"{m_iteration.total:.3g})) + Square ({sq_a.total:.3g} + {settings.square_queries} x "
                      f"{sq_b.total:.3g}) + 3 x {pr.total:.3g} + transfer ({ta.total:.3g} + "
                      f"{settings.transfer_steps} x {tb.total:.3g} + {pr.total:.3g})] + 2 diagnostics x "
                      f"(PGD({settings.diagnostic_steps}) + {pr.total:.3g}) + flags {blocks['flags'].total:.3g}")
        note = ("upper bound: every restart, target and mix on every image (they run only on images still "
                "unbroken)")
        if blocks["check"]:
            composed, direct = blocks["check"]
            note += (f"; the formula checked against evaluate() itself at 1-2 steps, restarts, targets, mixes and "
                     f"queries: {composed.total:.4g} composed vs {direct.total:.4g} measured per image")
        saving, saving_note = clean_saving(dataset, n * (per_image - pr - blocks["change"]).total,
                                           " (all but the clean classification and the determinism check)")
        rows.append(Row("strong", f"{dataset} K={k} {norm}", count, n * per_image.total, arithmetic,
                        f"{note}; {saving_note}", n * per_image.flops, saving))
    return rows


def diversity_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    rows = []
    for (dataset, k), count in sorted(group(jobs, ("dataset", "K")).items()):
        passes = bench.diversity(dataset, k)
        n = eval_images(config, dataset, "diversity")
        note = (f"outside the ledger: {n:,} x {passes.extra:.4g} = {sci(n * passes.extra)} feature passes per job "
                "(Ensemble.features for L_F, called outside forward)" if passes.extra else "")
        rows.append(Row("diversity", f"{dataset} K={k}", count, n * passes.total,
                        f"{n:,} images x {passes.total:.4g} = {sci(n * passes.total)}", note, n * passes.flops))
    return rows


def member_transfer_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    rows, steps = [], plan.attack_settings(config).steps
    eps = requested(config)["figure_member_transfer"]["eps"]
    for (dataset, k), count in sorted(group(jobs, ("dataset", "K")).items()):
        a, b = bench.member_transfer(dataset, k, eps)
        n = eval_images(config, dataset)
        per_image = a + b * steps
        rows.append(Row("member_transfer", f"{dataset} K={k}", count, n * per_image.total,
                        f"{n:,} images x ({a.total:.4g} + {steps} steps x {b.total:.4g}) = {sci(n * per_image.total)}",
                        f"each member's PGD runs the whole ensemble (Member.forward): {k} x {steps} steps; images no "
                        "member classifies correctly are skipped: saving not projected (the paper gives no member "
                        "error)", n * per_image.flops))
    return rows


def time_steps_rows(bench: Bench, config: dict, jobs: list[dict]) -> list[Row]:
    rows = []
    t = plan.timing_settings(config)
    methods = plan.timing_methods(config)
    for (dataset, arch, k), count in sorted(group(jobs, ("dataset", "arch", "K")).items()):
        per_image = bench.time_steps(dataset, arch, k, list(methods))
        rounds = t.warmup + t.steps
        per_job = rounds * t.batch_size * per_image.total
        rows.append(Row("time_steps", f"{dataset} K={k} ({', '.join(methods)})", count, per_job,
                        f"({t.warmup} warm-up + {t.steps} timed) rounds x {t.batch_size} images x "
                        f"{per_image.total:.4g} (one step of each method) = {sci(per_job)}", "",
                        rounds * t.batch_size * per_image.flops))
    return rows


REQUEST_ORDER = ("strong_blocks", "time_steps", "attack", "train", "member_transfer", "diversity", "predict",
                 "evaluation")


def requests(config: dict, jobs: dict[str, list[dict]], check: bool = False) -> list[tuple[str, tuple]]:
    """Every measurement the row builders below take, as (Bench method, arguments), longest kinds first (strong
    evaluation, timing, attacks with C&W first): what `prefetch` spreads over processes. A measurement missing
    here is still taken, by `project` itself, one after another (tests/test_estimate.py checks none is)."""
    found: list[tuple[str, tuple]] = []
    trained: dict[tuple, str] = {}  # PDD's M variants share one measurement (Bench.train's key): the first
    for (dataset, arch, k, method) in sorted(group(jobs.get("train", []), ("dataset", "arch", "K", "method"))):
        trained.setdefault((dataset, arch, k, variant(method)[0]), method)
    found += [("train", (dataset, arch, k, method)) for (dataset, arch, k, _), method in trained.items()]
    for rule in ("whitebox", "transfer"):
        for (dataset, k, suite, attack) in sorted(group(jobs.get(rule, []), ("dataset", "K", "suite", "attack"))):
            surrogate = plan.surrogate_arch(config, suite) if rule == "transfer" else None
            found += [("attack", (dataset, k, attack, surrogate)), ("predict", (dataset, k))]
    for index, (dataset, k, _) in enumerate(sorted(group(jobs.get("strong", []), ("dataset", "K", "suite")))):
        found.append(("strong_blocks", (dataset, k, check and index == 0)))
    for dataset, k in sorted(group(jobs.get("diversity", []), ("dataset", "K"))):
        found.append(("diversity", (dataset, k)))
    if jobs.get("member_transfer"):
        eps = requested(config)["figure_member_transfer"]["eps"]
        found += [("member_transfer", (dataset, k, eps))
                  for dataset, k in sorted(group(jobs["member_transfer"], ("dataset", "K")))]
    methods = list(plan.timing_methods(config)) if jobs.get("time_steps") else []
    for dataset, arch, k in sorted(group(jobs.get("time_steps", []), ("dataset", "arch", "K"))):
        found.append(("time_steps", (dataset, arch, k, methods)))
    unique = list({repr(r): r for r in found}.values())
    return sorted(unique, key=lambda r: (REQUEST_ORDER.index(r[0]), r[0] != "attack" or r[1][2] != "cw"))


_WORKER: list[Bench] = []  # the Bench of a prefetch worker process


def _start_worker(config: dict, images: int, seed: int, narrow: bool, narrow_from: int) -> None:
    torch.set_num_threads(1)  # the processes are the parallelism: tiny kernels gain nothing from threads
    plan.register_methods(config)
    _WORKER.append(Bench(config, images, seed, narrow=narrow, narrow_from=narrow_from))


def _take(request: tuple[str, tuple]) -> tuple[list[tuple], list[str]]:
    """One measurement in a worker: the blocks it measured, [(key, stored name, value, seconds)], and the ones
    run at the real widths (blocks it shares with an earlier request, e.g. a training job's evaluation, are
    reused from the worker's memory and not sent again)."""
    bench = _WORKER[0]
    before, bench.full_width = set(bench.cache), []
    kind, args = request
    getattr(bench, kind)(*args)
    return ([(key, bench.names[key], value, bench.seconds[key]) for key, value in bench.cache.items()
             if key not in before], bench.full_width)


def prefetch(bench: Bench, config: dict, jobs: dict[str, list[dict]], processes: int) -> None:
    """Take the measurements `project` will need and neither memory nor the store holds, in `processes` worker
    processes at once (one torch thread each), into `bench`'s cache and store."""
    if bench.narrows:  # each dataset's narrow step, for the report (shapes on the meta device: instant)
        for dataset in sorted({j["dataset"] for found in jobs.values() for j in found}):
            bench.narrow_step(dataset)
    wanted = requests(config, jobs, bench.check_formula)
    if not bench.cache and (bench.store is None or not bench.store.entries):
        missing = wanted  # cold: nothing to look up
    else:
        missing = []
        bench.probing = True
        try:
            for kind, args in wanted:
                try:
                    getattr(bench, kind)(*args)
                except Missing:
                    missing.append((kind, args))
        finally:
            bench.probing = False
    if processes < 2 or len(missing) < 2:
        return
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_all_start_methods, get_context

    # fork where there is one (Linux, as DataLoader workers): the workers start with torch and pdd imported
    context = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    setup = (config, bench.images, bench.seed, bench.narrow, bench.narrow_from)
    bench.processes_used = min(processes, len(missing))
    with ProcessPoolExecutor(bench.processes_used, context, _start_worker, setup) as pool:
        for measured, full_width in pool.map(_take, missing):
            for key, name, value, seconds in measured:
                if key not in bench.cache:
                    bench.cache[key], bench.seconds[key], bench.names[key] = value, seconds, name
                    if bench.store is not None:
                        bench.store.put(name, value)
            bench.full_width += full_width


def project(config: dict, bench: Bench, processes: int = 1) -> list[Row]:
    """Every row of the config's jobs (its own training methods registered first, as the workflow does); the
    measurements taken in `processes` processes at once first (`prefetch`)."""
    plan.register_methods(config)
    jobs = jobs_of(config)
    prefetch(bench, config, jobs, processes)
    rows: list[Row] = []
    builders = {"train": lambda j: train_rows(bench, config, j),
                "whitebox": lambda j: attack_rows(bench, config, "whitebox", j),
                "transfer": lambda j: attack_rows(bench, config, "transfer", j),
                "strong": lambda j: strong_rows(bench, config, j),
                "diversity": lambda j: diversity_rows(bench, config, j),
                "member_transfer": lambda j: member_transfer_rows(bench, config, j),
                "time_steps": lambda j: time_steps_rows(bench, config, j)}
    order = ["train", "time_steps", "whitebox", "transfer", "strong", "diversity", "member_transfer", "prepare_data"]
    for rule, found in sorted(jobs.items(), key=lambda item: order.index(item[0]) if item[0] in order else 99):
        if rule == "prepare_data":
            rows.append(Row(rule, ", ".join(j["dataset"] for j in found), len(found), 0.0, "no model passes"))
        elif rule in builders:
            rows += builders[rule](found)
        else:
            raise ValueError(f"no projection for rule {rule!r}")
    return rows


def details(rows: list[Row]) -> str:
    """One table per rule: its groups of identical jobs, their arithmetic, image-passes and FLOPs."""
    out = []
    for rule in dict.fromkeys(r.rule for r in rows):
        mine = [r for r in rows if r.rule == rule]
        saved = sum(r.saving for r in mine)
        out += [f"\n### {rule}: {job_count(mine)} jobs, {sci(sum(r.total for r in mine))} image-passes, "
                f"{sci(sum(r.flops for r in mine))} FLOPs"
                + (f" ({sci(saved)} fewer passes expected: misclassified images skipped)" if saved else "") + "\n",
                "| jobs of | jobs (attacks: runs) | image-passes per job (arithmetic) | image-passes | FLOPs | note |",
                "|---|---:|---|---:|---:|---|"]
        out += [f"| {r.label} | {r.jobs} | {r.arithmetic} | {sci(r.total)} | {sci(r.flops)} | {r.note} |"
                for r in mine]
    return "\n".join(out)


@dataclass(frozen=True)
class Rate:
    """What the hours are computed at: `device`'s dense `precision` peak (`pdd.evaluation.peaks.PEAKS`) times
    `utilisation`, or a measured achieved `rate` in FLOP/s (then the device and utilisation are not used)."""

    device: str = "h200"
    precision: str = "tf32"
    utilisation: float = 1.0
    rate: float | None = None

    def __post_init__(self) -> None:
        F.hours(0.0, self.device, self.precision, self.utilisation, self.rate)  # the same checks

    def hours(self, value: float) -> float:
        return F.hours(value, self.device, self.precision, self.utilisation, self.rate)

    def describe(self) -> str:
        if self.rate is not None:
            return f"at a measured {self.rate / 1e9:,.4g} GFLOP/s"
        peak = F.peak(self.device, self.precision)
        text = f"{self.device.upper()} {self.precision.upper()} peak {peak / 1e12:,.4g} TFLOP/s"
        return f"at the {text}" if self.utilisation == 1 else f"at {self.utilisation:g} x the {text}"


def totals(rows: list[Row], rates: Iterable[Rate] = ()) -> list[dict]:
    """Per rule, then "all": jobs, image-passes, FLOPs, share of the FLOPs and hours at each of `rates`."""
    rates, out = list(rates), []
    all_flops = sum(r.flops for r in rows)
    for rule in [*dict.fromkeys(r.rule for r in rows), "all"]:
        mine = [r for r in rows if rule in ("all", r.rule)]
        value = sum(r.flops for r in mine)
        out.append({"rule": rule, "jobs": job_count(mine), "image_passes": sum(r.total for r in mine),
                    "saving": sum(r.saving for r in mine),
                    "flops": value, "share": value / all_flops if all_flops else 0.0,
                    "hours": [rate.hours(value) for rate in rates]})
    return out


def markdown(rows: list[Row], rates: Iterable[Rate] = (Rate(),)) -> str:
    """The totals per rule and overall: jobs, image-passes (and those expected once misclassified images are
    skipped), FLOPs, share and hours at each of `rates`."""
    rates = list(rates)
    out = ["| rule | jobs | image-passes | expected, misclassified images skipped | FLOPs | share of FLOPs |"
           + "".join(f" hours {rate.describe()} |" for rate in rates),
           "|---|---:|---:|---:|---:|---:|" + "---:|" * len(rates)]
    for t in totals(rows, rates):
        bold = "**" if t["rule"] == "all" else ""
        value, saved = t["image_passes"], t["saving"]
        skipped = f"{sci(value - saved)} (-{100 * saved / value if value else 0:.1f}%)"
        cells = [t["rule"], str(t["jobs"]), sci(value), skipped, sci(t["flops"]), f"{100 * t['share']:.1f}%",
                 *(f"{h:,.3g}" for h in t["hours"])]
        out.append("| " + " | ".join(f"{bold}{c}{bold}" for c in cells) + " |")
    out.append("\nExpected, misclassified images skipped: the paper's baseline clean error (Table 2, K = 3) of each "
               "dataset times the passes that scale with the attacked images; the measured passes, FLOPs and hours "
               "assume every image correctly classified.")
    return "\n".join(out)


def report(config: dict, config_name: str, rates: Iterable[Rate] = (Rate(),), images: int = 2,
           store: Path | str | None = None, show_details: bool = False, narrow: bool = True,
           processes: int = 1) -> str:
    """The projection of `config` as markdown (what `pdd estimate` and `benchmarks/project_cost.py` print):
    how it was measured, the per-group tables if `show_details`, the totals with hours at each of `rates`;
    `narrow`: measure at a narrow width, the FLOPs scaled (the module doc), else at the real widths;
    `processes`: measurements taken at once."""
    start = time.perf_counter()
    bench = Bench(config, images, store=Store(store) if store is not None else None, narrow=narrow,
                  check_formula=show_details)  # the check is a note of the details
    rows = project(config, bench, processes)
    if bench.narrows:
        width = plan.width(config, plan.defended_arch(config))
        steps = {d: n[0] for d, n in bench._steps.items() if n is not None}
        at = ", ".join(f"{d} {width // bench.width_step * step}" for d, step in sorted(steps.items()))
        how = (f" Measured once at a narrow width (model width {at}; the surrogates' in proportion), each operator's "
               "FLOPs scaled exactly to the real widths (`WidthScale`)"
               + (f"; at the real widths, an operator not scalable: {', '.join(bench.full_width)}."
                  if bench.full_width else "."))
    else:
        how = ""
    surrogates = ", ".join(f"{s['arch']} {plan.width(config, s['arch'])}" for s in config["surrogates"].values())
    threads = (f"{bench.processes_used} processes of 1 torch thread" if bench.processes_used > 1 else
               f"{torch.get_num_threads()} torch thread(s)")
    measured = len(bench.cache) - bench.reused
    kept = f"; {bench.reused} reused from {store} (same code)" if bench.reused else ""
    out = [f"# Projected cost of {config_name}\n",
           f"Passes and FLOPs per unit measured on the job kinds' own code: {images} synthetic images per "
           f"measurement at paper scale (model width {plan.width(config, plan.defended_arch(config))}; surrogates "
           f"{surrogates}), random initial weights, {threads}; {measured} measurements run{kept}; "
           f"{time.perf_counter() - start:.0f} s. FLOPs: matrix products and convolutions, "
           "forward and backward (`pdd.evaluation.flops`). Hours = FLOPs / rate: at a peak, a floor no run beats; "
           "the strong evaluation's figures are upper bounds (restarts as if no image broke)." + how]
    if show_details:
        out.append(details(rows))
    out += ["\n### Total\n", markdown(rows, rates)]
    return "\n".join(out)
