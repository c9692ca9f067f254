"""Learning-rate schedules as pure functions of progress. They return a factor of the peak LR."""

from __future__ import annotations


def polynomial_decay(step: int, total_steps: int, warmup_steps: int, power: float = 1.0, end_factor: float = 0.0) -> float:
    """Linear warm-up over `warmup_steps`, then polynomial decay to `end_factor` at `total_steps`.

    The shape of Hugging Face's polynomial schedule, which the published fine-tuning uses.
    """
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if step >= total_steps:
        return end_factor
    remaining = 1.0 - (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return (1.0 - end_factor) * remaining**power + end_factor
