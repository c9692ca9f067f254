"""`sharebert model` and the model benchmark's CPU smoke run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from sharebert.cli import main
from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForSequenceClassification, save_model_folder

ROOT = Path(__file__).resolve().parents[1]


def test_preset_summary(capsys):
    assert main(["model", "--preset", "base"]) == 0
    out = capsys.readouterr().out
    assert "encoder (no heads)" in out and "13,844,992" in out and "80,585,018" in out
    assert "(12 x 22,528)" in out and "1,240 of 2,048 columns (g=138, gf=275)" in out


def test_preset_with_overrides_as_json(capsys):
    assert main(["model", "--preset", "small", "--set", "num_hidden_layers=6", "--set", "nsp=true", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["num_hidden_layers"] == 6
    assert summary["encoder_parameters"] == 4_982_272 - 6 * 22_528
    assert summary["heads"] == ["MLM", "NSP"] and summary["components"]["NSP head"] == 2 * 2048 + 2


def test_folder_summary(tmp_path, capsys):
    model = ShareBertForSequenceClassification(ShareBertConfig.from_preset("tiny", vocab_size=1000, num_labels=3))
    save_model_folder(model, tmp_path, None)
    assert main(["model", "--folder", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["heads"] == ["classifier"] and summary["components"]["classifier"] == 3 * 64 + 3
    assert summary["total_parameters"] == model.num_parameters()


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    assert main(["model", "--preset", "base", "--set", "hidden_size=2040"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sharebert model: error: hidden_size=2040 is not divisible by num_attention_heads=16"
    assert main(["model", "--folder", str(tmp_path)]) == 2
    assert "config.json: file not found" in capsys.readouterr().err


def test_benchmark_runs_on_the_cpu(capsys):
    spec = importlib.util.spec_from_file_location("bench_model", ROOT / "bench" / "model.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summary = bench.main(
        [
            "--device",
            "cpu",
            "--batch",
            "2",
            "--seq-len",
            "32",
            "--masked",
            "4",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--matmul-size",
            "64",
            "--pad-fraction",
            "0.5",
            "--vocab-size",
            "1000",
        ]
    )
    out = capsys.readouterr().out
    assert "speed-up over the plain implementation" in out
    for name in ("sharebert", "plain"):
        assert summary[name]["samples_per_second"] > 0 and summary[name]["batch"] == 2
    # FLOPs formula: 2 layers of 64-wide attention + FFN, factor path, 43 columns of E, 8 mask slots.
    layer = 2 * (4 * 64 * 64 + 2 * 64 * 128) + 4 * 32 * 64
    forward = 64 * (2 * layer + 2 * 32 * 64) + 2 * 1000 * 32 * 43 + 8 * 2 * (64 * 64 + 64 * 1000)
    assert summary["sharebert"]["flops_per_step"] == 3 * forward
