"""Sentence segmentation (blingfire) and document layouts."""

from __future__ import annotations

import random

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


class CopyCountingStr(str):
    """A str that counts the characters of every string its slicing and stripping make."""

    copied = 0

    def _counted(self, result: str) -> CopyCountingStr:
        CopyCountingStr.copied += len(result)
        return CopyCountingStr(result)

    def __getitem__(self, key):
        return self._counted(str.__getitem__(self, key))

    def strip(self, chars=None):
        return self._counted(str.strip(self, chars))

    def lstrip(self, chars=None):
        return self._counted(str.lstrip(self, chars))

    def rstrip(self, chars=None):
        return self._counted(str.rstrip(self, chars))


def test_cutting_a_long_line_copies_each_character_a_bounded_number_of_times():
    # Copying the rest of the line for each piece would copy ~ n^2 / (2 * limit) characters: 250x n here.
    line = " ".join(f"w{i % 997}" for i in range(20_000))
    CopyCountingStr.copied = 0
    pieces = cut_long_sentence(CopyCountingStr(line), limit=200)
    assert " ".join(pieces) == line and all(len(p) <= 200 for p in pieces)
    assert CopyCountingStr.copied <= 3 * len(line)


def quadratic_cut(sentence: str, limit: int) -> list[str]:
    """The cut as first written (each piece copies the rest of the sentence): the output to keep."""
    pieces = []
    while len(sentence) > limit:
        cut = sentence.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        pieces.append(sentence)
    return [p for p in pieces if p]


def test_cut_pieces_are_those_of_the_first_version():
    rng = random.Random(5)
    parts = ["a", "bc", " ", "  ", "\t", "\u3000", "x" * 7, " " * 12, "\n", "é"]
    for _ in range(20_000):
        sentence = "".join(rng.choice(parts) for _ in range(rng.randint(0, 40)))
        limit = rng.randint(1, 12)
        assert cut_long_sentence(sentence, limit) == quadratic_cut(sentence, limit), (sentence, limit)


def test_a_long_document_reaches_blingfire_in_bounded_groups_and_a_short_one_whole(monkeypatch):
    from sharebert.pipeline.prepare import segment as segment_module

    rng = random.Random(5)
    words = ["alpha", "beta", "gamma.", "Delta", "e.g.", "Mr.", "x", "(y)", "z?"]
    paragraphs = [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 60))) for _ in range(300)]
    whole = split_sentences(paragraphs)
    assert sum(map(len, paragraphs)) < segment_module.SPLIT_WINDOW_CHARS
    sizes = []
    real = segment_module.blingfire.text_to_sentences
    monkeypatch.setattr(
        segment_module.blingfire, "text_to_sentences", lambda text: sizes.append(len(text)) or real(text)
    )
    assert split_sentences(paragraphs) == whole and len(sizes) == 1
    sizes.clear()
    monkeypatch.setattr(segment_module, "SPLIT_WINDOW_CHARS", 500)
    grouped = split_sentences(paragraphs)
    assert len(sizes) > 10 and max(sizes) <= 500 + 60 * 3  # a group, plus its paragraph joiners
    assert " ".join(grouped).split() == " ".join(paragraphs).split()  # every word, in order


def test_a_paragraph_longer_than_the_window_is_split_in_windows_cut_at_spaces(monkeypatch):
    from sharebert.pipeline.prepare import segment as segment_module

    sizes = []
    real = segment_module.blingfire.text_to_sentences
    monkeypatch.setattr(
        segment_module.blingfire, "text_to_sentences", lambda text: sizes.append(len(text)) or real(text)
    )
    monkeypatch.setattr(segment_module, "SPLIT_WINDOW_CHARS", 1000)
    line = " ".join(f"word{i}" for i in range(2000))  # about 14,000 characters, no sentence end
    sentences = split_sentences([line])
    assert max(sizes) <= 1000 and sum(sizes) == len(line)
    assert " ".join(sentences).split() == line.split()  # every word kept, none cut in two
