"""Time a full ShareBERT pretraining step (forward, backward, AdamW step) on random tokens.

For the chosen preset it measures, in one run:
  * the rate of a plain bf16 N x N matmul (N = 8192 on a GPU), the ceiling the model is compared with, and on
    GPUs with FP8 tensor cores the rate of the same matmul in FP8 (torch._scaled_mm, per-tensor scales);
  * sharebert's ShareBertForMaskedLM (autocast, fp32 master weights, fused AdamW; optionally torch.compile,
    --fp8: the shared layers' matmuls in FP8 with torchao, emulated in fp32 on the CPU; --unpad: the layers
    on the real tokens only);
  * the plain implementation of the model's definition (tests/reference_sharebert.py) in eager mode, same settings;
and prints samples/s, achieved TFLOP/s, the fraction of the matmul rate, and the speed-up over the plain one.

FLOPs of one step are counted analytically (matmuls only; a multiply-add is 2 FLOPs; the backward pass
is counted as twice the forward pass, so step = 3 x forward):
  per token and layer   2 * (4*H*H + 2*H*I)   q, k, v and output projections, the two feed-forward matmuls
                      + 4 * S * H             attention scores (q k^T) and probabilities @ v
  per token             2 * F * H             the input path's factor_linear
  per step              2 * V * F * c         the c = 5g + 2gf columns of the virtual matrix E that are used
  per mask slot         2 * (H*H + H*V)       MLM transform and decoder, for all B*M slots (static shapes)
Both implementations are credited with these same useful FLOPs, so the FLOP rates compare like samples/s
(with --unpad too: the padded tokens' FLOPs are counted as if computed).
The batch is built once and reused, so data loading is not timed.

Examples:
  python bench/model.py                                  # GPU: base, micro-batch 250, bf16 autocast
  python bench/model.py --compile --preset small
  python bench/model.py --compile --fp8 --unpad --no-plain
  python bench/model.py --device cpu                     # tiny preset, smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the plain implementation lives with the tests
sys.path.insert(0, str(ROOT))

from reference_sharebert import PlainMaskedLM  # noqa: E402

from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--preset", help="tiny, small, base, large (default: base on a GPU, tiny on the CPU)")
    p.add_argument("--vocab-size", type=int, help="override the preset's vocab_size (30522)")
    p.add_argument("--batch", type=int, help="micro-batch (default: 250 on a GPU, 8 on the CPU); halved on OOM")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--masked", type=int, default=20, help="mask slots per sample (max_predictions_per_seq)")
    p.add_argument(
        "--pad-fraction",
        type=float,
        default=0.1,
        help="fraction of samples shorter than --seq-len (the data's short_seq_prob); 0 drops the mask",
    )
    p.add_argument("--steps", type=int, help="timed steps (default: 20 on a GPU, 2 on the CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default: 5 on a GPU, 1 on the CPU)")
    p.add_argument(
        "--dtype", choices=DTYPES, help="autocast dtype, weights stay fp32 (default: bf16 on a GPU, fp32 on the CPU)"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile sharebert's model")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing in sharebert's model")
    p.add_argument(
        "--fp8",
        nargs="?",
        const="tensorwise",
        choices=("tensorwise", "rowwise"),
        help="the shared layers' matmuls in FP8 (torchao; recipe, default tensorwise); emulated on the CPU",
    )
    p.add_argument("--unpad", action="store_true", help="sharebert's layers on the real tokens only")
    p.add_argument("--no-plain", action="store_true", help="skip the plain implementation")
    p.add_argument("--matmul-size", type=int, help="N of the N x N matmul ceiling (default 8192 GPU, 512 CPU)")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    defaults = dict(
        preset="base" if gpu else "tiny",
        batch=250 if gpu else 8,
        dtype="bf16" if gpu else "fp32",
        steps=20 if gpu else 2,
        warmup=5 if gpu else 1,
        matmul_size=8192 if gpu else 512,
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def step_flops(cfg: ShareBertConfig, batch: int, seq_len: int, masked: int) -> float:
    """Analytic FLOPs of one training step (see the module docstring)."""
    V, F, H, I, L = (cfg.vocab_size, cfg.factor_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers)
    tokens = batch * seq_len
    layer = 2 * (4 * H * H + 2 * H * I) + 4 * seq_len * H
    forward = (
        tokens * (L * layer + 2 * F * H)
        + 2 * V * F * cfg.carve_layout().used_columns
        + batch * masked * 2 * (H * H + H * V)
    )
    return 3.0 * forward


def fp8_matmul_rate(n: int, device: torch.device, repeats: int = 20) -> float | None:
    """FLOP/s of an n x n x n FP8 (e4m3) matmul with per-tensor scales and bf16 output; None without FP8 tensor
    cores (the CPU, GPUs older than compute capability 8.9)."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        return None
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen).to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device=device, generator=gen).to(torch.float8_e4m3fn).t()  # column-major, as required
    scale = torch.ones((), device=device)

    def mm():
        return torch._scaled_mm(a, b, scale_a=scale, scale_b=scale, out_dtype=torch.bfloat16)

    for _ in range(3):
        mm()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        mm()
    synchronize(device)
    return 2.0 * n**3 * repeats / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(n: int, dtype: torch.dtype, device: torch.device, repeats: int = 20) -> float:
    """FLOP/s of a plain n x n x n matmul."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2.0 * n**3 * repeats / (time.perf_counter() - start)


def random_batch(
    cfg: ShareBertConfig,
    batch: int,
    seq_len: int,
    masked: int,
    pad_fraction: float,
    device: torch.device,
    seed: int = 0,
) -> dict:
    """Pretraining-shaped random inputs: [CLS] tokens [SEP] [PAD]..., two segments, M mask slots."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.full((batch,), seq_len)
    short = torch.rand(batch, generator=gen) < pad_fraction
    lengths[short] = torch.randint(masked + 3, seq_len + 1, (int(short.sum()),), generator=gen)
    columns = torch.arange(seq_len)
    real = columns[None, :] < lengths[:, None]
    input_ids = torch.randint(5, cfg.vocab_size, (batch, seq_len), generator=gen).masked_fill(~real, 0)
    token_type_ids = ((columns[None, :] >= lengths[:, None] // 2) & real).long()
    # M distinct positions in 1 .. length-2 per sample (never [CLS] / [SEP]).
    not_maskable = (columns == 0) | (columns[None, :] >= lengths[:, None] - 1)
    scores = torch.rand(batch, seq_len, generator=gen).masked_fill(not_maskable, 2.0)
    positions = scores.argsort(dim=1)[:, :masked].sort(dim=1).values
    labels = torch.randint(5, cfg.vocab_size, (batch, masked), generator=gen)
    out = dict(input_ids=input_ids, token_type_ids=token_type_ids, masked_lm_positions=positions, labels=labels)
    if pad_fraction > 0:
        out["attention_mask"] = real.long()
    return {k: v.to(device) for k, v in out.items()}


def make_optimizer(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, **fused)


def time_training(forward, params_model, batch: dict, args, device: torch.device) -> dict:
    """Seconds per step of forward + backward + AdamW, after warm-up steps."""
    dtype = DTYPES[args.dtype]
    optimizer = make_optimizer(params_model, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = forward(**batch)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for _ in range(args.warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step().detach()
    synchronize(device)
    seconds = (time.perf_counter() - start) / args.steps
    return {"step_seconds": seconds, "final_loss": loss.item()}


def run_one(name: str, build, args, cfg: ShareBertConfig, device: torch.device) -> dict:
    """Time one implementation, halving the micro-batch while it runs out of GPU memory."""
    batch_size = args.batch
    while True:
        try:
            forward, params_model = build()
            batch = random_batch(cfg, batch_size, args.seq_len, args.masked, args.pad_fraction, device)
            result = time_training(forward, params_model, batch, args, device)
            break
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise
            batch_size //= 2
            print(f"{name}: out of GPU memory, retrying with micro-batch {batch_size}", file=sys.stderr)
            forward = params_model = batch = None
            torch.cuda.empty_cache()
    flops = step_flops(cfg, batch_size, args.seq_len, args.masked)
    mask = batch.get("attention_mask")
    result.update(
        batch=batch_size,
        padding=0.0 if mask is None else 1.0 - mask.float().mean().item(),
        samples_per_second=batch_size / result["step_seconds"],
        tflops=flops / result["step_seconds"] / 1e12,
        flops_per_step=flops,
    )
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    overrides = {"vocab_size": args.vocab_size} if args.vocab_size else {}
    cfg = ShareBertConfig.from_preset(args.preset, gradient_checkpointing=args.checkpointing, **overrides)
    ceiling = matmul_rate(args.matmul_size, matmul_dtype(args, device), device) / 1e12
    fp8_rate = fp8_matmul_rate(args.matmul_size, device)
    fp8_ceiling = None if fp8_rate is None else fp8_rate / 1e12

    def build_sharebert():
        model = ShareBertForMaskedLM(cfg, seed=0, device=device).train()
        apply_options(model, args, device)
        fwd = torch.compile(model, mode=args.compile_mode) if args.compile else model
        return (lambda **b: fwd(**b).loss), model

    def build_plain():
        model = ShareBertForMaskedLM(cfg, seed=0, device=device)
        plain = PlainMaskedLM(model).train()
        return (lambda **b: plain(**b)[0]), model

    results = {"sharebert": run_one("sharebert", build_sharebert, args, cfg, device)}
    if not args.no_plain:
        results["plain"] = run_one("plain", build_plain, args, cfg, device)
    report(args, cfg, device, ceiling, fp8_ceiling, results)
    summary = {
        "device": device_name(device),
        "torch": torch.__version__,
        "preset": args.preset,
        "dtype": args.dtype,
        "compile": args.compile,
        "compile_mode": args.compile_mode,
        "fp8": args.fp8,
        "unpad": args.unpad,
        "seq_len": args.seq_len,
        "masked": args.masked,
        "pad_fraction": args.pad_fraction,
        "matmul_tflops": ceiling,
        "fp8_matmul_tflops": fp8_ceiling,
        "matmul_size": args.matmul_size,
        **results,
    }
    if args.json:
        print(json.dumps(summary))
    return summary


def apply_options(model: ShareBertForMaskedLM, args, device: torch.device) -> None:
    """--unpad and --fp8 as `sharebert pretrain` applies them (FP8 emulated in fp32 where the device has none)."""
    if args.unpad:
        model.set_unpad(True)
    if args.fp8:
        from sharebert.trainer.pretrain.fp8 import convert_to_float8

        emulate = fp8_matmul_rate(16, device) is None
        convert_to_float8(model, args.fp8, emulate=emulate, pad_inner_dim=args.unpad)


def variant(args) -> str:
    """e.g. "compiled, fp8 tensorwise, unpadded"."""
    parts = ["compiled" if args.compile else "eager"]
    if args.fp8:
        parts.append(f"fp8 {args.fp8}")
    if args.unpad:
        parts.append("unpadded")
    return ", ".join(parts)


def matmul_dtype(args, device: torch.device) -> torch.dtype:
    """The autocast dtype on a GPU; fp32 on the CPU, where low-precision matmuls are emulated on many chips."""
    return DTYPES[args.dtype] if device.type == "cuda" else torch.float32


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def report(args, cfg, device, ceiling, fp8_ceiling, results) -> None:
    print(
        f"device: {device_name(device)}, torch {torch.__version__}, autocast {args.dtype}, "
        f"compile: {args.compile_mode or 'default' if args.compile else 'no'}"
    )
    print(
        f"matmul ceiling ({args.matmul_size}x{args.matmul_size}, {matmul_dtype(args, device)}): {ceiling:,.4g} TFLOP/s"
    )
    fp8_text = "none (no FP8 tensor cores)" if fp8_ceiling is None else f"{fp8_ceiling:,.4g} TFLOP/s"
    print(f"FP8 matmul ceiling ({args.matmul_size}x{args.matmul_size}, e4m3, per-tensor scales): {fp8_text}")
    print(
        f"model: ShareBERT {args.preset} (V={cfg.vocab_size} F={cfg.factor_size} H={cfg.hidden_size} "
        f"I={cfg.intermediate_size} L={cfg.num_hidden_layers} A={cfg.num_attention_heads}), seq {args.seq_len}, "
        f"{args.masked} mask slots, {args.pad_fraction:.0%} short samples, {args.steps} timed steps"
    )
    for name, r in results.items():
        label = f"sharebert ({variant(args)})" if name == "sharebert" else "plain (eager)"
        memory = f", peak {r['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in r else ""
        of_fp8 = "" if fp8_ceiling is None else f", {r['tflops'] / fp8_ceiling:.2f} of the FP8 rate"
        print(
            f"{label:<22} micro-batch {r['batch']:>4} ({r['padding']:.1%} padding): "
            f"{r['samples_per_second']:>9,.1f} samples/s, step {r['step_seconds'] * 1e3:,.1f} ms, "
            f"{r['tflops']:,.4g} TFLOP/s = {r['tflops'] / ceiling:.2f} of the matmul rate{of_fp8}{memory}"
        )
    if "plain" in results:
        ratio = results["sharebert"]["samples_per_second"] / results["plain"]["samples_per_second"]
        print(f"speed-up over the plain implementation: {ratio:.2f}x")


if __name__ == "__main__":
    main()
