"""Training methods from outside the package: a class in the user's module ('package.module:Class') or file
(`file` + `class`), or an installed package's entry point (group `pdd.methods`, name = method name).

Loading one imports (runs) its code: that is the point, so only name code you trust. Every problem is a
one-line `PluginError` naming the config key (`methods.<name>`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from pdd.methods.base import TrainingMethod
from pdd.settings.methods import ENTRY_POINT_GROUP, LossSettings, entry_points


class PluginError(ValueError):
    """A user's training method that cannot be used: one line naming `methods.<name>` and what is wrong."""


def reference(name: str, spec: Mapping[str, Any]) -> str:
    """Where the class is, as shown in errors: 'package.module:Class', 'path/file.py:Class' or the entry point's."""
    if spec.get("module"):
        return spec["module"]
    if spec.get("file"):
        return f"{spec['file']}:{spec.get('class')}"
    found = entry_points().get(name)
    return f"{found.value} (entry point)" if found else "nothing"


def _import(name: str, module: str) -> Any:
    """Module `module`, the current directory searched after the usual path (as for external models)."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise PluginError(f"methods.{name}.module: cannot import {module!r}: {err} (it must be importable from "
                          "the current directory or PYTHONPATH)") from err


def _exec_file(name: str, file: str) -> Any:
    """The module defined by source file `file` (registered in sys.modules as `pdd_plugin_<name>`)."""
    path = Path(file)
    if not path.is_file():
        raise PluginError(f"methods.{name}.file: no such file {file!r} (relative to the working directory "
                          f"{os.getcwd()})")
    module_name = f"pdd_plugin_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"methods.{name}.file: {file!r} is not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look a class's module up here
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(module_name, None)
        raise PluginError(f"methods.{name}.file: running {file!r} failed: {type(err).__name__}: {err}") from err
    return module


def load_class(name: str, spec: Mapping[str, Any]) -> type[TrainingMethod]:
    """The `TrainingMethod` subclass a config entry (`module`, or `file` + `class`; neither: the installed entry
    point `name`) names; a one-line `PluginError` if it is missing or is no such subclass."""
    if spec.get("module") and spec.get("file"):
        raise PluginError(f"methods.{name}: give `module` or `file`, not both")
    if spec.get("module"):
        module_name, sep, attr = spec["module"].partition(":")
        if not sep or not module_name or not attr:
            raise PluginError(f"methods.{name}.module: {spec['module']!r} is not of the form 'package.module:Class'")
        obj: Any = _import(name, module_name)
        where = f"module {module_name!r}"
    elif spec.get("file"):
        attr = spec.get("class")
        if not attr:
            raise PluginError(f"methods.{name}: `file` needs `class`, the name of the TrainingMethod subclass in it")
        obj, where = _exec_file(name, spec["file"]), f"file {spec['file']!r}"
    else:
        found = entry_points().get(name)
        if found is None:
            raise PluginError(f"methods.{name}: give `module` ('package.module:Class') or `file` and `class`; no "
                              f"installed package registers {name!r} in the entry-point group {ENTRY_POINT_GROUP!r}")
        try:
            obj, attr, where = found.load(), "", f"entry point {found.value!r}"
        except Exception as err:
            raise PluginError(f"methods.{name}: loading entry point {found.value!r} failed: "
                              f"{type(err).__name__}: {err}") from err
    for part in attr.split(".") if attr else []:
        if not hasattr(obj, part):
            raise PluginError(f"methods.{name}: {where} has no {attr!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, TrainingMethod)):
        what = f"the class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise PluginError(f"methods.{name}: {reference(name, spec)} is {what}, not a subclass of "
                          "pdd.methods.TrainingMethod")
    return obj


def factory(name: str, spec: Mapping[str, Any]) -> Callable[[LossSettings], TrainingMethod]:
    """`LossSettings -> method instance` of a config entry: its class with the entry's `settings` as keyword
    arguments, tried once here so a setting the class does not take is an error before any job."""
    cls = load_class(name, spec)
    settings = dict(spec.get("settings") or {})
    try:
        cls(LossSettings(), **settings)
    except Exception as err:
        raise PluginError(f"methods.{name}.settings: {cls.__name__}(settings, **{settings}) failed: "
                          f"{type(err).__name__}: {err}") from err
    return partial(cls, **settings)


def source_files(cls: type) -> list[str]:
    """The user's source files a method class runs: the file defining it and those of its user-written bases
    (pdd's own modules are fingerprinted with the package)."""
    files = []
    for base in cls.__mro__:
        module = sys.modules.get(base.__module__)
        path = getattr(module, "__file__", None)
        if path and base.__module__.split(".")[0] != "pdd":
            files.append(str(Path(inspect.getfile(base)).resolve()))
    return sorted(set(files))
