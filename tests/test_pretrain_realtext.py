"""Real text end to end on the CPU: enwiki -> prepare -> mask -> pretrain; the masked-LM loss falls clearly.

Without the enwiki sample (../shared absent) the same check runs on generated samples.
"""

from __future__ import annotations

import json
import math
import shlex

import pytest
from conftest import BERT_VOCAB, ENWIKI_SAMPLE
from samples_fixture import write_samples

from sharebert.cli import main

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def real_text_samples(tmp_path):
    prepared, samples = tmp_path / "prepared", tmp_path / "samples"
    assert (
        main(
            [
                "prepare",
                "--wiki",
                str(ENWIKI_SAMPLE),
                "--vocab",
                str(BERT_VOCAB),
                "-o",
                str(prepared),
                "--num-train-shards",
                "4",
                "--num-test-shards",
                "1",
                "--workers",
                "1",
                "-q",
            ]
        )
        == 0
    )
    assert main(["mask", str(prepared), "-o", str(samples), "--dup-factor", "2", "--workers", "1", "-q"]) == 0
    return samples, "--tokenizer_name bert-base-uncased"


def test_the_loss_falls_clearly_on_real_text(tmp_path):
    if ENWIKI_SAMPLE.exists() and BERT_VOCAB.exists():
        samples, extra = real_text_samples(tmp_path)
    else:
        samples, extra = write_samples(tmp_path / "samples", [1500, 1500], [300], seq_len=64, max_pred=10), ""
    out = tmp_path / "run"
    status = main(
        [
            "pretrain",
            "--dataset_path",
            str(samples),
            "--output_dir",
            str(out),
            "--preset",
            "tiny",
            "--train_batch_size",
            "16",
            "--train_micro_batch_size_per_gpu",
            "16",
            "--max_steps",
            "100",
            "--log_steps",
            "5",
            "--validation_steps",
            "100",
            "--checkpoint_steps",
            "1000",
            "-q",
            *shlex.split(extra),
        ]
    )
    assert status == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    vocab_size = json.loads((out / "model" / "config.json").read_text())["vocab_size"]
    assert losses[0] > math.log(vocab_size) - 0.5  # starts near chance
    first, last = sum(losses[:2]) / 2, sum(losses[-4:]) / 4
    assert last < first - 1.0, losses
    validation = [r for r in records if "val_loss" in r][-1]
    assert validation["val_loss"] < math.log(vocab_size) - 1.0 and validation["val_mlm_acc"] > 0.0
