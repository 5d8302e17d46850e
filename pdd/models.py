"""CIFAR-style ResNet-18/34 and VGG-16-BN members and the K-member ensemble built from them."""

from __future__ import annotations

import math
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pdd import fused
from pdd.precision import autocast_enabled, full

CHECKPOINT_FORMAT = "pdd-ensemble-v1"
ARCHITECTURES = ("resnet18", "resnet34", "vgg16")


class BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d computed in fp32 under autocast (mixed-precision training keeps its statistics exact);
    the same module, state and result otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not autocast_enabled(x.device.type):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


class BasicBlock(nn.Module):
    """The two-conv residual block of ResNet-18/34."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetFeatures(nn.Module):
    """ResNet with a 3x3 stride-1 stem and no max-pool (CIFAR style); returns pooled features [B, 8*width]."""

    def __init__(self, blocks: tuple[int, ...], width: int, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for stage, n in enumerate(blocks):
            cout = width * 2**stage
            for i in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (i == 0 and stage > 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.out_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)


VGG16_CFG = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")


class VGGFeatures(nn.Module):
    """VGG-16 with batch norm; channel multiples of `width`; ceil-mode pooling so small inputs never vanish."""

    def __init__(self, width: int, in_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(cin, width * v, 3, padding=1, bias=False), BatchNorm2d(width * v), nn.ReLU()]
                cin = width * v
        self.layers = nn.Sequential(*layers)
        self.out_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.layers(x), 1).flatten(1)


def build_features(arch: str, width: int, in_channels: int) -> nn.Module:
    """One member's feature extractor (everything up to the penultimate layer)."""
    if arch == "resnet18":
        return ResNetFeatures((2, 2, 2, 2), width, in_channels)
    if arch == "resnet34":
        return ResNetFeatures((3, 4, 6, 3), width, in_channels)
    if arch == "vgg16":
        return VGGFeatures(width, in_channels)
    raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")


@dataclass(frozen=True)
class EnsembleSpec:
    """Everything needed to rebuild an ensemble from its weights (stored in every checkpoint)."""

    arch: str
    num_members: int
    num_classes: int
    in_channels: int
    width: int = 64
    pdd: dict = field(default_factory=dict)  # {} or {"num_intervals", "alpha", "beta"}

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; expected one of {ARCHITECTURES}")
        if self.num_members < 2:
            raise ValueError(f"an ensemble needs K >= 2 members, got {self.num_members}")
        if self.width < 1 or self.num_classes < 2 or self.in_channels < 1:
            raise ValueError(f"invalid ensemble spec {self}")


