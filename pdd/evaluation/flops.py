"""FLOPs of the project's passes, counted on the real code path, and the hours they take on a named device.

Counts come from `torch.utils.flop_counter.FlopCounterMode` around the same code the jobs run (the ensemble's
forward, a method's training step, ART's loss gradient) on 2 synthetic images at the job's real scale; the
counter counts matrix products and convolutions, forward and backward (2 FLOPs per multiply-add) and nothing
else (batch norm, ReLU, pooling, the optimiser: elementwise work under 1% of a ResNet's). Hours are
FLOPs / (peak x utilisation): a floor at utilisation 1, a forecast at a utilisation measured by
`benchmarks/bench_step.py`, `bench_attack.py` or `bench_gpu.py` (achieved FLOP/s over `measured_peak`).
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from pdd.evaluation.cost_meter import CostMeter
from pdd.evaluation.peaks import PEAK_SOURCES, PEAKS, PRECISIONS  # noqa: F401  (re-exported)
from pdd.models import Ensemble, EnsembleSpec

SAMPLE_IMAGES = 2  # images per counted run: BatchNorm's train mode needs more than one value per channel


_UNCOUNTED: set = set()  # operators with no FLOP formula and no decomposition: run as they are, uncounted


def _shapes(values: tuple | list) -> tuple:
    """`values` with every tensor replaced by its shape and every list by a tuple (hashable): what a FLOP
    formula reads (an operator's arguments: tensors, numbers, None, and lists or tuples of them)."""
    return tuple(v.shape if isinstance(v, torch.Tensor) else _shapes(v) if isinstance(v, (list, tuple))
                 else v for v in values)


class FlopCounter(TorchDispatchMode):
    """Total FLOPs of the operators run inside it, by torch's own formulas (`torch.utils.flop_counter`'s
    registry, the ones `FlopCounterMode` applies). FlopCounterMode itself also tracks modules through
    backward hooks, which refuse `torch.autograd.grad` on a leaf input (DEG, GAL, TRS, the attacks): this
    counter skips the module attribution and so runs any code.

    Each operator's count is kept per (operator, shapes, arguments), so a formula runs once per distinct call
    (the counting overhead of a TRS step fell from 1.57 s to 0.93 s). `scale(func, args, out, flops)`, when given,
    turns each distinct call's FLOPs into the figure counted (the projection's width scaling,
    `pdd.estimate.width.WidthScale`)."""

    def __init__(self, scale: Callable[[object, tuple, object, int], float] | None = None) -> None:
        super().__init__()
        self.total = 0
        self.scale = scale
        self._counted: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _UNCOUNTED:
            return func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is None:
            # Under torch.inference_mode (`pdd.evaluation.attacks.predict`) composite operators (conv2d, linear,
            # matmul) arrive undecomposed: decompose them into the counted ones, as FlopCounterMode does.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
            _UNCOUNTED.add(func)  # no composite kernel: the same answer for every later call
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        key = (func, _shapes(args), _shapes(sorted(kwargs.items())), _shapes(out if isinstance(out, tuple) else (out,)))
        flops = self._counted.get(key)
        if flops is None:
            flops = formula(*args, **kwargs, out_val=out)
            if self.scale is not None:
                flops = self.scale(func, args, out, flops)
            self._counted[key] = flops
        self.total += flops
        return out


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (matmul / conv, forward and backward) of one call of `fn`."""
    with FlopCounter() as counter:
        fn()
    return int(counter.total)


def _sample(spec: EnsembleSpec, image_size: int, n: int = SAMPLE_IMAGES, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, spec.in_channels, image_size, image_size, generator=gen)
    return x, torch.randint(spec.num_classes, (n,), generator=gen)


def _check_size(image_size: int) -> None:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")


def _shape(spec: EnsembleSpec) -> tuple:
    """The spec without its PDD settings (hashable, for the caches): PDD's dropout is elementwise and the
    counted FLOPs do not depend on it; the training methods add it themselves."""
    return (spec.arch, spec.num_members, spec.num_classes, spec.in_channels, spec.width)


def forward_flops(spec: EnsembleSpec, image_size: int) -> float:
    """FLOPs of one image through the ensemble's forward (all K members and heads), eval mode."""
    _check_size(image_size)
    return _forward_flops(_shape(spec), image_size)


@functools.cache
def _forward_flops(shape: tuple, image_size: int) -> float:
    spec = EnsembleSpec(*shape)
    model = Ensemble(spec).eval()
    x, _ = _sample(spec, image_size)
    with torch.no_grad():
        return count_flops(lambda: model(x)) / len(x)


def attack_iteration_flops(spec: EnsembleSpec, image_size: int, gradient: str = "loss") -> float:
    """FLOPs per image of one attack iteration: a forward and a backward of the ensemble through ART as the
    attacks call it. `gradient`: "loss" = ART's loss_gradient (FGSM, BIM, PGD; its backward also fills the
    weights' gradients), "class" = pdd's per-sample class_gradient (C&W, JSMA; input gradient only)."""
    _check_size(image_size)
    if gradient not in ("loss", "class"):
        raise ValueError(f"gradient must be 'loss' or 'class', got {gradient!r}")
    return _attack_iteration_flops(_shape(spec), image_size, gradient)


@functools.cache
def _attack_iteration_flops(shape: tuple, image_size: int, gradient: str) -> float:
    from pdd.evaluation.attacks import art_classifier

    spec = EnsembleSpec(*shape)
    model = Ensemble(spec).eval()
    x, y = _sample(spec, image_size)
    classifier = art_classifier(model, tuple(x.shape[1:]), spec.num_classes, torch.device("cpu"))
    xs, ys = x.numpy(), y.numpy()
    if gradient == "loss":  # one-hot labels, as ART's attacks pass them
        onehot = torch.nn.functional.one_hot(y, spec.num_classes).float().numpy()
        return count_flops(lambda: classifier.loss_gradient(xs, onehot)) / len(x)
    return count_flops(lambda: classifier.class_gradient(xs, label=ys)) / len(x)


def _train_run(method_name: str, shape: tuple, image_size: int, settings, layer: int | None):
    """(FLOPs, ledger image-passes) of one training step of `method_name` on SAMPLE_IMAGES images."""
    from pdd.methods import LossSettings, get_method

    method = get_method(method_name, settings or LossSettings())
    k = shape[1]
    pdd = {"num_intervals": max(10, 4 * k), "alpha": 0.9, "beta": 0.1}  # M > K; the FLOPs do not depend on it
    spec = EnsembleSpec(*shape, pdd=pdd if method.uses_pdd else {})
    model = Ensemble(spec).train()
    optimizers = [torch.optim.SGD(group, lr=0.02, momentum=0.9) for group in method.parameter_groups(model)]
    method.start_epoch(model, 0, 1, 0)
    if layer is not None:
        method.layer = layer
    x, y = _sample(spec, image_size)
    with CostMeter(model) as cost:
        flops = count_flops(lambda: method.step(model, optimizers, x, y))
    return flops, cost["forward_images"] + cost["backward_images"]


def train_step_measure(method: str, spec: EnsembleSpec, image_size: int, settings=None) -> tuple[float, float]:
    """(FLOPs per training image, ledger image-passes per training image) of one step of `method`, counted in
    the same run (`CostMeter` counts the passes). DVERGE draws its distillation layer per epoch uniformly:
    its figures are the mean over all layers. `settings`: a `LossSettings` (default: the paper's)."""
    _check_size(image_size)
    from pdd.methods import get_method

    get_method(method)  # a clear error for an unknown name
    return _train_step_measure(method, _shape(spec), image_size, settings)


@functools.cache
def _train_step_measure(method: str, shape: tuple, image_size: int, settings) -> tuple[float, float]:
    from pdd.methods import get_method

    if hasattr(get_method(method), "layer"):
        layers = range(Ensemble(EnsembleSpec(*shape)).num_feature_layers())
        runs = [_train_run(method, shape, image_size, settings, layer) for layer in layers]
    else:
        runs = [_train_run(method, shape, image_size, settings, None)]
    return (statistics.fmean(f for f, _ in runs) / SAMPLE_IMAGES,
            statistics.fmean(p for _, p in runs) / SAMPLE_IMAGES)


def train_step_flops(method: str, spec: EnsembleSpec, image_size: int, settings=None) -> float:
    """FLOPs per training image of one step of `method` (forward, every backward, inner attacks)."""
    return train_step_measure(method, spec, image_size, settings)[0]


# ----------------------------------------------------------------------------- devices and hours


def peak(device: str, precision: str = "tf32") -> float:
    """Dense peak FLOP/s of `device` (a key of PEAKS) at `precision` (fp32, tf32, bf16), from its data sheet."""
    if device not in PEAKS:
        raise ValueError(f"unknown device {device!r}; expected one of {', '.join(PEAKS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    value = PEAKS[device][precision]
    if value is None:
        raise ValueError(f"{device} has no {precision} hardware path (its data sheet lists none); use fp32")
    return value


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def hours(flops: float, device: str = "h200", precision: str = "tf32", utilisation: float = 1.0,
          rate: float | None = None) -> float:
    """Hours to run `flops` FLOPs: flops / (peak x utilisation) / 3600, or flops / rate with a measured
    achieved `rate` in FLOP/s (then device, precision and utilisation are not used)."""
    if not (math.isfinite(flops) and flops >= 0):
        raise ValueError(f"flops must be a non-negative finite number, got {flops!r}")
    if rate is None:
        utilisation = _positive("utilisation", utilisation)
        if utilisation > 1:
            raise ValueError(f"utilisation is a fraction of the peak, at most 1; got {utilisation}")
        rate = peak(device, precision) * utilisation
    return flops / _positive("rate", rate) / 3600


def passes_to_hours(image_passes: float, flops_per_pass: float, **device) -> float:
    """Hours of `image_passes` passes of `flops_per_pass` FLOPs each (`hours`' keywords name the device)."""
    return hours(image_passes * flops_per_pass, **device)


def measured_peak(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None,
                  reps: int = 5) -> float:
    """The machine's achievable FLOP/s: the median rate of an n x n x n matmul (2 n^3 FLOPs) on `device` in
    `dtype` (n: 2048 on the CPU, 8192 on a GPU); TF32 follows torch.backends' current setting."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = torch.rand(n, n, device=device, dtype=dtype), torch.rand(n, n, device=device, dtype=dtype)
    times = []
    for i in range(reps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:  # the first call warms up (allocation, kernel choice)
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


# ----------------------------------------------------------------------------- projection rows


JOB_KINDS = ("forward", "attack", "class_gradient_attack", "train")


@dataclass(frozen=True)
class CostRow:
    """One line of a projection: `image_passes` ledger image-passes (CostMeter's forward + backward images)
    of job kind `kind` on ensemble `spec` with square images of `image_size` pixels. kind: "forward"
    (prediction, accuracy: forward passes only), "attack" (ART loss-gradient iterations: FGSM, BIM, PGD),
    "class_gradient_attack" (C&W, JSMA), or "train:<method>" (training steps of that method)."""

    kind: str
    image_passes: float
    spec: EnsembleSpec
    image_size: int
    name: str = ""

    def __post_init__(self) -> None:
        base, _, method = self.kind.partition(":")
        if base not in JOB_KINDS or (base == "train") != bool(method):
            raise ValueError(f"unknown job kind {self.kind!r}; expected forward, attack, class_gradient_attack "
                             "or train:<method>")
        if method:
            from pdd.methods import METHODS

            if method not in METHODS:
                raise ValueError(f"unknown method {method!r} in job kind {self.kind!r}")
        if not (math.isfinite(self.image_passes) and self.image_passes >= 0):
            raise ValueError(f"image_passes must be a non-negative finite number, got {self.image_passes!r}")
        _check_size(self.image_size)


def flops_per_pass(kind: str, spec: EnsembleSpec, image_size: int) -> float:
    """FLOPs per ledger image-pass of job kind `kind` (see `CostRow`). An attack iteration is one forward and
    one backward pass in the ledger, so its FLOPs per image are split over 2 passes; a training step's FLOPs
    are divided by the passes the ledger counted in the same run (work outside the ledger, DVERGE's
    distillation, is so carried by the ledger's passes)."""
    base, _, method = kind.partition(":")
    if base == "forward":
        return forward_flops(spec, image_size)
    if base == "attack":
        return attack_iteration_flops(spec, image_size, "loss") / 2
    if base == "class_gradient_attack":
        return attack_iteration_flops(spec, image_size, "class") / 2
    if base == "train":
        flops, passes = train_step_measure(method, spec, image_size)
        return flops / passes
    raise ValueError(f"unknown job kind {kind!r}")


def estimate(rows: Iterable[CostRow], device: str = "h200", precision: str = "tf32", utilisation: float = 1.0,
             rate: float | None = None) -> list[dict]:
    """Per row and a final "total" row: image-passes, FLOPs and hours on `device` (see `hours`)."""
    out, total_passes, total_flops = [], 0.0, 0.0
    for row in rows:
        flops = row.image_passes * flops_per_pass(row.kind, row.spec, row.image_size)
        total_passes, total_flops = total_passes + row.image_passes, total_flops + flops
        out.append({"name": row.name or row.kind, "kind": row.kind, "image_passes": row.image_passes,
                    "flops": flops, "hours": hours(flops, device, precision, utilisation, rate)})
    out.append({"name": "total", "kind": "", "image_passes": total_passes, "flops": total_flops,
                "hours": hours(total_flops, device, precision, utilisation, rate)})
    return out
