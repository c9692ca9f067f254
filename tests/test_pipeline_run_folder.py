"""RunFolder (pipeline/run_folder.py): claiming a stage's output folder, resuming, refusing, --overwrite, records."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from sharebert.errors import DataError
from sharebert.pipeline import formats
from sharebert.pipeline.mask.stage import MaskConfig
from sharebert.pipeline.mask.validate import ValidateConfig
from sharebert.pipeline.parallel import default_workers
from sharebert.pipeline.prepare.config import PrepareConfig
from sharebert.pipeline.run_folder import Claim, Layout, RunFolder, UnitRecords, describe_difference

# A stage that leaves its run file after finishing (as mask does) and one whose finished file tells (as prepare).
KEPT = Layout(
    stage="demo",
    work_dir=".demo-state",
    run_file="run.json",
    records_dir="done",
    finished_file="finished.json",
    is_unit_file=lambda name: name.endswith(".unit"),
    side_files=("vocab.txt",),
    differences={"data_sha256": "data differs"},
)
TOLD = dataclasses.replace(KEPT, finished_identity=lambda finished: finished["identity"])
IDENTITY = {"settings": {"seed": 1, "size": 4}, "data_sha256": "aa"}


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_new_folder_is_claimed_fresh(tmp_path):
    folder = RunFolder(tmp_path / "a" / "out", KEPT)
    assert folder.claim(IDENTITY) is Claim.FRESH
    assert json.loads((folder.work / "run.json").read_text()) == IDENTITY
    assert folder.records.folder.is_dir()


def test_the_same_run_resumes_with_its_records_and_without_temporary_files(tmp_path):
    folder = RunFolder(tmp_path, KEPT)
    folder.claim(IDENTITY)
    (tmp_path / "0.unit").write_text("made")
    folder.records.write("0.unit", {"bytes": 4})
    (tmp_path / "finished.json").write_text("{}")
    stale = [tmp_path / ".1.unit.77.part", folder.records.folder / ".1.unit.json.77.part"]
    for path in stale:
        path.write_text("half")

    assert folder.claim(IDENTITY) is Claim.RESUME  # a finished file that does not tell: the run file does
    assert folder.records.read("0.unit") == {"bytes": 4} and (tmp_path / "0.unit").exists()
    assert not any(path.exists() for path in stale)
    assert not (tmp_path / "finished.json").exists()  # written again when the run ends


def test_another_run_is_refused_in_one_line_and_overwrite_removes_only_the_stage_outputs(tmp_path):
    folder = RunFolder(tmp_path, KEPT)
    folder.claim(IDENTITY)
    for name in ("0.unit", "vocab.txt", "finished.json", "notes.md", "given.txt"):
        (tmp_path / name).write_text("x")
    other = {"settings": {"seed": 2, "size": 4, "new": True}, "data_sha256": "bb"}
    expected = (
        f"{tmp_path}: holds the output of a different demo run (settings differ: new None -> True, seed 1 -> 2; "
        "data differs); use --overwrite to replace it, or choose another folder"
    )
    with pytest.raises(DataError, match=f"^{re.escape(expected)}$"):
        folder.claim(other)
    assert json.loads((folder.work / "run.json").read_text()) == IDENTITY  # the refused run changed nothing

    assert folder.claim(other, overwrite=True) is Claim.FRESH
    assert _files(tmp_path) == [".demo-state", ".demo-state/done", ".demo-state/run.json", "given.txt", "notes.md"]
    assert json.loads((folder.work / "run.json").read_text()) == other


def test_overwrite_keeps_the_given_file(tmp_path):
    folder = RunFolder(tmp_path, KEPT)
    (tmp_path / "0.unit").write_text("x")
    (tmp_path / "vocab.txt").write_text("mine")
    assert folder.claim(IDENTITY, overwrite=True, keep=tmp_path / "vocab.txt") is Claim.FRESH
    assert _files(tmp_path) == [".demo-state", ".demo-state/done", ".demo-state/run.json", "vocab.txt"]


def test_outputs_without_a_run_file_are_refused_but_a_lone_side_file_is_not(tmp_path):
    units, work, side = (RunFolder(tmp_path / name, KEPT) for name in ("units", "work", "side"))
    (units.path / "0.unit").parent.mkdir()
    (units.path / "0.unit").write_text("x")
    work.work.mkdir(parents=True)  # a work folder without its run file
    for folder in (units, work):
        with pytest.raises(DataError, match=r"different demo run \(files of an unknown or unfinished run\)"):
            folder.claim(IDENTITY)
    side.path.mkdir()
    (side.path / "vocab.txt").write_text("a --vocab given from inside the folder")
    assert side.claim(IDENTITY) is Claim.FRESH and (side.path / "vocab.txt").exists()


def test_a_finished_file_that_tells_makes_the_same_run_complete(tmp_path):
    folder = RunFolder(tmp_path, TOLD)
    folder.claim(IDENTITY, resume_key={"mtime": 1})
    (tmp_path / "0.unit").write_text("x")
    (tmp_path / "finished.json").write_text(json.dumps({"identity": IDENTITY}))
    folder.remove_work()
    assert folder.claim(IDENTITY, resume_key={"mtime": 2}) is Claim.COMPLETE
    assert _files(tmp_path) == ["0.unit", "finished.json"]  # untouched
    assert folder.claim(IDENTITY, overwrite=True) is Claim.FRESH
    assert not (tmp_path / "0.unit").exists() and not (tmp_path / "finished.json").exists()


def test_an_unfinished_run_with_another_resume_key_starts_over(tmp_path):
    folder = RunFolder(tmp_path, TOLD)
    folder.claim(IDENTITY, resume_key={"mtime": 1, "batch": 8})
    (tmp_path / "0.unit").write_text("x")
    folder.records.write("0.unit", {"bytes": 1})
    assert json.loads((folder.work / "run.json").read_text()) == {
        "identity": IDENTITY,
        "resume_key": {"mtime": 1, "batch": 8},
    }
    assert folder.claim(IDENTITY, resume_key={"mtime": 1, "batch": 8}) is Claim.RESUME
    assert folder.claim(IDENTITY, resume_key={"mtime": 2, "batch": 8}) is Claim.FRESH
    assert not (tmp_path / "0.unit").exists() and folder.records.read("0.unit") is None
    assert json.loads((folder.work / "run.json").read_text())["resume_key"] == {"mtime": 2, "batch": 8}


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / 'out'))}: exists and is not a folder$"):
        RunFolder(tmp_path / "out", KEPT).claim(IDENTITY)


def test_records_missing_or_damaged_read_as_none(tmp_path):
    records = UnitRecords(tmp_path)
    assert records.read("a.unit") is None
    records.write("a.unit", {"bytes": 3, "sha256": "ff"})
    assert records.read("a.unit") == {"bytes": 3, "sha256": "ff"}
    assert records.path("a.unit") == tmp_path / "a.unit.json" and list(tmp_path.iterdir()) == [records.path("a.unit")]
    records.path("a.unit").write_text('{"bytes": 3')
    assert records.read("a.unit") is None
    records.path("a.unit").write_text("[1, 2]")
    assert records.read("a.unit") is None


def test_describe_difference():
    labels = {"inputs": "inputs differ"}
    assert describe_difference({"settings": {"b": 1, "a": 1}}, {"settings": {"b": 2, "a": 0}}, labels) == (
        "settings differ: a 1 -> 0, b 1 -> 2"
    )
    assert describe_difference({"settings": {}, "inputs": [1]}, {"settings": {}, "inputs": [2]}, labels) == (
        "inputs differ"
    )
    assert describe_difference({"settings": {}, "x": 1}, {"settings": {}}, labels) == "x differs"


def test_workers_default_to_every_core(tmp_path):
    assert PrepareConfig(output_dir=tmp_path).workers == default_workers()
    assert PrepareConfig(output_dir=tmp_path, workers=None).workers == default_workers()
    assert MaskConfig("a", "b").workers == MaskConfig("a", "b", workers=None).workers == default_workers()
    assert ValidateConfig("a", workers=None).workers == default_workers()
    assert MaskConfig("a", "b", workers=3).workers == 3


def test_the_stages_layouts_use_the_names_of_formats():
    from sharebert.pipeline.mask import stage as mask
    from sharebert.pipeline.prepare import output as prepare_output

    assert (prepare_output.LAYOUT.work_dir, prepare_output.LAYOUT.run_file, prepare_output.LAYOUT.records_dir) == (
        formats.PREPARE_WORK_DIR,
        formats.PREPARE_RUN_FILE,
        formats.PREPARE_RECORDS_DIR,
    )
    assert (mask.LAYOUT.work_dir, mask.LAYOUT.run_file, mask.LAYOUT.records_dir) == (
        formats.MASK_STATE_DIR,
        formats.MASK_RUN_FILE,
        formats.MASK_RECORDS_DIR,
    )
