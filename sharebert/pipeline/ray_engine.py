"""--engine ray: the tasks of `prepare` and `mask` as Ray tasks, on one machine or a cluster.

`RayPool` keeps the contract of parallel.WorkerPool (initialize, map_ordered in task order, release,
the context manager), so a stage runs the same task functions on either engine and writes the same
bytes. Tasks read their inputs and write their outputs themselves, on a filesystem every node sees;
what travels through the driver and Ray's object store is a task's description and its small result
(counts, per-document lengths), never its output. A task whose worker dies (killed, node lost) is run
again, at most MAX_RETRIES times; an exception raised by a task stops the run at once, naming the task.
Ray is imported only here, and this module only when --engine ray is chosen. docs/cluster.md.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError, DataError, ShareBertError
from .parallel import default_workers, pop_largest, set_up_task_process

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_RETRIES = 3  # runs of a task after its worker died, before the run stops
# A cluster this process starts itself (no --ray-address, no RAY_ADDRESS): tasks' arguments are small,
# and Ray's default object store (30% of the memory) would take memory other work on the machine needs.
OWN_CLUSTER_OBJECT_STORE_BYTES = 128 * 2**20
INSTALL_HINT = "--engine ray needs Ray: pip install 'sharebert[ray]'"


def check_ray_installed() -> None:
    """Ray is installed (without importing it: that takes a second, done in the background)."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        found = False
    if not found:
        raise ConfigError(INSTALL_HINT)


class RayPool:
    """Tasks as Ray tasks, one CPU each; at most `workers` run at once, and results come back in task
    order (see WorkerPool.map_ordered, whose arguments this takes).

    Connects to the cluster at `address` ("auto", host:port, ray://...; else RAY_ADDRESS), or, without
    either, starts a cluster of this machine's cores for the run and stops it at the end. `workers`:
    tasks running at once (None: every CPU of the cluster).

    Importing Ray, connecting and starting the cluster's worker processes (each imports `preload`) take
    seconds, which a process pool forked from this process does not spend: they happen in a background
    thread, while the stage checks its inputs; the first call that needs the cluster waits for them."""

    def __init__(
        self,
        workers: int | None,
        *,
        address: str | None = None,
        at_most: int | None = None,
        preload: Sequence[str] = (),
    ):
        check_ray_installed()
        self._created = time.perf_counter()
        self.start_seconds: float | None = None  # until every worker had started and imported `preload`
        self._requested = workers
        self._at_most = at_most
        self._workers: int | None = None
        self._ray = None  # the ray module, once connected
        self._owns_cluster = False
        self._failure: BaseException | None = None
        self._connecting = threading.Thread(
            target=self._connect, args=(address, tuple(preload)), name="ray-connect", daemon=True
        )
        self._connecting.start()
        self._setup: tuple[str, list] = (uuid.uuid4().hex, [])  # (key, [ref of (initializer, initargs)])
        self._initializer: tuple[Callable, tuple] | None = None
        self._mapped = False

    def _connect(self, address: str | None, preload: tuple[str, ...]) -> None:
        try:
            import ray

            self._ray = ray
            logging.getLogger("ray._private.worker").addFilter(_NotTheSigtermHandlerWarning())
            self._owns_cluster = not ray.is_initialized()
            if self._owns_cluster:
                _init_ray(ray, address, self._requested)
            self._remote = ray.remote(_run_task).options(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)
            warm_up = ray.remote(_import_modules).options(num_cpus=1)
            cpus = int(ray.cluster_resources().get("CPU", 0))
            warming = [warm_up.remote(preload) for _ in range(self._requested or cpus)]
            threading.Thread(target=self._time_start, args=(warming,), name="ray-warm-up", daemon=True).start()
        except BaseException as e:  # raised where the cluster is first needed
            self._failure = e

    def _time_start(self, warming: list) -> None:
        """Wait for the warm-up tasks (not joined: on a busy cluster they wait for CPUs, as the run's tasks do)."""
        with contextlib.suppress(Exception):  # a failure of the cluster is the run's tasks' to report
            self._ray.get(warming)
            self.start_seconds = time.perf_counter() - self._created
            log.debug("Ray: %d worker(s) started in %.2f s", len(warming), self.start_seconds)

    def _ready(self):
        """The ray module, connected."""
        self._connecting.join()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        return self._ray

    @property
    def workers(self) -> int:
        if self._workers is None:
            wanted = self._requested
            if wanted is None:
                wanted = int(self._ready().cluster_resources().get("CPU", 0)) or 1
            self._workers = max(1, min(wanted, self._at_most or wanted))
        return self._workers

    def initialize(self, initializer: Callable, *initargs) -> None:
        """Run `initializer(*initargs)` in every worker process before its first task of this pool."""
        if self._mapped:
            raise RuntimeError("initialize() must come before the first map_ordered()")
        self._initializer = (initializer, initargs)

    def check_shared(self, readable: Sequence[Path], writable: Sequence[Path]) -> None:
        """Every node of the cluster must see the `readable` paths and write in the `writable` folders
        (the very folders this process sees: a marker written here must be read there), or the run stops
        with one line naming the node and the path."""
        ray = self._ready()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        markers = [_write_marker(Path(folder)) for folder in writable]
        try:
            nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
            probe = ray.remote(_probe_paths)
            refs = [
                probe.options(  # one CPU, as the tasks: it runs in (and starts) a worker they then use
                    max_retries=MAX_RETRIES,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
                ).remote([str(p) for p in readable], markers)
                for n in nodes
            ]
            for node, problem in zip(nodes, ray.get(refs)):
                if problem is not None:
                    raise ConfigError(
                        f"node {node['NodeManagerAddress']} ({problem[1]}): cannot see {problem[0]}; inputs and "
                        "outputs must be on a filesystem every node sees (docs/cluster.md)"
                    )
        finally:
            for marker, _ in markers:
                Path(marker).unlink(missing_ok=True)

    def map_ordered(
        self,
        fn: Callable[[T], R],
        tasks: Iterable[T],
        max_in_flight: int | None = None,
        cost: Callable[[T], float] | None = None,
        describe: Callable[[T], str] | None = None,
    ) -> Iterator[R]:
        self._mapped = True
        ray = self._ready()
        self._put_initializer()
        limit = max(max_in_flight or 2 * self.workers, self.workers + 1)
        submitted: dict[int, tuple] = {}  # task number -> (ref, task), not yet yielded
        finished: set[int] = set()
        waiting: list[tuple[float, int, T]] = []  # read, not yet submitted: (cost, number, task)
        source, read, done_reading, yielded = iter(tasks), 0, False, 0

        def submit_waiting() -> None:
            # Ray starts a submitted task as soon as the cluster has a free CPU: `workers` submitted and not
            # finished are `workers` running at once (the next is read and waiting, so none waits for it).
            while waiting and len(submitted) - len(finished) < self.workers:
                _, number, task = pop_largest(waiting)
                submitted[number] = (self._remote.remote(fn, task, self._setup), task)

        try:
            while True:
                while not done_reading and read - yielded < limit:
                    task = next(source, _END)
                    if task is _END:
                        done_reading = True
                        break
                    waiting.append((cost(task) if cost else 0, read, task))
                    read += 1
                submit_waiting()
                if done_reading and yielded == read:
                    return
                if yielded in finished:
                    ref, task = submitted.pop(yielded)
                    finished.discard(yielded)
                    yielded += 1
                    yield self._result(ref, task, describe)
                    continue
                numbers = {ref: n for n, (ref, _) in submitted.items() if n not in finished}
                ready, _ = ray.wait(list(numbers), num_returns=1)
                finished.update(numbers[ref] for ref in ready)
        finally:
            self._cancel([ref for ref, _ in submitted.values()])  # left by an error: their work is of no use

    def _put_initializer(self) -> None:
        if self._initializer is not None and not self._setup[1]:
            self._setup[1].append(self._ray.put(self._initializer))

    def _result(self, ref, task, describe: Callable | None):
        """The task's result; its failure as one line naming it (a ShareBertError of its own as is)."""
        exceptions = self._ray.exceptions

        def name() -> str:
            return describe(task) if describe is not None else f"task {repr(task)[:200]}"

        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as e:
            cause = e.cause
            if isinstance(cause, ShareBertError):
                raise cause from None
            log.debug("the task's traceback:\n%s", e)
            raise DataError(f"{name()}: the task failed: {type(cause).__name__}: {_first_line(cause)}") from None
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.ObjectLostError) as e:
            raise DataError(
                f"{name()}: the Ray worker running it was lost {MAX_RETRIES + 1} times ({_first_line(e)})"
            ) from None

    def _cancel(self, refs: list) -> None:
        """Stop these tasks (their unfinished files have temporary names; a rerun removes them)."""
        for ref in refs:
            with contextlib.suppress(Exception):  # finished meanwhile, or its worker already gone
                self._ray.cancel(ref, force=True)

    def release(self) -> None:
        """Nothing runs after the last map: the cluster's workers stay for its other jobs."""

    def close(self) -> None:
        self._connecting.join()
        if self._owns_cluster and self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_END = object()


