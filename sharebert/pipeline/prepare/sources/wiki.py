"""MediaWiki XML dumps (`.xml`, `.xml.bz2` including the multistream variant, `.xml.gz`), read as a stream.

Only main-namespace articles are kept; redirects are skipped. The page text stays wiki markup here:
workers turn it into prose (see `pipeline.wikimarkup`).

A plain, gzip or single-stream bz2 dump is decompressed and parsed in the main process. A multistream
bz2 dump (pages-articles-multistream.xml.bz2: the header in the first bz2 stream, then streams of 100
pages) is cut into parts of whole streams instead, and each worker decompresses and parses its own
parts: the main process only finds where streams start (`stream_starts`), so decompression, the
slowest step of reading, runs on every core. Parts are cut by compressed size, never by the number of
workers, and give the same documents, in the same order, as reading the dump in one go.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, ClassVar
from xml.parsers import expat

from ....errors import file_error
from ..records import WIKITEXT, RawDocument, ReadStats
from .common import FileSource

READ_CHUNK = 1 << 20
PROBE_BYTES = 1 << 16
MAIN_NAMESPACE = "0"
_REDIRECT_TEXT = re.compile(r"\s*#redirect", re.IGNORECASE)
BZ2_RATIO = 4  # about how many bytes of dump XML one byte of bz2 holds (to estimate a part's work)
PART_BYTES = 1 << 18  # a part of a multistream dump: whole streams of about this many compressed bytes
MULTISTREAM_PROBE = 1 << 24  # a bz2 dump without a second stream in its first 16 MiB is read as one stream
SCAN_CHUNK = 1 << 22
# A bz2 stream starts byte-aligned with "BZh", the level and the 48-bit magic of its first block; the
# stream before it ends with a 48-bit end-of-stream magic, a 32-bit CRC and 0-7 zero bits of padding.
_STREAM_START = re.compile(rb"BZh[1-9]\x31\x41\x59\x26\x53\x59")
_END_OF_STREAM = 0x177245385090
_PAGE_START, _PAGE_END = b"<page>", b"</page>"  # never inside text: "<" is escaped there
_SITEINFO_END = b"</siteinfo>"
_TRUNCATED = "truncated or corrupt compressed file (its data ends before the end-of-stream marker)"


class WikiDumpSource(FileSource):
    kind = "wiki"

    def check(self) -> None:
        super().check()
        root = _root_element(self._head(lambda head: _root_element(head) is not None, PROBE_BYTES))
        if root is None:
            raise file_error(self._file, "not a MediaWiki XML dump (no XML element at the start)")
        if root != "mediawiki":
            raise file_error(self._file, f"not a MediaWiki XML dump (root element <{root}>, expected <mediawiki>)")

    def documents(self, stats: ReadStats) -> Iterator[RawDocument]:
        yield from _articles(self.pages(), self.source_name, stats)
        stats.files_read += 1

    def parts(self) -> Iterator[DumpPart] | None:
        """A multistream bz2 dump as parts that workers read themselves, in order; None for other dumps."""
        with open(self._file, "rb") as raw:
            if raw.read(3) != b"BZh" or next(stream_starts(raw, limit=MULTISTREAM_PROBE), None) is None:
                return None
        return self._parts(self._header_namespaces())

    def _parts(self, namespaces: dict[str, str]) -> Iterator[DumpPart]:
        size, start = self.size(), 0
        with open(self._file, "rb") as raw:
            for offset in stream_starts(raw):
                if offset - start >= PART_BYTES:
                    self.bytes_read = offset
                    yield DumpPart(str(self._file), start, offset, self.source_name, namespaces)
                    start = offset
        self.bytes_read = size
        yield DumpPart(str(self._file), start, size, self.source_name, namespaces)

    def _header_namespaces(self) -> dict[str, str]:
        """The title prefixes of <siteinfo>'s namespaces (parts need them for dumps without <ns>)."""
        head = self._head(lambda head: _SITEINFO_END in head or _PAGE_START in head)
        parser, handler = _make_parser()
        _parse_or_fail(self._file, parser, head.partition(_PAGE_START)[0], final=False)
        return handler.namespace_prefixes

    def _head(self, enough, limit: int | None = None) -> bytes:
        """The dump's first bytes, read until `enough(head)`, the end of the file or `limit` bytes. Reads
        start small and grow, each no further than bytes at hand: past a multistream dump's header stream
        (which ends at </siteinfo>), any byte costs the decoding of a whole bz2 block."""
        head, step = b"", 1024
        with _open_dump(self._file) as (stream, _raw):
            while not enough(head) and (limit is None or len(head) < limit):
                want = step if limit is None else min(step, limit - len(head))
                chunk = _read_or_fail(self._file, stream, want, partial=True)
                if not chunk:
                    break
                head, step = head + chunk, min(2 * step, PROBE_BYTES)
        return head

    def pages(self) -> Iterator[Page]:
        """Every page of the dump, in file order."""
        parser, handler = _make_parser()
        with _open_dump(self._file) as (stream, raw):
            while True:
                chunk = _read_or_fail(self._file, stream, READ_CHUNK)
                self.bytes_read = raw.tell()
                _parse_or_fail(self._file, parser, chunk, final=not chunk)
                if handler.done:
                    yield from handler.done
                    handler.done.clear()
                if not chunk:
                    break


