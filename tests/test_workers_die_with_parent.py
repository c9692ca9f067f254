"""Workers die with their parent: SIGKILL `sharebert prepare` or `mask` while its workers run, on every
start method, and no process it started is left; a rerun then finishes with the bytes of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sharebert.cli import main
from sharebert.pipeline.parallel import START_METHOD_ENV

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2


@pytest.fixture(scope="module")
def uninterrupted(wiki_dump, wiki_vocab, tmp_path_factory) -> dict[str, tuple[list[str], Path]]:
    """For each stage: its arguments (without output and workers), and the folder of an uninterrupted run."""
    root = tmp_path_factory.mktemp("uninterrupted")
    runs = {
        "prepare": ["prepare", "--wiki", str(wiki_dump.path), "--vocab", str(wiki_vocab), "-q"],
        "mask": ["mask", str(root / "prepare"), "--dup-factor", "3", "-q"],
    }
    for stage, args in runs.items():  # in this order: mask reads what prepare wrote
        assert main([*args, "-o", str(root / stage), "--workers", "1"]) == 0
    return {stage: (args, root / stage) for stage, args in runs.items()}


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
@pytest.mark.parametrize("stage", ["prepare", "mask"])
def test_killing_the_main_process_ends_its_workers_and_a_rerun_finishes(uninterrupted, stage, start_method, tmp_path):
    args, reference = uninterrupted[stage]
    command = [sys.executable, "-m", "sharebert.cli", *args, "-o", str(tmp_path / stage), "--workers", str(WORKERS)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), START_METHOD_ENV: start_method}
    started = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left = []
    try:
        _wait_for_workers(started)
        left = _descendants(started.pid)  # the workers, and a fork server and resource tracker if any
        started.kill()
        started.wait()
        assert _alive_after(left, seconds=5) == []
    finally:
        for pid in _alive_after(left, seconds=0):  # never leave an orphan behind, even on a failure
            os.kill(pid, signal.SIGKILL)
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=60)
    assert _folder_bytes(tmp_path / stage) == _folder_bytes(reference)


# A parent that starts a child which asks to die with it (with the kernel's help, or with the watchdog thread
# used where that help is missing), prints the child's pid once the child has asked, and waits.
_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "asked\\n"
print(child.pid, flush=True)
time.sleep(60)
"""
_CHILD = """
import os, sys, time
from sharebert.pipeline import parallel
if sys.argv[1] == "watchdog":
    parallel._kill_this_process_when_its_parent_exits = lambda: False
parallel._die_with_parent(os.getppid())
print("asked", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["kernel", "watchdog"])
def test_a_process_dies_with_its_parent(how):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, _CHILD, how], env=env, stdout=subprocess.PIPE, text=True)
    child = []
    try:
        child.append(int(parent.stdout.readline()))
        parent.kill()
        parent.wait()
        assert _alive_after(child, seconds=3) == []
    finally:
        for pid in _alive_after(child, seconds=0):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_a_process_whose_parent_is_already_gone_exits_at_once():
    code = "import os; from sharebert.pipeline import parallel; parallel._die_with_parent(os.getppid() + 1); print(1)"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")


def _wait_for_workers(process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(_workers(process.pid)) < WORKERS:
        assert process.poll() is None, "the run ended before its workers were seen"
        assert time.monotonic() < deadline, "no workers started"
        time.sleep(0.01)


def _workers(main_pid: int) -> list[int]:
    """Processes running tasks for `main_pid`: forked from it (its command line), or from its fork server."""
    children = _children()
    main_command = _command_line(main_pid)
    forked = [pid for pid in children.get(main_pid, []) if _command_line(pid) == main_command]
    servers = [pid for pid in children.get(main_pid, []) if "multiprocessing.forkserver" in _command_line(pid)]
    return forked + [pid for server in servers for pid in children.get(server, [])]


def _descendants(pid: int) -> list[int]:
    children, found, todo = _children(), [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _children() -> dict[int, list[int]]:
    """Every process's children, by the parent pid in /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    return children


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: state, parent pid, ... (None: no such process)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_text(errors="replace")
    except OSError:
        return ""


def _alive_after(pids: list[int], seconds: float) -> list[int]:
    """Those of `pids` still running (zombies are not) after waiting up to `seconds` for them to end."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [pid for pid in pids if (_stat(pid) or ["Z"])[0] != "Z"]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}
