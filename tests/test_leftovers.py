"""What a killed run leaves is removed by the next one; an interrupted mask folder is not called valid;
exported files get the mode of new files."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mask_fixtures import small_prepared_dir, write_vocab
from test_pipeline_run_folder import IDENTITY, TOLD

from sharebert.cli import main
from sharebert.errors import DataError
from sharebert.fileio import remove_stale_folders
from sharebert.pipeline import formats
from sharebert.pipeline.mask.stage import MaskConfig, mask
from sharebert.pipeline.run_folder import Claim, RunFolder
from sharebert.trainer.model.modeling import ShareBertConfig, ShareBertForMaskedLM
from sharebert.trainer.pretrain import checkpoint as checkpoint_module
from sharebert.trainer.pretrain.checkpoint import Checkpoints
from sharebert.trainer.pretrain.preflight import write_model_folder


def test_a_complete_run_removes_a_work_folder_left_by_a_kill_after_its_finished_file(tmp_path):
    folder = RunFolder(tmp_path, TOLD)
    folder.claim(IDENTITY, resume_key={"mtime": 1})
    (folder.work / "spill-0.arrow").write_bytes(b"x" * 100)  # killed before remove_work()
    (tmp_path / ".0.unit.123.part").write_text("x")
    (tmp_path / "finished.json").write_text(json.dumps({"identity": IDENTITY}))
    assert folder.claim(IDENTITY, resume_key={"mtime": 1}) is Claim.COMPLETE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finished.json"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_exports_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    dead, alive = _dead_pid(), os.getpid()
    for name in (f".model.partial-{dead}", f".model.old-{dead}", f".model.partial-{alive}", ".modelx.partial-1"):
        (tmp_path / name).mkdir()
    remove_stale_folders(model)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.partial-" + str(alive), ".modelx.partial-1", "model"]


def test_an_old_model_folder_comes_back_when_the_export_died_before_replacing_it(tmp_path):
    old = tmp_path / f".model.old-{_dead_pid()}"
    old.mkdir()
    (old / "config.json").write_text("{}")
    remove_stale_folders(tmp_path / "model")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (tmp_path / "model" / "config.json").exists()


def test_an_exported_model_folder_has_the_modes_of_new_files_and_no_leftovers(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text(
        "".join(f"{t}\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        + "".join(f"w{i}\n" for i in range(995))
    )
    config = ShareBertConfig.from_preset("tiny", vocab_size=1000)
    (tmp_path / f".model.partial-{_dead_pid()}").mkdir()
    old = os.umask(0o022)
    try:
        write_model_folder(ShareBertForMaskedLM(config, seed=0), config, tmp_path / "model", vocab)
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "model").iterdir()}
    assert set(modes.values()) == {oct(0o644)}, modes  # model.safetensors was 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "vocab.txt"]


def test_validate_only_calls_an_interrupted_mask_folder_incomplete(tmp_path, capsys):
    vocab = write_vocab(tmp_path / "vocab.txt")
    prepared = small_prepared_dir(tmp_path / "prepared", vocab)
    out = tmp_path / "samples"
    mask(MaskConfig(prepared, out, dup_factor=2, workers=1))
    (out / formats.MANIFEST_FILE).unlink()  # as if killed before the manifest
    (out / "train_shard_3.hdf5").unlink()
    assert main(["mask", "-q", "--validate-only", str(out), "--vocab", str(vocab), "--workers", "1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sharebert mask: error: {out}: incomplete"), lines
    assert "no manifest.json" in lines[0] and "rerun" in lines[0]


class _Engine:
    """What Checkpoints needs of a TrainingEngine: one rank, and a save that fails as the disk fills."""

    env = SimpleNamespace(rank=0, local_rank=0, world_size=1)

    def barrier(self):
        pass

    def save(self, folder, tag, client_state):
        (Path(folder) / tag).mkdir(parents=True)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("sharebert.fileio.free_bytes", lambda folder: 0)  # torch.save does not say why it failed
    with pytest.raises(DataError, match=f"^{tmp_path}: no space left on device"):
        Checkpoints(tmp_path, _Engine(), keep=2).save(5, {}, {"rng": torch.zeros(1)})
    assert not (tmp_path / checkpoint_module.LATEST_FILE).exists()


def test_a_full_disk_while_saving_a_rank_file_is_one_line(tmp_path, monkeypatch):
    engine = _Engine()
    engine.save = lambda folder, tag, state: None

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DataError, match="no space left on device"):
        Checkpoints(tmp_path, engine, keep=2).save(5, {}, {})
    assert [p.name for p in (tmp_path / "step00000005").iterdir()] == []


def test_a_full_disk_while_exporting_is_one_line_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    from sharebert.trainer.model import modeling

    def full(model, folder, vocab_file, **options):
        Path(folder).mkdir()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(modeling, "save_model_folder", full)
    config = ShareBertConfig.from_preset("tiny", vocab_size=1000)
    with pytest.raises(DataError, match=f"^{tmp_path}: no space left on device"):
        write_model_folder(ShareBertForMaskedLM(config, seed=0), config, tmp_path / "model", tmp_path / "vocab.txt")
    assert list(tmp_path.iterdir()) == []
