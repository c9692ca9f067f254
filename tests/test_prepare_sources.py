"""Input readers: wiki dumps (plain, bz2, multistream), books, text, Hugging Face datasets, built-in corpus."""

from __future__ import annotations

import bz2
import sys

import pytest
from prepare_fixtures import page, write_dump

from sharebert.errors import DataError
from sharebert.pipeline.prepare.records import LINES, PLAIN, WIKITEXT, ReadStats
from sharebert.pipeline.prepare.sources import open_source


def read_all(kind, path, label="input", **kwargs):
    source = open_source(kind, str(path), label, **kwargs)
    source.check()
    stats = ReadStats()
    return list(source.documents(stats)), stats, source


PAGES = [
    page("Alpha", 10, "Alpha is a letter."),
    page("Redirected", 11, "#REDIRECT [[Alpha]]", redirect="Alpha"),
    page("Untagged redirect", 12, "#redirect [[Alpha]]"),
    page("Wikipedia:Project", 13, "A project page.", ns=4),
    page("Category:Letters", 14, "A category page.", ns=14),
    page("Beta", 15, "Beta & <b>gamma</b>."),
    page("Empty", 16, "   "),
]


@pytest.mark.parametrize("name, multistream", [("d.xml", False), ("d.xml.bz2", False), ("d.xml.bz2", True)])
def test_wiki_keeps_main_namespace_articles_only(tmp_path, name, multistream):
    dump = write_dump(tmp_path / name, PAGES, multistream=multistream)
    docs, stats, source = read_all("wiki", dump, label=name)
    assert [d.id for d in docs] == [f"wiki:{name}:10", f"wiki:{name}:15"]
    assert {d.source for d in docs} == {f"wiki:{name}"}
    assert all(d.markup == WIKITEXT for d in docs)
    assert docs[1].text == "Beta & <b>gamma</b>."  # XML entities decoded, markup left for the cleaner
    assert (stats.redirects_skipped, stats.other_namespaces_skipped, stats.empty_documents_skipped) == (2, 2, 1)
    assert source.bytes_read == dump.stat().st_size


def test_wiki_without_ns_elements_uses_title_prefixes(tmp_path):
    pages = [p.replace("<ns>0</ns>", "").replace("<ns>4</ns>", "").replace("<ns>14</ns>", "") for p in PAGES]
    docs, stats, _ = read_all("wiki", write_dump(tmp_path / "old.xml", pages))
    assert [d.id.rsplit(":", 1)[1] for d in docs] == ["10", "15"]
    assert stats.other_namespaces_skipped == 2


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"<html><body>hello</body></html>", "not a MediaWiki XML dump (root element <html>"),
        (b"just some text, not XML", "not a MediaWiki XML dump"),
        (bz2.compress(b"plain text in bz2"), "not a MediaWiki XML dump"),
        (b"", "not a MediaWiki XML dump"),
    ],
)
def test_wiki_rejects_what_is_not_a_dump(tmp_path, content, problem):
    path = tmp_path / "bad.xml.bz2"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"bad\.xml\.bz2: ") as err:
        read_all("wiki", path)
    assert problem in str(err.value)


def test_wiki_truncated_and_corrupt_bz2(tmp_path):
    text = " ".join(f"word{i * 7919 % 10007}" for i in range(20000))
    data = bz2.compress(("<mediawiki>" + page("P", 1, text) + "</mediawiki>").encode())
    truncated = tmp_path / "truncated.xml.bz2"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"truncated\.xml\.bz2: truncated or corrupt compressed file"):
        read_all("wiki", truncated)
    corrupt = tmp_path / "corrupt.xml.bz2"
    middle = len(data) // 3
    corrupt.write_bytes(data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 500]) + data[middle + 500 :])
    with pytest.raises(DataError, match=r"corrupt\.xml\.bz2: (truncated or )?corrupt compressed"):
        read_all("wiki", corrupt)


def test_wiki_truncated_xml(tmp_path):
    path = tmp_path / "cut.xml"
    path.write_text("<mediawiki>" + page("A", 1, "Some text.") + "<page><title>B</ti")
    with pytest.raises(DataError, match=r"cut\.xml: truncated XML"):
        read_all("wiki", path)


