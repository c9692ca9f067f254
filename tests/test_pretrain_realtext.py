"""Text end to end on the CPU: a wiki dump -> prepare -> mask -> pretrain; the masked-LM loss falls clearly.

The dump is the generated enwiki-style one (tests/wikidump.py): prose under real markup, cleaned,
segmented and tokenized by `prepare` with a WordPiece vocab trained on it (a vocab of under 2,000 pieces
keeps the MLM head cheap), then masked by `mask` into sequences of 64 tokens (attention, the largest cost of a
tiny model's step on the CPU, takes a quarter of what 128 tokens take).
"""

from __future__ import annotations

import json
import math

import pytest
from samples_fixture import pretrain_argv

from sharebert.cli import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def wiki_samples(dump, vocab, tmp_path):
    prepared, samples = tmp_path / "prepared", tmp_path / "samples"
    prepare = ["prepare", "--wiki", str(dump), "--vocab", str(vocab), "-o", str(prepared), "-q"]
    assert main([*prepare, "--num-train-shards", "4", "--num-test-shards", "1", "--workers", "1"]) == 0
    mask = ["mask", str(prepared), "-o", str(samples), "--dup-factor", "2", "--max-seq-length", "64", "-q"]
    assert main([*mask, "--workers", "1"]) == 0
    return samples


def test_the_loss_falls_clearly_on_real_text(tmp_path, wiki_dump, wiki_vocab):
    samples = wiki_samples(wiki_dump.path, wiki_vocab, tmp_path)
    out = tmp_path / "run"
    flags = (
        "--preset tiny --train_batch_size 16 --train_micro_batch_size_per_gpu 16 --max_steps 100 --log_steps 5"
        " --validation_steps 100 --checkpoint_steps 1000 -q"
    )
    status = main(pretrain_argv(samples, out, flags) + ["--tokenizer_name", str(wiki_vocab)])
    assert status == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    vocab_size = json.loads((out / "model" / "config.json").read_text())["vocab_size"]
    assert losses[0] > math.log(vocab_size) - 0.5  # starts near chance
    first, last = sum(losses[:2]) / 2, sum(losses[-4:]) / 4
    assert last < first - 1.0, losses
    validation = [r for r in records if "val_loss" in r][-1]
    assert validation["val_loss"] < math.log(vocab_size) - 1.0 and validation["val_mlm_acc"] > 0.0
