"""Phase 1 of `sharebert prepare`, run by the workers: a batch of raw documents -> one spill file.

A batch is either raw documents the main process read, or a part of an input that the worker reads
itself (a run of streams of a multistream dump); what that reading counted (redirects skipped...) is
kept in the spill, so a resumed run still knows it.

A worker cleans and splits every document of its batch, tokenizes all their sentences in one call,
drops empty sentences and documents, and writes the batch as an Arrow "spill" file in the run's hidden
work folder, together with each document's token count. Phase 2 balances shards from those counts;
phase 3 (`shards.py`) reads the spills back. A spill is written under a temporary name and renamed
when complete, so an existing spill is a finished task: a resumed run reuses it.

With --train-vocab there is no vocabulary yet: phase 1 writes *text* spills (sentences as strings
plus the batch's alphabet), a vocabulary is trained over them, and `tokenize_spill` turns each text
spill into a token spill.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...fileio import temporary_path
from .. import formats
from .records import Document, DocumentPart, RawDocument, ReadStats, bounded_documents
from .segment import segment

_META_EMPTY = b"sharebert.empty_documents"
_META_ALPHABET = b"sharebert.alphabet"
_META_READ = b"sharebert.read_stats"  # what the worker counted while reading a DocumentPart


@dataclass(frozen=True)
class Tokenization:
    """How workers tokenize: `bert_tokenizer(vocab, lowercase)`, serialized by the main process."""

    vocab: str
    lowercase: bool
    tokenizer_json: str

    @classmethod
    def of(cls, vocab: str | Path, lowercase: bool) -> Tokenization:
        """Also builds this process's encoder for it: workers forked from here inherit it ready."""
        from ...tokenization import bert_tokenizer

        tokenizer = bert_tokenizer(vocab, lowercase)
        tokenization = cls(str(vocab), lowercase, tokenizer.to_str())
        encoder_for(tokenization, tokenizer)
        return tokenization

    @property
    def key(self) -> tuple:
        return self.vocab, self.lowercase, hash(self.tokenizer_json)


@dataclass(frozen=True)
class BatchTask:
    index: int
    documents: list[RawDocument] | DocumentPart  # a part: the worker reads its documents itself
    spill: str  # final path of the spill file
    tokenization: Tokenization | None  # None: write a text spill (vocabulary not trained yet)
    keep_text: bool


@dataclass(frozen=True)
class TokenizeTask:
    index: int
    text_spill: str
    spill: str
    tokenization: Tokenization
    keep_text: bool


@dataclass(frozen=True)
class BatchResult:
    """What a spill holds: per-document token and sentence counts (tokens are 0 in text spills)."""

    index: int
    tokens: np.ndarray  # int64 per document
    sentences: np.ndarray  # int64 per document
    empty_documents: int  # documents dropped because nothing was left after cleaning
    alphabet: str = ""  # text spills only: every character of the batch's sentences, sorted
    read_stats: ReadStats | None = None  # what reading the batch's DocumentPart counted


# ---------------------------------------------------------------- worker entry points
def process_batch(task: BatchTask) -> BatchResult:
    path = Path(task.spill)
    if path.exists():
        return read_batch_result(task.index, path)
    raw, read_stats = task.documents, None
    if not isinstance(raw, list):
        read_stats = ReadStats()
        raw = bounded_documents(raw.documents(read_stats))
    documents = [segment(r) for r in raw]
    kept = [d for d in documents if d.sentences]
    empty = len(documents) - len(kept)
    if task.tokenization is None:
        return _write_text_spill(task.index, path, kept, empty, read_stats)
    return _write_token_spill(task.index, path, kept, empty, task.tokenization, task.keep_text, read_stats)


def tokenize_spill(task: TokenizeTask) -> BatchResult:
    path = Path(task.spill)
    if not path.exists():
        documents, empty, read_stats = read_text_spill(Path(task.text_spill))
        _write_token_spill(task.index, path, documents, empty, task.tokenization, task.keep_text, read_stats)
    Path(task.text_spill).unlink(missing_ok=True)
    return read_batch_result(task.index, path)