def _init_ray(ray, address: str | None, workers: int | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), or start one of this machine's cores."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = dict(logging_level=logging.WARNING, log_to_driver=True, configure_logging=False)
    if address is not None:
        ray.init(address=address, **options)
        return
    ray.init(
        num_cpus=workers or default_workers(),
        object_store_memory=OWN_CLUSTER_OBJECT_STORE_BYTES,
        include_dashboard=False,
        # Ray runs its workers at niceness 15; the tasks are the run's work, as much as --engine local's workers.
        _system_config={"worker_niceness": 0},
        **options,
    )


class _NotTheSigtermHandlerWarning(logging.Filter):
    """Ray warns that it sets no SIGTERM handler when connected from a thread other than the main one:
    SIGTERM then ends this process as it would without Ray, which is what a stage wants."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


# ---------------------------------------------------------------- in the workers
_set_up: set[str] = set()  # keys of the pools this worker process has run the initializer of


def _run_task(fn: Callable, task, setup: tuple[str, list]):
    key, initializer = setup
    if key not in _set_up:
        import ray

        set_up_task_process(*(ray.get(initializer[0]) if initializer else (None, ())))
        _set_up.add(key)
    return fn(task)


def _import_modules(modules: tuple[str, ...]) -> None:
    """Warm a worker up: the modules its tasks need, imported while the stage sets up."""
    for module in modules:
        importlib.import_module(module)


def _write_marker(folder: Path) -> tuple[str, str]:
    """A file with a random content in `folder`, for the nodes to read: (its path, the content)."""
    content = uuid.uuid4().hex
    path = folder / f".node-check-{content}"
    path.write_text(content, encoding="utf-8")
    return str(path), content


def _probe_paths(readable: list[str], markers: list[tuple[str, str]]) -> tuple[str, str] | None:
    """On one node: (the first path it cannot see, its host name), or None."""
    for path in readable:
        if not os.path.exists(path):
            return path, socket.gethostname()
    for marker, content in markers:
        folder = os.path.dirname(marker)
        try:
            with open(marker, encoding="utf-8") as f:
                seen = f.read() == content
        except OSError:
            seen = False
        if not seen or not os.access(folder, os.W_OK):
            return folder, socket.gethostname()
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
