"""The output folder of `sharebert prepare`: what it holds (`LAYOUT`), the identity of a run, and prepare.json.

A run is identified by its settings, its inputs (kind, path, size) and, with --vocab, the vocab's
sha256; a finished run's identity is read back from its prepare.json. Its resume key (input
modification times, batch sizes) decides whether an interrupted run's work files can be reused.
pipeline/run_folder.py applies the rules (resume, refuse, --overwrite) with them.
"""

from __future__ import annotations

import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ... import __version__
from ...fileio import sha256_file
from .. import formats
from ..run_folder import Layout, RunFolder
from .config import PrepareConfig
from .records import ReadStats

if TYPE_CHECKING:
    from .sources.common import Source


def _identity_of(info: dict) -> dict:
    """The identity of the run that wrote prepare.json `info`."""
    identity = {
        "settings": info.get("settings"),
        "inputs": [{k: v for k, v in i.items() if k != "stats"} for i in info.get("inputs", [])],
    }
    vocab = info.get("vocab") or {}
    if not vocab.get("trained", True):
        identity["vocab_sha256"] = vocab.get("source_sha256")
    return identity


LAYOUT = Layout(
    stage="prepare",
    work_dir=formats.PREPARE_WORK_DIR,
    run_file=formats.PREPARE_RUN_FILE,
    records_dir=formats.PREPARE_RECORDS_DIR,
    finished_file=formats.PREPARE_INFO_FILE,
    is_unit_file=formats.parse_shard_file_name,
    side_files=(formats.VOCAB_FILE,),
    differences={"inputs": "inputs differ", "vocab_sha256": "vocab file differs"},
    finished_identity=_identity_of,
)


def run_folder(config: PrepareConfig) -> RunFolder:
    return RunFolder(config.output_dir, LAYOUT)


def run_identity(config: PrepareConfig, sources: list[Source]) -> dict:
    identity = {"settings": config.settings(), "inputs": [s.describe() for s in sources]}
    if config.vocab is not None:
        identity["vocab_sha256"] = sha256_file(config.vocab)
    return identity


def input_mtimes(sources: list[Source]) -> list[int | None]:
    """Modification times of local inputs: an interrupted run is resumed only if its inputs are unchanged."""
    return [Path(s.path).stat().st_mtime_ns if s.kind != "builtin" and Path(s.path).exists() else None
            for s in sources]  # fmt: skip


# ---------------------------------------------------------------- prepare.json
def prepare_info(config, sources, stats, results, placement, records, vocab_path, trained) -> dict:
    """The content of prepare.json (docs/prepare.md lists every field). Nothing in it depends on the
    number of workers, the time or the output folder, so reruns give the same bytes."""
    vocab_size = len(Path(vocab_path).read_bytes().splitlines())  # validated when the run started
    read_totals = ReadStats()
    for s in stats:
        read_totals.add(s)
    inputs = [{**source.describe(), "stats": s.as_dict()} for source, s in zip(sources, stats)]
    vocab_info = {
        "file": formats.VOCAB_FILE,
        "sha256": sha256_file(vocab_path),
        "size": vocab_size,
        "lowercase": config.lowercase,
        "trained": trained,
        "source": None if trained else str(config.vocab),
    }
    if not trained:
        vocab_info["source_sha256"] = vocab_info["sha256"]
    totals = {}
    for split in formats.SPLITS:
        mine = [r for r in records if r["split"] == split]
        totals[split] = {
            "shards": len(mine),
            **{key: sum(r[key] for r in mine) for key in ("documents", "sentences", "tokens", "bytes")},
        }
    cut_docs = len(set(placement.part_doc.tolist()))  # (np.unique would import numpy.ma: 0.02 s)
    return {
        "format_version": formats.PREPARE_FORMAT_VERSION,
        "sharebert_version": __version__,
        "vocab": vocab_info,
        "shards": records,
        "totals": totals,
        "settings": config.settings(),
        "inputs": inputs,
        "stats": {
            **read_totals.as_dict(),
            "empty_after_cleaning": sum(r.empty_documents for r in results),
            "documents_cut": cut_docs,
            "parts": len(placement.part_doc),
            "balance": _balance_stats(records),
        },
        "versions": _versions(any(s.kind == "hf" for s in sources)),
    }


def _balance_stats(records: list[dict]) -> dict:
    balance = {}
    for split in formats.SPLITS:
        tokens = [r["tokens"] for r in records if r["split"] == split]
        if tokens:
            mean = sum(tokens) / len(tokens)
            balance[split] = {"min_tokens": min(tokens), "max_tokens": max(tokens),
                              "max_over_mean": round(max(tokens) / mean, 6)}  # fmt: skip
    return balance


def _versions(with_datasets: bool) -> dict:
    packages = ["tokenizers", "pyarrow", "numpy", "blingfire"] + (["datasets"] if with_datasets else [])
    versions = {"python": platform.python_version(), "sharebert": __version__}
    for name in packages:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions
