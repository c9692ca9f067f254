"""Plain text where a blank line separates documents (the BERT pretraining text layout).

Inside a document every line is a paragraph (often one sentence per line); sentences are still split, so
either layout works. The file is read in parts of about PART_BYTES that end after a blank line (TextPart),
each by a worker, so no text passes through the process that plans the run; a document is named by the
byte offset of its first line. Memory holds one part at a time. A document longer than
records.MAX_DOCUMENT_CHARS (a line of gigabytes) is read as consecutive documents of at most that size, cut
at a line end, or inside a line at a space; so is one that runs more than SCAN_BYTES past a part's
nominal end without a blank line (it is then cut at the first line end after that end).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ....errors import file_error
from .. import records
from ..records import LINES, RawDocument, ReadStats, piece_end
from .common import FileSource, decode_lenient

PART_BYTES = 1 << 20  # a part of a text file: about this many bytes, up to the next blank line
SCAN_BYTES = 1 << 21  # how far past PART_BYTES a part looks for a blank line to end after


class TextSource(FileSource):
    kind = "text"

    def parts(self) -> Iterator[TextPart]:
        size, start = self.size(), 0
        try:
            with open(self._file, "rb") as f:
                while size - start > PART_BYTES:
                    end = _part_end(f, start + PART_BYTES)
                    if end >= size:
                        break
                    self.bytes_read = end
                    yield TextPart(str(self._file), start, end, self.source_name)
                    start = end
        except OSError as e:
            raise file_error(self._file, f"cannot read file ({e.strerror})") from None
        self.bytes_read = size
        yield TextPart(str(self._file), start, size, self.source_name)


def _part_end(f: BinaryIO, nominal: int) -> int:
    """Where a part that should end near `nominal` ends: after the first blank line that starts at or after
    `nominal`, within SCAN_BYTES; else at the first line start after `nominal`, else after the first space,
    else at the first UTF-8 character start (the end of the file when none comes)."""
    f.seek(nominal - 1)
    window = f.read(SCAN_BYTES + 1)  # with the byte before `nominal`: is `nominal` a line start?
    if len(window) <= 1:
        return nominal + len(window) - 1
    line = window.find(b"\n") + 1  # the first line start at or after `nominal` (0: none)
    first_line = line
    while line:
        end = window.find(b"\n", line)
        if end < 0:
            break
        if not decode_lenient(window[line:end])[0].strip():
            return nominal - 1 + end + 1
        line = end + 1
    if first_line:
        return nominal - 1 + first_line
    space = window.find(b" ", 1)
    if space >= 0:
        return nominal - 1 + space + 1
    character = next((i for i in range(1, len(window)) if window[i] & 0xC0 != 0x80), len(window))
    return nominal - 1 + character


@dataclass(frozen=True)
class TextPart:
    """Bytes [start, end) of a text file, read by a worker: they start at a document's first line (or where
    _part_end cut a long one) and end after a blank line (or where it cut)."""

    path: str
    start: int
    end: int
    source_name: str

    def estimated_chars(self) -> int:
        return self.end - self.start

    def describe(self) -> str:
        return f"{self.path} bytes {self.start}-{self.end}"

    def documents(self, stats: ReadStats) -> list[RawDocument]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.start)
                data = f.read(self.end - self.start)
        except OSError as e:
            raise file_error(self.path, f"cannot read file ({e.strerror})") from None
        if self.start == 0:
            stats.files_read += 1
        return list(self._documents(data, stats))

    def _documents(self, data: bytes, stats: ReadStats) -> Iterator[RawDocument]:
        limit = records.MAX_DOCUMENT_CHARS
        lines: list[str] = []
        chars, first, offset = 0, "", self.start
        for raw in data.split(b"\n"):
            text, replaced = decode_lenient(raw)
            stats.bad_bytes_replaced += replaced
            if offset == 0 and text.startswith("\ufeff"):
                text = text[1:]
            for number, piece in enumerate(_pieces(text.rstrip("\r"), limit)):
                if lines and (not piece.strip() or chars + len(piece) > limit):
                    yield self._document(first, lines, stats)
                    lines, chars = [], 0
                if piece.strip():
                    if not lines:
                        first = f"{offset}+{number}" if number else str(offset)
                    lines.append(piece)
                    chars += len(piece) + 1
            offset += len(raw) + 1
        if lines:
            yield self._document(first, lines, stats)

    def _document(self, first: str, lines: list[str], stats: ReadStats) -> RawDocument:
        stats.documents_read += 1
        return RawDocument(f"{self.source_name}@{first}", self.source_name, "\n".join(lines), LINES)


def _pieces(line: str, limit: int) -> Iterator[str]:
    """`line`, or, when longer than `limit`, its consecutive pieces of at most `limit` characters."""
    start = 0
    while start < len(line):
        end = piece_end(line, start, limit, breaks=" ")
        yield line[start:end]
        start = end
    if not line:
        yield line
