"""A Hugging Face `datasets` source: a `save_to_disk` folder, a folder or file of parquet/json/arrow/csv
data, or a hub name (only this one touches the network, and only when the user names it).

Data files and hub datasets are streamed (no cache copy of the corpus); `save_to_disk` folders are
memory-mapped by `datasets` itself, and read in parts of consecutive rows (HFRows), each by a worker, so
their text does not pass through the process that plans the run. `datasets` is imported only here, when
such a source is used (for a saved dataset, in the workers too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ....errors import DataError, file_error
from ..records import PLAIN, RawDocument, ReadStats
from .common import Source

DATA_FILE_SUFFIXES = (".parquet", ".json", ".jsonl", ".arrow", ".csv", ".txt", ".json.gz", ".jsonl.gz")
_BATCH_ROWS = 1000
PART_BYTES = 1 << 20  # a part of a saved dataset or of Parquet files: consecutive rows of about this much text
PART_ROWS = 2048  # or this many rows


class HFDatasetSource(Source):
    kind = "hf"

    def __init__(self, path: str, label: str, text_column: str = "text", split: str = "train"):
        super().__init__(path, label)
        self.text_column = text_column
        self.split = split
        self._local = Path(os.path.expanduser(path))
        self._dataset = None

    def check(self) -> None:
        """Open the dataset now (streamed: only its metadata is read) so that problems show before any work."""
        if _looks_like_path(self.path) and not self._local.exists():
            raise file_error(self.path, "dataset not found (no such file or folder)")
        try:
            import datasets  # noqa: F401
        except ImportError:
            raise DataError(f"{self.path}: reading Hugging Face datasets needs the `datasets` package "
                            "(pip install 'sharebert[hf]')") from None  # fmt: skip
        self._dataset = self._open()

    def size(self) -> int:
        if not self._local.exists():
            return 0
        if self._local.is_file():
            return self._local.stat().st_size
        return sum(p.stat().st_size for p in self._local.rglob("*") if p.is_file())

    def describe(self) -> dict:
        return {**super().describe(), "text_column": self.text_column, "split": self.split}

    def documents(self, stats: ReadStats) -> Iterator[RawDocument]:
        parts = self.parts()
        if parts is not None:
            for part in parts:
                yield from part.documents(stats)
            return
        dataset = self._dataset if self._dataset is not None else self._open()
        self._dataset = None
        row = 0
        for batch in _batches(dataset):
            for text in batch[self.text_column]:
                document = _document(text, row, self.source_name, self.split, stats)
                if document is not None:
                    self.bytes_read += len(text)
                    yield document
                row += 1
        stats.files_read += 1

    def parts(self) -> Iterator[HFRows | ParquetRows] | None:
        """A saved dataset, or a split whose data files are all Parquet, as parts of consecutive rows that
        workers read themselves (cut from the text lengths or the files' footers alone); None for other data
        files and hub datasets, which are streamed here."""
        if self._local.is_dir() and _is_saved_dataset(self._local):
            return self._saved_parts()
        files = self._parquet_files()
        return None if files is None else self._parquet_parts(files)

    def _saved_parts(self) -> Iterator[HFRows] | None:
        dataset = self._dataset if self._dataset is not None else self._open()
        column = dataset.data.column(self.text_column)
        if not _is_text(column.type):
            return None  # read here, row by row: a row that is not text is skipped and counted
        self._dataset = None
        return self._cut_saved(_text_bytes(column))

    def _cut_saved(self, lengths) -> Iterator[HFRows]:
        size, rows, start, chars = self.size(), len(lengths), 0, 0
        for row, length in enumerate(lengths.tolist()):
            chars += length
            if chars >= PART_BYTES or row + 1 - start >= PART_ROWS or row + 1 == rows:
                self.bytes_read = size * (row + 1) // rows
                yield HFRows(str(self._local), self.split, self.text_column, start, row + 1, chars, self.source_name)
                start, chars = row + 1, 0

    def _parquet_files(self) -> list[str] | None:
        """The split's data files in the order `datasets` streams them, when all are Parquet with a text column."""
        if self._local.is_file():
            files = [str(self._local)]
        elif self._local.is_dir():
            import datasets

            try:
                data_files = datasets.load_dataset_builder(str(self._local)).config.data_files or {}
            except Exception:  # left to the streamed path, which reports what is wrong
                return None
            files = [str(f) for f in data_files.get(self.split, [])]
        else:
            return None
        if not files or not all(f.lower().endswith(".parquet") for f in files):
            return None
        import pyarrow.parquet as pq

        schema = pq.read_schema(files[0])
        return files if self.text_column in schema.names and _is_text(schema.field(self.text_column).type) else None

    def _parquet_parts(self, files: list[str]) -> Iterator[ParquetRows]:
        import pyarrow.parquet as pq

        row, size = 0, self.size()
        for path in files:
            metadata = pq.ParquetFile(path).metadata  # the footer only
            yield from _cut_parquet(path, metadata, self.text_column, row, self.split, self.source_name)
            row += metadata.num_rows
            self.bytes_read = min(size, self.bytes_read + os.path.getsize(path))
        self.bytes_read = size

    def _open(self):
        """The split as a (possibly iterable) dataset holding only the text column."""
        import datasets

        try:
            if self._local.is_dir() and _is_saved_dataset(self._local):
                dataset = datasets.load_from_disk(str(self._local))
                if isinstance(dataset, datasets.DatasetDict):
                    if self.split not in dataset:
                        raise file_error(self.path, f"no split {self.split!r} (it has {', '.join(dataset)})")
                    dataset = dataset[self.split]
            elif self._local.is_file():
                builder = _builder_for_file(self._local)
                dataset = datasets.load_dataset(builder, data_files=str(self._local), split="train", streaming=True)
            else:
                dataset = datasets.load_dataset(str(self._local) if self._local.exists() else self.path,
                                                split=self.split, streaming=True)  # fmt: skip
        except DataError:
            raise
        except Exception as e:  # datasets raises many types (FileNotFoundError, ConnectionError, ValueError...)
            raise DataError(f"{self.path}: cannot load the dataset ({type(e).__name__}: {_first_line(e)})") from None
        columns = dataset.column_names
        if columns is not None and self.text_column not in columns:
            raise DataError(f"{self.path}: no text column {self.text_column!r} (columns: {', '.join(columns)}); "
                            "choose one with --text-column")  # fmt: skip
        return dataset.select_columns([self.text_column])


@dataclass(frozen=True)
class HFRows:
    """Rows [start, end) of a dataset saved with `save_to_disk`, read by a worker from its memory map."""

    path: str
    split: str
    text_column: str
    start: int
    end: int
    bytes: int  # of text
    source_name: str

    def estimated_chars(self) -> int:
        return self.bytes

    def describe(self) -> str:
        return f"{self.path} rows {self.start}-{self.end}"

    def documents(self, stats: ReadStats) -> list[RawDocument]:
        dataset = _saved_split(self.path, self.split)
        texts = dataset.data.column(self.text_column).slice(self.start, self.end - self.start).to_pylist()
        if self.start == 0:
            stats.files_read += 1
        found = (
            _document(text, row, self.source_name, self.split, stats) for row, text in enumerate(texts, self.start)
        )
        return [document for document in found if document is not None]


@dataclass(frozen=True)
class ParquetRows:
    """Row groups [first, end) of a Parquet data file, read by a worker; with `batch` (k, rows), only the
    k-th run of `rows` rows of row group `first`, one too large to read whole."""

    path: str
    first: int
    end: int
    batch: tuple[int, int] | None
    first_row: int  # of the split: the ids' row numbers
    bytes: int  # of text, uncompressed
    text_column: str
    split: str
    source_name: str

    def estimated_chars(self) -> int:
        return self.bytes

    def describe(self) -> str:
        where = f"row group {self.first}" if self.end == self.first + 1 else f"row groups {self.first}-{self.end - 1}"
        return f"{self.path} {where}" + (f" (batch {self.batch[0]} of {self.batch[1]} rows)" if self.batch else "")

    def documents(self, stats: ReadStats) -> list[RawDocument]:
        import pyarrow.parquet as pq

        try:
            data = pq.ParquetFile(self.path)
            if self.batch is None:
                texts = data.read_row_groups(range(self.first, self.end), columns=[self.text_column]).column(0)
            else:
                number, rows = self.batch
                batches = data.iter_batches(batch_size=rows, row_groups=[self.first], columns=[self.text_column])
                texts = next(b for k, b in enumerate(batches) if k == number).column(0)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise file_error(self.path, f"cannot read Parquet ({_first_line(e)})") from None
        if self.first_row == 0:
            stats.files_read += 1
        rows = enumerate(texts.to_pylist(), self.first_row)
        found = (_document(text, row, self.source_name, self.split, stats) for row, text in rows)
        return [document for document in found if document is not None]


def _cut_parquet(path: str, metadata, text_column: str, first_row: int, split: str, source_name: str):
    """The parts of one Parquet file: consecutive row groups up to PART_BYTES of text or PART_ROWS rows; a row
    group of over 4 x PART_BYTES of text is cut into runs of rows (each read apart)."""
    if metadata.num_row_groups == 0:
        return
    chunks = metadata.row_group(0)
    column = next((i for i in range(chunks.num_columns) if chunks.column(i).path_in_schema == text_column), None)
    if column is None:
        raise file_error(path, f"no text column {text_column!r} (the split's first data file has it)")

    def rows_part(first: int, end: int, row: int, chars: int, batch=None) -> ParquetRows:
        return ParquetRows(path, first, end, batch, row, chars, text_column, split, source_name)

    start, rows, chars, row = 0, 0, 0, first_row  # the row groups not yet in a part; `row`: the first of them
    for group in range(metadata.num_row_groups):
        group_rows = metadata.row_group(group).num_rows
        group_chars = metadata.row_group(group).column(column).total_uncompressed_size
        if group_chars > 4 * PART_BYTES and group_rows > 1:
            if rows:
                yield rows_part(start, group, row, chars)
                row += rows
            per_batch = max(1, min(PART_ROWS, group_rows * PART_BYTES // group_chars))
            for number, at in enumerate(range(0, group_rows, per_batch)):
                count = min(per_batch, group_rows - at)
                yield rows_part(group, group + 1, row + at, group_chars * count // group_rows, (number, per_batch))
            start, rows, chars, row = group + 1, 0, 0, row + group_rows
            continue
        rows, chars = rows + group_rows, chars + group_chars
        if chars >= PART_BYTES or rows >= PART_ROWS or group + 1 == metadata.num_row_groups:
            yield rows_part(start, group + 1, row, chars)
            start, rows, chars, row = group + 1, 0, 0, row + rows


def _document(text, row: int, source_name: str, split: str, stats: ReadStats) -> RawDocument | None:
    """Row `row`'s document, or None (counted) when its text is empty or not a string."""
    if isinstance(text, str) and text.strip():
        stats.documents_read += 1
        return RawDocument(f"{source_name}:{split}:{row}", source_name, text, PLAIN)
    stats.empty_documents_skipped += 1
    return None


_opened: dict[tuple[str, str], object] = {}  # the saved dataset a worker read last (a memory map: cheap to keep)


def _saved_split(path: str, split: str):
    if (path, split) not in _opened:
        import datasets

        dataset = datasets.load_from_disk(path)
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[split]
        _opened.clear()
        _opened[path, split] = dataset
    return _opened[path, split]


def _is_text(kind) -> bool:
    import pyarrow.types

    return pyarrow.types.is_string(kind) or pyarrow.types.is_large_string(kind)


def _text_bytes(column):
    """UTF-8 bytes of each row's text (0 where null), from the column's offsets alone."""
    import pyarrow.compute as pc

    return pc.fill_null(pc.binary_length(column), 0).to_numpy()


def _batches(dataset) -> Iterator[dict]:
    if hasattr(dataset, "iter"):
        yield from dataset.iter(batch_size=_BATCH_ROWS)
    else:
        for row in dataset:
            yield {k: [v] for k, v in row.items()}


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()


def _builder_for_file(path: Path) -> str:
    name = path.name.lower()
    for suffix, builder in ((".parquet", "parquet"), (".arrow", "arrow"), (".csv", "csv"), (".txt", "text")):
        if name.endswith(suffix):
            return builder
    if name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        return "json"
    raise file_error(path, f"unknown data file type (expected one of {', '.join(DATA_FILE_SUFFIXES)})")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.lower().endswith(DATA_FILE_SUFFIXES)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "no details"
