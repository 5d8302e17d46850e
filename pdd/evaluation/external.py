"""Bring your own ensemble: wrap any PyTorch classifier (one module, or a list of member modules combined by
mean softmax like ours) so that the attack, strong-evaluation and diversity code take it like a pdd ensemble.

Inputs are images in [0, 1] with no normalisation outside the model (put any normalisation inside it). A member
maps x [B, C, H, W] to logits [B, L]. For the feature measures of Figure 2 (L_F, S_b, S_w) make each member an
`nn.Sequential` whose last module is its classifier head: the head's input [B, C] is the penultimate feature.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from pdd.models import Ensemble, load_data, mean_log_prob, torch_reason

ARCH = "external"  # the `arch` of an external model's result records


class ExternalModelError(ValueError):
    """A factory that cannot be imported or called, weights that are unsafe or do not fit, or a model whose
    outputs are not member logits."""


@dataclass(frozen=True)
class ExternalSpec:
    """What the evaluation code reads of `Ensemble.spec`: K, L and an architecture label."""

    num_members: int
    num_classes: int
    arch: str = ARCH


def _split(member: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(body, head) of an `nn.Sequential` member with at least two modules, else None (no feature split)."""
    if isinstance(member, nn.Sequential) and len(member) >= 2:
        *body, head = member  # a plain nn.Sequential of the same modules: a subclass's __init__ may take no modules
        return nn.Sequential(*body), head
    return None


