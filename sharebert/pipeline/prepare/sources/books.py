"""A folder of books, one plain-text book per file (how the public BookCorpus replacements come)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ....errors import file_error
from ..records import PLAIN, RawDocument, ReadStats
from .common import Source, check_readable_folder, decode_lenient, strip_bom

PART_BYTES = 1 << 20  # a part of a books folder: whole consecutive files, about this many bytes


class BooksSource(Source):
    """Every regular, non-hidden file under the folder (recursively), in sorted path order.

    Paragraphs are separated by blank lines; hard-wrapped lines inside a paragraph are joined.
    Bytes that are not UTF-8 are replaced and counted, never fatal. Read in parts of whole files
    (BookFiles), each by a worker, so no book passes through the process that plans the run.
    """

    kind = "books"

    def __init__(self, path: str, label: str):
        super().__init__(path, label)
        self._folder = Path(path)
        self._files: list[tuple[Path, int]] | None = None  # (path, bytes)

    def _sized_files(self) -> list[tuple[Path, int]]:
        if self._files is None:
            check_readable_folder(self._folder)
            found = sorted(
                (p for p in self._folder.rglob("*") if p.is_file() and not _is_hidden(p.relative_to(self._folder))),
                key=lambda p: p.relative_to(self._folder).as_posix(),
            )
            self._files = [(p, p.stat().st_size) for p in found]
        return self._files

    def check(self) -> None:
        if not self._sized_files():
            raise file_error(self._folder, "no book files in the folder")

    def size(self) -> int:
        return sum(size for _, size in self._sized_files())

    def parts(self) -> Iterator[BookFiles]:
        files = self._sized_files()
        names: list[str] = []
        part_bytes = 0
        for number, (path, size) in enumerate(files, 1):
            names.append(path.relative_to(self._folder).as_posix())
            part_bytes += size
            if part_bytes >= PART_BYTES or number == len(files):
                self.bytes_read += part_bytes
                yield BookFiles(str(self._folder), tuple(names), part_bytes, self.source_name)
                names, part_bytes = [], 0


@dataclass(frozen=True)
class BookFiles:
    """Consecutive book files of a folder (paths relative to it), read by a worker: one document each."""

    folder: str
    names: tuple[str, ...]
    bytes: int
    source_name: str

    def estimated_chars(self) -> int:
        return self.bytes

    def describe(self) -> str:
        first, last = self.names[0], self.names[-1]
        return f"{self.folder}: {first}" + (f" to {last} ({len(self.names)} files)" if last != first else "")

    def documents(self, stats: ReadStats) -> list[RawDocument]:
        return [document for name in self.names if (document := self._read(name, stats)) is not None]

    def _read(self, name: str, stats: ReadStats) -> RawDocument | None:
        path = Path(self.folder) / name
        try:
            data = path.read_bytes()
        except OSError as e:
            raise file_error(path, f"cannot read file ({e.strerror})") from None
        text, replaced = decode_lenient(data)
        stats.bad_bytes_replaced += replaced
        stats.files_read += 1
        if not text.strip():
            stats.empty_documents_skipped += 1
            return None
        stats.documents_read += 1
        source = f"{self.source_name}/{name}"
        return RawDocument(source, source, strip_bom(text), PLAIN)


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)
