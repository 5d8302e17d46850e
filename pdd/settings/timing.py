"""The timing table's measurement settings (`pdd.step_timing` runs it)."""

from __future__ import annotations

from dataclasses import dataclass

from pdd.validation import setting


@dataclass(frozen=True)
class TimingSettings:
    """How the timing table measures: timed steps per method (median reported), untimed warm-up steps, batch."""

    steps: int = setting(20, "Timed steps per method (the median is reported).")
    warmup: int = setting(2, "Untimed warm-up steps per method.")
    batch_size: int = setting(64, "Images per timed step (default: training.batch_size).")
