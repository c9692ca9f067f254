"""A MediaWiki XML dump written by the tests, shaped like Wikimedia's pages-articles dumps.

The <siteinfo> header declares the namespaces of English Wikipedia; the pages are articles, redirects
(main namespace, with a <redirect> element) and pages of other namespaces (talk, project, template,
category, file), each with the revision metadata of a real dump. Articles carry the markup the cleaner
must remove (infoboxes and nested templates, references with citations, tables, images whose captions
hold links, single brackets, references and line breaks, categories, interlanguage links, comments, HTML
entities and tags, headings, lists, formulas, pronunciations, trailing "See also" / "References" / "External
links" / "Reference literature" / "Works cited" sections) and the inline templates it must render as text
(measurements, dates, language text, quotations, formulas, fractions: TEMPLATED_SENTENCES) around
generated English prose: a few sentence patterns filled from word lists, with word frequencies falling off
like a natural language's. No text comes from Wikipedia. Everything is decided by a seeded random
generator, so a given (articles, seed) always writes the same bytes, and `GeneratedDump` says what each
page is, so a test can derive its expected counts from the generator instead of hard-coding them.
"""

from __future__ import annotations

import bz2
import dataclasses
import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

NAMESPACES = {
    -2: "Media", -1: "Special", 0: "", 1: "Talk", 2: "User", 3: "User talk", 4: "Wikipedia",
    5: "Wikipedia talk", 6: "File", 7: "File talk", 8: "MediaWiki", 9: "MediaWiki talk", 10: "Template",
    11: "Template talk", 12: "Help", 13: "Help talk", 14: "Category", 15: "Category talk", 100: "Portal",
    101: "Portal talk", 118: "Draft", 119: "Draft talk", 828: "Module", 829: "Module talk",
}  # fmt: skip

PLACES = ["Ashbourne", "Brackenridge", "Caldermoor", "Dunhollow", "Elmstead", "Fennick", "Glenmarrow",
          "Harrowgate", "Ivybridge", "Kelsworth", "Larchmont", "Millbrook", "Northwick", "Oakhampton",
          "Pendlebury", "Queensferry", "Rosemarket", "Saltcote", "Thornbury", "Wyndham"]  # fmt: skip
PEOPLE = ["Ada Whitcombe", "Bernard Haldane", "Clara Montague", "Desmond Pryce", "Eleanor Vance",
          "Frederick Lisle", "Grace Penrose", "Henry Aldous", "Isabel Carrow", "Jonas Mercer",
          "Margarethe Köhler", "Renée Duval", "Tomás Ibáñez"]  # fmt: skip
SUBJECTS = ["town", "village", "river", "bridge", "church", "castle", "harbour", "railway", "school",
            "market", "mill", "abbey", "canal", "library", "museum", "theatre", "parish", "valley",
            "lighthouse", "observatory", "university", "newspaper", "orchestra", "festival", "company"]  # fmt: skip
ADJECTIVES = ["old", "new", "small", "large", "northern", "southern", "eastern", "western", "famous",
              "ancient", "royal", "public", "local", "early", "modern", "wooden", "stone", "narrow",
              "busy", "quiet", "medieval", "industrial", "coastal", "rural"]  # fmt: skip
VERBS = ["built", "rebuilt", "founded", "opened", "closed", "restored", "extended", "visited", "described",
         "painted", "mapped", "sold", "bought", "renamed", "flooded", "damaged", "repaired", "enlarged",
         "governed", "studied"]  # fmt: skip
TOPICS = ["trade", "farming", "fishing", "weaving", "shipbuilding", "mining", "brewing", "printing",
          "tourism", "education", "music", "architecture", "agriculture", "commerce"]  # fmt: skip
PROFESSIONS = ["architect", "engineer", "historian", "painter", "merchant", "poet", "composer", "surveyor",
               "botanist", "bishop", "mayor", "teacher"]  # fmt: skip
NATIONALITIES = ["English", "Scottish", "Welsh", "Irish", "French", "German", "Dutch", "Spanish"]
CATEGORIES = ["Towns", "Villages", "Rivers", "Bridges", "Buildings", "History", "Populated places"]
LANGUAGES = ["de", "fr", "nl", "es", "it", "pl", "sv"]


@dataclass(frozen=True)
class WikiPage:
    title: str
    page_id: int
    ns: int
    text: str
    redirect: str | None = None  # the target title of a redirect


