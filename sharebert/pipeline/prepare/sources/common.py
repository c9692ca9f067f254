"""What every input reader shares: the Source interface, file checks and lenient decoding."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ....errors import file_error
from ..records import DocumentPart, RawDocument, ReadStats

REPLACEMENT_CHAR = "\ufffd"
_ENCODED_REPLACEMENT_CHAR = REPLACEMENT_CHAR.encode("utf-8")


class Source:
    """An input of `sharebert prepare`: yields raw documents in a fixed order.

    `label` names the input inside document ids and sources (unique among the inputs of a run);
    `bytes_read` grows while reading so a progress bar can show it against `size()`.
    """

    kind = "?"

    def __init__(self, path: str, label: str):
        self.path = path
        self.label = label
        self.bytes_read = 0

    @property
    def source_name(self) -> str:
        return f"{self.kind}:{self.label}"

    def check(self) -> None:
        """Fail early (DataError naming the input) if the input cannot be read as this kind."""

    def size(self) -> int:
        """Bytes this input occupies on disk (0 when unknown, e.g. a remote dataset)."""
        return 0

    def describe(self) -> dict:
        """How prepare.json lists this input: no absolute temporary paths, nothing time-dependent."""
        return {"kind": self.kind, "path": self.path, "bytes": self.size()}

    def documents(self, stats: ReadStats) -> Iterator[RawDocument]:
        """Every document, in order; a source read in parts has those of its parts."""
        parts = self.parts()
        if parts is None:
            raise NotImplementedError
        for part in parts:
            yield from part.documents(stats)

    def parts(self) -> Iterator[DocumentPart] | None:
        """This input as parts that workers read themselves, in order (their documents are those of
        `documents`); None when it is read here, document by document."""
        return None


class FileSource(Source):
    """A source that is one file on disk."""

    def __init__(self, path: str, label: str):
        super().__init__(path, label)
        self._file = Path(path)

    def check(self) -> None:
        check_readable_file(self._file)

    def size(self) -> int:
        return self._file.stat().st_size


def check_readable_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise file_error(path, "file not found")
    if path.is_dir():
        raise file_error(path, "is a folder, expected a file")
    if not os.access(path, os.R_OK):
        raise file_error(path, "cannot read file (permission denied)")
    return path


def check_readable_folder(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise file_error(path, "folder not found")
    if not path.is_dir():
        raise file_error(path, "is a file, expected a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise file_error(path, "cannot read folder (permission denied)")
    return path


def decode_lenient(data: bytes) -> tuple[str, int]:
    """UTF-8 text with undecodable bytes replaced by U+FFFD, and how many replacements were made."""
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        return text, text.count(REPLACEMENT_CHAR) - data.count(_ENCODED_REPLACEMENT_CHAR)


def strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text
