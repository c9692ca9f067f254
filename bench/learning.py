"""Two pretraining runs on the same samples and seed that differ only in some flags, compared step by step.

By default the baseline is bf16 (`--bf16`) and the candidate adds `--fp8`: the check that FP8 learns like bf16
(its final MLM loss and masked-token accuracy within --tolerance, 1%, of the baseline's). Each run is a
`sharebert pretrain` subprocess logging every step's loss and validating at the end on the same fixed subset
of the test samples. Writes OUT/curves.json (both curves' numbers and the final figures) and, where matplotlib
is installed, OUT/curves.png; prints the comparison.

Examples:
  python bench/learning.py --dataset-path SAMPLES_DIR --out runs/fp8-vs-bf16            # GPU: Base, 300 steps
  python bench/learning.py --dataset-path S --out O --baseline="--fp32" --candidate="--fp32 --unpad" \\
      --preset tiny --steps 5 --micro-batch 8                                               # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset-path", type=Path, required=True, help="a SAMPLES_DIR with test samples")
    p.add_argument("--out", type=Path, required=True, help="folder for the two runs, curves.json and curves.png")
    p.add_argument("--preset", default="base")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--micro-batch", type=int, default=250, help="also the batch of one step (default 250)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--validation-samples", type=int, default=5000)
    p.add_argument("--baseline", default="--bf16", help="flags of the baseline run (default --bf16)")
    p.add_argument("--candidate", default="--bf16 --fp8", help="flags of the candidate run (default --bf16 --fp8)")
    p.add_argument("--extra", default="", help="flags for both runs, e.g. --compile")
    p.add_argument("--tolerance", type=float, default=0.01, help="relative difference allowed (default 0.01)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per run")
    return p.parse_args(argv)


def run(args, name: str, flags: str) -> dict:
    out = args.out / name
    command = [
        sys.executable, "-m", "sharebert", "pretrain", "--dataset_path", str(args.dataset_path),
        "--output_dir", str(out), "--preset", args.preset, "--seed", str(args.seed), "--lr", str(args.lr),
        "--max_steps", str(args.steps), "--train_batch_size", str(args.micro_batch),
        "--train_micro_batch_size_per_gpu", str(args.micro_batch), "--log_steps", "1", "--print_steps", "50",
        "--validation_steps", str(args.steps), "--validation_samples", str(args.validation_samples),
        "--checkpoint_steps", str(10 * args.steps), "--finetune_checkpoint_at_end", "false", "-q",
        *shlex.split(flags), *shlex.split(args.extra),
    ]  # fmt: skip
    print(f"== {name}: {shlex.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, timeout=args.timeout, cwd=ROOT)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    [validation] = [r for r in records if "val_loss" in r]
    steps = [r for r in records if "loss" in r]
    return {
        "flags": flags,
        "steps": [r["step"] for r in steps],
        "losses": [r["loss"] for r in steps],
        "samples_per_s": [r["samples_per_s"] for r in steps],
        "val_loss": validation["val_loss"],
        "val_mlm_acc": validation["val_mlm_acc"],
    }


def compare(baseline: dict, candidate: dict, tolerance: float) -> dict:
    """Relative differences of the final figures (the last 10 steps' mean training loss, validation)."""

    def tail_mean(run: dict) -> float:
        tail = run["losses"][-10:]
        return sum(tail) / len(tail)

    figures = {
        "train_loss_last10": (tail_mean(baseline), tail_mean(candidate)),
        "val_loss": (baseline["val_loss"], candidate["val_loss"]),
        "val_mlm_acc": (baseline["val_mlm_acc"], candidate["val_mlm_acc"]),
    }
    result = {}
    for name, (b, c) in figures.items():
        relative = abs(c - b) / max(abs(b), 1e-12)
        result[name] = {"baseline": b, "candidate": c, "relative": relative, "within": relative <= tolerance}
    return result


def plot(curves: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ("baseline", "candidate"):
        ax.plot(curves[name]["steps"], curves[name]["losses"], label=f"{name}: {curves[name]['flags']}", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("MLM training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    curves = {"baseline": run(args, "baseline", args.baseline), "candidate": run(args, "candidate", args.candidate)}
    curves["comparison"] = compare(curves["baseline"], curves["candidate"], args.tolerance)
    curves["settings"] = {k: str(v) for k, v in vars(args).items()}
    (args.out / "curves.json").write_text(json.dumps(curves, indent=1) + "\n", encoding="utf-8")
    plotted = plot(curves, args.out / "curves.png")
    print(f"baseline: {args.baseline!r}   candidate: {args.candidate!r}   ({args.preset}, {args.steps} steps)")
    for name, c in curves["comparison"].items():
        verdict = "ok" if c["within"] else f"DIFFERS by more than {args.tolerance:.0%}"
        print(f"{name:<18} {c['baseline']:.4f} vs {c['candidate']:.4f}: {c['relative']:.2%} {verdict}")
    every = max(1, args.steps // 10)
    print("step  " + "  ".join(f"{s:>7}" for s in curves["baseline"]["steps"][every - 1 :: every]))
    for name in ("baseline", "candidate"):
        print(f"{name[:4]}  " + "  ".join(f"{x:7.4f}" for x in curves[name]["losses"][every - 1 :: every]))
    print(
        f"written: {args.out / 'curves.json'}"
        + (f", {args.out / 'curves.png'}" if plotted else " (no matplotlib: no PNG)")
    )
    return curves


if __name__ == "__main__":
    main()