def test_missing_files_and_folders(tmp_path):
    for kind in ("wiki", "text"):
        with pytest.raises(DataError, match=r"nope\.xml: file not found"):
            read_all(kind, tmp_path / "nope.xml")
        with pytest.raises(DataError, match="is a folder"):
            read_all(kind, tmp_path)
    with pytest.raises(DataError, match=r"nowhere: folder not found"):
        read_all("books", tmp_path / "nowhere")
    with pytest.raises(DataError, match="no book files"):
        read_all("books", tmp_path)


def test_books_one_document_per_file_and_bad_bytes_counted(tmp_path):
    books = tmp_path / "books"
    (books / "sub").mkdir(parents=True)
    (books / "b.txt").write_bytes(b"Chapter one.\nIt was a dark\nnight.\n\nChapter two.")
    (books / "a.txt").write_bytes(b"Caf\xe9 and cr\xe8me. Fine \xef\xbf\xbd literal.")  # latin-1 bytes
    (books / "sub" / "c.txt").write_text("\ufeffThird book.", encoding="utf-8")
    (books / ".hidden.txt").write_text("skipped")
    (books / "empty.txt").write_text("\n\n")
    docs, stats, _ = read_all("books", books, label="books")
    assert [d.id for d in docs] == ["books:books/a.txt", "books:books/b.txt", "books:books/sub/c.txt"]
    assert [d.source for d in docs] == [d.id for d in docs]
    assert all(d.markup == PLAIN for d in docs)
    assert docs[0].text.count("\ufffd") == 3  # two replaced bytes and one literal U+FFFD
    assert stats.bad_bytes_replaced == 2
    assert docs[2].text == "Third book."
    assert stats.empty_documents_skipped == 1


def test_books_are_read_in_parts_of_whole_files_by_the_workers(tmp_path, monkeypatch):
    from sharebert.pipeline.prepare import stage
    from sharebert.pipeline.prepare.sources import books as books_module

    monkeypatch.setattr(books_module, "PART_BYTES", 30)
    folder = tmp_path / "books"
    folder.mkdir()
    sizes = [10, 25, 40, 5, 5, 1]
    for n, size in enumerate(sizes):
        (folder / f"{n}.txt").write_bytes(b"w" * (size - 1) + b"\xff")
    (folder / "6.txt").write_text(" \n")
    source = open_source("books", str(folder), "books")
    parts = list(source.parts())
    assert [part.names for part in parts] == [("0.txt", "1.txt"), ("2.txt",), ("3.txt", "4.txt", "5.txt", "6.txt")]
    assert [part.bytes for part in parts] == [35, 40, 13]
    assert source.bytes_read == source.size() == 88
    assert "3.txt to 6.txt (4 files)" in parts[2].describe() and parts[1].describe().endswith("2.txt")
    stats = ReadStats()
    documents = [d for part in parts for d in part.documents(stats)]
    assert [d.id for d in documents] == [f"books:books/{n}.txt" for n in range(6)]
    assert (stats.files_read, stats.documents_read, stats.empty_documents_skipped, stats.bad_bytes_replaced) == (
        7, 6, 1, 6)  # fmt: skip
    whole, whole_stats, _ = read_all("books", folder, label="books")
    assert whole == documents and whole_stats == stats
    # The stage hands the parts to the workers: no book's text is read where the run is planned.
    batches = list(stage._batches([open_source("books", str(folder), "books")], [ReadStats()]))
    assert [type(part).__name__ for part, _ in batches] == ["BookFiles"] * 3


def test_text_blank_lines_separate_documents(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"\xef\xbb\xbfFirst doc line one.\r\nLine two.\n\n\n  \nSecond \xff doc.\n\nThird.")
    docs, stats, _ = read_all("text", path, label="corpus.txt")
    second, third = path.read_bytes().index(b"Second"), path.read_bytes().index(b"Third")
    assert [d.id for d in docs] == ["text:corpus.txt@0", f"text:corpus.txt@{second}", f"text:corpus.txt@{third}"]
    assert docs[0].text == "First doc line one.\nLine two."
    assert docs[1].text == "Second \ufffd doc."
    assert all(d.markup == LINES for d in docs)
    assert stats.bad_bytes_replaced == 1 and stats.documents_read == 3


def text_parts(path, part_bytes: int, monkeypatch) -> tuple[list, list, ReadStats]:
    """The file's parts when cut at `part_bytes`, and their documents."""
    from sharebert.pipeline.prepare.sources import text as text_module

    monkeypatch.setattr(text_module, "PART_BYTES", part_bytes)
    parts, stats = list(open_source("text", str(path), "t").parts()), ReadStats()
    return parts, [d for part in parts for d in part.documents(stats)], stats


