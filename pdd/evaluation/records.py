"""Result records: the fields that name an evaluated ensemble, and the record each evaluation command writes.

Every result JSON is a list of records (`pdd.reports.tables.read_results` reads them). Each record starts with
`ensemble_key`'s fields, so the records of every command join on the same keys. A job's own cost is one more
record with metric 'cost': the tables skip it, the cost table (`pdd.reports.cost_table`) reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

IDENTITY = ("dataset", "K", "method", "arch", "seed")  # what the ensemble is
KEY = (*IDENTITY, "model", "surrogate")              # ... and which files were evaluated
CONFIG_FIELDS = ("dataset", "members", "method", "arch", "seed")  # where IDENTITY comes from in a training config
COST_FIELDS = ("seconds", "forward_images", "backward_images", "peak_rss_mb", "peak_gpu_mb")


def ensemble_key(train_config: Mapping[str, Any], model: str | None, surrogate: str | None = None) -> dict:
    """The key of an ensemble's records: dataset, K, method, arch and seed from its training config (a
    `TrainConfig` as a dict, or what `pdd.evaluation.external` gives a user's model), its file (or factory) and the
    surrogate file the attack was crafted on (None: white-box)."""
    missing = [name for name in CONFIG_FIELDS if name not in train_config]
    if missing:
        raise ValueError(f"the model's training config lacks {', '.join(missing)} (a checkpoint pdd did not write?)")
    return {"dataset": train_config["dataset"], "K": train_config["members"], "method": train_config["method"],
            "arch": train_config["arch"], "seed": train_config["seed"], "model": model, "surrogate": surrogate}


def attack_record(key: Mapping[str, Any], threat: str, attack: str, param: float | None, result: Mapping) -> dict:
    """One attack at one parameter (`pdd.evaluation.attacks.run_attack`'s result): `value` is the robust
    accuracy over the initially correct images (the paper's convention), or the clean accuracy for attack 'none'."""
    value = result["clean_accuracy"] if attack == "none" else result["accuracy_on_correct"]
    return {**key, "threat": threat, "attack": attack, "param": param, "metric": "accuracy_pct", "value": value,
            **result}


def keyed(key: Mapping[str, Any], records: Sequence[Mapping]) -> list[dict]:
    """Records computed without a key (the strong evaluation's) with `key` in front of each."""
    return [{**key, **record} for record in records]


def entropy_record(key: Mapping[str, Any], entropy: float, n_images: int) -> dict:
    """Table 1's record: the ambiguity entropy E (eq. 5) over `n_images` test images."""
    return {**key, "threat": "none", "attack": "none", "param": None, "metric": "entropy", "value": entropy,
            "n_images": n_images}


def fooling_records(key: Mapping[str, Any], eps: float, matrix: Sequence[Sequence[float]], n_images: int) -> list[dict]:
    """One record per (source member i, target member j): % of j's correct images fooled by PGD crafted on i."""
    return [{**key, "threat": "member_transfer", "attack": "pgd", "param": eps, "metric": "fooling_pct",
             "source": i, "target": j, "value": float(row[j]), "n_images": n_images}
            for i, row in enumerate(matrix) for j in range(len(row))]


def step_records(key: Mapping[str, Any], medians: Mapping[str, float], steps: int, batch_size: int,
                 device: str) -> list[dict]:
    """The timing job's records: median seconds per training step of each method (`key`'s method is replaced)."""
    return [{**key, "method": method, "metric": "seconds_per_step", "seconds": seconds, "steps": steps,
             "batch_size": batch_size, "device": device} for method, seconds in medians.items()]


def cost_record(key: Mapping[str, Any], command: str, cost: Mapping[str, Any]) -> dict:
    """A job's cost (`pdd.evaluation.cost_meter.CostMeter`'s dict) as a record: threat 'cost', attack = the command, 
    metric 'cost', value = wall seconds."""
    missing = [name for name in COST_FIELDS if name not in cost]
    if missing:
        raise ValueError(f"cost lacks {', '.join(missing)}: {dict(cost)}")
    return {**key, "threat": "cost", "attack": command, "param": None, "metric": "cost", "value": cost["seconds"],
            **cost}


PER_IMAGE_KEY = ("dataset", "K", "method", "seed")  # columns naming the ensemble in the per-image CSV


def per_image_table(key: Mapping[str, Any], stats: Mapping[str, Any]):
    """The diversity job's per-image CSV as a DataFrame: PER_IMAGE_KEY, then per test image whether the
    ensemble and how many members classify it correctly, L_F, S_b, S_w, the gradient angle and cosine
    (`stats` as `pdd.evaluation.diversity.per_image` returns it)."""
    import pandas as pd

    frame = pd.DataFrame({"image": range(len(stats["correct"])), "correct": stats["correct"].numpy(),
                          "members_correct": stats["member_correct"].sum(0).numpy(),
                          "fisher": stats["fisher"].numpy(), "between": stats["between"].numpy(),
                          "within": stats["within"].numpy(), "angle": stats["angle"].numpy(),
                          "cosine": stats["cosine"].numpy()})
    for name in reversed(PER_IMAGE_KEY):
        frame.insert(0, name, key[name])
    return frame


def pack_flags(flags) -> str:
    """Per-image booleans (a tensor or array [N]) as base64 of their packed bits (8 images per byte, first image in
    the high bit): 10,000 images take 1,668 characters. The length is kept beside it (n_images)."""
    import base64

    import numpy as np

    bits = np.asarray(flags.cpu() if hasattr(flags, "cpu") else flags, dtype=bool).reshape(-1)
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def unpack_flags(text: str, n: int):
    """The bool array [n] that `pack_flags` packed; a string of the wrong length is an error, not a guess."""
    import base64
    import binascii

    import numpy as np

    try:
        raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"per-image flags are not base64: {err}") from err
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"per-image flags hold {len(raw) * 8} bits, expected {n} images")
    return np.unpackbits(raw)[:n].astype(bool)


def image_fields(indices, split_size: int) -> dict:
    """Which test images an evaluation ran on, by index: `images` = the packed mask over the split's
    `split_size` images (see `pack_flags`), so two results can be checked to be on the same images."""
    import numpy as np

    mask = np.zeros(split_size, dtype=bool)
    mask[np.asarray(indices, dtype=np.int64)] = True
    return {"images": pack_flags(mask), "split_size": split_size}
