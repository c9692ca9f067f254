"""Integration: the real 206-page enwiki sample dump, prepared once with 2 workers and the BERT vocab."""

from __future__ import annotations

import bz2
import xml.etree.ElementTree as ET

import pyarrow.parquet as pq
import pytest

from sharebert.pipeline import formats
from sharebert.pipeline.prepare import InputSpec, PrepareConfig, prepare
from sharebert.tokenization import bert_tokenizer

MARKUP = ("{{", "}}", "[[", "]]", "{|", "<ref", "&lt;")


@pytest.fixture(scope="module")
def prepared(enwiki_sample, bert_vocab, tmp_path_factory):
    out = tmp_path_factory.mktemp("enwiki") / "prepared"
    config = PrepareConfig(output_dir=out, inputs=[InputSpec("wiki", str(enwiki_sample))], vocab=bert_vocab,
                           keep_text=True, workers=2)  # fmt: skip
    info = prepare(config)
    rows = []
    for shard in info["shards"]:
        rows += pq.ParquetFile(out / shard["file"]).read().to_pylist()
    return out, info, rows


def expected_article_ids(dump) -> list[str]:
    """Main-namespace pages that are not redirects, counted independently of the reader under test."""
    ids = []
    for _, element in ET.iterparse(bz2.BZ2File(dump)):
        if element.tag.endswith("}page"):
            ns = element.find("{*}ns").text
            redirect = element.find("{*}redirect") is not None
            if ns == "0" and not redirect:
                ids.append(element.find("{*}id").text)
            element.clear()
    return ids


def test_every_article_becomes_a_document(prepared, enwiki_sample):
    _, info, rows = prepared
    expected = expected_article_ids(enwiki_sample)
    assert len(expected) == 106  # 206 pages: 99 main-namespace redirects and 1 project page are skipped
    assert sorted(r["id"] for r in rows) == sorted(f"wiki:{enwiki_sample.name}:{i}" for i in expected)
    stats = info["inputs"][0]["stats"]
    assert (stats["documents_read"], stats["redirects_skipped"], stats["other_namespaces_skipped"]) == (106, 99, 1)
    assert {r["source"] for r in rows} == {f"wiki:{enwiki_sample.name}"}


def test_no_markup_survives(prepared, bert_vocab):
    _, _, rows = prepared
    for row in rows:
        for sentence in row["text"]:
            for leftover in MARKUP:
                assert leftover not in sentence.lower(), (row["id"], sentence)
    decoded = bert_tokenizer(bert_vocab, lowercase=True).decode_batch([s for r in rows[:20] for s in r["sentences"]])
    for text in decoded:
        for leftover in ("{ {", "} }", "[ [", "] ]", "{ |", "< ref", "& lt ;"):
            assert leftover not in text


def test_shards_are_balanced_and_described(prepared):
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
    assert info["vocab"]["size"] == 30522 and info["vocab"]["lowercase"] is True
