"""Two processes under torchrun (gloo on the CPU): uneven shards, equal steps per rank, no hang at epoch ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from samples_fixture import pretrain_argv, write_samples

from sharebert.trainer.pretrain.data import LoaderLayout, micro_batches_per_epoch

pytestmark = pytest.mark.distributed

# One file larger than a loader block (formats.HDF5_CHUNK_ROWS rows), the others far smaller: the two
# ranks are dealt very different numbers of rows, and an epoch is a few steps, so the run crosses two.
TRAIN_ROWS, TEST_ROWS = [1030, 33, 5, 90, 40], [130, 70]
WORLD, MICRO_BATCH, BATCH, SEED = 2, 8, 32, 42
MAX_STEPS = 24


def epoch_at(step: int) -> int:
    """The data epoch that the loader's plan puts optimizer step `step` in."""
    accumulation = BATCH // (MICRO_BATCH * WORLD)
    layout = LoaderLayout(seed=SEED, world_size=WORLD, rank=0, micro_batch_size=MICRO_BATCH)
    epoch, steps_before = 0, 0
    while steps_before + micro_batches_per_epoch(TRAIN_ROWS, layout, epoch) // accumulation < step:
        steps_before += micro_batches_per_epoch(TRAIN_ROWS, layout, epoch) // accumulation
        epoch += 1
    return epoch


def test_two_ranks_on_uneven_shards_run_the_same_steps_across_epochs(tmp_path):
    samples = write_samples(tmp_path / "samples", TRAIN_ROWS, TEST_ROWS)
    out = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD)]
    flags = (
        f"--preset tiny --train_batch_size {BATCH} --train_micro_batch_size_per_gpu {MICRO_BATCH}"
        f" --max_steps {MAX_STEPS} --log_steps 4 --validation_steps {MAX_STEPS // 2} --checkpoint_steps 1000"
        f" --seed {SEED}"
    )
    cmd = [*launcher, "-m", "sharebert.cli", *pretrain_argv(samples, out, flags)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "loss" in r]
    vals = [r for r in lines if "val_loss" in r]
    final_epoch = epoch_at(MAX_STEPS)
    assert final_epoch >= 2  # the run crosses two epoch ends
    assert steps[-1]["step"] == MAX_STEPS and steps[-1]["samples"] == MAX_STEPS * BATCH
    assert [r["epoch"] for r in steps] == [epoch_at(r["step"]) for r in steps]
    assert [v["step"] for v in vals] == [MAX_STEPS // 2, MAX_STEPS]
    assert all(v["val_samples"] == sum(TEST_ROWS) for v in vals)
    final = out / "checkpoints" / f"step{MAX_STEPS:08d}"
    ranks = [torch.load(final / f"sharebert-rank{r:05d}.pt", weights_only=False) for r in range(WORLD)]
    accumulation = BATCH // (MICRO_BATCH * WORLD)
    assert [r["micro_batches_this_session"] for r in ranks] == [MAX_STEPS * accumulation] * WORLD
    assert ranks[0]["position"] == ranks[1]["position"] and ranks[0]["position"]["epoch"] == final_epoch
    assert not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])  # each rank its own dropout
    assert (out / "model" / "config.json").exists()
