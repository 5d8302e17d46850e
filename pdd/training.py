"""Train one ensemble with the official recipe: SGD + cosine annealing, a checkpoint every epoch,
automatic resume, and a per-epoch CSV log with seconds per epoch."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pdd import data
from pdd.augment import random_crop_flip
from pdd.devices import fuse_by_default
from pdd.io import torch_save, write_text
from pdd.methods import PLUGINS, TrainingMethod, get_method
from pdd.models import CheckpointError, Ensemble, EnsembleSpec, checkpoint, ensemble_from_checkpoint, read_checkpoint
from pdd.precision import training_autocast
from pdd.settings.training import THROUGHPUT_FIELDS, TrainConfig, check_start  # noqa: F401 (re-exported)

ADDED_FIELDS = {"precision": "tf32"}  # fields added since states were first saved: the value such states trained with
LOG_FIELDS = ("dataset", "arch", "K", "method", "seed", "epoch", "lr", "train_loss", "train_accuracy", "test_accuracy",
              "seconds", "eval_seconds")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the job stops at once (the last epoch's resume state is kept)."""


def ensemble_spec(cfg: TrainConfig) -> EnsembleSpec:
    """The ensemble `cfg` trains (PDD layer included when the method uses it)."""
    info = data.info(cfg.dataset)
    pdd = {}
    if get_method(cfg.method).uses_pdd:
        pdd = {"num_intervals": cfg.pdd_intervals, "alpha": cfg.pdd_alpha, "beta": cfg.pdd_beta}
    return EnsembleSpec(cfg.arch, cfg.members, info.num_classes, info.in_channels, cfg.width, pdd)


def initial_weights(cfg: TrainConfig, method: TrainingMethod, device: torch.device) -> dict:
    """State dict of the trained ensemble `cfg.init_from`, checked to be `method.starts_from` trained with
    the same dataset, K, architecture, width and seed as `cfg`."""
    ckpt = read_checkpoint(cfg.init_from, device)
    source = ensemble_from_checkpoint(ckpt, cfg.init_from)
    trained = ckpt.get("train_config") or {}
    wanted = {"method": method.starts_from, "dataset": cfg.dataset, "members": cfg.members, "arch": cfg.arch,
              "width": cfg.width, "seed": cfg.seed}
    wrong = [f"{key} {trained.get(key)!r} (need {value!r})"
             for key, value in wanted.items() if trained.get(key) != value]
    if wrong or source.spec != ensemble_spec(cfg):
        raise ValueError(f"init_from {cfg.init_from}: not a matching trained ensemble: "
                         f"{', '.join(wrong) or f'spec {source.spec} (need {ensemble_spec(cfg)})'}")
    return source.state_dict()


def same_training(saved: dict | None, cfg_dict: dict) -> bool:
    """Whether a saved training state's config trains the same ensemble as `cfg_dict` (throughput options
    aside, and absent from states saved before they existed)."""
    if not isinstance(saved, dict):
        return False
    return ({k: v for k, v in {**ADDED_FIELDS, **saved}.items() if k not in THROUGHPUT_FIELDS}
            == {k: v for k, v in cfg_dict.items() if k not in THROUGHPUT_FIELDS})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    """Every RNG a training step draws from, as tensors and plain Python values, so the resume state
    loads with weights_only=True."""
    numpy_state = np.random.get_state(legacy=False)
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": numpy_state["bit_generator"], "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"]),
                  "state": {key: value.tolist() if isinstance(value, np.ndarray) else int(value)
                            for key, value in numpy_state["state"].items()}},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    """Restore `_rng_state()`'s RNGs; also takes states saved before the plain format (numpy's and
    Python's own state tuples)."""
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        inner = {key: np.asarray(value, dtype=np.uint32) if isinstance(value, list) else value
                 for key, value in numpy_state["state"].items()}
        numpy_state = {**numpy_state, "state": inner}
    np.random.set_state(numpy_state)
    python = state["python"]
    if isinstance(python, dict):
        python = (python["version"], tuple(python["internal"]), python["gauss_next"])
    random.setstate(python)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


@torch.inference_mode()
def accuracy(model: Ensemble, dataset: Dataset, device: torch.device, batch_size: int = 500) -> float:
    """Clean accuracy of the ensemble's mean-softmax prediction on `dataset`."""
    model.eval()
    correct = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        correct += (model.log_mean_prob(x.to(device)).argmax(1).cpu() == y).sum().item()
    return correct / len(dataset)


def _log_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _fresh(cfg: TrainConfig, method: TrainingMethod, device: torch.device) -> tuple[Ensemble, list, list]:
    """The seeded initial ensemble, its SGD optimisers (one per parameter group) and cosine schedules."""
    seed_everything(cfg.seed)
    model = Ensemble(ensemble_spec(cfg)).to(device)
    if cfg.channels_last:  # the weights; convolutions then return channels-last activations
        model = model.to(memory_format=torch.channels_last)  # (images stay as loaded: random starts draw alike)
    model.fuse_members = fuse_by_default(device) if cfg.fuse_members is None else cfg.fuse_members
    optimizers = [torch.optim.SGD(group, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
                  for group in method.parameter_groups(model)]  # one per member for DVERGE
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=cfg.epochs, eta_min=cfg.lr_min)
                  for o in optimizers]
    return model, optimizers, schedulers


