"""The task runner shared by `prepare` and `mask`.

Work is a list of independent tasks, run in a process pool (or, with --engine ray, as Ray tasks: see
ray_engine.py and docs/cluster.md); results come back in task order, so outputs never depend on the
number of workers or on the engine. engines.py picks the engine.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
_END = object()  # the end of the task list

# Each worker is one core's worth of work: libraries must not start thread pools of their own.
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
_ARROW_POOL = ("ARROW_DEFAULT_MEMORY_POOL", "system")


def default_workers() -> int:
    """The workers a stage runs when not told: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _init_worker(parent_pid: int | None, initializer: Callable | None, initargs: tuple) -> None:
    _die_with_parent(os.getppid() if parent_pid is None else parent_pid)
    set_up_task_process(initializer, initargs)


def set_up_task_process(initializer: Callable | None, initargs: tuple) -> None:
    """What every process that runs tasks does before its first one, whatever the engine started it."""
    # One core's worth of threads: the environment for libraries still to start (pyarrow sizes its pool
    # by OMP_NUM_THREADS), and pyarrow's pool itself where a forked worker inherits it at its parent's size.
    os.environ.update(_ONE_THREAD)
    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].set_cpu_count(1)
    _allocate_arrow_memory_with_the_c_library()
    if initializer is not None:
        initializer(*initargs)


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when `parent_pid`, the process that started it, ends, even by SIGKILL: a worker
    blocked on its task queue would otherwise wait forever (docs/prepare.md, "How it runs"). On Linux the
    kernel kills it (PR_SET_PDEATHSIG); elsewhere a thread polls the parent's pid. Either way, a parent
    already gone before this ran (the worker was then handed to another process) ends it here."""
    if not _kill_this_process_when_its_parent_exits():
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), name="parent-watch", daemon=True).start()
    _let_go_of_the_fork_server()
    if os.getppid() != parent_pid:
        os._exit(1)


def _let_go_of_the_fork_server() -> None:
    """A fork server ends when the last copy of a pipe's write end closes: the main process holds one,
    and CPython hands every process forked from the server one too (for processes of its own, which
    workers never start). Held here, it would keep the server alive after the main process died, and
    the server this worker. (The copy is a private attribute of CPython's multiprocessing.forkserver;
    where there is none, there is nothing to close.)"""
    from multiprocessing import forkserver

    server = forkserver._forkserver
    lifeline = getattr(server, "_forkserver_alive_fd", None)
    if lifeline is not None:
        os.close(lifeline)
        server._forkserver_alive_fd = None


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _kill_this_process_when_its_parent_exits() -> bool:
    """Ask Linux to send SIGKILL to this process when the thread that started it exits (the workers'
    parents start them from a thread that outlives the pool); False where that cannot be asked."""
    if sys.platform != "linux":
        return False
    try:
        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return False
    return prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0) == 0


def _exit_when_orphaned(parent_pid: int, poll_seconds: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_seconds)
    os._exit(1)


def _allocate_arrow_memory_with_the_c_library() -> None:
    """pyarrow's default allocator, mimalloc, maps its arenas with transparent huge pages (madvise) and
    then hands back 64 KiB pieces of them, which splits the huge pages. Measured on prepare's 30 MB
    benchmark: 0.1-0.3 s more system time per run and per process, mostly while writing shards. The C
    library's allocator has no such cost, so the pool's processes use it, unless the user chose an
    allocator with ARROW_DEFAULT_MEMORY_POOL: the variable is read when pyarrow first allocates, and a
    pyarrow that already has allocated is switched directly."""
    os.environ.setdefault(*_ARROW_POOL)
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None and os.environ[_ARROW_POOL[0]] == _ARROW_POOL[1]:
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())


@contextlib.contextmanager
def _worker_environment():
    """os.environ as workers need it (one thread per library, the C library's allocator for Arrow),
    restored afterwards."""
    saved = {name: os.environ.get(name) for name in (*_ONE_THREAD, _ARROW_POOL[0])}
    os.environ.update(_ONE_THREAD)
    os.environ.setdefault(*_ARROW_POOL)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


START_METHOD_ENV = "SHAREBERT_START_METHOD"  # fork, forkserver or spawn: overrides the choice below


def _requested_start_method() -> str | None:
    requested = os.environ.get(START_METHOD_ENV) or None
    if requested is not None and requested not in multiprocessing.get_all_start_methods():
        from ..errors import ConfigError

        raise ConfigError(
            f"{START_METHOD_ENV}={requested!r}: this platform starts processes with "
            f"{', '.join(multiprocessing.get_all_start_methods())}"
        )
    return requested


def _fork_is_safe() -> bool:
    """Forking this process is safe on Linux while it runs no Python thread but the main one: the native
    threads of the libraries loaded here (pyarrow's allocator, OpenBLAS) are made fork-safe by their own
    at-fork handlers. (macOS system libraries are not fork-safe.)"""
    return (
        sys.platform == "linux"
        and threading.current_thread() is threading.main_thread()
        and threading.active_count() == 1
    )


def _worker_context(preload: Sequence[str]):
    """A fork server that imports `preload` once, booted now in the background (a fresh interpreter per
    worker where the platform has none, or when nothing is to be preloaded). A process has one fork
    server: it keeps the preload list of the first pool that started it."""
    if not preload or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    # The server inherits the environment it starts with, so the libraries it preloads (numpy's BLAS,
    # pyarrow...) come up single-threaded and with the allocator every worker forked from it must use.
    with _worker_environment():
        forkserver.ensure_running()  # returns at once; the first worker waits only for the rest of the boot
    return context


@contextlib.contextmanager
def _forking():
    """Around the submit that forks the workers. Python >= 3.12 warns on any fork of a process that has
    native threads (`_fork_is_safe` is why this fork is not the deadlock it warns about). The objects of
    this process are frozen out of the garbage collector's reach first, so the workers' collections never
    write to the pages they share with it (each write would copy a page)."""
    gc.freeze()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
            yield
    finally:
        gc.unfreeze()


def pop_largest(waiting: list[tuple[float, int, T]]) -> tuple[float, int, T]:
    """Take the (cost, number, task) of the largest cost out of `waiting` (the first of equal ones): the
    task both engines start next, so the run does not end on one long task."""
    return waiting.pop(max(range(len(waiting)), key=lambda i: waiting[i][0]))


class WorkerPool:
    """A process pool kept open across several `map_ordered` calls, so workers start once per run.

    Results come in task order, at most `max_in_flight` tasks are queued, and with workers <= 1
    everything runs in this process (no pool), which keeps profiles and tracebacks simple. Use it
    as a context manager; create it first thing, so the workers' start overlaps the caller's own set-up.
    (Letting this process run tasks beside workers - 1 children was measured: no faster on 2 cores.)

    How workers start: on Linux they are forked from this process when its first task is submitted
    (they inherit its imports and state at once: no interpreter start, no imports, about 0.25 s of CPU
    less per worker), unless this process then runs Python threads besides the main one; elsewhere, or
    then, from a fork server. The environment variable SHAREBERT_START_METHOD (fork, forkserver, spawn)
    overrides that choice. However this process ends, SIGKILL included, its workers end with it (see
    `_die_with_parent`).

    Every process that runs tasks (this one, with workers <= 1) allocates Arrow memory with the C
    library's allocator (see `_allocate_arrow_memory_with_the_c_library`).
    """

    def __init__(self, workers: int, *, preload: Sequence[str] = ()):
        """`preload`: modules the workers need. Where workers come from a fork server (macOS, or Linux
        when forking this process is not safe), they are imported once in it and every worker is forked
        from it, instead of each worker starting a fresh interpreter and importing them again."""
        self.workers = max(1, workers)
        self._preload = tuple(preload)
        if self.workers <= 1:  # tasks run in this process
            _allocate_arrow_memory_with_the_c_library()
        self._requested = _requested_start_method() if self.workers > 1 else None
        self._context = None  # chosen when the workers start, unless it is known now
        if self.workers > 1 and (
            self._requested in ("forkserver", "spawn") or (self._requested is None and sys.platform != "linux")
        ):
            # A fork server boots now, in the background.
            spawn = self._requested == "spawn"
            self._context = multiprocessing.get_context("spawn") if spawn else _worker_context(self._preload)
        self._initializer: tuple[Callable, tuple] | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._mapped = False
        self._forked = False  # the workers have started
        self._released: list = []  # workers told to exit by `release`, not yet joined

    def initialize(self, initializer: Callable, *initargs) -> None:
        """Run `initializer(*initargs)` in every worker before its first task (here, when workers <= 1).
        Call it before the first `map_ordered`."""
        if self._mapped:
            raise RuntimeError("initialize() must come before the first map_ordered()")
        if self.workers <= 1:
            initializer(*initargs)
        else:
            self._initializer = (initializer, initargs)

    def map_ordered(
        self,
        fn: Callable[[T], R],
        tasks: Iterable[T],
        max_in_flight: int | None = None,
        cost: Callable[[T], float] | None = None,
        describe: Callable[[T], str] | None = None,
    ) -> Iterator[R]:
        """Yield fn(task) for every task, in task order; at most `max_in_flight` (default 2 per worker)
        tasks (and one more) are read and not yet done at once, so a long task list never floods memory.

        With `cost` (an estimate of a task's work), the largest task read and not yet started goes
        next, so the small ones come last and the run does not end on one long task while the other
        workers idle. Results still come in task order (a result waits for the older ones).

        `describe` names a task (its input part or shard) in the errors of engines whose failures would
        not name it themselves (a Ray worker lost); here a task's own exception reaches the caller as is.
        """
        self._mapped = True
        if self.workers <= 1:
            for task in tasks:
                yield fn(task)
            return
        pool = self._start_workers()
        limit = max(max_in_flight or 2 * self.workers, self.workers + 1)
        futures: dict[int, Future] = {}  # submitted, not yet yielded, by task number
        waiting: list[tuple[float, int, T]] = []  # read, not yet submitted: (cost, number, task)
        source, read, done_reading, yielded = iter(tasks), 0, False, 0

        def unfinished() -> int:
            return sum(not f.done() for f in futures.values())

        def submit_waiting() -> None:
            # A worker must never wait while this process reads its next task (a single-stream dump is
            # decompressed here), so each has one more queued; the order of the rest stays ours to choose.
            while waiting and unfinished() < 2 * self.workers:
                _, number, task = pop_largest(waiting)
                first_fork = not self._forked and self._context.get_start_method() == "fork"
                with _forking() if first_fork else contextlib.nullcontext():  # it forks every worker
                    futures[number] = pool.submit(fn, task)
                self._forked = True

        try:
            while True:
                # Tasks read but not done are bounded by `limit` (they hold the inputs); finished results
                # waiting for an older one to be yielded are small, and bounded by 4 x `limit`. One task is
                # read at a time, and the workers are fed before and after it.
                submit_waiting()
                if (
                    not done_reading
                    and len(waiting) + unfinished() <= limit  # one more: is it the end?
                    and len(waiting) + len(futures) <= 4 * limit
                ):
                    task = next(source, _END)
                    if task is _END:
                        done_reading = True
                    else:  # without costs, the oldest goes first (max picks the first of equals)
                        waiting.append((cost(task) if cost is not None else 0.0, read, task))
                        read += 1
                    submit_waiting()
                    continue
                if yielded == read and done_reading:
                    return
                oldest = futures.get(yielded)
                if oldest is not None and oldest.done():
                    del futures[yielded]
                    yielded += 1
                    yield oldest.result()
                    continue
                running = [f for f in futures.values() if not f.done()]
                wait(running, return_when=FIRST_COMPLETED)
        finally:
            for fut in futures.values():
                fut.cancel()

    def _start_workers(self) -> ProcessPoolExecutor:
        if self._pool is None:  # workers start when the first task is submitted
            if self._context is None:
                fork = self._requested == "fork" or _fork_is_safe()
                self._context = multiprocessing.get_context("fork") if fork else _worker_context(self._preload)
            initializer, initargs = self._initializer or (None, ())
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=self._context,
                initializer=_init_worker,
                initargs=(self._workers_parent(), initializer, initargs),
            )
        return self._pool

    def _workers_parent(self) -> int | None:
        """The pid of the process the workers are started from: this one, or the fork server booted for
        them (which ends with this process, see `_let_go_of_the_fork_server`). None where that server's
        pid cannot be known (a private attribute of CPython's multiprocessing.forkserver): a worker then
        takes the parent it finds at its start for the one that started it."""
        if self._context.get_start_method() != "forkserver":
            return os.getpid()
        from multiprocessing import forkserver

        return getattr(forkserver._forkserver, "_forkserver_pid", None)

    def check_shared(self, readable: Sequence[Path], writable: Sequence[Path]) -> None:
        """Every worker runs on this machine and sees what this process sees: nothing to check."""

    def release(self) -> None:
        """Let the workers exit now, while this process goes on; `close` (or leaving the `with`) waits
        for them. No task may be given after this."""
        if self._pool is not None:
            self._released = self._worker_processes()  # the executor forgets them on a shutdown that does not wait
            self._pool.shutdown(wait=False)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._forked = False
        for process in self._released:
            process.join()
        self._released = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self._stop_workers()
        self.close()

    def _stop_workers(self) -> None:
        """On an error, the workers' tasks are of no use, and waiting for them can hang: after a task that
        cannot be pickled, the executor's shutdown sometimes never returns (CPython 3.11, forked workers).
        Their unfinished files have temporary names; a rerun removes them."""
        for process in self._worker_processes():
            process.terminate()

    def _worker_processes(self) -> list:
        """The executor's live worker processes (a private attribute of ProcessPoolExecutor, there from
        CPython 3.8 to 3.13; without it, none)."""
        return list((getattr(self._pool, "_processes", None) or {}).values())


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