def test_text_parts_end_after_blank_lines_and_read_the_same_documents(tmp_path, monkeypatch):
    path = tmp_path / "small.txt"
    path.write_bytes("\ufeffÜnïcödé line.\r\n\n \t\nAnother \ufffd doc\xff.\nIts line.\n\n\nLast.\n".encode("utf-8", "surrogateescape")
                     .replace(b"\xc3\xbf", b"\xff"))  # fmt: skip
    _, whole, whole_stats = text_parts(path, 1 << 20, monkeypatch)
    assert [d.text for d in whole] == ["Ünïcödé line.", "Another \ufffd doc\ufffd.\nIts line.", "Last."]
    assert (whole_stats.bad_bytes_replaced, whole_stats.documents_read, whole_stats.files_read) == (1, 3, 1)
    data = path.read_bytes()
    for part_bytes in range(1, len(data) + 1):
        parts, documents, stats = text_parts(path, part_bytes, monkeypatch)
        assert [(d.id, d.text) for d in documents] == [(d.id, d.text) for d in whole], part_bytes
        assert stats == whole_stats
        assert [p.start for p in parts[1:]] == [p.end for p in parts[:-1]] and parts[-1].end == len(data)
        assert all(data[: p.start].endswith((b"\n\n", b"\n \t\n")) for p in parts[1:])  # after a blank line


def test_text_without_blank_lines_is_cut_into_bounded_parts(tmp_path, monkeypatch):
    from sharebert.pipeline.prepare.sources import text as text_module

    monkeypatch.setattr(text_module, "SCAN_BYTES", 50)
    lines = [f"line {i} é." for i in range(300)]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines) + "\n\n" + "word " * 200 + "ü" * 300, encoding="utf-8")
    parts, documents, _ = text_parts(path, 100, monkeypatch)
    assert max(p.end - p.start for p in parts) <= 100 + 50 and len(parts) > 10
    line_documents = [d for d in documents if d.text.startswith("line")]
    assert [line for d in line_documents for line in d.text.split("\n")] == lines  # cut at line ends
    # The last line, 1,100 bytes without a line end, is cut after spaces, then between characters.
    assert "".join(d.text for d in documents[len(line_documents) :]) == "word " * 200 + "ü" * 300
    assert len({d.id for d in documents}) == len(documents)


def test_hf_dataset_from_data_files_and_save_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"text": ["First document.", "", "Second document."], "other": [1, 2, 3]}
    data = datasets.Dataset.from_dict(rows)
    (tmp_path / "files").mkdir()
    data.to_parquet(str(tmp_path / "files" / "train.parquet"))
    data.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": data, "validation": data.select([0])}).save_to_disk(str(tmp_path / "dict"))
    for path in (tmp_path / "files", tmp_path / "files" / "train.parquet", tmp_path / "saved", tmp_path / "dict"):
        docs, stats, _ = read_all("hf", path, label="ds")
        assert [d.text for d in docs] == ["First document.", "Second document."]
        assert [d.id for d in docs] == ["hf:ds:train:0", "hf:ds:train:2"]
        assert stats.empty_documents_skipped == 1
    docs, _, _ = read_all("hf", tmp_path / "dict", label="ds", split="validation")
    assert [d.text for d in docs] == ["First document."]
    with pytest.raises(DataError, match="no text column 'body'"):
        read_all("hf", tmp_path / "saved", text_column="body")
    with pytest.raises(DataError, match="no split 'test'"):
        read_all("hf", tmp_path / "dict", split="test")
    with pytest.raises(DataError, match="dataset not found"):
        read_all("hf", "./no/such/folder")


