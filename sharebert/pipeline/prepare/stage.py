"""`sharebert prepare`: raw Wikipedia dumps, books, text and datasets -> balanced, tokenized Parquet shards.

    inputs --(main process: read, batch)--> phase 1 (workers: clean, split, tokenize -> spill files)
           (a multistream Wikipedia dump: the main process cuts it into parts, workers read them)
           --> phase 2 (main: seeded train/test split, token-balanced placement)
           --> phase 3 (workers: spills -> shards) --> vocab.txt, prepare.json (last)

Spills, the placement and per-shard records live in a hidden work folder inside the output folder;
it is removed at the end. Batches are cut by the reader (document count and characters), never by
the number of workers, and shards are written in corpus order, so the same inputs, settings and
seed give byte-identical output with any --workers. An interrupted run leaves no prepare.json (the
mark of a complete folder); rerunning the same command resumes from the finished spills and shards.
docs/prepare.md describes the stage and its output.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError
from ...fileio import folder_bytes, space_needed, write_bytes_atomic, write_json_atomic
from ...progress import progress_bar
from ...tokenization import read_vocab
from .. import formats
from ..engines import open_pool
from ..run_folder import Claim, RunFolder
from . import output as prepare_output
from .balance import Placement, place_documents
from .config import INPUT_KINDS, InputSpec, PrepareConfig
from .records import DocumentPart, RawDocument, ReadStats, bounded_documents
from .shards import ShardGroupTask, ShardSpec, finished_record, write_shard_group
from .sources import open_source
from .sources.books import PART_BYTES as BOOKS_PART_BYTES
from .sources.common import Source
from .sources.hf import PART_BYTES as HF_PART_BYTES
from .sources.hf import PART_ROWS as HF_PART_ROWS
from .sources.text import PART_BYTES as TEXT_PART_BYTES
from .sources.text import SCAN_BYTES as TEXT_SCAN_BYTES
from .sources.wiki import PART_BYTES as DUMP_PART_BYTES
from .spill import (
    BatchResult,
    BatchTask,
    Tokenization,
    TokenizeTask,
    iter_spill_sentences,
    process_batch,
    sentence_token_lengths,
    tokenize_spill,
)

log = logging.getLogger(__name__)

# A batch (one phase-1 task) closes at this many characters of raw text or documents.
BATCH_CHARS = 1 << 20
BATCH_DOCUMENTS = 2048
MAX_SHARDS_PER_TASK = 64  # bounds the open writers (and their buffers) of one phase-3 worker
WORKER_MODULES = (
    "sharebert.pipeline.prepare.spill",
    "sharebert.pipeline.prepare.shards",
    "sharebert.pipeline.prepare.encode",
    "pyarrow.parquet",
    "pyarrow.compute",
    "tokenizers",
)  # imported once, in the fork server


# ---------------------------------------------------------------- the stage
def prepare(config: PrepareConfig) -> dict:
    """Write the prepared folder (or find it already complete) and return its prepare.json content."""
    with space_needed(config.output_dir, lambda: bytes_still_to_write(config)):
        return _prepare(config)


def _prepare(config: PrepareConfig) -> dict:
    started = time.perf_counter()
    # The workers' fork server boots in the background while the inputs are checked.
    folder = prepare_output.run_folder(config)
    with open_pool(config.engine, config.workers, preload=WORKER_MODULES, ray_address=config.ray_address) as pool:
        sources, given, existing = _begin(config, folder, pool.workers)
        if existing is not None:
            log.info("%s already holds this run (same inputs and settings): nothing to do", config.output_dir)
            return existing
        work = folder.work
        pool.check_shared(readable=_input_paths(config), writable=[work])
        spills, results, stats, vocab_path, trained = _tokenized_spills(config, sources, work, pool, given)
        log.debug("phase 1 (read, clean, split, tokenize): %.2f s", time.perf_counter() - started)
        doc_tokens = np.concatenate([r.tokens for r in results]) if results else np.zeros(0, np.int64)
        if len(doc_tokens) == 0:
            folder.abandon()
            raise DataError(f"no documents extracted from {_describe_inputs(sources)} ({_describe_skips(stats)}): "
                            "nothing to write")  # fmt: skip
        placed = time.perf_counter()
        try:
            placement = _place(config, spills, results, doc_tokens)
        except DataError:  # the inputs cannot make these shards (too few documents): nothing to resume
            folder.abandon()
            raise
        log.debug("phase 2 (placement): %.2f s", time.perf_counter() - placed)
        np.savez(work / formats.PLACEMENT_FILE, **placement.as_arrays())
        written = time.perf_counter()
        records = _write_shards(config, spills, results, folder, pool)
        log.debug("phase 3 (shards): %.2f s", time.perf_counter() - written)
        pool.release()  # the workers exit while the last files are written

        write_bytes_atomic(config.output_dir / formats.VOCAB_FILE, Path(vocab_path).read_bytes())
        info = prepare_output.prepare_info(config, sources, stats, results, placement, records, vocab_path, trained)
        write_json_atomic(config.output_dir / formats.PREPARE_INFO_FILE, info)
    folder.remove_work()
    _log_summary(config, sources, info, time.perf_counter() - started)
    return info


def _begin(
    config: PrepareConfig, folder: RunFolder, workers: int
) -> tuple[list[Source], Tokenization | None, dict | None]:
    """Check inputs and vocab, claim the output folder: (sources, tokenization of --vocab, finished run's info)."""
    if config.used_default_input:
        log.info("no input given: using the built-in corpus (pydoc topics and standard-library docstrings)")
    sources = _open_sources(config)
    for source in sources:
        source.check()
    _check_output_apart_from_inputs(config)
    given = Tokenization.of(config.vocab, config.lowercase) if config.vocab is not None else None  # checks the vocab
    if config.vocab is not None:
        _check_vocab_case(config.vocab, config.lowercase)
    identity = prepare_output.run_identity(config, sources)
    resume_key = {"input_mtimes": prepare_output.input_mtimes(sources), "batch_chars": BATCH_CHARS,
                  "batch_documents": BATCH_DOCUMENTS, "dump_part_bytes": DUMP_PART_BYTES,
                  "books_part_bytes": BOOKS_PART_BYTES, "text_part_bytes": [TEXT_PART_BYTES, TEXT_SCAN_BYTES],
                  "hf_part": [HF_PART_BYTES, HF_PART_ROWS]}  # fmt: skip
    claim = folder.claim(identity, overwrite=config.overwrite, resume_key=resume_key, keep=config.vocab)
    existing = formats.read_prepare_info(config.output_dir) if claim is Claim.COMPLETE else None
    if existing is None:
        log.info(
            "prepare: %d input(s), %.1f MB -> %s (%d train + %d test shards, %d worker(s))",
            len(sources), sum(s.size() for s in sources) / 1e6, config.output_dir,
            config.num_train_shards, config.num_test_shards, workers,
        )  # fmt: skip
    return sources, given, existing


def _input_paths(config: PrepareConfig) -> list[Path]:
    """The files and folders that tasks read (a hub dataset and the built-in corpus are read here)."""
    paths = [Path(spec.path) for spec in config.inputs if spec.kind in ("wiki", "books", "text")]
    return paths + ([config.vocab] if config.vocab is not None else [])


def _check_output_apart_from_inputs(config: PrepareConfig) -> None:
    """The output folder must not be an input folder or inside one (a rerun would read the shards as input)."""
    out = config.output_dir.resolve()
    for spec in config.inputs:
        if spec.kind == "builtin" or not Path(spec.path).exists():
            continue
        path = Path(spec.path).resolve()
        if out == path or (path.is_dir() and path in out.parents):
            raise ConfigError(f"-o {config.output_dir}: the output folder must be apart from the input --{spec.kind} "
                              f"{spec.path}")  # fmt: skip


def _open_sources(config: PrepareConfig) -> list[Source]:
    labels = _labels(config.inputs)
    return [
        open_source(spec.kind, spec.path, label, text_column=config.text_column, split=config.hf_split)
        for spec, label in zip(config.inputs, labels)
    ]


def _labels(inputs: list[InputSpec]) -> list[str]:
    """How documents name their input: the file or folder name (a hub dataset: its name), or the path
    when two inputs share a name."""
    local = [i.kind != "builtin" and (i.kind != "hf" or Path(i.path).exists()) for i in inputs]
    names = [Path(i.path).name if is_local else i.path for i, is_local in zip(inputs, local)]
    return [
        Path(i.path).as_posix() if is_local and names.count(name) > 1 else name
        for i, name, is_local in zip(inputs, names, local)
    ]


_BRACKETED_LINES = re.compile(r"^\[.*\]$", re.MULTILINE)  # [CLS], [unused0]...: no case to judge


def _check_vocab_case(vocab_path: Path, lowercase: bool) -> None:
    text = vocab_path.read_text(encoding="utf-8")  # already checked by read_vocab
    words = _BRACKETED_LINES.sub("", text)
    cased = 0 if words == words.lower() else sum(1 for t in words.splitlines() if t != t.lower())
    if lowercase and cased > text.count("\n") // 20:
        log.warning("%s looks cased (%d tokens with capitals) but --lowercase is on: did you mean --cased?",
                    vocab_path, cased)  # fmt: skip
    if not lowercase and cased == 0:
        log.warning("%s has no capitalized tokens but --cased is on: did you mean --lowercase?", vocab_path)


# ---------------------------------------------------------------- phase 1: spills
def _tokenized_spills(config, sources, work, pool, given: Tokenization | None):
    """Phase 1 (and vocabulary training): (spill paths, their results, read stats, vocab path, trained?)."""
    trained_vocab = work / formats.VOCAB_FILE
    stats = [ReadStats() for _ in sources]
    if given is not None or trained_vocab.exists():  # a resumed run may have trained its vocab already
        tokenization = given or Tokenization.of(trained_vocab, config.lowercase)
        spills, results = _run_batches(config, sources, stats, work, pool, tokenization)
        return spills, results, stats, Path(tokenization.vocab), given is None

    text_spills, text_results = _run_batches(config, sources, stats, work, pool, None)
    if not any(len(r.tokens) for r in text_results):
        return [], [], stats, None, True
    alphabet = "".join(sorted(set().union(*(r.alphabet for r in text_results))))
    log.info("training a WordPiece vocabulary of %d tokens on %d sentences", config.train_vocab,
             sum(int(r.sentences.sum()) for r in text_results))  # fmt: skip
    from .encode import train_vocabulary

    train_vocabulary(
        iter_spill_sentences(text_spills),
        config.train_vocab,
        config.lowercase,
        alphabet,
        trained_vocab,
        total=sum(int(r.sentences.sum()) for r in text_results),
        parallel=pool.workers > 1,
    )
    trained_size = len(read_vocab(trained_vocab))  # the trainer's output must be a valid BERT vocab
    if trained_size < config.train_vocab:
        log.info("the corpus yields a vocabulary of %d tokens (fewer than the %d asked for)", trained_size,
                 config.train_vocab)  # fmt: skip
    tokenization = Tokenization.of(trained_vocab, config.lowercase)
    spills = [work / formats.spill_file_name(r.index, tokenized=True) for r in text_results]
    tasks = (
        TokenizeTask(r.index, str(text), str(spill), tokenization, config.keep_text)
        for r, text, spill in zip(text_results, text_spills, spills)
    )
    with progress_bar(total=len(spills), unit="batch", desc="tokenize") as bar:
        results = []
        for result in pool.map_ordered(tokenize_spill, tasks, cost=_text_spill_bytes, describe=_describe_tokenize):
            results.append(result)
            bar.update(1)
    return spills, results, stats, trained_vocab, True


def _run_batches(config, sources, stats, work, pool, tokenization):
    spills: list[Path] = []
    results: list[BatchResult] = []
    total_bytes = sum(s.size() for s in sources)
    desc = "read+tokenize" if tokenization else "read+split"
    with progress_bar(total=total_bytes or None, unit="B", unit_scale=True, desc=desc) as bar:
        read_by_workers: dict[int, ReadStats] = {}  # batch index -> the stats its part's reading adds to
        read_when_cut: dict[int, int] = {}  # batch index -> input bytes read up to its end
        kept = 0  # batches an interrupted run finished

        def tasks() -> Iterator[BatchTask]:
            nonlocal kept
            for index, (documents, part_stats) in enumerate(_batches(sources, stats)):
                read_when_cut[index] = sum(s.bytes_read for s in sources)
                spill = work / formats.spill_file_name(index, tokenized=tokenization is not None)
                spills.append(spill)
                kept += spill.exists()
                if part_stats is not None:
                    read_by_workers[index] = part_stats
                yield BatchTask(index, documents, str(spill), tokenization, config.keep_text)

        documents = 0
        # Reading runs ahead of the workers (4 batches each) so they never wait, also while they start.
        in_flight = 4 * pool.workers
        for result in pool.map_ordered(
            process_batch, tasks(), max_in_flight=in_flight, cost=_batch_chars, describe=_describe_batch
        ):
            results.append(result)
            if result.index in read_by_workers:
                read_by_workers.pop(result.index).add(result.read_stats)
            bar.update(max(0, read_when_cut.pop(result.index) - bar.n))  # the bytes of finished batches
            documents += len(result.tokens)
            bar.set_postfix(documents=f"{documents:,}", refresh=False)
        bar.update(max(0, sum(s.bytes_read for s in sources) - bar.n))
    _log_resumed(desc, "batches", len(spills), kept)
    return spills, results


def _log_resumed(step: str, units: str, total: int, kept: int) -> None:
    if kept:
        log.info("%s: %d %s (%d made, %d kept from an earlier run)", step, total, units, total - kept, kept)


def _text_spill_bytes(task: TokenizeTask) -> int:
    path = Path(task.text_spill)
    return path.stat().st_size if path.exists() else 0  # gone: tokenized by an earlier run


def _describe_batch(task: BatchTask) -> str:
    if isinstance(task.documents, list):
        first, last = task.documents[0].id, task.documents[-1].id
        return f"batch {task.index} (documents {first} to {last})"
    return f"batch {task.index} ({task.documents.describe()})"


def _describe_tokenize(task: TokenizeTask) -> str:
    return f"batch {task.index} (tokenizing {task.text_spill})"


def _batch_chars(task: BatchTask) -> int:
    """About how many characters a phase-1 task reads: its work, to start the largest ones first."""
    if isinstance(task.documents, list):
        return sum(len(d.text) for d in task.documents)
    return task.documents.estimated_chars()


def _batches(
    sources: list[Source], stats: list[ReadStats]
) -> Iterator[tuple[list[RawDocument] | DocumentPart, ReadStats | None]]:
    """All inputs in order, as batches: raw documents cut by size, or the parts of an input that workers
    read themselves (with the stats that reading them adds to). Never cut by the number of workers."""
    batch: list[RawDocument] = []
    chars = 0
    for source, source_stats in zip(sources, stats):
        parts = source.parts()
        if parts is not None:
            if batch:
                yield batch, None
                batch, chars = [], 0
            for part in parts:
                yield part, source_stats
            continue
        for document in bounded_documents(source.documents(source_stats)):
            batch.append(document)
            chars += len(document.text)
            if chars >= BATCH_CHARS or len(batch) >= BATCH_DOCUMENTS:
                yield batch, None
                batch, chars = [], 0
    if batch:
        yield batch, None


# ---------------------------------------------------------------- phase 2: placement
def _place(config: PrepareConfig, spills: list[Path], results: list[BatchResult], doc_tokens) -> Placement:
    first_doc = np.cumsum([0] + [len(r.tokens) for r in results])

    def sentence_lengths(docs: np.ndarray) -> dict[int, np.ndarray]:
        found: dict[int, np.ndarray] = {}
        batch_of = np.searchsorted(first_doc, docs, side="right") - 1
        for batch in sorted(set(batch_of.tolist())):  # (np.unique would import numpy.ma: 0.02 s)
            in_batch = docs[batch_of == batch]
            rows = (in_batch - first_doc[batch]).tolist()
            lengths = sentence_token_lengths(spills[batch], rows)
            found.update({int(d): lengths[r] for d, r in zip(in_batch.tolist(), rows)})
        return found

    return place_documents(
        doc_tokens, config.num_train_shards, config.num_test_shards, config.frac_test, config.seed, sentence_lengths
    )


# ---------------------------------------------------------------- phase 3: shards
# The most a prepared folder held during a run (work files and shards), per byte of input: measured on the
# built-in corpus (0.78), the enwiki sample as .bz2 (1.29) and as XML (0.36), rounded up.
PEAK_BYTES_PER_INPUT_BYTE = {"compressed": 1.5, "wiki": 0.5, "text": 1.0}
_COMPRESSED_SUFFIXES = (".bz2", ".gz", ".xz", ".zst", ".zstd")


def bytes_still_to_write(config: PrepareConfig) -> int:
    """About how many bytes this run still has to write into its folder (for the message of a full disk)."""
    peak = 0.0
    for source in _open_sources(config):
        if source.path.endswith(_COMPRESSED_SUFFIXES):
            kind = "compressed"
        else:
            kind = "wiki" if source.kind == "wiki" else "text"
        peak += source.size() * PEAK_BYTES_PER_INPUT_BYTE[kind]
    return max(round(peak) - folder_bytes(config.output_dir), 0)


def shard_specs(num_train: int, num_test: int) -> list[ShardSpec]:
    specs = [ShardSpec(k, "train", k, formats.shard_file_name("train", k, num_train)) for k in range(num_train)]
    specs += [
        ShardSpec(num_train + k, "test", k, formats.shard_file_name("test", k, num_test)) for k in range(num_test)
    ]
    return specs


def _write_shards(config, spills, results, folder: RunFolder, pool) -> list[dict]:
    specs = shard_specs(config.num_train_shards, config.num_test_shards)
    per_task = min(math.ceil(len(specs) / pool.workers), MAX_SHARDS_PER_TASK)
    tasks = [
        ShardGroupTask(
            shards=specs[i : i + per_task],
            spills=[str(s) for s in spills],
            spill_rows=[len(r.tokens) for r in results],
            placement=str(folder.work / formats.PLACEMENT_FILE),
            output_dir=str(config.output_dir),
            records=folder.records,
            keep_text=config.keep_text,
        )
        for i in range(0, len(specs), per_task)
    ]
    records: list[dict] = []
    kept = sum(finished_record(folder.records, config.output_dir, spec) is not None for spec in specs)
    with progress_bar(total=len(specs), unit="shard", desc="write shards") as bar:
        for group in pool.map_ordered(write_shard_group, tasks, describe=_describe_shards):
            records.extend(group)
            bar.update(len(group))
    _log_resumed("write shards", "shards", len(specs), kept)
    return records


def _describe_shards(task: ShardGroupTask) -> str:
    names = [s.file for s in task.shards]
    return names[0] if len(names) == 1 else f"shards {names[0]} to {names[-1]}"


def _describe_inputs(sources: list[Source]) -> str:
    return ", ".join(f"--{s.kind} {s.path}" if s.kind != "builtin" else "--builtin" for s in sources)


def _describe_skips(stats: list[ReadStats]) -> str:
    total = ReadStats()
    for s in stats:
        total.add(s)
    parts = [f"{total.documents_read} document(s) read"]
    for name, value in total.as_dict().items():
        if value and name not in ("documents_read", "files_read"):
            parts.append(f"{value} {name.replace('_', ' ')}")
    return ", ".join(parts)


def _log_summary(config: PrepareConfig, sources: list[Source], info: dict, seconds: float) -> None:
    train, test = info["totals"]["train"], info["totals"]["test"]
    size = sum(s.size() for s in sources)
    log.info(
        "prepared %s train documents (%s tokens) in %d shards and %s test documents (%s tokens) in %d shards "
        "in %.1f s (%.2f MB/s of input); max shard / mean: %s",
        f"{train['documents']:,}", f"{train['tokens']:,}", train["shards"],
        f"{test['documents']:,}", f"{test['tokens']:,}", test["shards"],
        seconds, size / 1e6 / max(seconds, 1e-9),
        ", ".join(f"{k} {v['max_over_mean']:.4f}" for k, v in info["stats"]["balance"].items()),
    )  # fmt: skip
    log.info("wrote %s (read it with sharebert.pipeline.formats.read_prepare_info)", config.output_dir)


__all__ = ["INPUT_KINDS", "InputSpec", "PrepareConfig", "prepare"]
