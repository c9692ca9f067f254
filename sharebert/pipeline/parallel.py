"""The task runner shared by `prepare` and `mask`.

Work is a list of independent tasks. Which tasks a machine runs is the pure function
`tasks[rank::world_size]` (no coordinator), so the same code can later be driven by another engine
(Slurm array jobs, Dask, Ray). On one machine tasks run in a process pool; results come back in task
order, so outputs never depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Each worker is one core's worth of work: libraries must not start thread pools of their own.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip


def select_tasks(tasks: Sequence[T], rank: int = 0, world_size: int = 1) -> list[T]:
    """The tasks that machine `rank` of `world_size` runs."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size})")
    return list(tasks[rank::world_size])


def _init_worker(initializer: Callable | None, initargs: tuple) -> None:
    os.environ.update(_ONE_THREAD)
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def _one_thread_environment():
    """os.environ limited to one thread per library, restored afterwards."""
    saved = {name: os.environ.get(name) for name in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _worker_context(preload: Sequence[str]):
    """A fork server that imports `preload` once, booted now in the background (a fresh interpreter per
    worker where the platform has none, or when nothing is to be preloaded). A process has one fork
    server: it keeps the preload list of the first pool that started it."""
    if not preload or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    # The server inherits the environment it starts with, so the libraries it preloads (numpy's BLAS...)
    # come up single-threaded, as every worker forked from it must be.
    with _one_thread_environment():
        forkserver.ensure_running()  # returns at once; the first worker waits only for the rest of the boot
    return context


class WorkerPool:
    """A process pool kept open across several `map_ordered` calls, so workers start once per run.

    Results come in task order, at most `max_in_flight` tasks are queued, and with workers <= 1
    everything runs in this process (no pool), which keeps profiles and tracebacks simple. Use it
    as a context manager; create it first thing, so the workers' start overlaps the caller's own set-up.
    (Letting this process run tasks beside workers - 1 children was measured: no faster on 2 cores.)
    """

    def __init__(self, workers: int, *, preload: Sequence[str] = ()):
        """`preload`: modules the workers need. Where the platform has a fork server (Linux, macOS), they
        are imported once in it and every worker is forked from it, instead of each worker starting
        a fresh interpreter and importing them again (about 0.25 s of CPU per worker)."""
        self.workers = max(1, workers)
        self._context = _worker_context(preload) if self.workers > 1 else None
        self._initializer: tuple[Callable, tuple] | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._mapped = False

    def initialize(self, initializer: Callable, *initargs) -> None:
        """Run `initializer(*initargs)` in every worker before its first task (here, when workers <= 1).
        Call it before the first `map_ordered`."""
        if self._mapped:
            raise RuntimeError("initialize() must come before the first map_ordered()")
        if self._context is None:
            initializer(*initargs)
        else:
            self._initializer = (initializer, initargs)

    def map_ordered(self, fn: Callable[[T], R], tasks: Iterable[T], max_in_flight: int | None = None) -> Iterator[R]:
        """Yield fn(task) for every task, in task order; at most `max_in_flight` (default 2 per worker)
        tasks are queued at once, so a long task list never floods memory with pending results."""
        self._mapped = True
        if self._context is None:
            for task in tasks:
                yield fn(task)
            return
        pool = self._start_workers()
        limit = max_in_flight or 2 * self.workers
        pending: deque[Future] = deque()
        try:
            for task in tasks:
                pending.append(pool.submit(fn, task))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()

    def _start_workers(self) -> ProcessPoolExecutor:
        if self._pool is None:  # workers start when the first task is submitted
            initializer, initargs = self._initializer or (None, ())
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=self._context, initializer=_init_worker, initargs=(initializer, initargs)
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def map_ordered(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    workers: int,
    *,
    initializer: Callable | None = None,
    initargs: tuple = (),
    max_in_flight: int | None = None,
    preload: Sequence[str] = (),
) -> Iterator[R]:
    """One `WorkerPool.map_ordered` in a pool of its own: fn(task) for every task, in task order."""
    with WorkerPool(workers, preload=preload) as pool:
        if initializer is not None:
            pool.initialize(initializer, *initargs)
        yield from pool.map_ordered(fn, tasks, max_in_flight)
