"""What prepare.json, manifest.json and the files they list may hold: listed files stay inside their folder,
fields have their types, a shard has the Parquet schema of prepare, sample token ids fit the model's vocab.
Each bad input gives one line naming the file, exit status 2 (driven through the real CLI)."""

from __future__ import annotations

import json
import shutil

import h5py
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mask_fixtures import small_prepared_dir, write_vocab
from samples_fixture import pretrain_argv, write_samples

from sharebert.cli import main
from sharebert.fileio import sha256_file
from sharebert.pipeline import formats

TINY = "--preset tiny --train_batch_size 16 --train_micro_batch_size_per_gpu 8 --max_steps 3"


def _edit_json(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _one_error_line(capsys, stage: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"sharebert {stage}: error: "), err
    return err


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    """A complete `sharebert mask` output (made once; each test works on a copy)."""
    root = tmp_path_factory.mktemp("masked")
    prepared = small_prepared_dir(root / "prepared", write_vocab(root / "vocab.txt"), train_shards=2, test_shards=1)
    out = root / "samples"
    assert main(["mask", str(prepared), "-o", str(out), "--dup-factor", "1", "--workers", "1", "-q"]) == 0
    return out


@pytest.fixture
def samples(masked, tmp_path):
    return shutil.copytree(masked, tmp_path / "samples")


@pytest.fixture
def prepared(tmp_path):
    return small_prepared_dir(tmp_path / "prepared", write_vocab(tmp_path / "vocab.txt"), train_shards=1, test_shards=0)


def _validate(folder) -> int:
    return main(["mask", "-q", "--validate-only", str(folder), "--workers", "1"])


def _mask(prepared, tmp_path) -> int:
    return main(["mask", str(prepared), "-o", str(tmp_path / "out"), "--workers", "1", "-q"])


def _list_elsewhere(samples, tmp_path, spelling) -> str:
    """Move the first listed sample file out of the folder and list it as `spelling(outside_path)`."""
    manifest = formats.read_manifest(samples, check="none")
    name = manifest.files[0].name
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir()
    (samples / name).rename(outside)
    entry = spelling(outside)
    _edit_json(samples / formats.MANIFEST_FILE, lambda m: m["files"][0].update(name=entry))
    return entry


# ------------------------------------------------------------------------------- listed files stay inside
@pytest.mark.parametrize(
    "spelling", [str, lambda outside: f"../{outside.parent.name}/{outside.name}"], ids=["absolute", "dotdot"]
)
def test_manifest_entries_outside_the_folder_are_refused(samples, tmp_path, capsys, spelling):
    entry = _list_elsewhere(samples, tmp_path, spelling)
    assert _validate(samples) == 2
    err = _one_error_line(capsys, "mask")
    assert f"{samples / formats.MANIFEST_FILE}: lists {entry!r}" in err
    assert "listed files must be plain file names in the folder" in err


def test_a_listed_symlink_out_of_the_folder_is_refused(samples, tmp_path, capsys):
    name = formats.read_manifest(samples, check="none").files[0].name
    outside = tmp_path / name
    (samples / name).rename(outside)
    (samples / name).symlink_to(outside)
    assert _validate(samples) == 2
    err = _one_error_line(capsys, "mask")
    assert f"{samples / formats.MANIFEST_FILE}: lists {name!r}, which leads to {outside}, outside the folder" in err


def test_a_symlink_inside_the_folder_is_followed(samples):
    name = formats.read_manifest(samples, check="none").files[0].name
    (samples / name).rename(samples / "kept.bin")
    (samples / name).symlink_to("kept.bin")
    assert _validate(samples) == 0


def test_pretrain_refuses_a_manifest_entry_outside_the_folder(tmp_path, capsys):
    samples = write_samples(tmp_path / "samples", [64, 40], [32])
    entry = _list_elsewhere(samples, tmp_path, str)
    assert main(pretrain_argv(samples, tmp_path / "run", TINY)) == 2
    assert f"manifest.json: lists {entry!r}, which is an absolute path" in _one_error_line(capsys, "pretrain")
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.parametrize("entry", ["/etc/hostname", "../other.parquet", "sub/x.parquet", ""])
def test_prepare_json_entries_outside_the_folder_are_refused(prepared, tmp_path, capsys, entry):
    _edit_json(prepared / formats.PREPARE_INFO_FILE, lambda info: info["shards"][0].update(file=entry))
    assert _mask(prepared, tmp_path) == 2
    assert f"{prepared / formats.PREPARE_INFO_FILE}: lists {entry!r}, which " in _one_error_line(capsys, "mask")


# ------------------------------------------------------------------------------- fields have their types
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda info: info.update(shards={"file": "x"}), 'field shards must be a JSON list, not {"file": "x"}'),
        (lambda info: info.update(shards="train"), 'field shards must be a JSON list, not "train"'),
        (lambda info: info["shards"].append(3), "field shards[1] must be a JSON object, not 3"),
        (lambda info: info["shards"][0].update(bytes="12"), 'field shards[0].bytes must be an integer >= 0, not "12"'),
        (lambda info: info["shards"][0].update(split="dev"), "field shards[0].split must be one of 'train', 'test'"),
        (lambda info: info["shards"][0].pop("file"), "field shards[0].file is missing"),
        (lambda info: info["vocab"].update(lowercase="yes"), 'field vocab.lowercase must be true or false, not "yes"'),
    ],
)
def test_prepare_json_fields_of_the_wrong_type_are_refused(prepared, tmp_path, capsys, change, message):
    _edit_json(prepared / formats.PREPARE_INFO_FILE, change)
    assert _mask(prepared, tmp_path) == 2
    assert f"{prepared / formats.PREPARE_INFO_FILE}: {message}" in _one_error_line(capsys, "mask")


