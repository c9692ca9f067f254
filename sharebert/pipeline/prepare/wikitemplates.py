"""The inline templates whose output is prose, rendered as text; every other template is removed.

Deleting every template leaves holes in sentences ("at an altitude of , twelve minutes"). The table below
holds the templates that sit inside sentences of the enwiki sample, by how often they occur in its prose
(docs/prepare.md, Wikipedia): measurements, language text, quotations, formulas, pronunciations, and a few
that wrap or abbreviate a word. A renderer gets the template's arguments named as MediaWiki names them
("1", "2", ... for positional ones) and returns its text. No renderer adds a brace, so rendering nested
templates innermost first always ends.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

Arguments = dict[str, str]
Renderer = Callable[[Arguments], str]

# Stands for a formula (<math>, {{math}}): a sentence that holds it is dropped whole (wikimarkup.prose_sentences)
# rather than left with a hole. A private-use character, removed from the page before anything else.
FORMULA_MARK = "\ue000"
OTHER_TEMPLATES = "other"  # the kind counted for the templates that are removed

_ARGUMENT_BOUNDARY = re.compile(r"\[\[|\]\]|\|")
_ARGUMENT_NAME = re.compile(r"[\w -]+")
_NUMBER = re.compile(r"[-+\u2212]?[\d.,]+(?:[+/][\d.,/]+)?")
# The kind of each template name as written, looked up once per worker (a dump uses a few thousand names).
_KINDS: dict[str, tuple[str, Renderer | None]] = {}
_KINDS_KEPT = 100_000
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip


def render_template(match: re.Match, counts: Counter | None = None) -> str:
    """The text of one innermost template `{{name|...}}`: its renderer's output, or nothing."""
    page, start, end = match.string, match.start() + 2, match.end() - 2
    bar = page.find("|", start, end)
    written_name = page[start : end if bar < 0 else bar]
    kind, renderer = _KINDS.get(written_name) or _remember_kind(written_name)
    if counts is not None:
        counts[kind] += 1
    return renderer(template_arguments(page[start:end])) if renderer else ""


def _remember_kind(written_name: str) -> tuple[str, Renderer | None]:
    """The kind of a name as written, remembered (at most _KINDS_KEPT names)."""
    kind = template_kind(template_name(written_name))
    if len(_KINDS) < _KINDS_KEPT:
        _KINDS[written_name] = kind
    return kind


def template_name(written_name: str) -> str:
    """'Lang-de ' -> 'lang-de', 'As_of' -> 'as of', 'Template:Nowrap' -> 'nowrap' (case and spacing folded)."""
    name = " ".join(written_name.replace("_", " ").split()).lower()
    return name[9:] if name.startswith("template:") else name


def template_kind(name: str) -> tuple[str, Renderer | None]:
    """The entry of the tables that renders a template ('lang-*' for a family), or ('other', None): removed."""
    renderer = TEMPLATE_RENDERERS.get(name)
    if renderer is not None:
        return name, renderer
    prefix = name[: name.find("-") + 1]
    renderer = TEMPLATE_FAMILY_RENDERERS.get(prefix) if prefix else None
    return (f"{prefix}*", renderer) if renderer is not None else (OTHER_TEMPLATES, None)


def template_arguments(body: str) -> Arguments:
    """Arguments split at the pipes outside links ([[a|b]] stays whole), stripped; positional ones are "1", "2", ..."""
    pieces, depth, start = [], 0, 0
    for boundary in _ARGUMENT_BOUNDARY.finditer(body):
        token = boundary.group()
        if token == "[[":
            depth += 1
        elif token == "]]":
            depth = max(depth - 1, 0)
        elif not depth:
            pieces.append(body[start : boundary.start()])
            start = boundary.end()
    pieces.append(body[start:])
    arguments, position = {}, 0
    for piece in pieces[1:]:
        name, equals, value = piece.partition("=")
        if equals and _ARGUMENT_NAME.fullmatch(name.strip()):
            arguments[name.strip()] = value.strip()
        else:
            position += 1
            arguments[str(position)] = piece.strip()
    return arguments


