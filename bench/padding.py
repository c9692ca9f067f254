"""The fraction of padding in the pretraining micro-batches of a SAMPLES_DIR (what `--unpad` can skip).

Reads the train samples in the order the pretraining loader deals them (one epoch, one rank, micro-batches of
--micro-batch) and prints, per micro-batch, the fraction of the B x S token slots that are padding (mean,
min, median, max), the overall fraction, the share of samples with any padding, and what it means for the
layers' work: dense FLOPs scale with the real tokens, so skipping the padding can speed the dense part of a
step up by at most 1 / (1 - padding).

Examples:
  python bench/padding.py SAMPLES_DIR                  # micro-batch 250, as in the published setting
  python bench/padding.py SAMPLES_DIR --micro-batch 64 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sharebert.trainer.pretrain import data  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("samples", type=Path, metavar="SAMPLES_DIR", help="output folder of `sharebert mask`")
    p.add_argument("--micro-batch", type=int, default=250, help="samples per micro-batch (default 250)")
    p.add_argument("--seed", type=int, default=42, help="the loader's seed (default 42, pretrain's default)")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    return p.parse_args(argv)


def batch_padding(samples_dir: Path, micro_batch: int, seed: int) -> np.ndarray:
    """Padding fraction of each micro-batch of one epoch (the loader's order, one rank)."""
    manifest = data.formats.read_manifest(samples_dir)
    samples = data.open_training_samples(
        samples_dir, vocab_size=manifest.vocab_size, max_position_embeddings=manifest.max_seq_length
    )
    layout = data.LoaderLayout(seed=seed, world_size=1, rank=0, micro_batch_size=micro_batch)
    plan_batches = data.micro_batches_per_epoch(samples.train_rows, layout)
    fractions = []
    stream = data.train_batches(samples, layout, data.DataPosition())
    for _, batch in zip(range(plan_batches), stream):
        mask = batch.inputs["attention_mask"]
        fractions.append(1.0 - mask.float().mean().item())
    stream.close()
    return np.array(fractions)


def sample_padding(samples_dir: Path) -> dict:
    """Over every train sample: the padding fraction and the share of samples with any padding."""
    manifest = data.formats.read_manifest(samples_dir)
    slots = real = padded = rows = 0
    for f in manifest.files_of("train"):
        with h5py.File(samples_dir / f.name, "r") as h5:
            mask = h5[data.formats.INPUT_MASK][:]
        slots, real = slots + mask.size, real + int(mask.sum())
        padded += int((mask == 0).any(axis=1).sum())
        rows += len(mask)
    return {"samples": rows, "padding_fraction": 1.0 - real / slots, "samples_with_padding": padded / max(rows, 1)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    per_batch = batch_padding(args.samples, args.micro_batch, args.seed)
    overall = sample_padding(args.samples)
    summary = {
        "samples_dir": str(args.samples),
        "micro_batch": args.micro_batch,
        "micro_batches": len(per_batch),
        "batch_padding_mean": float(per_batch.mean()),
        "batch_padding_min": float(per_batch.min()),
        "batch_padding_median": float(np.median(per_batch)),
        "batch_padding_max": float(per_batch.max()),
        **overall,
        "dense_speedup_bound": 1.0 / (1.0 - float(per_batch.mean())),
    }
    print(f"{args.samples}: {overall['samples']:,} train samples, {len(per_batch)} micro-batches of {args.micro_batch}")
    print(
        f"padding per micro-batch: mean {summary['batch_padding_mean']:.3f}, min {summary['batch_padding_min']:.3f}, "
        f"median {summary['batch_padding_median']:.3f}, max {summary['batch_padding_max']:.3f}"
    )
    print(
        f"all train samples: {overall['padding_fraction']:.3f} of the token slots are padding; "
        f"{overall['samples_with_padding']:.3f} of the samples have some"
    )
    print(f"dense work skippable with --unpad: at most {summary['dense_speedup_bound']:.2f}x on the layers' matmuls")
    if args.json:
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