def test_a_saved_dataset_is_read_in_parts_of_rows_by_the_workers(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from sharebert.pipeline.prepare import stage
    from sharebert.pipeline.prepare.sources import hf

    texts = [f"Document {i} says {'more ' * (i % 7)}." if i % 5 else ("" if i % 10 else None) for i in range(60)]
    data = datasets.Dataset.from_dict({"text": texts, "other": list(range(60))})
    data.save_to_disk(str(tmp_path / "saved"))
    data.to_parquet(str(tmp_path / "rows.parquet"))  # read row by row where the run is planned: the reference
    streamed, streamed_stats, _ = read_all("hf", tmp_path / "rows.parquet", label="ds")
    monkeypatch.setattr(hf, "PART_ROWS", 7)
    monkeypatch.setattr(hf, "PART_BYTES", 100)
    source = open_source("hf", str(tmp_path / "saved"), "ds")
    source.check()
    parts = list(source.parts())
    assert len(parts) > 60 // 7 and all(p.end - p.start <= 7 for p in parts)
    assert [p.start for p in parts[1:]] == [p.end for p in parts[:-1]] and parts[-1].end == 60
    assert source.bytes_read == source.size()
    stats = ReadStats()
    documents = [d for part in parts for d in part.documents(stats)]
    assert [(d.id, d.text) for d in documents] == [(d.id, d.text) for d in streamed]
    assert stats == streamed_stats and stats.empty_documents_skipped == 12
    # The stage hands the parts to the workers: no row's text is read where the run is planned.
    batches = list(stage._batches([open_source("hf", str(tmp_path / "saved"), "ds")], [ReadStats()]))
    assert {type(part).__name__ for part, _ in batches} == {"HFRows"}


def test_parquet_data_files_are_read_in_parts_of_row_groups_by_the_workers(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sharebert.pipeline.prepare import stage
    from sharebert.pipeline.prepare.sources import hf

    monkeypatch.setattr(hf, "PART_BYTES", 300)  # two of the first file's row groups (~270 B each) make a part;
    monkeypatch.setattr(hf, "PART_ROWS", 6)  # the second file's one row group (~1.2 KB) is cut
    texts = [f"Row {i} of the corpus {'says more ' * (i % 4)}." if i % 6 else None for i in range(70)]
    files = {"train-00000-of-00002": (texts[:30], 4), "train-00001-of-00002": (texts[30:60], 30),
             "test-00000-of-00001": (texts[60:], 5)}  # fmt: skip
    for folder in ("parquet", "jsonl"):
        (tmp_path / folder).mkdir()
    for name, (rows, row_group) in files.items():
        pq.write_table(pa.table({"text": rows}), tmp_path / "parquet" / f"{name}.parquet", row_group_size=row_group)
        datasets.Dataset.from_dict({"text": rows}).to_json(str(tmp_path / "jsonl" / f"{name}.jsonl"), lines=True)
    reference, reference_stats, jsonl = read_all("hf", tmp_path / "jsonl", label="ds")  # streamed here
    assert jsonl.parts() is None and len(reference) == 50  # the train split: 60 rows, 10 empty
    source = open_source("hf", str(tmp_path / "parquet"), "ds")
    source.check()
    parts = list(source.parts())
    assert {p.path.rsplit("/", 1)[1] for p in parts} == {"train-00000-of-00002.parquet", "train-00001-of-00002.parquet"}
    assert any(p.end - p.first > 1 for p in parts) and any(p.batch for p in parts)  # row groups joined, and cut
    stats = ReadStats()
    documents = [d for part in parts for d in part.documents(stats)]
    assert [(d.id, d.text) for d in documents] == [(d.id, d.text) for d in reference]
    assert stats == reference_stats
    batches = list(stage._batches([open_source("hf", str(tmp_path / "parquet"), "ds")], [ReadStats()]))
    assert {type(part).__name__ for part, _ in batches} == {"ParquetRows"}


def test_builtin_corpus_is_python_own_text_and_deterministic():
    first, stats, source = read_all("builtin", "python-stdlib", label="python-stdlib")
    again, _, _ = read_all("builtin", "python-stdlib", label="python-stdlib")
    assert [(d.id, d.text) for d in first] == [(d.id, d.text) for d in again]
    from pydoc_data.topics import topics

    topic_docs = [d for d in first if ":topic:" in d.id]
    assert len(topic_docs) == len([t for t in topics.values() if t.strip()])
    if sys.flags.optimize < 2:
        docstring_docs = [d for d in first if ":module:" in d.id or ":class:" in d.id]
        assert len(docstring_docs) > 200
        assert any(d.id == "builtin:python-stdlib:module:json" for d in docstring_docs)
    assert len({d.id for d in first}) == len(first)
    assert stats.documents_read == len(first)
    assert source.describe()["sha256"] == open_source("builtin", "python-stdlib", "python-stdlib").describe()["sha256"]


def test_a_long_line_is_read_whole(tmp_path):
    long_line = "".join(f"w{i} " for i in range(20000)).strip()
    path = tmp_path / "long.txt"
    path.write_bytes(f"{long_line}\r\nshort line\n\nsecond document".encode())
    docs, _, _ = read_all("text", path)
    assert [d.text for d in docs] == [f"{long_line}\nshort line", "second document"]


# ---------------------------------------------------------------- documents of bounded size
def test_a_line_longer_than_a_document_may_be_is_read_as_pieces_cut_at_spaces(tmp_path, monkeypatch):
    from sharebert.pipeline.prepare import records

    monkeypatch.setattr(records, "MAX_DOCUMENT_CHARS", 1000)
    long_line = "".join(f"w{i} " for i in range(20000)).strip()
    path = tmp_path / "long.txt"
    path.write_text(f"first\n\n{long_line}\nshort line\n\nlast document")
    docs, _, _ = read_all("text", path)
    pieces = [d.text for d in docs[1:-1]]
    assert docs[0].text == "first" and docs[-1].text == "last document"
    assert max(len(p) for p in pieces) <= 1000 and len(pieces) >= len(long_line) // 1000
    assert "".join(pieces[:-1]) + pieces[-1].removesuffix("\nshort line") == long_line  # cut only at spaces
    assert all(p.endswith(" ") for p in pieces[:-1])
    assert len({d.id for d in docs}) == len(docs)


def test_many_lines_make_documents_of_bounded_size_cut_at_line_ends(tmp_path, monkeypatch):
    from sharebert.pipeline.prepare import records

    monkeypatch.setattr(records, "MAX_DOCUMENT_CHARS", 100)
    lines = [f"line number {i}." for i in range(200)]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines))
    docs, stats, _ = read_all("text", path)
    assert all(len(d.text) <= 100 for d in docs)
    assert [line for d in docs for line in d.text.split("\n")] == lines
    assert stats.documents_read == len(docs)


