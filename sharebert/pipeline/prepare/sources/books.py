"""A folder of books, one plain-text book per file (how the public BookCorpus replacements come)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ....errors import file_error
from ..records import PLAIN, RawDocument, ReadStats
from .common import Source, check_readable_folder, decode_lenient, strip_bom


class BooksSource(Source):
    """Every regular, non-hidden file under the folder (recursively), in sorted path order.

    Paragraphs are separated by blank lines; hard-wrapped lines inside a paragraph are joined.
    Bytes that are not UTF-8 are replaced and counted, never fatal.
    """

    kind = "books"

    def __init__(self, path: str, label: str):
        super().__init__(path, label)
        self._folder = Path(path)
        self._files: list[Path] | None = None

    def files(self) -> list[Path]:
        if self._files is None:
            check_readable_folder(self._folder)
            self._files = sorted(
                (p for p in self._folder.rglob("*") if p.is_file() and not _is_hidden(p.relative_to(self._folder))),
                key=lambda p: p.relative_to(self._folder).as_posix(),
            )
        return self._files

    def check(self) -> None:
        if not self.files():
            raise file_error(self._folder, "no book files in the folder")

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def documents(self, stats: ReadStats) -> Iterator[RawDocument]:
        for path in self.files():
            try:
                data = path.read_bytes()
            except OSError as e:
                raise file_error(path, f"cannot read file ({e.strerror})") from None
            self.bytes_read += len(data)
            text, replaced = decode_lenient(data)
            stats.bad_bytes_replaced += replaced
            stats.files_read += 1
            name = path.relative_to(self._folder).as_posix()
            if not text.strip():
                stats.empty_documents_skipped += 1
                continue
            stats.documents_read += 1
            source = f"{self.source_name}/{name}"
            yield RawDocument(source, source, strip_bom(text), PLAIN)


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)
