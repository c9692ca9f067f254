"""`sharebert mask`: prepared Parquet shards -> duplicated, statically masked HDF5 samples + manifest.

One file per (input shard, duplicate): build instance spans, shuffle them, assemble and mask them
block by block, write the HDF5 file under a temporary name, check it, rename it, and leave a
completion record. A task makes the files of several duplicates of one shard, which it reads once.
Every random choice of a file comes from SeedSequence([seed, shard_index, duplicate, split_code]),
so the files do not depend on the number of workers or on how files are grouped into tasks, and
duplicates of one shard get different chunking and masks. manifest.json is written last.
docs/mask.md describes the files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ... import __version__
from ...errors import DataError, file_error
from ...fileio import atomic_path, remove_stale_parts, sha256_file, space_needed, write_bytes_atomic
from ...progress import progress_bar
from ...tokenization import SpecialIds, read_vocab, replacement_token_ids, special_ids
from .. import formats
from ..engines import open_pool
from ..run_folder import Layout, RunFolder, UnitRecords
from .config import MaskConfig
from .instances import InstanceSpans, ShardTokens, assemble_tokens, build_instance_spans
from .masking import MaskingSpec, mask_rows, word_continuation_table
from .validate import SampleCounts, SampleRules, check_sample_file, describe_summary

log = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "test": 1}
BLOCK_ROWS = 8 * formats.HDF5_CHUNK_ROWS  # rows assembled, masked and written at once
TASKS_PER_WORKER = 8  # at least this many tasks per worker, when shards are few (see _group_tasks)
# Imported once in the workers' fork server (not once per worker).
WORKER_MODULES = ("sharebert.pipeline.mask.stage", "numpy.random", "h5py", "pyarrow.parquet", "pyarrow.compute")


# ---------------------------------------------------------------- what a worker needs
@dataclass(frozen=True)
class _Job:
    prepared_dir: Path
    output_dir: Path
    config: MaskConfig
    vocab_size: int
    special: SpecialIds
    masking: MaskingSpec
    rules: SampleRules
    records: UnitRecords  # one per finished file, named after it


@dataclass(frozen=True)
class _Task:
    split: str
    shard_file: str
    shard_index: int
    duplicate: int
    name: str


@dataclass(frozen=True)
class _Result:
    file: formats.SampleFile
    counts: SampleCounts
    reused: bool


_job: _Job | None = None


def _set_job(job: _Job) -> None:
    global _job
    _job = job


# ---------------------------------------------------------------- entry point
def mask(config: MaskConfig) -> formats.Manifest:
    """Write SAMPLES_DIR from PREPARED_DIR (resuming a previous run of the same settings)."""
    with space_needed(config.output_dir, lambda: bytes_still_to_write(config)):
        return _mask(config)


def _mask(config: MaskConfig) -> formats.Manifest:
    started = time.perf_counter()
    info = formats.read_prepare_info(config.prepared_dir)
    tasks = _make_tasks(info, config.dup_factor)
    folder = RunFolder(config.output_dir, LAYOUT)
    # The workers' fork server boots (imports numpy, h5py, pyarrow) while this process does its own set-up.
    with open_pool(
        config.engine,
        config.workers,
        preload=WORKER_MODULES,
        ray_address=config.ray_address,
        at_most=max(len(tasks), 1),
    ) as pool:
        vocab_path = config.prepared_dir / formats.VOCAB_FILE
        vocab = read_vocab(vocab_path)
        vocab_info = _vocab_info(vocab_path, vocab, info)
        pool.initialize(_set_job, _make_job(config, vocab, folder.records))
        state = {
            "settings": config.settings(),
            "prepare_sha256": sha256_file(config.prepared_dir / formats.PREPARE_INFO_FILE),
            "vocab_sha256": vocab_info["sha256"],
        }
        folder.claim(state, overwrite=config.overwrite)
        pool.check_shared(readable=[config.prepared_dir], writable=[folder.work])
        write_bytes_atomic(config.output_dir / formats.VOCAB_FILE, vocab_path.read_bytes())
        log.info(
            "%s: %d shards x %d duplicates -> %d files in %s, %d workers",
            config.prepared_dir,
            len(tasks) // config.dup_factor,
            config.dup_factor,
            len(tasks),
            config.output_dir,
            pool.workers,
        )
        results = _make_files(pool, tasks, config.dup_factor)
        pool.release()  # the workers exit while the manifest is written
        manifest = _build_manifest(config, info, vocab_info, results)
        formats.write_manifest(config.output_dir, manifest)
    for unfinished in (config.output_dir, folder.records.folder):  # files of tasks whose worker was killed and rerun
        remove_stale_parts(unfinished)
    _log_summary(config, manifest, results, time.perf_counter() - started)
    return manifest


def _make_files(pool, tasks: list[_Task], dup_factor: int) -> list[_Result]:
    results, samples = [], 0
    with progress_bar(total=len(tasks), unit="file", desc="mask") as bar:
        groups = _group_tasks(tasks, dup_factor, pool.workers)
        for group in pool.map_ordered(_run_tasks, groups, describe=_describe_group):
            results.extend(group)
            samples += sum(r.counts.samples for r in group)
            bar.update(len(group))
            bar.set_postfix(samples=f"{samples:,}", refresh=False)
    return results


def _describe_group(group: list[_Task]) -> str:
    return f"{group[0].shard_file} (duplicates {group[0].duplicate}-{group[-1].duplicate})"


def _vocab_info(vocab_path: Path, vocab: list[str], info: dict) -> dict:
    sha = sha256_file(vocab_path)
    declared = info.get("vocab", {})
    if declared.get("sha256") not in (None, sha):
        raise file_error(
            vocab_path, f"sha256 differs from {formats.PREPARE_INFO_FILE}: not the vocab the shards were tokenized with"
        )
    return {
        "file": formats.VOCAB_FILE,
        "sha256": sha,
        "size": len(vocab),
        "special_ids": special_ids(vocab).as_dict(),
        "lowercase": declared.get("lowercase"),
    }


def _make_job(config: MaskConfig, vocab: list[str], records: UnitRecords) -> _Job:
    special = special_ids(vocab)
    replacement = replacement_token_ids(vocab)
    masking = MaskingSpec(
        masked_lm_prob=config.masked_lm_prob,
        max_predictions_per_seq=config.max_predictions_per_seq,
        special=special,
        replacement_ids=replacement,
        continuation=word_continuation_table(vocab) if config.whole_word_masking else None,
    )
    allowed = np.zeros(len(vocab), dtype=bool)
    allowed[replacement] = True
    rules = SampleRules(
        vocab_size=len(vocab),
        special=special,
        masked_lm_prob=config.masked_lm_prob,
        max_seq_length=config.max_seq_length,
        max_predictions_per_seq=config.max_predictions_per_seq,
        nsp=config.nsp,
        whole_word_masking=config.whole_word_masking,
        replacement_allowed=allowed,
    )
    return _Job(config.prepared_dir, config.output_dir, config, len(vocab), special, masking, rules, records)


def _make_tasks(info: dict, dup_factor: int) -> list[_Task]:
    shards = sorted(info.get("shards", []), key=lambda s: (formats.SPLITS.index(s["split"]), int(s["index"])))
    return [
        _Task(
            s["split"],
            s["file"],
            int(s["index"]),
            dup,
            formats.sample_file_name(s["split"], int(s["index"]) * dup_factor + dup),
        )
        for s in shards
        for dup in range(dup_factor)
    ]


def bytes_still_to_write(config: MaskConfig) -> int:
    """About how many bytes this run still has to write (for the message of a full disk): the tokens of the
    shards behind the missing sample files, at the bytes per token of the files written so far, or, before
    any, of uncompressed samples."""
    info = formats.read_prepare_info(config.prepared_dir)
    tokens = {s["file"]: int(s["tokens"]) for s in info.get("shards", [])}
    written_bytes = written_tokens = missing_tokens = 0
    for task in _make_tasks(info, config.dup_factor):
        path = config.output_dir / task.name
        if path.exists():
            written_bytes += path.stat().st_size
            written_tokens += tokens[task.shard_file]
        else:
            missing_tokens += tokens[task.shard_file]
    if written_tokens:
        return round(missing_tokens * written_bytes / written_tokens)
    shapes = formats.sample_shapes(config.nsp, config.max_seq_length, config.max_predictions_per_seq)
    sample_bytes = sum(np.dtype(dtype).itemsize * math.prod(shape) for dtype, shape in shapes.values())
    return round(missing_tokens * sample_bytes / (config.max_seq_length - 3))  # [CLS] a [SEP] b [SEP]


def _group_tasks(tasks: list[_Task], dup_factor: int, workers: int) -> list[list[_Task]]:
    """The duplicates of each shard, as consecutive groups: a group reads its shard once. A shard's
    duplicates make one group, unless there are too few shards to give every worker TASKS_PER_WORKER
    groups (the last group of a run may run alone on one core: the smaller, the better)."""
    shards = max(1, len(tasks) // dup_factor)
    groups_per_shard = 1 if workers <= 1 else min(dup_factor, -(-TASKS_PER_WORKER * workers // shards))
    size = -(-dup_factor // groups_per_shard)
    return [
        tasks[first + start : first + min(start + size, dup_factor)]
        for first in range(0, len(tasks), dup_factor)
        for start in range(0, dup_factor, size)
    ]


# ---------------------------------------------------------------- the output folder and resume state
LAYOUT = Layout(
    stage="mask",
    work_dir=formats.MASK_STATE_DIR,
    run_file=formats.MASK_RUN_FILE,
    records_dir=formats.MASK_RECORDS_DIR,
    finished_file=formats.MANIFEST_FILE,
    is_unit_file=formats.parse_sample_file_name,
    side_files=(formats.VOCAB_FILE,),
    differences={"prepare_sha256": f"{formats.PREPARE_INFO_FILE} differs", "vocab_sha256": "vocab file differs"},
)


def _reusable(job: _Job, task: _Task) -> _Result | None:
    """The record of a file a previous run finished, if the file is still exactly what it wrote."""
    record, path = job.records.read(task.name), job.output_dir / task.name
    if record is None or not path.exists():
        return None
    try:
        file = formats.SampleFile(**record["file"])
        counts = SampleCounts(**record["counts"])
    except (KeyError, TypeError):
        return None
    if (file.source_shard, file.duplicate) != (task.shard_file, task.duplicate):
        return None
    if path.stat().st_size != file.bytes or sha256_file(path) != file.sha256:
        return None
    return _Result(file, counts, reused=True)


# ---------------------------------------------------------------- one task
def _run_tasks(tasks: list[_Task]) -> list[_Result]:
    """Some duplicates of one shard: the files a previous run finished are kept, the shard is read
    (once) only if any other is to be made."""
    job = _job
    assert job is not None, "the worker was not initialized"
    results = [_reusable(job, task) for task in tasks]
    if any(r is None for r in results):
        shard = read_shard_tokens(job.prepared_dir / tasks[0].shard_file, job.vocab_size, job.special)
        results = [r if r is not None else _make_file(job, task, shard) for r, task in zip(results, tasks)]
    return results


def _make_file(job: _Job, task: _Task, shard: ShardTokens) -> _Result:
    config = job.config
    rng = np.random.default_rng(
        np.random.SeedSequence([config.seed, task.shard_index, task.duplicate, SPLIT_CODES[task.split]])
    )
    spans = build_instance_spans(shard, rng, config.max_seq_length, config.short_seq_prob, config.nsp)
    spans = spans.take(rng.permutation(len(spans)))
    path = job.output_dir / task.name
    with atomic_path(path) as tmp:
        write_sample_file(tmp, len(spans), _sample_blocks(shard.tokens, spans, job, rng), config)
        check = check_sample_file(tmp, job.rules, name=task.name)
        if check.problems:
            raise DataError(f"{path}: the samples just made fail validation (a bug): {check.problems[0]}")
    file = formats.SampleFile(
        name=task.name,
        split=task.split,
        rows=len(spans),
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        source_shard=task.shard_file,
        duplicate=task.duplicate,
    )
    job.records.write(task.name, {"file": asdict(file), "counts": check.counts.as_dict()})
    return _Result(file, check.counts, reused=False)


def _sample_blocks(tokens: np.ndarray, spans: InstanceSpans, job: _Job, rng: np.random.Generator):
    for lo in range(0, len(spans), BLOCK_ROWS):
        block = spans.take(np.arange(lo, min(lo + BLOCK_ROWS, len(spans))))
        yield make_samples(tokens, block, job.config.max_seq_length, job.config.nsp, job.masking, rng)


def make_samples(
    tokens: np.ndarray,
    spans: InstanceSpans,
    max_seq_length: int,
    nsp: bool,
    masking: MaskingSpec,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The HDF5 rows of a block of instances: assembled, masked, in the dtypes of formats.sample_datasets."""
    rows = assemble_tokens(tokens, spans, max_seq_length, masking.special)
    masked = mask_rows(rows.input_ids, rows.input_mask, masking, rng)
    arrays = {
        formats.INPUT_IDS: masked.input_ids,
        formats.INPUT_MASK: rows.input_mask,
        formats.SEGMENT_IDS: rows.segment_ids,
        formats.MASKED_LM_POSITIONS: masked.masked_lm_positions,
        formats.MASKED_LM_IDS: masked.masked_lm_ids,
        formats.NEXT_SENTENCE_LABELS: spans.random_next,
    }
    return {name: arrays[name].astype(dtype, copy=False) for name, (dtype, _) in formats.sample_datasets(nsp).items()}


