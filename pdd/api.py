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
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from pdd.evaluation.attacks import AttackSettings, check_attack, protocol_images, run_attack
from pdd.evaluation.external import ARCH, as_ensemble
from pdd.evaluation.records import attack_record, ensemble_key, keyed
from pdd.evaluation.statistics import mcnemar_p, wilson_interval  # noqa: F401  (public: pdd.api.wilson_interval)
from pdd.validation import VALUE_BOUNDS, InvalidValue


def _images(dataset: str | Dataset | tuple[torch.Tensor, torch.Tensor], data_root: str, num_images: int | None,
            seed: int) -> tuple[str, int | None, torch.Tensor, torch.Tensor, dict]:
    """(dataset label, its number of classes when known, x, y, which images by index (`image_fields`, as the CLI
    records them)) of the fixed image subset the protocol uses."""
    from pdd import data

    label, num_classes = "custom", None
    if isinstance(dataset, str):
        label, num_classes = dataset, data.info(dataset).num_classes
        dataset = data.get_dataset(dataset, "test", data_root)
    elif isinstance(dataset, tuple):
        x, y = dataset
        dataset = TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long))
    return label, num_classes, *protocol_images(dataset, num_images, seed)


def _settings(cls: type, given: object, name: str) -> object:
    """`cls` from an instance, a dict of its fields or None; a bad field is a ValueError naming `name` and it."""
    import difflib
    from dataclasses import fields

    if given is None or isinstance(given, cls):
        return given or cls()
    if not isinstance(given, dict):
        raise ValueError(f"{name}: expected a {cls.__name__} or a dict of its fields, got {type(given).__name__}")
    known = [f.name for f in fields(cls)]
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            raise ValueError(f"{name}: unknown setting {key!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                                    f"; known: {', '.join(known)}"))
    try:
        return cls(**given)
    except InvalidValue as err:
        raise InvalidValue(f"{name}[{err.name!r}]", err.value, err.problem) from None


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

    # Every value is checked (pdd.validation: finite, in range) before any image is read or model run.
    settings = _settings(AttackSettings, settings, "settings")
    if num_images is not None:
        VALUE_BOUNDS["num_images"].check("num_images", num_images)
    attacks = {"none": []} if attacks is None else dict(attacks)
    for attack, params in attacks.items():
        check_attack(attack).check(params, f"attacks[{attack!r}]")  # the CLI's checks, from the registry
    strong_options = dict(strong or {})
    eps_values = sorted(strong_options.pop("eps", []))
    if strong is not None and not eps_values:
        raise ValueError("strong evaluation: give {'eps': [L-inf eps, ...]}")
    eps_bound = VALUE_BOUNDS["eps" if strong_options.get("norm", "linf") == "linf" else "strong_eps"]
    for eps in eps_values:
        eps_bound.check("strong['eps']", eps)
    strong_settings = _settings(StrongSettings, strong_options, "strong")
    dev = select_device(device) if isinstance(device, str) else device
    label, num_classes, x, y, images = _images(dataset, data_root, num_images, settings.seed)
    target = as_ensemble(model, x[:2].to(dev), num_classes).to(dev)
    if len(y) and int(y.max()) >= target.spec.num_classes:
        raise ValueError(f"dataset: label {int(y.max())} is past the model's {target.spec.num_classes} classes")
    crafter = as_ensemble(surrogate, x[:2].to(dev), target.spec.num_classes).to(dev) if surrogate is not None else None
    key = ensemble_key({"dataset": label, "members": target.num_members, "method": name, "arch": ARCH,
                        "seed": seed}, None)
    records = []
    for attack, params in attacks.items():
        for param in params or [None]:
            result = run_attack(target, x, y, attack, param or 0.0, settings, dev)
            records.append(attack_record(key, "whitebox", attack, param, {**result, **images}))
            if log:
                log(f"{attack} {param}: {records[-1]['value']:.2f}%")
    if strong is not None:
        if strong_settings.seed != settings.seed:  # the CLI picks the strong evaluation's images by its seed
            label, _, x, y, images = _images(dataset, data_root, num_images, strong_settings.seed)
        for r in keyed(key, strong_evaluate(target, x, y, eps_values, strong_settings, dev, crafter)):
            r = {**r, **images} if r["metric"] == "accuracy_pct" else r
            records.append(r)
            if log:
                log(f"{r['threat']} {r['attack']} {'' if r['param'] is None else r['param']}: {r['value']}")
    return records


def mora(model: nn.Module | Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor, eps: float, norm: str = "linf",
         iterations: int = 100, mixes: Sequence[float] = (0, 0.25, 0.5, 0.75, 1), seed: int = 0) -> torch.Tensor:
    """MORA (Yu, Gao & Xu 2022; `pdd.evaluation.mora`) adversarial examples for images x [N, C, H, W] in [0, 1] with
    labels y [N], within `eps` in `norm` ('linf' or 'l2'); `model` is a `pdd.models.Ensemble`, an ensemble from
    `pdd.evaluation.external`, one module or a list of member modules. Runs on the model's device."""
    from pdd.evaluation.mora import mora as run_mora

    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    if x.dim() != 4 or y.shape != x.shape[:1]:
        raise ValueError(f"expected x [N, C, H, W] and y [N], got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
        raise ValueError("x must hold finite values in [0, 1]")
    return run_mora(as_ensemble(model, x[:2]), x, y, float(eps), norm, iterations, tuple(float(s) for s in mixes), seed)


def compare_seeds(first: Sequence, second: Sequence, level: float = 0.05) -> dict:
    """Two methods' per-image robust flags (one bool array per seed: the same seeds in the same order, the same
    images) compared at both levels of evidence (`pdd.evaluation.between_seeds`, docs/statistics.md).

    Returns difference (points of the images, mean over seeds), ci_low / ci_high (its HKSJ interval at 1 - level),
    p_value (the method: random-effects meta-analysis, seed random; NaN with one seed, `message` says so),
    p_models (these trained models: exact McNemar pooled over seeds), per_seed (each seed's difference), sd (their
    standard deviation), tau2, n_seeds, n_images. Identical flags give difference 0, p_value 1 and p_models 1."""
    from pdd.evaluation.between_seeds import compare, seed_flags

    return compare(*seed_flags(first, second, level), level)


THREAT_MODELS = {"Linf": "linf", "L2": "l2"}  # RobustBench's names of the norm-bounded threat models -> ours


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
    counts with restarts, APGD-T, MORA, Square) at `eps` in the threat model's norm; the gradient-masking checks run
    too, and a check that warns is printed. strong: `StrongSettings` fields (attack strengths; the defaults are the
    full strong evaluation). to_disk: write the model card (`pdd.reports.model_cards`, its `name` = `model_name`)
    to `cards_dir/<dataset>/<threat_model>/<model_name>.json` (default cards_dir: ./results/model_cards) and
    print where. log_path: append the printed lines there too.
    """

    from pdd.reports.model_cards import card
    from pdd.reports.strong_table import MASKING_WARNING

    if threat_model not in THREAT_MODELS:
        raise ValueError(f"threat_model must be one of {tuple(THREAT_MODELS)} (RobustBench's names), "
                         f"got {threat_model!r}")
    if eps is None:
        raise ValueError("If the threat model is L2 or Linf, `eps` must be specified.")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise ValueError(f"eps must be a number, got {eps!r}")
    VALUE_BOUNDS["eps" if threat_model == "Linf" else "strong_eps"].check("eps", eps)
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ValueError(f"n_examples must be a positive integer, got {n_examples!r}")
    if to_disk and model_name is None:
        raise ValueError("If `to_disk` is True, `model_name` should be specified.")
    options = {"batch_size": batch_size, "seed": seed, **(strong or {}), "eps": [float(eps)],
               "norm": THREAT_MODELS[threat_model]}
    records = evaluate(model, dataset, attacks={}, strong=options, data_root=data_dir, num_images=n_examples,
                       device=device or "cpu", settings={"batch_size": batch_size, "seed": seed},
                       name=model_name or "external", seed=seed, surrogate=surrogate)
    info = card(records, float(eps), threat_model, name=model_name)
    written = Path(cards_dir) / info["dataset"] / threat_model / f"{model_name}.json"
    lines = [f"Clean accuracy: {float(info['clean_acc']):.2f}%",
             f"Robust accuracy (strong worst case, {threat_model} eps {eps:g}): {float(info['external']):.2f}%"]
    lines += [f"{MASKING_WARNING}: {name}: {check['detail']}" for name, check in info["masking_checks"].items()
              if check["passed"] is False]
    if to_disk:
        lines.append(f"Model card: {written}")
    for line in lines:
        print(line)
    if log_path:
        with open(log_path, "a") as log:
            log.write("\n".join(lines) + "\n")
    if to_disk:
        from pdd.reports.model_cards import write_card_json

        write_card_json(written, info)
    clean = next(r for r in records if r["threat"] == "whitebox" and r["attack"] == "none")
    worst = next(r for r in records if r["attack"] == "worst_case")
    return clean["n_clean_correct"] / clean["n_images"], worst["n_robust"] / worst["n_images"]
