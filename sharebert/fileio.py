"""Small file helpers shared by every stage: atomic writes, hashing, JSON, full disks."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import DataError, ShareBertError, file_error

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"


def temporary_path(path: Path) -> Path:
    """The name a file is written under before it is complete (never mistaken for the real file)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{PART_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed to `path`, on error removed.

    Readers therefore see either no file or a complete one, even if the process is killed.
    A full disk raises a one-line DataError naming the folder (see disk_full_error). The file gets the
    mode of a newly created file (some writers, e.g. safetensors, create theirs private).
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full = is_disk_full(e, path.parent)  # asked before the temporary file frees its space
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if full:
            raise disk_full_error(path.parent) from None
        raise


def new_file_mode() -> int:
    """The permissions open() gives a new file: 0666 less the process's umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux shows the umask in /proc; elsewhere reading it means setting it, which another thread creating a
    # file at that instant would see, so it is put straight back.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def replacing_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder (.NAME.partial-PID) to write a whole folder into; on success it
    replaces `folder` (an existing one is moved aside to .NAME.old-PID, then removed), on error it is
    removed. What processes killed while doing this left beside `folder` is cleaned up first."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_folders(folder)
    partial, old = (folder.with_name(f".{folder.name}.{kind}-{os.getpid()}") for kind in ("partial", "old"))
    shutil.rmtree(partial, ignore_errors=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def remove_stale_folders(folder: str | os.PathLike) -> None:
    """Remove what replacing_folder(folder) left when its process was killed (.NAME.partial-PID,
    .NAME.old-PID of processes no longer running); an old folder comes back when it is the only copy."""
    folder = Path(folder)
    for path in folder.parent.glob(f".{folder.name}.*-*"):
        kind, _, pid = path.name[len(folder.name) + 2 :].partition("-")
        if kind not in ("partial", "old") or not pid.isdigit() or _process_running(int(pid)):
            continue
        if kind == "old" and not folder.exists():
            with contextlib.suppress(OSError):  # another process of the same launch may have done it
                path.rename(folder)
        else:
            log.info("removing %s, left by an interrupted write of %s", path, folder.name)
            shutil.rmtree(path, ignore_errors=True)


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def json_dumps(obj) -> str:
    """Stable, readable JSON: the same object always gives the same bytes."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_bytes_atomic(path, json_dumps(obj).encode("utf-8"))


def read_json(path: str | os.PathLike):
    """Read a JSON file; a missing or malformed file raises DataError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except OSError as e:
        raise file_error(path, f"cannot read ({e.strerror})") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise file_error(path, f"not valid JSON ({e})") from None


def sha256_file(path: str | os.PathLike, block_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_parts(folder: str | os.PathLike) -> int:
    """Delete temporary files an interrupted run left in `folder`; return how many."""
    removed = 0
    for part in Path(folder).glob(f".*{PART_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
            removed += 1
    return removed


# ---------------------------------------------------------------- full disks
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries that hide the errno word it (h5py/HDF5, safetensors, pyarrow).
DISK_FULL_TEXTS = ("no space left on device", "errno = 28", "os error 28", "disk quota exceeded")
# A write that failed for a reason its library does not tell (torch.save) is put down to a full disk
# when the folder has less than this left.
LOW_SPACE_BYTES = 1 << 20


def is_disk_full(error: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """Whether `error` (or an error it was raised from) says the disk is full; with `folder`, also any
    OSError or RuntimeError while that folder's filesystem has almost no space left."""
    if isinstance(error, ShareBertError) or not isinstance(error, Exception):
        return False
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(cause).lower() for text in DISK_FULL_TEXTS):
            return True
        cause = cause.__cause__ or cause.__context__
    if folder is not None and isinstance(error, (OSError, RuntimeError)):
        free = free_bytes(folder)
        return free is not None and free < LOW_SPACE_BYTES
    return False


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Space left to an unprivileged writer on the filesystem of `folder`; None when it cannot be told."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


class DiskFullError(DataError):
    """A write failed because the disk is full: the folder, and (where the run can tell) what it still needs."""

    def __init__(self, folder: str | os.PathLike, needed: int | None = None):
        super().__init__(folder, needed)
        self.folder, self.needed = Path(folder), needed

    def __str__(self) -> str:
        space = ""
        if self.needed is not None:
            free = free_bytes(self.folder)
            space = f"; this run still has to write about {format_size(self.needed)} there"
            space += f" ({format_size(free)} free now)" if free is not None else ""
        return f"{self.folder}: no space left on device{space}; free some space and rerun the same command to resume"


def disk_full_error(folder: str | os.PathLike) -> DiskFullError:
    """The one-line error of a full disk: the folder, and that a rerun resumes (space_needed adds how much
    space the run still needs)."""
    return DiskFullError(folder)


@contextlib.contextmanager
def disk_full_as_error(folder: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk while writing into `folder` (or into a folder of it: a temporary one) into
    disk_full_error(folder); other errors pass."""
    try:
        yield
    except DiskFullError as e:
        raise DiskFullError(folder, e.needed) from None
    except Exception as e:
        if is_disk_full(e, folder):
            raise disk_full_error(folder) from None
        raise


@contextlib.contextmanager
def space_needed(folder: str | os.PathLike, estimate: Callable[[], int | None]) -> Iterator[None]:
    """Around a stage writing into `folder`: a full disk there (raised here or in a worker process, in the
    folder or in its work folders) becomes a DiskFullError naming `folder` that also says how many bytes the
    run still has to write, as `estimate()` tells when asked (after the failed write's temporary file is gone)."""
    folder = Path(folder)
    try:
        yield
    except DiskFullError as e:
        if not _is_within(e.folder, folder):
            raise
        raise DiskFullError(folder, e.needed if e.needed is not None else _quietly(estimate)) from None
    except Exception as e:
        if not is_disk_full(e, folder):
            raise
        raise DiskFullError(folder, _quietly(estimate)) from None


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _quietly(estimate: Callable[[], int | None]) -> int | None:
    try:
        return estimate()
    except Exception:  # an estimate must never hide the full disk it is asked about
        return None


def folder_bytes(folder: str | os.PathLike) -> int:
    """The bytes of the files under `folder` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def format_size(n: int) -> str:
    """1536 -> '1.5 KB': decimal units, as `df -H` shows them."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
