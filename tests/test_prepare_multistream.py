"""Multistream bz2 dumps: workers read parts of whole streams, with the same result as one stream."""

from __future__ import annotations

import bz2
import json

import pytest
from prepare_fixtures import article, dump_xml, page, write_vocab
from wikidump import wikimedia_multistream

from sharebert.errors import DataError
from sharebert.pipeline.prepare.records import ReadStats
from sharebert.pipeline.prepare.sources import wiki
from sharebert.pipeline.prepare.sources.wiki import WikiDumpSource, stream_starts
from sharebert.pipeline.prepare.stage import InputSpec, PrepareConfig, prepare

PAGES = (
    [page(f"River {n}", 100 + n, article(n, sentences=2 + n % 5)) for n in range(24)]
    + [page(f"Old name {n}", 300 + n, f"#REDIRECT [[River {n}]]", redirect=f"River {n}") for n in range(3)]
    + [page("Category:Rivers", 400, "Rivers.", ns=14), page("Empty", 401, "   ")]
)
# Old dumps have no <ns>: the namespace comes from the title prefixes declared in <siteinfo>.
OLD_PAGES = [p.replace("<ns>14</ns>", "").replace("<ns>0</ns>", "") for p in PAGES]


def cut_by_size(xml: bytes, size: int) -> bytes:
    """As pbzip2 writes them: a stream every `size` bytes of XML, wherever that falls (inside tags too)."""
    return b"".join(bz2.compress(xml[i : i + size]) for i in range(0, len(xml), size))


def read_in_parts(path) -> tuple[list, ReadStats]:
    parts = WikiDumpSource(str(path), path.name).parts()
    assert parts is not None
    stats, documents = ReadStats(), []
    for part in parts:
        documents += part.documents(stats)
    return documents, stats


def read_in_one_go(path) -> tuple[list, ReadStats]:
    stats = ReadStats()
    documents = list(WikiDumpSource(str(path), path.name).documents(stats))
    return documents, stats


def test_stream_starts_finds_every_stream_and_nothing_else(tmp_path, monkeypatch):
    streams = [bz2.compress(bytes(range(k, 256)) * (k + 3)) for k in range(7)]
    offsets, at = [], 0
    for s in streams:
        offsets.append(at)
        at += len(s)
    path = tmp_path / "multi.bz2"
    path.write_bytes(b"".join(streams))
    for chunk in (7, 29, 1 << 22):  # candidates and their end-of-stream check across chunk boundaries
        monkeypatch.setattr(wiki, "SCAN_CHUNK", chunk)
        with open(path, "rb") as f:
            assert list(stream_starts(f)) == offsets[1:]
    # The magic of a stream start where no stream ends before it is not a stream start.
    fake = tmp_path / "fake.bz2"
    middle = len(streams[0]) // 2
    fake.write_bytes(streams[0][:middle] + b"BZh91AY&SY" + streams[0][middle:])
    with open(fake, "rb") as f:
        assert list(stream_starts(f)) == []
    single = tmp_path / "single.bz2"
    single.write_bytes(bz2.compress(b"".join(bytes(range(256)) * 40 for _ in range(100))))
    assert WikiDumpSource(str(single), "single").parts() is None


@pytest.mark.parametrize("pages", [PAGES, OLD_PAGES], ids=["with-ns", "without-ns"])
@pytest.mark.parametrize("layout", ["wikimedia-1", "wikimedia-4", "cut-97", "cut-641", "cut-3000"])
@pytest.mark.parametrize("part_bytes", [1, 700])
def test_parts_read_the_same_documents_as_one_stream(tmp_path, monkeypatch, pages, layout, part_bytes):
    monkeypatch.setattr(wiki, "PART_BYTES", part_bytes)
    xml = dump_xml(pages).encode("utf-8")
    one = tmp_path / "one" / "dump.xml.bz2"
    many = tmp_path / "many" / "dump.xml.bz2"
    one.parent.mkdir()
    many.parent.mkdir()
    one.write_bytes(bz2.compress(xml))
    kind, n = layout.rsplit("-", 1)
    many.write_bytes(wikimedia_multistream(xml, int(n)) if kind == "wikimedia" else cut_by_size(xml, int(n)))
    expected, expected_stats = read_in_one_go(one)
    documents, stats = read_in_parts(many)
    assert documents == expected and stats == expected_stats
    assert (stats.documents_read, stats.redirects_skipped, stats.other_namespaces_skipped) == (24, 3, 1)


def test_a_damaged_stream_is_reported_with_the_file_name(tmp_path):
    xml = dump_xml(PAGES).encode("utf-8")
    data = wikimedia_multistream(xml, 5)
    last = data.rindex(b"BZh9")
    truncated = tmp_path / "truncated.xml.bz2"
    truncated.write_bytes(data[: last - 30] + data[last:])  # the second last stream loses its end
    with pytest.raises(DataError, match=r"truncated\.xml\.bz2: (truncated or )?corrupt"):
        read_in_parts(truncated)
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(cut_by_size(xml, 500)[:-200])  # the dump ends inside a page
    with pytest.raises(DataError, match=r"cut\.xml\.bz2: (truncated|corrupt)"):
        read_in_parts(cut)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    root = tmp_path_factory.mktemp("dumps")
    xml = dump_xml([page(f"River {n}", 100 + n, article(n, sentences=8)) for n in range(40)]).encode("utf-8")
    layouts = {"single": bz2.compress(xml), "wikimedia": wikimedia_multistream(xml, 3), "cut": cut_by_size(xml, 1500)}
    paths = {}
    for name, data in layouts.items():
        (root / name).mkdir()
        paths[name] = root / name / "rivers.xml.bz2"  # the same name: document ids carry it
        paths[name].write_bytes(data)
    return paths, write_vocab(root / "vocab.txt", extra_words=["river", "passes", "town", "village", "year"])


@pytest.mark.parametrize("workers", [1, 2])
def test_prepare_gives_the_same_bytes_for_every_layout(dumps, tmp_path, monkeypatch, workers):
    monkeypatch.setattr(wiki, "PART_BYTES", 2000)  # several parts per dump
    paths, vocab = dumps
    shards, stats = {}, {}
    for name, path in paths.items():
        config = PrepareConfig(output_dir=tmp_path / name, inputs=[InputSpec("wiki", str(path))], vocab=vocab,
                               num_train_shards=3, num_test_shards=1, workers=workers)  # fmt: skip
        info = prepare(config)
        shards[name] = {s["file"]: (tmp_path / name / s["file"]).read_bytes() for s in info["shards"]}
        stats[name] = json.dumps([info["stats"], info["inputs"][0]["stats"]], sort_keys=True)
    assert shards["wikimedia"] == shards["single"] and shards["cut"] == shards["single"]
    assert stats["wikimedia"] == stats["single"] and stats["cut"] == stats["single"]
