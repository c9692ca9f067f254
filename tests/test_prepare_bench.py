"""Smoke test of bench/prepare.py on a tiny dump (the real measurement runs on >= 30 MB of XML)."""

from __future__ import annotations

import bz2
import json
import subprocess
import sys
from pathlib import Path

from prepare_fixtures import article, page, write_dump, write_vocab

from sharebert.pipeline.prepare.sources.wiki import stream_starts

BENCH = Path(__file__).resolve().parents[1] / "bench" / "prepare.py"


def test_bench_builds_a_bigger_dump_and_reports(tmp_path):
    dump = write_dump(tmp_path / "tiny.xml.bz2", [page(f"River {n}", 10 + n, article(n)) for n in range(12)])
    vocab = write_vocab(tmp_path / "vocab.txt")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--dump", str(dump), "--vocab", str(vocab), "--target-mb", "0.1",
         "--workers", "1,2", "--repeat", "1", "--train-shards", "2", "--test-shards", "1", "--work-dir", str(tmp_path / "work"),
         "--json", str(report)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "MB/s of XML" in done.stdout and "speed-up 2 workers vs 1" in done.stdout
    summary = json.loads(report.read_text())
    assert summary["xml_mb"] >= 0.1 and summary["copies"] > 1
    assert [r["workers"] for r in summary["runs"]] == [1, 2]
    assert summary["identical_output"] is True
    assert "markup leaked into the text" in done.stdout
    assert summary["markup_leaks"]["text_mb"] > 0 and set(summary["markup_leaks"]["counts"].values()) == {0}
    for r in summary["runs"]:
        assert r["seconds"] > 0 and r["tokens"] > 0 and r["documents"] == 12 * summary["copies"]
    repeated = bz2.BZ2File(tmp_path / "work" / "enwiki-repeated.xml.bz2").read().decode()
    assert repeated.count("<page>") == 12 * summary["copies"] and "River 3 (copy 1)" in repeated
    with open(tmp_path / "work" / "enwiki-repeated.xml.bz2", "rb") as f:  # header, 100 pages, ..., tail
        assert len(list(stream_starts(f))) == 1 + -(-12 * summary["copies"] // 100)
    assert "multistream" in summary["layout"]
