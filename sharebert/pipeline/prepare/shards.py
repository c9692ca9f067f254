"""Phase 3 of `sharebert prepare`: route every document of the spills to its shard and write the shards.

A task owns a group of shards. It streams all spills once, in corpus order, takes the rows placed
in its shards (and cuts the parts of split documents), and appends them to one writer per shard.
A shard's rows, and its row groups, depend only on the placement, never on how shards are grouped
into tasks, so shards are byte-identical whatever the number of workers. Each shard is written
under a temporary name and renamed when complete; a small record of it (counts, sha256) is then
saved in the work folder so a resumed run skips it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...fileio import sha256_file, temporary_path
from .. import formats
from ..run_folder import UnitRecords
from .balance import Placement
from .spill import int_array, numpy_ints, read_spill, string_array


@dataclass(frozen=True)
class ShardSpec:
    index: int  # global: train shards first, then test shards
    split: str
    split_index: int
    file: str


@dataclass(frozen=True)
class ShardGroupTask:
    shards: list[ShardSpec]
    spills: list[str]  # in corpus order
    spill_rows: list[int]  # documents in each spill
    placement: str  # formats.PLACEMENT_FILE: the Placement arrays
    output_dir: str
    records: UnitRecords  # one per finished shard, named after its file
    keep_text: bool


def write_shard_group(task: ShardGroupTask) -> list[dict]:
    """Write the task's shards (skipping those a previous run finished); their prepare.json entries."""
    done = {s.index: finished_record(task.records, task.output_dir, s) for s in task.shards}
    todo = [s for s in task.shards if done[s.index] is None]
    if todo:
        with np.load(task.placement) as arrays:
            placement = Placement.from_arrays(arrays)
        writers = {s.index: _ShardWriter(Path(task.output_dir) / s.file, task.keep_text) for s in todo}
        try:
            _route(task, placement, writers)
            for spec in todo:
                record = writers.pop(spec.index).finish(spec)
                task.records.write(spec.file, record)
                done[spec.index] = record
        finally:
            for writer in writers.values():
                writer.abort()
    return [done[s.index] for s in task.shards]


def finished_record(records: UnitRecords, output_dir: str | Path, spec: ShardSpec) -> dict | None:
    """The record of a shard a previous run finished, if the shard is still there with its size."""
    record = records.read(spec.file)
    shard_path = Path(output_dir) / spec.file
    if record is None or not shard_path.exists():
        return None
    return record if record.get("bytes") == shard_path.stat().st_size else None


def _route(task: ShardGroupTask, placement: Placement, writers: dict[int, _ShardWriter]) -> None:
    mine = np.zeros(len(placement.shard_tokens), dtype=bool)
    mine[list(writers)] = True
    columns = formats.shard_columns(task.keep_text)
    first_doc = 0
    for spill, rows in zip(task.spills, task.spill_rows):
        doc_shard = placement.doc_shard[first_doc : first_doc + rows]
        whole_rows = np.flatnonzero((doc_shard >= 0) & mine[np.maximum(doc_shard, 0)])
        in_spill = (placement.part_doc >= first_doc) & (placement.part_doc < first_doc + rows)
        parts = np.flatnonzero(in_spill & mine[placement.part_shard])
        if len(whole_rows) or len(parts):
            table = read_spill(spill, columns)
            for shard, items in _items_by_shard(whole_rows, doc_shard, parts, placement, first_doc):
                _append_in_order(table, items, placement, writers[shard])
        first_doc += rows


def _items_by_shard(whole_rows, doc_shard, parts, placement: Placement, first_doc: int):
    """(shard, [(row, part number, part index or -1), ...] in corpus order) for every shard that gets rows."""
    items: dict[int, list[tuple[int, int, int]]] = {}
    for row in whole_rows.tolist():
        items.setdefault(int(doc_shard[row]), []).append((row, 0, -1))
    for i in parts.tolist():
        row = int(placement.part_doc[i]) - first_doc
        items.setdefault(int(placement.part_shard[i]), []).append((row, int(placement.part_number[i]), i))
    return sorted((shard, sorted(rows)) for shard, rows in items.items())


def _append_in_order(table, items, placement: Placement, writer: _ShardWriter) -> None:
    """Append whole rows (runs of them at once) and document parts in the given order."""
    run: list[int] = []
    for row, _, part in items:
        if part < 0:
            run.append(row)
            continue
        if run:
            writer.append(_rows(table, run))
            run = []
        writer.append(_part_table(table, row, placement, part))
    if run:
        writer.append(_rows(table, run))