class Ensemble(nn.Module):
    """K members with their own linear heads; `feature_dropout` acts on the concatenated
    penultimate features [B, K*C] (PDD) before the heads.

    `fuse_members` (a throughput option, off by default, not part of the checkpoint): run the K members as one
    network (grouped convolutions, pdd.fused) instead of K in turn; the same logits and random draws to float
    rounding, the same parameters, state dict and checkpoint. Forward hooks on the members do not fire then.
    """

    def __init__(self, spec: EnsembleSpec):
        super().__init__()
        self.spec = spec
        self.fuse_members = False
        self.members = nn.ModuleList(
            build_features(spec.arch, spec.width, spec.in_channels) for _ in range(spec.num_members)
        )
        self.feature_dim = self.members[0].out_features
        self.heads = nn.ModuleList(nn.Linear(self.feature_dim, spec.num_classes) for _ in range(spec.num_members))
        self.feature_dropout: nn.Module = nn.Identity()
        if spec.pdd:
            from pdd.dropout import PriorityDiversifiedDropout

            self.feature_dropout = PriorityDiversifiedDropout(spec.num_members, **spec.pdd)

    @property
    def num_members(self) -> int:
        return self.spec.num_members

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [K, B, C]; `x` is [B, ...] (shared) or [K, B, ...] (one input per member)."""
        if self.fuse_members:
            f = self.fused_features(x)
            return f.view(f.shape[0], self.num_members, -1).transpose(0, 1)
        per_member = x.dim() == 5
        return torch.stack([m(x[k] if per_member else x) for k, m in enumerate(self.members)])

    def fused_features(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated features [B, K*C] (PDD's layout) of the K members run as one grouped network
        (pdd.fused): the same values as `features` to float rounding, each member's BatchNorm statistics
        updated as its own module would."""
        build = fused.resnet_features if isinstance(self.members[0], ResNetFeatures) else fused.vgg_features
        return build(self.members, x, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Member logits [K, B, L], in fp32 (also under autocast, so every loss is computed in fp32)."""
        if self.fuse_members:
            return full(fused.heads(self.heads, self.feature_dropout(self.fused_features(x))))
        f = self.features(x)
        k, b, c = f.shape
        f = self.feature_dropout(f.transpose(0, 1).reshape(b, k * c)).reshape(b, k, c).transpose(0, 1)
        return full(torch.stack([head(f[i]) for i, head in enumerate(self.heads)]))

    def log_mean_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log of the mean member softmax [B, L]: the ensemble's prediction, and what attacks target."""
        return mean_log_prob(self(x))

    def num_feature_layers(self) -> int:
        """How many layers `member_feature` reads (DVERGE's distillation layers); the last is the logits."""
        member = self.members[0]
        if isinstance(member, ResNetFeatures):
            return 1 + 2 * len(member.layers) + 1
        return sum(isinstance(m, nn.BatchNorm2d) for m in member.layers) + 1

    def member_feature(self, k: int, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Member k's pre-ReLU feature at `layer` for x [B, ...], as DVERGE distils it (Yang et al. 2020).

        ResNet: 0 = the stem's batch norm, then per residual block its first batch norm and its output
        (residual added) before the last ReLU; VGG: each batch norm; last index = the member's logits
        (its own head, no feature dropout). Only the layers up to `layer` are computed.
        """
        last = self.num_feature_layers() - 1
        if not 0 <= layer <= last:
            raise ValueError(f"feature layer {layer} out of range 0..{last}")
        member = self.members[k]
        if isinstance(member, ResNetFeatures):
            h = member.stem[1](member.stem[0](x))
            if layer == 0:
                return h
            h, index = F.relu(h), 1
            for block in member.layers:
                mid = block.bn1(block.conv1(h))
                if layer == index:
                    return mid
                out = block.bn2(block.conv2(F.relu(mid))) + block.shortcut(h)
                if layer == index + 1:
                    return out
                h, index = F.relu(out), index + 2
        else:
            h, index = x, 0
            for module in member.layers:
                h = module(h)
                if isinstance(module, nn.BatchNorm2d):
                    if layer == index:
                        return h
                    index += 1
        return self.heads[k](F.adaptive_avg_pool2d(h, 1).flatten(1))

    def member_features(self, xs: torch.Tensor, layer: int) -> torch.Tensor:
        """Every member's `member_feature` at `layer`, member k's from xs[k]: [K, B, ...]; one grouped network
        when `fuse_members`."""
        if not self.fuse_members:
            return torch.stack([self.member_feature(k, xs[k], layer) for k in range(self.num_members)])
        last = self.num_feature_layers() - 1
        if not 0 <= layer <= last:
            raise ValueError(f"feature layer {layer} out of range 0..{last}")
        build = fused.resnet_feature_at if isinstance(self.members[0], ResNetFeatures) else fused.vgg_feature_at
        return build(self.members, self.heads, xs, layer, self.training)


def mean_log_prob(member_logits: torch.Tensor) -> torch.Tensor:
    """log(mean_k softmax(member_logits[k])) computed stably; [K, B, L] -> [B, L]."""
    k = member_logits.shape[0]
    return torch.logsumexp(F.log_softmax(member_logits, dim=-1), dim=0) - math.log(k)


class LogMeanProb(nn.Module):
    """Wraps an ensemble so that forward returns log(mean softmax): the 'logits' handed to attack libraries."""

    def __init__(self, ensemble: Ensemble):
        super().__init__()
        self.ensemble = ensemble

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble.log_mean_prob(x)


class CheckpointError(RuntimeError):
    """A checkpoint file that is unreadable, not ours, or does not match its own spec."""


def checkpoint(model: Ensemble, **extra) -> dict:
    """The on-disk form of a trained ensemble."""
    return {"format": CHECKPOINT_FORMAT, "spec": asdict(model.spec), "state_dict": model.state_dict(), **extra}


def ensemble_from_checkpoint(ckpt: dict, source: str = "checkpoint") -> Ensemble:
    """Rebuild an ensemble from `checkpoint()`'s dict, with clear errors for foreign or mismatched content."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source} is not a pdd ensemble checkpoint (format {CHECKPOINT_FORMAT})")
    try:
        model = Ensemble(EnsembleSpec(**ckpt["spec"]))
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError, KeyError) as err:
        raise CheckpointError(f"{source} does not match its recorded ensemble spec: {err}") from err
    return model


def _legacy_numpy_globals() -> list:
    """numpy's array and scalar rebuilders, allowlisted only to read files written before checkpoints held
    plain types (their training state kept numpy's RNG state, a uint32 array): data, never code."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    dtypes = [type(np.dtype(t)) for t in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                                          "uint64", "float16", "float32", "float64")]
    rebuilders = [(f, f"{module}.{f.__name__}") for f in (multiarray._reconstruct, multiarray.scalar)
                  for module in ("numpy.core.multiarray", "numpy._core.multiarray")]
    return [np.ndarray, np.dtype, *dict.fromkeys(dtypes), *rebuilders]


def _global_name(entry) -> str:
    """The name a pickle uses for an allowlist entry (a class, or a (function, name) pair)."""
    return entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"


def _unsafe_globals(path: str | os.PathLike) -> list[str]:
    """The globals (classes, functions) a file's pickle names beyond torch's weights-only allowlist; read
    without unpickling."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a readable zip checkpoint
        return []


def _is_pickle(path: str | os.PathLike) -> bool:
    """Whether the file (or a torch zip archive's data.pkl) parses as a pickle stream, read without unpickling:
    random bytes do not, so they are reported as corrupt, not as a file that could run code."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(name)
        else:
            with open(path, "rb") as f:
                data = f.read()
        for _ in pickletools.genops(data):
            pass
        return True
    except Exception:
        return False


def load_data(path: str | os.PathLike, device: str | torch.device) -> Any:
    """torch.load(weights_only=True), without torch's warning that a TorchScript file is dispatched (it is then
    refused: one message, not two)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TorchScript.*")
        return torch.load(path, map_location=device, weights_only=True)


