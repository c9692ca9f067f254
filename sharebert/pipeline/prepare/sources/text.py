"""Plain text where a blank line separates documents (the BERT pretraining text layout).

Inside a document every line is a paragraph (often one sentence per line); sentences are still
split, so either layout works. Read as a stream: memory holds one document at a time, and a document
longer than records.MAX_DOCUMENT_CHARS (a file without blank lines, a line of gigabytes) is read as
consecutive documents of at most that size, cut at a line end, or inside a line at a space.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from ....errors import file_error
from .. import records
from ..records import LINES, RawDocument, ReadStats, piece_end
from .common import REPLACEMENT_CHAR, FileSource

READ_CHUNK = 1 << 20


class TextSource(FileSource):
    kind = "text"

    def documents(self, stats: ReadStats) -> Iterator[RawDocument]:
        limit = records.MAX_DOCUMENT_CHARS
        number, chars = 0, 0
        lines: list[str] = []
        for line in self._lines(stats, limit):
            if lines and (not line.strip() or chars + len(line) > limit):
                yield self._document(number, lines, stats)
                number, lines, chars = number + 1, [], 0
            if line.strip():
                lines.append(line)
                chars += len(line) + 1
        if lines:
            yield self._document(number, lines, stats)
        stats.files_read += 1

    def _document(self, number: int, lines: list[str], stats: ReadStats) -> RawDocument:
        stats.documents_read += 1
        return RawDocument(f"{self.source_name}:{number}", self.source_name, "\n".join(lines), LINES)

    def _lines(self, stats: ReadStats, limit: int) -> Iterator[str]:
        """Lines without their line ends, a line longer than `limit` as pieces of at most `limit` characters
        cut at spaces; invalid UTF-8 is replaced (and counted) as it streams by."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending: list[str] = []  # the pieces of a line not yet ended (kept apart: a line may be gigabytes long)
        pending_chars = 0
        first = True
        tail = b""  # last bytes of the previous chunk: a literal U+FFFD may straddle two chunks
        try:
            with open(self._file, "rb") as f:
                while True:
                    chunk = f.read(READ_CHUNK)
                    self.bytes_read += len(chunk)
                    text = decoder.decode(chunk, final=not chunk)
                    stats.bad_bytes_replaced += text.count(REPLACEMENT_CHAR) - _literal_replacements(tail + chunk)
                    tail = chunk[-2:]
                    if first and text.startswith("\ufeff"):
                        text = text[1:]
                    first = False
                    *complete, rest = text.split("\n")
                    if complete:
                        complete[0] = "".join(pending) + complete[0]
                        pending, pending_chars = [], 0
                    pending.append(rest)
                    pending_chars += len(rest)
                    for line in complete:
                        yield from _pieces(line.rstrip("\r"), limit)
                    if pending_chars > limit:
                        *whole, rest = _pieces("".join(pending), limit)
                        yield from whole
                        pending, pending_chars = [rest], len(rest)
                    if not chunk:
                        break
        except OSError as e:
            raise file_error(self._file, f"cannot read file ({e.strerror})") from None
        last = "".join(pending)
        if last:
            yield from _pieces(last.rstrip("\r"), limit)


def _pieces(line: str, limit: int) -> Iterator[str]:
    """`line`, or, when longer than `limit`, its consecutive pieces of at most `limit` characters."""
    start = 0
    while start < len(line):
        end = piece_end(line, start, limit, breaks=" ")
        yield line[start:end]
        start = end
    if not line:
        yield line


def _literal_replacements(chunk: bytes) -> int:
    # U+FFFD written correctly in the file is text, not an encoding error.
    return chunk.count(REPLACEMENT_CHAR.encode("utf-8"))
