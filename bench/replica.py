"""A bigger MediaWiki dump made from a small real one, for the benchmarks of prepare and mask.

The pages are repeated, each copy with distinct titles and page ids (so every page is a document of its
own), and written plain, as one bz2 stream, or in the layout of Wikimedia's pages-articles-multistream
dumps (the header in a bz2 stream of its own, then N pages per stream, then the closing tag).
"""

from __future__ import annotations

import bz2
import re
from collections.abc import Iterator
from pathlib import Path

_PAGE = re.compile(rb"<page>.*?</page>\s*", re.S)
_TITLE = re.compile(rb"<title>(.*?)</title>")
_PAGE_ID = re.compile(rb"(</ns>\s*<id>)(\d+)(</id>)")


class DumpPages:
    """The header, pages and tail of a dump (`.xml` or `.xml.bz2`)."""

    def __init__(self, source: Path):
        xml = (bz2.BZ2File(source) if source.suffix == ".bz2" else open(source, "rb")).read()
        self.pages = _PAGE.findall(xml)
        if not self.pages:
            raise SystemExit(f"{source}: no <page> elements")
        self.head = xml[: xml.index(b"<page>")]
        self.tail = xml[xml.rindex(b"</page>") + len(b"</page>") :].lstrip()
        self.id_step = 10 ** len(str(max(int(m.group(2)) for p in self.pages if (m := _PAGE_ID.search(p)))))

    @property
    def page_bytes(self) -> int:
        return sum(map(len, self.pages))

    def repeated(self, copies: int) -> Iterator[bytes]:
        for copy in range(copies):
            for page in self.pages:
                if copy:
                    page = _TITLE.sub(lambda m: b"<title>" + m.group(1) + b" (copy %d)</title>" % copy, page, count=1)
                    page = _PAGE_ID.sub(lambda m: m.group(1) + b"%d" % (int(m.group(2)) + copy * self.id_step)
                                        + m.group(3), page, count=1)  # fmt: skip
                yield page


def write_replica(source: Path, target: Path, copies: int, layout: str = "bz2", pages_per_stream: int = 100) -> int:
    """Write `copies` copies of the pages of `source` to `target`; return the bytes of XML written.

    layout: "xml" (plain), "bz2" (one stream) or "multistream" (`pages_per_stream` pages per stream)."""
    dump = DumpPages(source)
    if layout == "multistream":
        return _write_multistream(dump, target, copies, pages_per_stream)
    size = len(dump.head) + len(dump.tail)
    with bz2.BZ2File(target, "wb", compresslevel=9) if layout == "bz2" else open(target, "wb") as out:
        out.write(dump.head)
        for page in dump.repeated(copies):
            out.write(page)
            size += len(page)
        out.write(dump.tail)
    return size


def _write_multistream(dump: DumpPages, target: Path, copies: int, pages_per_stream: int) -> int:
    size = len(dump.head) + len(dump.tail)
    with open(target, "wb") as out:
        out.write(bz2.compress(dump.head, 9))
        group: list[bytes] = []
        for page in dump.repeated(copies):
            group.append(page)
            size += len(page)
            if len(group) == pages_per_stream:
                out.write(bz2.compress(b"".join(group), 9))
                group = []
        if group:
            out.write(bz2.compress(b"".join(group), 9))
        out.write(bz2.compress(dump.tail, 9))
    return size
