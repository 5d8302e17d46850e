"""The paper config's code paths at paper scale: real width (64), real image sizes and class counts.

DESIGN.md section 6: anything whose cost grows with classes, image size, width or K is measured at paper
scale before it is called done. Here every training method, every attack, the strong evaluation, the
diversity analysis and the member-transfer matrix run through the workflow's own functions on a handful of
synthetic images written in the datasets' real on-disk formats (CIFAR-100 python pickles with torchvision's
checksums patched; the Tiny-ImageNet folder layout of JPEGs with all 200 wnids), with the widths, K, M and
loss settings of config/config.yaml. Only the inner loop counts are cut (epochs 1, attack iterations, and for
adversarial PGD training, TRS and DVERGE their inner steps): cost grows linearly in them, and the loop bodies
run at least once. Each job's wall and CPU seconds, image-passes and peak RSS (reset per job) are recorded;
`pytest -s` prints the table. The module took 3 min 10 s wall on a shared 2-core machine at load average 6
(133 CPU-seconds, one torch thread: about 2.5 minutes on an idle machine); peak RSS 2.6 GB (ResNet-34, K = 5).
"""

from __future__ import annotations

import math
import mmap
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from test_data import _md5, _py2_pickle

from pdd import data
from pdd.evaluation.attacks import AttackSettings, jsma_targets, predict, run_attack, select_images
from pdd.evaluation.cost_meter import CostMeter
from pdd.evaluation.diversity import per_image
from pdd.evaluation.member_transfer import fooling_matrix
from pdd.evaluation.strong import evaluate
from pdd.methods import METHODS, get_method
from pdd.models import load_ensemble
from pdd.plan import config as plan
from pdd.training import TrainConfig, train

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
CPU = torch.device("cpu")
MAX_RSS_MB = 6000.0          # "no blow-up": a generous bound for any single job on these tiny inputs
CIFAR_SIZES = {"train": 8, "test": 4}
CIFAR_BATCH = 4              # 8 training images: two full batches (drop_last path) per epoch
TINY_TRAIN_CLASSES, TINY_TRAIN_PER_CLASS, TINY_VAL = 2, 1, 2  # one step of 2 images
TINY_BATCH = 2
# Inner loops cut for the three methods whose step repeats an attack (cost is linear in these steps).
FEWER_INNER_STEPS = {"adv_steps": 2, "trs_steps": 1, "dverge_steps": 2}
ATTACK_PARAMS = {"fgsm": 0.02, "bim": 0.02, "pgd": 0.02, "pgd_l2": 0.4, "cw": 0.01}  # the paper's values
JOBS: dict[str, dict] = {}   # job name -> its cost (CostMeter's dict + cpu_seconds), for the printed table
_TRAINED: dict[str, Path] = {}


