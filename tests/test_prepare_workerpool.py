"""WorkerPool (pipeline/parallel.py): ordered results across several maps, in process or in workers."""

from __future__ import annotations

import os

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
    with WorkerPool(2, preload=("sharebert.pipeline.parallel",)) as pool:
        with pytest.raises(ZeroDivisionError):
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
