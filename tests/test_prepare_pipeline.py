"""`sharebert prepare` end to end on small corpora: outputs, determinism, resume, refusals, CLI errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from prepare_fixtures import article, page, write_dump, write_vocab

from sharebert.cli import main
from sharebert.errors import ConfigError, DataError
from sharebert.pipeline import formats
from sharebert.pipeline.prepare import output as prepare_output
from sharebert.pipeline.prepare import stage as prepare_module
from sharebert.pipeline.prepare.encode import SentenceEncoder
from sharebert.pipeline.prepare.stage import InputSpec, PrepareConfig, prepare

MARKUP = ("{{", "}}", "[[", "]]", "{|", "|}", "<ref", "&lt;", "'''", "==")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("corpus")
    pages = [page(f"River {n}", 100 + n, article(n)) for n in range(30)]
    pages += [page(f"Old name {n}", 500 + n, f"#REDIRECT [[River {n}]]", redirect=f"River {n}") for n in range(5)]
    dump = write_dump(root / "rivers.xml.bz2", pages, multistream=True)
    text = root / "stories.txt"
    text.write_text(
        "\n\n".join(
            f"The king had a ship {i}.\nThe queen built a house in the city.\nIt was night." for i in range(20)
        ),
        encoding="utf-8",
    )
    books = root / "books"
    books.mkdir()
    for b in range(2):
        (books / f"book{b}.txt").write_text(
            "\n\n".join(f"Chapter {c} of book {b}. The river ran to the sea.\nThe people sang." for c in range(40)),
            encoding="utf-8",
        )
    vocab = write_vocab(root / "vocab.txt", extra_words=["king", "ship", "chapter", "sang", "ran", "built", "near"])
    inputs = [InputSpec("wiki", str(dump)), InputSpec("text", str(text)), InputSpec("books", str(books))]
    return {"root": root, "dump": dump, "text": text, "books": books, "vocab": vocab, "inputs": inputs}


def run(corpus, out: Path, **settings) -> dict:
    options = dict(inputs=corpus["inputs"], vocab=corpus["vocab"], num_train_shards=4, num_test_shards=1,
                   frac_test=0.1, workers=1)  # fmt: skip
    options.update(settings)
    return prepare(PrepareConfig(output_dir=out, **options))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def read_rows(folder: Path, info: dict) -> list[dict]:
    rows = []
    for shard in info["shards"]:
        table = pq.ParquetFile(folder / shard["file"]).read()
        rows += [dict(r, _shard=shard["file"]) for r in table.to_pylist()]
    return rows


def corpus_order(doc_id: str) -> tuple:
    base, _, part = doc_id.partition("#p")
    kind = base.split(":")[0]
    if kind == "text":  # text:NAME@BYTE
        number = int(base.rsplit("@", 1)[1])
    else:  # wiki:NAME:PAGE_ID, books:NAME/bookN.txt
        number = int(base.rsplit(":", 1)[1]) if kind == "wiki" else int(base[-5])
    return ("wiki", "text", "books").index(kind), number, int(part or 0)


def test_outputs_follow_the_contract(corpus, tmp_path):
    out = tmp_path / "prepared"
    info = run(corpus, out, keep_text=True)
    assert formats.read_prepare_info(out) == info
    names = sorted(p.name for p in out.iterdir())
    expected_shards = [formats.shard_file_name("test", 0, 1)] + [
        formats.shard_file_name("train", k, 4) for k in range(4)
    ]
    assert names == sorted(expected_shards + [formats.PREPARE_INFO_FILE, formats.VOCAB_FILE])  # no work dir, no temp
    assert (out / formats.VOCAB_FILE).read_bytes() == corpus["vocab"].read_bytes()
    for key in ("format_version", "sharebert_version", "vocab", "shards", "totals", "settings", "inputs", "versions"):
        assert key in info
    assert info["vocab"]["trained"] is False and info["vocab"]["lowercase"] is True
    assert [i["kind"] for i in info["inputs"]] == ["wiki", "text", "books"]
    assert info["inputs"][0]["stats"]["redirects_skipped"] == 5
    assert info["settings"]["seed"] == 42 and "workers" not in info["settings"]

    rows = read_rows(out, info)
    encoder = SentenceEncoder(corpus["vocab"], True)
    vocab_size = info["vocab"]["size"]
    for shard in info["shards"]:
        table = pq.ParquetFile(out / shard["file"])
        assert table.schema_arrow == formats.parquet_schema(keep_text=True)
        mine = [r for r in rows if r["_shard"] == shard["file"]]
        assert shard["documents"] == len(mine)
        assert shard["sentences"] == sum(len(r["sentences"]) for r in mine)
        assert shard["tokens"] == sum(len(s) for r in mine for s in r["sentences"])
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    for row in rows:
        assert row["sentences"] and all(row["sentences"]) and len(row["text"]) == len(row["sentences"])
        assert all(0 <= t < vocab_size for s in row["sentences"] for t in s)
        assert encoder.encode(row["text"]) == row["sentences"]
        assert not any(m in s for m in MARKUP for s in row["text"])
    base_ids = {i.split("#p")[0] for i in ids}
    assert sum(i.startswith("wiki:rivers.xml.bz2:") for i in base_ids) == 30
    assert sum(i.startswith("text:stories.txt@") for i in base_ids) == 20
    assert {i for i in base_ids if i.startswith("books:")} == {"books:books/book0.txt", "books:books/book1.txt"}
    for shard in info["shards"]:  # rows are in corpus order: inputs in order, documents in order, parts in order
        keys = [corpus_order(r["id"]) for r in rows if r["_shard"] == shard["file"]]
        assert keys == sorted(keys)
    first_article = next(r for r in rows if r["id"] == "wiki:rivers.xml.bz2:100")
    assert first_article["text"][0] == "The river 0 passes the town of Village 0 in year 1900."
    for split in ("train", "test"):
        tokens = [s["tokens"] for s in info["shards"] if s["split"] == split]
        assert max(tokens) <= 1.05 * np.mean(tokens)
        assert info["totals"][split]["tokens"] == sum(tokens)


def test_same_bytes_for_1_and_2_workers_with_a_trained_vocab(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 3000)  # many batches
    monkeypatch.setattr("sharebert.pipeline.prepare.sources.text.PART_BYTES", 2000)  # many parts
    monkeypatch.setattr("sharebert.pipeline.prepare.sources.books.PART_BYTES", 1)  # one per book
    one = run(corpus, tmp_path / "one", vocab=None, train_vocab=300, workers=1)
    two = run(corpus, tmp_path / "two", vocab=None, train_vocab=300, workers=2)
    assert one == two
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")
    assert one["vocab"]["trained"] is True and one["vocab"]["size"] <= 300


def test_long_documents_are_cut_into_parts(corpus, tmp_path):
    info = run(corpus, tmp_path / "books", inputs=[InputSpec("books", str(corpus["books"]))], num_train_shards=6,
               num_test_shards=0, frac_test=0.0, keep_text=True)  # fmt: skip
    rows = read_rows(tmp_path / "books", info)
    assert all("#p" in r["id"] for r in rows) and info["stats"]["documents_cut"] == 2
    for shard in info["shards"]:
        keys = [corpus_order(r["id"]) for r in rows if r["_shard"] == shard["file"]]
        assert keys == sorted(keys)
    for book in ("books:books/book0.txt", "books:books/book1.txt"):
        parts = sorted((int(r["id"].rsplit("#p", 1)[1]), r["text"]) for r in rows if r["id"].startswith(book + "#"))
        assert [n for n, _ in parts] == list(range(1, len(parts) + 1))
        text = [s for _, sentences in parts for s in sentences]
        assert text[0].startswith("Chapter 0 of book") and len(text) == 120
    assert info["stats"]["balance"]["train"]["max_over_mean"] <= 1.05


def test_documents_left_empty_by_cleaning_are_dropped_and_counted(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 1)  # one document per batch: a batch with nothing left
    pages = [page("Template only", 1, "{{Infobox}}\n[[Category:X]]"), page("Real", 2, "The river ran to the sea."),
             page("Marks only", 3, "\u0301\u0302 \u0303")]  # fmt: skip
    dump = write_dump(tmp_path / "d.xml", pages)
    info = run(corpus, tmp_path / "out", inputs=[InputSpec("wiki", str(dump))], num_train_shards=1,
               num_test_shards=0, frac_test=0.0)  # fmt: skip
    assert info["stats"]["empty_after_cleaning"] == 2 and info["totals"]["train"]["documents"] == 1


def test_rerun_is_a_no_op_and_different_runs_are_refused(corpus, tmp_path):
    out = tmp_path / "out"
    run(corpus, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    run(corpus, out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    (out / "notes.md").write_text("mine")
    with pytest.raises(DataError, match=r"different prepare run \(settings differ: seed 42 -> 7"):
        run(corpus, out, seed=7)
    info = run(corpus, out, seed=7, overwrite=True)
    assert info["settings"]["seed"] == 7 and (out / "notes.md").read_text() == "mine"


def test_interrupted_runs_resume_to_the_same_bytes(corpus, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    run(corpus, reference)
    out = tmp_path / "out"
    monkeypatch.setattr(prepare_module, "BATCH_CHARS", 3000)
    calls = []
    real_process_batch = prepare_module.process_batch

    def crash_on_third_batch(task):
        calls.append(task.index)
        if task.index == 2 and len(calls) == 3:
            raise KeyboardInterrupt
        return real_process_batch(task)

    monkeypatch.setattr(prepare_module, "process_batch", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        run(corpus, out)
    with pytest.raises(DataError, match="missing: the folder is not a complete"):
        formats.read_prepare_info(out)
    assert sorted(p.name for p in (out / formats.PREPARE_WORK_DIR).glob("batch-*")) == [
        "batch-000000.arrow",
        "batch-000001.arrow",
    ]

    def interrupt(*args):
        raise KeyboardInterrupt

    real_info = prepare_output.prepare_info
    monkeypatch.setattr(prepare_output, "prepare_info", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(corpus, out)  # phase 1 resumed; every shard written, but no prepare.json
    assert not (out / formats.PREPARE_INFO_FILE).exists()
    shard_times = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    assert len(shard_times) == 5

    monkeypatch.setattr(prepare_output, "prepare_info", real_info)
    run(corpus, out)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == shard_times  # shards were not redone
    assert folder_bytes(out) == folder_bytes(reference)  # and batch sizes do not change the output


def test_an_interrupted_run_whose_inputs_changed_starts_over(corpus, tmp_path, monkeypatch):
    text = tmp_path / "stories.txt"
    text.write_bytes(corpus["text"].read_bytes())
    inputs = [InputSpec("text", str(text))]
    monkeypatch.setattr("sharebert.pipeline.prepare.sources.text.PART_BYTES", 500)
    real_process_batch = prepare_module.process_batch

    def crash_on_second_batch(task):
        if task.index == 1:
            raise KeyboardInterrupt
        return real_process_batch(task)

    monkeypatch.setattr(prepare_module, "process_batch", crash_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run(corpus, tmp_path / "out", inputs=inputs, keep_text=True)
    assert (
        tmp_path / "out" / formats.PREPARE_WORK_DIR / "batch-000000.arrow"
    ).exists()  # a finished spill of the old text
    monkeypatch.setattr(prepare_module, "process_batch", real_process_batch)
    text.write_bytes(text.read_bytes().replace(b"king", b"kong"))  # same size: only the mtime tells
    info = run(corpus, tmp_path / "out", inputs=inputs, keep_text=True)
    sentences = [s for r in read_rows(tmp_path / "out", info) for s in r["text"]]
    assert any("kong" in s for s in sentences) and not any("king" in s for s in sentences)


def test_config_is_validated(tmp_path):
    for options, message in [
        (dict(vocab="v.txt", train_vocab=100), "either --vocab"),
        (dict(num_train_shards=0), "--num-train-shards"),
        (dict(num_test_shards=0, frac_test=0.1), "--frac-test 0.1 needs --num-test-shards"),
        (dict(num_test_shards=2, frac_test=0.0), "needs --frac-test > 0"),
        (dict(frac_test=1.0), "--frac-test must be in"),
        (dict(train_vocab=5), "--train-vocab must be"),
        (dict(workers=0), "--workers"),
        (dict(inputs=[InputSpec("wiki", "a.xml"), InputSpec("wiki", "./a.xml")]), "given twice"),
        (dict(inputs=[InputSpec("pdf", "a.pdf")]), "input kind 'pdf'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            PrepareConfig(output_dir=tmp_path, **options)
    config = PrepareConfig(output_dir=tmp_path)
    assert config.inputs == [InputSpec("builtin", "python-stdlib")] and config.train_vocab == 30522


# ---------------------------------------------------------------- through the CLI: exit 2, one line
def cli(args, capsys) -> tuple[int, list[str]]:
    status = main(["prepare", "-q", *map(str, args)])
    return status, capsys.readouterr().err.strip().splitlines()


def _bad_inputs(root: Path, corpus) -> list[tuple[list, str]]:
    truncated = root / "truncated.xml.bz2"
    truncated.write_bytes(corpus["dump"].read_bytes()[:-200])
    big = write_dump(
        root / "big.xml.bz2", [page(f"P{i}", i, " ".join(f"w{i * j}" for j in range(3000))) for i in range(3)]
    )
    data = big.read_bytes()
    corrupt = root / "corrupt.xml.bz2"
    corrupt.write_bytes(data[:300] + bytes(b ^ 0xFF for b in data[300:800]) + data[800:])
    html = root / "page.xml"
    html.write_text("<html><body>Not a dump</body></html>")
    redirects = write_dump(root / "redirects.xml", [page("A", 1, "#REDIRECT [[B]]", redirect="B")])
    not_vocab = root / "notvocab.txt"
    not_vocab.write_text("hello world\nthis is prose\n" * 20)
    vocab = corpus["vocab"]
    return [
        (["--wiki", root / "missing.xml.bz2", "--vocab", vocab], "missing.xml.bz2: file not found"),
        (["--wiki", root, "--vocab", vocab], "is a folder, expected a file"),
        (["--books", root / "nobooks", "--vocab", vocab], "nobooks: folder not found"),
        (["--wiki", html, "--vocab", vocab], "page.xml: not a MediaWiki XML dump"),
        (["--wiki", truncated, "--vocab", vocab], "truncated.xml.bz2: truncated or corrupt compressed file"),
        (["--wiki", corrupt, "--vocab", vocab], "corrupt.xml.bz2: "),
        (["--wiki", corpus["dump"], "--vocab", not_vocab], "notvocab.txt: not a vocab file"),
        (["--wiki", corpus["dump"], "--vocab", root / "novocab.txt"], "novocab.txt: vocab file not found"),
        (["--wiki", redirects, "--vocab", vocab], "no documents extracted from --wiki"),
    ]


def test_bad_inputs_fail_with_one_line_naming_the_file(corpus, tmp_path, capsys):
    for k, (args, message) in enumerate(_bad_inputs(tmp_path, corpus)):
        out = tmp_path / f"out{k}"
        status, lines = cli([*args, "-o", out], capsys)
        assert status == 2, (args, lines)
        assert len(lines) == 1 and lines[0].startswith("sharebert prepare: error: "), lines
        assert message in lines[0], (message, lines[0])
        assert not (out / formats.PREPARE_INFO_FILE).exists()
        assert not list(out.glob("*.parquet")) if out.exists() else True


def test_unreadable_file(corpus, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked.xml"
    locked.write_bytes(corpus["dump"].read_bytes())
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads any file: make the permission check see what a user would
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    status, lines = cli(["--wiki", locked, "--vocab", corpus["vocab"], "-o", tmp_path / "o"], capsys)
    assert status == 2 and len(lines) == 1 and "locked.xml: cannot read file (permission denied)" in lines[0]


def test_output_inside_an_input_folder_is_refused(corpus, tmp_path, capsys):
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text("A book.")
    status, lines = cli(["--books", books, "--vocab", corpus["vocab"], "-o", books / "prepared"], capsys)
    assert status == 2 and len(lines) == 1 and "must be apart from the input --books" in lines[0]


def test_cli_refuses_a_different_run_then_overwrites(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--text", corpus["text"], "--vocab", corpus["vocab"], "-o", out, "--num-train-shards", "2",
            "--num-test-shards", "1", "--workers", "1"]  # fmt: skip
    assert cli(args, capsys) == (0, [])
    status, lines = cli([*args, "--seed", "3"], capsys)
    assert status == 2 and len(lines) == 1 and "holds the output of a different prepare run" in lines[0]
    assert cli([*args, "--seed", "3", "--overwrite"], capsys) == (0, [])


def test_cli_default_is_the_builtin_corpus(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "builtin"
    status = main(["prepare", "-o", str(out), "--train-vocab", "2000", "--num-train-shards", "2",
                   "--num-test-shards", "1", "--frac-test", "0.05", "--workers", "1"])  # fmt: skip
    assert status == 0
    info = formats.read_prepare_info(out)
    assert info["inputs"][0]["kind"] == "builtin" and info["vocab"]["trained"]
    assert info["totals"]["train"]["documents"] > 1000
    assert "built-in corpus" in caplog.text