# ----------------------------------------------------------------------------- measuring


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux: write 5 to /proc/self/clear_refs), so
    that the peak read after a job is that job's; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset_mb() -> float | None:
    """VmHWM of /proc/self/status in MB: the peak RSS since the last reset (None without /proc). getrusage's
    ru_maxrss, which CostMeter reports, also keeps the peaks of exited threads, so it may stay at an older peak."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), None)


@contextmanager
def job(name: str) -> Iterator[dict]:
    """Meter one job (`pdd.evaluation.cost_meter.CostMeter` without a model: every ensemble run
    inside) and record it."""
    reset_peak_rss()
    cpu = time.process_time()
    with CostMeter() as cost:
        yield cost
    cost["cpu_seconds"] = time.process_time() - cpu
    cost["job_peak_rss_mb"] = peak_rss_since_reset_mb() or cost["peak_rss_mb"]
    JOBS[name] = cost
    assert cost["job_peak_rss_mb"] <= cost["peak_rss_mb"] + 1  # the job's peak is within the process's
    assert cost["peak_rss_mb"] < MAX_RSS_MB, f"{name}: peak RSS {cost['peak_rss_mb']:.0f} MB"


@pytest.fixture(scope="module", autouse=True)
def cost_table() -> Iterator[None]:
    """Print every job's seconds, image-passes and peak RSS after the module (shown with `pytest -s`)."""
    start = time.perf_counter()
    yield
    if not JOBS:
        return
    print(f"\n\nPaper-scale jobs (width {CONFIG['model']['width']}, one torch thread; load average "
          f"{' '.join(f'{v:.1f}' for v in _load_average())}); module wall {time.perf_counter() - start:.0f} s\n")
    print("| job | wall s | CPU s | forward images | backward images | peak RSS MB (job) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, c in JOBS.items():
        print(f"| {name} | {c['seconds']:.1f} | {c['cpu_seconds']:.1f} | {c['forward_images']} | "
              f"{c['backward_images']} | {c['job_peak_rss_mb']:.0f} |")
    total = sum(c["seconds"] for c in JOBS.values()), sum(c["cpu_seconds"] for c in JOBS.values())
    print(f"| total | {total[0]:.1f} | {total[1]:.1f} | | | {max(c['job_peak_rss_mb'] for c in JOBS.values()):.0f} |")


def _load_average() -> tuple[float, ...]:
    try:
        return os.getloadavg()
    except OSError:
        return ()


# ----------------------------------------------------------------------------- data in the real formats


def _write_cifar100(root: Path, rng: np.random.Generator) -> None:
    """cifar-100-python/{train,test,meta} as the official cPickle'd files (bytes keys, [N, 3072] uint8)."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    for split, n in CIFAR_SIZES.items():
        fine = rng.integers(0, 100, size=n).tolist()
        _py2_pickle({"filenames": [f"{split}_{i}.png" for i in range(n)], "batch_label": f"{split}ing batch 1 of 1",
                     "fine_labels": fine, "coarse_labels": [f // 5 for f in fine],
                     "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)}, base / split)
    _py2_pickle({"fine_label_names": [f"fine_{i:02d}" for i in range(100)],
                 "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)]}, base / "meta")


def _jpeg(path: Path, rng: np.random.Generator) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(path, format="JPEG", quality=95)


def _write_tiny_imagenet(root: Path, rng: np.random.Generator) -> None:
    """tiny-imagenet-200/ as the official zip unpacks: all 200 wnids, train/<wnid>/images, val annotations."""
    base = root / "tiny-imagenet-200"
    wnids = [f"n{10_000_000 + 37 * i:08d}" for i in range(200)]
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids[:TINY_TRAIN_CLASSES]:
        for i in range(TINY_TRAIN_PER_CLASS):
            _jpeg(base / "train" / w / "images" / f"{w}_{i}.JPEG", rng)
        (base / "train" / w / f"{w}_boxes.txt").write_text(
            "".join(f"{w}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(TINY_TRAIN_PER_CLASS)))
    val = [(f"val_{i}.JPEG", wnids[int(rng.integers(200))]) for i in range(TINY_VAL)]
    for name, _ in val:
        _jpeg(base / "val" / "images" / name, rng)
    (base / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t63\t63\n" for f, w in val))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Iterator[Path]:
    """A data root holding CIFAR-100 and Tiny-ImageNet in their real formats, torchvision's md5s patched."""
    path = tmp_path_factory.mktemp("paper-scale-data")
    rng = np.random.default_rng(0)
    _write_cifar100(path, rng)
    _write_tiny_imagenet(path, rng)
    base, cls = path / "cifar-100-python", torchvision.datasets.CIFAR100
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, "train_list", [["train", _md5(base / "train")]])
        mp.setattr(cls, "test_list", [["test", _md5(base / "test")]])
        mp.setattr(cls, "meta", {**cls.meta, "md5": _md5(base / "meta")})
        yield path


def test_the_synthetic_data_loads_at_paper_shapes(root: Path) -> None:
    for dataset, shape, classes in (("cifar100", (3, 32, 32), 100), ("tiny_imagenet", (3, 64, 64), 200)):
        assert data.info(dataset).num_classes == classes
        for split in data.SPLITS:
            x, y = select_images(data.get_dataset(dataset, split, root), None)
            assert x.shape[1:] == shape and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
            assert 0 <= y.min() and y.max() < classes
    assert len(data.get_dataset("tiny_imagenet", "train", root).classes) == 200


# ----------------------------------------------------------------------------- training


