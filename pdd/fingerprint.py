"""Fingerprints of the code a job runs: a hash of the package modules its entry modules import (transitively),
so Snakemake reruns exactly the jobs a code change touches and nothing else.

What is hashed is each module's syntax tree without docstrings: reformatting, comments and docstrings change
no result, so they rerun nothing.

`pdd/cli.py` is left out on purpose: it only parses options, and every option that changes a result reaches the
job as a Snakemake param already; so is `pdd/__init__.py` (the version string: a release alone reruns nothing).
A user's training method (pdd.methods.plugins) lives outside the package: `file_fingerprint` hashes its source
files the same way, with the package modules they import.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
EXCLUDED = {"pdd", "pdd.cli"}  # the version string and the option parsing


def source(path: Path) -> str:
    """The text of one module (a seam for tests that simulate an edit)."""
    return path.read_text()


def module_file(name: str) -> Path | None:
    """The file of package module `name` ('pdd.methods' -> pdd/methods/__init__.py); None if not ours."""
    parts = name.split(".")
    if parts[0] != "pdd":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(name: str) -> set[str]:
    """Package modules that module `name` imports anywhere in its body (function-level imports included)."""
    path = module_file(name)
    return set(_imports_in(source(path))) if path else set()


@lru_cache(maxsize=None)
def _imports_in(text: str) -> frozenset[str]:
    """`imports_of` one module's text, parsed once per distinct text (the workflow asks for 20-odd closures)."""
    return frozenset(imports_of(ast.parse(text)))


def imports_of(tree: ast.Module) -> set[str]:
    """Package modules a syntax tree imports (the package's own or a user's module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pdd import data`
    return {m for m in found if module_file(m) is not None and m not in EXCLUDED}


def closure(entries: tuple[str, ...]) -> list[str]:
    """Every package module the entry modules reach through imports (parents of submodules included)."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen or name in EXCLUDED or module_file(name) is None:
            continue
        seen.add(name)
        parent = name.rsplit(".", 1)[0]
        todo += sorted(imported(name)) + ([parent] if "." in parent else [])
    return sorted(seen)


def code(path: Path) -> str:
    """The module's syntax tree without docstrings, as text: what a job's results can depend on."""
    return _code_of(source(path))


@lru_cache(maxsize=None)
def _code_of(text: str) -> str:
    """`code` of one module's text, computed once per distinct text."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


@lru_cache(maxsize=None)
def fingerprint(*entries: str) -> str:
    """Short hash of the code of `closure(entries)`: it changes iff one of those modules' code changes."""
    digest = hashlib.sha256()
    for name in closure(entries):
        digest.update(name.encode() + b"\0" + code(module_file(name)).encode() + b"\0")
    return digest.hexdigest()[:16]


def file_fingerprint(paths: tuple[str, ...], *entries: str) -> str:
    """Short hash of the code of user source files (a training method's module, outside the package) and of the
    package modules they and `entries` import: it changes iff one of them changes (their docstrings aside)."""
    digest = hashlib.sha256()
    modules = set(entries)
    for path in sorted(paths):
        text = code(Path(path))
        modules |= imports_of(ast.parse(source(Path(path))))
        digest.update(text.encode() + b"\0")  # not the path: a moved project reruns nothing
    digest.update(fingerprint(*sorted(modules)).encode())
    return digest.hexdigest()[:16]
