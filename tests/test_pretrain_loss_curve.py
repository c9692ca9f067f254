"""A stored few-step CPU loss curve: a change that alters the training numerics shows up here.

The tiny preset in fp32 on one torch thread, seeded, trains on samples that samples_fixture writes
(deterministic), logging the loss of every step and validating at the end; the losses and the
validation result must match tests/data/loss_curve.json to a relative 1e-5 (runs on one machine agree
bit for bit; the tolerance leaves room for another CPU's kernels, not for a changed computation).

After a change that is meant to alter the numbers, regenerate the file on purpose and commit it:

    SHAREBERT_UPDATE_LOSS_CURVE=1 python -m pytest tests/test_pretrain_loss_curve.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from samples_fixture import write_samples

from sharebert.cli import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")

STORED = Path(__file__).resolve().parent / "data" / "loss_curve.json"
UPDATE_VARIABLE = "SHAREBERT_UPDATE_LOSS_CURVE"
RELATIVE_TOLERANCE = 1e-5
SAMPLES = {"train_rows": [160, 96], "test_rows": [64], "seq_len": 32, "max_pred": 5, "vocab_size": 1024, "seed": 3}
PRETRAIN_FLAGS = [
    "--preset", "tiny", "--fp32", "--seed", "42", "--train_batch_size", "16", "--train_micro_batch_size_per_gpu", "8",
    "--max_steps", "10", "--log_steps", "1", "--validation_steps", "10", "--checkpoint_steps", "1000",
]  # fmt: skip


def train_curve(tmp_path: Path) -> dict:
    samples = write_samples(tmp_path / "samples", **SAMPLES)
    out = tmp_path / "run"
    argv = ["pretrain", "--dataset_path", str(samples), "--output_dir", str(out), *PRETRAIN_FLAGS, "-q"]
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    [validation] = [r for r in records if "val_loss" in r]
    return {
        "samples": SAMPLES,
        "pretrain_flags": PRETRAIN_FLAGS,
        "losses": [r["loss"] for r in records if "loss" in r],
        "val_loss": validation["val_loss"],
        "val_mlm_acc": validation["val_mlm_acc"],
    }


def test_the_loss_curve_matches_the_stored_one(tmp_path):
    curve = train_curve(tmp_path)
    if os.environ.get(UPDATE_VARIABLE) == "1":
        STORED.write_text(json.dumps(curve, indent=2) + "\n", encoding="utf-8")
    stored = json.loads(STORED.read_text(encoding="utf-8"))
    assert (curve["samples"], curve["pretrain_flags"]) == (stored["samples"], stored["pretrain_flags"]), (
        f"the run's settings changed: regenerate {STORED.name} ({UPDATE_VARIABLE}=1)"
    )
    assert len(curve["losses"]) == 10
    assert curve["losses"] == pytest.approx(stored["losses"], rel=RELATIVE_TOLERANCE)
    assert curve["val_loss"] == pytest.approx(stored["val_loss"], rel=RELATIVE_TOLERANCE)
    assert curve["val_mlm_acc"] == stored["val_mlm_acc"]  # a ratio of counts
