"""Throughput of `sharebert prepare` on real Wikipedia XML, with 1 and 2 workers.

What it does (everything under --work-dir, default a temporary folder):
  1. Builds a bigger dump from the enwiki sample: its pages repeated, each copy with distinct titles and
     page ids, until the XML holds at least --target-mb MB; bz2-compressed like a real dump. By default
     in the layout of Wikimedia's pages-articles-multistream dumps (the header in a bz2 stream of its
     own, then --pages-per-stream pages per stream, then the closing tag), which prepare's workers
     decompress in parallel; --single-stream writes one bz2 stream, which the main process must
     decompress alone.
  2. For each worker count (--workers, default 1,2) and engine (--engine, default local), runs `prepare` on it with the BERT uncased vocab in a
     fresh child process (extraction, segmentation, tokenization, balancing and shard writing: the whole
     stage), --repeat times interleaved (the median is reported), then once more while sampling the
     resident memory and CPU time of the child and its workers (the sampler costs CPU, so that run is
     not timed). --engine local,ray: both engines, interleaved, and Ray's throughput as a share of the
     local pool's per worker count (target >= 90%: docs/cluster.md); Ray runs against --ray-address, or a
     cluster of this machine's cores started before the runs (its start-up is not timed).
  3. Prints, per worker count: seconds, MB/s of dump XML (uncompressed) in total and per worker,
     tokens/s, documents, peak RSS of the process tree; then the speed-up of the largest worker count
     over 1, and whether the runs wrote identical shards.
  4. Prepares --dump itself once more with --keep-text (untimed) and counts the markup that leaked into
     the shards' text: wiki syntax, file-link remnants, HTML entities and tags (MARKUP_LEAKS), per MB of
     text, target zero. Prose may hold a few of these legitimately (a "|" quoted in an article).

Targets, printed next to the measurements (docs/prepare.md, Speed): >= 4 MB/s of dump XML per worker
end to end, and 2 workers >= 1.8x one, on a 2-core machine. Timings are of the `prepare()` call inside
the child (imports and interpreter start-up excluded; the worker pool's start-up included).

Examples:
  python bench/prepare.py                     # >= 30 MB of XML, 1 and 2 workers
  python bench/prepare.py --single-stream     # the same XML as one bz2 stream
  python bench/prepare.py --target-mb 2       # smoke test
  python bench/prepare.py --json results.json
  python bench/prepare.py --workers 2 --engine local,ray --repeat 5
"""

from __future__ import annotations

import argparse
import json
import shutil
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
from replica import DumpPages, write_replica

from sharebert.pipeline.prepare.quality import count_markup_leaks

TARGET_MB_PER_WORKER = 4.0
TARGET_SPEEDUP_2 = 1.8
TARGET_RAY_SHARE = 0.9  # Ray's throughput / the local pool's, same workers, one machine


def parse_args(argv=None) -> argparse.Namespace:
    p = benchmark_parser(__doc__.split("\n")[0])
    p.add_argument("--target-mb", type=float, default=30.0, help="MB of XML to repeat the dump's pages to")
    p.add_argument("--pages-per-stream", type=int, default=100, help="pages per bz2 stream (multistream layout)")
    p.add_argument("--single-stream", action="store_true", help="write the dump as one bz2 stream instead")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    p.add_argument("--train-shards", type=int, default=16)
    p.add_argument("--test-shards", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="runs per worker count, interleaved; the median is reported")
    p.add_argument("--child", help=argparse.SUPPRESS)  # JSON config of one timed run
    return p.parse_args(argv)


