"""--engine ray against a real cluster: `ray start --head` and a second `ray start --address` node on this
machine, started and stopped here (each test runs once). The same bytes as --engine local; a worker killed
mid-task (its task is run again); a driver of mask or of prepare killed mid-run, then rerun: only the
unfinished files are made."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray_support import folder_bytes, process_title, processes_of, ray_cluster

from sharebert.cli import main
from sharebert.pipeline import formats
from sharebert.pipeline.mask.stage import LAYOUT
from sharebert.pipeline.prepare.output import LAYOUT as PREPARE_LAYOUT
from sharebert.pipeline.run_folder import RunFolder

pytest.importorskip("ray")
pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
HOOKS = Path(__file__).with_name("ray_task_hooks.py")
PREPARE = ["--builtin", "--train-vocab", "2000", "--num-train-shards", "4"]
MASK = ["--dup-factor", "4"]


@pytest.fixture(scope="module")
def cluster():
    """Two `ray start` nodes of one CPU each, stopped (by pid, every process checked gone) at the end."""
    with ray_cluster([1, 1], [ROOT, ROOT / "tests"]) as started:
        yield started


@pytest.fixture(scope="module")
def local_outputs(tmp_path_factory):
    """The built-in corpus prepared and masked by --engine local: (prepared folder, its files, the samples' files)."""
    root = tmp_path_factory.mktemp("local")
    assert main(["prepare", *PREPARE, "-o", str(root / "prepared"), "--workers", "2", "-q"]) == 0
    assert main(["mask", str(root / "prepared"), "-o", str(root / "samples"), *MASK, "--workers", "2", "-q"]) == 0
    return root / "prepared", folder_bytes(root / "prepared"), folder_bytes(root / "samples")


def sharebert(cluster, *args: str, hooks: tuple[Path, float] | None = None, wait: bool = True):
    """`sharebert ARGS --engine ray --ray-address CLUSTER` in a subprocess (with the task hooks of
    ray_task_hooks.py when given); its CompletedProcess, or its Popen with wait=False."""
    address, env, _ = cluster
    driver = [str(HOOKS), str(hooks[0]), str(hooks[1])] if hooks else ["-m", "sharebert"]
    command = [sys.executable, *driver, *args, "--engine", "ray", "--ray-address", address]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_two_node_cluster_gives_the_local_bytes(cluster, local_outputs, tmp_path):
    _, prepared_files, sample_files = local_outputs
    done = sharebert(cluster, "prepare", *PREPARE, "-o", str(tmp_path / "prepared"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 worker(s)" in done.stderr  # one CPU on each node
    done = sharebert(cluster, "mask", str(tmp_path / "prepared"), "-o", str(tmp_path / "samples"), *MASK, "-q")
    assert done.returncode == 0, done.stderr[-3000:]
    assert folder_bytes(tmp_path / "prepared") == prepared_files
    assert folder_bytes(tmp_path / "samples") == sample_files


def wait_for(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_worker_killed_mid_task_changes_nothing(cluster, local_outputs, tmp_path):
    prepared, _, sample_files = local_outputs
    log = tmp_path / "tasks"
    log.mkdir()
    driver = sharebert(cluster, "mask", str(prepared), "-o", str(tmp_path / "samples"), *MASK, "-q",
                       hooks=(log, 1.0), wait=False)  # fmt: skip
    try:
        wait_for(lambda: any(log.iterdir()), what="a task to start")
        killed = next(log.iterdir()).name.rsplit(".", 2)[1]
        os.kill(int(killed), signal.SIGKILL)  # most likely during a task's one-second sleep
        _, stderr = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    starts = [f.name.rsplit(".", 2)[:2] for f in sorted(log.iterdir(), key=lambda f: f.stat().st_mtime_ns)]
    interrupted = [task for task, pid in starts if pid == killed][-1]  # the task the killed worker ran last
    assert len({pid for task, pid in starts if task == interrupted}) == 2  # run again, in another process
    assert folder_bytes(tmp_path / "samples") == sample_files


def test_an_interrupted_driver_reruns_only_the_unfinished_tasks(cluster, local_outputs, tmp_path):
    prepared, _, sample_files = local_outputs
    samples, log = tmp_path / "samples", tmp_path / "tasks"
    log.mkdir()
    records = RunFolder(samples, LAYOUT).records.folder
    driver = sharebert(cluster, "mask", str(prepared), "-o", str(samples), *MASK, "-q", hooks=(log, 0.5), wait=False)
    try:
        wait_for(lambda: records.exists() and len(list(records.glob("*.json"))) >= 4, what="four finished files")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.communicate(timeout=60)
    # The cluster stops the dead driver's tasks: once no task of it runs, the finished files are counted.
    _, _, temp = cluster
    wait_for(lambda: not any("_run_task" in process_title(p) for p in processes_of(temp)), what="the tasks to stop")
    finished = len(list(records.glob("*.json")))
    total = len(sample_files) - len([f for f in sample_files if not f.endswith(".hdf5")])
    assert 4 <= finished < total
    done = sharebert(cluster, "mask", str(prepared), "-o", str(samples), *MASK)
    assert done.returncode == 0, done.stderr[-3000:]
    made, kept = map(int, re.search(r"\((\d+) made, (\d+) kept from an earlier run\)", done.stderr).groups())
    assert (made, kept) == (total - finished, finished)
    assert folder_bytes(samples) == sample_files


def test_an_interrupted_prepare_reruns_only_the_unfinished_batches(cluster, tmp_path):
    reference, prepared, log = tmp_path / "reference", tmp_path / "prepared", tmp_path / "tasks"
    log.mkdir()
    done = sharebert(cluster, "prepare", *PREPARE, "-o", str(reference), "-q", hooks=(log, 0.0))
    assert done.returncode == 0, done.stderr[-3000:]
    total = len(list(log.iterdir()))  # batches of PREPARE_BATCH_CHARS: many, even for the built-in corpus
    spills = [RunFolder(prepared, PREPARE_LAYOUT).work / formats.spill_file_name(i, False) for i in range(total)]
    driver = sharebert(cluster, "prepare", *PREPARE, "-o", str(prepared), "-q", hooks=(log, 0.3), wait=False)
    try:
        wait_for(lambda: sum(s.exists() for s in spills) >= 4, what="four finished batches")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.communicate(timeout=60)
    _, _, temp = cluster
    wait_for(lambda: not any("_run_task" in process_title(p) for p in processes_of(temp)), what="the tasks to stop")
    finished = sum(s.exists() for s in spills)
    assert total >= 10 and 4 <= finished < total
    done = sharebert(cluster, "prepare", *PREPARE, "-o", str(prepared), hooks=(log, 0.0))
    assert done.returncode == 0, done.stderr[-3000:]
    counted = re.search(r"read\+split: (\d+) batches \((\d+) made, (\d+) kept from an earlier run\)", done.stderr)
    assert tuple(map(int, counted.groups())) == (total, total - finished, finished)
    assert folder_bytes(prepared) == folder_bytes(reference)
