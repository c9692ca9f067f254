"""`sharebert bench-infer`: an ONNX export on a GLUE dev file: size, load time, peak memory, latency, metric.

Torch-free, as a serving process is: onnxruntime, tokenizers and numpy only (docs/deploy.md).
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, file_error
from ..trainer.finetune import glue
from ..trainer.finetune.glue_metrics import compute_metrics, predictions_from_logits
from .config import BenchInferConfig
from .files import INPUT_NAMES, ONNX_FILE, load_tokenizer, open_session, read_deploy_info


def bench_infer(config: BenchInferConfig) -> dict:
    """Predict every example of `data` in batches (each padded to its longest row) and time each batch."""
    info = read_deploy_info(config.folder)
    if info.get("task") != "sequence-classification":
        raise ConfigError(f"{config.folder}: a {info.get('task')} export; bench-infer needs a classifier")
    task = glue.GLUE_TASKS[_task_name(config)]
    if task.num_labels != info["num_labels"]:
        raise ConfigError(f"{config.folder}: {info['num_labels']} outputs, but {task.name} has {task.num_labels}")
    if not config.data.is_file():
        raise file_error(config.data, "file not found")
    split = glue.read_glue_tsv(config.data, task, "validation", task.labelled).head(config.max_examples)
    tokenizer, pad_id = load_tokenizer(config.folder, info["max_seq_length"])
    encoded = glue.encode_split(tokenizer, split)
    start = time.perf_counter()
    session = open_session(config.folder, config.threads)
    load_seconds = time.perf_counter() - start
    logits, seconds = [], []
    for first in range(0, len(encoded), config.batch_size):
        rows = np.arange(first, min(first + config.batch_size, len(encoded)))
        feeds = encoded.padded(rows, pad_id)
        start = time.perf_counter()
        logits.append(session.run(None, {name: feeds[name] for name in INPUT_NAMES})[0])
        seconds.append(time.perf_counter() - start)
    predictions = predictions_from_logits(task, np.concatenate(logits))
    metrics = compute_metrics(task, predictions, split.labels)
    if not task.is_regression:
        metrics = {"accuracy": float(np.mean(predictions == split.labels)), **metrics}
    return {
        "model": str(config.folder / ONNX_FILE),
        "file_mb": (config.folder / ONNX_FILE).stat().st_size / 1e6,
        "quantize": info.get("quantize") or "fp32",
        "task": task.name,
        "examples": len(split),
        "batch_size": config.batch_size,
        "threads": config.threads or "all",
        "load_seconds": load_seconds,
        "latency_ms": {"p50": 1e3 * float(np.percentile(seconds, 50)), "p99": 1e3 * float(np.percentile(seconds, 99))},
        "examples_per_second": len(split) / sum(seconds),
        "peak_rss_mb": peak_rss_mb(),
        "metrics": metrics,
        "predictions": predictions,  # not printed: for comparing exports
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM, which unlike ru_maxrss does not carry over the
    peak of the process that started this one; ru_maxrss elsewhere."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


def _task_name(config: BenchInferConfig) -> str:
    if config.task is not None:
        return glue.resolve_task_names(config.task)[0]
    try:
        return glue.resolve_task_names(config.data.parent.name)[0]
    except ConfigError:
        raise ConfigError(
            f"--data {config.data}: cannot tell the GLUE task from the folder name; pass --task"
        ) from None


def format_report(r: dict) -> str:
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in r["metrics"].items())
    return "\n".join(
        [
            f"model      {r['model']}: {r['file_mb']:.1f} MB ({r['quantize']})",
            f"data       {r['examples']} examples of {r['task']}",
            f"load       {r['load_seconds']:.2f} s",
            f"latency    p50 {r['latency_ms']['p50']:.1f} ms, p99 {r['latency_ms']['p99']:.1f} ms per batch of "
            f"{r['batch_size']} (threads: {r['threads']}); {r['examples_per_second']:.1f} examples/s",
            f"peak RSS   {r['peak_rss_mb']:.0f} MB",
            f"metrics    {metrics}",
        ]
    )