# One page in each of a few other namespaces, as a real dump has them (one of them a redirect).
OTHER_NAMESPACE_PAGES = [
    WikiPage("Talk:Ashbourne", 0, 1, "== Sources ==\nThe history section needs sources. ~~~~"),
    WikiPage("Wikipedia:About", 0, 4, "#REDIRECT [[Wikipedia:Introduction]]", redirect="Wikipedia:Introduction"),
    WikiPage("File:Map of the district.svg", 0, 6, "== Summary ==\n{{Information|description=A map|date=1901}}"),
    WikiPage("Template:Infobox settlement", 0, 10, "{{Infobox\n| above = {{{name|}}}\n}}<noinclude>Doc.</noinclude>"),
    WikiPage("Category:Towns", 0, 14, "Towns of the district.\n[[Category:Populated places]]"),
]


@dataclass(frozen=True)
class GeneratedDump:
    path: Path
    pages: tuple[WikiPage, ...]

    @property
    def articles(self) -> list[WikiPage]:
        """The pages `prepare` keeps: main namespace, not redirects."""
        return [p for p in self.pages if p.ns == 0 and p.redirect is None]

    @property
    def redirects(self) -> list[WikiPage]:
        """Main-namespace redirects (skipped by `prepare`)."""
        return [p for p in self.pages if p.ns == 0 and p.redirect is not None]

    @property
    def other_namespaces(self) -> list[WikiPage]:
        """Pages outside the main namespace, redirects or not (skipped by `prepare`)."""
        return [p for p in self.pages if p.ns != 0]


def write_wiki_dump(path: Path, articles: int = 120, seed: int = 0) -> GeneratedDump:
    """A dump (one bz2 stream) of `articles` articles, a redirect to every other one, and one page in each
    of a few other namespaces."""
    pages = generate_pages(articles, seed)
    write_dump_xml(Path(path), dump_xml(pages))
    return GeneratedDump(Path(path), tuple(pages))


def generate_pages(articles: int, seed: int = 0) -> list[WikiPage]:
    """Articles, a redirect to every other one, and the other namespaces' pages among them; ids increase."""
    rng = random.Random(seed)
    titles = article_titles(articles)
    pages = []
    for number, title in enumerate(titles):
        pages.append(WikiPage(title, 0, 0, article_text(rng, title, titles, number)))
        if number % 2 == 0:
            alias = f"{title} ({rng.choice(NATIONALITIES)} {rng.choice(SUBJECTS)})"
            pages.append(WikiPage(alias, 0, 0, redirect_text(rng, title), redirect=title))
    for page in OTHER_NAMESPACE_PAGES:
        pages.insert(rng.randrange(len(pages) + 1), page)
    page_ids = itertools.accumulate(rng.randint(1, 40) for _ in pages)
    return [dataclasses.replace(page, page_id=10 + page_id) for page, page_id in zip(pages, page_ids)]


def article_titles(count: int) -> list[str]:
    """Distinct titles: places, people, then '<place> <subject>' pairs."""
    pairs = [f"{place} {subject.capitalize()}" for subject in SUBJECTS for place in PLACES]
    titles = (PLACES + PEOPLE + pairs)[:count]
    if len(titles) < count:
        raise ValueError(f"at most {len(PLACES) + len(PEOPLE) + len(pairs)} articles")
    return titles


def zipf_choice(rng: random.Random, words: list[str]) -> str:
    """A word of the list, the k-th about 1/k as often as the first: prose with natural-looking counts."""
    return rng.choices(words, weights=[1 / (k + 1) for k in range(len(words))])[0]


def with_article(word: str) -> str:
    return f"{'an' if word[0] in 'AEIOUaeiou' else 'a'} {word}"