def train_config(dataset: str, method: str, k: int, arch: str = "resnet18", batch_size: int = CIFAR_BATCH,
                 init_from: Path | None = None) -> TrainConfig:
    """One epoch of the paper recipe as the workflow maps config/config.yaml (pdd.plan.config), with a small
    batch and the inner attack loops cut to FEWER_INNER_STEPS."""
    cfg = plan.train_config(CONFIG, dataset, k, method, 0, arch)
    fewer = {k: v for k, v in FEWER_INNER_STEPS.items() if k in get_method(method).settings_used}
    return replace(cfg, epochs=1, batch_size=batch_size, loss_settings=replace(cfg.loss_settings, **fewer),
                   init_from=str(init_from) if init_from else None)


def trained(name: str, cfg: TrainConfig, root: Path, tmp: Path) -> Path:
    """Train `cfg` through `pdd.training.train` (once per test module) as job `name`; check the result."""
    if name in _TRAINED:
        return _TRAINED[name]
    out = tmp / name.replace(" ", "_").replace("=", "") / "ensemble.pt"
    n_train, n_test = (len(data.get_dataset(cfg.dataset, split, root)) for split in data.SPLITS)
    with job(name) as cost:
        last = train(cfg, root, out, out.with_name("train_log.csv"), CPU)
    assert math.isfinite(last["train_loss"]), f"{name}: loss {last['train_loss']}"
    assert 0.0 <= last["train_accuracy"] <= 1.0 and 0.0 <= last["test_accuracy"] <= 1.0
    assert last["epoch"] == 1 and last["seconds"] > 0
    assert cost["forward_images"] >= n_train + n_test and cost["backward_images"] >= n_train
    if cfg.method == "baseline":  # one forward + backward per training image, one forward per test image
        assert (cost["forward_images"], cost["backward_images"]) == (n_train + n_test, n_train)
    model = load_ensemble(out)
    spec, info = model.spec, data.info(cfg.dataset)
    assert (spec.arch, spec.num_members, spec.width, spec.num_classes) == (cfg.arch, cfg.members, cfg.width,
                                                                          info.num_classes)
    assert spec.pdd == ({"num_intervals": cfg.pdd_intervals, "alpha": cfg.pdd_alpha, "beta": cfg.pdd_beta}
                        if get_method(cfg.method).uses_pdd else {})
    x = torch.rand(2, info.in_channels, info.image_size, info.image_size)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (cfg.members, 2, info.num_classes) and torch.isfinite(logits).all()
    _TRAINED[name] = out
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("paper-scale-models")


def test_paper_config_is_at_paper_scale() -> None:
    """What this module calls 'paper scale' is what config/config.yaml runs."""
    assert CONFIG["model"] == {"arch": "resnet18", "width": 64}
    assert CONFIG["surrogates"]["oblivious"]["width"] == CONFIG["surrogates"]["adaptive"]["width"] == 64
    assert {int(k): m for k, m in CONFIG["pdd"]["intervals"].items()} == {3: 10, 5: 20}
    assert set(METHODS) == {"baseline", "adp", "pdd", "deg", "pdd_deg", "advt_fgsm", "advt_fgsm_pdd", "advt_pgd",
                            "advt_pgd_pdd", "gal", "trs", "dverge"}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_an_epoch_on_cifar100_at_width_64(method: str, root: Path, models: Path) -> None:
    """Every method for an epoch; DVERGE starts from the trained baseline, as in the workflow."""
    start = get_method(method).starts_from
    init_from = None
    if start:
        init_from = trained(f"train cifar100 {start} K=3", train_config("cifar100", start, 3), root, models)
    trained(f"train cifar100 {method} K=3", train_config("cifar100", method, 3, init_from=init_from), root, models)


@pytest.mark.parametrize("method", ["deg", "pdd_deg"])
def test_deg_trains_on_tiny_imagenet_64px_with_k5_m20(method: str, root: Path, models: Path) -> None:
    cfg = train_config("tiny_imagenet", method, 5, batch_size=TINY_BATCH)
    assert cfg.pdd_intervals == 20
    trained(f"train tiny_imagenet {method} K=5", cfg, root, models)


@pytest.mark.parametrize("threat, k", [("oblivious", 3), ("adaptive", 5)])
def test_surrogates_train_an_epoch(threat: str, k: int, root: Path, models: Path) -> None:
    """VGG-16 (Type I, baseline; K=3 as the strong evaluation's transfer check) and ResNet-34 (Type II, K=5
    as Table 4, trained with PDD+DEG, the paper's method)."""
    s = CONFIG["surrogates"][threat]
    cfg = train_config("cifar100", s.get("method", "pdd_deg"), k, arch=s["arch"])
    trained(f"train cifar100 {s['arch']} {cfg.method} K={k}", cfg, root, models)