def _positional(arguments: Arguments) -> list[str]:
    values, position = [], 1
    while str(position) in arguments:
        values.append(arguments[str(position)])
        position += 1
    return values


# ---------------------------------------------------------------- renderers
def _measurement(arguments: Arguments) -> str:
    """{{convert|5|km|mi}} -> '5 km'; ranges ('2|to|5|km', '2|-|5|km') and '5|ft|6|in' as written."""
    values = _positional(arguments)
    if not values:
        return ""
    text, i = values[0], 1
    while i + 1 < len(values) and values[i] in _RANGE_WORDS:
        text += _RANGE_WORDS[values[i]] + values[i + 1]
        i += 2
    if i < len(values):
        text += " " + _unit(values[i])
        i += 1
        while i + 1 < len(values) and _NUMBER.fullmatch(values[i]):
            text += f" {values[i]} {_unit(values[i + 1])}"
            i += 2
    return text


_RANGE_WORDS = {"-": "\u2013", "\u2013": "\u2013", "to": " to ", "to(-)": " to ", "and": " and ", "and(-)": " and ",
                "or": " or ", "x": " \u00d7 ", "\u00d7": " \u00d7 ", "by": " by ", "+/-": " \u00b1 ", "\u00b1": " \u00b1 "}  # fmt: skip
# Unit codes of {{convert}} that are not written as they are coded.
_UNIT_NAMES = {"km2": "km\u00b2", "m2": "m\u00b2", "cm2": "cm\u00b2", "km3": "km\u00b3", "m3": "m\u00b3",
               "sqmi": "sq mi", "sqft": "sq ft", "sqyd": "sq yd", "cuft": "cu ft", "acre": "acres",
               "C": "\u00b0C", "F": "\u00b0F", "kph": "km/h"}  # fmt: skip
_MAGNITUDES = {"e3": "thousand", "e6": "million", "e9": "billion"}


def _unit(code: str) -> str:
    magnitude = _MAGNITUDES.get(code[:2])
    if magnitude and len(code) > 2:
        return f"{magnitude} {_unit(code[2:])}"
    return _UNIT_NAMES.get(code, code)


def _as_of(arguments: Arguments) -> str:
    """{{as of|2010}} -> 'As of 2010'; {{as of|2010|5|lc=y}} -> 'as of May 2010'."""
    if arguments.get("alt"):
        return arguments["alt"]
    year, month, day = (arguments.get(key, "") for key in ("1", "2", "3"))
    if month.isdigit() and 1 <= int(month) <= 12:
        month = _MONTHS[int(month) - 1]
    date = " ".join(part for part in (day if month else "", month, year) if part)
    lowercase = arguments.get("lc", "").lower() not in ("", "n", "no")
    return f"{'as of' if lowercase else 'As of'} {date}".strip()


def _language_text(arguments: Arguments) -> str:
    """{{lang|fr|César}}, {{script|Goth|𐌰}} -> the text."""
    return arguments.get("2", "")


def _transliteration(arguments: Arguments) -> str:
    """{{transl|ar|ALA|Allāh}} or {{transl|ja|aiki}} -> the text (the last argument)."""
    values = _positional(arguments)
    return values[-1] if len(values) > 1 else ""


def _japanese(arguments: Arguments) -> str:
    """{{nihongo|strikes|打ち|uchi}} -> 'strikes (打ち, uchi)'."""
    english, kanji, romaji = (arguments.get(key, "") for key in ("1", "2", "3"))
    head = english or kanji
    notes = [note for note in (kanji, romaji) if note and note != head]
    return f"{head} ({', '.join(notes)})" if notes else head


def _quotation(arguments: Arguments) -> str:
    """{{quote|text=...|sign=...}} -> the quotation as a paragraph of its own (without its attribution)."""
    text = arguments.get("text") or arguments.get("quote") or arguments.get("1", "")
    return f"\n{text}\n" if text else ""


