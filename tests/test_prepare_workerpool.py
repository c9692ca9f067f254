"""WorkerPool (pipeline/parallel.py): ordered results across several maps, in process or in workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sharebert.pipeline.parallel import WorkerPool


def square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@pytest.mark.parametrize("workers, preload", [(1, ()), (2, ("sharebert.pipeline.parallel",)), (2, ())])
def test_results_in_task_order_across_maps(workers, preload):
    with WorkerPool(workers, preload=preload) as pool:
        first = list(pool.map_ordered(square_with_pid, range(20), max_in_flight=3))
        second = list(pool.map_ordered(square_with_pid, range(5)))
    assert [r for r, _ in first] == [x * x for x in range(20)]
    assert [r for r, _ in second] == [x * x for x in range(5)]
    pids = {pid for _, pid in first + second}
    if workers == 1:
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids and len(pids) <= workers  # the same workers serve both maps


def test_an_error_in_a_task_reaches_the_caller():
    with WorkerPool(2, preload=("sharebert.pipeline.parallel",)) as pool, pytest.raises(ZeroDivisionError):
        list(pool.map_ordered(reciprocal, [1, 2, 0, 4]))


def reciprocal(x: int) -> float:
    return 1 / x


_state: dict = {}


def remember(value: str) -> None:
    _state["value"] = value


def recall(_task) -> tuple[str | None, str]:
    return _state.get("value"), os.environ.get("OMP_NUM_THREADS", "")


@pytest.mark.parametrize("workers", [1, 2])
def test_initialize_runs_before_the_first_task_of_every_worker(workers):
    _state.clear()
    with WorkerPool(workers, preload=("sharebert.pipeline.parallel",)) as pool:
        pool.initialize(remember, "ready")
        results = list(pool.map_ordered(recall, range(6)))
        with pytest.raises(RuntimeError, match="before the first map_ordered"):
            pool.initialize(remember, "too late")
    assert {value for value, _ in results} == {"ready"}
    if workers > 1:
        assert {threads for _, threads in results} == {"1"}  # one thread per worker


def inherited_state(_task) -> str | None:
    return _state.get("value")


_FORK_CHECK = """
import tests.test_prepare_workerpool as t
from sharebert.pipeline.parallel import WorkerPool
t._state["value"] = "set before the pool started"  # never sent: only a fork carries it over
with WorkerPool(2, preload=("sharebert.pipeline.parallel",)) as pool:
    print(sorted(set(pool.map_ordered(t.inherited_state, range(4)))))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_workers_are_forked_from_a_single_threaded_process_and_inherit_its_state():
    # In a fresh interpreter: this one may hold threads that earlier tests left behind.
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _FORK_CHECK],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.stdout.strip() == "['set before the pool started']"


def test_a_running_thread_means_a_fork_server_and_the_environment_can_choose(monkeypatch):
    import threading

    from sharebert.errors import ConfigError
    from sharebert.pipeline import parallel

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not parallel._fork_is_safe()
        _state["value"] = "only a fork carries this"
        with WorkerPool(2, preload=("sharebert.pipeline.parallel",)) as pool:
            results = list(pool.map_ordered(inherited_state, range(2)))
        assert set(results) == {None}
    finally:
        stop.set()
        thread.join()
        _state.clear()
    monkeypatch.setenv(parallel.START_METHOD_ENV, "spawn")
    with WorkerPool(2) as pool:
        assert set(pool.map_ordered(inherited_state, range(2))) == {None}
    monkeypatch.setenv(parallel.START_METHOD_ENV, "threads")
    with pytest.raises(ConfigError, match="SHAREBERT_START_METHOD='threads'"):
        WorkerPool(2)


def sleep_and_time(seconds: float) -> tuple[float, float]:
    import time

    started = time.perf_counter()
    time.sleep(seconds)
    return seconds, started


def test_the_tasks_left_at_the_end_start_largest_first_and_results_keep_task_order():
    # Steps of 100 ms: starts never race across pairs, even with the machine busy elsewhere (50 ms was
    # seen to fail once in a full suite run on 2 cores).
    durations = [0.1, 0.4, 0.2, 0.6, 0.3, 0.5, 0.0, 0.7]
    with WorkerPool(2, preload=("sharebert.pipeline.parallel",)) as pool:
        # The first 2 x workers tasks go to the workers as they are read; the list then ends within the
        # read-ahead, so the other four are the ones "left at the end".
        results = list(pool.map_ordered(sleep_and_time, durations, max_in_flight=len(durations), cost=lambda d: d))
    assert [seconds for seconds, _ in results] == durations
    assert _start_order(results) == _in_pairs(durations[:4] + sorted(durations[4:], reverse=True))
    with WorkerPool(2, preload=("sharebert.pipeline.parallel",)) as pool:  # without costs: task order
        results = list(pool.map_ordered(sleep_and_time, durations, max_in_flight=len(durations)))
    assert _start_order(results) == _in_pairs(durations)