# ----------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def cifar_ensemble(root: Path, models: Path):
    """The trained CIFAR-100 PDD+DEG ensemble (K=3, M=10, width 64) and the CIFAR-100 test images."""
    path = trained("train cifar100 pdd_deg K=3", train_config("cifar100", "pdd_deg", 3), root, models)
    return load_ensemble(path), *select_images(data.get_dataset("cifar100", "test", root), None)


@pytest.fixture(scope="module")
def tiny_ensemble(root: Path, models: Path):
    """The trained Tiny-ImageNet PDD+DEG ensemble (K=5, M=20, 200 classes, 64x64) and its val images."""
    cfg = train_config("tiny_imagenet", "pdd_deg", 5, batch_size=TINY_BATCH)
    path = trained("train tiny_imagenet pdd_deg K=5", cfg, root, models)
    return load_ensemble(path), *select_images(data.get_dataset("tiny_imagenet", "test", root), None)


def attack_settings(**changes) -> AttackSettings:
    """config.evaluation's protocol with fewer iterations (C&W 2 iterations, 1 binary-search step, every iteration
    run: without the early abort, so that the passes per iteration can be counted)."""
    return replace(plan.attack_settings(CONFIG), steps=2, cw_max_iter=2, cw_binary_search_steps=1,
                   cw_abort_early=False, **changes)


def check_attack(model, attack: str, param: float, x: torch.Tensor, y: torch.Tensor, result: dict,
                 settings: AttackSettings, cost: dict) -> None:
    """Accuracies in [0, 100], the budget kept, and C&W / JSMA at one backward pass per image per gradient, on
    the images the model classifies correctly (the only ones crafted on)."""
    n = len(y)
    assert result["n_images"] == n
    correct = predict(model, x, CPU) == y
    assert correct.any()  # else nothing was crafted and the pass counts below say nothing
    for key in ("clean_accuracy", "accuracy_on_correct", "accuracy_all"):
        assert 0.0 <= result[key] <= 100.0, (key, result[key])
    if attack in ("fgsm", "bim", "pgd"):
        assert result["max_linf"] <= param + 1e-5
    if attack == "pgd_l2":
        assert result["max_l2"] <= param + 1e-4
    if attack == "jsma":  # gamma = 1 / features: one iteration, two features raised by at most theta, one
        # backward pass per correct image not already classified as its target (ART's JSMA skips those)
        assert result["max_linf"] <= settings.jsma_theta + 1e-6
        targets = torch.from_numpy(jsma_targets(y, model.spec.num_classes, settings.seed).argmax(1))
        assert cost["backward_images"] == int((correct & (predict(model, x, CPU) != targets)).sum())
    if attack == "cw":  # two class gradients per iteration, each one backward pass whatever the labels
        assert math.isfinite(result["max_l2"])
        per_image = 2 * settings.cw_max_iter * settings.cw_binary_search_steps
        assert cost["backward_images"] == per_image * int(correct.sum())


