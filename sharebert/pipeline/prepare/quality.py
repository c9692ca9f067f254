"""What prepared wiki text should never hold, counted per MB of text (docs/prepare.md, Wikipedia).

Markup leaks are wiki syntax, file-link remnants, HTML entities and tags; residue is what removing markup
leaves in the prose: emptied or half-emptied brackets, doubled or stray separators, double spaces and
sentences without a word. Prose may hold a few of these legitimately (a "|" quoted in an article).
Used by bench/textquality.py, bench/prepare.py and the tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MB = 1e6

# name -> pattern, counted in every sentence.
MARKUP_LEAKS = {
    "[[": re.compile(r"\[\["),
    "]]": re.compile(r"\]\]"),
    "{{": re.compile(r"\{\{"),
    "}}": re.compile(r"\}\}"),
    "|-runs": re.compile(r"\|+"),
    "thumb": re.compile(r"\|\s*thumb|\bthumb(?:nail)?\s*\|", re.I),
    "file:/image:": re.compile(r"\b(?:file|image)\s*:[^\n|]*?\.(?:jpe?g|png|gif|svg|tiff?|ogg|pdf)\b", re.I),
    "entities": re.compile(r"&(?:[a-z][a-z0-9]*|#[0-9]+|#x[0-9a-f]+);", re.I),
    "tags": re.compile(r"</?[a-z][a-z0-9]*(?:\s[^<>]*)?/?>", re.I),
}
RESIDUE = {
    "(; or (,": re.compile(r"\(\s*[,;]"),
    "()": re.compile(r"\(\s*\)"),
    " ,": re.compile(r" ,"),
    ",,": re.compile(r",\s*,"),
    "double spaces": re.compile(r"  +"),
}
# Counted per sentence rather than per occurrence.
PUNCTUATION_ONLY = "punctuation-only sentences"
LONE_START = "sentences starting with , ; : or a lone ."
_WORD_CHARACTER = re.compile(r"[^\W_]")
_LONE_START = re.compile(r"[,;:]|\.(?![.\w])")


def count_markup_leaks(texts: Iterable[str]) -> dict:
    """How often each MARKUP_LEAKS pattern occurs in the texts, and the MB of text (UTF-8) they make."""
    counts, size = dict.fromkeys(MARKUP_LEAKS, 0), 0
    for text in texts:
        size += len(text.encode("utf-8"))
        for name, pattern in MARKUP_LEAKS.items():
            counts[name] += len(pattern.findall(text))
    return {"text_mb": size / MB, "counts": counts, "per_mb": sum(counts.values()) / max(size / MB, 1e-9)}


def count_residue(sentences: Iterable[str]) -> dict:
    """How often each RESIDUE pattern occurs in the sentences, how many hold only punctuation or start with
    a separator, and the MB of text (UTF-8) they make."""
    counts, size = dict.fromkeys([*RESIDUE, PUNCTUATION_ONLY, LONE_START], 0), 0
    for sentence in sentences:
        size += len(sentence.encode("utf-8"))
        for name, pattern in RESIDUE.items():
            counts[name] += len(pattern.findall(sentence))
        counts[PUNCTUATION_ONLY] += not _WORD_CHARACTER.search(sentence)
        counts[LONE_START] += _LONE_START.match(sentence) is not None
    return {"text_mb": size / MB, "counts": counts, "per_mb": sum(counts.values()) / max(size / MB, 1e-9)}
