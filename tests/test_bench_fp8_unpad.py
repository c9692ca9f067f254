"""CPU smoke runs of the FP8 / unpadded benchmarks (bench/model.py, padding.py, profile_step.py, learning.py), so
that a GPU run of bench/gpu_check.sh does not fail on a typo."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from samples_fixture import write_samples

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--batch", "4", "--seq-len", "32", "--masked", "4", "--steps", "1", "--warmup", "1"]
TINY += ["--matmul-size", "64", "--pad-fraction", "0.5", "--vocab-size", "1000"]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_benchmark_with_fp8_and_unpad(capsys):
    pytest.importorskip("torchao.float8")
    summary = load("model").main([*TINY, "--fp8", "rowwise", "--unpad", "--no-plain"])
    out = capsys.readouterr().out
    assert "sharebert (eager, fp8 rowwise, unpadded)" in out
    assert "FP8 matmul ceiling (64x64, e4m3, per-tensor scales): none (no FP8 tensor cores)" in out
    result = summary["sharebert"]
    assert (summary["fp8"], summary["unpad"], summary["fp8_matmul_tflops"]) == ("rowwise", True, None)
    assert result["samples_per_second"] > 0 and 0 < result["padding"] < 1 and np.isfinite(result["final_loss"])


def test_padding_benchmark_measures_the_loader_batches(tmp_path, capsys):
    samples = write_samples(tmp_path / "s", train_rows=[40, 24], test_rows=[8])
    summary = load("padding").main([str(samples), "--micro-batch", "16", "--json"])
    assert summary["micro_batches"] == 4 and summary["samples"] == 64
    # write_samples draws lengths uniformly in [16, 32]: about a quarter of the 32 slots are padding.
    assert 0.15 < summary["padding_fraction"] < 0.35
    assert summary["batch_padding_min"] <= summary["batch_padding_mean"] <= summary["batch_padding_max"]
    assert abs(summary["batch_padding_mean"] - summary["padding_fraction"]) < 0.02  # all 64 rows in 4 batches
    assert "padding per micro-batch: mean" in capsys.readouterr().out


def test_profile_prints_the_top_operators(tmp_path, capsys):
    trace = tmp_path / "trace.json"
    table = load("profile_step").main([*TINY, "--unpad", "--top", "5", "--trace", str(trace)])
    assert "aten::" in table and len([line for line in table.splitlines() if "aten::" in line]) <= 5
    assert trace.stat().st_size > 0
    assert "top 5 by self_cpu_time_total" in capsys.readouterr().out


def test_learning_comparison_verdicts():
    learning = load("learning")
    base = {"losses": [3.0] * 12, "val_loss": 2.0, "val_mlm_acc": 0.50}
    close = {"losses": [3.02] * 12, "val_loss": 2.01, "val_mlm_acc": 0.499}
    far = {"losses": [3.2] * 12, "val_loss": 2.01, "val_mlm_acc": 0.40}
    assert all(c["within"] for c in learning.compare(base, close, 0.01).values())
    verdicts = learning.compare(base, far, 0.01)
    assert not verdicts["train_loss_last10"]["within"] and not verdicts["val_mlm_acc"]["within"]
    assert verdicts["val_loss"]["within"]
