"""int8 exports keep fp32's predictions on the demo fine-tuning task; `sharebert bench-infer` on them."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from finetune_fixtures import VOCAB_SIZE
from test_finetune_demo_task import write_prepared

from sharebert.cli import main
from sharebert.deploy.bench import bench_infer
from sharebert.deploy.config import BenchInferConfig, OnnxExportConfig
from sharebert.deploy.export import export_onnx
from sharebert.trainer.finetune.demo_task import DemoTaskConfig, build_demo_task
from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM, save_model_folder

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
TINY = ShareBertConfig.from_preset("tiny", vocab_size=VOCAB_SIZE)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo acceptability task (docs/finetune.md) and a tiny model fine-tuned on it from scratch."""
    root = tmp_path_factory.mktemp("demo")
    prepared = write_prepared(root / "prepared", docs_per_shard=(90, 90, 20))
    sizes = {"train": 1000, "dev": 300, "test": 10}
    build_demo_task(DemoTaskConfig(prepared, root / "task", seed=1, dev_fraction=0.3, sizes=sizes))
    save_model_folder(ShareBertForMaskedLM(TINY, seed=0), root / "pretrained", prepared / "vocab.txt")
    argv = ["finetune", "--model_name_or_path", str(root / "pretrained"), "--task_name", "cola", "--data_dir",
            str(root / "task"), "--output_dir", str(root / "run"), "--do_train", "--num_train_epochs", "8",
            "--learning_rate", "3e-3", "--per_device_train_batch_size", "32", "--warmup_steps", "5",
            "--eval_strategy", "no", "-q"]  # fmt: skip
    assert main(argv) == 0
    for quantize in (None, "int8"):
        export_onnx(
            OnnxExportConfig(root / "run" / "cola" / "seed-42" / "model", root / f"onnx-{quantize or 'fp32'}", quantize)
        )
    return root


def test_int8_keeps_the_predictions_of_fp32_on_the_demo_task(demo_run, capsys):
    dev = demo_run / "task" / "CoLA" / "dev.tsv"
    results = {q: bench_infer(BenchInferConfig(demo_run / f"onnx-{q}", dev, batch_size=16)) for q in ("fp32", "int8")}
    fp32, int8 = results["fp32"], results["int8"]
    agreement = float(np.mean(fp32["predictions"] == int8["predictions"]))
    with capsys.disabled():
        print(
            f"\ndemo task dev ({fp32['examples']} examples): fp32 MCC {fp32['metrics']['mcc']:.4f}, "
            f"int8 MCC {int8['metrics']['mcc']:.4f}, same prediction on {agreement:.2%}; "
            f"files {fp32['file_mb']:.3f} / {int8['file_mb']:.3f} MB"
        )
    assert fp32["examples"] == 300 and fp32["metrics"]["mcc"] > 0.8  # the model did learn the task
    assert agreement >= 0.97
    assert abs(fp32["metrics"]["mcc"] - int8["metrics"]["mcc"]) <= 0.02
    assert int8["file_mb"] < fp32["file_mb"]


def test_bench_infer_prints_what_a_deployment_needs(demo_run, capsys):
    dev = demo_run / "task" / "CoLA" / "dev.tsv"
    assert main(["bench-infer", str(demo_run / "onnx-int8"), "--data", str(dev), "--threads", "1"]) == 0
    report = capsys.readouterr().out
    for label in ("MB (int8)", "300 examples of cola", "load", "p50", "p99", "examples/s", "peak RSS", "mcc"):
        assert label in report, report


def test_bench_infer_runs_without_torch(demo_run):
    export, dev = demo_run / "onnx-int8", demo_run / "task" / "CoLA" / "dev.tsv"
    code = (
        "import sys\nfrom sharebert.cli import main\n"
        f"status = main(['bench-infer', {str(export)!r}, '--data', {str(dev)!r}, '--max-examples', '20'])\n"
        "print(status, 'torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=ENV
    )
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stdout + done.stderr[-3000:]
