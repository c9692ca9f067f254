"""What pretraining and fine-tuning share: metrics.jsonl, the wandb mode policy, the RNG state of checkpoints."""

from __future__ import annotations

import io
import logging
import random

import numpy as np
import pytest
import torch
from fake_wandb import install_fake_wandb, set_wandb_credentials

from sharebert.trainer.metrics import MetricsFile, start_wandb
from sharebert.trainer.runtime import capture_rng, restore_rng


# ------------------------------------------------------------------------------------ metrics.jsonl
def test_metrics_file_appends_flushed_records_with_sorted_keys(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsFile(path) as metrics:
        metrics.write({"step": 1, "loss": 2.5, "event": "train"})
        assert path.read_text() == '{"event": "train", "loss": 2.5, "step": 1}\n'  # on disk before close
    with MetricsFile(path) as metrics:
        metrics.write({"step": 2, "task": "é", "grad_norm": None})
    assert path.read_text().splitlines() == [
        '{"event": "train", "loss": 2.5, "step": 1}',
        '{"grad_norm": null, "step": 2, "task": "é"}',
    ]


def test_a_disabled_metrics_file_writes_nothing(tmp_path):
    with MetricsFile(tmp_path / "metrics.jsonl", enabled=False) as metrics:
        metrics.write({"step": 1, "loss": 2.5})
    assert not (tmp_path / "metrics.jsonl").exists()


def test_metrics_file_mirrors_to_the_attached_wandb_run(tmp_path, monkeypatch):
    fake = install_fake_wandb(monkeypatch)
    first, second = fake.init(mode="offline"), fake.init(mode="offline")
    metrics = MetricsFile(tmp_path / "metrics.jsonl", wandb_run=first)
    metrics.write({"step": 5, "loss": 1.0, "loss_scale": None})
    metrics.mirror_to(second)
    metrics.write({"step": 6, "loss": 0.5})
    metrics.close()
    assert first.logged == [(5, {"loss": 1.0})] and first.finished
    assert second.logged == [(6, {"loss": 0.5})] and second.finished


# ------------------------------------------------------------------------------------ wandb mode policy
def test_wandb_stays_offline_with_credentials_unless_asked(tmp_path, monkeypatch):
    fake = install_fake_wandb(monkeypatch)
    set_wandb_credentials(monkeypatch, tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = start_wandb("project", "name", tmp_path, {"lr": 1e-3}, resume_id="abc", group="g")
    assert fake.modes == ["offline"] and run is fake.runs[0]
    assert fake.inits[0] == dict(
        mode="offline",
        project="project",
        name="name",
        group="g",
        dir=str(tmp_path),
        config={"lr": 1e-3},
        id="abc",
        resume="allow",
    )


def test_wandb_goes_online_when_asked(tmp_path, monkeypatch):
    fake = install_fake_wandb(monkeypatch)
    monkeypatch.setenv("WANDB_MODE", "online")
    start_wandb("project", "name", tmp_path, {})
    assert fake.modes == ["online"] and fake.inits[0]["resume"] is None
    assert fake.inits[0]["settings"].settings == {"init_timeout": 60}


def test_a_failed_online_start_falls_back_to_offline(tmp_path, monkeypatch, caplog):
    fake = install_fake_wandb(monkeypatch, fail_online=True)
    monkeypatch.setenv("WANDB_MODE", "online")
    with caplog.at_level(logging.WARNING, logger="sharebert"):
        run = start_wandb("project", "name", tmp_path, {}, resume_id="abc")
    assert fake.modes == ["online", "offline"] and run is fake.runs[0]
    assert {k: v for k, v in fake.inits[0].items() if k not in ("mode", "settings")} == {
        k: v for k, v in fake.inits[1].items() if k != "mode"
    }
    assert "logging offline instead" in caplog.text and "api.wandb.ai unreachable" in caplog.text


def test_a_failed_offline_start_is_an_error(tmp_path, monkeypatch):
    fake = install_fake_wandb(monkeypatch)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(fake, "init", lambda **kwargs: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        start_wandb("project", "name", tmp_path, {})


# ------------------------------------------------------------------------------------ RNG state
def draws() -> tuple:
    return random.random(), np.random.random(), np.random.standard_normal(), torch.rand(2).tolist()


def test_rng_state_round_trips_through_a_weights_only_checkpoint():
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state, which must come back too
    buffer = io.BytesIO()
    torch.save({"rng": capture_rng()}, buffer)
    expected = draws()
    buffer.seek(0)
    restore_rng(torch.load(buffer, weights_only=True)["rng"])
    assert draws() == expected
    assert draws() != expected