def _start_order(results):
    return _in_pairs([seconds for seconds, _ in sorted(results, key=lambda r: r[1])])


def _in_pairs(values):
    """Two workers take tasks two at a time; within a pair, which one starts first is a race."""
    return [set(values[i : i + 2]) for i in range(0, len(values), 2)]


def arrow_threads(_task) -> int:
    import pyarrow

    return pyarrow.cpu_count()


def test_every_worker_is_one_core_even_when_forked_from_a_bigger_pool():
    import pyarrow

    before = pyarrow.cpu_count()
    pyarrow.set_cpu_count(3)  # what a forked worker inherits
    try:
        with WorkerPool(2, preload=("sharebert.pipeline.parallel",)) as pool:
            assert set(pool.map_ordered(arrow_threads, range(4))) == {1}
    finally:
        pyarrow.set_cpu_count(before)


def arrow_allocator(_task) -> str:
    import pyarrow

    return pyarrow.default_memory_pool().backend_name


@pytest.fixture
def parent_on_mimalloc(monkeypatch):
    """This process allocating with pyarrow's default, mimalloc, and no allocator chosen in the environment
    (both as they were afterwards: earlier pools in this process may have switched them)."""
    import pyarrow

    if "mimalloc" not in pyarrow.supported_memory_backends():
        pytest.skip("this pyarrow has no mimalloc")
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")  # so that teardown restores the variable
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
    before = pyarrow.default_memory_pool()
    pyarrow.set_memory_pool(pyarrow.mimalloc_memory_pool())
    yield
    pyarrow.set_memory_pool(before)


def test_workers_allocate_with_the_c_library_unless_the_user_chose_an_allocator(parent_on_mimalloc, monkeypatch):
    with WorkerPool(2, preload=("sharebert.pipeline.parallel",)) as pool:  # forked: mimalloc inherited
        assert set(pool.map_ordered(arrow_allocator, range(4))) == {"system"}
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    monkeypatch.setenv("SHAREBERT_START_METHOD", "spawn")  # a fresh pyarrow reads the choice
    with WorkerPool(2) as pool:
        assert set(pool.map_ordered(arrow_allocator, range(4))) == {"mimalloc"}


def test_tasks_run_in_this_process_allocate_with_the_c_library_too(parent_on_mimalloc):
    with WorkerPool(1) as pool:
        assert list(pool.map_ordered(arrow_allocator, range(2))) == ["system", "system"]


def test_released_workers_exit_while_this_process_goes_on():
    with WorkerPool(2, preload=("sharebert.pipeline.parallel",)) as pool:
        workers = {pid for _, pid in pool.map_ordered(square_with_pid, range(4))}
        pool.release()
        with pytest.raises(RuntimeError):
            list(pool.map_ordered(square_with_pid, range(2)))
    for pid in workers:  # gone (and reaped) once the pool is closed
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


_ERROR_IN_A_TASK = """
import pickle
from sharebert.pipeline.parallel import WorkerPool

errors = 0
for _ in range(8):  # the hang this guards against came one time in three
    try:
        with WorkerPool(2) as pool:
            list(pool.map_ordered(lambda x: x, range(3)))  # a lambda cannot be pickled
    except pickle.PicklingError:
        errors += 1
print(errors, "errors")
"""


def test_an_error_in_a_task_never_leaves_the_pool_waiting_for_its_workers(tmp_path):
    import signal

    root = Path(__file__).resolve().parents[1]
    log = tmp_path / "out.txt"
    with open(log, "w") as out:  # not a pipe: orphaned workers would hold it open
        child = subprocess.Popen([sys.executable, "-c", _ERROR_IN_A_TASK], cwd=root, stdout=out, stderr=out,
                                 start_new_session=True, env={**os.environ, "PYTHONPATH": str(root)})  # fmt: skip
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            pytest.fail(f"the pool hung after an error in a task: {log.read_text()}")
    assert log.read_text().strip().splitlines()[-1] == "8 errors"