# ---------------------------------------------------------------- file formats
def read_shard_tokens(path: Path, vocab_size: int, special: SpecialIds) -> ShardTokens:
    """The `sentences` column of a prepared Parquet shard as flat arrays, checked against the vocab."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise _unreadable_shard(path, e) from None
    _check_shard_schema(path, parquet.schema_arrow)
    try:
        # ParquetFile.read, not read_table: read_table imports pyarrow.dataset and pandas (~1 s per worker).
        table = parquet.read(columns=[formats.SENTENCES_COLUMN], use_threads=False)
    except (OSError, pa.ArrowException, KeyError) as e:
        raise _unreadable_shard(path, e) from None
    column = table.column(formats.SENTENCES_COLUMN)
    documents = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    sentences = documents.flatten()
    doc_offsets = _int_array(documents.offsets).astype(np.int64)
    sent_offsets = _int_array(sentences.offsets).astype(np.int64)
    tokens = _int_array(sentences.flatten())
    shard = ShardTokens(tokens, sent_offsets - sent_offsets[0], doc_offsets - doc_offsets[0])
    _check_shard(path, shard, vocab_size, special)
    return shard


def _unreadable_shard(path: Path, e: Exception) -> DataError:
    return file_error(
        path, f"cannot read the prepared shard ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    )


def _check_shard_schema(path: Path, schema) -> None:
    """The shard has the sentences column of formats.parquet_schema (other columns are not read)."""
    if formats.SENTENCES_COLUMN not in schema.names:
        raise file_error(path, f"has no column {formats.SENTENCES_COLUMN!r}: not a shard of `sharebert prepare`")
    found, expected = schema.field(formats.SENTENCES_COLUMN).type, formats.sentences_arrow_type()
    if found != expected:
        raise file_error(path, f"column {formats.SENTENCES_COLUMN} has type {found}, expected {expected}")


def _int_array(array) -> np.ndarray:
    """A null-free pyarrow integer array as numpy, straight from its buffer (to_numpy would import pandas)."""
    dtype = np.dtype(array.type.to_pandas_dtype())
    data = array.buffers()[1]
    if data is None:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def _check_shard(path: Path, shard: ShardTokens, vocab_size: int, special: SpecialIds) -> None:
    empty_docs = np.flatnonzero(np.diff(shard.document_starts) == 0)
    if len(empty_docs):
        raise file_error(path, f"document row {empty_docs[0]} has no sentences")
    empty_sentences = np.flatnonzero(np.diff(shard.sentence_starts) == 0)
    if len(empty_sentences):
        row = np.searchsorted(shard.document_starts, empty_sentences[0], side="right") - 1
        raise file_error(path, f"document row {row} has an empty sentence")
    tokens = shard.tokens
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= vocab_size):
        bad = tokens[(tokens < 0) | (tokens >= vocab_size)][0]
        raise file_error(
            path, f"token id {bad} is outside the vocab ({vocab_size} tokens): shards and vocab do not match"
        )
    forbidden = np.zeros(vocab_size, dtype=bool)
    forbidden[[special.pad, special.cls, special.sep, special.mask]] = True
    if len(tokens) and forbidden[tokens].any():
        bad = tokens[forbidden[tokens]][0]
        raise file_error(path, f"token id {bad} is a special token ([PAD]/[CLS]/[SEP]/[MASK]) inside a sentence")


def write_sample_file(path: Path, n_rows: int, blocks, config: MaskConfig) -> None:
    """Write the blocks (dicts of arrays, in row order) as one HDF5 file of n_rows chunked, gzip'd rows.

    Blocks are multiples of the chunk height, so every write fills whole chunks. Nothing
    time-dependent is stored (track_times=False): the same rows give the same bytes.
    """
    import h5py

    shapes = formats.sample_shapes(config.nsp, config.max_seq_length, config.max_predictions_per_seq)
    # An empty shard gives empty datasets, which HDF5 cannot chunk: they are stored plain.
    storage = dict(
        compression=formats.HDF5_COMPRESSION, compression_opts=config.gzip_level, shuffle=formats.HDF5_SHUFFLE
    )
    f = h5py.File(path, "w")
    fd = f.id.get_vfd_handle()
    try:
        datasets = {
            name: f.create_dataset(
                name,
                shape=(n_rows, *width),
                dtype=dtype,
                chunks=(min(formats.HDF5_CHUNK_ROWS, n_rows), *width) if n_rows else None,
                track_times=False,
                **(storage if n_rows else {}),
            )
            for name, (dtype, width) in shapes.items()
        }
        row = 0
        for block in blocks:
            n = len(block[formats.INPUT_IDS])
            for name, ds in datasets.items():
                ds[row : row + n] = block[name]
            row += n
        f.flush()  # fails here rather than in close(), which HDF5 does not survive (see _discard_writes)
    except BaseException:
        _discard_writes(fd, path)
        with contextlib.suppress(Exception):
            f.close()
        raise
    try:
        f.close()
    except BaseException:
        _discard_writes(fd, path)  # not closed again: a second close after a failed one crashes HDF5
        raise
    if row != n_rows:
        raise AssertionError(f"wrote {row} rows, expected {n_rows}")


def _discard_writes(fd: int, path: Path) -> None:
    """After writes to an HDF5 file failed (a full disk): HDF5 keeps a file it could not flush open and
    retries when it is closed or at exit, where it crashes the process (SIGSEGV). Its descriptor `fd` is
    pointed at /dev/null (if it is still this file's), so the retries succeed, writing nowhere; the caller
    deletes the unfinished file."""
    with contextlib.suppress(OSError):
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


# ---------------------------------------------------------------- manifest and summary
def _build_manifest(config: MaskConfig, info: dict, vocab_info: dict, results: list[_Result]) -> formats.Manifest:
    totals, stats = {}, {}
    for split in formats.SPLITS:
        mine = [r for r in results if r.file.split == split]
        if not mine:
            continue
        counts = SampleCounts()
        for r in mine:
            counts.add(r.counts)
        totals[split] = {
            "files": len(mine),
            "samples": counts.samples,
            "bytes": sum(r.file.bytes for r in mine),
            "real_tokens": counts.real_tokens,
        }
        stats[split] = counts.summary()
    settings = dict(config.settings(), lowercase=vocab_info.get("lowercase"))
    return formats.Manifest(
        settings=settings,
        vocab=vocab_info,
        prepare=info,
        files=[r.file for r in results],
        totals=totals,
        stats=stats,
        sharebert_version=__version__,
    )


def _log_summary(config: MaskConfig, manifest: formats.Manifest, results: list[_Result], seconds: float) -> None:
    made = [r for r in results if not r.reused]
    rate = ""
    if made:
        samples = sum(r.counts.samples for r in made)
        tokens = sum(r.counts.real_tokens for r in made)
        rate = f", {samples / seconds:,.0f} samples/s, {tokens / seconds:,.0f} tokens/s"
    log.info(
        "%s: %d files (%d made, %d kept from an earlier run) in %.1f s%s",
        config.output_dir,
        len(results),
        len(made),
        len(results) - len(made),
        seconds,
        rate,
    )
    for split, stats in manifest.stats.items():
        log.info("  %s: %s", split, describe_summary(stats))