def torch_reason(err: BaseException) -> str:
    """What torch.load's error says about the file, without its advice to retry with weights_only=False (the one
    thing not to do with a file from elsewhere) or to allowlist globals."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    if "TorchScript" in text:
        return "a TorchScript archive (a program, not data)"
    unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsupported:
        return f"it names {unsupported.group(1)}"
    advice = ("weights_only", "trusted source", "trust the source", "documentation", "safe_globals", "allowlist",
              "two options")
    parts = [p.strip() for p in re.split(r"(?<=\.)\s+|\n", text) if p.strip()]
    kept = [p for p in parts if not any(a in p for a in advice)]
    return " ".join(kept) or type(err).__name__


def _corrupt(path: str | os.PathLike, err: Exception) -> CheckpointError:
    if "TorchScript" in str(err):
        return CheckpointError(f"refused to load {path}: {torch_reason(err)}; pdd reads data-only checkpoints")
    return CheckpointError(f"cannot read checkpoint {path}: the file is corrupt or truncated ({torch_reason(err)})")


def read_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """torch.load as data only (weights_only=True): a file whose pickle names anything beyond tensors and
    plain Python values is refused, never run; clear errors for a missing, truncated or corrupt file.

    Training states written before the plain format (numpy RNG state inside) still load: exactly numpy's
    array and scalar rebuilders are allowlisted for them, and only when nothing else is named.
    """
    try:
        return load_data(path, device)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        unsafe = _unsafe_globals(path)
        legacy = _legacy_numpy_globals()
        if unsafe and set(unsafe) <= {_global_name(g) for g in legacy}:
            try:
                with torch.serialization.safe_globals(legacy):
                    return load_data(path, device)
            except Exception as legacy_err:
                raise _corrupt(path, legacy_err) from legacy_err
        if not unsafe and ("WeightsUnpickler" not in str(err) or not _is_pickle(path)):
            raise _corrupt(path, err) from err
        named = ", ".join(unsafe) if unsafe else torch_reason(err)
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain Python values ({named}), "
            "and loading them could run code. pdd checkpoints are data only: if pdd wrote this file, retrain "
            "it (delete it and rerun the job).") from err
    except Exception as err:  # zip / storage errors vary by torch version
        raise _corrupt(path, err) from err


def load_ensemble(path: str | os.PathLike, device: str | torch.device = "cpu") -> Ensemble:
    """Load a trained ensemble from `path` onto `device`, in eval mode."""
    model = ensemble_from_checkpoint(read_checkpoint(path, device), str(path))
    return model.to(device).eval()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block in eval mode (BatchNorm running statistics, PDD off), then restore the caller's mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
