"""What the data-stage benchmarks (bench/prepare.py, bench/mask.py) share: their real inputs and the flags
that name them, where they keep their files, and how a median run is picked."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

MB = 1e6
# Where the real inputs are looked for when --dump / --vocab are not given: beside the checkout, not part of it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def benchmark_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the flags both benchmarks take: the dump and vocab they read, where files and results go."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--dump",
        type=Path,
        default=SHARED_DATA / "enwiki-sample.xml.bz2",
        help="a MediaWiki dump (default: an enwiki sample in ../shared/data beside the checkout)",
    )
    p.add_argument(
        "--vocab",
        type=Path,
        default=SHARED_DATA / "bert-base-uncased-vocab.txt",
        help="a BERT vocab.txt (default: BERT's uncased vocab in ../shared/data beside the checkout)",
    )
    p.add_argument("--work-dir", type=Path, help="keep the files here (default: a temporary folder)")
    p.add_argument(
        "--engine",
        default="local",
        help="comma-separated engines whose runs are interleaved: local, ray (docs/cluster.md; default local)",
    )
    p.add_argument(
        "--ray-address",
        help="with ray: a running cluster (default: a `ray start` node of this machine's cores, started for the "
        "runs and stopped after, so that its start-up is not timed)",
    )
    p.add_argument("--json", type=Path, help="also write the measurements here")
    return p


def require_inputs(args: argparse.Namespace) -> None:
    for path in (args.dump, args.vocab):
        if not path.exists():
            raise SystemExit(f"{path}: not found (see --dump / --vocab)")


def median_run(runs: list[dict]) -> dict:
    """The run of median time, with every run's time beside it."""
    chosen = dict(sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2])
    chosen["all_seconds"] = [round(r["seconds"], 2) for r in runs]
    return chosen


def engines(args: argparse.Namespace) -> list[str]:
    chosen = [e.strip() for e in args.engine.split(",") if e.strip()]
    unknown = set(chosen) - {"local", "ray"}
    if unknown or not chosen:
        raise SystemExit(f"--engine: local and/or ray, got {args.engine!r}")
    return chosen


@contextlib.contextmanager
def ray_address(args: argparse.Namespace, cpus: int) -> Iterator[str | None]:
    """The cluster the ray runs use: --ray-address, or one started here for them (None: no ray run)."""
    if "ray" not in engines(args) or args.ray_address:
        yield args.ray_address
        return
    from ray_cluster import ray_cluster

    with ray_cluster([cpus], [Path(__file__).resolve().parents[1]]) as (address, env, _):
        saved = dict(os.environ)
        os.environ.update(env)  # the runs' child processes connect with it
        try:
            yield address
        finally:
            os.environ.clear()
            os.environ.update(saved)


@contextlib.contextmanager
def engine_start_recorded(engine: str) -> Iterator[dict]:
    """Around one run of a stage: {"start_seconds": ...}, how long its Ray workers took to start (connecting,
    starting the worker processes and their imports), filled in for --engine ray; empty for local."""
    found: dict = {}
    if engine != "ray":
        yield found
        return
    from sharebert.pipeline.ray_engine import RayPool

    close = RayPool.close

    def recording_close(pool: RayPool) -> None:
        found["start_seconds"] = pool.start_seconds
        close(pool)

    RayPool.close = recording_close
    try:
        yield found
    finally:
        RayPool.close = close


def ray_share_report(local: dict, ray: dict, workers: int, target: float) -> dict:
    """Prints Ray's throughput as a share of the local pool's, end to end and without Ray's start-up
    (ray["start_seconds"], median run), against `target`; returns the figures."""
    share = local["seconds"] / ray["seconds"]
    start = ray.get("start_seconds")
    report = {"end_to_end": share, "start_seconds": start}
    verdict = "ok" if share >= target else "BELOW TARGET"
    line = f"ray vs local, {workers} worker(s): {share:.1%} of the local throughput (target >= {target:.0%}: {verdict})"
    if start is not None:
        report["after_start"] = local["seconds"] / (ray["seconds"] - start)
        line += (
            f"; Ray's workers took {start:.2f} s to start, and after that Ray ran at "
            f"{report['after_start']:.1%} of the local pool's whole-run throughput"
        )
    print(line)
    return report