def _resume(state_path: Path, cfg_dict: dict, model: Ensemble, optimizers: list, schedulers: list,
            device: torch.device) -> list[dict]:
    """Load the resume state into model, optimisers, schedules and RNGs; its epoch log rows ([] when it was made
    with another configuration). A damaged state raises (CheckpointError, KeyError, ...) before the RNGs change."""
    state = read_checkpoint(state_path, device)
    if not isinstance(state, dict):
        raise TypeError(f"a {type(state).__name__}, not a training state")
    if not same_training(state.get("train_config"), cfg_dict):
        return []
    rows = state["log"]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError("its epoch log is not a list of epoch rows")
    if not isinstance(state["rng"], dict) or "torch" not in state["rng"]:
        raise ValueError("its RNG state is missing")
    model.load_state_dict(ensemble_from_checkpoint(state["model"], str(state_path)).state_dict())
    for optimizer, saved in zip(optimizers, state["optimizer"], strict=True):
        optimizer.load_state_dict(saved)
    for scheduler, saved in zip(schedulers, state["scheduler"], strict=True):
        scheduler.load_state_dict(saved)
    _set_rng_state(state["rng"])
    return rows


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def train(
    cfg: TrainConfig,
    data_root: str | Path,
    out: str | Path,
    log: str | Path,
    device: torch.device = torch.device("cpu"),
    num_workers: int = 0,
) -> dict:
    """Train `cfg` and write the final ensemble to `out` and the epoch log to `log` (both atomically).

    The training state is saved to `<out>.state` after every epoch; a rerun with the same config
    resumes from it (with the RNG state, so the result equals an uninterrupted run on the CPU).
    """
    out, log = Path(out), Path(log)
    state_path = out.with_name(out.name + ".state")
    cfg_dict = json.loads(json.dumps(asdict(cfg)))
    if cfg.method in PLUGINS:  # a user method's entry (file, class, settings) decides what it trains too
        cfg_dict["plugin"] = json.loads(json.dumps(PLUGINS[cfg.method]))
    check_start(cfg.method, get_method(cfg.method).starts_from, cfg.init_from)
    method = get_method(cfg.method, cfg.loss_settings)
    train_set = data.get_dataset(cfg.dataset, "train", data_root)
    test_set = data.get_dataset(cfg.dataset, "test", data_root)

    model, optimizers, schedulers = _fresh(cfg, method, device)
    rows: list[dict] = []
    if state_path.exists():
        try:
            rows = _resume(state_path, cfg_dict, model, optimizers, schedulers, device)
            if rows:
                print(f"pdd: resuming {out} after epoch {len(rows)}", file=sys.stderr)
            else:
                print(f"pdd: ignoring {state_path}: it was made with another configuration", file=sys.stderr)
        except (CheckpointError, KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
            # A damaged state must not block the job until someone deletes it: set it aside, start afresh.
            aside = state_path.with_name(state_path.name + ".damaged")
            state_path.replace(aside)
            print(f"pdd: {state_path} is damaged ({_first_line(err)}); moved to {aside}, training from the start",
                  file=sys.stderr)
            model, optimizers, schedulers = _fresh(cfg, method, device)
            rows = []
    if cfg.init_from and not rows:
        model.load_state_dict(initial_weights(cfg, method, device))

    epochs = tqdm(range(len(rows), cfg.epochs), initial=len(rows), total=cfg.epochs, desc=f"train {cfg.method}",
                  file=sys.stderr)
    for epoch in epochs:
        shuffle = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        loader = DataLoader(train_set, cfg.batch_size, shuffle=True, generator=shuffle, num_workers=num_workers,
                            pin_memory=device.type == "cuda", drop_last=len(train_set) > cfg.batch_size)
        model.train()
        method.start_epoch(model, epoch, cfg.epochs, cfg.seed)
        start, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        for x, y in tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=None, file=sys.stderr):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cfg.augment:
                x = random_crop_flip(x)
            with training_autocast(device, cfg.precision):
                loss, logits = method.step(model, optimizers, x, y)
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"training loss became {loss} at epoch {epoch + 1}, step {seen // cfg.batch_size + 1}: lower "
                    f"--lr or the method's loss weights; the last good resume state "
                    f"({state_path if rows else 'none: this was the first epoch'}) is kept")
            total_loss += loss * len(y)
            correct += (logits.softmax(-1).mean(0).argmax(1) == y).sum().item()
            seen += len(y)
        seconds = time.perf_counter() - start
        lr = schedulers[0].get_last_lr()[0]
        for scheduler in schedulers:
            scheduler.step()
        start = time.perf_counter()
        test_acc = accuracy(model, test_set, device)
        rows.append({"dataset": cfg.dataset, "arch": cfg.arch, "K": cfg.members, "method": cfg.method,
                     "seed": cfg.seed, "epoch": epoch + 1, "lr": lr, "train_loss": total_loss / seen,
                     "train_accuracy": correct / seen,
                     "test_accuracy": test_acc, "seconds": seconds, "eval_seconds": time.perf_counter() - start})
        epochs.set_postfix(loss=f"{total_loss / seen:.3f}", test_acc=f"{test_acc:.3f}", s_per_epoch=f"{seconds:.1f}")
        torch_save({"train_config": cfg_dict, "model": checkpoint(model),
                    "optimizer": [o.state_dict() for o in optimizers],
                    "scheduler": [s.state_dict() for s in schedulers], "log": rows, "rng": _rng_state()}, state_path)
        write_text(log, _log_csv(rows))

    write_text(log, _log_csv(rows))
    torch_save(checkpoint(model, train_config=cfg_dict, log=rows), out)
    state_path.unlink(missing_ok=True)
    return rows[-1]
