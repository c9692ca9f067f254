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
PART_BYTES = 1 << 20  # a part of a saved dataset: consecutive rows of about this much text
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

    def parts(self) -> Iterator[HFRows] | None:
        """A saved dataset as parts of consecutive rows (their cut needs only the text lengths, which the
        memory map holds apart from the text); None for streamed data files and hub datasets."""
        if not (self._local.is_dir() and _is_saved_dataset(self._local)):
            return None
        import pyarrow.types

        dataset = self._dataset if self._dataset is not None else self._open()
        column = dataset.data.column(self.text_column)
        if not (pyarrow.types.is_string(column.type) or pyarrow.types.is_large_string(column.type)):
            return None  # read here, row by row: a row that is not text is skipped and counted
        self._dataset = None
        return self._parts(_text_bytes(column))

    def _parts(self, lengths) -> Iterator[HFRows]:
        size, rows, start, chars = self.size(), len(lengths), 0, 0
        for row, length in enumerate(lengths.tolist()):
            chars += length
            if chars >= PART_BYTES or row + 1 - start >= PART_ROWS or row + 1 == rows:
                self.bytes_read = size * (row + 1) // rows
                yield HFRows(str(self._local), self.split, self.text_column, start, row + 1, chars, self.source_name)
                start, chars = row + 1, 0

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
