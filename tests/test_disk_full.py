"""A full disk: one line naming the folder, exit status 2, and a rerun with space resumes (fileio.py)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from launcher_env import run_sharebert
from mask_fixtures import small_prepared_dir, write_vocab

from sharebert.errors import DataError
from sharebert.fileio import (
    DiskFullError,
    atomic_path,
    disk_full_as_error,
    format_size,
    is_disk_full,
    space_needed,
    write_bytes_atomic,
)
from sharebert.pipeline import formats
from sharebert.pipeline.run_folder import UnitRecords

HDF5_FULL = RuntimeError(
    "Can't decrement id ref count (file write failed: time = now, filename = '/x/.a.hdf5.1.part', "
    "file descriptor = 3, errno = 28, error message = 'No space left on device')"
)


def _raise_disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_in_an_atomic_write_is_one_line_naming_the_folder(tmp_path):
    target = tmp_path / "out" / "file.bin"
    target.parent.mkdir()
    with pytest.raises(DataError) as caught, atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        _raise_disk_full()
    assert str(caught.value).startswith(f"{target.parent}: no space left on device")
    assert "\n" not in str(caught.value)
    assert list(target.parent.iterdir()) == []  # the temporary file is gone


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(ValueError, match="a bug"), atomic_path(tmp_path / "file.bin"):
        raise ValueError("a bug")
    with pytest.raises(DataError, match="bad input"), disk_full_as_error(tmp_path):
        raise DataError("bad input")


def test_disk_full_is_recognized_however_a_library_words_it(tmp_path):
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(HDF5_FULL)
    assert is_disk_full(Exception("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert not is_disk_full(RuntimeError("unexpected pos 576 vs 534"), tmp_path)  # tmp_path has space
    assert not is_disk_full(DataError("no space left on device"))  # already one line


def test_a_write_failing_without_a_reason_counts_as_disk_full_when_the_folder_has_no_space(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10 << 20, 10 << 20, 4096))
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"), tmp_path)


def test_a_full_disk_while_writing_a_record_is_one_line(tmp_path, monkeypatch):
    records = UnitRecords(tmp_path)
    monkeypatch.setattr(Path, "write_text", _raise_disk_full)
    with pytest.raises(DataError, match="no space left on device"):
        records.write("a.unit", {"done": True})
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_says_how_much_the_run_still_has_to_write(tmp_path):
    inner = tmp_path / ".work"
    inner.mkdir()
    with pytest.raises(DiskFullError) as caught, space_needed(tmp_path, lambda: 2_500_000):
        write_bytes_atomic_failing(inner / "file.bin")
    assert (
        caught.value.folder == tmp_path and caught.value.needed == 2_500_000
    )  # the stage's folder, not its work folder
    assert "this run still has to write about 2.5 MB there (" in str(caught.value)
    with pytest.raises(DiskFullError) as caught, space_needed(tmp_path, lambda: 7):
        _raise_disk_full()  # a library's own error, not yet one line
    assert str(caught.value).startswith(f"{tmp_path}: no space left on device; this run still has to write about 7 B")


def test_an_estimate_that_fails_leaves_the_plain_message(tmp_path):
    with pytest.raises(DiskFullError) as caught, space_needed(tmp_path, lambda: 1 // 0):
        _raise_disk_full()
    assert (
        str(caught.value)
        == f"{tmp_path}: no space left on device; free some space and rerun the same command to resume"
    )


def test_a_full_disk_elsewhere_gets_no_estimate_of_this_folder(tmp_path):
    with pytest.raises(DiskFullError) as caught, space_needed(tmp_path / "a", lambda: 5):
        raise DiskFullError(tmp_path / "b")
    assert caught.value.needed is None


def test_a_full_disk_error_survives_the_trip_from_a_worker():
    import pickle

    error = pickle.loads(pickle.dumps(DiskFullError("/x", 10)))
    assert (error.folder, error.needed) == (Path("/x"), 10)


def test_sizes_read_as_df_shows_them():
    assert [format_size(n) for n in (0, 999, 1536, 2_500_000, 3 * 10**12, 4 * 10**15)] == [
        "0 B", "999 B", "1.5 KB", "2.5 MB", "3.0 TB", "4000.0 TB"
    ]  # fmt: skip


def write_bytes_atomic_failing(path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        _raise_disk_full()


def test_atomic_writes_get_the_mode_of_a_new_file(tmp_path):
    old = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "plain", b"x")
        with atomic_path(tmp_path / "private") as tmp:  # a writer that creates its file 0600 (as safetensors)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600))
    finally:
        os.umask(old)
    assert oct((tmp_path / "plain").stat().st_mode & 0o777) == oct(0o640)
    assert oct((tmp_path / "private").stat().st_mode & 0o777) == oct(0o640)


# ---------------------------------------------------------------- a real full disk (a small tmpfs, as root)
@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _one_line_disk_full(run: subprocess.CompletedProcess, stage: str, folder: Path) -> None:
    assert run.returncode == 2, run.stderr  # before the fix: -11 (SIGSEGV) in mask, 1 (traceback) in prepare
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"sharebert {stage}: error: {folder}: no space left on device")
    assert re.search(r"this run still has to write about [\d.]+ [KMG]?B there \([\d.]+ [KMG]?B free now\)", lines[0])


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# The sizes make the disk fill at different moments: while a file is written (200k, 400k: HDF5 fails in
# close(), which crashed the process) or between files.
@pytest.mark.parametrize("size, workers", [("200k", 1), ("256k", 1), ("400k", 1), ("256k", 2)])
def test_mask_on_a_full_disk_says_so_and_a_rerun_with_space_resumes(tmp_path, size, workers):
    vocab = write_vocab(tmp_path / "vocab.txt")
    prepared = small_prepared_dir(tmp_path / "prepared", vocab, train_shards=3, docs=100)
    args = ["--dup-factor", 3, "--workers", workers]
    assert run_sharebert("mask", prepared, "-o", tmp_path / "reference", *args).returncode == 0
    with small_disk(tmp_path / "disk", size) as disk:
        out = disk / "samples"
        _one_line_disk_full(run_sharebert("mask", prepared, "-o", out, *args), "mask", out)
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        rerun = run_sharebert("mask", prepared, "-o", out, *args)
        assert rerun.returncode == 0, rerun.stderr
        assert _contents(out) == _contents(tmp_path / "reference")
        assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [formats.MASK_STATE_DIR]


def test_prepare_on_a_full_disk_says_so_and_a_rerun_with_space_resumes(tmp_path):
    args = ["--num-train-shards", 4, "--workers", 2]
    assert run_sharebert("prepare", "-o", tmp_path / "reference", *args).returncode == 0
    with small_disk(tmp_path / "disk", "300k") as disk:
        out = disk / "prepared"
        _one_line_disk_full(run_sharebert("prepare", "-o", out, *args), "prepare", out)
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        rerun = run_sharebert("prepare", "-o", out, *args)
        assert rerun.returncode == 0, rerun.stderr
        assert _contents(out) == _contents(tmp_path / "reference")
        assert sorted(p.name for p in out.iterdir()) == sorted(_contents(out))  # no work folder, no temp files


def test_pretrain_on_a_full_disk_says_so_and_resumes_to_the_same_model(tmp_path):
    from samples_fixture import write_samples

    samples = write_samples(tmp_path / "samples", [64, 40], [32])
    args = ["--dataset_path", samples, "--preset", "tiny", "--train_batch_size", 16]
    args += ["--train_micro_batch_size_per_gpu", 8, "--max_steps", 3, "--checkpoint_steps", 1]
    reference = tmp_path / "reference"
    assert run_sharebert("pretrain", *args, "--output_dir", reference).returncode == 0
    with small_disk(tmp_path / "disk", "2m") as disk:  # full while saving the second checkpoint
        run = disk / "run"
        _one_line_disk_full(run_sharebert("pretrain", *args, "--output_dir", run), "pretrain", run / "checkpoints")
        subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
        resumed = run_sharebert("pretrain", *args, "--output_dir", run, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert _contents(run / "model") == _contents(reference / "model")