@dataclass(frozen=True)
class DumpPart:
    """Whole bz2 streams [start, end) of a multistream dump, decompressed and parsed by a worker.

    The part holds the pages whose <page> tag starts in it. In the dumps Wikimedia writes, streams end
    between pages; in a dump cut into streams by size (pbzip2), the last page of a part may end in
    the streams after it, which are then decompressed as far as needed.
    """

    path: str
    start: int
    end: int
    source_name: str
    namespaces: dict[str, str]  # title prefix -> namespace key, for dumps without <ns>

    def estimated_chars(self) -> int:
        return (self.end - self.start) * BZ2_RATIO

    def describe(self) -> str:
        return f"{self.path} bytes {self.start}-{self.end}"

    def documents(self, stats: ReadStats) -> list[RawDocument]:
        path = Path(self.path)
        parser, handler = _make_parser()
        handler.namespace_prefixes = dict(self.namespaces)
        for piece, final in ((b"<mediawiki>", False), (self._pages_xml(path), False), (b"</mediawiki>", True)):
            _parse_or_fail(path, parser, piece, final)
        if self.start == 0:  # the dump is read when its parts are: counted once, by the first
            stats.files_read += 1
        return list(_articles(handler.done, self.source_name, stats))

    def _pages_xml(self, path: Path) -> bytes:
        """The XML from the first <page> that starts in this part to the end of the last one."""
        tag = len(_PAGE_START)
        with open(path, "rb") as raw:
            raw.seek(self.start)
            data = b"".join(_decompressed(path, io.BytesIO(raw.read(self.end - self.start))))
            own = len(data)
            after = _decompressed(path, raw)  # the streams after the part, read only where a page goes on there
            if b"<" in data[1 - tag :]:  # a <page> tag may start in the part and end after it
                while len(data) < own + tag - 1 and (more := next(after, b"")):
                    data += more
            first = data.find(_PAGE_START, 0, own + tag - 1)
            if first < 0:
                return b""
            last = data.rfind(_PAGE_START, 0, own + tag - 1)
            searched = last
            while (end := data.find(_PAGE_END, searched)) < 0:
                searched = max(last, len(data) - len(_PAGE_END))
                more = next(after, b"")
                if not more:
                    raise file_error(path, "truncated XML (the dump ends inside a <page>)")
                data += more
            return data[first : end + len(_PAGE_END)]


def _decompressed(path: Path, raw: BinaryIO) -> Iterator[bytes]:
    """The content of the bz2 streams from `raw`'s position to its end, a piece at a time. Unlike
    bz2.BZ2File, which takes a damaged stream after the first for trailing garbage and stops there
    silently, any damaged or truncated stream is an error."""
    decompressor, data, in_stream = bz2.BZ2Decompressor(), b"", False
    while True:
        if not data and not (data := raw.read(READ_CHUNK)):
            if in_stream:
                raise file_error(path, _TRUNCATED)
            return
        try:
            out = decompressor.decompress(data)
        except OSError as e:
            raise file_error(path, f"corrupt compressed data ({e})") from None
        data, in_stream = b"", True
        if decompressor.eof:
            data, decompressor, in_stream = decompressor.unused_data, bz2.BZ2Decompressor(), False
        if out:
            yield out


def _articles(pages, source_name: str, stats: ReadStats) -> Iterator[RawDocument]:
    """The main-namespace articles among `pages`, counting what is skipped."""
    for page in pages:
        if page.namespace != MAIN_NAMESPACE:
            stats.other_namespaces_skipped += 1
        elif page.redirect or _REDIRECT_TEXT.match(page.text):
            stats.redirects_skipped += 1
        elif not page.text.strip():
            stats.empty_documents_skipped += 1
        else:
            stats.documents_read += 1
            yield RawDocument(f"{source_name}:{page.id}", source_name, page.text, WIKITEXT)


def stream_starts(raw: BinaryIO, limit: int | None = None) -> Iterator[int]:
    """Offsets of the bz2 streams after the first one of a file, in order (those starting within `limit`
    bytes). A candidate counts only right after the end-of-stream magic of the stream before it: that
    compressed data holds both by accident has a chance of about 2**-120 per byte."""
    raw.seek(0)
    tail, base = b"", 0  # the last bytes of the previous chunk; the file offset of data[0]
    step = 1 << 16  # growing reads: a multistream dump's first stream (its header) is small
    while (limit is None or base < limit) and (chunk := raw.read(step)):
        step = min(2 * step, SCAN_CHUNK)
        data = tail + chunk
        for match in _STREAM_START.finditer(data, max(0, len(tail) - 9)):
            at = match.start()
            if at >= 11 and _ends_a_stream(data[at - 11 : at]):
                yield base + at
        tail = data[-20:]
        base += len(data) - len(tail)