MANIFEST_TYPE_ERRORS = [
    (
        lambda m: m["settings"].update(max_seq_length="abc"),
        'field settings.max_seq_length must be an integer >= 1, not "abc"',
    ),
    (lambda m: m["settings"].update(nsp="no"), 'field settings.nsp must be true or false, not "no"'),
    (lambda m: m["settings"].update(masked_lm_prob=True), "field settings.masked_lm_prob must be a number, not true"),
    (lambda m: m["vocab"].update(size=None), "field vocab.size is null"),
    (lambda m: m["vocab"]["special_ids"].update(pad=-1), "field vocab.special_ids.pad must be an integer >= 0, not -1"),
    (lambda m: m["files"][0].update(rows="10"), 'field files[0].rows must be an integer >= 0, not "10"'),
    (lambda m: m["files"][0].update(name=["a"]), 'field files[0].name must be a string, not ["a"]'),
    (lambda m: m.update(files={}), "field files must be a JSON list, not {}"),
]


@pytest.mark.parametrize("change, message", MANIFEST_TYPE_ERRORS)
def test_manifest_fields_of_the_wrong_type_are_refused_by_validate(samples, capsys, change, message):
    _edit_json(samples / formats.MANIFEST_FILE, change)
    assert _validate(samples) == 2
    assert f"{samples / formats.MANIFEST_FILE}: {message}" in _one_error_line(capsys, "mask")


@pytest.mark.parametrize("change, message", MANIFEST_TYPE_ERRORS[:2])
def test_manifest_fields_of_the_wrong_type_are_refused_by_pretrain(tmp_path, capsys, change, message):
    samples = write_samples(tmp_path / "samples", [64, 40], [32])
    _edit_json(samples / formats.MANIFEST_FILE, change)
    assert main(pretrain_argv(samples, tmp_path / "run", TINY)) == 2
    assert f"{samples / formats.MANIFEST_FILE}: {message}" in _one_error_line(capsys, "pretrain")


# ------------------------------------------------------------------------------- a shard of another schema
@pytest.mark.parametrize(
    "table, message",
    [
        (pa.table({"x": [1, 2]}), "has no column 'sentences': not a shard of `sharebert prepare`"),
        (
            pa.table({"sentences": [["a b"], ["c"]]}),
            "column sentences has type list<element: string>, expected list<item: list<item: int32>>",
        ),
    ],
)
def test_a_shard_of_another_schema_is_refused(prepared, tmp_path, capsys, table, message):
    info = json.loads((prepared / formats.PREPARE_INFO_FILE).read_text())
    shard = prepared / info["shards"][0]["file"]
    pq.write_table(table, shard)
    _edit_json(prepared / formats.PREPARE_INFO_FILE, lambda i: i["shards"][0].update(bytes=shard.stat().st_size))
    assert _mask(prepared, tmp_path) == 2
    assert f"{shard}: {message}" in _one_error_line(capsys, "mask")


# ------------------------------------------------------------------------------- token ids fit the vocab
def _put_token_id(samples, name: str, dataset: str, row: int, value: int) -> None:
    """Write one token id into a sample file and make the manifest match the changed file."""
    path = samples / name
    with h5py.File(path, "r+") as h:
        h[dataset][row, 1] = value
    _edit_json(
        samples / formats.MANIFEST_FILE,
        lambda m: [
            f.update(bytes=path.stat().st_size, sha256=sha256_file(path)) for f in m["files"] if f["name"] == name
        ],
    )


@pytest.mark.parametrize(
    "dataset, value",
    [("input_ids", 5000), ("input_ids", -3), ("masked_lm_ids", 1024)],
    ids=["high", "negative", "label"],
)
def test_pretrain_refuses_token_ids_outside_the_vocab(tmp_path, capsys, dataset, value):
    samples = write_samples(tmp_path / "samples", [64, 40], [32])
    _put_token_id(samples, "train_shard_1.hdf5", dataset, 7, value)
    assert main(pretrain_argv(samples, tmp_path / "run", TINY)) == 2
    err = _one_error_line(capsys, "pretrain")
    expected = (
        f"{samples / 'train_shard_1.hdf5'}: rows 0-40: {dataset} holds token ids outside the model's vocab "
        f"(1024 tokens) (first: {value} in row 7)"
    )
    assert expected in err
    assert not (tmp_path / "run" / "model").exists()


def test_pretrain_refuses_a_manifest_vocab_size_other_than_the_vocab_files(tmp_path, capsys):
    samples = write_samples(tmp_path / "samples", [64, 40], [32])
    _edit_json(samples / formats.MANIFEST_FILE, lambda m: m["vocab"].update(size=40000))
    assert main(pretrain_argv(samples, tmp_path / "run", TINY)) == 2
    err = _one_error_line(capsys, "pretrain")
    assert f"{samples / formats.VOCAB_FILE}: 1024 tokens but manifest.json says 40000" in err
