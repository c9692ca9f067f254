"""Wiki markup -> prose: every construct, on hand-written markup."""

from __future__ import annotations

import pytest

from sharebert.pipeline.prepare.wikimarkup import FORMULA_MARK, wikitext_to_paragraphs

MARKUP_LEFTOVERS = ("{{", "}}", "[[", "]]", "{|", "|}", "|", "thumb", "<ref", "&lt;", "'''", "''", "==", "<!--", "__")


def prose(markup: str) -> str:
    paragraphs = wikitext_to_paragraphs(markup)
    text = "\n".join(paragraphs)
    for leftover in MARKUP_LEFTOVERS:
        assert leftover not in text, f"{leftover!r} survived in {text!r}"
    return text


@pytest.mark.parametrize(
    "markup, expected",
    [
        # templates, nested, multi-line, parser functions, with a single brace inside
        ("A walk.{{citation needed|date=May 2010}}", "A walk."),
        ("A{{Infobox x\n| a = {{lang|fr|b}}\n| c = {{d|{{e}}}}\n}} b.", "A b."),
        ("x {{#if: y | {{z}} | w}} v", "x v"),
        ("x {{hidden|{a}|b}} y", "x y"),
        # tables, nested, and their rows never leak
        ('Before.\n{| class="t"\n|-\n! H1 !! H2\n|-\n| a || b\n|}\nAfter.', "Before.\nAfter."),
        ("Before.\n{|\n| outer\n{|\n| inner\n|}\n| more\n|}\nAfter.", "Before.\nAfter."),
        (":{| \n| indented table\n|}\nText.", "Text."),
        # references: paired, self-closing, named, with templates inside, and the references list
        ("Fact.<ref>{{cite web|url=http://x.org|title=T}}</ref> Next.", "Fact. Next."),
        ('Fact.<ref name="a" /> Next.<ref name=b>Ibid.</ref>', "Fact. Next."),
        ("Text.\n<references />\n<references>\n<ref>x</ref>\n</references>", "Text."),
        # files and images, with links in the caption; galleries
        ("[[File:A.jpg|thumb|200px|A [[cat]] on a [[Mat (rug)|mat]].]]Cats sit.", "Cats sit."),
        ("[[Image:B.png|left]] Dogs run. [[Media:C.ogg]]", "Dogs run."),
        ("Art.<gallery>\nFile:X.jpg|Caption\n</gallery>", "Art."),
        # ... and with single brackets in the caption, beside links, a reference, a line break or new lines
        (
            "[[File:Congress.jpg|thumb|Front row (left to right): [[Alexey Rykov|Rykov]], [[Stalin]] [above], "
            "at the congress.&lt;ref&gt;[[Isaac Deutscher]], p.&amp;nbsp;311&lt;/ref&gt;]]\nThe novel.",
            "The novel.",
        ),
        (
            "[[Image:C4.png|thumb|right| Alkanes: [[n-butane|''n''-butane]].&lt;br /&gt; Bicyclo[1.1.0]butane "
            "has no isomer; [[tetrahedrane]] (below).]]Alkanes burn.",
            "Alkanes burn.",
        ),
        (
            "[[file : Map.svg|thumb|upright=1.2|A map\nof the [[Harbour|harbour]] [north is up]\nin 1901.]]\nText.",
            "Text.",
        ),
        ("[[IMAGE:X.jpg|thumb|Seen in 1901 [1]]] Rest. [[Media:Song.ogg|The song [live]]]", "Rest."),
        ("See [[Harbour|the [[File:H.jpg|20px|an icon [x]]] harbour]] now.", "See the harbour now."),
        ("Text.[[Category:Rivers [old]]]", "Text."),
        # categories (but a leading colon makes a visible link), interlanguage links
        ("Text.\n[[Category:Rivers|Aa]]\n[[de:Fluss]]\n[[be-x-old:Рака]]\n[[simple:River]]", "Text."),
        ("See [[:Category:Rivers]].", "See Category:Rivers."),
        # links keep their visible text: piped, plain, trail, section, pipe trick, interwiki
        ("The [[Paris|capital]] of [[France]].", "The capital of France."),
        ("Many [[dog]]s bark.", "Many dogs bark."),
        ("See [[Rome#History|Roman history]] and [[#Notes]].", "See Roman history and Notes."),
        ("A [[Mercury (planet)|]] day.", "A Mercury day."),
        ("A [[wikt:fortnight]] and [[s:Text|a text]].", "A fortnight and a text."),
        ("On [[Star Trek: Voyager]].", "On Star Trek: Voyager."),
        # external links: labelled keep the label, bare brackets and bare URLs go
        ("Visit [http://example.org the site] now.", "Visit the site now."),
        ("Visit [https://example.org] now http://x.org/a?b=c today.", "Visit now today."),
        # HTML tags (content kept), comments, entities
        ("H<sub>2</sub>O and <span style='x'>E=mc<sup>2</sup></span>.", "H2O and E=mc2."),
        ("One<br />two.", "One\ntwo."),
        ("Hidden<!-- note\nover lines --> text.", "Hidden text."),
        ("A&nbsp;b &amp; c &ndash; d &lt; e.", "A b & c – d < e."),
        ("Code <code>print</code> ok.", "Code print ok."),
        ("Math <math>x^2</math> done.", f"Math {FORMULA_MARK} done."),  # prose_sentences drops the sentence
        # magic words
        ("__NOTOC__\nText here.__NOEDITSECTION__", "Text here."),
        # headings vanish, list marks and emphasis marks too
        ("== History ==\nText.\n=== Early ===\nMore.", "Text.\nMore."),
        (
            "* one\n** two\n# three\n#* four\n; term : definition\n: indented",
            "one\ntwo\nthree\nfour\nterm: definition\nindented",
        ),
        ("'''Bold''' and ''italic'' and '''''both'''''.", "Bold and italic and both."),
        # sections without prose at the end are skipped, with their subsections
        ("Prose.\n== See also ==\n* [[Other]]\n=== More ===\n* x\n== External links ==\n* [http://a.b c]", "Prose."),
        ("Intro.\n== References ==\n{{reflist}}\n== Legacy ==\nKept.", "Intro.\nKept."),
        # unbalanced leftovers are dropped, not leaked
        ("Broken {{template never closed. Text.", "Broken template never closed. Text."),
        ("Stray ]] and [[ brackets.", "Stray and brackets."),
    ],
)
def test_construct(markup, expected):
    assert prose(markup) == expected


def test_empty_and_markup_only_pages():
    assert wikitext_to_paragraphs("") == []
    assert wikitext_to_paragraphs("{{Infobox}}\n[[Category:X]]\n__NOTOC__\n<!-- c -->") == []


def test_entity_escaped_markup_is_removed_too():
    # In a dump's XML, <ref> arrives as &lt;ref&gt;; a page that escapes it once more is still cleaned.
    assert prose("Fact.&lt;ref&gt;Source&lt;/ref&gt; Done.") == "Fact. Done."


def test_paragraphs_are_lines():
    assert wikitext_to_paragraphs("First para.\n\nSecond para.\nThird.") == ["First para.", "Second para.", "Third."]
