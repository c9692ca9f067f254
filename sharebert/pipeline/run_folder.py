"""The output folder of a stage run (prepare, mask): claiming it, resuming, refusing another run,
--overwrite, and the records of finished units of work.

A stage describes what it keeps in its folder with a `Layout`: the outputs of its units of work (shards,
sample files), side files (vocab.txt), the file written last (its presence means the folder is complete),
and a hidden work folder holding the run file (the identity of the run the folder belongs to) and one
record per finished unit. Whatever runs a stage's tasks (the local process pool or another engine) claims
the folder and keeps its records through `RunFolder`, so the rules below hold for every engine:

- nothing of the stage in the folder: the run starts fresh;
- the same run (same identity) finished: complete, nothing to do (where the finished file identifies
  the run, a work folder left by a run killed right after writing it is removed; otherwise the run
  resumes and redoes only units whose record no longer matches their output);
- the same run, unfinished: it resumes, unless its resume key (what its work files depend on besides
  the identity) changed, and then it starts over;
- another run, or outputs without a record of their run: refused (one line naming the folder) unless
  --overwrite, which removes the stage's outputs and nothing else;
- a folder this process may not write in (a read-only filesystem, no permission): refused, one line
  naming the folder.

The names of the work and state files are in formats.py; docs/prepare.md and docs/mask.md describe them.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, file_error
from ..fileio import (
    disk_full_as_error,
    json_dumps,
    read_json,
    remove_stale_parts,
    temporary_path,
    write_json_atomic,
)

log = logging.getLogger(__name__)

UNKNOWN_RUN = {"unknown": True}  # the identity of outputs that no readable record describes


class Claim(enum.Enum):
    FRESH = "fresh"  # nothing of an earlier run is used
    RESUME = "resume"  # an earlier run of the same identity: its finished units are kept
    COMPLETE = "complete"  # the same run already finished: nothing to do


@dataclass(frozen=True)
class Layout:
    """What a stage keeps in its output folder (the names come from formats.py)."""

    stage: str  # names the stage in messages
    work_dir: str  # hidden folder: the run file, the records and the run's scratch files
    run_file: str  # in work_dir: the run's identity (and its resume key, when it has one)
    records_dir: str  # in work_dir: one record per finished unit
    finished_file: str  # written last: its presence means the folder is complete
    is_unit_file: Callable[[str], object]  # true for the names of the units' outputs
    # Also written by the stage, but no trace of a run when alone (a --vocab may be given from inside the folder).
    side_files: tuple[str, ...] = ()
    # Identity keys besides "settings", as a refusal names their difference ("inputs differ").
    differences: dict[str, str] = field(default_factory=dict)
    # The identity a finished run recorded in its finished file; None: the run file stays and tells.
    finished_identity: Callable[[dict], dict] | None = None


@dataclass(frozen=True)
class UnitRecords:
    """One small JSON record per finished unit of work, named after the unit's output file, written by
    whoever finished the unit, after its output was renamed into place; a rerun skips a unit whose record
    still matches its output. Temp name + rename, without fsync (one fsync costs more than a small unit):
    a record lost or damaged in a crash only means its unit is done again, to the same bytes."""

    folder: Path

    def path(self, unit: str) -> Path:
        return self.folder / f"{unit}.json"

    def write(self, unit: str, record: dict) -> None:
        path = self.path(unit)
        tmp = temporary_path(path)
        try:
            with disk_full_as_error(self.folder):
                tmp.write_text(json_dumps(record), encoding="utf-8")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)

    def read(self, unit: str) -> dict | None:
        """The unit's record; None when it has none (missing or unreadable)."""
        path = self.path(unit)
        if not path.exists():
            return None
        try:
            record = read_json(path)
        except DataError:
            return None
        return record if isinstance(record, dict) else None


_UNWRITABLE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