_encoders: dict = {}


def encoder_for(tokenization: Tokenization, tokenizer=None):
    """The process's SentenceEncoder for this vocab (built once per process; from `tokenizer` when given,
    else from the tokenization's JSON)."""
    from .encode import SentenceEncoder

    if tokenization.key not in _encoders:
        _encoders.clear()
        if tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(tokenization.tokenizer_json)
        _encoders[tokenization.key] = SentenceEncoder(tokenization.vocab, tokenization.lowercase, tokenizer=tokenizer)
    return _encoders[tokenization.key]


# ---------------------------------------------------------------- spill files
def _write_token_spill(index, path, documents, empty, tokenization, keep_text, read_stats) -> BatchResult:
    import pyarrow as pa

    texts = [s for d in documents for s in d.sentences]
    flat, lengths = encoder_for(tokenization).encode_flat(texts)
    counts = np.fromiter((len(d.sentences) for d in documents), dtype=np.int64, count=len(documents))
    owner = np.repeat(np.arange(len(documents)), counts)
    if (lengths == 0).any():  # sentences the normalizer erased entirely (e.g. only combining marks)
        keep = lengths > 0
        owner, lengths = owner[keep], lengths[keep]
        texts = [t for t, k in zip(texts, keep.tolist()) if k]
        counts = np.bincount(owner, minlength=len(documents)).astype(np.int64)
    doc_tokens = np.bincount(owner, weights=lengths, minlength=len(documents)).astype(np.int64)
    nonempty = counts > 0
    empty += int((~nonempty).sum())
    documents = [d for d, k in zip(documents, nonempty.tolist()) if k]
    counts, doc_tokens = counts[nonempty], doc_tokens[nonempty]
    sentences = nested_list(nested_list(int_array(flat, formats.token_arrow_type()), lengths), counts)
    columns = {
        formats.ID_COLUMN: string_array([d.id for d in documents]),
        formats.SOURCE_COLUMN: string_array([d.source for d in documents]),
        formats.SENTENCES_COLUMN: sentences,
    }
    if keep_text:
        columns[formats.TEXT_COLUMN] = nested_list(string_array(texts), counts)
    columns[formats.SPILL_TOKENS_COLUMN] = int_array(doc_tokens, pa.int64())
    _write_table(path, pa.table(columns), _metadata(empty, read_stats))
    return BatchResult(index, doc_tokens, counts, empty, read_stats=read_stats)


def _write_text_spill(index, path, documents: list[Document], empty: int, read_stats) -> BatchResult:
    import pyarrow as pa

    texts = [s for d in documents for s in d.sentences]
    counts = np.fromiter((len(d.sentences) for d in documents), dtype=np.int64, count=len(documents))
    alphabet = "".join(sorted(set("".join(texts))))
    table = pa.table(
        {
            formats.ID_COLUMN: string_array([d.id for d in documents]),
            formats.SOURCE_COLUMN: string_array([d.source for d in documents]),
            formats.TEXT_COLUMN: nested_list(string_array(texts), counts),
        }
    )
    metadata = {**_metadata(empty, read_stats), _META_ALPHABET: json.dumps(alphabet).encode()}
    _write_table(path, table, metadata)
    return BatchResult(index, np.zeros(len(documents), dtype=np.int64), counts, empty, alphabet, read_stats)


def _metadata(empty: int, read_stats: ReadStats | None) -> dict[bytes, bytes]:
    metadata = {_META_EMPTY: str(empty).encode()}
    if read_stats is not None:
        metadata[_META_READ] = json.dumps(read_stats.as_dict()).encode()
    return metadata


def _read_stats(metadata: dict) -> ReadStats | None:
    return ReadStats(**json.loads(metadata[_META_READ])) if _META_READ in metadata else None


