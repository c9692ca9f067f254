"""The records that flow through `sharebert prepare`, and the counters it keeps while reading.

reader -> RawDocument (markup or plain text) -> clean + split -> Document (sentences as text)
-> tokenize -> written to Parquet (sentences as token ids). Readers never tokenize; workers never read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Protocol

# How a RawDocument's text is written.
PLAIN = "plain"  # paragraphs are separated by blank lines, lines inside a paragraph are joined
WIKITEXT = "wikitext"  # MediaWiki markup; every line is a paragraph once the markup is gone
LINES = "lines"  # every non-blank line is a paragraph (the one-sentence-per-line corpora)


@dataclass(slots=True)
class RawDocument:
    """One document as an input reader produced it, before cleaning and sentence splitting."""

    id: str  # unique in the corpus, e.g. "wiki:enwiki.xml.bz2:12"
    source: str  # which input it came from, e.g. "wiki:enwiki.xml.bz2"
    text: str
    markup: str = PLAIN


# A longer document is read as consecutive documents of at most this many characters, so that reading,
# cleaning and tokenizing one document takes bounded memory (about 25 bytes per character while it is
# tokenized). MediaWiki caps an article at 2 MiB, so no article is cut; a novel of over 400 pages is, and
# so is a corpus file without blank lines.
MAX_DOCUMENT_CHARS = 1 << 21


def piece_end(text: str, start: int, limit: int, breaks: str = "\n ") -> int:
    """Where the piece of `text` from `start` of at most `limit` characters ends: after the last of
    `breaks` (tried in order) in its second half, else at `limit` characters."""
    end = start + limit
    if end >= len(text):
        return len(text)
    for mark in breaks:
        cut = text.rfind(mark, start + limit // 2, end)
        if cut >= 0:
            return cut + 1
    return end


def bounded_documents(documents: Iterable[RawDocument], limit: int | None = None) -> Iterator[RawDocument]:
    """The documents, each longer than `limit` (default MAX_DOCUMENT_CHARS) characters as consecutive
    pieces named ID#0, ID#1, ..."""
    limit = limit or MAX_DOCUMENT_CHARS
    for document in documents:
        text = document.text
        if len(text) <= limit:
            yield document
            continue
        start, number = 0, 0
        while start < len(text):
            end = piece_end(text, start, limit)
            yield RawDocument(f"{document.id}#{number}", document.source, text[start:end], document.markup)
            start, number = end, number + 1


@dataclass(slots=True)
class Document:
    """A cleaned document: its non-empty sentences, in order."""

    id: str
    source: str
    sentences: list[str]


@dataclass(slots=True)
class ReadStats:
    """What one input's reader saw and skipped (counted by the main process while reading: deterministic)."""

    documents_read: int = 0
    redirects_skipped: int = 0
    other_namespaces_skipped: int = 0
    empty_documents_skipped: int = 0
    bad_bytes_replaced: int = 0  # invalid UTF-8 sequences replaced by U+FFFD (books, text)
    files_read: int = 0

    def add(self, other: ReadStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class DocumentPart(Protocol):
    """A piece of an input that a worker reads itself (a run of streams of a multistream dump)."""

    def documents(self, stats: ReadStats) -> list[RawDocument]:
        """The part's documents, in order, counting what the reader skipped into `stats`."""
        ...

    def estimated_chars(self) -> int:
        """About how many characters of raw text the part holds (to schedule the largest parts first)."""
        ...

    def describe(self) -> str:
        """The part in an error message: its file and where in it."""
        ...