@dataclass(frozen=True)
class RunFolder:
    path: Path
    layout: Layout

    @property
    def work(self) -> Path:
        return self.path / self.layout.work_dir

    @property
    def records(self) -> UnitRecords:
        return UnitRecords(self.work / self.layout.records_dir)

    def claim(
        self, identity: dict, *, overwrite: bool = False, resume_key: dict | None = None, keep: Path | None = None
    ) -> Claim:
        """Make the folder this run's (see the module's docstring for the rules). `keep`: an output that
        --overwrite must leave (a --vocab given from inside the folder). Unless complete, the folder is
        then ready: work and records folders made, temporary files of an interrupted run removed, the
        finished file gone, the run file written (the identity alone without a resume key, else both)."""
        self._make_folder()
        with self._unwritable_as_error():
            return self._claim(identity, overwrite, resume_key, keep)

    def _claim(self, identity: dict, overwrite: bool, resume_key: dict | None, keep: Path | None) -> Claim:
        previous, finished, previous_key = self._previous_run()
        stage, out = self.layout.stage, self.path
        claim = Claim.FRESH
        if previous is not None and previous != identity:
            if not overwrite:
                difference = describe_difference(previous, identity, self.layout.differences)
                raise file_error(
                    out,
                    f"holds the output of a different {stage} run ({difference}); "
                    "use --overwrite to replace it, or choose another folder",
                )
            log.info("--overwrite: removing the previous %s output in %s", stage, out)
            self.remove_outputs(keep)
        elif previous is not None and overwrite:
            log.info("--overwrite: removing the previous output of the same %s run in %s", stage, out)
            self.remove_outputs(keep)
        elif previous is not None and finished:
            self.remove_work()  # left when a run was killed right after writing its finished file
            return Claim.COMPLETE
        elif previous is not None and previous_key != resume_key:
            changed = sorted(k for k in resume_key or {} if (previous_key or {}).get(k) != resume_key[k])
            log.info("%s changed since the interrupted %s run in %s: starting over", ", ".join(changed), stage, out)
            self.remove_outputs(keep)
        elif previous is not None:
            log.info("resuming the earlier %s run in %s: its finished work is kept", stage, out)
            claim = Claim.RESUME
        self._start(identity, resume_key)
        return claim

    def remove_outputs(self, keep: Path | None = None) -> None:
        """Remove what the stage writes in the folder (except `keep`), and nothing else."""
        for path in self._outputs():
            if keep is not None and path.resolve() == Path(keep).resolve():
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    def remove_work(self) -> None:
        """The work folder and temporary files, once the run no longer needs them."""
        shutil.rmtree(self.work, ignore_errors=True)
        remove_stale_parts(self.path)

    def abandon(self) -> None:
        """The run stops on its input (nothing it could write): its work goes, and the folder too if empty."""
        self.remove_work()
        with contextlib.suppress(OSError):  # not empty, or not ours to remove: it stays
            self.path.rmdir()

    @contextlib.contextmanager
    def _unwritable_as_error(self):
        """A folder this process may not write in (read-only filesystem, no permission): one line naming it."""
        try:
            yield
        except OSError as e:
            if e.errno not in _UNWRITABLE_ERRNOS:
                raise
            raise file_error(self.path, f"cannot write in the folder ({e.strerror})") from None

    def _make_folder(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise file_error(self.path, "exists and is not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise file_error(self.path, f"cannot create the folder ({e.strerror})") from None

    def _previous_run(self) -> tuple[dict | None, bool, dict | None]:
        """The run found here: (its identity, UNKNOWN_RUN or None; read from the finished file?; its resume key)."""
        finished = self.path / self.layout.finished_file
        if self.layout.finished_identity is not None and finished.exists():
            return self.layout.finished_identity(read_json(finished)), True, None
        run_file = self.work / self.layout.run_file
        if run_file.exists():
            stored = read_json(run_file)
            identity, resume_key = stored, None
            if isinstance(stored, dict) and "resume_key" in stored:
                identity, resume_key = stored.get("identity"), stored["resume_key"]
            return (identity if isinstance(identity, dict) else UNKNOWN_RUN), False, resume_key
        traces = [p for p in self._outputs() if p.name not in self.layout.side_files]
        return (UNKNOWN_RUN if traces else None), False, None

    def _outputs(self) -> list[Path]:
        layout = self.layout
        names = (layout.finished_file, layout.work_dir, *layout.side_files)
        return [p for p in self.path.iterdir() if p.name in names or layout.is_unit_file(p.name)]

    def _start(self, identity: dict, resume_key: dict | None) -> None:
        self.work.mkdir(exist_ok=True)
        run = identity if resume_key is None else {"identity": identity, "resume_key": resume_key}
        write_json_atomic(self.work / self.layout.run_file, run)
        self.records.folder.mkdir(exist_ok=True)
        removed = sum(remove_stale_parts(folder) for folder in (self.path, self.work, self.records.folder))
        if removed:
            log.info("%s: removed %d unfinished files of an interrupted run", self.path, removed)
        with contextlib.suppress(FileNotFoundError):
            (self.path / self.layout.finished_file).unlink()  # written again at the end


def describe_difference(previous: dict, current: dict, differences: dict[str, str]) -> str:
    """What separates two run identities, for a refusal: the settings that changed, then the other parts."""
    if previous == UNKNOWN_RUN:
        return "files of an unknown or unfinished run"
    old, new = previous.get("settings") or {}, current.get("settings") or {}
    changed = [
        f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)
    ]
    parts = ["settings differ: " + ", ".join(changed)] if changed else []
    others = sorted((previous.keys() | current.keys()) - {"settings"})
    parts += [differences.get(k, f"{k} differs") for k in others if previous.get(k) != current.get(k)]
    return "; ".join(parts) or "unknown difference"