def _rows(table, rows: list[int]):
    """The given rows (ascending) as one table of zero-copy slices, one per stretch of consecutive rows."""
    import pyarrow as pa

    starts = [i for i, row in enumerate(rows) if i == 0 or row != rows[i - 1] + 1]
    ends = starts[1:] + [len(rows)]
    return pa.concat_tables([table.slice(rows[a], b - a) for a, b in zip(starts, ends)])


# Row selection and counting below go through slices and offsets: `take`, `cast`, `flatten` and
# `combine_chunks` would load pyarrow.compute, ~0.08 s in every process that writes shards.
def _part_table(table, row: int, placement: Placement, part: int):
    """One row: sentences [start, end) of the document at `row`, with the id "<id>#p<number>"."""
    import pyarrow as pa

    start, end = int(placement.part_start[part]), int(placement.part_end[part])
    doc = table.slice(row, 1)
    doc_id = doc.column(formats.ID_COLUMN)[0].as_py()
    columns = {
        formats.ID_COLUMN: string_array([f"{doc_id}#p{int(placement.part_number[part])}"]),
        formats.SOURCE_COLUMN: pa.concat_arrays(doc.column(formats.SOURCE_COLUMN).chunks),
        formats.SENTENCES_COLUMN: _slice_lists(doc.column(formats.SENTENCES_COLUMN), start, end),
    }
    if formats.TEXT_COLUMN in table.column_names:
        columns[formats.TEXT_COLUMN] = _slice_lists(doc.column(formats.TEXT_COLUMN), start, end)
    return pa.table(columns)


def _slice_lists(single_row, start: int, end: int):
    """A one-row list array holding elements [start, end) of the one row of the column `single_row`."""
    import pyarrow as pa

    chunk = next(c for c in single_row.chunks if len(c))
    first = int(numpy_ints(chunk.offsets)[0])
    elements = chunk.values.slice(first + start, end - start)
    offsets = int_array(np.array([0, end - start], dtype=np.int32), pa.int32())
    return pa.ListArray.from_arrays(offsets, pa.concat_arrays([elements]))


def _sentences_and_tokens(documents) -> tuple[int, int]:
    """Sentences and tokens in a chunk of the sentences column (a slice of one, too)."""
    doc_offsets = numpy_ints(documents.offsets)
    first, last = int(doc_offsets[0]), int(doc_offsets[-1])
    sentence_offsets = numpy_ints(documents.values.offsets)
    return last - first, int(sentence_offsets[last] - sentence_offsets[first])


class _ShardWriter:
    """Buffers rows of one shard and writes them as row groups of bounded size, under a temporary name."""

    def __init__(self, path: Path, keep_text: bool):
        self.path = path
        self.schema = formats.parquet_schema(keep_text)
        self._tmp = temporary_path(path)
        self._writer = None
        self._buffer: list = []
        self._buffer_rows = 0
        self._buffer_tokens = 0
        self.documents = self.sentences = self.tokens = self.row_groups = 0

    def append(self, table) -> None:
        import pyarrow as pa

        # The spill's columns under the shard's schema (same types; the fields become non-nullable).
        table = pa.Table.from_arrays([table.column(name) for name in self.schema.names], schema=self.schema)
        counts = [_sentences_and_tokens(chunk) for chunk in table.column(formats.SENTENCES_COLUMN).chunks]
        sentences, tokens = sum(c[0] for c in counts), sum(c[1] for c in counts)
        self.documents += table.num_rows
        self.sentences += sentences
        self.tokens += tokens
        self._buffer.append(table)
        self._buffer_rows += table.num_rows
        self._buffer_tokens += tokens
        if self._buffer_rows >= formats.ROW_GROUP_ROWS or self._buffer_tokens >= formats.ROW_GROUP_TOKENS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._buffer:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, self.schema, **formats.parquet_writer_options())
        table = pa.concat_tables(self._buffer).combine_chunks()
        self._writer.write_table(table, row_group_size=table.num_rows)
        self.row_groups += 1
        self._buffer, self._buffer_rows, self._buffer_tokens = [], 0, 0

    def finish(self, spec: ShardSpec) -> dict:
        if self.documents == 0:
            raise AssertionError(f"shard {spec.file} received no documents")  # balancing guarantees some
        self._flush()
        self._writer.close()
        self._writer = None
        with open(self._tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self._tmp, self.path)
        return {
            "file": spec.file,
            "split": spec.split,
            "index": spec.split_index,
            "documents": self.documents,
            "sentences": self.sentences,
            "tokens": self.tokens,
            "row_groups": self.row_groups,
            "bytes": self.path.stat().st_size,
            "sha256": sha256_file(self.path),
        }

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


__all__ = ["ShardGroupTask", "ShardSpec", "write_shard_group"]
