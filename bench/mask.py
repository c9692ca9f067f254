"""Throughput of `sharebert mask`, and of the chain prepare + mask, on real Wikipedia text.

What it does (everything under --work-dir, default a temporary folder):
  1. Prepares the enwiki sample dump once with its text kept, to learn how many bytes of article text
     (UTF-8 of the cleaned sentences) one copy of the dump holds.
  2. Writes a dump of k copies of the sample's pages (page ids made unique), k chosen so that it holds at
     least --target-mb MB of article text, as plain XML.
  3. The chain, on one core: `prepare` of that dump with 1 worker, then `mask` at --dup-factor (5) with
     1 worker. Prints MB of text per second for each and for the chain.
  4. `mask` alone on the prepared replica with 1 and with 2 workers: samples/s, tokens/s (real tokens
     written, [CLS]/[SEP] included), samples/s per worker, the 2-worker speed-up, peak RSS. With
     --engine local,ray also on Ray, interleaved, and Ray's throughput as a share of the local pool's per
     worker count (target >= 90%: docs/cluster.md); Ray runs against --ray-address, or a cluster of this
     machine's cores started before the runs (its start-up is not timed).
Each timed run is a fresh child process; its peak RSS is the summed resident memory of its process tree
(the stage, the fork server, the workers), sampled beside it. Timings include start-up (process pool,
imports), as a user would see them. Mask runs are repeated (--repeat, interleaved) and the median shown.

Targets, printed next to the measurements (docs/mask.md, Throughput): mask >= 25,000 samples/s per worker;
2 workers >= 1.8x one; the chain >= 8x the reference chain per core (a reference figure, not measured here).

Examples:
  python bench/mask.py                       # >= 30 MB of text, dup-factor 5
  python bench/mask.py --target-mb 2         # smoke test
  python bench/mask.py --json results.json
  python bench/mask.py --engine local,ray --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's sharebert

# bench/ is on sys.path as the script's folder
from common import (
    MB,
    benchmark_parser,
    engine_start_recorded,
    engines,
    median_run,
    ray_address,
    ray_share_report,
    require_inputs,
)
from process_tree import run_sampled
from replica import write_replica

from sharebert.pipeline import formats

# The reference chain's samples/s per core (BERT's instance creation with its slow tokenizer, once per duplicate),
# a figure measured on this kind of machine and described in docs/mask.md (Throughput); not measured here (its
# code is not part of sharebert).
REFERENCE_CHAIN_SAMPLES_PER_S = (830, 1190)
TARGET_RAY_SHARE = 0.9  # Ray's throughput / the local pool's, same workers, one machine


def parse_args(argv=None) -> argparse.Namespace:
    p = benchmark_parser(__doc__.split("\n")[0])
    p.add_argument("--target-mb", type=float, default=30.0, help="MB of article text to replicate the dump to")
    p.add_argument("--dup-factor", type=int, default=5)
    p.add_argument("--train-shards", type=int, default=16, help="train shards of the replica (prepare)")
    p.add_argument(
        "--repeat", type=int, default=3, help="mask runs per worker count, interleaved; the median is reported"
    )
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- timed child processes
def run_child(args: list[str], sample: bool = False) -> dict:
    """Run `python bench/mask.py --child ARGS`: its JSON report; with `sample`, also the peak RSS of its
    process tree (the sampler takes CPU, so such a run is not one of the timed ones)."""
    out, peak_rss, _ = run_sampled([sys.executable, str(Path(__file__).resolve()), "--child", *args], sample)
    report = json.loads(out.strip().splitlines()[-1])
    report["peak_rss_mb"] = None if peak_rss is None else peak_rss / MB
    return report


def child_main(argv: list[str]) -> None:
    """Run one stage through the CLI in this fresh process; print its seconds as JSON."""
    from sharebert.cli import main

    started = time.perf_counter()
    with engine_start_recorded("ray" if "ray" in argv else "local") as start:
        status = main(argv + ["-q"])
    seconds = time.perf_counter() - started
    if status:
        raise SystemExit(status)
    print(json.dumps({"seconds": seconds, **start}))


def prepare_args(dump: Path, vocab: Path, out: Path, workers: int, train_shards: int, keep_text: bool) -> list[str]:
    args = [
        "prepare",
        "--wiki",
        str(dump),
        "--vocab",
        str(vocab),
        "-o",
        str(out),
        "--workers",
        str(workers),
        "--num-train-shards",
        str(train_shards),
        "--overwrite",
    ]
    return args + (["--keep-text"] if keep_text else [])


def text_bytes(prepared: Path) -> int:
    """UTF-8 bytes of every sentence kept by prepare (needs --keep-text)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    total = 0
    for shard in sorted(prepared.glob(f"*{formats.SHARD_SUFFIX}")):
        column = pq.read_table(shard, columns=[formats.TEXT_COLUMN]).column(formats.TEXT_COLUMN)
        total += int(pc.sum(pc.binary_length(pc.list_flatten(column))).as_py() or 0)
    return total


def prepared_tokens(prepared: Path) -> int:
    info = json.loads((prepared / formats.PREPARE_INFO_FILE).read_text())
    return sum(split["tokens"] for split in info["totals"].values())


def manifest_totals(samples: Path) -> tuple[int, int]:
    manifest = json.loads((samples / formats.MANIFEST_FILE).read_text())
    return (
        sum(t["samples"] for t in manifest["totals"].values()),
        sum(t["real_tokens"] for t in manifest["totals"].values()),
    )


# ---------------------------------------------------------------- the measurements
def samples_name(engine: str, workers: int) -> str:
    return f"samples-{workers}" if engine == "local" else f"samples-{engine}-{workers}"


