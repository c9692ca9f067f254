"""A Hugging Face `datasets` source: a `save_to_disk` folder, a folder or file of parquet/json/arrow/csv
data, or a hub name (only this one touches the network, and only when the user names it).

Data files and hub datasets are streamed (no cache copy of the corpus); `save_to_disk` folders are
memory-mapped by `datasets` itself. `datasets` is imported only here, when such a source is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ....errors import DataError, file_error
from ..records import PLAIN, RawDocument, ReadStats
from .common import Source

DATA_FILE_SUFFIXES = (".parquet", ".json", ".jsonl", ".arrow", ".csv", ".txt", ".json.gz", ".jsonl.gz")
_BATCH_ROWS = 1000


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
        dataset = self._dataset if self._dataset is not None else self._open()
        self._dataset = None
        row = 0
        for batch in _batches(dataset):
            texts = batch[self.text_column]
            for text in texts:
                if isinstance(text, str) and text.strip():
                    stats.documents_read += 1
                    self.bytes_read += len(text)
                    yield RawDocument(f"{self.source_name}:{self.split}:{row}", self.source_name, text, PLAIN)
                else:
                    stats.empty_documents_skipped += 1
                row += 1
        stats.files_read += 1

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
