"""The records that flow through `sharebert prepare`, and the counters it keeps while reading.

reader -> RawDocument (markup or plain text) -> clean + split -> Document (sentences as text)
-> tokenize -> written to Parquet (sentences as token ids). Readers never tokenize; workers never read.
"""

from __future__ import annotations

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
