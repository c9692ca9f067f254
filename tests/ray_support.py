"""Helpers of the --engine ray tests: folder contents, and finding and stopping the processes of a Ray
cluster a test started (by their ids: never other Ray processes on the machine)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden work files too), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def processes_of(marker: str) -> set[int]:
    """The processes whose command line names `marker` (a cluster's temp folder), and their descendants
    (Ray's workers rename themselves "ray::...")."""
    parents = _parents()
    found = {pid for pid in parents if pid != os.getpid() and marker in _cmdline(pid)}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found


def stop_processes(pids: set[int], grace_seconds: float = 5.0) -> set[int]:
    """SIGTERM, then SIGKILL what is left after `grace_seconds`; the pids still alive after that (none)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and (pids := {p for p in pids if _alive(p)}):
            time.sleep(0.1)
        if not pids:
            return set()
    return {p for p in pids if _alive(p)}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