def _chemical_formula(arguments: Arguments) -> str:
    """{{chem|H|2|SO|4}} -> 'H2SO4'; {{chem2|CH3COOH}} -> 'CH3COOH'."""
    return "".join(_positional(arguments))


def _content(arguments: Arguments) -> str:
    """{{nowrap|160 cm}}, {{small|...}}, {{abbr|St.|Saint}}, {{lang-az|Azərbaycan}} -> their (first) text."""
    return arguments.get("1", "")


def _fraction(arguments: Arguments) -> str:
    """{{frac|3|4}} -> '3/4', {{frac|2}} -> '1/2', {{frac|1|1|4}} -> '1 1/4'."""
    values = _positional(arguments)
    if len(values) == 1:
        return f"1/{values[0]}"
    if len(values) == 2:
        return f"{values[0]}/{values[1]}"
    return f"{values[0]} {values[1]}/{values[2]}" if values else ""


def _angle_brackets(arguments: Arguments) -> str:
    """{{angbr|a}} -> '⟨a⟩' (a grapheme)."""
    return f"\u27e8{arguments.get('1', '')}\u27e9"


def _value(arguments: Arguments) -> str:
    """{{val|6.022|e=23|u=mol}} -> '6.022×10^23 mol'."""
    text = arguments.get("1", "")
    if arguments.get("e"):
        text += f"\u00d710^{arguments['e']}"
    return f"{text} {arguments['u']}" if arguments.get("u") else text


def _pronunciation(arguments: Arguments) -> str:
    """{{IPAc-en|...}}, {{respell|...}}: dropped; the brackets and separators left around them are repaired."""
    return ""


def _formula(arguments: Arguments) -> str:
    """{{math|...}}: the sentence that holds it is dropped, as for <math>."""
    return FORMULA_MARK


def _symbol(text: str) -> Renderer:
    def symbol(arguments: Arguments) -> str:
        return text

    return symbol


# What each template renders as: name (lowercase, spaces for underscores) -> renderer. Counts in the prose of the
# enwiki sample's 106 articles: convert 359, lang 208, ipac-en 85, lang-xx 71, respell 56, transl 49,
# nihongo 45, chem 33, quote 32, as of 29, smaller 20, angbr 19, nowrap 17, vanchor 16, ipa 15 and ipa-xx 26,
# eqm 12, frac 7 and sfrac 2, 's 7, sc 6, val 6, nbsp 5, snd 3, script 3, math 3; the others asked for by
# their kind (cvt, cquote, blockquote, chem2, nobr, small, abbr) are rare there but common in Wikipedia.
TEMPLATE_RENDERERS: dict[str, Renderer] = {
    "convert": _measurement, "cvt": _measurement,
    "as of": _as_of,
    "lang": _language_text, "script": _language_text, "transl": _transliteration, "nihongo": _japanese,
    "quote": _quotation, "blockquote": _quotation, "cquote": _quotation, "quotation": _quotation,
    "chem": _chemical_formula, "chem2": _chemical_formula,
    "nowrap": _content, "nobr": _content, "small": _content, "smaller": _content, "large": _content, "sc": _content,
    "vanchor": _content, "abbr": _content, "vr": _content, "ipa": _content,
    "frac": _fraction, "sfrac": _fraction,
    "angbr": _angle_brackets, "val": _value,
    "respell": _pronunciation, "audio": _pronunciation, "pronunciation": _pronunciation,
    "math": _formula,
    "'s": _symbol("'s"), "nbsp": _symbol(" "), "snd": _symbol(" \u2013 "), "eqm": _symbol("\u21cc"),
}  # fmt: skip
# Families of templates named by a prefix: {{lang-de|...}}, {{IPA-fr|...}}, {{IPAc-en|...}}.
TEMPLATE_FAMILY_RENDERERS: dict[str, Renderer] = {
    "lang-": _content, "ipa-": _pronunciation, "ipac-": _pronunciation,
}  # fmt: skip