# ---------------------------------------------------------------- the bigger dump
# ---------------------------------------------------------------- one timed run (child process)
def child(config_json: str) -> None:
    from sharebert.pipeline.prepare.stage import InputSpec, PrepareConfig, prepare

    c = json.loads(config_json)
    config = PrepareConfig(
        output_dir=Path(c["output"]),
        inputs=[InputSpec("wiki", c["dump"])],
        vocab=Path(c["vocab"]),
        num_train_shards=c["train_shards"],
        num_test_shards=c["test_shards"],
        workers=c["workers"],
        keep_text=c.get("keep_text", False),
        engine=c.get("engine", "local"),
        ray_address=c.get("ray_address"),
    )
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    with engine_start_recorded(config.engine) as start:
        info = prepare(config)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "totals": info["totals"], **start,
                      "shards": [s["sha256"] for s in info["shards"]]}))  # fmt: skip


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (not their children: with a
    fork server, the workers are its children; the parent's sampler measures the whole tree)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _figure(value, spec: str) -> str:
    return "n/a (no psutil)" if value is None else format(value, spec)


def timed_run(config: dict, sample: bool = False) -> dict:
    """One prepare run in a fresh process; with `sample`, also its tree's peak RSS and CPU (not timed then)."""
    out, peak_rss, tree_cpu = run_sampled([sys.executable, str(Path(__file__).resolve()), "--child",
                                           json.dumps(config)], sample)  # fmt: skip
    report = json.loads(out.strip().splitlines()[-1])
    if peak_rss is not None:
        report.update(peak_rss_mb=peak_rss / MB, cpu_seconds_tree=tree_cpu)
    return report


def markup_leaks(dump: Path, vocab: Path, output: Path, workers: int) -> dict:
    """Prepares the dump with --keep-text (untimed) and counts the markup in its shards' sentences."""
    import pyarrow.parquet as pq

    from sharebert.pipeline import formats

    shutil.rmtree(output, ignore_errors=True)
    timed_run({"output": str(output), "dump": str(dump), "vocab": str(vocab), "train_shards": 1, "test_shards": 1,
               "workers": workers, "keep_text": True})  # fmt: skip
    texts = (
        sentence
        for shard in sorted(output.glob("*.parquet"))
        for sentences in pq.read_table(shard, columns=[formats.TEXT_COLUMN]).column(0).to_pylist()
        for sentence in sentences
    )
    return count_markup_leaks(texts)


def measure_runs(args, work: Path, dump: Path, xml_bytes: int, workers: list[int], address: str | None) -> dict:
    """Timed runs of every (engine, worker count), interleaved; per pair, the median and a sampled run."""
    pairs = [(engine, w) for engine in engines(args) for w in workers]
    runs, timings = {}, {pair: [] for pair in pairs}

    def config(engine: str, w: int) -> dict:
        return {"output": str(work / f"prepared-{engine}-{w}"), "dump": str(dump), "vocab": str(args.vocab),
                "train_shards": args.train_shards, "test_shards": args.test_shards, "workers": w, "engine": engine,
                "ray_address": address if engine == "ray" else None}  # fmt: skip

    for _ in range(args.repeat):  # interleaved, so a drift of the machine touches every pair alike
        for engine, w in pairs:
            shutil.rmtree(config(engine, w)["output"], ignore_errors=True)
            timings[engine, w].append(timed_run(config(engine, w)))
    for engine, w in pairs:
        shutil.rmtree(config(engine, w)["output"], ignore_errors=True)
        memory = timed_run(config(engine, w), sample=True)
        run = {**median_run(timings[engine, w]), **{k: memory.get(k) for k in ("peak_rss_mb", "cpu_seconds_tree")}}
        tokens = run["totals"]["train"]["tokens"] + run["totals"]["test"]["tokens"]
        documents = run["totals"]["train"]["documents"] + run["totals"]["test"]["documents"]
        mbps = xml_bytes / MB / run["seconds"]
        run.update(engine=engine, workers=w, xml_mb_per_s=mbps, xml_mb_per_s_per_worker=mbps / w,
                   tokens_per_s=tokens / run["seconds"], tokens=tokens, documents=documents)  # fmt: skip
        runs[engine, w] = run
        verdict = "ok" if mbps / w >= TARGET_MB_PER_WORKER else "BELOW TARGET"
        print(
            f"{engine}, workers {w}: {run['seconds']:.2f} s (median of {args.repeat}: {run['all_seconds']}), "
            f"{mbps:.2f} MB/s of XML ({mbps / w:.2f} per worker, target "
            f">= {TARGET_MB_PER_WORKER}: {verdict}), {tokens / run['seconds']:,.0f} tokens/s, "
            f"{documents:,} documents; one more run, sampled: CPU {_figure(run['cpu_seconds_tree'], '.2f')} s, "
            f"peak RSS (process tree) {_figure(run['peak_rss_mb'], '.0f')} MB"
        )
    return runs


# ---------------------------------------------------------------- main
def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args.child)
        return
    require_inputs(args)
    if args.pages_per_stream < 1:
        raise SystemExit(f"--pages-per-stream must be at least 1, got {args.pages_per_stream}")
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        dump = work / "enwiki-repeated.xml.bz2"
        started = time.perf_counter()
        per_stream = None if args.single_stream else args.pages_per_stream
        copies = max(1, -(-int(args.target_mb * MB) // DumpPages(args.dump).page_bytes))
        xml_bytes = write_replica(args.dump, dump, copies, "multistream" if per_stream else "bz2", per_stream or 0)
        layout = f"multistream, {per_stream} pages per bz2 stream" if per_stream else "one bz2 stream"
        print(
            f"dump: {copies} copies of {args.dump.name}: {xml_bytes / MB:.1f} MB of XML, "
            f"{dump.stat().st_size / MB:.1f} MB bz2, {layout} (built in {time.perf_counter() - started:.1f} s)"
        )
        with ray_address(args, max(workers)) as address:
            runs = measure_runs(args, work, dump, xml_bytes, workers, address)
        summary = {"xml_mb": xml_bytes / MB, "copies": copies, "layout": layout, "runs": list(runs.values())}
        local = {w: run for (engine, w), run in runs.items() if engine == "local"}
        if 1 in local and len(local) > 1:
            most = max(local)
            speedup = local[1]["seconds"] / local[most]["seconds"]
            summary["speedup"] = {"workers": most, "value": speedup}
            target = f" (target >= {TARGET_SPEEDUP_2}: {'ok' if speedup >= TARGET_SPEEDUP_2 else 'BELOW TARGET'})"
            print(f"speed-up {most} workers vs 1: {speedup:.2f}x" + (target if most == 2 else ""))
        for (engine, w), run in runs.items():
            if engine == "ray" and ("local", w) in runs:
                summary.setdefault("ray_share", {})[w] = ray_share_report(runs["local", w], run, w, TARGET_RAY_SHARE)
        if len(runs) > 1:
            identical = len({tuple(r["shards"]) for r in runs.values()}) == 1
            summary["identical_output"] = identical
            print(f"identical shards for every worker count and engine: {'yes' if identical else 'NO'}")
        leaks = markup_leaks(args.dump, args.vocab, work / "prepared-text", max(workers))
        summary["markup_leaks"] = leaks
        found = ", ".join(f"{name} {count}" for name, count in leaks["counts"].items())
        print(
            f"markup leaked into the text of {args.dump.name} ({leaks['text_mb']:.2f} MB of sentences): "
            f"{leaks['per_mb']:.2f} per MB (target 0: {'ok' if leaks['per_mb'] == 0 else 'NOT ZERO'}): {found}"
        )
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
