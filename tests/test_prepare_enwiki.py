"""Integration: a generated enwiki-style dump (tests/wikidump.py), prepared once with 2 workers and a
WordPiece vocab trained on it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from wikidump import dump_xml, write_dump_xml

from sharebert.pipeline import formats
from sharebert.pipeline.prepare.quality import count_markup_leaks, count_residue
from sharebert.pipeline.prepare.stage import InputSpec, PrepareConfig, prepare
from sharebert.tokenization import bert_tokenizer, read_vocab

MARKUP = ("{{", "}}", "[[", "]]", "{|", "|", "thumb", "<ref", "&lt;", "&nbsp;", "&ndash;")


def prepare_dump(dump, vocab, out):
    config = PrepareConfig(
        output_dir=out, inputs=[InputSpec("wiki", str(dump))], vocab=vocab, keep_text=True, workers=2
    )
    return prepare(config)


@pytest.fixture(scope="module")
def prepared(wiki_dump, wiki_vocab, tmp_path_factory):
    out = tmp_path_factory.mktemp("enwiki") / "prepared"
    info = prepare_dump(wiki_dump.path, wiki_vocab, out)
    rows = []
    for shard in info["shards"]:
        rows += pq.ParquetFile(out / shard["file"]).read().to_pylist()
    return out, info, rows


def test_every_article_becomes_a_document(prepared, wiki_dump):
    _, info, rows = prepared
    name = wiki_dump.path.name
    assert sorted(r["id"] for r in rows) == sorted(f"wiki:{name}:{p.page_id}" for p in wiki_dump.articles)
    stats = info["inputs"][0]["stats"]
    skipped = (len(wiki_dump.redirects), len(wiki_dump.other_namespaces))
    assert (stats["documents_read"], stats["redirects_skipped"], stats["other_namespaces_skipped"]) == (
        len(wiki_dump.articles),
        *skipped,
    )
    assert min(skipped) > 0  # the dump has pages of both kinds to skip
    assert {r["source"] for r in rows} == {f"wiki:{name}"}


def test_no_markup_survives(prepared, wiki_vocab):
    _, _, rows = prepared
    for row in rows:
        for sentence in row["text"]:
            for leftover in MARKUP:
                assert leftover not in sentence.lower(), (row["id"], sentence)
    decoded = bert_tokenizer(wiki_vocab, lowercase=True).decode_batch([s for r in rows[:20] for s in r["sentences"]])
    for text in decoded:
        for leftover in ("{ {", "} }", "[ [", "] ]", "{ |", "< ref", "& lt ;"):
            assert leftover not in text


def test_shards_are_balanced_and_described(prepared, wiki_vocab):
    out, info, rows = prepared
    assert formats.read_prepare_info(out)["shards"] == info["shards"]
    for split in ("train", "test"):
        tokens = [s["tokens"] for s in info["shards"] if s["split"] == split]
        assert len(tokens) == info["settings"][f"num_{split}_shards"]
        assert max(tokens) <= 1.05 * sum(tokens) / len(tokens)
    assert (
        sum(len(s) for r in rows for s in r["sentences"])
        == info["totals"]["train"]["tokens"] + info["totals"]["test"]["tokens"]
    )
    assert info["vocab"]["size"] == len(read_vocab(wiki_vocab)) and info["vocab"]["lowercase"] is True


def test_the_multistream_layout_gives_the_same_shards(prepared, wiki_dump, wiki_vocab, tmp_path):
    """The same pages as Wikimedia publishes them, 10 per bz2 stream: the workers read parts of the file."""
    out, info, _ = prepared
    multistream = write_dump_xml(tmp_path / wiki_dump.path.name, dump_xml(list(wiki_dump.pages)), pages_per_stream=10)
    again = prepare_dump(multistream, wiki_vocab, tmp_path / "prepared")
    assert again["inputs"][0]["stats"] == info["inputs"][0]["stats"]
    for shard in info["shards"]:
        assert (tmp_path / "prepared" / shard["file"]).read_bytes() == (out / shard["file"]).read_bytes()


# A template of each kind as the generated dump writes it (wikidump.TEMPLATED_SENTENCES) -> what its sentence
# holds once cleaned: the dump holds as many of each as the text holds of the other.
RENDERED = {
    "{{convert|": re.compile(r"lies \d+ km from \w+\."),
    "{{As of|": re.compile(r"As of \d+, the \w+ had"),
    "{{lang|de|": re.compile(r"is called \w+er \w+ in German\."),
    "{{lang-fr|": re.compile(r"\w+ \(\w+-sur-Mer\) has \w+ streets\."),
    "{{transl|ru|": re.compile(r"Russian name is \w+sky\."),
    "{{Nihongo|": re.compile(r"Hall \(会館, kaikan\) in \d+\."),
    "{{quote|": re.compile(r"The \w+ of \w+ is \w+\."),
    "{{chem|H|2|SO|4}}": re.compile(r"made H2SO4 for \d+ years\."),
    "{{frac|3|4}}": re.compile(r"About 3/4 of the \w+ is \w+ stone\."),
    "{{abbr|St.|Saint}}": re.compile(r"The St\. \w+ \w+ was"),
    "{{IPAc-en|ˈ|s|ʌ|b}}": re.compile(r"The \w+ was \w+ in \d+\."),
    "{{Update after|": re.compile(r"The \w+ was \w+ again\."),
}


def test_templates_render_and_removal_leaves_no_residue(prepared, wiki_dump):
    _, _, rows = prepared
    sentences = [s for row in rows for s in row["text"]]
    assert set(count_markup_leaks(sentences)["counts"].values()) == {0}
    assert set(count_residue(sentences)["counts"].values()) == {0}
    for markup, rendered in RENDERED.items():
        written = sum(page.text.count(markup) for page in wiki_dump.articles)
        assert written > 0 and sum(len(rendered.findall(s)) for s in sentences) == written, markup
    assert sum(page.text.count("<math>") for page in wiki_dump.articles) > 0
    for dropped in ("Its area", "\\pi", "IPAc", "PLAYSS", "Annals of", "Works cited about"):
        assert not any(dropped in s for s in sentences), dropped


def test_bench_textquality_reports_the_generated_dump(wiki_dump, tmp_path):
    report = tmp_path / "quality.json"
    script = Path(__file__).resolve().parents[1] / "bench" / "textquality.py"
    done = subprocess.run([sys.executable, str(script), "--dump", str(wiki_dump.path), "--examples", "2",
                           "--json", str(report)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "markup leaks: 0.00 per MB (target 0: ok)" in done.stdout and "residue: 0.00 per MB" in done.stdout
    summary = json.loads(report.read_text())
    assert summary["sentences"] > 0 and summary["markup_leaks"]["per_mb"] == summary["residue"]["per_mb"] == 0
    written = sum(page.text.count("{{convert|") for page in wiki_dump.articles)
    assert summary["templates"]["convert"] == written > 0 and summary["templates"]["other"] > 0
