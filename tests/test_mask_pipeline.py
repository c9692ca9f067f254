"""`sharebert mask` end to end: files, manifest, determinism, resume, refusals, validation, CLI."""

from __future__ import annotations

import json
import os
import re

import h5py
import numpy as np
import pytest
from mask_fixtures import small_prepared_dir, write_prepared_dir, write_vocab

from sharebert.cli import main
from sharebert.errors import ConfigError, DataError
from sharebert.pipeline import formats
from sharebert.pipeline.mask import stage as mask_module
from sharebert.pipeline.mask.stage import MaskConfig, _group_tasks, _Task, mask
from sharebert.pipeline.mask.validate import ValidateConfig, check_folder
from sharebert.tokenization import read_vocab


@pytest.fixture
def prepared(tmp_path):
    vocab = write_vocab(tmp_path / "vocab.txt")
    return small_prepared_dir(tmp_path / "prepared", vocab)


def _run(prepared, out, **kw):
    kw.setdefault("dup_factor", 2)
    return mask(MaskConfig(prepared, out, **kw))


def _hdf5_files(folder):
    return sorted(p.name for p in folder.glob("*.hdf5"))


def test_files_manifest_and_samples(prepared, tmp_path):
    out = tmp_path / "samples"
    manifest = _run(prepared, out)
    info = json.loads((prepared / formats.PREPARE_INFO_FILE).read_text())

    # (shard, duplicate) -> K = shard_index * dup_factor + duplicate
    expected = [("train", 0, 0), ("train", 0, 1), ("train", 1, 0), ("train", 1, 1), ("test", 0, 0), ("test", 0, 1)]
    assert [(f.split, f.name, f.duplicate) for f in manifest.files] == [
        (s, formats.sample_file_name(s, i * 2 + d), d) for s, i, d in expected
    ]
    assert [f.source_shard for f in manifest.files] == [
        formats.shard_file_name(s, i, 2 if s == "train" else 1) for s, i, _ in expected
    ]
    on_disk = formats.read_manifest(out, check="sha256")
    assert on_disk.to_dict() == manifest.to_dict()
    assert manifest.prepare == info
    assert manifest.settings["dup_factor"] == 2 and manifest.max_seq_length == 128 and not manifest.nsp
    assert manifest.vocab["sha256"] == info["vocab"]["sha256"]
    assert manifest.vocab["special_ids"] == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert (out / formats.VOCAB_FILE).read_bytes() == (prepared / formats.VOCAB_FILE).read_bytes()
    for split in ("train", "test"):
        files = manifest.files_of(split)
        assert manifest.totals[split] == {
            "files": len(files),
            "samples": sum(f.rows for f in files),
            "bytes": sum(f.bytes for f in files),
            "real_tokens": manifest.totals[split]["real_tokens"],
        }
        stats = manifest.stats[split]
        assert stats["samples"] == manifest.totals[split]["samples"]
        assert abs(stats["mask_fraction"] - 0.8) < 0.05 and 0 < stats["short_fraction"] < 1
    assert check_folder(ValidateConfig(out)).problems == []

    with h5py.File(out / "train_shard_0.hdf5", "r") as f:
        rows = f["input_ids"].shape[0]
        for name, (dtype, _) in formats.SAMPLE_DATASETS.items():
            ds = f[name]
            assert ds.dtype == np.dtype(dtype) and ds.chunks[0] == min(formats.HDF5_CHUNK_ROWS, rows)
            assert ds.compression == "gzip" and ds.shuffle
        assert formats.NSP_DATASET[0] not in f
        first, second = (
            h5py.File(out / n, "r")["masked_lm_positions"][:] for n in ("train_shard_0.hdf5", "train_shard_1.hdf5")
        )
    assert not np.array_equal(first[: len(second)], second[: len(first)])  # duplicates carry other masks


def test_every_sample_is_text_of_its_shard(prepared, tmp_path):
    out = tmp_path / "samples"
    manifest = _run(prepared, out, dup_factor=1)
    import pyarrow.parquet as pq

    shard = pq.read_table(prepared / manifest.files[0].source_shard).column("sentences").to_pylist()
    documents = [np.concatenate([np.asarray(s, np.int32) for s in doc]).tobytes() for doc in shard]
    with h5py.File(out / manifest.files[0].name, "r") as f:
        ids, mask_, pos, lab = (f[k][:] for k in ("input_ids", "input_mask", "masked_lm_positions", "masked_lm_ids"))
    used = pos > 0
    ids[np.nonzero(used)[0], pos[used]] = lab[used]
    covered = 0
    for row, n in zip(ids, mask_.sum(axis=1)):
        text = row[1 : n - 1].tobytes()
        assert any(doc.find(text) % 4 == 0 for doc in documents if text in doc)
        covered += n - 2
    assert covered >= 0.9 * sum(len(d) for d in documents) / 4  # few tokens are lost to truncation


