"""Python entry point: evaluate your own model or ensemble with the paper's protocol (RobustBench-style).

Example (a list of member modules, combined by mean softmax; images in [0, 1])::

    from pdd.api import evaluate

    members = [MyNet(), MyNet(), MyNet()]          # each maps [B, 1, 8, 8] to logits [B, 10]
    records = evaluate(members, "digits", attacks={"none": [], "pgd": [0.05, 0.1]},
                       strong={"eps": [0.1], "apgd_iterations": 20, "apgd_restarts": 1},
                       num_images=200, name="mynet")
    for r in records:
        print(r["threat"], r["attack"], r["param"], r["value"])

RobustBench's entry point, with this project's strong worst case as the robust accuracy (fractions)::

    from pdd.api import benchmark

    clean, robust = benchmark(members, dataset="digits", threat_model="Linf", eps=0.1, n_examples=200)

The records are those `pdd attack` and `pdd strong` write (the tables read them): keys dataset, K, method
(= `name`), arch ("external"), seed, threat, attack, param, metric, value, plus each result's counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from pdd.evaluation.attacks import AttackSettings, check_attack, run_attack, select_images
from pdd.evaluation.external import ARCH, as_ensemble
from pdd.evaluation.records import attack_record, ensemble_key, keyed


def _images(dataset: str | Dataset | tuple[torch.Tensor, torch.Tensor], data_root: str, num_images: int | None,
            seed: int) -> tuple[str, int | None, torch.Tensor, torch.Tensor]:
    """(dataset label, its number of classes when known, x, y) of the fixed image subset the protocol uses."""
    from pdd import data

    if isinstance(dataset, str):
        x, y = select_images(data.get_dataset(dataset, "test", data_root), num_images, seed)
        return dataset, data.info(dataset).num_classes, x, y
    if isinstance(dataset, tuple):
        x, y = dataset
        dataset = TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long))
    x, y = select_images(dataset, num_images, seed)
    return "custom", None, x, y


def evaluate(model: nn.Module | Sequence[nn.Module], dataset: str | Dataset | tuple[torch.Tensor, torch.Tensor],
             attacks: dict[str, Sequence[float]] | None = None, strong: dict | None = None,
             data_root: str = "resources", num_images: int | None = None, device: str | torch.device = "cpu",
             settings: AttackSettings | dict | None = None, *, name: str = "external", seed: int = 0,
             surrogate: nn.Module | Sequence[nn.Module] | None = None,
             log: Callable[[str], None] | None = None) -> list[dict]:
    """Run the paper's attack protocol and, optionally, the strong evaluation on `model`; return result records.

    model: an nn.Module returning logits [B, L] (K = 1), a list of member modules (mean softmax), or a
        `pdd.models.Ensemble`; inputs are images in [0, 1].
    dataset: a pdd dataset name ('digits', 'fashion_mnist', 'cifar100', ...: its test split under
        `data_root`), a Dataset of (image, label), or tensors (x [N, C, H, W], y [N]) (records say 'custom').
    attacks: {attack: [params]} over `pdd.evaluation.attacks.ATTACKS` ('none' with [] for clean accuracy; eps, JSMA's
        gamma or C&W's initial constant otherwise); None: clean accuracy only.
    strong: None, or {"eps": [L-inf eps, ...], **`pdd.evaluation.strong.StrongSettings` fields} for the strong
        evaluation;
        its transfer check crafts on `surrogate` when given.
    settings: `AttackSettings` (or a dict of its fields) of the paper's attacks; its seed picks the images.
    num_images: a fixed random subset of the test images (all when None). name, seed: the records' method and
        seed. log: called with one line per result (e.g. print).
    """
    from pdd.devices import select_device
    from pdd.evaluation.strong import StrongSettings
    from pdd.evaluation.strong import evaluate as strong_evaluate

    dev = select_device(device) if isinstance(device, str) else device
    settings = AttackSettings(**settings) if isinstance(settings, dict) else settings or AttackSettings()
    attacks = {"none": []} if attacks is None else dict(attacks)
    for attack, params in attacks.items():
        check_attack(attack)
        if (attack == "none") != (not params):
            raise ValueError(f"attack {attack!r}: give parameters for every attack except 'none', and none for 'none'")
    strong_options = dict(strong or {})
    eps_values = sorted(strong_options.pop("eps", []))
    if strong is not None and not eps_values:
        raise ValueError("strong evaluation: give {'eps': [L-inf eps, ...]}")
    if "pgd_steps" in strong_options:
        strong_options["pgd_steps"] = tuple(sorted(strong_options["pgd_steps"]))
    strong_settings = StrongSettings(**strong_options)
    label, num_classes, x, y = _images(dataset, data_root, num_images, settings.seed)
    target = as_ensemble(model, x[:2].to(dev), num_classes).to(dev)
    crafter = as_ensemble(surrogate, x[:2].to(dev), target.spec.num_classes).to(dev) if surrogate is not None else None
    key = ensemble_key({"dataset": label, "members": target.num_members, "method": name, "arch": ARCH,
                        "seed": seed}, None)
    records = []
    for attack, params in attacks.items():
        for param in params or [None]:
            result = run_attack(target, x, y, attack, param or 0.0, settings, dev)
            records.append(attack_record(key, "whitebox", attack, param, result))
            if log:
                log(f"{attack} {param}: {records[-1]['value']:.2f}%")
    if strong is not None:
        if strong_settings.seed != settings.seed:  # the CLI picks the strong evaluation's images by its seed
            label, _, x, y = _images(dataset, data_root, num_images, strong_settings.seed)
        for r in keyed(key, strong_evaluate(target, x, y, eps_values, strong_settings, dev, crafter)):
            records.append(r)
            if log:
                log(f"{r['threat']} {r['attack']} {'' if r['param'] is None else r['param']}: {r['value']}")
    return records



THREAT_MODELS = ("Linf", "L2")  # RobustBench's names of the norm-bounded threat models


def benchmark(model: nn.Module | Sequence[nn.Module], n_examples: int = 10000,
              dataset: str | Dataset | tuple[torch.Tensor, torch.Tensor] = "digits", threat_model: str = "Linf",
              to_disk: bool = False, model_name: str | None = None, data_dir: str = "resources",
              device: str | torch.device | None = None, batch_size: int = 500, eps: float | None = None,
              log_path: str | None = None, *, strong: dict | None = None, seed: int = 0,
              surrogate: nn.Module | Sequence[nn.Module] | None = None,
              cards_dir: str = "results/model_cards") -> tuple[float, float]:
    """RobustBench's `benchmark()` with this project's strong worst case as the robust accuracy.

    Arguments and return value as in `robustbench.eval.benchmark`: (clean accuracy, robust accuracy), fractions
    of the `n_examples` evaluated test images (a fixed random subset picked by `seed`). The robust accuracy counts
    an image only if it survives every attack of `pdd.evaluation.strong` (APGD-CE, APGD-DLR, PGD at several step
    counts with restarts) at `eps`; the gradient-masking checks run too, and a check that warns is printed.
    strong: `StrongSettings` fields (attack strengths; the defaults are the full strong evaluation). to_disk:
    write the model card (`pdd.reports.model_cards`) to `cards_dir/<dataset>/<threat_model>/<model_name>.json`.
    log_path: append the printed lines there too. The strong evaluation is L-inf only: threat_model 'L2' is
    refused until it has an L2 counterpart.
    """
    import math

    from pdd.reports.model_cards import card
    from pdd.reports.strong_table import MASKING_WARNING

    if threat_model not in THREAT_MODELS:
        raise ValueError(f"threat_model must be one of {THREAT_MODELS} (RobustBench's names), got {threat_model!r}")
    if threat_model != "Linf":
        raise ValueError("threat_model 'L2': the strong evaluation (pdd.evaluation.strong) attacks in L-inf only")
    if eps is None:
        raise ValueError("If the threat model is L2 or Linf, `eps` must be specified.")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 < eps <= 1:
        raise ValueError(f"eps must be a finite number in (0, 1] (images in [0, 1]), got {eps!r}")
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ValueError(f"n_examples must be a positive integer, got {n_examples!r}")
    if to_disk and model_name is None:
        raise ValueError("If `to_disk` is True, `model_name` should be specified.")
    options = {"batch_size": batch_size, "seed": seed, **(strong or {}), "eps": [float(eps)]}
    records = evaluate(model, dataset, attacks={}, strong=options, data_root=data_dir, num_images=n_examples,
                       device=device or "cpu", settings={"batch_size": batch_size, "seed": seed},
                       name=model_name or "external", seed=seed, surrogate=surrogate)
    info = card(records, float(eps), threat_model)
    lines = [f"Clean accuracy: {float(info['clean_acc']):.2f}%",
             f"Robust accuracy (strong worst case, {threat_model} eps {eps:g}): {float(info['external']):.2f}%"]
    lines += [f"{MASKING_WARNING}: {name}: {check['detail']}" for name, check in info["masking_checks"].items()
              if check["passed"] is False]
    for line in lines:
        print(line)
    if log_path:
        with open(log_path, "a") as log:
            log.write("\n".join(lines) + "\n")
    if to_disk:
        from pathlib import Path

        from pdd.reports.model_cards import write_card_json

        write_card_json(Path(cards_dir) / info["dataset"] / threat_model / f"{model_name}.json", info)
    clean = next(r for r in records if r["threat"] == "whitebox" and r["attack"] == "none")
    worst = next(r for r in records if r["attack"] == "worst_case")
    return clean["n_clean_correct"] / clean["n_images"], worst["n_robust"] / worst["n_images"]
