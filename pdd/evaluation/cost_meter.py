"""Cost of a job for the cost ledger: model image-passes, wall seconds and peak memory.

Snakemake's `benchmark:` already records wall time and max RSS per job; what it cannot see is how many
images went through the ensemble forward and backward, and the GPU's peak memory, so this meter counts those.
"""

from __future__ import annotations

import resource
import sys
import time
from types import TracebackType

import torch
from torch import nn

from pdd.models import Ensemble


def batch_images(x: torch.Tensor) -> int:
    """Images in an ensemble input: B for [B, C, H, W] and for [K, B, C, H, W] (one copy per member, as
    `Ensemble.features` reads a 5-D input), so K copies of an image count as one image."""
    return int(x.shape[1] if x.dim() == 5 else x.shape[0])


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


class CostMeter:
    """Context manager measuring a block's ensemble image-passes, wall seconds and peak memory.

    `with CostMeter(model) as cost:` yields a plain dict with the keys "seconds", "forward_images",
    "backward_images", "peak_rss_mb" and "peak_gpu_mb". The counts grow during the block; the rest is
    filled in on exit.

    - forward_images: images through the forward of each `pdd.models.Ensemble` inside `model` (the
      model itself when it holds none), counted once per ensemble call, not per member: a [B, ...] or
      [K, B, ...] input counts B (see `batch_images`). Passes that bypass the ensemble's forward (a
      member's partial forward such as DVERGE's feature distillation, `Ensemble.features`) are not counted.
    - backward_images: for each backward pass or `torch.autograd.grad` call whose gradient reaches an
      ensemble output, that output's B images (a second-order loss such as DEG's counts each pass).
    - peak_rss_mb: the process's peak RSS (a lifetime peak: it includes what ran before the block).
    - peak_gpu_mb: torch.cuda.max_memory_allocated on the model's GPU during the block; None on the CPU.
    """

    def __init__(self, model: nn.Module | None = None, device: torch.device | None = None):
        self.model = model  # None: every outermost ensemble that runs in the block (one built inside it, too)
        self.device = device or (_device_of(model) if model is not None else torch.device("cpu"))
        self.result: dict = {"seconds": 0.0, "forward_images": 0, "backward_images": 0,
                             "peak_rss_mb": 0.0, "peak_gpu_mb": None}
        self._handles: list = []
        self._start = 0.0
        self._active = False

    def _modules(self) -> list[nn.Module]:
        """The modules whose forward counts: the outermost ensembles, so nested ones are not counted twice."""
        ensembles = [m for m in self.model.modules() if isinstance(m, Ensemble)]
        inner = {id(sub) for m in ensembles for sub in m.modules() if sub is not m}
        return [m for m in ensembles if id(m) not in inner] or [self.model]

    def _forward_hook(self, module: nn.Module, inputs: tuple, output) -> None:
        images = batch_images(inputs[0])
        self.result["forward_images"] += images
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(lambda grad: self._count_backward(images))

    def _count_backward(self, images: int) -> None:
        if self._active:  # a graph built in the block may be backpropagated after it
            self.result["backward_images"] += images

    @staticmethod
    def _is_ensemble(module: nn.Module) -> bool:
        """A module the meter counts: a pdd Ensemble, or anything evaluated like one (a `log_mean_prob` method:
        an external MemberEnsemble, one attacked member of member transfer)."""
        return isinstance(module, Ensemble) or callable(getattr(module, "log_mean_prob", None))

    def _global_hook(self, module: nn.Module, inputs: tuple, output) -> None:
        """Without a model: count each ensemble call that is not inside another ensemble's forward."""
        if self._is_ensemble(module):
            if self._depth == 1:
                self._forward_hook(module, inputs, output)
            self._depth -= 1

    def _global_pre_hook(self, module: nn.Module, inputs: tuple) -> None:
        if self._is_ensemble(module):
            self._depth += 1

    def __enter__(self) -> dict:
        if self.model is None:
            from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

            self._depth = 0
            self._handles = [register_module_forward_pre_hook(self._global_pre_hook),
                             register_module_forward_hook(self._global_hook)]
        else:
            self._handles = [m.register_forward_hook(self._forward_hook) for m in self._modules()]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._start = time.perf_counter()
        self._active = True
        return self.result

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._active = False
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.result["seconds"] = time.perf_counter() - self._start
        self.result["peak_rss_mb"] = peak_rss_mb()
        for handle in self._handles:
            handle.remove()
        self._handles = []
