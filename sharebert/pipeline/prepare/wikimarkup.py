"""MediaWiki markup to plain prose paragraphs.

What goes: comments, references and other extension blocks (gallery, code listings, ...), templates
and parser functions (nested) but those whose output is prose (wikitemplates.py), tables, files/images,
categories, interlanguage links, HTML tags, magic words, headings, list bullets, emphasis quotes, and the
trailing sections that hold no prose (SKIPPED_SECTIONS). What stays: the visible text of links (internal,
interwiki and external), of inline tags such as <sub> or <code>, of the prose templates ({{convert}},
{{lang}}, ...) and quotations ({{quote}}, <blockquote>) as paragraphs of their own. What removal leaves is
repaired: empty brackets and the separators in them, doubled separators, a separator alone after the end
of a sentence, double spaces. A formula (<math>) leaves a mark, and prose_sentences drops the sentence
that holds it, and sentences of punctuation only.

Speed matters (this runs on every article of a dump), so the work is a few passes of compiled
regular expressions over the whole page and one cheap pass over its lines. Nested constructs
(templates in templates, links in image captions) are removed innermost first, repeating a pass
until nothing matches; whatever is still unbalanced at the end is dropped token by token.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from functools import partial
from operator import itemgetter

from .wikitemplates import FORMULA_MARK, render_template

# Extension and HTML elements dropped together with their content.
_DROPPED_ELEMENTS = (
    "ref|references|gallery|timeline|score|imagemap|graph|mapframe|maplink|"
    "syntaxhighlight|source|pre|templatestyles|templatedata|hiero|inputbox|categorytree|"
    "includeonly|indicator|charinsert|section"
)
# Tags removed while their content stays (MediaWiki's allowed HTML plus a few extension tags).
_KEPT_CONTENT_TAGS = (
    "abbr|b|bdi|bdo|big|caption|center|cite|code|data|dd|del|dfn|div|dl|dt|em|font|"
    "h[1-6]|hr|i|ins|kbd|li|mark|nowiki|noinclude|ol|onlyinclude|p|poem|q|rb|rp|rt|rtc|ruby|s|samp|"
    "small|span|strike|strong|sub|sup|table|td|th|time|tr|tt|u|ul|var|wbr|ref|references|math|gallery"
)

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_DROPPED = re.compile(rf"<({_DROPPED_ELEMENTS})\b[^>]*?(?:/>|>.*?</\1\s*>)", re.S | re.I)
# Formulas (<math>, and <chem>/<ce> of mhchem) become FORMULA_MARK: the sentence around them is dropped.
_FORMULA = re.compile(r"<(math|chem|ce)\b[^>]*?(?:/>|>.*?</\1\s*>)", re.S | re.I)
# Tags that end a paragraph: line breaks, and quotations (a paragraph of their own).
_PARAGRAPH_TAG = re.compile(r"<br\s*/?\s*>|</br\s*>|</?blockquote\b[^>]*>", re.I)
_TAG = re.compile(rf"</?(?:{_KEPT_CONTENT_TAGS})\b[^<>]*>", re.I)
# Innermost templates: {{ ... }} with no {{ or }} inside (single braces are allowed).
_TEMPLATE = re.compile(r"\{\{[^{}]*(?:(?:\{(?!\{)|\}(?!\}))[^{}]*)*\}\}")
_EXTERNAL_LINK = re.compile(r"\[(?:(?:https?|ftp|mailto|news|irc):|//)[^\s\[\]<>\"]*(?:[ \t]+([^\]\n]*))?\]", re.I)
_BARE_URL = re.compile(r"(?:https?|ftp)://[^\s<>\"\[\]{}|]+")
# Innermost links: [[ ... ]] with no brackets inside. The two common forms without a namespace or
# section, [[Page]] and [[Page|text]], are replaced without a Python call; _link_text does the rest.
_LINK = re.compile(r"\[\[([^\[\]]*)\]\]")
_PLAIN_LINK = re.compile(r"\[\[([^\[\]|:#]+)\]\]")
_PIPED_LINK = re.compile(r"\[\[[^\[\]|:#]+\|([^\[\]|]*[^\[\]|\s][^\[\]|]*)\]\]")
_DROPPED_NAMESPACES = frozenset({"file", "image", "media", "category"})
# A dropped link whose caption holds single brackets ("[above]", "Bicyclo[1.1.0]butane", "[1]]]"), once the
# links inside it are gone: [[ namespace: ... ]] with no [[ or ]] inside.
_DROPPED_LINK = re.compile(
    rf"\[\[\s*(?:{'|'.join(sorted(_DROPPED_NAMESPACES))})\s*:[^\[\]]*(?:(?:\[(?!\[)|\](?!\])|\](?=\]\]))[^\[\]]*)*\]\]",
    re.I,
)
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_LEFTOVER = re.compile(r"\[\[|\]\]|\{\{|\}\}|\{\||\|\}|</?ref\b[^>\n]*>?", re.I)
_SPACES = re.compile(r"  +")  # a literal first character keeps the scan fast
# What removing markup leaves in the prose (docs/prepare.md, Wikipedia). Each pattern starts with a literal
# character, which keeps its scan fast (a pattern starting with a class is ten times slower), and matches a
# run of a few characters: the scans stay linear on any line. Spaces are single here.
_SEPARATOR_RUNS = tuple(
    # "at, , to", "Aristotle (;, Aristotélēs", "born 1947; )", "either or, ." (an ellipsis "..." stays)
    re.compile(rf"{first}(?= ?[,;).!?])(?: ?[,;])*(?: ?(?:\)|[.!?](?!\.)))?")
    for first in ",;"
)
_COLON_BEFORE_END = re.compile(r": ?([.!?])(?!\.)")  # "Lincoln said: ."
# "Alaska () is" (with the space after, so that none doubles), "(; 14 March" from "({{IPAc-en|...}}; 14 March"
_BRACKET_RESIDUE = re.compile(r"\((?:[\s,;:]*\) ?| ?[,;:][ ,;:]*)")
# "Protestant. , the three largest" from "{{as of|2010}}, the": the separator goes, the sentence starts with a capital
_SEPARATOR_AFTER_SENTENCE = re.compile(r"\. [,;:] ?(\w?)")
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.;:!?])")
# re.sub with a C callable: Python 3.11 expands r"\1" templates in Python for every match.
_GROUP_1 = itemgetter(1)
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{1,8})*$")

# Interwiki prefixes of articles that look like language codes but are not interlanguage links.
_INTERWIKI_NOT_LANGUAGE = frozenset({"doi", "hdl", "rfc", "irc", "mw", "voy", "wmf", "wikt", "iso"})
_LANGUAGE_EXTRA = frozenset({"simple", "be-x-old", "zh-min-nan", "zh-classical", "zh-yue", "roa-rup"})
_INTERWIKI = frozenset(
    {"w", "wikt", "wiktionary", "s", "wikisource", "q", "wikiquote", "b", "wikibooks", "n", "wikinews",
     "v", "wikiversity", "voy", "wikivoyage", "c", "commons", "d", "wikidata", "m", "meta", "species",
     "wikispecies", "mw", "wikipedia", "doi", "hdl"}
)  # fmt: skip
# Sections at the end of an article that hold lists of links and citations, not prose.
SKIPPED_SECTIONS = frozenset(
    {"see also", "references", "external links", "further reading", "notes", "footnotes", "bibliography",
     "sources", "citations", "notes and references", "references and notes", "works cited", "related pages",
     "reference literature", "references and further reading", "additional references", "general references",
     "primary sources", "secondary sources", "cited texts", "cited works", "sources cited", "references cited",
     "literature cited", "selected bibliography", "select bibliography", "bibliographies", "explanatory notes",
     "endnotes", "notes and sources", "sources and notes", "footnotes and references", "external links and references"}
)  # fmt: skip
# A sentence worth keeping holds a letter or a digit.
_WORD_CHARACTER = re.compile(r"[^\W_]")
# What a sentence may start with that removal left: separators, or a period alone (not "...", not ".NET").
_LONE_PUNCTUATION_AT_START = re.compile(r"(?:(?:[,;:]|\.(?![.\w]))\s*)*")


def wikitext_to_paragraphs(text: str, template_counts: Counter | None = None) -> list[str]:
    """The prose of a page: one string per paragraph or list item, no markup left. Formulas are left as
    FORMULA_MARK, for prose_sentences. `template_counts`, if given, counts the templates by kind."""
    if FORMULA_MARK in text:
        text = text.replace(FORMULA_MARK, "")
    if "&" in text:
        text = html.unescape(text)  # before tags are removed, so &lt;ref&gt; is removed as a tag too
    if "<" in text:
        text = _COMMENT.sub("", text)
        text = _FORMULA.sub(FORMULA_MARK, text)
        text = _DROPPED.sub("", text)
    render = render_template if template_counts is None else partial(render_template, counts=template_counts)
    text = _remove_innermost(_TEMPLATE, text, "{{", render)
    if "[" in text:
        text = _EXTERNAL_LINK.sub(_external_link_text, text)
    if "://" in text:
        text = _BARE_URL.sub("", text)
    if "[[" in text:
        text = _PIPED_LINK.sub(_GROUP_1, _PLAIN_LINK.sub(_GROUP_1, text))
        text = _remove_links(text)
    if "__" in text:
        text = _MAGIC_WORD.sub("", text)
    if "<" in text:
        text = _PARAGRAPH_TAG.sub("\n", text)
        text = _TAG.sub("", text)
    if "''" in text:  # bold, italic, both: 3, 2, 5 quotes
        text = text.replace("'''", "").replace("''", "")
    return _paragraphs(text)


def _remove_innermost(pattern: re.Pattern, text: str, opener: str, replacement="") -> str:
    while opener in text:
        text, count = pattern.subn(replacement, text)
        if not count:
            break
    return text


def _remove_links(text: str) -> str:
    """Links innermost first; a file or category link that single brackets in its caption keep from
    matching as a link is dropped whole once the links inside it are gone, and the links around it follow."""
    while "[[" in text:
        text, count = _LINK.subn(_link_text, text)
        if not count:
            text, count = _DROPPED_LINK.subn("", text)
            if not count:
                break
    return text


def _external_link_text(m: re.Match) -> str:
    return m.group(1) or ""


def _link_text(m: re.Match) -> str:
    target, pipe, label = m.group(1).partition("|")
    target = target.strip()
    if target.startswith(":"):  # [[:Category:X]] is a visible link, not a category assignment
        target = target[1:]
    else:
        prefix, colon, rest = target.partition(":")
        if colon:
            key = prefix.strip().lower()
            if key in _DROPPED_NAMESPACES or _is_language_code(prefix.strip()):
                return ""
            if key in _INTERWIKI and not pipe:
                target = rest
    if pipe:
        if label.strip():
            return label
        return _pipe_trick(target)
    page, _, section = target.partition("#")
    return page or section


def _is_language_code(prefix: str) -> bool:
    return (prefix in _LANGUAGE_EXTRA or _LANGUAGE_CODE.match(prefix) is not None) and (
        prefix not in _INTERWIKI_NOT_LANGUAGE
    )


def _pipe_trick(target: str) -> str:
    """[[Page (qualifier)|]] shows as "Page"; [[Help:Page|]] as "Page"."""
    _, colon, rest = target.partition(":")
    name = rest if colon else target
    return re.sub(r"\s*\([^()]*\)\s*$", "", name.split(",")[0]).strip()


def _paragraphs(text: str) -> list[str]:
    """Drop tables, headings, skipped sections and list marks line by line, then tidy all lines at once."""
    kept: list[str] = []
    table_depth = 0
    skip_below: int | None = None  # heading level of a section being skipped
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        first = line[0]
        if (first == "{" and line.startswith("{|")) or (first == ":" and line.lstrip(":").startswith("{|")):
            table_depth += 1
            continue
        if table_depth:
            if line.startswith("|}"):
                table_depth -= 1
            continue
        if first == "=" and line[-1] == "=" and len(line) > 1:
            level = len(line) - len(line.lstrip("="))
            if skip_below is not None and level > skip_below:
                continue
            title = _LEFTOVER.sub("", line.strip("= \t")).strip().lower()
            skip_below = level if title in SKIPPED_SECTIONS else None
            continue
        if skip_below is not None or first in "|!" or line.startswith("----"):
            continue
        if first in "*#:;":
            line = line.lstrip("*#:; \t")
        kept.append(line)
    if not kept:
        return []
    text = _LEFTOVER.sub("", "\n".join(kept))
    if "&" in text:
        text = html.unescape(text)  # entities that were escaped twice in the source
    if "\t" in text:
        text = text.replace("\t", " ")
    if "\u00a0" in text:  # segmentation makes it a space anyway; here it cannot double one
        text = text.replace("\u00a0", " ")
    text = _repair_removal_residue(_SPACES.sub(" ", text))
    return [p for p in (line.strip(" ") for line in text.split("\n")) if p]


def _repair_removal_residue(text: str) -> str:
    """Separator runs first, so that brackets they emptied go too."""
    for pattern in _SEPARATOR_RUNS:
        text = pattern.sub(_separator_run_repair, text)
    text = _COLON_BEFORE_END.sub(_GROUP_1, text)
    if "(" in text:
        text = _BRACKET_RESIDUE.sub(_bracket_repair, text)
    text = _SEPARATOR_AFTER_SENTENCE.sub(_capitalized_sentence_start, text)
    return _SPACE_BEFORE_PUNCT.sub(_GROUP_1, text)


def _separator_run_repair(m: re.Match) -> str:
    run = m.group()
    if run[-1] in ").!?":
        return run[-1]  # separators before a closing bracket or the end of a sentence go
    return ";" if ";" in run else ","  # of doubled separators, the stronger stays


def _capitalized_sentence_start(m: re.Match) -> str:
    return ". " + m.group(1).upper()


def _bracket_repair(m: re.Match) -> str:
    return "" if ")" in m.group() else "("  # empty brackets go, separators after an opening one go


def prose_sentences(sentences: list[str]) -> list[str]:
    """The sentences of a page worth keeping: none that holds a formula or only punctuation, and none
    starting with a separator or a period that removal left alone (they go, and a capital starts it)."""
    kept = []
    for sentence in sentences:
        if FORMULA_MARK in sentence:
            continue
        if not sentence[0].isalnum():  # most sentences start with a word, and need no more look
            if not _WORD_CHARACTER.search(sentence):
                continue
            if sentence[0] in ",;:.":
                start = _LONE_PUNCTUATION_AT_START.match(sentence).end()
                sentence = sentence[start].upper() + sentence[start + 1 :] if start else sentence
        kept.append(sentence)
    return kept
