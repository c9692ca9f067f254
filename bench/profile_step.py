"""The top of a torch.profiler profile of ShareBERT training steps (bench/model.py's step and options).

Profiles --steps steps (after --warmup untimed ones) of forward + backward + AdamW on a random pretraining
batch and prints the operators taking the most time (self CUDA time on a GPU, self CPU time on the CPU);
--trace FILE also writes a Chrome trace (chrome://tracing, https://ui.perfetto.dev).

Examples:
  python bench/profile_step.py --compile --fp8 --unpad            # GPU: Base, micro-batch 250, bf16
  python bench/profile_step.py --device cpu --steps 1             # tiny preset, a smoke test
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]


def load_model_bench():
    spec = importlib.util.spec_from_file_location("bench_model", ROOT / "bench" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> str:
    bench = load_model_bench()
    argv = list(sys.argv[1:] if argv is None else argv)
    top, trace = 25, None
    if "--top" in argv:
        i = argv.index("--top")
        top = int(argv[i + 1])
        del argv[i : i + 2]
    if "--trace" in argv:
        i = argv.index("--trace")
        trace = argv[i + 1]
        del argv[i : i + 2]
    args = bench.parse_args(argv)
    device = torch.device(args.device)
    overrides = {"vocab_size": args.vocab_size} if args.vocab_size else {}
    cfg = bench.ShareBertConfig.from_preset(args.preset, gradient_checkpointing=args.checkpointing, **overrides)
    model = bench.ShareBertForMaskedLM(cfg, seed=0, device=device).train()
    bench.apply_options(model, args, device)
    forward = torch.compile(model, mode=args.compile_mode) if args.compile else model
    batch = bench.random_batch(cfg, args.batch, args.seq_len, args.masked, args.pad_fraction, device)
    optimizer = bench.make_optimizer(model, device)
    dtype = bench.DTYPES[args.dtype]

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = forward(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    bench.synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        bench.synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=top, max_name_column_width=60)
    print(
        f"ShareBERT {args.preset}, micro-batch {args.batch}, seq {args.seq_len}, autocast {args.dtype}, "
        f"{bench.variant(args)}: {args.steps} profiled steps, top {top} by {sort_by}"
    )
    print(table)
    if trace:
        prof.export_chrome_trace(trace)
        print(f"trace: {trace}")
    return table


if __name__ == "__main__":
    main()
