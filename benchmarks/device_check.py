"""One GPU's figures for the paper grid in at most --budget-s seconds, needing torch alone; by hand.

    python benchmarks/device_check.py                     # on a CUDA machine: results/device_check.json + a table
    python benchmarks/device_check.py --cpu-smoke         # every section on the CPU at a tiny size (the tests)

Measures, on synthetic data in the paper's shapes (CIFAR-100: 3x32x32, 100 classes; Tiny-ImageNet: 3x64x64, 200
classes), K = 3 and 5 ResNet-18 members of width 64:
- train: seconds per training step (batch 64) of each method through pdd.methods' own `step` (baseline, PDD,
  DEG, PDD+DEG, ADP, then GAL, TRS, PGD adversarial training, DVERGE where the budget allows), in each precision
  (fp32; tf32: TF32 matmuls and convolutions; bf16: the step under torch.autocast, since pdd has no bf16
  training setting) and member mode (loop: members one after another; fused: Ensemble.fuse_members);
- attacks: PGD-10 and C&W image-iterations per second on a batch of 500 (evaluation.batch_size) in eval mode,
  as the project's attacks run them: PGD one forward + backward of the loss per iteration (ART's
  loss_gradient); C&W two per-image class gradients (pdd's one-backward class_gradient) and CW_LOSS_FORWARDS
  forwards of its line search per iteration (model work only: ART's numpy round trips are not included);
- per measurement: FLOPs (pdd.evaluation.flops.count_flops on the same call), the achieved FLOP/s, peak GPU
  memory and the utilisation against the card's data-sheet peak at that precision (pdd.evaluation.peaks).
Measurements run most-wanted first; before each one the time left is checked against what the same kind took
so far, and one that would not fit is skipped and listed. The JSON is rewritten (atomically) after every
measurement, so a run cut off still leaves its figures. Imports: torch and the repository's torch-only
pdd.models, pdd.methods, pdd.evaluation.flops and pdd.evaluation.peaks (no ART, Snakemake, pandas or tqdm).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's pdd (not installed there)
from pdd.evaluation.flops import count_flops  # noqa: E402
from pdd.evaluation.peaks import PEAKS, PRECISIONS  # noqa: E402
from pdd.methods import LossSettings, get_method  # noqa: E402
from pdd.models import Ensemble, EnsembleSpec  # noqa: E402

CORE = ("baseline", "pdd", "deg", "pdd_deg", "adp")       # the paper's methods
EXTRA = ("gal", "trs", "advt_pgd", "dverge")              # measured after everything else, if time is left
SHAPES = {"cifar100": (3, 32, 100), "tiny_imagenet": (3, 64, 200)}  # channels, side, classes
SMOKE_SHAPES = {"cifar100": (3, 8, 10), "tiny_imagenet": (3, 8, 20)}
MODES = ("loop", "fused")
CW_LOSS_FORWARDS = 4  # ART's line search: at least 2 loss forwards per iteration; 3.6-5.6 on the demo (bench_cw_abort)
PDD = {3: {"num_intervals": 10, "alpha": 0.9, "beta": 0.1}, 5: {"num_intervals": 20, "alpha": 0.9, "beta": 0.1}}
FIELDS = ("section", "dataset", "members", "precision", "mode", "method", "batch", "seconds", "images_per_s",
          "flops", "flop_per_s", "utilisation", "peak_memory_mb", "error")
RESERVE_S = 3.0  # kept for the last write and the table


def card(device: torch.device) -> str | None:
    """The key of pdd.evaluation.peaks.PEAKS for this GPU (by its name), None for a CPU or an unknown card."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).lower()
    return next((key for key in PEAKS if key in name), None)


@contextlib.contextmanager
def precision(name: str, device: torch.device):
    """fp32: no TF32; tf32: TF32 matmuls and convolutions; bf16: autocast to bfloat16 (TF32 for the rest)."""
    tf32 = name != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    with torch.autocast(device.type, dtype=torch.bfloat16) if name == "bf16" else contextlib.nullcontext():
        yield


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, reps: int, deadline: float) -> float:
    """Median seconds of `fn` over up to `reps` calls (at least one; no new call after `deadline`)."""
    times = []
    while not times or (len(times) < reps and time.perf_counter() < deadline):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ensemble(shape: tuple, k: int, width: int, pdd: bool, device: torch.device) -> Ensemble:
    channels, _, classes = shape
    torch.manual_seed(0)
    return Ensemble(EnsembleSpec("resnet18", k, classes, channels, width, pdd=PDD[k] if pdd else {})).to(device)


def batch(shape: tuple, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    channels, side, classes = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, channels, side, side, generator=gen)
    return x.to(device), torch.randint(classes, (n,), generator=gen).to(device)