def test_same_bytes_whatever_the_number_of_workers(prepared, tmp_path):
    _run(prepared, tmp_path / "one", workers=1)
    _run(prepared, tmp_path / "two", workers=2)
    names = _hdf5_files(tmp_path / "one")
    assert names == _hdf5_files(tmp_path / "two") and len(names) == 6
    for name in names + [formats.MANIFEST_FILE]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    _run(prepared, tmp_path / "seed", seed=43)
    assert (tmp_path / "seed" / names[0]).read_bytes() != (tmp_path / "one" / names[0]).read_bytes()


def test_duplicates_of_a_shard_are_grouped_into_tasks():
    for shards, dup_factor, workers, expected_sizes in [
        (18, 5, 2, [5] * 18),  # enough shards: each task makes every duplicate of its shard
        (6, 4, 2, [2] * 12),  # too few for 8 tasks per worker: duplicates are spread over tasks
        (2, 5, 4, [1] * 10),
        (2, 5, 1, [5] * 2),  # one worker: nothing to balance
    ]:
        tasks = [_Task("train", f"s{k}", k, d, f"f{k}.{d}") for k in range(shards) for d in range(dup_factor)]
        groups = _group_tasks(tasks, dup_factor, workers)
        assert [len(g) for g in groups] == expected_sizes
        assert [t for g in groups for t in g] == tasks
        assert all(len({t.shard_index for t in g}) == 1 for g in groups)


def test_same_bytes_when_each_task_makes_every_duplicate_of_its_shard(prepared, tmp_path, monkeypatch):
    _run(prepared, tmp_path / "one", workers=1, dup_factor=3)
    monkeypatch.setattr(mask_module, "TASKS_PER_WORKER", 1)  # whole shards per task, also with 2 workers
    _run(prepared, tmp_path / "two", workers=2, dup_factor=3)
    names = _hdf5_files(tmp_path / "one")
    assert names == _hdf5_files(tmp_path / "two") and len(names) == 9
    for name in names + [formats.MANIFEST_FILE]:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_resume_remakes_only_missing_or_changed_files(prepared, tmp_path):
    out = tmp_path / "samples"
    _run(prepared, out)
    original = {n: (out / n).read_bytes() for n in _hdf5_files(out)}
    manifest_bytes = (out / formats.MANIFEST_FILE).read_bytes()
    untouched = out / "train_shard_2.hdf5"
    stamp = untouched.stat().st_mtime_ns
    (out / "train_shard_0.hdf5").unlink()
    damaged = bytearray(original["test_shard_1.hdf5"])
    damaged[-100:] = bytes(100)
    (out / "test_shard_1.hdf5").write_bytes(damaged)
    stale = out / ".train_shard_1.hdf5.12345.part"
    stale.write_bytes(b"half a file")

    _run(prepared, out)
    assert {n: (out / n).read_bytes() for n in _hdf5_files(out)} == original
    assert (out / formats.MANIFEST_FILE).read_bytes() == manifest_bytes
    assert untouched.stat().st_mtime_ns == stamp
    assert not stale.exists()


def test_other_settings_are_refused_unless_overwrite(prepared, tmp_path):
    out = tmp_path / "samples"
    _run(prepared, out)
    with pytest.raises(
        DataError,
        match=rf"{re.escape(str(out))}: holds the output of a different mask run \(settings differ: dup_factor 2 -> 1\).*--overwrite",
    ):
        _run(prepared, out, dup_factor=1)
    assert formats.read_manifest(out).settings["dup_factor"] == 2  # the refused run changed nothing
    manifest = _run(prepared, out, dup_factor=1, overwrite=True)
    assert (
        _hdf5_files(out)
        == sorted(f.name for f in manifest.files)
        == [
            "test_shard_0.hdf5",
            "train_shard_0.hdf5",
            "train_shard_1.hdf5",
        ]
    )