def first_one_correct(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`y` with the first image relabelled as the model's own class: attacks craft only on correctly classified
    images, and a one-epoch model with 100 or 200 classes may be right on none of a few."""
    y = y.clone()
    y[0] = predict(model, x[:1], CPU)[0]
    return y


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd", "pgd_l2", "jsma", "cw"])
def test_every_attack_at_100_classes(attack: str, cifar_ensemble) -> None:
    model, x, y = cifar_ensemble
    x, y = x[:2], first_one_correct(model, x[:2], y[:2])
    param = 1.0 / x[0].numel() if attack == "jsma" else ATTACK_PARAMS[attack]
    settings = attack_settings()
    with job(f"{attack} cifar100 K=3 (2 images)") as cost:
        result = run_attack(model, x, y, attack, param, settings, CPU)
    check_attack(model, attack, param, x, y, result, settings, cost)


@pytest.mark.parametrize("attack", ["jsma", "cw"])
def test_jsma_and_cw_at_200_classes_64px(attack: str, tiny_ensemble) -> None:
    model, x, y = tiny_ensemble
    assert model.spec.num_classes == 200 and x.shape[1:] == (3, 64, 64)
    y = first_one_correct(model, x, y)
    param = 1.0 / x[0].numel() if attack == "jsma" else ATTACK_PARAMS[attack]
    settings = attack_settings()
    with job(f"{attack} tiny_imagenet K=5 ({len(y)} images)") as cost:
        result = run_attack(model, x, y, attack, param, settings, CPU)
    check_attack(model, attack, param, x, y, result, settings, cost)


def test_strong_evaluation_at_paper_width(cifar_ensemble, root: Path, models: Path) -> None:
    model, x, y = cifar_ensemble
    x, y = x[:2], y[:2]
    surrogate = load_ensemble(trained("train cifar100 vgg16 baseline K=3",
                                      train_config("cifar100", "baseline", 3, arch="vgg16"), root, models))
    settings = replace(plan.strong_settings(CONFIG), apgd_iterations=1, apgd_restarts=1, pgd_steps=(1, 2),
                       pgd_restarts=2, transfer_steps=1, diagnostic_steps=1, apgd_targets=2, mora_iterations=1,
                       mora_mixes=(0.5,), square_queries=2)
    eps = CONFIG["strong_evaluation"]["eps"]["cifar100"]
    with job(f"strong cifar100 K=3 ({len(y)} images)"):
        records = evaluate(model, x, y, eps, settings, CPU, surrogate)
    accuracies = [r for r in records if r["metric"] == "accuracy_pct"]
    assert {r["attack"] for r in accuracies} >= {"none", "pgd_1", "pgd_2", "pgd_2x2", "apgd_ce", "apgd_dlr",
                                                 "apgd_t", "mora", "square", "worst_case", "transfer"}
    assert all(0.0 <= r["value"] <= 100.0 for r in accuracies)
    assert {r["param"] for r in accuracies if r["attack"] == "worst_case"} == set(eps)
    checks = {r["attack"]: r["value"] for r in records if r["metric"] == "passed"}
    assert set(checks) == {"eps_growth", "unbounded", "transfer", "convergence", "gradient_free", "zero_gradients",
                           "deterministic"}
    assert all(v in (0.0, 1.0) for v in checks.values())


def test_diversity_per_image_at_paper_width(cifar_ensemble) -> None:
    model, x, y = cifar_ensemble
    with job(f"diversity cifar100 K=3 ({len(y)} images)") as cost:
        stats = per_image(model, x, y, CPU)
    n, k = len(y), model.num_members
    assert stats["member_correct"].shape == (k, n) and stats["correct"].shape == (n,)
    for key in ("fisher", "between", "within", "angle", "cosine"):
        assert stats[key].shape == (n,), key
    assert torch.isfinite(stats["angle"]).all() and ((0 <= stats["angle"]) & (stats["angle"] <= 180)).all()
    assert ((-1 - 1e-6 <= stats["cosine"]) & (stats["cosine"] <= 1 + 1e-6)).all()
    assert (cost["forward_images"], cost["backward_images"]) == (n, n)  # the members' input gradients


def test_member_fooling_matrix_at_paper_width(cifar_ensemble) -> None:
    model, x, y = cifar_ensemble
    x, y = x[:2], y[:2]
    eps = CONFIG["figures"]["figure_member_transfer"]["eps"]
    with job(f"member_transfer cifar100 K=3 ({len(y)} images)"):
        matrix = fooling_matrix(model, x, y, eps, attack_settings(), CPU)
    assert matrix.shape == (3, 3) and torch.isfinite(matrix).all()
    assert ((0 <= matrix) & (matrix <= 100)).all()


def test_peak_rss_is_reset_per_job() -> None:
    """The per-job peaks above mean something only if the reset works (Linux): a 256 MB anonymous mapping,
    touched then unmapped, raises the peak by its size, and the reset brings it back down."""
    if not reset_peak_rss() or peak_rss_since_reset_mb() is None:
        pytest.skip("no /proc/self/clear_refs: per-job peaks are the process's lifetime peak")
    size, page = 256 * 2**20, mmap.PAGESIZE
    base = peak_rss_since_reset_mb()
    block = mmap.mmap(-1, size)
    for offset in range(0, size, page):
        block[offset] = 1
    high = peak_rss_since_reset_mb()
    block.close()
    assert reset_peak_rss()
    low = peak_rss_since_reset_mb()
    assert high >= base + 200 and low <= high - 200, (base, high, low)
