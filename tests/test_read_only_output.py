"""An output folder this process may not write in: one line naming the folder, exit status 2 (run_folder.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from launcher_env import run_sharebert
from mask_fixtures import small_prepared_dir, write_vocab


@contextlib.contextmanager
def read_only_disk(folder: Path):
    """An empty, existing folder on a read-only filesystem (a tmpfs remounted read-only; needs root)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a read-only tmpfs needs root on Linux")
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _one_line_unwritable(run: subprocess.CompletedProcess, stage: str, folder: Path) -> None:
    assert run.returncode == 2, run.stderr  # before the fix: 1, an OSError traceback
    assert (
        run.stderr.strip() == f"sharebert {stage}: error: {folder}: cannot write in the folder (Read-only file system)"
    )


def test_prepare_into_a_folder_on_a_read_only_filesystem_is_one_line(tmp_path):
    with read_only_disk(tmp_path / "disk") as out:
        _one_line_unwritable(run_sharebert("prepare", "-o", out), "prepare", out)


def test_mask_into_a_folder_on_a_read_only_filesystem_is_one_line(tmp_path):
    prepared = small_prepared_dir(tmp_path / "prepared", write_vocab(tmp_path / "vocab.txt"), train_shards=1, docs=20)
    with read_only_disk(tmp_path / "disk") as out:
        _one_line_unwritable(run_sharebert("mask", prepared, "-o", out), "mask", out)
