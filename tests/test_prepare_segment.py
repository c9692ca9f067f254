"""Sentence segmentation (blingfire) and document layouts."""

from __future__ import annotations

from sharebert.pipeline.prepare.records import LINES, PLAIN, WIKITEXT, RawDocument
from sharebert.pipeline.prepare.segment import MAX_SENTENCE_CHARS, cut_long_sentence, segment, split_sentences


def test_sentences_split_and_never_cross_paragraphs():
    paragraphs = ["Dr. Smith went to Washington. He arrived at 5 p.m. on Monday!", "A heading without a period",
                  "Is this a question? Yes."]  # fmt: skip
    assert split_sentences(paragraphs) == [
        "Dr. Smith went to Washington.",
        "He arrived at 5 p.m. on Monday!",
        "A heading without a period",
        "Is this a question?",
        "Yes.",
    ]


def test_control_characters_and_separators_become_spaces():
    sentences = split_sentences(["Tab\there and\x0bvertical\x00tab.", "No\u2028break\u2029inside."])
    assert sentences == ["Tab\there and vertical tab.", "No break inside."]
    assert split_sentences([]) == [] and split_sentences(["   ", "\x00"]) == []


def test_overlong_sentences_are_cut_at_spaces():
    words = " ".join(f"w{i}" for i in range(2000))  # ~9,000 characters without punctuation
    pieces = split_sentences([words])
    assert len(pieces) > 1 and all(len(p) <= MAX_SENTENCE_CHARS for p in pieces)
    assert " ".join(pieces) == words
    assert cut_long_sentence("x" * 25, limit=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_layouts():
    plain = RawDocument("p", "s", "First line\nwraps here.\n\n\nSecond paragraph.\n", PLAIN)
    lines = RawDocument("l", "s", "One sentence per line\nAnother line", LINES)
    wiki = RawDocument("w", "s", "'''Bold''' start.\n== Head ==\nBody [[link|text]].", WIKITEXT)
    assert segment(plain).sentences == ["First line wraps here.", "Second paragraph."]
    assert segment(lines).sentences == ["One sentence per line", "Another line"]
    assert segment(wiki).sentences == ["Bold start.", "Body text."]
    assert (segment(wiki).id, segment(wiki).source) == ("w", "s")
