"""Measurements kept on disk between runs, valid while the code (and torch's and ART's versions) is unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from pdd.estimate.passes import Passes


class Missing(LookupError):
    """A measurement neither cached nor stored, met while probing (`prefetch`)."""


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
    return f"{fingerprint('pdd.estimate')} torch {torch.__version__} art {art}"


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
