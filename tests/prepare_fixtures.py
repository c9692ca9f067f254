"""Small inputs for the `sharebert prepare` tests, written by the tests themselves."""

from __future__ import annotations

import bz2
import string
from pathlib import Path
from xml.sax.saxutils import escape

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "was",
    "it",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "be",
    "are",
    "his",
    "her",
    "he",
    "she",
    "they",
    "river",
    "city",
    "town",
    "village",
    "people",
    "book",
    "chapter",
    "story",
    "king",
    "queen",
    "war",
    "history",
    "music",
    "river",
    "mountain",
    "sea",
    "ship",
    "island",
    "water",
    "light",
    "house",
    "garden",
    "market",
    "school",
    "church",
    "bridge",
    "road",
    "year",
    "years",
    "day",
    "night",
]

DUMP_HEAD = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="4" case="first-letter">Wikipedia</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""


def write_vocab(path: Path, extra_words=()) -> Path:
    """A small but complete BERT-style vocab: specials, every printable ASCII character (alone and
    as a ##continuation), a few hundred words; enough for any ASCII text (no [UNK] for ASCII)."""
    chars = [c for c in string.printable if not c.isspace() and not c.isupper()]
    tokens = SPECIALS + chars + [f"##{c}" for c in chars] + sorted(set(WORDS) | set(extra_words))
    tokens += ["¶", "é", "##é", "ü", "##ü", "ö", "##ö"]
    seen, unique = set(), []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    path.write_text("\n".join(unique) + "\n", encoding="utf-8")
    return path


def page(title: str, page_id: int, text: str, ns: int = 0, redirect: str | None = None) -> str:
    redirect_tag = f'\n    <redirect title="{escape(redirect)}" />' if redirect else ""
    return (
        f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>{page_id}</id>{redirect_tag}\n"
        f'    <revision>\n      <id>{page_id + 1000}</id>\n      <text xml:space="preserve">{escape(text)}</text>\n'
        f"    </revision>\n  </page>\n"
    )


def dump_xml(pages: list[str]) -> str:
    return DUMP_HEAD + "".join(pages) + "</mediawiki>\n"


def write_dump(path: Path, pages: list[str], multistream: bool = False) -> Path:
    """A dump as .xml, or bz2-compressed when the name ends in .bz2 (several streams with multistream)."""
    xml = dump_xml(pages).encode("utf-8")
    if not path.name.endswith(".bz2"):
        path.write_bytes(xml)
    elif multistream:
        # Like the real multistream dumps: the header, then groups of pages, each its own bz2 stream.
        head, body = xml.split(b"  <page>", 1)
        parts = [head] + [b"  <page>" + p for p in body.split(b"  <page>")]
        path.write_bytes(b"".join(bz2.compress(p) for p in parts))
    else:
        path.write_bytes(bz2.compress(xml))
    return path


def article(n: int, sentences: int = 6) -> str:
    """Wiki markup of an article with every construct the cleaner removes, around plain sentences."""
    body = " ".join(
        f"The [[river|river]] {n} passes the '''town''' of [[Village {n}]] in year {1900 + k}."
        for k in range(sentences)
    )
    return (
        "{{Infobox river\n| name = River {{lang|fr|rivière}}\n| length = 10 km\n}}\n"
        f'{body}<ref>{{{{cite book|title=Book}}}}</ref> The sea was near.<ref name="a"/>\n\n'
        "== History ==\n"
        f"In year {n} the king built a bridge.<!-- hidden comment --> The people had a market.\n"
        "* The queen had a ship.\n"
        '{| class="wikitable"\n|-\n! Year !! Event\n|-\n| 1900 || bridge\n|}\n'
        "[[File:Map.png|thumb|A map of the [[city]].]]\n"
        "== References ==\n{{reflist}}\n"
        f"[[Category:Rivers]]\n[[fr:Rivière {n}]]\n"
    )
