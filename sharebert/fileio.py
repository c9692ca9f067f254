"""Small file helpers shared by every stage: atomic writes, hashing, JSON."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

PART_SUFFIX = ".part"


def temporary_path(path: Path) -> Path:
    """The name a file is written under before it is complete (never mistaken for the real file)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{PART_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed to `path`, on error removed.

    Readers therefore see either no file or a complete one, even if the process is killed.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


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
    from .errors import file_error

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
