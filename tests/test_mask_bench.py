"""Smoke test of bench/mask.py on a generated enwiki-style dump, at a small size (the measurement runs on >= 30 MB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "mask.py"


def test_bench_measures_mask_and_the_chain(tmp_path, wiki_dump, wiki_vocab):
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--dump", str(wiki_dump.path), "--vocab", str(wiki_vocab), "--target-mb", "0.5",
         "--dup-factor", "2", "--repeat", "1", "--train-shards", "2", "--work-dir", str(tmp_path / "work"), "--json", str(report)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "samples/s" in done.stdout and "the reference chain" in done.stdout
    summary = json.loads(report.read_text())
    assert summary["same_bytes"] is True and summary["chain_samples_per_s"] > 0
    assert summary["mask"]["1"]["samples"] == summary["mask"]["2"]["samples"] > 0
