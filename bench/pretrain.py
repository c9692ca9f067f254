"""End-to-end pretraining throughput next to the model-only step rate, measured in the same run.

Measures, on one device:
  1. the loader alone: micro-batches per second that `train_batches` + the prefetch thread deliver;
  2. model-only: bench/model.py's timing of forward + backward + AdamW on one fixed batch (no data, no DeepSpeed);
  3. end to end: the real `sharebert pretrain` loop (HDF5 loader thread, DeepSpeed step, the per-step
     all-reduce, metrics.jsonl logging), read back from the per-step samples/s in metrics.jsonl.
and prints end-to-end as a fraction of model-only (target: at least 0.95 for Base at micro-batch 250), and
both as TFLOP/s (bench/model.py's analytic count) and fractions of the bf16 and FP8 matmul rates measured in
the same run. --fp8 and --unpad apply to both sides (on the CPU, --fp8 runs emulated for model-only and the
end-to-end loop, which refuses it there, is skipped).
Both sides take one optimizer step per micro-batch by default (--train-batch-size = micro-batch); the
precision is the same (bf16 autocast on a GPU, fp32 on the CPU).

Without --dataset-path, synthetic samples (the tests' generator) are written to a temporary folder.

Examples:
  python bench/pretrain.py                       # GPU: base, micro-batch 250
  python bench/pretrain.py --compile --fp8 --unpad --dataset-path SAMPLES_DIR
  python bench/pretrain.py --device cpu          # tiny preset, a smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the sample generator lives with the tests

from samples_fixture import write_samples  # noqa: E402

from sharebert.cli import build_parser  # noqa: E402
from sharebert.trainer.pretrain import data  # noqa: E402
from sharebert.trainer.pretrain.cli import build_config  # noqa: E402
from sharebert.trainer.pretrain.stage import pretrain  # noqa: E402


def load_model_bench():
    spec = importlib.util.spec_from_file_location("bench_model", ROOT / "bench" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    p.add_argument("--preset", help="default: base on a GPU, tiny on the CPU")
    p.add_argument("--micro-batch", type=int, help="default: 250 on a GPU, 16 on the CPU")
    p.add_argument("--train-batch-size", type=int, help="default: the micro-batch (one step per micro-batch)")
    p.add_argument("--steps", type=int, help="timed steps (default: 30 on a GPU, 10 on the CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default: 5 on a GPU, 2 on the CPU)")
    p.add_argument("--dataset-path", type=Path, help="a SAMPLES_DIR (default: synthetic samples)")
    p.add_argument("--compile", action="store_true", help="torch.compile on both sides")
    p.add_argument(
        "--fp8", nargs="?", const="tensorwise", choices=("tensorwise", "rowwise"), help="FP8 matmuls (recipe)"
    )
    p.add_argument("--unpad", action="store_true", help="the layers on the real tokens only")
    p.add_argument(
        "--pad-fraction",
        type=float,
        default=0.1,
        help="model-only's random batch: fraction of short samples (0.25 gives about the enwiki sample's 10%% padding)",
    )
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    args.preset = args.preset or ("base" if gpu else "tiny")
    args.micro_batch = args.micro_batch or (250 if gpu else 16)
    args.train_batch_size = args.train_batch_size or args.micro_batch
    args.steps = args.steps or (30 if gpu else 10)
    args.warmup = args.warmup or (5 if gpu else 2)
    return args


def synthetic_samples(folder: Path, rows: int, vocab_size: int) -> Path:
    per_file = -(-rows // 4)
    return write_samples(folder, [per_file] * 4, [], seq_len=128, max_pred=20, vocab_size=vocab_size)


def loader_rate(samples: Path, micro_batch: int, batches: int, pin: bool) -> float:
    """Micro-batches per second through the loader and its prefetch thread alone."""
    opened = data.open_training_samples(
        samples, vocab_size=data.formats.read_manifest(samples).vocab_size, max_position_embeddings=10**6
    )
    layout = data.LoaderLayout(seed=0, world_size=1, rank=0, micro_batch_size=micro_batch)
    with data.Prefetcher(lambda: data.train_batches(opened, layout, data.DataPosition(), pin=pin)) as stream:
        next(stream)
        start = time.perf_counter()
        for _ in itertools.islice(stream, batches):
            pass
        return batches / (time.perf_counter() - start)


def model_only_rate(args, bench_model) -> dict:
    """bench/model.py's step timing for sharebert's model, with this run's settings."""
    margs = bench_model.parse_args(
        [
            "--device",
            args.device,
            "--preset",
            args.preset,
            "--batch",
            str(args.micro_batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--no-plain",
            *(["--compile"] if args.compile else []),
            *(["--fp8", args.fp8] if args.fp8 else []),
            *(["--unpad"] if args.unpad else []),
            "--pad-fraction",
            str(args.pad_fraction),
        ]
    )
    cfg = bench_model.ShareBertConfig.from_preset(args.preset)
    device = torch.device(args.device)

    def build():
        model = bench_model.ShareBertForMaskedLM(cfg, seed=0, device=device).train()
        bench_model.apply_options(model, margs, device)
        forward = torch.compile(model) if args.compile else model
        return (lambda **b: forward(**b).loss), model

    result = bench_model.run_one("model-only", build, margs, cfg, device)
    return {
        "samples_per_s": result["samples_per_second"],
        "micro_batch": result["batch"],
        "dtype": margs.dtype,
        "padding": result["padding"],
        "flops_per_sample": result["flops_per_step"] / result["batch"],
        "matmul_size": margs.matmul_size,
    }


def end_to_end_rate(args, samples: Path, out: Path) -> dict:
    """samples/s of the real loop over the timed steps, from metrics.jsonl (one record per step)."""
    flags = (
        f"--dataset_path {samples} --output_dir {out} --preset {args.preset} --max_steps "
        f"{args.warmup + args.steps} --train_batch_size {args.train_batch_size} --train_micro_batch_size_per_gpu "
        f"{args.micro_batch} --log_steps 1 --print_steps 1000000 --checkpoint_steps 1000000 "
        f"--finetune_checkpoint_at_end false {'--compile' if args.compile else ''} "
        f"{f'--fp8 --fp8_recipe {args.fp8}' if args.fp8 else ''} {'--unpad' if args.unpad else ''}"
    )
    if args.device == "cpu":
        flags += " --fp32"
    result = pretrain(build_config(build_parser().parse_args(["pretrain", *shlex.split(flags)])))
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in records if "loss" in r and r["step"] > args.warmup]
    samples_done = sum(args.train_batch_size for _ in timed)
    seconds = sum(args.train_batch_size / r["samples_per_s"] for r in timed)
    return {"samples_per_s": samples_done / seconds, "steps": len(timed), "final_loss": result.loss}