def sentence(rng: random.Random, title: str, titles: list[str]) -> str:
    """One sentence of prose, links and emphasis included."""
    place, other = rng.choice(PLACES), rng.choice(titles)
    adjective, subject = zipf_choice(rng, ADJECTIVES), zipf_choice(rng, SUBJECTS)
    verb, topic, year = zipf_choice(rng, VERBS), zipf_choice(rng, TOPICS), rng.randint(1450, 2015)
    person = rng.choice(PEOPLE)
    patterns = [
        f"The {adjective} {subject} of [[{place}]] was {verb} in {year} by [[{person}]].",
        f"In {year}, {title} became known for its {topic} and its {adjective} [[{other}|{subject}]].",
        f"{person} ({year}&ndash;{year + rng.randint(30, 80)}) was {with_article(rng.choice(NATIONALITIES))} "
        f"{rng.choice(PROFESSIONS)} who {verb} the {subject} at {place}.",
        f"It has a population of {rng.randint(200, 90000):,} and lies on the [[River {place}|{place}]].",
        f"According to ''The {place} Chronicle'', the {subject} was {verb} after a fire in {year}.",
        f"Most of the {adjective} houses near the {subject} date from the {rng.randint(15, 20)}th century.",
        f"The local economy depended on {topic}, and later on {zipf_choice(rng, TOPICS)}.",
        f'Residents called the {subject} "the {adjective} {zipf_choice(rng, SUBJECTS)}" until {year}.',
        f"{with_article(adjective).capitalize()} {subject} was {verb} there in {year}; "
        f"it was {zipf_choice(rng, VERBS)} in {year + 40}.",
        f"Its {subject} is one of the oldest in {place}, St.&nbsp;Mary's being older still.",
    ]
    text = rng.choice(patterns)
    if year % 3 == 0:  # from the draws already made, so that the rest of the dump does not depend on it
        text += " " + templated_sentence(year, place, person, subject, adjective, verb)
    if rng.random() < 0.3:
        text += reference(rng, place, year)
    return text


# The kinds of inline templates in the generated prose: kind -> (a sentence with the template, its text once
# rendered, None where the sentence is dropped); {0}..{5} are the sentence's year, place, person, subject,
# adjective and verb.
TEMPLATED_SENTENCES = {
    "convert": ("The {3} lies {{{{convert|{0}|km|mi}}}} from [[{1}]].", "The {3} lies {0} km from {1}."),
    "as of": ("{{{{As of|{0}}}}}, the {3} had {0} members.", "As of {0}, the {3} had {0} members."),
    "lang": ("It is called {{{{lang|de|{1}er {3}}}}} in German.", "It is called {1}er {3} in German."),
    "lang-* and pronunciation": ("'''{1}''' ({{{{IPAc-en|ˈ|p|l|eɪ|s}}}}, {{{{respell|PLAYSS}}}}; "
                                 "{{{{lang-fr|{1}-sur-Mer}}}}) has {4} streets.", "{1} ({1}-sur-Mer) has {4} streets."),
    "transl": ("Its Russian name is ''{{{{transl|ru|{1}sky}}}}''.", "Its Russian name is {1}sky."),
    "nihongo": ("The {3} was renamed {{{{Nihongo|{1} Hall|会館|kaikan}}}} in {0}.",
                "The {3} was renamed {1} Hall (会館, kaikan) in {0}."),
    "quote": ("{2} said:{{{{quote|text=The {3} of {1} is {4}.<ref>{2}, p.&nbsp;{0}</ref>|sign={2}|source={0}}}}}",
              "The {3} of {1} is {4}."),
    "chem and nowrap": ("The {3} made {{{{chem|H|2|SO|4}}}} for {{{{nowrap|{0} years}}}}.",
                        "The {3} made H2SO4 for {0} years."),
    "frac and small": ("About {{{{frac|3|4}}}} of the {3} is {{{{small|{4}}}}} stone.", "About 3/4 of the {3} is {4} stone."),
    "abbr": ("The {{{{abbr|St.|Saint}}}} {1} {3} was {5} in {0}.", "The St. {1} {3} was {5} in {0}."),
    "math": ("Its area <math>A = \\pi r^2</math> was {5} in {0}.", None),
    "removed, empty brackets": ("The {3} ({{{{IPAc-en|ˈ|s|ʌ|b}}}}) was {5} in {0}.{{{{citation needed|date=May {0}}}}}",
                                "The {3} was {5} in {0}."),
    "removed, lone comma": ("{{{{Update after|{0}}}}}, the {3} was {5} again.", "The {3} was {5} again."),
}  # fmt: skip


