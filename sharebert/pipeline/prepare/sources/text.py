"""Plain text where a blank line separates documents (the BERT pretraining text layout).

Inside a document every line is a paragraph (often one sentence per line); sentences are still
split, so either layout works. Read as a stream: memory holds one document at a time.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from ....errors import file_error
from ..records import LINES, RawDocument, ReadStats
from .common import REPLACEMENT_CHAR, FileSource

READ_CHUNK = 1 << 20


class TextSource(FileSource):
    kind = "text"

    def documents(self, stats: ReadStats) -> Iterator[RawDocument]:
        number = 0
        lines: list[str] = []
        for line in self._lines(stats):
            if line.strip():
                lines.append(line)
            elif lines:
                yield self._document(number, lines, stats)
                number, lines = number + 1, []
        if lines:
            yield self._document(number, lines, stats)
        stats.files_read += 1

    def _document(self, number: int, lines: list[str], stats: ReadStats) -> RawDocument:
        stats.documents_read += 1
        return RawDocument(f"{self.source_name}:{number}", self.source_name, "\n".join(lines), LINES)

    def _lines(self, stats: ReadStats) -> Iterator[str]:
        """Lines without their line ends; invalid UTF-8 is replaced (and counted) as it streams by."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending: list[str] = []  # the pieces of a line not yet ended (kept apart: a line may be gigabytes long)
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
                        pending = []
                    pending.append(rest)
                    for line in complete:
                        yield line.rstrip("\r")
                    if not chunk:
                        break
        except OSError as e:
            raise file_error(self._file, f"cannot read file ({e.strerror})") from None
        last = "".join(pending)
        if last:
            yield last.rstrip("\r")


def _literal_replacements(chunk: bytes) -> int:
    # U+FFFD written correctly in the file is text, not an encoding error.
    return chunk.count(REPLACEMENT_CHAR.encode("utf-8"))
