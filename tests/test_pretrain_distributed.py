"""Two processes under torchrun (gloo on the CPU): uneven shards, equal steps per rank, no hang at epoch end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from samples_fixture import write_samples

pytestmark = pytest.mark.distributed


def test_two_ranks_on_uneven_shards_run_the_same_steps_across_epochs(tmp_path):
    samples = write_samples(tmp_path / "samples", [700, 33, 1400, 5, 260], [130, 70])
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sharebert.cli",
        "pretrain",
        "--dataset_path",
        str(samples),
        "--output_dir",
        str(out),
        "--preset",
        "tiny",
        "--train_batch_size",
        "32",
        "--train_micro_batch_size_per_gpu",
        "8",
        "--max_steps",
        "90",
        "--log_steps",
        "10",
        "--validation_steps",
        "45",
        "--checkpoint_steps",
        "1000",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "loss" in r]
    vals = [r for r in lines if "val_loss" in r]
    assert steps[-1]["step"] == 90 and steps[-1]["samples"] == 90 * 32
    assert steps[-1]["epoch"] >= 1  # ~74 steps per epoch: the run crossed an epoch end
    assert [v["step"] for v in vals] == [45, 90] and all(v["val_samples"] == 200 for v in vals)
    final = out / "checkpoints" / "step00000090"
    ranks = [torch.load(final / f"sharebert-rank{r:05d}.pt", weights_only=False) for r in range(2)]
    assert [r["micro_batches_this_session"] for r in ranks] == [90 * 2, 90 * 2]
    assert ranks[0]["position"] == ranks[1]["position"] and ranks[0]["position"]["epoch"] >= 1
    assert not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])  # each rank its own dropout
    assert (out / "model" / "config.json").exists()