# pyarrow's pa.array() and .to_numpy() import pandas (~0.4 s per process); these helpers go through
# buffers instead, which is also zero-copy.
def int_array(values: np.ndarray, type_):
    """A null-free pyarrow integer array over a numpy array."""
    import pyarrow as pa

    values = np.ascontiguousarray(values, dtype=type_.to_pandas_dtype())
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


def string_array(strings: list[str]):
    import pyarrow as pa

    encoded = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def numpy_ints(array) -> np.ndarray:
    """A null-free pyarrow integer array (not chunked) as a numpy view."""
    dtype = np.dtype(array.type.to_pandas_dtype())
    data = array.buffers()[1]
    if data is None or len(array) == 0:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def nested_list(values, lengths: np.ndarray):
    """A pyarrow ListArray grouping `values` into consecutive lists of the given lengths."""
    import pyarrow as pa

    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(int_array(offsets, pa.int32()), values)


def _write_table(path: Path, table, metadata: dict[bytes, bytes]) -> None:
    import pyarrow as pa

    table = table.replace_schema_metadata(metadata)
    options = pa.ipc.IpcWriteOptions(compression=formats.SPILL_COMPRESSION)
    # A temporary name and a rename, without fsync: spills are scratch files of this run.
    tmp = temporary_path(path)
    try:
        with pa.ipc.new_file(tmp, table.schema, options=options) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_spill(path: Path | str, columns: list[str] | None = None):
    """A spill as a pyarrow Table (memory-mapped; only `columns` when given)."""
    import pyarrow as pa

    # The map stays open while the table's buffers use it; it closes when they are released.
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    return table.select(columns) if columns is not None else table


def read_batch_result(index: int, path: Path) -> BatchResult:
    table = read_spill(path)
    metadata = table.schema.metadata or {}
    empty = int(metadata.get(_META_EMPTY, b"0"))
    if _META_ALPHABET in metadata:
        counts = _list_lengths(table.column(formats.TEXT_COLUMN))
        alphabet = json.loads(metadata[_META_ALPHABET])
        return BatchResult(index, np.zeros(len(counts), dtype=np.int64), counts, empty, alphabet, _read_stats(metadata))
    counts = _list_lengths(table.column(formats.SENTENCES_COLUMN))
    tokens = numpy_ints(table.column(formats.SPILL_TOKENS_COLUMN).combine_chunks()).astype(np.int64)
    return BatchResult(index, tokens, counts, empty, read_stats=_read_stats(metadata))


def read_text_spill(path: Path) -> tuple[list[Document], int, ReadStats | None]:
    table = read_spill(path)
    metadata = table.schema.metadata or {}
    documents = [
        Document(r[formats.ID_COLUMN], r[formats.SOURCE_COLUMN], r[formats.TEXT_COLUMN]) for r in table.to_pylist()
    ]
    return documents, int(metadata.get(_META_EMPTY, b"0")), _read_stats(metadata)


def iter_spill_sentences(paths: list[Path]):
    """Every sentence text of the text spills, in corpus order (for vocabulary training)."""
    for path in paths:
        for sentences in read_spill(path, [formats.TEXT_COLUMN]).column(formats.TEXT_COLUMN).to_pylist():
            yield from sentences


def sentence_token_lengths(path: Path, rows: list[int]) -> dict[int, np.ndarray]:
    """Token count of every sentence of the given rows of a token spill."""
    column = read_spill(path, [formats.SENTENCES_COLUMN]).column(formats.SENTENCES_COLUMN).combine_chunks()
    doc_offsets = numpy_ints(column.offsets)
    sentence_offsets = numpy_ints(column.values.offsets)
    result = {}
    for row in rows:
        bounds = sentence_offsets[doc_offsets[row] : doc_offsets[row + 1] + 1]
        result[row] = np.diff(bounds).astype(np.int64)
    return result


def _list_lengths(column) -> np.ndarray:
    return np.diff(numpy_ints(column.combine_chunks().offsets)).astype(np.int64)
