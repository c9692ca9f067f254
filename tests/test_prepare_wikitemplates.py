"""Prose templates, quotations, formulas and the repair of what removal leaves, on wikitext from English
Wikipedia articles (the snippets are quoted from the enwiki sample the cleaner was measured on)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from sharebert.pipeline.prepare.quality import count_markup_leaks, count_residue
from sharebert.pipeline.prepare.records import WIKITEXT, RawDocument
from sharebert.pipeline.prepare.segment import segment
from sharebert.pipeline.prepare.wikimarkup import SKIPPED_SECTIONS, prose_sentences, wikitext_to_paragraphs
from sharebert.pipeline.prepare.wikitemplates import (
    FORMULA_MARK,
    TEMPLATE_FAMILY_RENDERERS,
    TEMPLATE_RENDERERS,
    template_arguments,
    template_kind,
    template_name,
)


def prose(markup: str) -> str:
    return "\n".join(wikitext_to_paragraphs(markup))


def sentences(markup: str) -> list[str]:
    return segment(RawDocument("w", "s", markup, WIKITEXT)).sentences


@pytest.mark.parametrize(
    "markup, expected",
    [
        # convert: value and unit as written; ranges, feet and inches, magnitudes, symbols
        ("With an area of approximately {{convert|7283|km2|sqmi}}, the Northern Angolan province of Cabinda",
         "With an area of approximately 7283 km², the Northern Angolan province of Cabinda"),
        ("Alaska has nearly {{convert|34000|mi|km|-1}} of tidal shoreline.", "Alaska has nearly 34000 mi of tidal shoreline."),
        ("ranging from {{convert|400|to|670|mm}} annually", "ranging from 400 to 670 mm annually"),
        ("At {{convert|6|ft|4|in|m}}, he was tall", "At 6 ft 4 in, he was tall"),
        ("the state of Alaska owns {{convert|101|e6acre|e6ha|abbr=off}}, its entitlement",
         "the state of Alaska owns 101 million acres, its entitlement"),
        ("averaging over {{convert|90|F|C}} throughout", "averaging over 90 °F throughout"),
        ("from {{cvt|5|-|10|m}} deep", "from 5–10 m deep"),
        # as of
        ("{{as of|2010}}, the three largest denominational groups", "As of 2010, the three largest denominational groups"),
        ("The next twenty largest employers, {{as of|2011|lc=y}}, included:", "The next twenty largest employers, as of 2011, included:"),
        ("{{As of|2015|6|30}} when the last leap second was added", "As of 30 June 2015 when the last leap second was added"),
        # lang, lang-xx, transl, nihongo, script: the text
        ("Napoleon is called ''{{lang|fr|César}}'', the French form", "Napoleon is called César, the French form"),
        ("The '''Republic of Azerbaijan''' ({{lang-az|Azərbaycan Respublikası}}), is a country",
         "The Republic of Azerbaijan (Azərbaycan Respublikası), is a country"),
        ("the word ''{{transl|ar|ALA|Allāh}}'' should be", "the word Allāh should be"),
        ("One applies {{transl|ja|aiki}} by understanding", "One applies aiki by understanding"),
        ("Many of the {{Nihongo|strikes|打ち|uchi}} of aikido", "Many of the strikes (打ち, uchi) of aikido"),
        ("***{{Script|Goth|𐌰}} : [[Gothic alphabet|Gothic]] letter aza", "𐌰: Gothic letter aza"),
        # links inside arguments keep their pipe; templates inside templates render first
        ("Muslims use ''[[Insha'Allah|{{transl|ar|ALA|in shā’ Allāh}}]]'' after", "Muslims use in shā’ Allāh after"),
        ("({{lang|grc|[[Ecclesia (ancient Athens)|ἐκκλησία]]}})", "(ἐκκλησία)"),
        ("({{lang-ar|{{large|الجزائر}}}} ''{{transl|ar|al-Jazā'ir}}'')", "(الجزائر al-Jazā'ir)"),
        # quotations: a paragraph of their own, without the attribution
        ("Lincoln wrote:{{quote|text=My paramount object in this struggle is to save the Union.<ref>Basler (1953), "
         "p. 388</ref>|sign=Lincoln|source=1862}} He added", "Lincoln wrote:\nMy paramount object in this struggle is "
         "to save the Union.\nHe added"),
        ("{{quote\n| ...I saw a little boy, perhaps ten years old.\n}}", "...I saw a little boy, perhaps ten years old."),
        ("{{cquote|We came in peace for all mankind.}}", "We came in peace for all mankind."),
        ("{{blockquote|Fondly do we hope.}}", "Fondly do we hope."),
        ("George Woodcock states:<blockquote>a notable contribution to the activities of the Commune</blockquote>",
         "George Woodcock states:\na notable contribution to the activities of the Commune"),
        # chem, chem2: the formula as text
        ("The latter may be heated under vacuum to generate {{chem|Cs|2|O}}.", "The latter may be heated under vacuum to generate Cs2O."),
        ("such as {{chem2|CH3COOH}} in water", "such as CH3COOH in water"),
        # nowrap, nobr, small: their content; abbr: the abbreviation
        ("She is {{nowrap|160 cm}} tall and weighs {{nobr|50 kg}}.", "She is 160 cm tall and weighs 50 kg."),
        ("the anthem {{small|''Aruba, Sweet Country''}}", "the anthem Aruba, Sweet Country"),
        ("{{abbr|Gov.|Governor}} Smith", "Gov. Smith"),
        # frac, sfrac
        ("CH<sub>4</sub> + {{frac|3|2}} O<sub>2</sub>", "CH4 + 3/2 O2"),
        ("cos<sup>−1</sup>(−{{frac|3}}) ≈ 109.47°", "cos−1(−1/3) ≈ 109.47°"),
        ("a year ({{sfrac|1|1|4}} days short)", "a year (1 1/4 days short)"),
        # graphemes and phonemes as they are written in prose
        ("In most languages, {{angbr|a}} denotes an open unrounded vowel, such as {{IPA|/[[Open front unrounded vowel|a]]/}}.",
         "In most languages, ⟨a⟩ denotes an open unrounded vowel, such as /a/."),
        # pronunciations go, with the brackets and separators around them
        ("'''Albania''' ({{IPAc-en|audio=en-us-Albania.ogg|æ|l|ˈ|b|eɪ|n|i|ə|,_|ɔː|l|-}}, {{respell|a(w)l|BAY|nee-ə}}; "
         "{{lang-sq|Shqipëri}}) is a country", "Albania (Shqipëri) is a country"),
        ("'''Abraham Lincoln''' ({{IPAc-en|audio=GeoTrinity_Abraham_Lincoln.ogg|ˈ|eɪ|b|r|ə|h|æ|m|_|ˈ|l|I|ŋ|k|ən}}; "
         "February 12, 1809 – April 15, 1865) was", "Abraham Lincoln (February 12, 1809 – April 15, 1865) was"),
        ("'''Arthur Schopenhauer''' ({{IPA-de|ˈaʁtʊʁ ˈʃoːpənˌhaʊ̯ɐ|lang}}; 22 February 1788&nbsp;– 21 September 1860)",
         "Arthur Schopenhauer (22 February 1788 – 21 September 1860)"),
        ("'''Delius''' ({{IPAc-en|ˈ|d|iː|l|i|ə|s}} {{respell|DEE|lee-əs}}; Δήλιος, ''Delios'')", "Delius (Δήλιος, Delios)"),
        ("'''Alabama''' ({{IPAc-en|ˌ|æ|l|ə|ˈ|b|æ|m|ə}}) is a state", "Alabama is a state"),
        ("'''Albedo'''&nbsp;{{IPAc-en|æ|l|ˈ|b|iː|d|oʊ}} or reflection coefficient", "Albedo or reflection coefficient"),
        # symbols and values
        ("{{chem|CH|3|COOH}} + {{chem|H|2|O}} {{eqm}} {{chem|CH|3|COO|−}}", "CH3COOH + H2O ⇌ CH3COO−"),
        ("the world{{'s}} largest", "the world's largest"),
        ("a mass of {{val|1.67|e=-27|u=kg}}", "a mass of 1.67×10^-27 kg"),
        # names are folded like MediaWiki's (first letter, underscores) and "Template:" may be written
        ("{{As_of|2009}}, there were 1,397,000 lines", "As of 2009, there were 1,397,000 lines"),
        ("{{Template:Nowrap|160 cm}} tall", "160 cm tall"),
        # unknown templates are still removed
        ("The highest point is Mount Cheaha.{{citation needed|date=May 2010}} It", "The highest point is Mount Cheaha. It"),
        ("{{Infobox country\n| conventional_long_name = {{lang|fr|République}}\n}}Text.", "Text."),
    ],
)  # fmt: skip
def test_prose_templates_render_as_text(markup, expected):
    assert prose(markup) == expected


@pytest.mark.parametrize(
    "markup, expected",
    [
        # empty brackets and the separators in them
        ("Ayn Rand ({{IPAc-en|aɪ|n}}) was a novelist", "Ayn Rand was a novelist"),
        ("Achilles ({{IPAc-en|ə|ˈ|k|ɪ|l|iː|z}}; {{lang-grc|Ἀχιλλεύς}}, ''Akhilleus'', {{IPA-el|a.kʰil.lěu̯s|}}) was",
         "Achilles (Ἀχιλλεύς, Akhilleus) was"),
        ("a family (born 1905; {{citation needed}}) in Saint Petersburg", "a family (born 1905) in Saint Petersburg"),
        ("(TAI, from the French name {{lang|fr|Temps Atomique International}}, {{update|2015}})",
         "(TAI, from the French name Temps Atomique International)"),
        # doubled punctuation
        ("particularly {{vr|ai}}, {{unknown|au}}, {{unknown|aw}} and {{vr|oa}}.", "particularly ai, and oa."),
        ("such as {{unknown|a}}, {{unknown|b}}; {{unknown|c}} or ten", "such as; or ten"),
        ("which could be understood to mean either {{unknown|x}} or {{unknown|y}}, .", "which could be understood to mean either or."),
        ("Lincoln said: {{unknown|x}}.", "Lincoln said."),
        # a separator left alone after the end of a sentence
        ("identify as Evangelical Protestant. {{Update after|2012}}, the three largest groups",
         "identify as Evangelical Protestant. The three largest groups"),
        # double spaces
        ("Rand was born Alisa Rosenbaum&nbsp;{{unknown|ru}} on February 2, 1905", "Rand was born Alisa Rosenbaum on February 2, 1905"),
        # what is not residue stays: ellipses, abbreviations
        ("Jesus Christ and ... the first. See e.g., U.S., and the rest (of it).", "Jesus Christ and... the first. See e.g., U.S., and the rest (of it)."),
    ],
)  # fmt: skip
def test_what_removal_leaves_is_repaired(markup, expected):
    assert prose(markup) == expected


def test_formulas_drop_the_sentence_that_holds_them():
    markup = (
        "The rate is given by <math>r = N/T</math> where N is the number of cases. It was measured in 1920.\n"
        ":<math>\\alpha = \\frac{1}{2}</math>\nThe area {{math|''A'' {{=}} π''r''<sup>2</sup>}} is large. Done.\n"
        "A <chem>H2O</chem> molecule bends. Water boils."
    )
    assert sentences(markup) == ["It was measured in 1920.", "Done.", "Water boils."]


def test_sentences_of_punctuation_only_or_lone_separators_at_the_start_are_repaired():
    markup = (
        "First sentence.\n{{convert-like unknown}},\n. .\n{{as of unknown|2011}}, 50.7% of Alaska's population was young.\n"
        "{{unknown}}. Guru Tegh Bahadur sacrificed his head.\n... and so on.\n. . . and more.\n.NET is a framework."
    )
    assert sentences(markup) == ["First sentence.", "50.7% of Alaska's population was young.",
                                 "Guru Tegh Bahadur sacrificed his head.", "... and so on.", "... and more.", ".NET is a framework."]  # fmt: skip
    assert prose_sentences([",", "+ +", "—", ", the three", "\ue000 x", "ok"]) == ["The three", "ok"]


def test_a_formula_mark_in_the_page_itself_is_not_taken_for_a_formula():
    assert sentences(f"A private{FORMULA_MARK} character. Kept.") == ["A private character.", "Kept."]


def test_trailing_sections_without_prose_are_skipped():
    for title in ("Reference literature", "Bibliography", "Sources", "Works cited", "Notes", "Further reading"):
        assert title.lower() in SKIPPED_SECTIONS
        assert prose(f"Prose.\n== {title} ==\n* Smith, J. (1990). ''A Book''.\n=== More ===\n* x") == "Prose."
    assert (
        prose("Prose.\n== Literature ==\nThe national literature is old.") == "Prose.\nThe national literature is old."
    )


def test_the_template_table():
    assert template_name(" As_of ") == "as of" and template_name("Template:NoWrap") == "nowrap"
    assert template_kind("lang-grc-gre")[0] == "lang-*" and template_kind("ipac-en")[0] == "ipac-*"
    assert template_kind("cite web") == ("other", None) and template_kind("-") == ("other", None)
    assert {"convert", "as of", "lang", "transl", "nihongo", "script", "quote", "blockquote", "cquote", "chem",
            "chem2", "nowrap", "small", "nobr", "frac", "sfrac", "abbr", "respell"} <= set(TEMPLATE_RENDERERS)  # fmt: skip
    assert {"lang-", "ipa-", "ipac-"} <= set(TEMPLATE_FAMILY_RENDERERS)
    assert template_arguments("quote|text=a [[b|c]] d|sign=E|2=f|g") == {
        "text": "a [[b|c]] d", "sign": "E", "2": "f", "1": "g"
    }  # fmt: skip
    assert template_arguments("quote|E=mc2 is an equation") == {"E": "mc2 is an equation"}  # as MediaWiki reads it


def test_templates_are_counted_by_kind():
    counts = Counter()
    wikitext_to_paragraphs(
        "{{convert|5|km}} {{lang-de|x}} {{lang-fr|y}} {{cite web|url=u}} {{quote|{{nowrap|q}}}}", counts
    )
    assert counts == Counter({"convert": 1, "lang-*": 2, "other": 1, "quote": 1, "nowrap": 1})


def test_repairs_stay_linear_on_long_lines():
    """Each repair pattern starts with a literal character and matches a short run: no quadratic scans (a
    quadratic one would take minutes here)."""
    for unit in (", ", "( ", ",;", "(, ", ". , ", ": ", ",,,,)", "{{convert|1|km}} ({{IPAc-en|x}}; "):
        line = unit * (500_000 // len(unit))
        started = time.perf_counter()
        wikitext_to_paragraphs(line + "\n" + line[::-1])
        assert time.perf_counter() - started < 5, unit


def test_the_counters_see_what_they_count():
    leaks = count_markup_leaks(["a [[b", "c}} | d &amp; <span>"])["counts"]
    assert (leaks["[["], leaks["}}"], leaks["|-runs"], leaks["entities"], leaks["tags"]) == (1, 1, 1, 1, 1)
    residue = count_residue(["Rand (; born", "x ()", "a , b", "a,, b", "a  b", ",", ", the", ". x", "... fine", ".NET"])
    assert list(residue["counts"].values()) == [1, 1, 1, 1, 1, 1, 3]
