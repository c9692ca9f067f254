"""The built-in corpus: English text every Python installation carries, so a demo needs no download.

Two parts, in this order:
- `pydoc_data.topics`: the language reference topics behind `help()` (one document per topic);
- the docstrings of the standard library: one document per module (its docstring and those of its
  functions) and one per class (its docstring and those of its methods), modules in sorted order.

Importing a module can have side effects (printing, opening a browser, starting IDLE), so the
docstrings are collected in a separate process with stdout/stderr silenced, modules known to act on
import are never imported, private modules, tests and `__main__` modules are skipped, and a module
that fails to import is skipped. The text depends only on the Python installation.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from ..records import PLAIN, RawDocument, ReadStats
from .common import Source

log = logging.getLogger(__name__)

COLLECT_TIMEOUT_S = 300
# Modules that act when imported, GUI toolkits (present or not depending on the installation), and
# modules that an installed package may replace (distutils by setuptools).
_NEVER_IMPORT = frozenset(
    {"antigravity", "this", "idlelib", "turtledemo", "turtle", "tkinter", "distutils", "pydoc_data",
     "lib2to3", "readline", "rlcompleter", "test", "msilib", "winreg", "winsound", "msvcrt", "nt"}
)  # fmt: skip
_SKIPPED_PARTS = frozenset({"test", "tests", "idle_test", "__main__"})
_NO_SUBMODULES = frozenset({"encodings"})  # hundreds of generated codec modules with boilerplate docs


class BuiltinSource(Source):
    kind = "builtin"

    def __init__(self, path: str = "python-stdlib", label: str = "python-stdlib"):
        super().__init__(path, label)
        self._documents: list[tuple[str, str]] | None = None

    def _collected(self) -> list[tuple[str, str]]:
        if self._documents is None:
            self._documents = topic_documents() + docstring_documents()
        return self._documents

    def size(self) -> int:
        return sum(len(text.encode("utf-8")) for _, text in self._collected())

    def describe(self) -> dict:
        digest = hashlib.sha256()
        for key, text in self._collected():
            digest.update(key.encode() + b"\0" + text.encode("utf-8") + b"\0")
        return {**super().describe(), "python": sys.version.split()[0], "sha256": digest.hexdigest()}

    def documents(self, stats: ReadStats) -> Iterator[RawDocument]:
        for key, text in self._collected():
            self.bytes_read += len(text.encode("utf-8"))
            stats.documents_read += 1
            yield RawDocument(f"{self.source_name}:{key}", self.source_name, text, PLAIN)
        stats.files_read += 1


def topic_documents() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return [(f"topic:{name}", topics[name]) for name in sorted(topics) if topics[name].strip()]


def docstring_documents() -> list[tuple[str, str]]:
    """Documents made of standard-library docstrings, collected in a fresh, silenced process."""
    if sys.flags.optimize >= 2:
        log.warning("python runs with -OO (no docstrings): the built-in corpus has the pydoc topics only")
        return []
    package_root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-c", f"import {__name__} as m; m._child_main()"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=COLLECT_TIMEOUT_S, env=env, check=True)
        return [tuple(pair) for pair in json.loads(done.stdout)]
    except (subprocess.SubprocessError, OSError, ValueError) as e:
        log.warning("could not collect standard-library docstrings (%s); using the pydoc topics only",
                    type(e).__name__)  # fmt: skip
        return []


def _child_main() -> None:
    """Entry point of the collecting process: JSON on stdout, everything modules print discarded."""
    import warnings

    result_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdin = None  # a module waiting for input must fail, not hang
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        documents = _collect_docstrings()
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        json.dump(documents, out, ensure_ascii=False)


def _collect_docstrings() -> list[tuple[str, str]]:
    documents: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name in _module_names():
        module = _import(name)
        if module is None:
            continue
        documents.extend(_module_documents(name, module, seen))
    return documents


def _module_names() -> list[str]:
    import pkgutil

    names = []
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in _NEVER_IMPORT:
            continue
        names.append(top)
        if top in _NO_SUBMODULES:
            continue
        package = _import(top)
        if package is None or not hasattr(package, "__path__"):
            continue
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{top}.", onerror=lambda _: None):
            parts = info.name.split(".")
            if not any(p.startswith("_") or p in _SKIPPED_PARTS for p in parts[1:]):
                names.append(info.name)
    return sorted(set(names))


def _import(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except BaseException:
        return None


def _module_documents(name: str, module, seen: set[str]) -> list[tuple[str, str]]:
    documents = []
    texts = _new_docs([module], seen)
    members = sorted(vars(module).items())
    functions = [obj for _, obj in members if inspect.isroutine(obj) and _defined_in(obj, name)]
    texts += _new_docs(functions, seen)
    if texts:
        documents.append((f"module:{name}", "\n\n".join(texts)))
    for attr, cls in members:
        if inspect.isclass(cls) and _defined_in(cls, name) and not attr.startswith("_"):
            methods = [
                m for key, m in sorted(vars(cls).items()) if not key.startswith("_") and _is_documented_member(m)
            ]
            class_texts = _new_docs([cls, *methods], seen)
            if class_texts:
                documents.append((f"class:{name}.{attr}", "\n\n".join(class_texts)))
    return documents


def _defined_in(obj, module_name: str) -> bool:
    return getattr(obj, "__module__", None) == module_name and not getattr(obj, "__name__", "_").startswith("_")


def _is_documented_member(obj) -> bool:
    return inspect.isroutine(obj) or isinstance(obj, (property, classmethod, staticmethod))


def _new_docs(objects, seen: set[str]) -> list[str]:
    texts = []
    for obj in objects:
        raw = obj.__func__.__doc__ if isinstance(obj, (classmethod, staticmethod)) else getattr(obj, "__doc__", None)
        if not isinstance(raw, str):
            continue
        text = inspect.cleandoc(raw).strip()
        if len(text) < 20 or text in seen:
            continue
        seen.add(text)
        texts.append(text)
    return texts