class MemberEnsemble(nn.Module):
    """K user-given member modules combined by mean softmax, with `pdd.models.Ensemble`'s interface:
    forward -> member logits [K, B, L], `log_mean_prob`, `num_members`, `spec.num_classes`, and, when every
    member is an `nn.Sequential` ending in its head, `features` [K, B, C] and `heads` (see `has_features`)."""

    def __init__(self, members: Sequence[nn.Module], num_classes: int, has_features: bool = False):
        super().__init__()
        if not members:
            raise ExternalModelError("an ensemble needs at least one member module")
        self.members = nn.ModuleList(members)
        self.spec = ExternalSpec(len(self.members), num_classes)
        self.has_features = has_features and all(_split(m) is not None for m in self.members)

    @property
    def num_members(self) -> int:
        return self.spec.num_members

    @property
    def heads(self) -> list[nn.Module]:
        """Each member's last module (its classifier head); only with `has_features`."""
        self._need_features()
        return [_split(m)[1] for m in self.members]

    def _need_features(self) -> None:
        if not self.has_features:
            raise ExternalModelError("this external model exposes no penultimate features: make each member an "
                                     "nn.Sequential whose last module is its classifier head")

    def _per_member(self, fns: list[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        """Stack fns[k](x) over members; `x` is [B, ...] (shared) or [K, B, C, H, W] (one input per member)."""
        per_member = x.dim() == 5
        return torch.stack([fn(x[k] if per_member else x) for k, fn in enumerate(fns)])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [K, B, C] (the input of each member's head)."""
        self._need_features()
        return self._per_member([_split(m)[0] for m in self.members], x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Member logits [K, B, L]."""
        return self._per_member(list(self.members), x)

    def log_mean_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log of the mean member softmax [B, L]: the prediction, and what attacks target."""
        return mean_log_prob(self(x))


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    tensor = next(iter([*module.parameters(), *module.buffers()]), None)
    return tensor.device if tensor is not None else default


@torch.no_grad()
def _probe(members: list[nn.Module], sample: torch.Tensor) -> tuple[int, bool]:
    """(L, whether all members' penultimate features are [B, C] of one width) from one forward on `sample`."""
    widths, classes = set(), set()
    for k, member in enumerate(members):
        x = sample.to(_device_of(member, sample.device))
        try:
            out = member(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as err:  # a model made for other inputs
            text = str(err).strip().splitlines()
            raise ExternalModelError(f"member {k} fails on the dataset's images {list(x.shape[1:])} (channels, "
                                     f"height, width): {text[0] if text else type(err).__name__}") from err
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(x):
            shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ExternalModelError(
                f"member {k} returned {shape} for {len(x)} images: a member must return logits [B, L] (for an "
                "ensemble, return a list of member modules or a pdd.models.Ensemble)")
        classes.add(out.shape[1])
        split = _split(member)
        body = split[0](x) if split else None
        widths.add(body.shape[1] if isinstance(body, torch.Tensor) and body.dim() == 2 else None)
    if len(classes) != 1 or min(classes) < 2:
        raise ExternalModelError(f"members must all return logits over the same L >= 2 classes, got {sorted(classes)}")
    return classes.pop(), len(widths) == 1 and None not in widths


def as_ensemble(model: nn.Module | Sequence[nn.Module], sample: torch.Tensor,
                num_classes: int | None = None) -> nn.Module:
    """`model` (a `pdd.models.Ensemble`, an ensemble from here, one module = K 1, or a list of member modules)
    as an ensemble in eval mode; one forward on `sample` [B, C, H, W] checks the outputs and reads L, which must
    equal `num_classes` when given."""
    if isinstance(model, (Ensemble, MemberEnsemble)):
        ensemble = model
        if isinstance(model, Ensemble) and model.spec.in_channels != sample.shape[1]:
            raise ExternalModelError(f"the ensemble takes {model.spec.in_channels}-channel images, the dataset's "
                                     f"have {sample.shape[1]} channels")
    else:
        members = (list(model) if isinstance(model, (nn.ModuleList, Sequence)) else [model]
                   if isinstance(model, nn.Module) else None)
        if not members or not all(isinstance(m, nn.Module) for m in members):
            raise ExternalModelError(f"expected an nn.Module or a non-empty list of them, got {type(model).__name__}"
                                     + (f" of {sorted({type(m).__name__ for m in members})}" if members else ""))
        for m in members:
            m.eval()
        ensemble = MemberEnsemble(members, *_probe(members, sample[:2]))
    if num_classes is not None and ensemble.spec.num_classes != num_classes:
        raise ExternalModelError(
            f"the model predicts {ensemble.spec.num_classes} classes, the dataset has {num_classes}"
        )
    return ensemble.eval()


def import_factory(factory: str) -> Callable[[], Any]:
    """The callable named 'package.module:function' (dotted attributes allowed after the colon); the current
    directory is searched after the usual import path."""
    module_name, sep, attr = factory.partition(":")
    if not sep or not module_name or not attr:
        raise ExternalModelError(f"factory {factory!r} is not of the form 'package.module:function'")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ExternalModelError(f"cannot import {module_name!r} for factory {factory!r}: {err} (it must be "
                                 "importable from the current directory or PYTHONPATH)") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ExternalModelError(f"module {module_name!r} has no {attr!r} (factory {factory!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ExternalModelError(f"factory {factory!r} is a {type(obj).__name__}, not a callable")
    return obj


def read_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """torch.load as data only (weights_only=True): tensors and plain Python containers; a file whose pickle
    names anything else (which loading could run as code) is refused."""
    try:
        return load_data(path, device)
    except FileNotFoundError as err:
        raise ExternalModelError(f"weights file {path} not found") from err
    except pickle.UnpicklingError as err:
        try:
            unsafe = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # not a zip checkpoint: torch's own message says what it met
            unsafe = ""
        raise ExternalModelError(
            f"refused to load {path}: it holds objects other than tensors and plain Python values "
            f"({unsafe or torch_reason(err)}), and loading them could run code. Save data only: "
            "torch.save(model.state_dict(), path), or a list of the members' state_dicts.") from err
    except Exception as err:  # zip / storage errors vary by torch version
        raise ExternalModelError(
            f"cannot read weights {path}: the file is corrupt or not a torch data file ({torch_reason(err)})"
        ) from err


def _unwrap(obj: Any) -> Any:
    """A state_dict from the common wrappers: {'state_dict': ...} (pdd checkpoints too), 'module.' prefixes."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), (Mapping, list, tuple)):
        obj = obj["state_dict"]
    if isinstance(obj, Mapping) and obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_weights(modules: list[nn.Module], weights: Any, source: str = "weights") -> None:
    """Load one state_dict per module (a list for several members; one dict for one module), strictly."""
    weights = _unwrap(weights)
    if len(modules) == 1 and isinstance(weights, Mapping):
        weights = [weights]
    if not isinstance(weights, (list, tuple)) or len(weights) != len(modules):
        got = f"a list of {len(weights)}" if isinstance(weights, (list, tuple)) else f"a {type(weights).__name__}"
        want = "a state_dict" if len(modules) == 1 else f"a list of {len(modules)} state_dicts, one per member"
        raise ExternalModelError(f"the factory built {len(modules)} member(s): {source} must hold {want}, got {got}")
    for k, (module, state) in enumerate(zip(modules, weights)):
        state = _unwrap(state)
        if not isinstance(state, Mapping):
            raise ExternalModelError(f"{source}: entry {k} is a {type(state).__name__}, not a state_dict")
        expected = set(module.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ExternalModelError(f"{source} do not fit member {k} the factory built: "
                                     f"{_keys('missing', missing)}; {_keys('unexpected', unexpected)}")
        try:
            module.load_state_dict(state)
        except RuntimeError as err:  # shapes
            lines = [line.strip() for line in str(err).splitlines() if line.strip()][1:]
            more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
            raise ExternalModelError(f"{source} do not fit member {k} the factory built: "
                                     f"{'; '.join(lines[:3])}{more}") from err


def _keys(kind: str, keys: list[str], shown: int = 3) -> str:
    """'2 missing keys (a, b)': a short account of state_dict keys that do not match."""
    if not keys:
        return f"no {kind} keys"
    return f"{len(keys)} {kind} key(s) ({', '.join(keys[:shown])}{', ...' if len(keys) > shown else ''})"


def build_external(factory: str, weights: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> nn.Module | list[nn.Module]:
    """Call `factory` ('package.module:function', no arguments; it returns an nn.Module or a list of member
    modules), load `weights` into it (data only; None keeps the factory's own) and move it to `device`."""
    built = import_factory(factory)()
    modules = [built] if isinstance(built, nn.Module) else list(built) if isinstance(built, (list, tuple)) else []
    if not modules or not all(isinstance(m, nn.Module) for m in modules):
        raise ExternalModelError(f"factory {factory!r} returned {type(built).__name__}: expected an nn.Module or a "
                                 "non-empty list of nn.Module members")
    if weights is not None:
        load_weights(modules, read_weights(weights, "cpu"), str(weights))
    modules = [m.to(device).eval() for m in modules]
    return modules[0] if isinstance(built, nn.Module) else modules


def load_external(factory: str, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                  dataset: str | None = None, sample: torch.Tensor | None = None) -> nn.Module:
    """`build_external` as an ensemble in eval mode (`as_ensemble`), checked on `sample` or, given a pdd
    `dataset` name, on blank images of its shape and against its number of classes."""
    from pdd import data

    info = data.info(dataset) if dataset is not None else None
    if sample is None:
        if info is None:
            raise ValueError("give a pdd dataset name or a sample input to check the model on")
        sample = torch.zeros(2, info.in_channels, info.image_size, info.image_size)
    model = build_external(factory, weights, device)
    return as_ensemble(model, sample.to(device), info.num_classes if info else None)
