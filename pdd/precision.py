"""Training precision (`training.precision`): fp32, tf32 (fp32 storage, TF32 tensor-core matmuls and
convolutions on a GPU) or bf16 (autocast: convolutions and matmuls in bfloat16, BatchNorm and the losses in
fp32). Evaluations and attacks always run in fp32."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from pdd.settings.training import PRECISIONS, check_precision  # noqa: F401 (re-exported)

LOW = (torch.bfloat16, torch.float16)


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for `device_type` in this thread (torch 2.2's per-device queries included)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def full(t: torch.Tensor) -> torch.Tensor:
    """`t` in fp32 when autocast made it bfloat16 / float16; unchanged otherwise (fp64 stays fp64)."""
    return t.float() if t.dtype in LOW else t


def training_autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The context a training step runs in: bf16 autocast for 'bf16', nothing for fp32 / tf32 (TF32 is a
    backend switch, `allow_tf32`, set once per job by pdd.devices.configure_backends)."""
    check_precision(precision)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()
