"""The task runner shared by `prepare` and `mask`.

Work is a list of independent tasks. Which tasks a machine runs is the pure function
`tasks[rank::world_size]` (no coordinator), so the same code can later be driven by another engine
(Slurm array jobs, Dask, Ray). On one machine tasks run in a spawn-based process pool; results come
back in task order, so outputs never depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def select_tasks(tasks: Sequence[T], rank: int = 0, world_size: int = 1) -> list[T]:
    """The tasks that machine `rank` of `world_size` runs."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size})")
    return list(tasks[rank::world_size])


def _limit_threads_in_worker() -> None:
    # Each worker is one core's worth of work; libraries must not start thread pools of their own.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _init_worker(initializer: Callable | None, initargs: tuple) -> None:
    _limit_threads_in_worker()
    if initializer is not None:
        initializer(*initargs)


def map_ordered(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    workers: int,
    *,
    initializer: Callable | None = None,
    initargs: tuple = (),
    max_in_flight: int | None = None,
) -> Iterator[R]:
    """Yield fn(task) for every task, in task order, using `workers` processes.

    With workers <= 1 everything runs in this process (no pool), which keeps profiles and
    tracebacks simple. At most `max_in_flight` tasks (default 2 per worker) are queued at once,
    so a long task list never floods memory with pending results.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for task in tasks:
            yield fn(task)
        return
    limit = max_in_flight or 2 * workers
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(initializer, initargs)) as pool:
        pending: deque[Future] = deque()
        try:
            for task in tasks:
                pending.append(pool.submit(fn, task))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


class WorkerPool:
    """A process pool kept open across several `map_ordered` calls, so workers start once per run.

    Same guarantees as the `map_ordered` function: results in task order, at most `max_in_flight`
    tasks queued, everything in this process when workers <= 1. Use it as a context manager.
    """

    def __init__(
        self,
        workers: int,
        *,
        initializer: Callable | None = None,
        initargs: tuple = (),
        preload: Sequence[str] = (),
    ):
        """`preload`: modules the workers need. Where the platform has a fork server (Linux, macOS),
        they are imported once in it and every worker is forked from it, instead of each worker
        starting a fresh interpreter and importing them again (about 0.25 s of CPU per worker)."""
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            if preload and "forkserver" in multiprocessing.get_all_start_methods():
                from multiprocessing import forkserver

                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(list(preload))
                forkserver.ensure_running()  # boots in the background; the first task waits only for the rest
            else:
                ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=ctx, initializer=_init_worker, initargs=(initializer, initargs)
            )
        elif initializer is not None:
            initializer(*initargs)

    def map_ordered(self, fn: Callable[[T], R], tasks: Iterable[T], max_in_flight: int | None = None) -> Iterator[R]:
        if self._pool is None:
            for task in tasks:
                yield fn(task)
            return
        limit = max_in_flight or 2 * self.workers
        pending: deque[Future] = deque()
        try:
            for task in tasks:
                pending.append(self._pool.submit(fn, task))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
