"""CPU inference: PyTorch eager fp32 vs ONNX fp32 vs ONNX int8 for ShareBERT classifiers (docs/deploy.md).

For each preset a classifier (2 labels, V = 30522, random weights: speed and size do not depend on the
values) is saved as a model folder and exported with `sharebert export onnx` in the variants each runtime
needs. Each cell (runtime, threads, batch) runs in a process of its own, so its peak RSS is its own: it
loads the model (timed), makes `--warmup` calls, then timed calls until `--min-seconds` have passed and at
least `--min-calls` were made. Inputs: random token ids, `--seq` tokens, no padding. p50/p99 are over the
timed calls (with few calls, p99 is about the slowest one). On a machine shared with other work, wall
time includes their share of the cores; the process's CPU time per call (CPU p50) does not, and on one
thread it is the call's own cost.

Runtimes: torch (ShareBERT, eager, inference mode); fp32 and int8 (onnxruntime on the CPU, the exports'
defaults), fp32-factors and int8-factors (the other placement of the shared matrices, docs/deploy.md);
bert-base-torch (transformers' BertForSequenceClassification with BERT Base's shape, random weights, eager:
the compute BERT Base needs, for comparison). File sizes are printed for every preset of --presets and
--sizes-only. FLOPs per sequence are counted analytically (matmuls; a multiply-add is 2 FLOPs).

Examples:
  python bench/infer.py                                      # tiny small base, batch 1 and 32, 1 thread and all
  python bench/infer.py --presets small --batches 1 --threads 1 --runtimes fp32 fp32-factors int8 int8-factors
  python bench/infer.py --presets --sizes-only small base large --json sizes.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCAB_SIZE = 30522
EXPORTS = {  # runtime name -> OnnxExportConfig settings; fp32 and int8 are `sharebert export onnx`'s
    "fp32": {},
    "int8": {"quantize": "int8"},
    "fp32-factors": {"carved": "factors"},
    "int8-factors": {"quantize": "int8", "carved": "factors"},
}
RUNTIMES = ("torch", *EXPORTS, "bert-base-torch")
BERT_BASE = dict(hidden=768, intermediate=3072, layers=12, vocab=30522, positions=512)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="*", default=["tiny", "small", "base"])
    p.add_argument("--sizes-only", nargs="*", default=[], metavar="PRESET", help="export and report sizes only")
    p.add_argument("--runtimes", nargs="+", default=["torch", "fp32", "int8"], choices=RUNTIMES)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--threads", nargs="+", default=["1", "all"], help="1, all, or any count")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--min-calls", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=5.0)
    p.add_argument("--work-dir", type=Path, help="keep the model folders and exports here")
    p.add_argument("--json", type=Path, help="also write the measurements here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = {"machine": machine(), "sizes": {}, "flops": flops_table(args.seq), "cells": []}
        for preset in dict.fromkeys(args.presets + args.sizes_only):
            needed = {"fp32", "int8"} if preset in args.sizes_only else {r for r in args.runtimes if r in EXPORTS}
            results["sizes"][preset] = prepare(work, preset, needed)
        for preset in args.presets:
            for runtime in args.runtimes:
                if runtime == "bert-base-torch" and preset != args.presets[0]:
                    continue  # one preset-independent row
                for threads in args.threads:
                    for batch in args.batches:
                        cell = run_cell(args, work, preset, runtime, threads, batch)
                        results["cells"].append(cell)
                        print(format_cell(cell), flush=True)
        print(format_sizes(results["sizes"]))
        print(format_flops(results["flops"]))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def machine() -> dict:
    return {"cpus": os.cpu_count(), "load_average": os.getloadavg()}


# ---------------------------------------------------------------- models and exports (parent process)
def prepare(work: Path, preset: str, exports: set[str]) -> dict:
    """Save the preset's classifier once, export what is needed; return parameter counts and file sizes (MB)."""
    from sharebert.deploy.config import OnnxExportConfig
    from sharebert.deploy.export import export_onnx
    from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForSequenceClassification, save_model_folder

    folder = work / preset / "model"
    if not (folder / "config.json").exists():
        model = ShareBertForSequenceClassification(ShareBertConfig.from_preset(preset, vocab_size=VOCAB_SIZE), seed=0)
        save_model_folder(model, folder, write_vocab(work / "vocab.txt"))
    sizes = {"model.safetensors": (folder / "model.safetensors").stat().st_size / 1e6}
    for name in sorted(exports):
        out = work / preset / name
        if not (out / "deploy.json").exists():
            start = time.perf_counter()
            export_onnx(OnnxExportConfig(folder, out, **EXPORTS[name]))
            print(f"exported {preset} {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        sizes[name] = (out / "model.onnx").stat().st_size / 1e6
    return sizes


def write_vocab(path: Path) -> Path:
    """A vocab.txt of VOCAB_SIZE tokens (the specials, then placeholders): only its size matters here."""
    if not path.exists():
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        path.write_text("\n".join(specials + [f"w{i}" for i in range(VOCAB_SIZE - len(specials))]) + "\n")
    return path


def run_cell(args, work: Path, preset: str, runtime: str, threads: str, batch: int) -> dict:
    spec = {
        "preset": preset,
        "runtime": runtime,
        "threads": os.cpu_count() if threads == "all" else int(threads),
        "batch": batch,
        "seq": args.seq,
        "warmup": args.warmup,
        "min_calls": args.min_calls,
        "min_seconds": args.min_seconds,
        "folder": str(work / preset / ("model" if runtime in ("torch", "bert-base-torch") else runtime)),
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{runtime} {preset} failed:\n{done.stderr[-3000:]}")
    return {**spec, **json.loads(done.stdout.strip().splitlines()[-1])}


# ---------------------------------------------------------------- one cell (child process)
def measure(spec: dict) -> dict:
    from sharebert.deploy.bench import peak_rss_mb

    __import__("onnxruntime" if spec["runtime"] in EXPORTS else "torch")  # the import is not the model's load
    start, cpu = time.perf_counter(), time.process_time()
    call = load_runtime(spec)
    load_seconds, load_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    for _ in range(spec["warmup"]):
        call()
    times, cpu_times, begin = [], [], time.perf_counter()
    while len(times) < spec["min_calls"] or time.perf_counter() - begin < spec["min_seconds"]:
        t, cpu = time.perf_counter(), time.process_time()
        call()
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - cpu)
    return {
        "load_seconds": load_seconds,
        "load_cpu_seconds": load_cpu_seconds,
        "calls": len(times),
        "p50_ms": 1e3 * float(np.percentile(times, 50)),
        "p99_ms": 1e3 * float(np.percentile(times, 99)),
        # CPU time of the process per call: on one thread, the call's cost without other processes' share
        "cpu_p50_ms": 1e3 * float(np.percentile(cpu_times, 50)),
        "sequences_per_second": spec["batch"] * len(times) / sum(times),
        "peak_rss_mb": peak_rss_mb(),
        "load_average": os.getloadavg()[0],
    }


def load_runtime(spec: dict):
    """A function making one call on a fixed random batch, after loading the model."""
    rng = np.random.default_rng(0)
    ids = rng.integers(5, VOCAB_SIZE, (spec["batch"], spec["seq"]), dtype=np.int64)
    feeds = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}
    if spec["runtime"] in EXPORTS:
        from sharebert.deploy.files import open_session

        session = open_session(Path(spec["folder"]), spec["threads"])
        return lambda: session.run(None, feeds)
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["runtime"] == "torch":
        from sharebert.trainer.model.modeling import load_model_folder

        model = load_model_folder(spec["folder"], "sequence-classification").eval()
    else:
        from transformers import BertConfig, BertForSequenceClassification

        model = BertForSequenceClassification(BertConfig()).eval()
    inputs = {name: torch.from_numpy(value) for name, value in feeds.items()}

    def call():
        with torch.inference_mode():
            return model(**inputs).logits

    return call


