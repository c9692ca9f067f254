"""Quality of the text `sharebert prepare` makes of a MediaWiki dump: markup leaks, removal residue, templates.

Cleans and splits every article of --dump exactly as prepare's workers do (pipeline/prepare/segment.py), in
this process, and prints, per MB of the sentences' text (UTF-8), the counts of
  - markup leaks: [[, ]], {{, }}, runs of |, thumb next to a |, file names, HTML entities and tags;
  - residue of removed markup: "(;" or "(,", "()", " ,", ",,", double spaces, sentences of punctuation
    only, sentences starting with a separator or a lone period;
(patterns in sharebert/pipeline/prepare/quality.py; target zero for both), then how many templates each entry
of the template table rendered (sharebert/pipeline/prepare/wikitemplates.py; "other" were removed).

Examples:
  python bench/textquality.py                       # the enwiki sample beside the checkout
  python bench/textquality.py --dump x.xml.bz2 --examples 5 --json quality.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's sharebert

# bench/ is on sys.path as the script's folder
from common import SHARED_DATA


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dump", type=Path, default=SHARED_DATA / "enwiki-sample.xml.bz2",
                   help="a MediaWiki dump (default: the enwiki sample in ../shared/data beside the checkout)")  # fmt: skip
    p.add_argument("--examples", type=int, default=0, help="print up to N sentences with each kind of leak or residue")
    p.add_argument("--json", type=Path, help="also write the counts here")
    return p.parse_args(argv)


def measure(dump: Path) -> tuple[list[str], Counter]:
    """Every sentence prepare would keep from the dump's articles, and the templates rendered per kind."""
    from sharebert.pipeline.prepare.records import ReadStats
    from sharebert.pipeline.prepare.segment import segment
    from sharebert.pipeline.prepare.sources.wiki import WikiDumpSource
    from sharebert.pipeline.prepare.wikimarkup import wikitext_to_paragraphs

    sentences, templates = [], Counter()
    for document in WikiDumpSource(str(dump), dump.name).documents(ReadStats()):
        sentences += segment(document).sentences
        wikitext_to_paragraphs(document.text, template_counts=templates)
    return sentences, templates


def examples(sentences: list[str], limit: int) -> dict[str, list[str]]:
    from sharebert.pipeline.prepare import quality

    found = {}
    for name, pattern in {**quality.MARKUP_LEAKS, **quality.RESIDUE}.items():
        found[name] = [s for s in sentences if pattern.search(s)][:limit]
    for name in (quality.PUNCTUATION_ONLY, quality.LONE_START):
        found[name] = [s for s in sentences if quality.count_residue([s])["counts"][name]][:limit]
    return {name: hits for name, hits in found.items() if hits}


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.dump.exists():
        raise SystemExit(f"{args.dump}: not found (see --dump)")
    from sharebert.pipeline.prepare.quality import count_markup_leaks, count_residue

    sentences, templates = measure(args.dump)
    leaks, residue = count_markup_leaks(sentences), count_residue(sentences)
    print(f"{args.dump.name}: {len(sentences):,} sentences, {leaks['text_mb']:.2f} MB of text")
    for title, report in (("markup leaks", leaks), ("residue", residue)):
        verdict = "ok" if report["per_mb"] == 0 else "NOT ZERO"
        print(f"{title}: {report['per_mb']:.2f} per MB (target 0: {verdict})")
        for name, count in report["counts"].items():
            print(f"  {name:<42} {count:>6} {count / max(report['text_mb'], 1e-9):>8.2f} per MB")
    print("templates by kind (rendered; 'other' removed):")
    for kind, count in templates.most_common():
        print(f"  {kind:<42} {count:>6}")
    if args.examples:
        for name, hits in examples(sentences, args.examples).items():
            print(f"examples of {name}:")
            for sentence in hits:
                print(f"  {sentence[:300]!r}")
    if args.json:
        summary = {"text_mb": leaks["text_mb"], "sentences": len(sentences), "markup_leaks": leaks,
                   "residue": residue, "templates": dict(templates.most_common())}  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
