"""configure_backends: TF32 only for training, cuDNN autotuning on the GPU, nothing changed on the CPU."""

from __future__ import annotations

import pytest
import torch

from pdd.devices import configure_backends, select_device


def flags() -> tuple[bool, bool, bool]:
    return (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


@pytest.fixture(autouse=True)
def restore_flags():
    saved = flags()
    yield
    torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def set_flags(value: tuple[bool, bool, bool]) -> None:
    torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = value


def test_training_on_a_gpu_allows_tf32() -> None:
    set_flags((False, False, False))
    configure_backends(torch.device("cuda", 0), training=True)
    assert flags() == (True, True, True)


def test_evaluation_on_a_gpu_is_full_fp32() -> None:
    set_flags((False, True, True))  # PyTorch's default allows TF32 convolutions: an attack must turn it off
    configure_backends(torch.device("cuda", 0), training=False)
    assert flags() == (True, False, False)


@pytest.mark.parametrize("training", [True, False])
def test_cpu_leaves_the_flags_alone(training: bool) -> None:
    for value in [(False, True, False), (True, False, True)]:
        set_flags(value)
        configure_backends(torch.device("cpu"), training=training)
        assert flags() == value


def test_select_device_configures_the_device_it_returns() -> None:
    set_flags((False, False, False))
    assert select_device("cpu", training=True).type == "cpu" and flags() == (False, False, False)
    assert select_device("cuda:0", training=True) == torch.device("cuda", 0) and flags() == (True, True, True)
    select_device("cuda:0")  # default: an evaluation job
    assert flags() == (True, False, False)