# ---------------------------------------------------------------- reporting
def flops_table(seq: int) -> dict:
    """GFLOP per sequence of `seq` tokens (forward, matmuls) for each preset's classifier and BERT Base."""
    from sharebert.trainer.model.config import ShareBertConfig

    table = {}
    for preset in ("tiny", "small", "base", "large"):
        c = ShareBertConfig.from_preset(preset, vocab_size=VOCAB_SIZE)
        h, i, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
        per_token = layers * (2 * (4 * h * h + 2 * h * i) + 4 * seq * h) + 2 * c.factor_size * h
        table[preset] = (seq * per_token + 2 * h * h) / 1e9
    h, i, layers = BERT_BASE["hidden"], BERT_BASE["intermediate"], BERT_BASE["layers"]
    table["bert-base"] = (seq * layers * (2 * (4 * h * h + 2 * h * i) + 4 * seq * h) + 2 * h * h) / 1e9
    return table


def format_cell(c: dict) -> str:
    return (
        f"{c['preset']:<6} {c['runtime']:<18} threads {c['threads']:>2}  batch {c['batch']:>3}  "
        f"p50 {c['p50_ms']:>10.1f} ms  p99 {c['p99_ms']:>10.1f} ms  {c['sequences_per_second']:>8.2f} seq/s  "
        f"CPU p50 {c['cpu_p50_ms']:>10.1f} ms  "
        f"({c['calls']} calls)  load {c['load_seconds']:.2f} s  peak RSS {c['peak_rss_mb']:.0f} MB  "
        f"(load average {c['load_average']:.1f})"
    )


def format_sizes(sizes: dict) -> str:
    lines = ["", "file sizes (MB):"]
    for preset, files in sizes.items():
        lines.append(f"  {preset:<6} " + "  ".join(f"{name} {mb:.1f}" for name, mb in files.items()))
    return "\n".join(lines)


def format_flops(flops: dict) -> str:
    return "GFLOP per sequence (forward): " + ", ".join(f"{name} {value:.1f}" for name, value in flops.items())


if __name__ == "__main__":
    sys.exit(main())