def train_call(method_name: str, shape: tuple, k: int, width: int, mode: str, n: int, device: torch.device):
    """One training step of `method_name` as pdd trains (SGD, the paper's recipe), as a closure."""
    method = get_method(method_name, LossSettings())
    model = ensemble(shape, k, width, method.uses_pdd, device).train()
    model.fuse_members = mode == "fused"
    optimizers = [torch.optim.SGD(group, lr=0.02, momentum=0.9, weight_decay=5e-4)
                  for group in method.parameter_groups(model)]
    method.start_epoch(model, 0, 100, 0)
    x, y = batch(shape, n, device)
    return lambda: method.step(model, optimizers, x, y)


def pgd_call(shape: tuple, k: int, width: int, n: int, device: torch.device):
    """One PGD iteration (L-inf, eps 8/255, step eps/10): ART's loss_gradient (backward through the weights too)."""
    model = ensemble(shape, k, width, False, device).eval()
    x, y = batch(shape, n, device)
    eps = 8 / 255

    def iteration() -> None:
        nonlocal x
        x_adv = x.detach().requires_grad_(True)
        torch.nn.functional.nll_loss(model.log_mean_prob(x_adv), y).backward()
        x = (x_adv + eps / 10 * x_adv.grad.sign()).clamp(0, 1).detach()

    return iteration


def cw_call(shape: tuple, k: int, width: int, n: int, device: torch.device):
    """One C&W iteration's model work: two per-image class gradients (input only) and the line search's forwards."""
    model = ensemble(shape, k, width, False, device).eval()
    x, y = batch(shape, n, device)
    other = (y + 1) % shape[2]

    def iteration() -> None:
        for label in (y, other):
            x_adv = x.detach().requires_grad_(True)
            torch.autograd.grad(model.log_mean_prob(x_adv).gather(1, label[:, None]).sum(), x_adv)
        with torch.no_grad():
            for _ in range(CW_LOSS_FORWARDS):
                model.log_mean_prob(x)

    return iteration


def plan(datasets: tuple[str, ...], members: tuple[int, ...]) -> list[dict]:
    """Every measurement, most wanted first: the paper's methods at TF32 one member after another, the attacks,
    bf16 and fp32 training, fused members, then the other methods."""
    items = []
    for prec, mode, methods in (("tf32", "loop", CORE), ("attacks", None, None), ("bf16", "loop", CORE),
                                ("fp32", "loop", CORE), ("tf32", "fused", CORE), ("bf16", "fused", CORE),
                                ("tf32", "loop", EXTRA)):
        for dataset in datasets:
            for k in members:
                if prec == "attacks":
                    items += [{"section": attack, "dataset": dataset, "members": k, "precision": p, "mode": "loop",
                               "method": None} for p in ("fp32", "tf32", "bf16") for attack in ("pgd10", "cw")]
                else:
                    items += [{"section": "train", "dataset": dataset, "members": k, "precision": prec,
                               "mode": mode, "method": m} for m in methods]
    return items