def mask_args(args, prepared: Path, work: Path, engine: str, workers: int, address: str | None) -> list[str]:
    ray = ["--engine", "ray", "--ray-address", address] if engine == "ray" else []
    return ["mask", str(prepared), "-o", str(work / samples_name(engine, workers)), "--dup-factor",
            str(args.dup_factor), "--workers", str(workers), "--overwrite", *ray]  # fmt: skip


def mask_timings(args, prepared: Path, work: Path, address: str | None) -> dict[tuple[str, int], list[dict]]:
    """Timed mask runs with 1 and 2 workers on every engine, interleaved (a drift of the machine touches all alike)."""
    timings = {(engine, workers): [] for engine in ["local", *set(engines(args)) - {"local"}] for workers in (1, 2)}
    for _ in range(args.repeat):
        for engine, workers in timings:
            timings[engine, workers].append(run_child(mask_args(args, prepared, work, engine, workers, address)))
    return timings


def measure(args: argparse.Namespace, work: Path) -> dict:
    require_inputs(args)
    one_copy = work / "one-copy"
    run_child(prepare_args(args.dump, args.vocab, one_copy, 1, 2, keep_text=True))
    bytes_per_copy = text_bytes(one_copy)
    copies = max(1, -(-int(args.target_mb * MB) // bytes_per_copy))
    dump = work / "replica.xml"
    write_replica(args.dump, dump, copies, layout="xml")
    text_mb = copies * bytes_per_copy / MB
    print(
        f"corpus: {copies} x {args.dump.name} = {text_mb:.1f} MB of article text "
        f"({dump.stat().st_size / MB:.0f} MB of XML)"
    )

    prepared = work / "prepared"
    prep = run_child(prepare_args(dump, args.vocab, prepared, 1, args.train_shards, keep_text=False))
    tokens_in = prepared_tokens(prepared)
    results = {"text_mb": text_mb, "copies": copies, "tokens": tokens_in, "prepare": prep, "mask": {}}
    print(
        f"prepare, 1 worker: {prep['seconds']:.1f} s, {text_mb / prep['seconds']:.2f} MB/s, "
        f"{tokens_in / prep['seconds']:,.0f} tokens/s"
    )

    with ray_address(args, 2) as address:
        timings = mask_timings(args, prepared, work, address)
    for (engine, workers), runs in timings.items():
        run = median_run(runs)
        run["peak_rss_mb"] = (
            run_child(mask_args(args, prepared, work, engine, workers, address), sample=True)["peak_rss_mb"]
            if engine == "local"
            else None
        )  # one more run, sampled (a Ray cluster's workers are not the run's children)
        samples, tokens = manifest_totals(work / samples_name(engine, workers))
        run.update(
            samples=samples,
            real_tokens=tokens,
            samples_per_s=samples / run["seconds"],
            tokens_per_s=tokens / run["seconds"],
            samples_per_s_per_worker=samples / run["seconds"] / workers,
        )
        results.setdefault("mask" if engine == "local" else "mask_ray", {})[workers] = run
        print(
            f"mask, {engine}, {workers} worker(s), dup-factor {args.dup_factor}: {run['seconds']:.2f} s "
            f"(median of {args.repeat}: {run['all_seconds']}), "
            f"{samples:,} samples, {run['samples_per_s']:,.0f} samples/s "
            f"({run['samples_per_s_per_worker']:,.0f} per worker; target >= 25,000), "
            f"{run['tokens_per_s']:,.0f} tokens/s, {text_mb / run['seconds']:.2f} MB of text/s, "
            "peak RSS (process tree, one more run) "
            + (
                f"{run['peak_rss_mb']:.0f} MB"
                if run["peak_rss_mb"] is not None
                else "n/a (no psutil)"
                if engine == "local"
                else "n/a (Ray's workers are not the run's children)"
            )
        )
    for workers, run in results.get("mask_ray", {}).items():
        print("mask, ", end="")
        report = ray_share_report(results["mask"][workers], run, workers, TARGET_RAY_SHARE)
        results.setdefault("ray_share", {})[workers] = report
    speedup = results["mask"][1]["seconds"] / results["mask"][2]["seconds"]
    same = all(
        (work / "samples-1" / n).read_bytes() == (work / samples_name(engine, w) / n).read_bytes()
        for n in os.listdir(work / "samples-1")
        if n.endswith(formats.SAMPLE_SUFFIX)
        for engine, w in timings
    )
    chain_seconds = prep["seconds"] + results["mask"][1]["seconds"]
    chain_samples_per_s = results["mask"][1]["samples"] / chain_seconds
    low, high = REFERENCE_CHAIN_SAMPLES_PER_S
    results.update(
        speedup_2_workers=speedup, same_bytes=same, chain_seconds=chain_seconds,
        chain_mb_per_s=text_mb / chain_seconds, chain_samples_per_s=chain_samples_per_s,
    )  # fmt: skip
    print(f"mask, 2 workers vs 1: {speedup:.2f}x (target >= 1.8x); files identical (every run): {same}")
    print(
        f"chain prepare + mask (dup-factor {args.dup_factor}), one core: {chain_seconds:.1f} s, "
        f"{text_mb / chain_seconds:.2f} MB of text/s, {chain_samples_per_s:,.0f} samples/s = "
        f"{chain_samples_per_s / high:.1f}x to {chain_samples_per_s / low:.1f}x the reference chain's "
        f"{low:,}-{high:,} samples/s per core (docs/mask.md; target >= 8x)"
    )
    return results


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child is not None:
        child_main(args.child)
        return
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        results = measure(args, args.work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="sharebert-bench-mask-") as tmp:
            results = measure(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
