"""What the data-stage benchmarks (bench/prepare.py, bench/mask.py) share: their real inputs and the flags
that name them, where they keep their files, and how a median run is picked."""

from __future__ import annotations

import argparse
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