def _ends_a_stream(before: bytes) -> bool:
    """Whether these 11 bytes end with an end-of-stream magic, a CRC and 0-7 zero bits of padding."""
    bits = int.from_bytes(before, "big")
    return any(
        (bits >> (32 + pad)) & 0xFFFF_FFFF_FFFF == _END_OF_STREAM and not bits & ((1 << pad) - 1) for pad in range(8)
    )


class Page:
    __slots__ = ("id", "namespace", "redirect", "text", "title")

    def __init__(self):
        self.title = ""
        self.namespace = None
        self.id = ""
        self.text = ""
        self.redirect = False


class _DumpHandler:
    """expat callbacks collecting <page> elements; only the few fields we need are buffered."""

    _FIELDS: ClassVar[dict[str, str]] = {"title": "title", "ns": "namespace", "id": "id", "text": "text"}

    def __init__(self):
        self.root: str | None = None
        self.page: Page | None = None
        self.in_revision = False
        self.field: str | None = None
        self.parts: list[str] = []
        self.namespace_prefixes: dict[str, str] = {}  # "Category" -> "14" (for dumps without <ns>)
        self.namespace_key: str | None = None
        self.done: list[Page] = []

    def start(self, name: str, attrs: dict) -> None:
        if self.root is None:
            self.root = name
            if name != "mediawiki":
                raise _NotADump(name)
        if name == "page":
            self.page, self.in_revision = Page(), False
        elif self.page is None:
            if name == "namespace":
                self.namespace_key, self.parts = attrs.get("key", ""), []
        elif name == "revision":
            self.in_revision = True
        elif name == "redirect":
            self.page.redirect = True
        elif name in self._FIELDS and not (name == "id" and (self.in_revision or self.page.id)):
            self.field, self.parts = self._FIELDS[name], []

    def end(self, name: str) -> None:
        if self.field is not None and self._FIELDS.get(name) == self.field:
            setattr(self.page, self.field, "".join(self.parts))
            self.field, self.parts = None, []
        elif name == "page" and self.page is not None:
            if self.page.namespace is None:
                self.page.namespace = self._namespace_from_title(self.page.title)
            self.done.append(self.page)
            self.page = None
        elif name == "revision":
            self.in_revision = False
        elif name == "namespace" and self.namespace_key is not None:
            prefix = "".join(self.parts).strip()
            if prefix:
                self.namespace_prefixes[prefix.lower()] = self.namespace_key
            self.namespace_key, self.parts = None, []

    def chars(self, data: str) -> None:
        if self.field is not None or self.namespace_key is not None:
            self.parts.append(data)

    def _namespace_from_title(self, title: str) -> str:
        prefix, colon, _ = title.partition(":")
        if colon and prefix.strip().lower() in self.namespace_prefixes:
            return self.namespace_prefixes[prefix.strip().lower()]
        return MAIN_NAMESPACE


class _NotADump(Exception):
    def __init__(self, root: str):
        super().__init__(root)
        self.root = root


def _make_parser():
    handler = _DumpHandler()
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.buffer_size = READ_CHUNK
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.chars
    return parser, handler


@contextlib.contextmanager
def _open_dump(path: Path) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(decompressed stream, raw file) for a plain, bzip2 or gzip dump, detected from its first bytes."""
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise file_error(path, f"cannot read file ({e.strerror})") from None
    with raw:
        magic = raw.read(3)
        raw.seek(0)
        if magic == b"BZh":
            stream = bz2.BZ2File(raw)
        elif magic[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=raw)
        else:
            stream = raw
        with stream:
            yield stream, raw


def _read_or_fail(path: Path, stream: BinaryIO, n: int, *, partial: bool = False) -> bytes:
    """Up to n bytes; with `partial`, only what one read of the underlying file gives (no further bz2
    stream is started while bytes of the current one are at hand)."""
    try:
        return stream.read1(n) if partial else stream.read(n)
    except EOFError:
        raise file_error(path, _TRUNCATED) from None
    except OSError as e:  # bz2 / gzip report corrupt data as OSError
        raise file_error(path, f"corrupt compressed data ({e})") from None


def _parse_or_fail(path: Path, parser, chunk: bytes, final: bool) -> None:
    try:
        parser.Parse(chunk, final)
    except _NotADump as e:
        raise file_error(path, f"not a MediaWiki XML dump (root element <{e.root}>, expected <mediawiki>)") from None
    except expat.ExpatError as e:
        problem = "truncated XML (the dump ends inside an element)" if final else "malformed XML"
        raise file_error(path, f"{problem}: {expat.ErrorString(e.code)} at line {e.lineno}") from None


def _root_element(head: bytes) -> str | None:
    """Name of the first element in the first bytes of an XML file, None when it is not XML."""
    found: list[str] = []

    def start(name, attrs):
        found.append(name)
        raise _StopProbe

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    with contextlib.suppress(_StopProbe, expat.ExpatError):
        parser.Parse(head, False)
    return found[0] if found else None


class _StopProbe(Exception):
    pass


__all__ = ["DumpPart", "Page", "WikiDumpSource", "stream_starts"]
