"""The files a figure's evaluation job writes and its report reads: a JSON record (numbers, the job's cost) and an
NPZ of arrays (images, maps) beside it. Free of torch: the report side reads them with numpy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pdd.io import atomic_path, write_json


def npz_path(record: str | Path) -> Path:
    """The arrays' file beside a record: `x.json` -> `x.npz`."""
    return Path(record).with_suffix(".npz")


def write_figure_data(record_path: str | Path, record: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
    """Write the arrays (numpy, by name) and then the record, each atomically."""
    with atomic_path(npz_path(record_path)) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    write_json(record_path, dict(record))


def read_figure_data(record_path: str | Path) -> tuple[dict, dict]:
    """(record, {name: numpy array}) of a figure's evaluation."""
    with np.load(npz_path(record_path)) as found:
        arrays = {name: found[name] for name in found.files}
    return json.loads(Path(record_path).read_text()), arrays
