"""What determines a trained ensemble (`TrainConfig`) and PDD's one rule on M: `pdd.training` trains it, the plan
builds it from the config, both without the other's imports."""

from __future__ import annotations

from dataclasses import dataclass, field

from pdd.settings.datasets import info
from pdd.settings.methods import METHOD_INFO, LossSettings
from pdd.validation import check_fields, setting

THROUGHPUT_FIELDS = ("channels_last", "fuse_members")  # TrainConfig fields that leave the trained result unchanged
PRECISIONS = ("fp32", "tf32", "bf16")  # training.precision (pdd.precision runs them)


def check_precision(precision: str) -> None:
    """A precision the training knows; anything else is one clear error."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")


def check_start(method: str, starts_from: str | None, init_from: str | None) -> None:
    """A method that starts from a trained ensemble (`starts_from`: dverge's baseline) has `init_from`, and only
    such a method."""
    if starts_from and not init_from:
        raise ValueError(f"method {method!r} starts from a trained {starts_from!r} ensemble: give init_from")
    if init_from and not starts_from:
        raise ValueError(f"method {method!r} trains from scratch: init_from is only for methods that "
                         "start from a trained ensemble (dverge)")


def intervals_problem(num_members: int, num_intervals: int) -> str | None:
    """Why M intervals cannot serve K members (PDD gives each member its own interval, and needs M > K); None
    when they can."""
    if num_intervals > num_members:
        return None
    return f"PDD needs more intervals than members (M > K), got M={num_intervals}, K={num_members}"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained ensemble (and so its checkpoint's validity on resume)."""

    dataset: str = setting(help="Dataset (pdd.data.DATASETS).")
    method: str = setting(help="Training method (pdd.methods.METHODS).")
    members: int = setting(help="Ensemble size K (>= 2).")
    arch: str = setting("resnet18", "Member architecture.")
    width: int = setting(64, "Channels of the first stage (64 = standard).")
    seed: int = setting(0, "Random seed.")
    epochs: int = setting(40, "Training epochs.")
    batch_size: int = setting(64, "Images per batch.")
    lr: float = setting(0.02, "SGD learning rate (start of the cosine annealing).")
    momentum: float = setting(0.9, "SGD momentum.")
    weight_decay: float = setting(5e-4, "SGD weight decay.")
    lr_min: float = setting(1e-4, "Cosine annealing floor.")
    augment: bool = setting(False, "Random crop (pad 4) + horizontal flip.")
    pdd_intervals: int = setting(10, "PDD's number of intervals M (> K).")
    pdd_alpha: float = setting(0.9, "PDD's keep rate of a member's priority interval.")
    pdd_beta: float = setting(0.1, "PDD's scale of the other intervals' keep rates.")
    loss_settings: LossSettings = field(default_factory=LossSettings)
    init_from: str | None = setting(None, "Trained ensemble the method starts from (dverge: the baseline of the "
                                          "same dataset, K, arch, width and seed).")
    precision: str = setting("tf32", "Training arithmetic: fp32, tf32 (TF32 matmuls and convolutions on a GPU; "
                             "fp32 on a CPU) or bf16 (autocast; BatchNorm and losses in fp32). Evaluations stay fp32.")
    # Throughput options: they change how a step is computed, not what (equal results to float rounding), so a
    # state saved with other values still resumes (THROUGHPUT_FIELDS), and the workflow keeps them out of the
    # job's params (moving results to another machine reruns nothing).
    channels_last: bool = setting(
        False, "Throughput: keep weights (and so activations) in channels-last memory format (same results).")
    fuse_members: bool | None = setting(
        None, "Throughput: run the K members as one network with grouped convolutions (same results to float "
              "rounding); default: where the step benchmark measured it faster (pdd.devices.fuse_by_default).")

    def __post_init__(self) -> None:
        check_fields(self)  # finite numbers in their ranges (pdd.validation), before anything else
        check_precision(self.precision)
        info(self.dataset)
        if self.method in METHOD_INFO:  # a user's method is checked where it is loaded (pdd.training.train)
            check_start(self.method, METHOD_INFO[self.method].starts_from, self.init_from)
