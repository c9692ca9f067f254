"""MediaWiki XML dumps (`.xml`, `.xml.bz2` including the multistream variant, `.xml.gz`), read as a stream.

Only main-namespace articles are kept; redirects are skipped. The page text stays wiki markup here:
workers turn it into prose (see `pipeline.wikimarkup`), so this reader, which runs in the main
process, does nothing but decompress and parse XML.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import re
from pathlib import Path
from typing import BinaryIO, Iterator
from xml.parsers import expat

from ...errors import file_error
from ..records import WIKITEXT, RawDocument, ReadStats
from .common import Source, check_readable_file

READ_CHUNK = 1 << 20
PROBE_BYTES = 1 << 16
MAIN_NAMESPACE = "0"
_REDIRECT_TEXT = re.compile(r"\s*#redirect", re.IGNORECASE)


class WikiDumpSource(Source):
    kind = "wiki"

    def __init__(self, path: str, label: str):
        super().__init__(path, label)
        self._file = Path(path)

    def size(self) -> int:
        return self._file.stat().st_size

    def check(self) -> None:
        check_readable_file(self._file)
        with _open_dump(self._file) as (stream, _raw):
            head = _read_or_fail(self._file, stream, PROBE_BYTES)
        root = _root_element(head)
        if root is None:
            raise file_error(self._file, "not a MediaWiki XML dump (no XML element at the start)")
        if root != "mediawiki":
            raise file_error(self._file, f"not a MediaWiki XML dump (root element <{root}>, expected <mediawiki>)")

    def documents(self, stats: ReadStats) -> Iterator[RawDocument]:
        for page in self.pages():
            if page.namespace != MAIN_NAMESPACE:
                stats.other_namespaces_skipped += 1
            elif page.redirect or _REDIRECT_TEXT.match(page.text):
                stats.redirects_skipped += 1
            elif not page.text.strip():
                stats.empty_documents_skipped += 1
            else:
                stats.documents_read += 1
                yield RawDocument(f"{self.source_name}:{page.id}", self.source_name, page.text, WIKITEXT)
        stats.files_read += 1

    def pages(self) -> Iterator["Page"]:
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


class Page:
    __slots__ = ("title", "namespace", "id", "text", "redirect")

    def __init__(self):
        self.title = ""
        self.namespace = None
        self.id = ""
        self.text = ""
        self.redirect = False


class _DumpHandler:
    """expat callbacks collecting <page> elements; only the few fields we need are buffered."""

    _FIELDS = {"title": "title", "ns": "namespace", "id": "id", "text": "text"}

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


def _read_or_fail(path: Path, stream: BinaryIO, n: int) -> bytes:
    try:
        return stream.read(n)
    except EOFError:
        raise file_error(path, "truncated or corrupt compressed file (its data ends before the end-of-stream marker)") from None
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


__all__ = ["WikiDumpSource", "Page"]
