"""Documents to sentences: paragraphs from the reader's layout, sentences from blingfire (offline, fast).

Sentences never cross a paragraph. A "sentence" longer than MAX_SENTENCE_CHARS (a list or table
flattened without punctuation) is cut at spaces, so that no single sentence is too large to place
in a balanced shard and `mask` does not truncate most of it away. Of a wiki page, only the sentences that
wikimarkup.prose_sentences keeps remain (none with a formula, none of punctuation only).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import blingfire

from .records import LINES, PLAIN, WIKITEXT, Document, RawDocument
from .wikimarkup import prose_sentences, wikitext_to_paragraphs

log = logging.getLogger(__name__)

MAX_SENTENCE_CHARS = 2000
# blingfire holds about 25 bytes per character of the text it splits. A document longer than this goes to it
# in groups of paragraphs of at most this many characters, and a longer paragraph in windows cut at a space
# (blingfire looks across paragraph ends, so this can split a few sentences differently; shorter documents
# go whole, as they always did).
SPLIT_WINDOW_CHARS = 1 << 20
# blingfire treats newlines as spaces; this separator always ends a sentence and is stripped after.
_PARAGRAPH_SEPARATOR = "\u2029"
_JOINER = f" {_PARAGRAPH_SEPARATOR} "
# Control characters (BERT's normalizer would delete them, gluing words), line/paragraph separators
# (ours mark paragraphs) and no-break spaces all become plain spaces.
_SANITIZE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\xa0\u2028\u2029\ufeff]")
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_WHITESPACE = re.compile(r"\s+")
# \s is what str.strip() strips (both use Unicode's whitespace property).
_LEADING_WHITESPACE = re.compile(r"\s*")


def document_paragraphs(doc: RawDocument) -> list[str]:
    """The paragraphs of a raw document, according to how its text is laid out."""
    if doc.markup == WIKITEXT:
        return wikitext_to_paragraphs(doc.text)
    if doc.markup == LINES:
        return [line for line in doc.text.split("\n") if line.strip()]
    if doc.markup == PLAIN:
        return [p for p in (_WHITESPACE.sub(" ", block).strip() for block in _BLANK_LINES.split(doc.text)) if p]
    raise ValueError(f"unknown markup {doc.markup!r}")


def split_sentences(paragraphs: list[str]) -> list[str]:
    """Non-empty, stripped sentences of the paragraphs, in order."""
    sentences = []
    for group in _paragraph_groups(paragraphs, SPLIT_WINDOW_CHARS):
        sentences.extend(_split_group(group))
    return sentences


def _paragraph_groups(paragraphs: list[str], limit: int) -> Iterator[list[str]]:
    """All paragraphs in one group when they fit in `limit` characters; else consecutive groups of at most
    `limit` characters, a longer paragraph alone, in windows."""
    if sum(len(p) + 1 for p in paragraphs) <= limit:
        if paragraphs:
            yield paragraphs
        return
    group, size = [], 0
    for paragraph in paragraphs:
        if group and size + len(paragraph) > limit:
            yield group
            group, size = [], 0
        if len(paragraph) > limit:
            yield from ([window] for window in _windows(paragraph, limit))
            continue
        group.append(paragraph)
        size += len(paragraph) + 1
    if group:
        yield group


def _windows(paragraph: str, limit: int) -> Iterator[str]:
    """Pieces of at most `limit` characters, cut after the last space of each (anywhere when it has none)."""
    start = 0
    while len(paragraph) - start > limit:
        cut = paragraph.rfind(" ", start, start + limit)
        end = cut + 1 if cut > start else start + limit
        yield paragraph[start:end]
        start = end
    yield paragraph[start:]


def _split_group(paragraphs: list[str]) -> list[str]:
    text = _SANITIZE.sub(" ", "\n".join(paragraphs)).replace("\n", _JOINER)
    split = blingfire.text_to_sentences(text)
    if not split and text.strip():  # blingfire signals an internal failure with an empty result
        log.debug("blingfire could not split a text of %d characters; keeping its paragraphs", len(text))
        split = text.replace(_JOINER, "\n")
    sentences = []
    for sentence in split.split("\n"):
        # The separator never ends up inside a sentence; splitting on it anyway keeps paragraphs apart.
        for piece in sentence.split(_PARAGRAPH_SEPARATOR):
            piece = piece.strip()
            if len(piece) > MAX_SENTENCE_CHARS:
                sentences.extend(cut_long_sentence(piece))
            elif piece:
                sentences.append(piece)
    return sentences


def cut_long_sentence(sentence: str, limit: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Pieces of at most `limit` characters, cut at the last space before the limit when there is one.

    The rest of the sentence is tracked by offsets, never copied, so that a line of any length is cut in
    time linear in its length (each piece is looked at and copied once).
    """
    pieces = []
    start, end = 0, len(sentence)
    while end - start > limit:
        space = sentence.rfind(" ", start, start + limit + 1)
        cut = space if space > start else start + limit
        pieces.append(sentence[start:cut].strip())
        start = _LEADING_WHITESPACE.match(sentence, cut).end()
        end = max(start, _end_without_trailing_whitespace(sentence, end))
    if start < end:
        pieces.append(sentence[start:end])
    return [p for p in pieces if p]


def _end_without_trailing_whitespace(text: str, end: int) -> int:
    while end and text[end - 1].isspace():
        end -= 1
    return end


def segment(doc: RawDocument) -> Document:
    """Clean (if it is markup) and split one raw document."""
    sentences = split_sentences(document_paragraphs(doc))
    if doc.markup == WIKITEXT:
        sentences = prose_sentences(sentences)
    return Document(doc.id, doc.source, sentences)