def test_any_source_s_long_document_is_cut_into_named_pieces():
    from sharebert.pipeline.prepare.records import PLAIN, RawDocument, bounded_documents

    text = "para one is here.\n" * 40 + "x" * 300 + " tail words"
    short = RawDocument("b:1", "b", "short")
    pieces = list(bounded_documents([RawDocument("b:0", "b", text, PLAIN), short], limit=100))
    assert pieces[-1] is short
    cut = pieces[:-1]
    assert "".join(p.text for p in cut) == text
    assert [p.id for p in cut] == [f"b:0#{k}" for k in range(len(cut))]
    assert all(len(p.text) <= 100 for p in cut) and all(p.markup == PLAIN and p.source == "b" for p in cut)
    assert cut[0].text.endswith("\n")  # a line end is preferred to a space, a space to anywhere
    assert any(len(p.text) == 100 and set(p.text) == {"x"} for p in cut)


def test_prepare_keeps_one_huge_document_within_bounded_pieces(tmp_path, monkeypatch):
    from sharebert.pipeline.prepare import records
    from sharebert.pipeline.prepare.config import PrepareConfig
    from sharebert.pipeline.prepare.stage import bounded_documents as used_by_the_stage
    from sharebert.pipeline.prepare.stage import prepare

    seen: list[int] = []

    def recording(documents, limit=None):
        for document in records.bounded_documents(documents, limit):
            seen.append(len(document.text))
            yield document

    monkeypatch.setattr(records, "MAX_DOCUMENT_CHARS", 2000)
    monkeypatch.setattr("sharebert.pipeline.prepare.stage.bounded_documents", recording)
    monkeypatch.setattr("sharebert.pipeline.prepare.spill.bounded_documents", recording)  # parts: in the workers
    assert used_by_the_stage is records.bounded_documents
    path = tmp_path / "books"
    path.mkdir()
    (path / "one.txt").write_text(" ".join(f"Word{i} is here." for i in range(3000)))  # 50k characters
    (path / "two.txt").write_text("A short book. It has two sentences.")
    info = prepare(PrepareConfig(tmp_path / "out", [("books", str(path))], train_vocab=200, num_train_shards=2,
                                 num_test_shards=1, workers=1))  # fmt: skip
    assert max(seen) <= 2000 and len(seen) > 25
    assert info["stats"]["documents_read"] == 2
