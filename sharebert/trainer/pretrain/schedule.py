"""Learning-rate schedules as pure functions of progress. They return a factor of the peak LR."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError


def polynomial_decay(
    step: int, total_steps: int, warmup_steps: int, power: float = 1.0, end_factor: float = 0.0
) -> float:
    """Linear warm-up over `warmup_steps`, then polynomial decay to `end_factor` at `total_steps`.

    The shape of Hugging Face's polynomial schedule, which the published fine-tuning uses.
    """
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if step >= total_steps:
        return end_factor
    remaining = 1.0 - (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return (1.0 - end_factor) * remaining**power + end_factor


# ---------------------------------------------------------------- pretraining (the reference's flags)
LR_SCHEDULES = ("step", "constant_step", "time")
CURVES = ("linear", "exp")


def warmup_decay(
    position: float,
    total: float,
    warmup: float,
    curve: str = "linear",
    decay_rate: float = 0.99,
    decay_step: float = 1000.0,
) -> float:
    """LR factor at `position` of a run of length `total` with `warmup` units of warm-up (any unit).

    linear: linear warm-up from 0, then linear decay to 0 at `total`.
    exp: quadratic warm-up, then decay_rate ** ((position - warmup) / decay_step).
    """
    if position < warmup:
        fraction = position / warmup
        return fraction if curve == "linear" else fraction**2
    if curve == "exp":
        return decay_rate ** ((position - warmup) / decay_step)
    return max(0.0, total - position) / max(total - warmup, 1e-12)


@dataclass(frozen=True)
class PretrainSchedule:
    """The reference's `--lr_schedule` / `--curve` family as one pure function of progress.

    step: warm-up over warmup_proportion x max_steps, position = optimizer steps done.
    constant_step: the same with a fixed number of warm-up steps (num_warmup_steps).
    time: position = training hours elapsed, total = total_training_time, warm-up = warmup_proportion x that.
    """

    lr_schedule: str = "step"
    curve: str = "linear"
    warmup_proportion: float = 0.06
    num_warmup_steps: int = 1000
    decay_rate: float = 0.99
    decay_step: float = 1000.0

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule={self.lr_schedule!r} must be one of {', '.join(LR_SCHEDULES)}")
        if self.curve not in CURVES:
            raise ConfigError(f"curve={self.curve!r} must be one of {', '.join(CURVES)}")
        if not 0.0 <= self.warmup_proportion < 1.0:
            raise ConfigError(f"warmup_proportion={self.warmup_proportion} must be in [0, 1)")
        if self.num_warmup_steps < 0:
            raise ConfigError(f"num_warmup_steps={self.num_warmup_steps} must be >= 0")
        if not 0.0 < self.decay_rate <= 1.0 or self.decay_step <= 0:
            raise ConfigError(f"decay_rate={self.decay_rate} must be in (0, 1] and decay_step={self.decay_step} > 0")

    def factor(self, step: int, elapsed_hours: float, max_steps: int | None, total_hours: float | None) -> float:
        """The factor of the peak LR for the optimizer step taken after `step` steps and `elapsed_hours`."""
        if self.lr_schedule == "time":
            position, total = elapsed_hours, total_hours
            warmup = self.warmup_proportion * total
        else:
            position, total = step, max_steps
            warmup = self.num_warmup_steps if self.lr_schedule == "constant_step" else self.warmup_proportion * total
        if total is None:
            raise ValueError(f"lr_schedule {self.lr_schedule} needs its total (max_steps or total_training_time)")
        return warmup_decay(position, total, warmup, self.curve, self.decay_rate, self.decay_step)


def validation_interval(
    progress: float, every: int, every_begin: int, every_end: int, begin_proportion: float, end_proportion: float
) -> int:
    """The reference's three-stage validation schedule: the interval (in shard-epochs) at `progress` in [0, 1]."""
    if progress < begin_proportion:
        return every_begin
    if progress > 1.0 - end_proportion:
        return every_end
    return every