def test_foreign_samples_are_refused(prepared, tmp_path):
    out = tmp_path / "samples"
    out.mkdir()
    (out / "train_shard_0.hdf5").write_bytes(b"someone else's file")
    with pytest.raises(
        DataError, match=rf"{re.escape(str(out))}: holds the output of a different mask run \(files of an unknown"
    ):
        _run(prepared, out)
    _run(prepared, out, overwrite=True)
    assert check_folder(ValidateConfig(out)).problems == []


def test_changed_files_are_caught_by_the_manifest(prepared, tmp_path, capsys):
    out = tmp_path / "samples"
    _run(prepared, out)
    path = out / "train_shard_1.hdf5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)
    formats.read_manifest(out, check="size")  # same size: only the hash tells
    with pytest.raises(DataError, match="train_shard_1.hdf5: sha256 differs"):
        formats.read_manifest(out, check="sha256")
    problems = check_folder(ValidateConfig(out)).problems
    assert any(p.file == "train_shard_1.hdf5" and "sha256 differs" in p.what for p in problems)

    assert main(["mask", "-q", "--validate-only", str(out), "--workers", "1"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("sharebert mask: error: ") and "problem" in last

    path.write_bytes(data[:-10])
    with pytest.raises(DataError, match="file changed after"):
        formats.read_manifest(out, check="size")


def test_wrong_vocab(prepared, tmp_path, capsys):
    out = tmp_path / "samples"
    _run(prepared, out)
    other = write_vocab(tmp_path / "other.txt", read_vocab(prepared / formats.VOCAB_FILE)[::-1])
    problems = check_folder(ValidateConfig(out, vocab=other)).problems
    assert [str(p) for p in problems] == [
        f"{other}: not the vocab the samples were made with (sha256 differs from manifest.json)"
    ]

    (prepared / formats.VOCAB_FILE).write_bytes(other.read_bytes())
    assert main(["mask", str(prepared), "-o", str(tmp_path / "again"), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vocab.txt: sha256 differs from prepare.json" in err[0]


def test_bad_prepared_folders(tmp_path, capsys):
    vocab = write_vocab(tmp_path / "vocab.txt")
    assert main(["mask", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "prepare.json: missing" in capsys.readouterr().err

    prepared = small_prepared_dir(tmp_path / "p", vocab, train_shards=1, test_shards=0)
    shard = prepared / formats.shard_file_name("train", 0, 1)
    shard.write_bytes(bytes(shard.stat().st_size))  # same size, not Parquet
    with pytest.raises(DataError, match=f"{shard}: cannot read the prepared shard"):
        _run(prepared, tmp_path / "out")

    bad_ids = write_prepared_dir(tmp_path / "q", vocab, {("train", 0): [[[10, 11, 5000]]]})
    with pytest.raises(DataError, match="token id 5000 is outside the vocab"):
        _run(bad_ids, tmp_path / "out2")
    specials = write_prepared_dir(tmp_path / "r", vocab, {("train", 0): [[[10, 3, 11]]]})
    with pytest.raises(DataError, match=r"token id 3 is a special token"):
        _run(specials, tmp_path / "out3")


def test_settings_are_checked():
    for bad, match in [
        (dict(max_seq_length=4), "max_seq_length"),
        (dict(max_predictions_per_seq=0), "max_predictions_per_seq"),
        (dict(masked_lm_prob=0.0), "masked_lm_prob"),
        (dict(short_seq_prob=1.5), "short_seq_prob"),
        (dict(dup_factor=0), "dup_factor"),
        (dict(gzip_level=10), "gzip_level"),
        (dict(workers=0), "workers"),
    ]:
        with pytest.raises(ConfigError, match=match):
            MaskConfig("a", "b", **bad)
    with pytest.raises(ConfigError, match="must differ"):
        MaskConfig("a", "a")


def test_nsp_whole_word_and_empty_shards(tmp_path):
    vocab = write_vocab(tmp_path / "vocab.txt")
    rng = np.random.default_rng(0)
    from mask_fixtures import random_documents

    from sharebert.tokenization import replacement_token_ids

    ids = replacement_token_ids(read_vocab(vocab))
    prepared = write_prepared_dir(
        tmp_path / "p",
        vocab,
        {("train", 0): random_documents(rng, 25, ids), ("train", 1): [], ("test", 0): random_documents(rng, 5, ids)},
    )
    out = tmp_path / "samples"
    manifest = _run(prepared, out, nsp=True, whole_word_masking=True, max_seq_length=48, max_predictions_per_seq=8)
    assert manifest.nsp and manifest.settings["whole_word_masking"]
    assert [f.rows for f in manifest.files_of("train")][2:] == [0, 0]  # the empty shard
    assert check_folder(ValidateConfig(out)).problems == []
    with h5py.File(out / "train_shard_0.hdf5", "r") as f:
        labels = f[formats.NSP_DATASET[0]][:]
        assert labels.dtype == np.int8 and set(labels.tolist()) == {0, 1}
        assert f["input_ids"].shape[1] == 48


def test_reference_folder_without_manifest(tmp_path, capsys):
    """A folder of *.hdf5 as the reference pipeline leaves it is checked against --vocab and settings."""
    vocab = write_vocab(tmp_path / "vocab.txt")
    made = tmp_path / "made"
    _run(small_prepared_dir(tmp_path / "p", vocab), made, dup_factor=1)
    reference = tmp_path / "reference"
    reference.mkdir()
    for name in _hdf5_files(made):
        os.link(made / name, reference / name)

    assert main(["mask", "-q", "--validate-only", str(reference)]) == 2
    assert "give the vocab" in capsys.readouterr().err
    assert main(["mask", "-q", "--validate-only", str(reference), "--vocab", str(vocab), "--workers", "1"]) == 0
    assert main(["mask", "-q", "--validate-only", str(reference), "--vocab", str(vocab), "--max-seq-length", "64"]) == 2
    assert (
        main(["mask", "-q", "--validate-only", str(reference), "--vocab", str(vocab), "--masked-lm-prob", "0.3"]) == 2
    )


def test_cli_round_trip(prepared, tmp_path, capsys):
    out = tmp_path / "samples"
    argv = ["mask", str(prepared), "-o", str(out), "--dup-factor", "1", "--seed", "7", "--workers", "1", "-q"]
    assert main(argv) == 0
    manifest = formats.read_manifest(out)
    assert manifest.settings["seed"] == 7 and manifest.settings["dup_factor"] == 1
    assert main(argv) == 0  # resumes: nothing to do
    assert main(["mask", "--validate-only", str(out), "-q"]) == 0
    assert main(["mask", "--validate-only", str(out), "--dup-factor", "2"]) == 2
    assert main(["mask", str(prepared)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "sharebert mask: error: -o SAMPLES_DIR is required"


def test_round_trip_from_wikipedia(wiki_dump, wiki_vocab, tmp_path):
    """enwiki-style dump -> sharebert prepare -> sharebert mask -> --validate-only."""
    prepared = tmp_path / "prepared"
    assert main(["prepare", "--wiki", str(wiki_dump.path), "--vocab", str(wiki_vocab), "-o", str(prepared), "-q"]) == 0
    out = tmp_path / "samples"
    assert main(["mask", str(prepared), "-o", str(out), "--dup-factor", "2", "--workers", "2", "-q"]) == 0
    assert main(["mask", "--validate-only", str(out), "-q"]) == 0
    manifest = formats.read_manifest(out, check="sha256")
    stats = manifest.stats["train"]
    train_documents = formats.read_prepare_info(prepared)["totals"]["train"]["documents"]
    assert stats["samples"] >= 2 * train_documents  # each document, in each duplicate, gives samples
    assert stats["mean_real_tokens"] > 0.7 * manifest.settings["max_seq_length"]  # sequences are filled
    assert abs(stats["mask_fraction"] - 0.8) < 0.02 and abs(stats["random_fraction"] - 0.1) < 0.02
    assert abs(stats["mean_masked"] - 0.15 * stats["mean_real_tokens"]) < 1.0


def test_shards_are_read_whatever_their_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mask_fixtures import random_documents

    from sharebert.pipeline.mask.instances import ShardTokens
    from sharebert.pipeline.mask.stage import read_shard_tokens
    from sharebert.tokenization import replacement_token_ids, special_ids

    vocab = read_vocab(write_vocab(tmp_path / "vocab.txt"))
    docs = random_documents(np.random.default_rng(1), 20, replacement_token_ids(vocab))
    table = pa.Table.from_pydict(
        {"id": [str(i) for i in range(20)], "source": ["t"] * 20, "sentences": docs},
        schema=formats.parquet_schema(False),
    )
    path = tmp_path / "shard.parquet"
    pq.write_table(table, path, row_group_size=3)
    got = read_shard_tokens(path, len(vocab), special_ids(vocab))
    want = ShardTokens.from_documents(docs)
    for name in ("tokens", "sentence_starts", "document_starts"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
