"""A Ray cluster of `ray start` nodes on this machine, for the benchmarks' --engine ray runs and the tests of
--engine ray (docs/cluster.md): started in a temporary folder of its own, and stopped by the ids of its
processes (never by name: other Ray clusters on the machine are left alone)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
OBJECT_STORE_BYTES = 80 * 2**20  # tasks pass small descriptions and results; Ray's default takes 30% of the memory


@contextlib.contextmanager
def ray_cluster(cpus_per_node: list[int], pythonpath: list[Path]) -> Iterator[tuple[str, dict, str]]:
    """A head node and one more node per further entry of `cpus_per_node`, whose workers import from
    `pythonpath`: (its address, the environment a driver connects with, the folder its processes name).
    Every process of it is gone after."""
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(map(str, pythonpath)),
        "RAY_AUTH_MODE": "disabled",  # a throwaway cluster: no token written to ~/.ray
        "RAY_worker_niceness": "0",  # as --engine local's workers (Ray's default, 15, loses to any other job)
    }
    address = f"127.0.0.1:{_free_port()}"
    node = ["--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats", "--temp-dir", temp]
    try:
        for n, cpus in enumerate(cpus_per_node):
            where = ["--head", "--port", address.split(":")[1], "--include-dashboard", "false"] if n == 0 else [
                "--address", address]  # fmt: skip
            subprocess.run([str(RAY), "start", *where, "--num-cpus", str(cpus), *node], env=env, check=True,
                           capture_output=True, timeout=120)  # fmt: skip
        yield address, env, temp
    finally:
        left = stop_processes(processes_of(temp))
        shutil.rmtree(temp, ignore_errors=True)
        if left:
            raise RuntimeError(f"Ray processes {sorted(left)} outlived SIGKILL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def process_title(pid: int) -> str:
    return _cmdline(pid)


def stop_processes(pids: set[int], grace_seconds: float = 3.0) -> set[int]:
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
