"""The output folder of `sharebert prepare`: claiming it (resume, refuse, overwrite) and describing it.

A run is identified by its settings, its inputs (kind, path, size) and, with --vocab, the vocab's
sha256. The same run resumes from its hidden work folder (unless its inputs changed since) or is
found complete (prepare.json); a different run's output is refused unless --overwrite, which removes
what prepare writes in the folder and nothing else.
"""

from __future__ import annotations

import logging
import platform
import shutil
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import file_error
from ..fileio import read_json, remove_stale_parts, sha256_file, write_json_atomic
from . import formats
from .records import ReadStats

if TYPE_CHECKING:
    from .prepare import PrepareConfig
    from .sources.common import Source

log = logging.getLogger(__name__)

WORK_DIR = ".prepare-work"
RUN_FILE = "run.json"
RECORDS_DIR = "shards"  # inside WORK_DIR: one record per finished shard


def start_run(out: Path, identity: dict, resume_key: dict) -> None:
    """Record the run in its work folder: what a later run compares itself with to resume."""
    write_json_atomic(out / WORK_DIR / RUN_FILE, {"identity": identity, "resume_key": resume_key})


def run_identity(config: PrepareConfig, sources: list[Source]) -> dict:
    identity = {"settings": config.settings(), "inputs": [s.describe() for s in sources]}
    if config.vocab is not None:
        identity["vocab_sha256"] = sha256_file(config.vocab)
    return identity


def input_mtimes(sources: list[Source]) -> list[int | None]:
    """Modification times of local inputs: an interrupted run is resumed only if its inputs are unchanged."""
    return [Path(s.path).stat().st_mtime_ns if s.kind != "builtin" and Path(s.path).exists() else None
            for s in sources]  # fmt: skip


def claim_output_dir(config: PrepareConfig, identity: dict, resume_key: dict) -> dict | None:
    """Make the output folder ours. Returns the existing prepare.json when the same run already finished.

    The same run (same settings, inputs and vocab) resumes or is found complete; a different run's
    output is refused unless --overwrite, which removes what prepare writes (and nothing else).
    `resume_key` (input modification times, batch sizes) must also match for the work files of an
    interrupted run to be reused; otherwise the run starts over.
    """
    out = config.output_dir
    if out.exists() and not out.is_dir():
        raise file_error(out, "output exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise file_error(out, f"cannot create the output folder ({e.strerror})") from None
    info_path = out / formats.PREPARE_INFO_FILE
    work = out / WORK_DIR
    previous = None
    if info_path.exists():
        previous = _identity_of(read_json(info_path))
        if previous == identity and not config.overwrite:
            return formats.read_prepare_info(out)
    elif (work / RUN_FILE).exists():
        run = read_json(work / RUN_FILE)
        previous = run.get("identity") if isinstance(run, dict) else None
        previous = previous if isinstance(previous, dict) else {"unknown": True}
        if previous == identity and run.get("resume_key") != resume_key:
            log.info("the inputs or batching changed since the interrupted run in %s: starting over", out)
            _remove_prepare_outputs(out, keep=config.vocab)
            previous = None
    elif any(p.name != formats.VOCAB_FILE for p in _prepare_outputs(out)):
        previous = {"unknown": True}
    if previous is not None and previous != identity:
        if not config.overwrite:
            raise file_error(out, f"holds the output of a different prepare run ({_difference(previous, identity)}); "
                                  "use --overwrite to replace it, or choose another folder")  # fmt: skip
        log.info("--overwrite: removing the previous prepare output in %s", out)
        _remove_prepare_outputs(out, keep=config.vocab)
    elif previous is not None and config.overwrite:
        _remove_prepare_outputs(out, keep=config.vocab)
    elif previous is not None:
        log.info("resuming the unfinished run in %s", out)
    remove_stale_parts(out)
    work.mkdir(exist_ok=True)
    remove_stale_parts(work)
    (work / RECORDS_DIR).mkdir(exist_ok=True)
    remove_stale_parts(work / RECORDS_DIR)
    return None


def _identity_of(info: dict) -> dict:
    identity = {
        "settings": info.get("settings"),
        "inputs": [{k: v for k, v in i.items() if k != "stats"} for i in info.get("inputs", [])],
    }
    vocab = info.get("vocab") or {}
    if not vocab.get("trained", True):
        identity["vocab_sha256"] = vocab.get("source_sha256")
    return identity


def _difference(previous: dict, current: dict) -> str:
    if previous.get("unknown"):
        return "files of an unknown or unfinished run"
    old, new = previous.get("settings") or {}, current["settings"]
    changed = [f"{k} {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]
    if changed:
        return "settings differ: " + ", ".join(changed[:3])
    if previous.get("inputs") != current["inputs"]:
        return "inputs differ"
    return "vocab file differs"


def _prepare_outputs(out: Path) -> list[Path]:
    names = (formats.PREPARE_INFO_FILE, formats.VOCAB_FILE)
    return [p for p in out.iterdir() if p.name in names or formats.parse_shard_file_name(p.name) or p.name == WORK_DIR]


def _remove_prepare_outputs(out: Path, keep: Path | None) -> None:
    """Remove what prepare writes in `out`, except `keep` (a --vocab given from inside the folder)."""
    for path in _prepare_outputs(out):
        if keep is not None and path.resolve() == Path(keep).resolve():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def remove_work_dir(out: Path) -> None:
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    remove_stale_parts(out)


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