def measure(item: dict, args, device: torch.device, peaks: dict, flops_cache: dict, deadline: float) -> dict:
    """Run one planned measurement; its fields (FIELDS), an error message instead of figures if it failed."""
    shape = (SMOKE_SHAPES if args.cpu_smoke else SHAPES)[item["dataset"]]
    train = item["section"] == "train"
    n = args.train_batch if train else args.attack_batch
    result = {**item, "batch": n, **{f: None for f in FIELDS if f not in item and f != "batch"}}
    try:
        if train:
            call = train_call(item["method"], shape, item["members"], args.width, item["mode"], n, device)
        else:
            call = (pgd_call if item["section"] == "pgd10" else cw_call)(shape, item["members"], args.width, n, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with precision(item["precision"], device):
            key = (item["section"], item["dataset"], item["members"], item["method"])
            if key not in flops_cache:  # the counted call doubles as the warm-up (FLOPs: same at any precision)
                flops_cache[key] = count_flops(call)
            else:
                call()
            if device.type == "cuda":
                call()  # a second warm-up: cuDNN's autotuning of the shapes, lazy initialisation
            seconds = timed(call, device, args.reps, deadline)
        peak = peaks.get(item["precision"])
        result.update(seconds=seconds, images_per_s=n / seconds, flops=flops_cache[key],
                      flop_per_s=flops_cache[key] / seconds)
        result["utilisation"] = result["flop_per_s"] / peak if peak else None
        if device.type == "cuda":
            result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    except Exception as err:  # an unsupported combination or out of memory: recorded, the rest goes on
        result["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def summary(results: list[dict], peaks: dict) -> dict:
    """Per precision and kind (train: the paper's methods, members in a loop; attacks): total FLOPs over total
    seconds, and that as a fraction of the data-sheet peak, for `pdd estimate --rate` / `--utilisation`."""
    found: dict = {}
    for prec in PRECISIONS:
        for kind, chosen in (("train", lambda r: r["section"] == "train" and r["mode"] == "loop"
                              and r["method"] in CORE),
                             ("attacks", lambda r: r["section"] in ("pgd10", "cw"))):
            done = [r for r in results if r["precision"] == prec and chosen(r) and r["seconds"]]
            if done:
                rate = sum(r["flops"] for r in done) / sum(r["seconds"] for r in done)
                found.setdefault(prec, {})[kind] = {"measurements": len(done), "flop_per_s": rate,
                                                    "utilisation": rate / peaks[prec] if peaks.get(prec) else None}
    return found


def write_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def table(report: dict) -> str:
    """The measurements as a Markdown table (attacks: per iteration, images/s = image-iterations per second)."""
    lines = ["| what | data | K | precision | mode | batch | s per call | images/s | TFLOP/s | of peak | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        head = [r["method"] if r["section"] == "train" else r["section"], r["dataset"], r["members"], r["precision"],
                r["mode"], r["batch"]]
        if r["error"]:
            cells = [f"failed: {r['error'][:80]}", "", "", "", ""]
        else:
            cells = [f"{r['seconds']:.4f}", f"{r['images_per_s']:,.0f}", f"{r['flop_per_s'] / 1e12:.3g}",
                     "" if r["utilisation"] is None else f"{100 * r['utilisation']:.1f}%",
                     "" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:,.0f}"]
        lines.append("| " + " | ".join(map(str, head + cells)) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=300.0, help="Wall-clock seconds the whole check may take.")
    parser.add_argument("--out", default="results/device_check.json")
    parser.add_argument("--cpu-smoke", action="store_true", help="Every section on the CPU at a tiny size.")
    parser.add_argument("--datasets", nargs="+", choices=list(SHAPES), help="Default: both; smoke: cifar100.")
    parser.add_argument("--members", type=int, nargs="+", choices=[3, 5], help="Default: 3 5; smoke: 3.")
    parser.add_argument("--reps", type=int, help="Timed calls per measurement (median). Default: 5; smoke 1.")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not (math.isfinite(args.budget_s) and args.budget_s > 0):
        parser.error(f"--budget-s must be a positive number of seconds, got {args.budget_s}")
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be at least 1, got {args.reps}")
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"device_check: no CUDA GPU visible to torch {torch.__version__}; nothing measured (--cpu-smoke "
              "runs every section on the CPU at a tiny size)")
        return 0
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    args.width, args.train_batch, args.attack_batch = (2, 4, 4) if args.cpu_smoke else (64, 64, 500)
    args.reps = args.reps or (1 if args.cpu_smoke else 5)
    datasets = tuple(args.datasets or (["cifar100"] if args.cpu_smoke else SHAPES))
    members = tuple(args.members or ([3] if args.cpu_smoke else [3, 5]))
    if args.cpu_smoke:
        torch.set_num_threads(1)  # tiny ops: threads only contend
    torch.backends.cudnn.benchmark = True  # as pdd's jobs: fixed shapes
    key = card(device)
    report = {"device": {"name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                         "card": key, "torch": torch.__version__, "cuda": torch.version.cuda,
                         "peaks": PEAKS.get(key, {}), "width": args.width, "cpu_smoke": args.cpu_smoke},
              "budget_s": args.budget_s, "results": [], "skipped": [], "summary": {}, "complete": False}
    deadline = start + args.budget_s - RESERVE_S
    flops_cache: dict = {}
    took: dict = {}  # seconds each kind of measurement took: (section, dataset, K, method) and (section, dataset, K)
    for item in plan(datasets, members):
        label = "/".join(str(item[f]) for f in ("section", "dataset", "members", "precision", "mode", "method"))
        group, kind = (item["section"], item["dataset"], item["members"], item["method"]), (
            item["section"], item["dataset"], item["members"])
        expected = took.get(group, took.get(kind, 2 * max(took.values(), default=0.0)))
        now = time.perf_counter()
        if now + expected > deadline:
            report["skipped"].append(label)
            continue
        report["results"].append(measure(item, args, device, report["device"]["peaks"], flops_cache, deadline))
        elapsed = time.perf_counter() - now
        took[group] = max(took.get(group, 0.0), elapsed)
        took[kind] = max(took.get(kind, 0.0), elapsed)
        report["summary"] = summary(report["results"], report["device"]["peaks"])
        report["elapsed_s"] = time.perf_counter() - start
        write_atomic(Path(args.out), report)
    report["complete"] = not report["skipped"]
    report["elapsed_s"] = time.perf_counter() - start
    write_atomic(Path(args.out), report)
    print(table(report))
    print(f"\n{len(report['results'])} measured, {len(report['skipped'])} skipped for the budget, "
          f"{report['elapsed_s']:.0f} s of {args.budget_s:.0f}; {args.out}")
    for prec, kinds in report["summary"].items():
        for kind, s in kinds.items():
            util = "" if s["utilisation"] is None else f", {100 * s['utilisation']:.1f}% of the data-sheet peak"
            print(f"{prec} {kind}: {s['flop_per_s']:.3g} FLOP/s{util}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
