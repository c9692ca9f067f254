"""Pretraining LR schedules and the validation stage rule: pure functions, tested directly."""

from __future__ import annotations

import pytest

from sharebert.errors import ConfigError
from sharebert.trainer.pretrain.schedule import PretrainSchedule, validation_interval, warmup_decay


def test_linear_warmup_then_linear_decay_to_zero():
    assert warmup_decay(0, 100, 10) == 0.0
    assert warmup_decay(5, 100, 10) == 0.5
    assert warmup_decay(10, 100, 10) == 1.0
    assert warmup_decay(55, 100, 10) == pytest.approx(0.5)
    assert warmup_decay(100, 100, 10) == 0.0
    assert warmup_decay(150, 100, 10) == 0.0


def test_exp_curve_warms_up_quadratically_and_decays_geometrically():
    assert warmup_decay(5, 100, 10, curve="exp") == 0.25
    assert warmup_decay(10, 100, 10, curve="exp", decay_rate=0.5, decay_step=20) == 1.0
    assert warmup_decay(50, 100, 10, curve="exp", decay_rate=0.5, decay_step=20) == pytest.approx(0.25)


def test_step_schedule_follows_max_steps_and_warmup_proportion():
    s = PretrainSchedule("step", "linear", warmup_proportion=0.06)
    assert s.factor(0, 0.0, 23000, None) == 0.0
    assert s.factor(690, 0.0, 23000, None) == pytest.approx(0.5)
    assert s.factor(1380, 0.0, 23000, None) == pytest.approx(1.0)
    assert s.factor(23000, 0.0, 23000, None) == 0.0


def test_constant_step_uses_a_fixed_warmup_and_time_uses_hours():
    assert PretrainSchedule("constant_step", num_warmup_steps=10).factor(5, 0.0, 1000, None) == 0.5
    t = PretrainSchedule("time", warmup_proportion=0.1)
    assert t.factor(999, 0.05, 10, 1.0) == pytest.approx(0.5)  # steps do not matter
    assert t.factor(0, 0.55, 10, 1.0) == pytest.approx(0.5)
    assert t.factor(0, 1.0, 10, 1.0) == 0.0


def test_short_time_budgets_decay_smoothly():
    # The reference divides by max(1 hour, ...), which makes the LR jump after warm-up for runs under an hour.
    t = PretrainSchedule("time", warmup_proportion=0.1)
    assert t.factor(0, 0.0101, 10, 0.1) == pytest.approx(0.9988, abs=1e-3)


@pytest.mark.parametrize(
    "kwargs", [dict(lr_schedule="cosine"), dict(curve="cubic"), dict(warmup_proportion=1.5), dict(decay_rate=0.0)]
)
def test_bad_settings_name_the_value(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        PretrainSchedule(**kwargs)


def test_validation_interval_has_three_stages():
    args = dict(every=6, every_begin=1, every_end=2, begin_proportion=0.05, end_proportion=0.01)
    assert validation_interval(0.01, **args) == 1
    assert validation_interval(0.5, **args) == 6
    assert validation_interval(0.995, **args) == 2