def templated_sentence(year: int, place: str, person: str, subject: str, adjective: str, verb: str) -> str:
    """A sentence with an inline template, of the kind the year picks."""
    markup, _ = list(TEMPLATED_SENTENCES.values())[year // 3 % len(TEMPLATED_SENTENCES)]
    return markup.format(year, place, person, subject, adjective, verb)


def templated_sentence_text(year: int, place: str, person: str, subject: str, adjective: str, verb: str) -> str | None:
    """What the cleaner makes of templated_sentence(...) (None: the sentence is dropped)."""
    _, text = list(TEMPLATED_SENTENCES.values())[year // 3 % len(TEMPLATED_SENTENCES)]
    return None if text is None else text.format(year, place, person, subject, adjective, verb)


def reference(rng: random.Random, place: str, year: int) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        author = rng.choice(PEOPLE).split()[1]
        return f"<ref>{{{{cite book |last={author} |title=A History of {place} |year={year}}}}}</ref>"
    if kind == 1:
        citation = f"{{{{cite web |url=https://example.org/{place.lower()} |title={place}}}}}"
        return f'<ref name="survey{year % 7}">{citation}</ref>'
    if kind == 2:
        return f'<ref name="survey{year % 7}" />'
    return "{{efn|Some sources give a later date.<ref>{{harvnb|Mercer|1911|p=12}}</ref>}}"


def paragraph(rng: random.Random, title: str, titles: list[str], sentences: int) -> str:
    return " ".join(sentence(rng, title, titles) for _ in range(sentences))


def article_text(rng: random.Random, title: str, titles: list[str], number: int) -> str:
    place, category = rng.choice(PLACES), rng.choice(CATEGORIES)
    lead = paragraph(rng, title, titles, rng.randint(2, 5))
    parts = [
        f"{{{{Short description|Place in {place}}}}}\n{{{{Use dmy dates|date=May {rng.randint(2008, 2016)}}}}}",
        "{{Infobox settlement\n"
        f"| name = {title}\n| image = [[File:{title} view.jpg|250px|alt=A view]]\n"
        f"| population = {rng.randint(200, 90000)}{{{{sfn|Census|2011}}}}\n"
        f"| coordinates = {{{{coord|5{rng.randint(0, 9)}|N|1|W|display=inline}}}}\n}}}}",
        f"'''{title}''' is {with_article(zipf_choice(rng, ADJECTIVES))} {zipf_choice(rng, SUBJECTS)} "
        f"in [[{place}]]. {lead}",
    ]
    for heading in rng.sample(["History", "Geography", "Economy", "Culture", "Notable people"], rng.randint(1, 4)):
        parts.append(f"== {heading} ==")
        for _ in range(rng.randint(1, 3)):
            parts.append(paragraph(rng, title, titles, rng.randint(2, 6)))
        parts.append(decoration(rng, title, titles))
    parts += [
        "== See also ==\n" + "\n".join(f"* [[{rng.choice(titles)}]]" for _ in range(2)),
        "== References ==\n{{Reflist}}",
        f"== Reference literature ==\n* {{{{cite book|title=The annals of {title}}}}}\n* Annals of {title}, {number}.",
        f"== Works cited ==\n* Works cited about {title}, {number}.",
        f"== External links ==\n* [https://example.org/{number} Official website]\n* {{{{Commons category|{title}}}}}",
        f"{{{{{place}-geo-stub}}}}\n[[Category:{category} in {place}]]\n[[Category:{category}]]",
        "\n".join(f"[[{lang}:{title}]]" for lang in rng.sample(LANGUAGES, 2)),
    ]
    return "\n\n".join(parts) + "\n"


def decoration(rng: random.Random, title: str, titles: list[str]) -> str:
    """A construct around prose: a subsection, a list, a table, an image, a comment or a quotation."""
    kind = rng.randrange(6)
    if kind == 0:
        return f"=== {rng.choice(PLACES)} ===\n" + paragraph(rng, title, titles, 2)
    if kind == 1:
        bullet = rng.choice("*#")
        return "\n".join(f"{bullet} {sentence(rng, title, titles)}" for _ in range(rng.randint(2, 4)))
    if kind == 2:
        rows = "\n".join(
            f"|-\n| {1800 + 10 * k} || {rng.randint(100, 9000):,} || [[{rng.choice(PLACES)}]]" for k in range(3)
        )
        return f'{{| class="wikitable sortable"\n|+ Population\n|-\n! Year !! People !! Parish\n{rows}\n|}}'
    if kind == 3:
        return image(title, rng.choice(titles), rng.randint(1880, 1990), rng.randint(1, 9))
    if kind == 4:
        return f"<!-- {rng.choice(VERBS)} in the next edit -->" + paragraph(rng, title, titles, 1)
    return f"<blockquote>{sentence(rng, title, titles)}</blockquote>"


def image(title: str, other: str, year: int, number: int) -> str:
    """An image with a caption, in one of four forms picked by the year (no draw of its own, so the rest of
    the dump does not depend on them): links in the caption; or also single brackets, a reference, a line
    break, lines of its own, and the Image: alias spelled in other ways, as captions in real dumps have."""
    form = year % 4
    if form == 0:
        return f"[[File:{title} {number}.jpg|thumb|left|The [[{other}]] in {year}.]]"
    if form == 1:
        return (f"[[File:{title} {number}.jpg|thumb|Front row (left to right): [[{other}|the mayor]], [[{title}]] "
                f"[above], in {year}.<ref>[[{other}]], p.&nbsp;{number}</ref>]]")  # fmt: skip
    if form == 2:
        return (f"[[Image:{title} {number}.png|thumb|right| The [[{other}|''{other}'']] bridge.<br /> "
                f"Bicyclo[1.1.0]butane; [[{title}]] (below) in {year} [{number}]]]")  # fmt: skip
    return f"[[image : {title} {number}.svg|thumb|upright=1.2|A map\nof [[{other}]] [north is up]\nin {year}.]]"


def redirect_text(rng: random.Random, target: str) -> str:
    return f"#REDIRECT [[{target}]]\n\n{{{{{rng.choice(['R from alternative name', 'R from move'])}}}}}"


def page_xml(page: WikiPage) -> str:
    redirect = f"\n    <redirect title={quoteattr(page.redirect)} />" if page.redirect is not None else ""
    return (
        f"  <page>\n    <title>{escape(page.title)}</title>\n    <ns>{page.ns}</ns>\n    <id>{page.page_id}</id>"
        f"{redirect}\n    <revision>\n      <id>{700000000 + page.page_id}</id>\n"
        f"      <parentid>{600000000 + page.page_id}</parentid>\n      <timestamp>2016-01-15T12:00:00Z</timestamp>\n"
        f"      <contributor>\n        <username>Example editor</username>\n        <id>42</id>\n      </contributor>\n"
        f"      <comment>copy edit</comment>\n      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
        f'      <text xml:space="preserve">{escape(page.text)}</text>\n'
        f"      <sha1>{page.page_id:031x}</sha1>\n    </revision>\n  </page>\n"
    )


def siteinfo_xml() -> str:
    namespaces = "\n".join(
        f'      <namespace key="{key}" case="first-letter" />'
        if not name
        else f'      <namespace key="{key}" case="first-letter">{name}</namespace>'
        for key, name in NAMESPACES.items()
    )
    return (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="0.10" xml:lang="en">\n'
        "  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>enwiki</dbname>\n"
        "    <base>https://en.wikipedia.org/wiki/Main_Page</base>\n    <generator>MediaWiki 1.27.0-wmf.22</generator>\n"
        f"    <case>first-letter</case>\n    <namespaces>\n{namespaces}\n    </namespaces>\n  </siteinfo>\n"
    )


def dump_xml(pages: list[WikiPage]) -> str:
    return siteinfo_xml() + "".join(page_xml(p) for p in pages) + "</mediawiki>\n"


def write_dump_xml(path: Path, xml: str, pages_per_stream: int | None = None) -> Path:
    """The XML bz2-compressed: one stream, or with `pages_per_stream` in Wikimedia's multistream layout."""
    data = xml.encode("utf-8")
    path.write_bytes(bz2.compress(data) if pages_per_stream is None else wikimedia_multistream(data, pages_per_stream))
    return path


def wikimedia_multistream(xml: bytes, pages_per_stream: int) -> bytes:
    """As Wikimedia writes multistream dumps: the header, N pages per stream, the closing tag."""
    head, _, rest = xml.partition(b"  <page>")
    pages = [b"  <page>" + p for p in rest.split(b"  <page>")]
    pages[-1], tail = pages[-1].split(b"</mediawiki>")[0], b"</mediawiki>\n"
    groups = [b"".join(pages[i : i + pages_per_stream]) for i in range(0, len(pages), pages_per_stream)]
    return b"".join(bz2.compress(part) for part in [head, *groups, tail])