def main(argv=None) -> dict:
    args = parse_args(argv)
    bench_model = load_model_bench()
    vocab = bench_model.ShareBertConfig.from_preset(args.preset).vocab_size
    with tempfile.TemporaryDirectory(prefix="sharebert-bench-") as tmp:
        tmp = Path(tmp)
        rows = (args.warmup + args.steps + 2) * args.train_batch_size
        samples = args.dataset_path or synthetic_samples(tmp / "samples", rows, vocab)
        loader = loader_rate(
            samples, args.micro_batch, min(50, rows // args.micro_batch - 2), pin=args.device == "cuda"
        )
        padding = sample_padding(samples)
        model_only = model_only_rate(args, bench_model)
        if args.device == "cuda":
            torch.cuda.empty_cache()
        device = torch.device(args.device)
        size = model_only["matmul_size"]
        ceilings = {
            "bf16": bench_model.matmul_rate(size, torch.bfloat16 if args.device == "cuda" else torch.float32, device),
            "fp8": bench_model.fp8_matmul_rate(size, device),
        }
        fp8_refused = args.fp8 and ceilings["fp8"] is None
        e2e = None if fp8_refused else end_to_end_rate(args, samples, tmp / "run")
    ratio = None if e2e is None else e2e["samples_per_s"] / model_only["samples_per_s"]
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"device: {device_name}, preset {args.preset}, micro-batch {args.micro_batch}, "
        f"train batch {args.train_batch_size}, {model_only['dtype']}, compile: {'yes' if args.compile else 'no'}, "
        f"fp8: {args.fp8 or 'no'}, unpad: {'yes' if args.unpad else 'no'}"
    )
    print(f"padding: {padding:.1%} of the samples' tokens, {model_only['padding']:.1%} of model-only's batch")
    print(f"loader alone (1 thread):        {loader * args.micro_batch:>10,.1f} samples/s")
    print(
        f"model-only step (bench/model):  {model_only['samples_per_s']:>10,.1f} samples/s"
        + rates(model_only["samples_per_s"], model_only["flops_per_sample"], ceilings)
        + (
            f" (micro-batch fell to {model_only['micro_batch']})"
            if model_only["micro_batch"] != args.micro_batch
            else ""
        )
    )
    if e2e is None:
        print("end-to-end pretrain loop:       skipped (`sharebert pretrain --fp8` needs FP8 tensor cores)")
    else:
        print(
            f"end-to-end pretrain loop:       {e2e['samples_per_s']:>10,.1f} samples/s"
            + rates(e2e["samples_per_s"], model_only["flops_per_sample"], ceilings)
            + f" over {e2e['steps']} steps = {ratio:.3f} of model-only (target >= 0.95)"
        )
    summary = {
        "device": device_name,
        "preset": args.preset,
        "fp8": args.fp8,
        "unpad": args.unpad,
        "samples_padding": padding,
        "matmul_tflops": ceilings["bf16"] / 1e12,
        "fp8_matmul_tflops": None if ceilings["fp8"] is None else ceilings["fp8"] / 1e12,
        "micro_batch": args.micro_batch,
        "train_batch_size": args.train_batch_size,
        "dtype": model_only["dtype"],
        "compile": args.compile,
        "loader_samples_per_s": loader * args.micro_batch,
        "model_only_samples_per_s": model_only["samples_per_s"],
        "flops_per_sample": model_only["flops_per_sample"],
        "end_to_end_samples_per_s": None if e2e is None else e2e["samples_per_s"],
        "end_to_end_fraction": ratio,
    }
    if args.json:
        print(json.dumps(summary))
    return summary


def rates(samples_per_s: float, flops_per_sample: float, ceilings: dict) -> str:
    """ ", 123 TFLOP/s = 0.62 of bf16's matmul rate, 0.31 of FP8's" (FP8's where the device has it)."""
    flops = samples_per_s * flops_per_sample
    text = f", {flops / 1e12:,.4g} TFLOP/s = {flops / ceilings['bf16']:.2f} of the matmul rate"
    return text + ("" if ceilings["fp8"] is None else f", {flops / ceilings['fp8']:.2f} of FP8's")


def sample_padding(samples: Path) -> float:
    """The fraction of the train samples' token slots that are padding (bench/padding.py)."""
    spec = importlib.util.spec_from_file_location("bench_padding", ROOT / "bench" / "padding.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sample_padding(samples)["padding_fraction"]


if __name__ == "__main__":
    main()
